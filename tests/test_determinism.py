"""The same seed twice gives the same result file, except wall times and timestamps (CPU)."""

from __future__ import annotations

import importlib

import pytest

from lnlib import experiments, results

FAST = ["bn_batch_size", "batch_dependence", "invariance", "geometry", "epsilon_numerics"]


def _twice(name, tmp_path, monkeypatch):
    module = importlib.import_module(f"lnlib.experiments.{name}")
    records = []
    for attempt in ("first", "second"):
        monkeypatch.setenv("LNLIB_RESULTS_DIR", str(tmp_path / attempt))
        monkeypatch.setenv("LNLIB_CHECKPOINT_DIR", str(tmp_path / attempt / "checkpoints"))
        path = results.save(experiments.run(module, profile="smoke", seed=7, device="cpu", progress=False,
                                            save=False))
        records.append(results.load(path))
    return records


@pytest.mark.parametrize("name", FAST)
def test_same_seed_same_result_file(name, tmp_path, monkeypatch):
    first, second = _twice(name, tmp_path, monkeypatch)
    assert results.without_volatile(first) == results.without_volatile(second)
    assert first["provenance"]["created_utc"] and "wall_time_s" in second["provenance"]


@pytest.mark.slow
def test_same_seed_same_training_run(tmp_path, monkeypatch):
    """Figure 6's smoke profile trains from scratch twice (separate checkpoint folders): identical numbers."""
    first, second = _twice("fig6_mnist", tmp_path, monkeypatch)
    assert results.without_volatile(first) == results.without_volatile(second)


def test_a_run_is_deterministic_inside_and_restores_the_callers_settings(monkeypatch):
    import random

    import numpy as np
    import torch

    from lnlib.experiments import bn_batch_size

    seen = {}

    def spy(params, **kwargs):
        seen.update(deterministic=torch.are_deterministic_algorithms_enabled(), draw=random.random())
        return {"value": 1.0}

    monkeypatch.setattr(bn_batch_size, "run", spy)
    previous = torch.get_num_threads()
    torch.use_deterministic_algorithms(False)
    random.seed(123)
    expected_next = random.Random(123).random()
    np_state = np.random.get_state()[1].copy()
    try:
        experiments.run(bn_batch_size, profile="smoke", seed=5, device="cpu", progress=False, save=False)
        assert seen["deterministic"] and seen["draw"] == random.Random(5).random()
        assert not torch.are_deterministic_algorithms_enabled()  # restored
        assert torch.get_num_threads() == previous
        assert random.random() == expected_next  # the caller's generator state is back
        assert np.array_equal(np.random.get_state()[1], np_state)
    finally:
        torch.use_deterministic_algorithms(False)
