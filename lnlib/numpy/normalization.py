r"""Standardization over named axes: the one computation behind batch norm and layer norm.

Batch norm (Ioffe & Szegedy 2015) and layer norm (Ba, Kiros & Hinton 2016, eqs. 2 and 3) compute the
*same* function of an array; they only disagree about which axes the statistics run over. For an input
:math:`x` and a set of axes :math:`A` holding :math:`M` values per statistic,

.. math::

    \mu = \frac{1}{M}\sum_{A} x, \qquad
    \sigma^2 = \frac{1}{M - d}\sum_{A} (x - \mu)^2, \qquad
    r = \frac{1}{\sqrt{\sigma^2 + \epsilon}}, \qquad
    \hat x = (x - \mu)\, r, \qquad
    y = \gamma \odot \hat x + \beta .

:math:`d` is NumPy's ``ddof``: 0 for the biased variance of the paper (eq. 3) and of the authors' code,
1 for the unbiased estimator the paper uses for batch norm at batch size 4 (§6.6). :math:`\epsilon` sits
*inside* the square root, as in the authors' Theano code (``layers.py``: ``sqrt(x.var(1) + 1e-5)``).

**Variance in two passes.** :math:`\sigma^2` is the mean of the *centred* values, never
:math:`\mathbb{E}[x^2]-\mathbb{E}[x]^2`: in float32 at mean :math:`10^4` and standard deviation 1 that
difference of two numbers near :math:`10^8` loses every significant digit.

**Backward.** Write :math:`g = \gamma \odot \partial L/\partial y` for the gradient reaching
:math:`\hat x`. Since :math:`\partial \mu/\partial x_j = 1/M` and
:math:`\partial \sigma^2/\partial x_j = 2(x_j-\mu)/(M-d)`,

.. math::

    \frac{\partial L}{\partial x}
      = r\left(g - \frac{1}{M}\sum_A g - \hat x\,\frac{1}{M-d}\sum_A g\,\hat x\right),
    \qquad
    \frac{\partial L}{\partial \gamma} = \sum_{\text{broadcast}} \frac{\partial L}{\partial y}\,\hat x,
    \qquad
    \frac{\partial L}{\partial \beta} = \sum_{\text{broadcast}} \frac{\partial L}{\partial y},

where "broadcast" means the axes along which :math:`\gamma` (or :math:`\beta`) was repeated. :math:`\epsilon`
only enters through :math:`r` and :math:`\hat x`, so the formula is exact for every :math:`\epsilon \ge 0`.
The bracket subtracts from :math:`g` its projections on the constant vector and (for :math:`d = 0`) on
:math:`\hat x`: within every slice over :math:`A` the input gradient is orthogonal to the constant vector,
and its component along :math:`\hat x` is :math:`r\,(g\cdot\hat x)\,\epsilon/(\sigma^2+\epsilon)`, zero
only when :math:`\epsilon = 0` (chapter 3).

**Dtypes: one accumulation rule** (both backends, :data:`lnlib._checks.ACCUMULATION_DTYPES`): float32
in gives float32 out, float64 gives float64; the two 16-bit formats, float16 and bfloat16 (NumPy's through
``ml_dtypes``), are normalized with every statistic in float32 and the result is cast back. So bfloat16
values 300 ± 2 have mean 300 and variance 2, not what bfloat16 sums give (mean 32, variance 8192).

**Exact over the whole finite range.** Squaring overflows for float32 values above about
:math:`10^{19}` (and the sum for values near the largest float), and underflows below about
:math:`10^{-19}` (float64: :math:`10^{154}` and :math:`10^{-154}`). Every statistic is therefore checked
after the fast two-pass computation: where :math:`r = 1/\sqrt{\sigma^2+\epsilon}` is not in
:math:`(0, r_{\max}]` (an overflow, a NaN, or :math:`\sigma^2+\epsilon` below ``tiny/u``, where
subnormal squares lose digits; :data:`lnlib._checks.VARIANCE_FLOOR`), *that slice* is recomputed on its
values scaled by a power of two (:func:`rescaled_standardize`: exact scaling, :math:`\epsilon` scaled with
the data). The common case pays one min over :math:`r` (two when :math:`\epsilon` is below the floor). The
accuracy statement, tested against exact decimal arithmetic (``tests/test_range.py``,
``tests/test_properties.py``; ``python tests/test_range.py`` prints the measured errors): for **every
finite input**, subnormal numbers included, each slice's output satisfies

.. math::

    |\hat x - \hat x_{\text{exact}}| \le T \,(1 + |\mu|/\sigma)\,\max_A|\hat x_{\text{exact}}|
        + 2\,\text{tiny}, \qquad
    \begin{array}{lccc}
    \text{dtype} & \text{accumulated in} & T & \text{largest measured} \\
    \text{float64} & \text{float64} & 4\times10^{-15} & 4.0\times10^{-16} \\
    \text{float32} & \text{float32} & 2\times10^{-6} & 3.8\times10^{-7} \\
    \text{float16} & \text{float32} & 2\times10^{-3} & 6.7\times10^{-4} \\
    \text{bfloat16} & \text{float32} & 1.6\times10^{-2} & 7.4\times10^{-3}
    \end{array}

(tiny: the dtype's smallest normal number, relevant only for outputs that small; :math:`\sigma` includes
:math:`\epsilon`). The factor :math:`1+|\mu|/\sigma` is the conditioning of centring, the same for any
algorithm: rounding the input alone costs as much. Quantities that are *returned* in the units of
:math:`x` are exact where representable and overflow to inf (or underflow) only where their true value lies
outside the dtype: the variance of :func:`moments` (float32 values near :math:`3\times10^{38}` have a
variance near :math:`10^{77}`: inf), and gradients, which scale like :math:`1/\sigma`.

Documented results for unusual inputs: a slice containing NaN or ±inf comes out NaN (other slices are not
affected); with ``eps=0`` a constant slice comes out NaN (0/0, NumPy warns); an input with zero
*independent* slices (e.g. shape ``(0, H)`` with ``axis=-1``) gives an empty output.
"""

