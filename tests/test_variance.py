"""lnlib.numpy.variance: one-pass, two-pass and Welford moments, their accuracy, and their argument checks."""

from __future__ import annotations

import numpy as np
import pytest

import lnlib.numpy as lnp
from conftest import HAVE_TORCH, first_values, torch, torch_param
from lnlib.numpy import variance

ALGORITHMS = list(variance.ALGORITHMS.items())
IDS = list(variance.ALGORITHMS)


@pytest.fixture
def shifted32(rng) -> np.ndarray:
    """Mean 1e4, standard deviation 1, in float32: the case that separates the algorithms."""
    return (1e4 + rng.standard_normal((64, 1024))).astype(np.float32)


def _rel_error(var: np.ndarray, exact: np.ndarray) -> float:
    return float(np.abs(np.asarray(var, dtype=np.float64) / exact - 1.0).max())


@pytest.mark.parametrize("name,algorithm", ALGORITHMS, ids=IDS)
@pytest.mark.parametrize("axis", [-1, 0, (0, 2), (1, 2)])
@pytest.mark.parametrize("ddof", [0, 1])
def test_float64_matches_numpy_on_benign_data(rng, name, algorithm, axis, ddof):
    x = rng.normal(0.5, 2.0, size=(6, 5, 7))
    mean, var = algorithm(x, axis=axis, ddof=ddof, keepdims=False)
    np.testing.assert_allclose(mean, x.mean(axis=axis), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(var, x.var(axis=axis, ddof=ddof), rtol=1e-12)
    assert mean.dtype == var.dtype == np.float64


@pytest.mark.parametrize("name,algorithm", ALGORITHMS, ids=IDS)
def test_float32_is_accurate_on_benign_data(rng, name, algorithm):
    x = rng.standard_normal((32, 1024)).astype(np.float32)
    mean, var = algorithm(x, axis=-1, keepdims=False)
    assert var.dtype == np.float32 and mean.dtype == np.float32  # accumulated in the input's dtype
    assert _rel_error(var, x.astype(np.float64).var(axis=-1)) < 1e-5


@pytest.mark.parametrize("name,algorithm", ALGORITHMS, ids=IDS)
@pytest.mark.parametrize("keepdims,shape", [(True, (4, 1, 1)), (False, (4,))])
def test_keepdims(rng, name, algorithm, keepdims, shape):
    x = rng.standard_normal((4, 3, 5))
    mean, var = algorithm(x, axis=(1, 2), keepdims=keepdims)
    assert mean.shape == var.shape == shape


@pytest.mark.parametrize("name,algorithm", ALGORITHMS, ids=IDS)
def test_float16_input_is_accumulated_in_float32(rng, name, algorithm):
    x = rng.standard_normal((4, 64)).astype(np.float16)
    mean, var = algorithm(x)
    assert mean.dtype == var.dtype == np.float32
    assert _rel_error(var[:, 0], x.astype(np.float64).var(axis=-1)) < 1e-5


def test_one_pass_fails_at_mean_1e4_in_float32_while_two_pass_does_not(shifted32):
    exact = shifted32.astype(np.float64).var(axis=-1)
    _, one = variance.one_pass_moments(shifted32, keepdims=False)
    _, two = variance.two_pass_moments(shifted32, keepdims=False)
    assert _rel_error(one, exact) > 1.0  # not a digit right
    assert (one < 0).any(), "the one-pass variance is returned unclamped, so it can be negative"
    assert _rel_error(two, exact) < 1e-5


def test_welford_in_float32_lies_between_one_pass_and_two_pass(shifted32):
    # Welford's error is first order in u*mean/std (about 6e-4 here), two-pass's second order.
    exact = shifted32.astype(np.float64).var(axis=-1)
    errors = {name: _rel_error(f(shifted32, keepdims=False)[1], exact) for name, f in variance.ALGORITHMS.items()}
    assert errors["two-pass"] < errors["welford"] < 1e-2 < errors["one-pass"]
    assert errors["welford"] > 10 * errors["two-pass"]


def test_welford_float64_matches_numpy_at_a_large_mean(rng):
    x = 1e4 + rng.standard_normal((16, 4096))
    mean, var = variance.welford_moments(x, keepdims=False)
    assert _rel_error(var, x.var(axis=-1)) < 1e-9
    np.testing.assert_allclose(mean, x.mean(axis=-1), rtol=1e-14)


def test_welford_float64_is_exact_on_a_hand_example():
    x = np.array([[2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]])  # mean 5, biased variance 4
    mean, var = variance.welford_moments(x, keepdims=False)
    assert mean.tolist() == [5.0] and var.tolist() == [4.0]
    assert variance.welford_moments(x, ddof=1, keepdims=False)[1].tolist() == [32.0 / 7.0]


def test_two_pass_is_lnlib_moments(rng):
    x = (100.0 + rng.standard_normal((8, 300))).astype(np.float32)
    for got, expected in zip(variance.two_pass_moments(x, axis=-1), lnp.moments(x, axis=-1)):
        assert np.array_equal(got, expected)


@pytest.mark.parametrize("name,algorithm", ALGORITHMS, ids=IDS)
def test_no_independent_slices_gives_empty_statistics(name, algorithm):
    mean, var = algorithm(np.zeros((0, 5)), axis=-1)
    assert mean.shape == var.shape == (0, 1)


@pytest.mark.parametrize("name,algorithm", ALGORITHMS, ids=IDS)
def test_nan_stays_in_its_slice(name, algorithm):
    x = np.array([[1.0, np.nan, 3.0], [1.0, 2.0, 3.0]])
    _, var = algorithm(x, keepdims=False)
    assert np.isnan(var[0]) and var[1] == pytest.approx(2.0 / 3.0)


def test_standardize_with_two_pass_statistics_is_layer_norm(rng):
    x = rng.normal(3.0, 2.0, size=(5, 40))
    mean, var = variance.two_pass_moments(x)
    np.testing.assert_allclose(variance.standardize_with(x, mean, var, eps=1e-5), lnp.layer_norm(x, eps=1e-5),
                               rtol=1e-13, atol=1e-14)


def test_standardize_with_clamps_a_negative_variance_and_keeps_the_dtype():
    x = np.array([[1.0, 2.0, 3.0]], dtype=np.float32)
    mean = np.array([[2.0]], dtype=np.float32)
    var = np.array([[-0.5]], dtype=np.float32)
    y = variance.standardize_with(x, mean, var, eps=1e-2)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, [[-10.0, 0.0, 10.0]], rtol=1e-6)


