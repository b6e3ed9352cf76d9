"""float32 accuracy where it is hard: a large mean and a small spread (mean 1e4, standard deviation 1)."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture
def shifted(rng) -> np.ndarray:
    return (1e4 + rng.standard_normal((64, 1024))).astype(np.float32)


def test_float32_variance_is_accurate_at_mean_1e4(backend, shifted):
    _, var = backend.lib.moments(backend.asarray(shifted), axis=-1, keepdims=False)
    exact = shifted.astype(np.float64).var(axis=-1)
    assert np.abs(backend.to_numpy(var) / exact - 1.0).max() < 1e-5


def test_float32_layer_norm_is_accurate_at_mean_1e4(backend, shifted):
    # The reference uses the *same* float32 inputs in float64, so only the algorithm's error is measured.
    # ulp(1e4) in float32 is 9.8e-4: an error of a few ulp of the mean, divided by std 1, is the floor.
    y = backend.to_numpy(backend.lib.layer_norm(backend.asarray(shifted)))
    x64 = shifted.astype(np.float64)
    ref = (x64 - x64.mean(-1, keepdims=True)) / np.sqrt(x64.var(-1, keepdims=True) + 1e-5)
    assert y.dtype == np.float32
    assert np.abs(y - ref).max() < 4 * np.spacing(np.float32(1e4)) / 1.0


def test_one_pass_variance_would_fail_the_same_check(shifted):
    # The check above can fail: E[x^2] - E[x]^2 in float32 misses the variance by orders of magnitude.
    mean = shifted.mean(axis=-1)
    one_pass = (shifted * shifted).mean(axis=-1) - mean * mean
    exact = shifted.astype(np.float64).var(axis=-1)
    assert np.abs(one_pass / exact - 1.0).max() > 1.0
