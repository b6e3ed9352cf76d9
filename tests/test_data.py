"""Shipped datasets: verified by checksum, loaded without pickle, split as the paper does."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from lnlib.data import DatasetChecksumError, mnist


def test_mnist_splits_match_the_paper():
    data = mnist.load()
    assert [len(s.labels) for s in data] == [55_000, 5_000, 10_000]
    assert data.train.images.shape == (55_000, 784) and data.train.images.dtype == np.float32
    assert 0.0 <= data.test.images.min() and data.test.images.max() == 1.0
    assert set(np.unique(data.valid.labels)) == set(range(10))
    # the classic pickle's first training labels and first test labels
    assert data.train.labels[:5].tolist() == [5, 0, 4, 1, 9]
    assert data.test.labels[:5].tolist() == [7, 2, 1, 0, 4]


def test_mnist_file_has_no_pickled_objects():
    with np.load(mnist.data_dir() / "mnist" / "mnist.npz", allow_pickle=False) as archive:
        assert {k: archive[k].dtype for k in archive.files} == {
            "train_images": np.uint8, "train_labels": np.uint8, "test_images": np.uint8, "test_labels": np.uint8}


@pytest.mark.parametrize("damage", ["truncate", "flip", "delete"])
def test_corrupted_mnist_is_refused_with_a_restore_hint(tmp_path, monkeypatch, damage):
    (tmp_path / "mnist").mkdir()
    copy = tmp_path / "mnist" / "mnist.npz"
    shutil.copy(mnist.data_dir() / "mnist" / "mnist.npz", copy)
    if damage == "truncate":
        copy.write_bytes(copy.read_bytes()[:100_000])
    elif damage == "flip":
        blob = bytearray(copy.read_bytes())
        blob[len(blob) // 2] ^= 0xFF
        copy.write_bytes(bytes(blob))
    else:
        copy.unlink()
    monkeypatch.setenv("LNLIB_DATA_DIR", str(tmp_path))
    with pytest.raises(DatasetChecksumError) as info:
        mnist.load()
    assert str(copy) in str(info.value) and "git checkout -- data/mnist/mnist.npz" in str(info.value)


def test_outside_a_clone_the_data_error_names_lnlib_data_dir(tmp_path, monkeypatch):
    from lnlib import data, results
    from lnlib.data import mnist

    monkeypatch.setattr(results, "REPO_ROOT", tmp_path / "site-packages")
    monkeypatch.delenv("LNLIB_DATA_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    assert data.data_dir() == tmp_path / "data"
    with pytest.raises(data.DatasetChecksumError, match="LNLIB_DATA_DIR"):
        mnist.load()
