"""lnlib.numpy.conventions: every preset against a formula written out here, and against torch where it can run."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import numpy as np
import pytest

import lnlib.numpy as lnp
from conftest import needs_torch, torch
from lnlib.numpy import conventions as cv

ROOT = Path(__file__).resolve().parents[1]
KEYS = tuple(cv.CONVENTIONS)


def direct(x: np.ndarray, key: str) -> np.ndarray:
    """Each preset written out independently, in float64, over the last axis, no affine."""
    x = x.astype(np.float64)
    mu = x.mean(-1, keepdims=True)
    if key in ("paper_theano", "pytorch", "matlab"):
        return (x - mu) / np.sqrt(x.var(-1, keepdims=True) + 1e-5)
    if key == "authors_lua":
        return (x - mu) / (np.sqrt(((x - mu) ** 2).mean(-1, keepdims=True)) + 1e-5)
    if key == "keras":
        return (x - mu) / np.sqrt(x.var(-1, keepdims=True) + 1e-3)
    if key == "flax":
        var = np.maximum((x * x).mean(-1, keepdims=True) - mu * mu, 0.0)
        return (x - mu) / np.sqrt(var + 1e-6)
    if key == "annotated_transformer":
        return (x - mu) / (x.std(-1, ddof=1, keepdims=True) + 1e-6)
    raise KeyError(key)


@pytest.mark.parametrize("key", KEYS)
@pytest.mark.parametrize("sigma", [3.0, 1e-2, 1e-3])
def test_each_preset_matches_its_formula(rng, key, sigma):
    x = rng.normal(0.5, sigma, size=(6, 16))
    np.testing.assert_allclose(cv.apply_convention(x, key), direct(x, key), rtol=1e-9, atol=1e-12)


def test_the_presets_are_distinct_where_they_should_be(rng):
    x = rng.normal(0.0, 1e-2, size=(4, 8))
    outputs = {k: cv.apply_convention(x, k) for k in KEYS}
    same = {frozenset(p) for p in itertools.combinations(KEYS, 2) if np.array_equal(outputs[p[0]], outputs[p[1]])}
    # only the three conventions with identical knobs (and the same axes on a 2-D input) coincide exactly
    assert same == {frozenset(p) for p in itertools.combinations(("paper_theano", "pytorch", "matlab"), 2)}


def test_defaults_are_lnlib_layer_norm(rng):
    x = rng.normal(size=(5, 7, 3))
    g, b = rng.normal(size=3), rng.normal(size=3)
    # the same definition; lnlib's last-axis kernel sums in another order, so agreement is to rounding
    np.testing.assert_allclose(cv.layer_norm_variant(x, g, b), lnp.layer_norm(x, g, b), rtol=0, atol=1e-14)
    np.testing.assert_allclose(cv.layer_norm_variant(x, axis=(1, 2)), lnp.layer_norm(x, axis=(1, 2)), rtol=0, atol=1e-14)


@needs_torch
@pytest.mark.parametrize("dtype,atol", [("float64", 1e-12), ("float32", 2e-6)])
def test_pytorch_preset_matches_torch_layer_norm(rng, dtype, atol):
    dtype = getattr(torch, dtype)
    x = rng.normal(1.0, 2.0, size=(8, 33))
    g, b = rng.normal(size=33), rng.normal(size=33)
    ref = torch.nn.functional.layer_norm(torch.tensor(x, dtype=dtype), (33,), torch.tensor(g, dtype=dtype),
                                         torch.tensor(b, dtype=dtype), eps=1e-5)
    xn = x.astype(np.float32 if dtype == torch.float32 else np.float64)
    ours = cv.apply_convention(xn, "pytorch", g.astype(xn.dtype), b.astype(xn.dtype))
    assert ours.dtype == xn.dtype
    np.testing.assert_allclose(ours, ref.numpy(), rtol=0, atol=atol)


@pytest.mark.parametrize("size", [2, 4, 64])
@needs_torch
def test_annotated_transformer_preset_matches_its_torch_code(rng, size):
    x = rng.normal(0.2, 0.5, size=(3, 5, size))
    a, b = rng.normal(size=size), rng.normal(size=size)
    xt, at, bt = (torch.tensor(v) for v in (x, a, b))
    eps = 1e-6
    ref = at * (xt - xt.mean(-1, keepdim=True)) / (xt.std(-1, keepdim=True) + eps) + bt
    np.testing.assert_allclose(cv.apply_convention(x, "annotated_transformer", a, b), ref.numpy(),
                               rtol=0, atol=1e-12)


def test_published_bert_pytorch_example():
    # codertimo/BERT-pytorch issue 30: x = [1, 0, 0, 0]
    x = np.array([1.0, 0.0, 0.0, 0.0])
    np.testing.assert_allclose(cv.apply_convention(x, "annotated_transformer"), [1.5, -0.5, -0.5, -0.5], atol=1e-5)
    np.testing.assert_allclose(cv.apply_convention(x, "pytorch"), [1.7320, -0.5773, -0.5773, -0.5773], atol=1e-4)


@needs_torch
def test_published_bert_pytorch_example_is_torch_layer_norm():
    x = np.array([1.0, 0.0, 0.0, 0.0])
    torch_out = torch.nn.LayerNorm(4, dtype=torch.float64)(torch.tensor(x)).detach().numpy()
    np.testing.assert_allclose(cv.apply_convention(x, "pytorch"), torch_out, atol=1e-12)


@pytest.mark.parametrize("size", [2, 3, 8, 100])
def test_unbiased_is_biased_times_sqrt_of_h_minus_one_over_h(rng, size):
    x = rng.normal(size=(4, size))
    biased = cv.layer_norm_variant(x, eps=0.0)
    unbiased = cv.layer_norm_variant(x, eps=0.0, ddof=1)
    np.testing.assert_allclose(unbiased, biased * np.sqrt((size - 1) / size), rtol=1e-12)
    assert cv.output_scale(1.0, size, eps=0.0, ddof=1) == pytest.approx(np.sqrt((size - 1) / size), rel=1e-14)


def test_output_scale_closed_forms():
    sigma = np.array([1e-4, 1e-3, 1e-2, 1.0])
    np.testing.assert_allclose(cv.output_scale(sigma, 10, eps=1e-5), sigma / np.sqrt(sigma**2 + 1e-5), rtol=1e-14)
    np.testing.assert_allclose(cv.output_scale(sigma, 10, eps=1e-5, eps_placement="std"), sigma / (sigma + 1e-5),
                               rtol=1e-14)
    assert cv.output_scale(0.0, 10, eps=0.0) == 0.0  # a constant slice normalizes to 0, not 0/0


@pytest.mark.parametrize("sigma", [1.0, 1e-2, 1e-3])
def test_output_std_equals_the_output_scale(rng, sigma):
    z = rng.normal(size=(3, 50))
    z = (z - z.mean(-1, keepdims=True)) / z.std(-1, keepdims=True)  # exactly standardized rows
    for key in KEYS:
        c = cv.CONVENTIONS[key]
        y = cv.apply_convention(sigma * z, key)
        expected = cv.output_scale(sigma, 50, eps=c.eps, eps_placement=c.eps_placement, ddof=c.ddof)
        np.testing.assert_allclose(y.std(-1), expected, rtol=1e-9)


@pytest.mark.parametrize("sigma", [1.0, 1e-2, 1e-3, 1e-5])
def test_predicted_difference_is_the_measured_one(rng, sigma):
    x = rng.normal(0.0, sigma, size=(5, 32))
    for a, b in itertools.combinations(KEYS, 2):
        measured = np.abs(cv.apply_convention(x, a) - cv.apply_convention(x, b)).max()
        predicted = cv.predicted_difference(x, a, b)
        assert predicted == pytest.approx(measured, rel=1e-8, abs=1e-13), (a, b)


def test_predicted_difference_of_a_constant_row_is_zero():
    x = np.ones((2, 5))
    assert cv.predicted_difference(x, "paper_theano", "annotated_transformer") == 0.0


def test_one_pass_variance_fails_at_large_mean_in_float32_and_two_pass_does_not(rng):
    x = (1e4 + rng.normal(size=(16, 1024))).astype(np.float32)
    ref = cv.layer_norm_variant(x.astype(np.float64))
    two = cv.layer_norm_variant(x)
    one = cv.layer_norm_variant(x, variance="one-pass")
    assert two.dtype == one.dtype == np.float32
    assert np.abs(two - ref).max() < 1e-2
    assert np.abs(one - ref).max() > 1.0
    # in float64, or at mean 0, the two algorithms agree
    x64 = rng.normal(0.3, 1.0, size=(4, 64))
    np.testing.assert_allclose(cv.layer_norm_variant(x64, variance="one-pass"), cv.layer_norm_variant(x64),
                               atol=1e-12)


def test_one_pass_variance_is_clamped_at_zero():
    x = np.full((2, 8), 1e4, dtype=np.float32)
    x[:, 0] += np.float32(1e-3)  # below float32 resolution at 1e4: every value is the same float
    y = cv.layer_norm_variant(x, variance="one-pass", eps=1e-6)
    assert np.isfinite(y).all()


def test_float16_is_computed_in_float32_and_returned_as_float16(rng):
    x = rng.normal(size=(3, 64)).astype(np.float16)
    y = cv.apply_convention(x, "flax")
    assert y.dtype == np.float16
    np.testing.assert_allclose(y.astype(np.float64), direct(x.astype(np.float64), "flax"), atol=4e-3)


def test_matlab_preset_on_vectors_is_the_paper(rng):
    x = rng.normal(size=(6, 10))
    assert np.array_equal(cv.apply_convention(x, "matlab"), cv.apply_convention(x, "paper_theano"))
    # the same data in MATLAB's own order, "CB" (features x batch)
    np.testing.assert_array_equal(cv.apply_convention(x.T, "matlab", fmt="CB").T, cv.apply_convention(x, "matlab"))


@needs_torch
def test_matlab_preset_on_images_is_group_norm_with_one_group(rng):
    x = rng.normal(0.5, 2.0, size=(4, 3, 5, 6))  # N x C x H x W: "BCSS"
    g, b = rng.normal(size=3), rng.normal(size=3)
    ours = cv.apply_convention(x, "matlab", g, b, fmt="BCSS")
    ref = torch.nn.functional.group_norm(torch.tensor(x), 1, torch.tensor(g), torch.tensor(b), eps=1e-5)
    np.testing.assert_allclose(ours, ref.numpy(), rtol=0, atol=1e-12)


def test_matlab_preset_on_images_is_the_same_in_matlab_order(rng):
    x = rng.normal(0.5, 2.0, size=(4, 3, 5, 6))  # N x C x H x W: "BCSS"
    g, b = rng.normal(size=3), rng.normal(size=3)
    ours = cv.apply_convention(x, "matlab", g, b, fmt="BCSS")
    in_matlab_order = cv.apply_convention(x.transpose(2, 3, 1, 0), "matlab", g, b, fmt="SSCB")
    np.testing.assert_allclose(in_matlab_order.transpose(3, 2, 0, 1), ours, atol=1e-12)


def test_every_preset_documents_every_knob_and_cites_a_known_key():
    bib = (ROOT / "references.bib").read_text()
    keys = set(re.findall(r"@\w+\{([^,]+),", bib))
    for c in cv.CONVENTIONS.values():
        assert {ch.knob for ch in c.checks} == {"eps", "eps_placement", "ddof", "variance", "axes"}, c.key
        assert c.cite in keys, c.cite
        assert all(ch.evidence for ch in c.checks)
    assert [ch.knob for ch in cv.CONVENTIONS["matlab"].unverified()] == ["ddof", "variance"]
    assert cv.CONVENTIONS["flax"].variance == "one-pass" and not cv.CONVENTIONS["flax"].unverified()


@pytest.mark.parametrize("call,error,words", [
    (lambda: cv.layer_norm_variant(np.ones((2, 3)), eps_placement="sqrt"), ValueError, ["eps_placement", "'sqrt'"]),
    (lambda: cv.layer_norm_variant(np.ones((2, 3)), variance="welford"), ValueError, ["variance", "'welford'"]),
    (lambda: cv.layer_norm_variant(np.ones((2, 3)), ddof=-1), ValueError, ["ddof", ">= 0"]),
    (lambda: cv.layer_norm_variant(np.ones((2, 3)), ddof=1.0), TypeError, ["ddof", "float"]),
    (lambda: cv.layer_norm_variant(np.ones((2, 3)), ddof=True), TypeError, ["ddof", "bool"]),
    (lambda: cv.layer_norm_variant(np.ones((2, 1)), ddof=1), ValueError, ["layer_norm_variant", "at least 2"]),
    (lambda: cv.layer_norm_variant(np.ones((2, 3)), eps=-1.0), ValueError, ["eps", ">= 0"]),
    (lambda: cv.layer_norm_variant(np.ones((2, 3)), axis=2), ValueError, ["axis=2", "out of range"]),
    (lambda: cv.layer_norm_variant(np.arange(6).reshape(2, 3)), TypeError, ["x", "int64"]),
    (lambda: cv.apply_convention(np.ones((2, 3)), "torch"), ValueError, ["convention", "'torch'", "pytorch"]),
    (lambda: cv.apply_convention(np.ones((2, 3)), "matlab", fmt="SSCB"), ValueError, ["fmt='SSCB'", "2 dimensions"]),
    (lambda: cv.apply_convention(np.ones((2, 3)), "keras", fmt="BC"), ValueError, ["fmt", "'keras'"]),
    (lambda: cv.output_scale(1.0, 1, eps=1e-5, ddof=1), ValueError, ["size", "ddof=1"]),
    (lambda: cv.output_scale(1.0, 4, eps=1e-5, eps_placement="inside"), ValueError, ["eps_placement"]),
    (lambda: cv.predicted_difference(np.ones((2, 3, 4)), "pytorch", "matlab", axis=(1, 2), fmt="BCS"), ValueError,
     ["different axes"]),
])
def test_bad_input_is_refused_with_a_clear_message(call, error, words):
    with pytest.raises(error) as info:
        call()
    for word in words:
        assert word in str(info.value), f"{word!r} missing from: {info.value}"