BAD = [
    ("x of integers", {"x": np.arange(6).reshape(2, 3)}, TypeError, ["x", "int64", "floating"]),
    torch_param("x a tensor", {"x": torch.ones(2, 3)} if HAVE_TORCH else {}, TypeError, ["x", "torch.Tensor"]),
    ("axis out of range", {"axis": 2}, ValueError, ["axis=2", "out of range"]),
    ("axis a float", {"axis": 1.0}, TypeError, ["axis", "float"]),
    ("ddof a bool", {"ddof": True}, TypeError, ["ddof", "bool"]),
    ("ddof a float", {"ddof": 1.0}, TypeError, ["ddof", "float"]),
    ("ddof negative", {"ddof": -1}, ValueError, ["ddof", ">= 0", "-1"]),
    ("ddof too large", {"ddof": 3}, ValueError, ["at least 4"]),
    ("empty reduction", {"x": np.zeros((2, 0))}, ValueError, ["empty reduction"]),
]


@pytest.mark.parametrize("name,algorithm", ALGORITHMS, ids=IDS)
@pytest.mark.parametrize("what,overrides,error,words", BAD, ids=first_values(BAD))
def test_bad_input_is_refused_with_a_clear_message(name, algorithm, what, overrides, error, words):
    kwargs = {"x": np.ones((2, 3)), **overrides}
    with pytest.raises(error) as info:
        algorithm(kwargs.pop("x"), **kwargs)
    for word in words:
        assert word in str(info.value), f"{word!r} missing from: {info.value}"


def test_the_message_names_the_algorithm():
    with pytest.raises(ValueError, match="welford_moments"):
        variance.welford_moments(np.ones((2, 1)), ddof=1)


@pytest.mark.parametrize("kwargs,error,words", [
    ({"mean": np.zeros((3, 1))}, ValueError, ["mean", "(3, 1)", "keepdims=True"]),
    ({"var": np.ones((2, 4))}, ValueError, ["var", "(2, 4)"]),
    ({"var": np.ones((2, 1), dtype=int)}, TypeError, ["var", "int64"]),
    ({"eps": -1.0}, ValueError, ["eps", ">= 0"]),
])
def test_standardize_with_bad_input(kwargs, error, words):
    args = {"x": np.ones((2, 3)), "mean": np.zeros((2, 1)), "var": np.ones((2, 1)), "eps": 1e-5, **kwargs}
    with pytest.raises(error) as info:
        variance.standardize_with(args.pop("x"), args.pop("mean"), args.pop("var"), **args)
    for word in words:
        assert word in str(info.value), f"{word!r} missing from: {info.value}"
