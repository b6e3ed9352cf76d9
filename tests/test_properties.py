"""Hypothesis properties over random shapes, axes and affine shapes (both backends)."""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import lnlib.numpy as lnp
import lnlib.torch as lnt
from conftest import reference_normalize

settings.register_profile("lnlib", max_examples=60, deadline=None, derandomize=True, database=None)
settings.load_profile("lnlib")


@st.composite
def problems(draw):
    """(x, axes, gamma, beta): x of 1-4 dims; a non-empty set of axes; parameters shaped like a suffix of
    x's shape with some sizes replaced by 1 (every layout NumPy broadcasting allows)."""
    shape = tuple(draw(st.lists(st.integers(1, 5), min_size=1, max_size=4)))
    axes = tuple(sorted(draw(st.sets(st.integers(0, len(shape) - 1), min_size=1))))
    suffix = draw(st.integers(0, len(shape)))
    pshape = tuple(n if draw(st.booleans()) else 1 for n in shape[len(shape) - suffix:])
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    scale = 10.0 ** draw(st.integers(-2, 3))
    shift = draw(st.sampled_from([0.0, 1.0, -50.0, 1e3]))
    x = shift + scale * rng.standard_normal(shape)
    return x, axes, rng.normal(size=pshape), rng.normal(size=pshape)


@given(problems())
def test_forward_matches_reference_in_both_backends(problem):
    x, axes, gamma, beta = problem
    expected = reference_normalize(x, axes, 1e-5, gamma, beta)
    y_np = lnp.layer_norm(x, gamma, beta, axis=axes)
    y_t = lnt.layer_norm(torch.from_numpy(x), torch.from_numpy(gamma), torch.from_numpy(beta), axis=axes).numpy()
    np.testing.assert_allclose(y_np, expected, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(y_t, y_np, rtol=0, atol=1e-12)


@given(problems())
def test_backward_shapes_and_twin_parity(problem):
    x, axes, gamma, beta = problem
    dy = np.cos(np.arange(x.size).reshape(x.shape))
    grads_np = lnp.layer_norm_backward(dy, x, gamma, beta, axis=axes)
    grads_t = lnt.layer_norm_backward(*(torch.from_numpy(a) for a in (dy, x, gamma, beta)), axis=axes)
    assert [g.shape for g in grads_np] == [x.shape, gamma.shape, beta.shape]
    for a, b in zip(grads_np, grads_t):
        np.testing.assert_allclose(b.numpy(), a, rtol=1e-9, atol=1e-9 * max(1.0, np.abs(a).max()))


@given(problems())
def test_normalized_slices_have_zero_mean_and_variance_below_one(problem):
    x, axes, _, _ = problem
    y = lnp.layer_norm(x, axis=axes)
    var = x.var(axis=axes, keepdims=True)
    np.testing.assert_allclose(y.mean(axis=axes, keepdims=True), 0.0, atol=1e-9)
    # the variance of the output is var / (var + eps): 1 up to the eps correction, never above 1
    np.testing.assert_allclose(y.var(axis=axes, keepdims=True), var / (var + 1e-5), rtol=1e-8, atol=1e-12)


@given(problems(), st.floats(0.01, 100.0), st.floats(-100.0, 100.0))
def test_exactly_invariant_to_affine_maps_of_each_slice_when_eps_is_zero(problem, scale, shift):
    # Eq. 7 of the paper: rescaling (and re-centring) one training case leaves layer norm unchanged.
    x, axes, _, _ = problem
    x = x + np.random.default_rng(0).standard_normal(x.shape)  # keep every slice's variance away from 0
    if np.prod([x.shape[a] for a in axes]) == 1:
        return  # one value per statistic: with eps = 0 the output is 0/0 for every input
    y = lnp.layer_norm(x, axis=axes, eps=0.0)
    np.testing.assert_allclose(lnp.layer_norm(scale * x + shift, axis=axes, eps=0.0), y, rtol=1e-6, atol=1e-6)


@given(problems())
def test_batch_norm_is_layer_norm_with_other_axes(problem):
    x, axes, gamma, beta = problem
    if np.prod([x.shape[a] for a in axes]) < 2:
        return  # batch_norm needs two values per statistic
    np.testing.assert_array_equal(lnp.batch_norm(x, gamma, beta, axis=axes), lnp.layer_norm(x, gamma, beta, axis=axes))
