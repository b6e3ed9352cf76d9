"""Hypothesis properties over random shapes, axes and affine shapes (both backends)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import lnlib.numpy as lnp
from conftest import lnt, needs_torch, reference_normalize, torch
from exact import TOLERANCE, assert_accurate, exact_direction, exact_standardize

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


# Decorators (needs_torch) leave hypothesis's derandomized examples as they were; a test's name and body do
# not, so the torch tests keep theirs and the NumPy-only run has its own copy of the reference check.
@needs_torch
@given(problems())
def test_forward_matches_reference_in_both_backends(problem):
    x, axes, gamma, beta = problem
    expected = reference_normalize(x, axes, 1e-5, gamma, beta)
    y_np = lnp.layer_norm(x, gamma, beta, axis=axes)
    y_t = lnt.layer_norm(torch.from_numpy(x), torch.from_numpy(gamma), torch.from_numpy(beta), axis=axes).numpy()
    np.testing.assert_allclose(y_np, expected, rtol=1e-10, atol=1e-10)
    # the twins add in different orders; in float64 that moves x_hat by a few units of rounding times the
    # conditioning max|x| / sqrt(var + eps) of the worst group (1e5 for a mean of 1e3 and a spread of 1e-2)
    spread = np.sqrt(np.var(x, axis=axes) + 1e-5).min()
    conditioning = max(1.0, float(np.abs(x).max() / spread))
    np.testing.assert_allclose(y_t, y_np, rtol=0, atol=1e-14 * conditioning * max(1.0, np.abs(gamma).max()) + 1e-13)


@given(problems())
def test_forward_matches_reference_in_numpy(problem):
    x, axes, gamma, beta = problem
    expected = reference_normalize(x, axes, 1e-5, gamma, beta)
    np.testing.assert_allclose(lnp.layer_norm(x, gamma, beta, axis=axes), expected, rtol=1e-10, atol=1e-10)


@needs_torch
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


# --- Issue 18, item 6: every function against an exact reference, over dtypes, magnitudes, shapes, strides
# and aliasing. The bound is the accuracy statement of lnlib.numpy.normalization (tests/exact.py).

try:
    import ml_dtypes as ML_DTYPES
except ImportError:  # optional: NumPy bfloat16 is tested where it is installed
    ML_DTYPES = None

#: Decimal exponents of the magnitudes drawn per dtype: from the subnormal range to near the largest value.
EXPONENTS = {"float64": (-315, 306), "float32": (-43, 37), "float16": (-6, 4), "bfloat16": (-40, 37)}


@st.composite
def ranged_problems(draw):
    """(dtype, x as float64 holding values exact in dtype, axes, eps, layout): magnitudes anywhere in the
    dtype's finite range, mean within a few standard deviations, any axes, and a layout (contiguous, a
    strided view, a transposed view)."""
    dtype = draw(st.sampled_from(sorted(EXPONENTS)))
    low, high = EXPONENTS[dtype]
    shape = tuple(draw(st.lists(st.integers(1, 5), min_size=1, max_size=3)))
    axes = tuple(sorted(draw(st.sets(st.integers(0, len(shape) - 1), min_size=1))))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    scale = 10.0 ** draw(st.integers(low, high))
    x = (draw(st.sampled_from([0.0, 1.0, -3.0])) + rng.standard_normal(shape)) * scale
    x = _representable(x, dtype)
    eps = draw(st.sampled_from([0.0, 1e-5]))
    layout = draw(st.sampled_from(["contiguous", "strided", "transposed"]))
    return dtype, x, axes, eps, layout


def _representable(x: np.ndarray, dtype: str) -> np.ndarray:
    # torch rounds to every dtype, bfloat16 included: the ranged tests below are marked needs_torch
    return torch.from_numpy(x).to(getattr(torch, dtype)).double().numpy()


def _lay_out(x: np.ndarray, dtype: str, layout: str, backend: str):
    """``x`` in ``dtype`` for ``backend``, as a view with the given memory layout (same values)."""
    if backend == "numpy" and dtype == "bfloat16":
        array = x.astype(ML_DTYPES.bfloat16)
    else:
        array = x.astype(dtype) if backend == "numpy" else None
    if backend == "torch":
        tensor = torch.from_numpy(x).to(getattr(torch, dtype))
        if layout == "strided":
            tensor = torch.repeat_interleave(tensor, 2, dim=-1)[..., ::2]
        elif layout == "transposed":
            order = tuple(reversed(range(tensor.ndim)))
            tensor = tensor.permute(order).contiguous().permute(order)
        return tensor
    if layout == "strided":
        array = np.repeat(array, 2, axis=-1)[..., ::2]
    elif layout == "transposed":
        array = np.ascontiguousarray(array.T).T
    return array


def _conditioning(x: np.ndarray, axes: tuple[int, ...], eps: float) -> np.ndarray:
    """``1 + |mean| / sqrt(var + eps)`` per slice, in float64 on values scaled to avoid overflow."""
    scale = np.nanmax(np.abs(x)) or 1.0
    xs = x / scale
    mean = xs.mean(axis=axes, keepdims=True)
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):  # eps huge next to tiny data: sigma inf
        sigma = np.sqrt(xs.var(axis=axes, keepdims=True) + (np.sqrt(eps) / scale) ** 2)
        return 1.0 + np.abs(mean) / sigma


def _moved(a: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    """Reduced axes last and flattened, so that assert_accurate sees one slice per row."""
    moved = np.moveaxis(a, axes, tuple(range(-len(axes), 0)))
    return moved.reshape(moved.shape[: a.ndim - len(axes)] + (-1,))


@needs_torch
@given(ranged_problems(), st.sampled_from(["numpy", "torch", "torch composite"]),
       st.sampled_from(["layer_norm", "rms_norm", "batch_norm", "weight_norm"]))
@settings(max_examples=150)
def test_every_function_is_accurate_against_the_exact_result(problem, backend, function):
    dtype, x, axes, eps, layout = problem
    size = int(np.prod([x.shape[a] for a in axes]))
    if function == "batch_norm" and size < 2:
        return  # batch norm needs two values per statistic
    if eps == 0.0 and function != "weight_norm" and size == 1:
        return  # one value per statistic and eps = 0: 0/0 by definition
    if backend == "numpy" and dtype == "bfloat16" and ML_DTYPES is None:
        return  # NumPy has no bfloat16 without ml_dtypes (tests/test_range.py covers torch's)
    lib = lnp if backend == "numpy" else lnt
    kwargs = {"native": False} if backend == "torch composite" else {}
    xb = _lay_out(x, dtype, layout, backend.split()[0])
    if function == "weight_norm":
        y = lib.weight_norm(xb, axis=axes)
        exact, conditioning = exact_direction(x, axes), 1.0
    else:
        extra = {"center": False} if function == "rms_norm" else {}
        y = getattr(lib, function)(xb, axis=axes, eps=eps, **kwargs)
        exact = exact_standardize(x, axes, eps, **extra)
        conditioning = 1.0 if function == "rms_norm" else _moved(_conditioning(x, axes, eps), axes)
    assert str(y.dtype).removeprefix("torch.") == dtype
    y64 = y.double().numpy() if isinstance(y, torch.Tensor) else np.asarray(y, dtype=np.float64)
    if np.isnan(exact).any():  # a slice whose exact result is 0/0 (all zero, eps = 0): NaN in both
        assert np.isnan(y64[np.isnan(exact)]).all()
        return
    assert_accurate(_moved(y64, axes), _moved(exact, axes), dtype, f"{backend} {function} {dtype}",
                    conditioning)


@needs_torch
@given(ranged_problems(), st.sampled_from(["layer_norm", "rms_norm"]))
def test_numpy_in_place_equals_out_of_place(problem, function):
    dtype, x, axes, eps, _ = problem
    if dtype == "bfloat16" or (eps == 0.0 and int(np.prod([x.shape[a] for a in axes])) == 1):
        return
    a = x.astype(dtype)
    expected = getattr(lnp, function)(a, axis=axes, eps=eps)
    returned = getattr(lnp, function)(a, axis=axes, eps=eps, out=a)
    assert returned is a
    np.testing.assert_array_equal(a, expected)


@needs_torch
@given(ranged_problems())
def test_group_norm_is_layer_norm_of_each_group(problem):
    dtype, x, _, eps, _ = problem
    if eps == 0.0 or dtype == "bfloat16":
        return
    x = np.concatenate([x.reshape(1, -1), x.reshape(1, -1)[:, ::-1]], axis=1)  # two groups, width >= 2
    for lib, xb in ((lnp, x.astype(dtype)), (lnt, torch.from_numpy(x).to(getattr(torch, dtype)))):
        y = lib.group_norm(xb, 2, eps=eps)
        halves = [lib.layer_norm(h, eps=eps) for h in (xb[:, : x.shape[1] // 2], xb[:, x.shape[1] // 2:])]
        joined = np.concatenate([np.asarray(h, dtype=np.float64) if lib is lnp else h.double().numpy()
                                 for h in halves], axis=1)
        got = np.asarray(y, dtype=np.float64) if lib is lnp else y.double().numpy()
        np.testing.assert_allclose(got, joined, rtol=4 * TOLERANCE[dtype], atol=4 * TOLERANCE[dtype])
