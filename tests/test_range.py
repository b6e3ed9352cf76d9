"""Exact statistics over the whole finite range of each dtype (issue 18, item 1), in both backends.

Every normalization is compared with the exact result (:mod:`exact`, decimal arithmetic) on rows whose
magnitudes span the dtype's range: near the largest finite value (the sum of squares, even the sum,
overflows), near the smallest normal and subnormal values (the squares underflow), and in between. The
accuracy statement checked here is the one in the docstring of :mod:`lnlib.numpy.normalization`:

    |computed - exact| <= TOLERANCE[dtype] * (largest |exact| in the slice) + 2 * smallest normal of the dtype

for rows whose mean is at most a few standard deviations (the tests' rows have |mean| <= 3 sigma).
"""

from __future__ import annotations

import math
import zlib

import numpy as np
import pytest

import lnlib.numpy as lnp
from conftest import HAVE_CUDA, lnt, needs_torch, torch, torch_param
from exact import TOLERANCE, assert_accurate, exact_direction, exact_moments, exact_standardize

#: Row scales per dtype: tiny (subnormal and smallest normal), ordinary, and near the largest finite value.
SCALES = {
    "float64": [2.0 ** -1070, 1e-310, 1e-300, 1e-160, 1.0, 1e160, 1e300, 2.0 ** 1020],
    "float32": [2.0 ** -145, 1e-42, 1e-38, 1e-30, 1e-20, 1.0, 1e20, 1e30, 2.0 ** 124],
    "float16": [2.0 ** -22, 1e-5, 1.0, 1e3, 2.0 ** 13],
    "bfloat16": [2.0 ** -130, 1e-30, 1.0, 1e30, 2.0 ** 124],
}
EPSILONS = [0.0, 1e-5]
BACKENDS = ["numpy", torch_param("torch")]


def _rows(dtype: str, scale: float, width: int = 8, rows: int = 3) -> np.ndarray:
    """``rows`` rows of ``width`` values of magnitude about ``scale`` (mean within 3 standard deviations),
    in float64, exactly representable in ``dtype``; the last row holds one outlier a factor 2**20 larger."""
    rng = np.random.default_rng(zlib.crc32(f"{dtype} {scale!r}".encode()))
    x = (rng.uniform(0.25, 1.0, (rows, width)) * rng.choice([-1.0, 1.0], (rows, width)) + 0.5) * scale / 2
    x[-1, 0] = x[-1, 0] * 2.0 ** -20 if scale >= 1 else x[-1, 0] * 2.0 ** 20
    return _representable(x, dtype)


def _representable(x: np.ndarray, dtype: str) -> np.ndarray:
    if dtype == "bfloat16":
        return torch.from_numpy(x).to(torch.bfloat16).double().numpy()
    return x.astype(dtype).astype(np.float64)


def _as(backend: str, x: np.ndarray, dtype: str, device: str = "cpu"):
    if backend == "numpy":
        if dtype == "bfloat16":
            return x.astype(pytest.importorskip("ml_dtypes").bfloat16)
        return x.astype(dtype)
    return torch.from_numpy(np.ascontiguousarray(x)).to(device=device, dtype=getattr(torch, dtype))


def _numpy(y) -> np.ndarray:
    if torch is not None and isinstance(y, torch.Tensor):
        return y.double().cpu().numpy()
    return np.asarray(y, dtype=np.float64)


# (name, function(lib, x, eps), exact(x, eps)): x of shape (rows, 8), statistics per row.
CASES = [
    ("layer_norm", lambda lib, x, eps: lib.layer_norm(x, eps=eps), lambda x, eps: exact_standardize(x, (1,), eps)),
    ("layer_norm over two axes", lambda lib, x, eps: lib.layer_norm(x.reshape(-1, 2, 4), axis=(1, 2), eps=eps),
     lambda x, eps: exact_standardize(x.reshape(-1, 2, 4), (1, 2), eps)),
    ("rms_norm", lambda lib, x, eps: lib.rms_norm(x, eps=eps),
     lambda x, eps: exact_standardize(x, (1,), eps, center=False)),
    ("batch_norm", lambda lib, x, eps: lib.batch_norm(x.T, axis=0, eps=eps).T,
     lambda x, eps: exact_standardize(x.T, (0,), eps).T),
    ("batch_norm ddof=1", lambda lib, x, eps: lib.batch_norm(x.T, axis=0, eps=eps, ddof=1).T,
     lambda x, eps: exact_standardize(x.T, (0,), eps, ddof=1).T),
    ("group_norm", lambda lib, x, eps: lib.group_norm(x, 2, eps=eps),
     lambda x, eps: exact_standardize(x.reshape(-1, 2, 4), (2,), eps).reshape(-1, 8)),
    ("weight_norm", lambda lib, x, eps: lib.weight_norm(x), lambda x, eps: exact_direction(x, (1,))),
]
TORCH_ONLY = [
    ("layer_norm native=False", lambda lib, x, eps: lib.layer_norm(x, eps=eps, native=False),
     lambda x, eps: exact_standardize(x, (1,), eps)),
    ("rms_norm native=False", lambda lib, x, eps: lib.rms_norm(x, eps=eps, native=False),
     lambda x, eps: exact_standardize(x, (1,), eps, center=False)),
    ("batch_norm native=False", lambda lib, x, eps: lib.batch_norm(x.T, axis=0, eps=eps, native=False).T,
     lambda x, eps: exact_standardize(x.T, (0,), eps).T),
]


