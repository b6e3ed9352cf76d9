"""The outliers experiment (issue 16, S001-outliers): the corruptions, the pairing of runs, a smoke run."""

from __future__ import annotations

import numpy as np
import pytest

from lnlib.experiments import fig6_mnist as fig6
from lnlib.experiments import outliers, training


def test_corrupt_changes_exactly_the_chosen_cases_and_repeats_per_seed():
    images = np.random.default_rng(0).random((200, 784), dtype=np.float32)
    scaled, chosen = outliers.corrupt(images, "scaled", 0.1, seed=3)
    assert chosen.size == 20 and len(set(chosen)) == 20
    others = np.setdiff1d(np.arange(200), chosen)
    np.testing.assert_array_equal(scaled[others], images[others])
    np.testing.assert_allclose(scaled[chosen], 10.0 * images[chosen], rtol=1e-6)
    noisy, same = outliers.corrupt(images, "noisy", 0.1, seed=3)
    np.testing.assert_array_equal(same, chosen)  # the same cases for every definition of a seed
    assert np.abs(noisy[chosen] - images[chosen]).max() > 10  # heavy tails: a few pixels move far
    assert np.median(np.abs(noisy[chosen] - images[chosen])) < 1.0
    assert not np.array_equal(outliers.corrupt(images, "noisy", 0.1, seed=4)[1], chosen)
    assert outliers.corrupt(images, "scaled", 0.0, seed=3)[1].size == 0
    np.testing.assert_array_equal(images, np.random.default_rng(0).random((200, 784), dtype=np.float32))  # a copy


@pytest.mark.parametrize("definition,rate,match", [("flipped", 0.1, "definition must be one of"),
                                                    ("scaled", 1.5, "rate must be a fraction"),
                                                    ("scaled", True, "rate must be a fraction")])
def test_corrupt_refuses_bad_arguments(definition, rate, match):
    with pytest.raises(ValueError, match=match):
        outliers.corrupt(np.zeros((4, 784), np.float32), definition, rate, seed=0)


def test_runs_of_a_variant_and_seed_are_paired_across_corruptions():
    specs = outliers.specs(outliers.PROFILES["cpu"], 0)
    assert len(specs) == 3 * 3 * (1 + 2 * 2)
    one = [s for s in specs if s["variant"] == "layernorm" and s["seed"] == 1]
    assert len({fig6.run_seed(s) for s in one}) == 1  # same initial weights and batch order
    assert len({fig6.run_key(s) for s in one}) == len(one)  # but different runs
    assert {(s["outliers"]["definition"], s["outliers"]["rate"]) for s in one} == {
        ("none", 0.0), ("scaled", 0.02), ("scaled", 0.1), ("noisy", 0.02), ("noisy", 0.1)}


def test_a_smoke_run_trains_on_the_corrupted_set(tmp_path, monkeypatch):
    monkeypatch.setattr(training, "COMMITTED_RUNS", tmp_path / "runs")
    spec = [s for s in outliers.specs(outliers.PROFILES["smoke"], 0)
            if s["variant"] == "batchnorm" and s["outliers"]["definition"] == "scaled"][0]
    data = fig6.mnist.load()
    corrupted = outliers.data_for(spec, data)
    assert corrupted.train.images.max() > 5 and corrupted.test is data.test
    with training.run_environment("cpu", threads=outliers.THREADS) as device:
        log = outliers.train_run(spec, data, tmp_path / "outliers-smoke-seed0", device=device, progress=False)
    assert log["spec"]["outliers"]["rate"] == 0.1 and 0 < log["test_error"][-1] < 0.9
    # batch norm is measured a second time with population statistics of the clean training images
    clean = log["clean_statistics"]
    assert clean["epoch"] == log["epoch"][-1] and 0 < clean["test_error"] < 0.9
    assert clean["test_error"] != log["test_error"][-1]  # the 10% bright cases shift the statistics
