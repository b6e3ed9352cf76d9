r"""Three ways to compute the mean and variance of a normalization, and how accurate each is.

Every normalization in :mod:`lnlib` needs, for each slice over the axes :math:`A` (:math:`M` values), the
mean and the variance

.. math::

    \mu = \frac1M\sum_A x, \qquad \sigma^2 = \frac{1}{M-d}\sum_A (x-\mu)^2

(:math:`d` is NumPy's ``ddof``). In exact arithmetic there are many equivalent formulas; in floating point
they differ enormously when the mean is large compared with the standard deviation. This module
implements three of them, each returning ``(mean, var)`` like :func:`lnlib.numpy.moments`:

:func:`one_pass_moments` -- the textbook shortcut :math:`\sigma^2 = \frac{M}{M-d}\,(\overline{x^2}-\bar x^2)`.
    One sweep over the data accumulates :math:`\sum x` and :math:`\sum x^2`. **Unsafe**: it subtracts two
    numbers of size about :math:`\mu^2` to obtain one of size :math:`\sigma^2`, so the relative error of the
    result is about :math:`u\,(\mu/\sigma)^2` (:math:`u` the unit roundoff of the accumulation dtype,
    :math:`6\times10^{-8}` in float32), before even counting the error of the sums; at
    :math:`\mu/\sigma = 10^4` in float32 that exceeds 1 and the computed variance can be negative. Chan,
    Golub & LeVeque (1983) analyse this formula and advise against it. PyTorch's layer norm and group norm
    kernels used it (clamped at 0) until PyTorch issue 40302 (2020) showed float32 inputs with mean 100
    and standard deviation 0.01 whose computed variance was exactly 0; the kernels now use Welford's
    algorithm.
:func:`two_pass_moments` -- the mean first, then the mean of the squared *centred* values. It reads the
    data twice. Once :math:`\mu` is known, :math:`x-\mu` is computed with at most one rounding and the
    sum of squares has no cancellation; what remains is the error :math:`\delta` of the computed mean,
    of size about :math:`u\mu`, which shifts the variance by :math:`\delta^2`. The relative error is
    therefore a few :math:`u` plus about :math:`(u\mu/\sigma)^2`: *quadratic* in the small number
    :math:`u\mu/\sigma`, where one-pass is :math:`(u\mu/\sigma)^2/u`, a factor :math:`1/u` worse
    (Chan, Golub & LeVeque 1983). This is :func:`lnlib.numpy.moments`, the algorithm every
    normalization of :mod:`lnlib.numpy` uses; this module only calls it.
:func:`welford_moments` -- Welford's (1962) online recurrence, one value at a time,

    .. math::

        \delta_k = x_k - m_{k-1},\qquad m_k = m_{k-1} + \frac{\delta_k}{k},\qquad
        S_k = S_{k-1} + \delta_k\,(x_k - m_k),\qquad \sigma^2 = \frac{S_M}{M-d}.

    One pass and no catastrophic cancellation: every term added to :math:`S` is a product of two centred
    quantities, non-negative and of size :math:`\sigma^2`. Its weakness is the running mean
    :math:`m_k`, rounded at every step to the spacing of the numbers near :math:`\mu`: each term
    :math:`x_k - m_k` then carries an error of about :math:`u\mu`, so the relative error of the variance
    is *first* order in :math:`u\mu/\sigma` (in float32, measured: a fraction of
    :math:`u\mu/\sigma`, nearly independent of :math:`M`). Better than one-pass by a factor
    :math:`\mu/\sigma`, worse than two-pass by a factor :math:`\sigma/(u\mu)`. Kernels that use Welford
    (PyTorch's CPU layer norm, NVIDIA apex) run it on short chunks and merge the chunks with Chan's
    pairwise formula, which keeps running means short-lived and most of the accuracy.

All three accumulate in an explicit dtype: the input's own dtype for float32 and float64 (so float32
behaviour is what you see), float32 for float16 and bfloat16 input (the compute dtype of every
:mod:`lnlib.numpy` function, :data:`lnlib._checks.ACCUMULATION_DTYPES`). Pass ``x.astype(np.float64)`` to get a float64 computation. ``(mean, var)`` have that dtype.

Shapes: with ``keepdims=True`` (the default, as :func:`lnlib.numpy.moments`) the reduced axes are kept
with size 1, so the statistics broadcast against ``x``; with ``keepdims=False`` they are dropped.
:func:`standardize_with` turns any of the three results into normalized values.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .._checks import (broadcast_shapes, check_ddof, check_eps, check_reduction_size, feature_shape, kept_shape, normalize_axis,
                       reduced_size)
from ._arrays import as_float_array, compute_dtype
from .normalization import moments

Axis = int | tuple[int, ...]
Moments = tuple[np.ndarray, np.ndarray]


def _prepare(x: object, axis: object, ddof: object, what: str) -> tuple[np.ndarray, tuple[int, ...], int]:
    """Validate the common arguments; returns ``(x in its accumulation dtype, axes, ddof)``."""
    x = as_float_array(x)
    axes = normalize_axis(axis, x.ndim)
    ddof = check_ddof(ddof)
    check_reduction_size(x.shape, axes, minimum=ddof + 1, what=what)
    return x.astype(compute_dtype(x.dtype), copy=False), axes, ddof


def _squeeze(mean: np.ndarray, var: np.ndarray, axes: tuple[int, ...], keepdims: bool) -> Moments:
    if keepdims:
        return mean, var
    return np.squeeze(mean, axis=axes), np.squeeze(var, axis=axes)


def one_pass_moments(x: object, *, axis: Axis = -1, ddof: int = 0, keepdims: bool = True) -> Moments:
    r"""``(mean, var)`` from one sweep: :math:`\sigma^2 = \frac{M}{M-d}(\overline{x^2} - \bar x^2)`.

    Numerically unsafe (module docstring): the relative error grows like :math:`u\,(\mu/\sigma)^2`, and
    the result may be negative. It is returned as computed, not clamped, so the failure stays visible.
    Both sums use NumPy's reduction in the accumulation dtype (pairwise summation along a contiguous axis,
    which is already much better than a sequential sum; the cancellation remains).
    """
    xc, axes, ddof = _prepare(x, axis, ddof, "one_pass_moments")
    size = reduced_size(xc.shape, axes)
    dtype = xc.dtype
    mean = np.mean(xc, axis=axes, dtype=dtype, keepdims=True)
    mean_square = np.mean(np.square(xc), axis=axes, dtype=dtype, keepdims=True)
    var = (mean_square - np.square(mean)) * dtype.type(size / (size - ddof))
    return _squeeze(mean, var, axes, keepdims)


def two_pass_moments(x: object, *, axis: Axis = -1, ddof: int = 0, keepdims: bool = True) -> Moments:
    r"""``(mean, var)`` in two passes: the mean, then the mean of the centred squares.

    This is exactly :func:`lnlib.numpy.moments` (the algorithm all :mod:`lnlib.numpy` normalizations
    use), with the same argument checks as the other two algorithms of this module.
    """
    _, axes, ddof = _prepare(x, axis, ddof, "two_pass_moments")
    return moments(x, axis=axes, ddof=ddof, keepdims=keepdims)


def welford_moments(x: object, *, axis: Axis = -1, ddof: int = 0, keepdims: bool = True) -> Moments:
    r"""``(mean, var)`` by Welford's online recurrence, sequential over the reduced values.

    The values of each slice are visited one at a time in C order of the reduced axes (for ``axis=-1``:
    left to right); the recurrence runs for all slices at once (vectorized over the other axes). Every
    operation rounds to the accumulation dtype:

    .. math::

        \delta_k = x_k - m_{k-1},\quad m_k = m_{k-1} + \delta_k / k,\quad
        S_k = S_{k-1} + \delta_k (x_k - m_k),\quad \sigma^2 = S_M/(M-d).

    Cost: :math:`M` Python-level steps, each a few vectorized operations, so it is meant for measuring
    accuracy, not for speed.
    """
    xc, axes, ddof = _prepare(x, axis, ddof, "welford_moments")
    size = reduced_size(xc.shape, axes)
    dtype = xc.dtype
    rest = feature_shape(xc.shape, axes)
    values = np.moveaxis(xc, axes, tuple(range(-len(axes), 0))).reshape(rest + (size,))
    mean = np.zeros(rest, dtype=dtype)
    sum_squares = np.zeros(rest, dtype=dtype)
    for k in range(size):
        value = values[..., k]
        delta = value - mean
        mean += delta / dtype.type(k + 1)
        sum_squares += delta * (value - mean)
    var = sum_squares / dtype.type(size - ddof)
    shape = kept_shape(xc.shape, axes)
    return _squeeze(mean.reshape(shape), var.reshape(shape), axes, keepdims)


#: The three algorithms by name, in the order the book shows them.
ALGORITHMS: dict[str, Callable[..., Moments]] = {
    "one-pass": one_pass_moments,
    "two-pass": two_pass_moments,
    "welford": welford_moments,
}


def standardize_with(x: object, mean: object, var: object, *, eps: float = 1e-5) -> np.ndarray:
    r"""Normalized values :math:`(x-\mu)/\sqrt{\max(\sigma^2, 0)+\epsilon}` from given statistics.

    ``mean`` and ``var`` must broadcast against ``x`` without changing its shape (keep the reduced axes,
    ``keepdims=True``). The arithmetic runs in the dtype of ``var`` (the accumulation dtype of the
    algorithm that produced it), so a float32 variance gives a float32 normalization. A negative variance
    (possible only from :func:`one_pass_moments`) is clamped to 0, as PyTorch's one-pass CPU kernel did;
    with ``eps=0`` a zero variance gives NaN or inf (NumPy warns).
    """
    x = as_float_array(x)
    mean = as_float_array(mean, name="mean")
    var = as_float_array(var, name="var")
    eps = check_eps(eps)
    for name, stat in (("mean", mean), ("var", var)):
        if broadcast_shapes(stat.shape, x.shape) != x.shape:
            raise ValueError(f"{name} with shape {stat.shape} does not broadcast against x with shape {x.shape} "
                             f"without changing it; expected the statistics with keepdims=True")
    dtype = var.dtype
    rstd = dtype.type(1) / np.sqrt(np.maximum(var, dtype.type(0)) + dtype.type(eps))
    return (x.astype(dtype, copy=False) - mean.astype(dtype, copy=False)) * rstd