def _all_cases():
    for dtype, scales in SCALES.items():
        for scale in scales:
            for eps in EPSILONS:
                for name, function, exact in CASES + TORCH_ONLY:
                    for backend in ("numpy", "torch"):
                        if backend == "numpy" and (name, function, exact) in TORCH_ONLY:
                            continue
                        # torch rounds the bfloat16 rows (_representable), for either backend
                        marks = needs_torch if backend == "torch" or dtype == "bfloat16" else ()
                        yield pytest.param(backend, dtype, scale, eps, function, exact, marks=marks,
                                           id=f"{backend}-{name}-{dtype}-{scale:.0e}-eps{eps:g}")


@pytest.mark.parametrize("backend,dtype,scale,eps,function,exact", list(_all_cases()))
def test_every_normalization_is_exact_over_the_finite_range(backend, dtype, scale, eps, function, exact):
    x = _rows(dtype, scale)
    lib = lnp if backend == "numpy" else lnt
    y = function(lib, _as(backend, x, dtype), eps)
    assert str(y.dtype).removeprefix("torch.") == dtype
    assert_accurate(_numpy(y), exact(x, eps), dtype, f"{backend} at scale {scale:g}, eps={eps}")


TORCH_CASES = [case for case in _all_cases() if case.values[0] == "torch"]


@pytest.mark.cuda
@pytest.mark.skipif(not HAVE_CUDA, reason="needs a CUDA device")
@pytest.mark.parametrize("backend,dtype,scale,eps,function,exact", TORCH_CASES)
def test_every_normalization_is_exact_over_the_finite_range_on_cuda(backend, dtype, scale, eps, function, exact):
    x = _rows(dtype, scale)
    y = function(lnt, _as(backend, x, dtype, "cuda"), eps)
    assert y.device.type == "cuda" and str(y.dtype).removeprefix("torch.") == dtype
    assert_accurate(_numpy(y), exact(x, eps), dtype, f"cuda at scale {scale:g}, eps={eps}")


def test_bfloat16_in_numpy_is_accumulated_in_float32():
    ml_dtypes = pytest.importorskip("ml_dtypes")
    x = np.array([[298.0, 300.0, 302.0, 300.0]]).astype(ml_dtypes.bfloat16)  # exact in bfloat16
    mean, var = lnp.moments(x)
    assert mean.dtype == np.float32 and float(mean[0, 0]) == 300.0 and float(var[0, 0]) == 2.0
    assert_accurate(lnp.layer_norm(x).astype(np.float64), exact_standardize(x.astype(np.float64), (1,), 1e-5),
                     "bfloat16", "numpy bfloat16")


@needs_torch
def test_bfloat16_in_torch_is_accumulated_in_float32():
    x = torch.tensor([[298.0, 300.0, 302.0, 300.0]], dtype=torch.bfloat16)
    mean, var = lnt.moments(x)
    assert mean.dtype == torch.float32 and float(mean) == 300.0 and float(var) == 2.0
    for native in (True, False):
        y = lnt.layer_norm(x, native=native)
        assert_accurate(_numpy(y), exact_standardize(x.double().numpy(), (1,), 1e-5), "bfloat16", "torch bfloat16")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype,scale", [("float32", 1.5e19), ("float32", 1e-30), ("float64", 1e150),
                                         ("float64", 1e-160), ("float64", 1e-320)])
