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
only when :math:`\epsilon = 0` (chapter 5).

Dtypes: float32 in gives float32 out, float64 gives float64; float16 is computed in float32 and cast back.
Documented results for unusual inputs: a slice containing NaN or ±inf comes out NaN (other slices are not
affected); with ``eps=0`` a constant slice comes out NaN (0/0, NumPy warns); an input with zero
*independent* slices (e.g. shape ``(0, H)`` with ``axis=-1``) gives an empty output.
"""

from __future__ import annotations

import numpy as np

from .._checks import check_ddof, check_eps, check_reduction_size, normalize_axis, reduced_size
from . import rowwise
from ._arrays import as_float_array, as_param, compute_dtype, sum_to_shape


def moments(x: object, *, axis: int | tuple[int, ...] = -1, ddof: int = 0, keepdims: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Mean and variance of ``x`` over ``axis``, by two passes (mean first, then the centred squares).

    ``ddof`` as in :func:`numpy.var`. The statistics have the compute dtype (float32 for float16 input).
    """
    x = as_float_array(x)
    axes = normalize_axis(axis, x.ndim)
    ddof = check_ddof(ddof)
    check_reduction_size(x.shape, axes, minimum=ddof + 1, what="moments")
    xc = x.astype(compute_dtype(x.dtype), copy=False)
    mean = xc.mean(axis=axes, keepdims=True)
    centred = xc - mean
    var = np.square(centred).sum(axis=axes, keepdims=True) / (reduced_size(x.shape, axes) - ddof)
    if not keepdims:
        mean, var = np.squeeze(mean, axis=axes), np.squeeze(var, axis=axes)
    return mean, var


def standardize(x: np.ndarray, axes: tuple[int, ...], eps: float, ddof: int = 0,
                center: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """``(x_hat, r)``: the standardized input and the reciprocal standard deviation (kept dims).

    ``x`` must already be validated; this is the shared kernel of the public functions. With
    ``center=False`` the mean is taken to be 0 and the "variance" is the mean square (RMSNorm).
    """
    if center:
        mean, var = moments(x, axis=axes, ddof=ddof)
    else:
        mean = 0.0
        var = np.square(x.astype(compute_dtype(x.dtype), copy=False)).mean(axis=axes, keepdims=True)
    rstd = 1.0 / np.sqrt(var + np.asarray(eps, dtype=var.dtype))
    x_hat = (x.astype(var.dtype, copy=False) - mean) * rstd
    return x_hat, rstd


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
    gamma = as_param(gamma, x, name="gamma")
    beta = as_param(beta, x, name="beta")
    _check_out(out, x)
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


def _check_out(out: object, x: np.ndarray) -> None:
    if out is None:
        return
    if not isinstance(out, np.ndarray):
        raise TypeError(f"out must be a NumPy array or None, got {type(out).__name__}")
    if out.shape != x.shape or out.dtype != x.dtype:
        raise ValueError(f"out must have x's shape {x.shape} and dtype {x.dtype}; got {out.shape}, {out.dtype}")
    if np.shares_memory(out, x) and out is not x:
        raise ValueError("out must not partly overlap x (pass out=x to normalize in place)")


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
    if rowwise.applies(x, axes, gamma, beta, ddof):
        dx, dgamma, dbeta = rowwise.backward(dy, x, gamma, eps, center)
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