from __future__ import annotations

import numpy as np

from .._checks import (LARGEST_FLOOR, RSTD_CEILING, ceiling_needed, check_bool, check_ddof, check_eps, check_reduction_size, normalize_axis,
                       reduced_size)
from . import rowwise
from ._arrays import as_float_array, as_param, compute_dtype, sum_to_shape


def moments(x: object, *, axis: int | tuple[int, ...] = -1, ddof: int = 0, keepdims: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Mean and variance of ``x`` over ``axis``, by two passes (mean first, then the centred squares).

    ``ddof`` as in :func:`numpy.var`. The statistics have the compute dtype (float32 for float16 and bfloat16 input).
    """
    x = as_float_array(x)
    axes = normalize_axis(axis, x.ndim)
    ddof = check_ddof(ddof)
    check_reduction_size(x.shape, axes, minimum=ddof + 1, what="moments")
    check_bool(keepdims, name="keepdims")
    xc = x.astype(compute_dtype(x.dtype), copy=False)
    with np.errstate(all="ignore"):  # whatever goes wrong here is detected and redone below
        mean, _, var = _statistics(xc, axes, ddof, True)
        inverse = 1.0 / np.sqrt(var)  # a zero variance is redone too: it may be an underflow
        if not rstd_in_range(inverse, 0.0):  # the rescaled x_hat is not used: its 0/0 need not warn
            _, _, safe_mean, safe_var = rescaled_standardize(xc, axes, 0.0, ddof, True)
            redo = rstd_out_of_range(inverse)
            mean, var = np.where(redo, safe_mean, mean), np.where(redo, safe_var, var)
    if not keepdims:
        mean, var = np.squeeze(mean, axis=axes), np.squeeze(var, axis=axes)
    return mean, var


def _statistics(xc: np.ndarray, axes: tuple[int, ...], ddof: int, center: bool
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(mean, x - mean, var)`` of ``xc`` (already in the compute dtype) by two passes, as computed: the
    caller checks them with :func:`rstd_in_range`. Without centering the mean is 0 and var the mean square."""
    size = reduced_size(xc.shape, axes)
    mean = xc.sum(axis=axes, keepdims=True) / xc.dtype.type(size) if center else np.zeros((), xc.dtype)
    centred = xc - mean if center else xc
    var = np.square(centred).sum(axis=axes, keepdims=True) / xc.dtype.type(size - ddof)
    return mean, centred, var


def rstd_in_range(rstd: np.ndarray, eps: float) -> bool:
    """Whether every ``r = 1/sqrt(var + eps)`` of ``rstd`` comes from statistics in the accurate range
    (:data:`lnlib._checks.RSTD_CEILING`): one min over the statistics when ``eps`` is at least the floor."""
    if rstd.size == 0:
        return True
    if eps >= LARGEST_FLOOR:  # the common case: no ceiling to check in any dtype
        return float(rstd.min()) > 0
    name = rstd.dtype.name
    return float(rstd.min()) > 0 and (not ceiling_needed(eps, name) or float(rstd.max()) <= RSTD_CEILING[name])


def rstd_out_of_range(rstd: np.ndarray) -> np.ndarray:
    """The slices :func:`rstd_in_range` rejects: ``r`` not in ``(0, RSTD_CEILING]`` (overflow, underflow, NaN)."""
    return ~((rstd > 0) & (rstd <= RSTD_CEILING[rstd.dtype.name]))


def rescaled_standardize(xc: np.ndarray, axes: tuple[int, ...], eps: float, ddof: int = 0, center: bool = True
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    r"""``(x_hat, r, mean, var)`` computed on each slice scaled by a power of two: exact for every finite input.

    With :math:`2^{e}` the binary exponent of the slice's largest magnitude, the values
    :math:`x' = 2^{-e}x` lie in :math:`(-1, 1)` and the scaling is exact, so the two-pass statistics of
    :math:`x'` can neither overflow nor underflow harmfully. Normalization is scale-invariant once
    :math:`\epsilon` is scaled with the data:
    :math:`\hat x = (x'-\mu')/\sqrt{\sigma'^2 + 2^{-2e}\epsilon}`, and the denominator is evaluated as
    :math:`2^{h}\,\mathrm{hypot}(2^{-h}\sigma', 2^{-e-h}\sqrt\epsilon)` with
    :math:`h = \max(0, \lfloor\log_2\sqrt\epsilon
floor + 1 - e)`, so that :math:`2^{-2e}\epsilon` is never
    formed (it overflows when the data are tiny and :math:`\epsilon` is not). ``r``, ``mean`` and ``var``
    are returned in the units of ``x``: they overflow (inf) or underflow only where their true value lies
    outside the dtype's range. ``xc`` must be in the compute dtype; a slice holding NaN or inf stays NaN.
    """
    amax = np.abs(xc).max(axis=axes, keepdims=True)
    e = np.frexp(amax)[1]
    mean_s, centred_s, var_s = _statistics(np.ldexp(xc, -e), axes, ddof, center)
    root_eps = np.sqrt(xc.dtype.type(eps))
    h = np.maximum(np.frexp(root_eps)[1] - e, 0) if root_eps > 0 else np.zeros_like(e)
    denominator = np.hypot(np.ldexp(np.sqrt(var_s), -h), np.ldexp(root_eps, -e - h))
    x_hat = np.ldexp(centred_s, -h) / denominator
    with np.errstate(over="ignore", under="ignore"):  # r, mean, var out of the dtype's range: inf or 0
        rstd = np.ldexp(xc.dtype.type(1) / denominator, -(e + h))
        return x_hat, rstd, np.ldexp(mean_s, e), np.ldexp(var_s, 2 * e)


def standardize(x: np.ndarray, axes: tuple[int, ...], eps: float, ddof: int = 0,
                center: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """``(x_hat, r)``: the standardized input and the reciprocal standard deviation (kept dims).

    ``x`` must already be validated; this is the shared kernel of the public functions. With
    ``center=False`` the mean is taken to be 0 and the "variance" is the mean square (RMSNorm). Slices
    whose statistics left the accurate range (overflow, or ``var + eps`` below
    :data:`~lnlib._checks.VARIANCE_FLOOR`) are recomputed by :func:`rescaled_standardize`; the others are
    not touched, so the common case costs one min over the reciprocal standard deviations.
    """
    xc = x.astype(compute_dtype(x.dtype), copy=False)
    with np.errstate(all="ignore"):  # whatever goes wrong here is detected and redone below
        _, centred, var = _statistics(xc, axes, ddof, center)
        rstd = 1.0 / np.sqrt(var + np.asarray(eps, dtype=var.dtype))
        x_hat = centred * rstd
        if rstd_in_range(rstd, eps):
            return x_hat, rstd
        redo = rstd_out_of_range(rstd)
    safe_hat, safe_rstd, _, _ = rescaled_standardize(xc, axes, eps, ddof, center)
    return np.where(redo, safe_hat, x_hat), np.where(redo, safe_rstd, rstd)


def normalize(x: object, gamma: object = None, beta: object = None, *, axis: int | tuple[int, ...], eps: float,
              ddof: int = 0, center: bool = True, minimum: int = 1, what: str = "normalize",
              out: np.ndarray | None = None) -> np.ndarray:
    """``gamma * (x - mean) / sqrt(var + eps) + beta`` with statistics over ``axis``.

    ``center=False`` drops the mean: ``gamma * x / sqrt(mean(x**2) + eps) + beta`` (RMSNorm). ``out``, if
    given, is an array of x's shape and dtype that receives the result (and is returned). Statistics over
    the last axis with per-unit parameters run through the row-blocked kernels of
    :mod:`lnlib.numpy.rowwise` (same arithmetic, organised for cache reuse).
    """
    x = as_float_array(x)
    axes = normalize_axis(axis, x.ndim)
    eps, ddof = check_eps(eps), check_ddof(ddof)
    check_reduction_size(x.shape, axes, minimum=max(minimum, ddof + 1), what=what)
    _check_out(out, x, gamma, beta)
    gamma = as_param(gamma, x, name="gamma")
    beta = as_param(beta, x, name="beta")
    if rowwise.applies(x, axes, gamma, beta, ddof):
        return rowwise.forward(x, gamma, beta, eps, center, out=out)
    y, _ = standardize(x, axes, eps, ddof, center)
    if gamma is not None:
        y *= gamma
    if beta is not None:
        y += beta
    if out is not None:
        np.copyto(out, y, casting="same_kind")
        return out
    return y.astype(x.dtype, copy=False)


def _check_out(out: object, x: np.ndarray, gamma: object, beta: object) -> None:
    """``out`` must be a writable array of x's shape and dtype that shares no memory with ``x``, ``gamma``
    or ``beta``, except that it may be *exactly* x's memory (``out=x``, or a view such as ``x[:, :]`` with
    the same start, shape and strides): that normalizes in place, as documented."""
    if out is None:
        return
    if not isinstance(out, np.ndarray):
        raise TypeError(f"out must be a NumPy array or None, got {type(out).__name__}")
    if out.shape != x.shape or out.dtype != x.dtype:
        raise ValueError(f"out must have x's shape {x.shape} and dtype {x.dtype}; got {out.shape}, {out.dtype}")
    if not out.flags.writeable:
        raise ValueError("out is read-only (out.flags.writeable is False); expected a writable array of x's "
                         "shape and dtype")
    in_place = np.may_share_memory(out, x) and out.ctypes.data == x.ctypes.data and out.strides == x.strides
    for name, other in (("x", None if in_place else x), ("gamma", gamma), ("beta", beta)):
        if isinstance(other, np.ndarray) and np.may_share_memory(out, other) and np.shares_memory(out, other):
            raise ValueError(
                f"out overlaps {name}: the result would overwrite {name} while it is still being read; expected "
                f"an out that shares no memory with x, gamma or beta (or exactly x's memory, out=x, to normalize "
                f"in place)")


def normalize_backward(dy: object, x: object, gamma: object = None, beta: object = None, *,
                       axis: int | tuple[int, ...], eps: float, ddof: int = 0, center: bool = True,
                       minimum: int = 1, what: str = "normalize_backward"
                       ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """``(dx, dgamma, dbeta)`` for :func:`normalize`, from the closed form in the module docstring.

    ``beta`` is only used for its shape (the shape of ``dbeta``); ``dgamma``/``dbeta`` are ``None`` when
    ``gamma``/``beta`` are.
    """
    x = as_float_array(x)
    dy = as_float_array(dy, name="dy")
    if dy.shape != x.shape:
        raise ValueError(f"dy must have the shape of x, {x.shape}; got {dy.shape}")
    axes = normalize_axis(axis, x.ndim)
    eps, ddof = check_eps(eps), check_ddof(ddof)
    check_reduction_size(x.shape, axes, minimum=max(minimum, ddof + 1), what=what)
    gamma = as_param(gamma, x, name="gamma")
    beta = as_param(beta, x, name="beta")
    fast = rowwise.backward(dy, x, gamma, eps, center) if rowwise.applies(x, axes, gamma, beta, ddof) else None
    if fast is not None:
        dx, dgamma, dbeta = fast
        return (dx, None if gamma is None else dgamma.reshape(gamma.shape),
                None if beta is None else dbeta.reshape(beta.shape))
    x_hat, rstd = standardize(x, axes, eps, ddof, center)
    dx, dgamma, dbeta = gradients(dy, x_hat, rstd, gamma, None if beta is None else beta.shape, axes, ddof,
                                  center)
    return _to_dtype(dx, x.dtype), _to_dtype(dgamma, x.dtype), _to_dtype(dbeta, x.dtype)


def gradients(dy: np.ndarray, x_hat: np.ndarray, rstd: np.ndarray, gamma: np.ndarray | None,
              beta_shape: tuple[int, ...] | None, axes: tuple[int, ...], ddof: int = 0, center: bool = True
              ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """The closed-form backward from the saved ``x_hat`` and ``rstd`` (compute dtype, no casting back).

    Without centering the :math:`\\frac1M\\sum_A g` term is absent (the mean is not a function of x).
    """
    dy = dy.astype(x_hat.dtype, copy=False)
    g = dy * gamma if gamma is not None else dy
    size = reduced_size(x_hat.shape, axes)
    centred_g = g - g.mean(axis=axes, keepdims=True) if center else g
    dx = rstd * (centred_g - x_hat * ((g * x_hat).sum(axis=axes, keepdims=True) / (size - ddof)))
    dgamma = None if gamma is None else sum_to_shape(dy * x_hat, gamma.shape)
    dbeta = None if beta_shape is None else sum_to_shape(dy, beta_shape)
    return dx, dgamma, dbeta


def _to_dtype(array: np.ndarray | None, dtype: np.dtype) -> np.ndarray | None:
    return None if array is None else array.astype(dtype, copy=False)