def test_moments_are_exact_where_the_variance_is_representable(backend, dtype, scale):
    x = _representable(np.array([[1.0, -1.0, 1.0, -0.5, 0.25, 1.0]]) * scale, dtype)
    lib = lnp if backend == "numpy" else lnt
    for ddof in (0, 1):
        mean, var = (_numpy(s) for s in lib.moments(_as(backend, x, dtype), ddof=ddof))
        exact_mean, exact_var = exact_moments(x, (1,), ddof)
        exact_var = exact_var.astype(dtype).astype(np.float64)  # 0 where it underflows in dtype: expected
        np.testing.assert_allclose(mean, exact_mean, rtol=TOLERANCE[dtype], atol=0)
        np.testing.assert_allclose(var, exact_var, rtol=4 * TOLERANCE[dtype], atol=0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_variance_beyond_the_dtype_is_inf_not_nan(backend):
    lib = lnp if backend == "numpy" else lnt
    mean, var = (_numpy(s) for s in lib.moments(_as(backend, np.array([[3e38, -3e38]]), "float32")))
    assert mean[0, 0] == 0.0 and var[0, 0] == np.inf


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_issue_examples(backend):
    lib = lnp if backend == "numpy" else lnt
    y = _numpy(lib.layer_norm(_as(backend, np.array([[1e20, 1, 2, 3]]), "float32")))
    np.testing.assert_allclose(y, [[1.7320508, -0.5773503, -0.5773503, -0.5773503]], rtol=1e-6)
    y = _numpy(lib.weight_norm(_as(backend, np.array([[1e30, 1e30]]), "float32")))
    np.testing.assert_allclose(y, [[math.sqrt(0.5)] * 2], rtol=1e-7)
    tiny = np.array([[1e-30, 2e-30, 3e-30, -1e-30]])
    y = _numpy(lib.layer_norm(_as(backend, tiny, "float32"), eps=0.0))
    assert_accurate(y, exact_standardize(_representable(tiny, "float32"), (1,), 0.0), "float32", "tiny rows")


@pytest.mark.parametrize("backend", BACKENDS)
def test_only_the_out_of_range_slices_are_recomputed(backend):
    # an ordinary row next to an overflowing one keeps its fast-path value bit for bit (in torch, a fused
    # kernel whose statistics overflowed hands the whole call to the composite path, which repairs by slice)
    lib, kwargs = (lnp, {}) if backend == "numpy" else (lnt, {"native": False})
    x = np.array([[1e20, 1, 2, 3], [0.1, 0.7, -0.3, 0.2]], dtype=np.float32)
    both = _numpy(lib.layer_norm(_as(backend, x, "float32"), **kwargs))
    alone = _numpy(lib.layer_norm(_as(backend, x[1:], "float32"), **kwargs))
    np.testing.assert_array_equal(both[1:], alone)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("k", [-1000, -60, 60, 1000])
def test_backward_scales_exactly_with_the_input(backend, k, rng):
    # with eps=0 layer norm is scale-invariant, so dx(2**k x) = 2**-k dx(x): at every magnitude
    lib = lnp if backend == "numpy" else lnt
    x, dy = rng.normal(size=(3, 6)), rng.normal(size=(3, 6))
    dx = _numpy(lib.layer_norm_backward(_as(backend, dy, "float64"), _as(backend, x, "float64"), eps=0.0)[0])
    scaled = _numpy(lib.layer_norm_backward(_as(backend, dy, "float64"), _as(backend, np.ldexp(x, k), "float64"),
                                            eps=0.0)[0])
    np.testing.assert_allclose(np.ldexp(scaled, k), dx, rtol=1e-13, atol=1e-13)


@needs_torch
def test_torch_gradients_are_finite_and_right_at_the_extremes():
    x = torch.tensor([[1e20, 1.0, 2.0, 3.0]], requires_grad=True)
    for native in (True, False):
        x.grad = None
        (lnt.layer_norm(x, native=native) * torch.tensor([1.0, 2.0, 3.0, 4.0])).sum().backward()
        expected = lnp.layer_norm_backward(np.array([[1.0, 2.0, 3.0, 4.0]]), np.array([[1e20, 1.0, 2.0, 3.0]]))[0]
        np.testing.assert_allclose(x.grad.double().numpy(), expected, rtol=0, atol=1e-6 * np.abs(expected).max())


def largest_errors() -> dict[str, dict[str, float]]:
    """The measured largest error per dtype and backend over every case of
    :func:`test_every_normalization_is_exact_over_the_finite_range`, in units of the slice's largest
    |exact| value (the numbers the accuracy statement quotes)."""
    table: dict[str, dict[str, float]] = {}
    for case in _all_cases():
        backend, dtype, scale, eps, function, exact = case.values
        x = _rows(dtype, scale)
        y = function(lnp if backend == "numpy" else lnt, _as(backend, x, dtype), eps)
        error = assert_accurate(_numpy(y), exact(x, eps), dtype, f"{backend} {scale} {eps}")
        row = table.setdefault(dtype, {})
        row[backend] = max(row.get(backend, 0.0), error)
    return table


if __name__ == "__main__":  # .venv/bin/python tests/test_range.py
    for dtype, row in largest_errors().items():
        print(f"{dtype:9s} bound {TOLERANCE[dtype]:.1e}  " + "  ".join(f"{b} {e:.2e}" for b, e in row.items()))
