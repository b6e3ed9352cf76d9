r"""Standardization over named axes, PyTorch twin of :mod:`lnlib.numpy.normalization`.

The maths (forward, two-pass variance, the closed-form backward) is derived in the NumPy module's
docstring; this file follows it line by line with torch operations, so it runs on any device. So do the
dtype rule (float16 and bfloat16 accumulated in float32) and the accuracy statement over the whole finite
range, with the same table of bounds: slices whose statistics overflowed or underflowed are recomputed by
:func:`rescaled_standardize`, and a fused kernel whose statistics did (PyTorch's own ``F.layer_norm``
returns NaN for a float32 row holding :math:`10^{20}`) hands the call to the composite path.

Autograd: :func:`normalize` is a :class:`torch.autograd.Function` whose ``backward`` is the hand-derived
formula (:func:`gradients`), not autograd's trace of the forward. The backward is itself computed from
saved tensors; when a second derivative is asked for (``create_graph=True``) it recomputes them from ``x``
with differentiable operations, so autograd differentiates the backward itself and higher derivatives
are exact (checked with ``gradgradcheck``). The native kernels below have PyTorch's own double backward;
group norm and weight norm are traced by autograd around these. So every differentiable function of
:mod:`lnlib.torch` supports higher derivatives on every path. The explicit ``*_backward`` functions are
not differentiable: they compute under ``torch.no_grad`` (their results do not require grad, and
``torch.autograd.grad`` through them says so).

Native kernels (``native=True``, the default). Two layouts are so common that PyTorch has a fused kernel
for them, and :func:`normalize` calls it instead of the composite path:

* statistics over the trailing axes with gain and bias of exactly those axes' shape (or none) is
  ``torch.nn.functional.layer_norm`` (and ``rms_norm`` without centering, where PyTorch has it);
* statistics over every axis but axis 1 with per-channel parameters (shape ``(1, C, 1, ...)``, ``(C, 1,
  ...)`` or ``(C,)`` for 2-D input) is ``torch.nn.functional.batch_norm`` in training mode.

They are called through ``torch.native_layer_norm``, ``torch._fused_rms_norm`` and
``torch.native_batch_norm``, which also return :math:`r`, so checking the statistics costs one min over
:math:`r` (and, on CUDA, one synchronization). Both compute the same definition (biased variance,
:math:`\epsilon` inside the square root, same affine step), with their own summation order
(Welford-style moments on the CPU): results agree with the composite path to rounding, which the tests
check. They are one fused pass instead of about ten tensor operations, and
their backward passes are compiled kernels: this is what makes ``lnlib.torch`` as fast as ``torch.nn``
(chapter 16). ``native=False`` forces the composite path with the hand-derived backward for every layout;
the unbiased variance (``ddof=1``) and every other layout always use it.
"""

from __future__ import annotations

import functools
import math

import torch

from .._checks import (LARGEST_FLOOR, RSTD_CEILING, ceiling_needed, check_bool, check_ddof, check_eps, check_reduction_size, normalize_axis,
                       reduced_size)
from ._tensors import as_float_tensor, as_param, compute_dtype, dtype_name, sum_to_shape


def moments(x: torch.Tensor, *, axis: int | tuple[int, ...] = -1, ddof: int = 0,
            keepdims: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and variance of ``x`` over ``axis``, by two passes (mean first, then the centred squares)."""
    x = as_float_tensor(x)
    axes = normalize_axis(axis, x.ndim)
    ddof = check_ddof(ddof)
    check_reduction_size(tuple(x.shape), axes, minimum=ddof + 1, what="moments")
    check_bool(keepdims, name="keepdims")
    mean, _, var = _moments(x, axes, ddof)
    if not keepdims:
        mean, var = mean.squeeze(axes), var.squeeze(axes)
    return mean, var


def _moments(x: torch.Tensor, axes: tuple[int, ...], ddof: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(mean, x - mean, var)`` in the compute dtype, for already validated arguments, accurate over the
    whole finite range (slices whose variance left the accurate range are recomputed rescaled)."""
    xc = _as(x, compute_dtype(x.dtype))
    mean, centred, var = _statistics(xc, axes, ddof, True)
    inverse = torch.rsqrt(var)  # a zero variance is redone too: it may be an underflow
    if rstd_in_range(inverse, 0.0):
        return mean, centred, var
    _, _, safe_mean, safe_var = rescaled_standardize(xc, axes, 0.0, ddof, True)
    redo = rstd_out_of_range(inverse)
    return torch.where(redo, safe_mean, mean), centred, torch.where(redo, safe_var, var)


def _statistics(xc: torch.Tensor, axes: tuple[int, ...], ddof: int, center: bool
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(mean, x - mean, var)`` of ``xc`` (already in the compute dtype) by two passes, as computed: the
    caller checks them with :func:`rstd_in_range`. Without centering the mean is 0 and var the mean
    square. Means are written ``sum / n``: the same arithmetic as ``Tensor.mean``, at a lower fixed cost per
    call, which matters for the small batches of the experiments."""
    size = reduced_size(tuple(xc.shape), axes)
    mean = xc.sum(dim=axes, keepdim=True) / size if center else xc.new_zeros(())
    centred = xc - mean if center else xc
    var = (centred * centred).sum(dim=axes, keepdim=True) / (size - ddof)
    return mean, centred, var


def rstd_in_range(rstd: torch.Tensor, eps: float) -> bool:
    """Whether every ``r = 1/sqrt(var + eps)`` of ``rstd`` comes from statistics in the accurate range
    (:data:`lnlib._checks.RSTD_CEILING`): one min over the statistics when ``eps`` is at least the floor
    (and, on CUDA, one synchronization). The twin of :func:`lnlib.numpy.normalization.rstd_in_range`."""
    if rstd.numel() == 0:
        return True
    if eps >= LARGEST_FLOOR:  # the common case: no ceiling to check in any dtype
        return float(rstd.detach().min()) > 0
    name = dtype_name(compute_dtype(rstd.dtype))
    rstd = rstd.detach()
    return float(rstd.min()) > 0 and (not ceiling_needed(eps, name) or float(rstd.max()) <= RSTD_CEILING[name])


def rstd_out_of_range(rstd: torch.Tensor) -> torch.Tensor:
    """The slices :func:`rstd_in_range` rejects: ``r`` not in ``(0, RSTD_CEILING]`` (overflow, underflow, NaN)."""
    rstd = rstd.detach()
    return ~((rstd > 0) & (rstd <= RSTD_CEILING[dtype_name(compute_dtype(rstd.dtype))]))


def _ldexp(t: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """``t * 2**k`` for an integer tensor ``k``, exact (three factors, so no power of two overflows)."""
    a = torch.div(k, 3, rounding_mode="floor")
    b = torch.div(k - a, 2, rounding_mode="floor")
    return t * torch.exp2(a.to(t.dtype)) * torch.exp2(b.to(t.dtype)) * torch.exp2((k - a - b).to(t.dtype))


def rescaled_standardize(xc: torch.Tensor, axes: tuple[int, ...], eps: float, ddof: int = 0, center: bool = True
                         ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(x_hat, r, mean, var)`` computed on each slice scaled by a power of two: exact for every finite input.

    The twin of :func:`lnlib.numpy.normalization.rescaled_standardize` (whose docstring has the maths),
    differentiable: the scale factors are powers of two, constant to first order.
    """
    e = torch.frexp(xc.detach().abs().amax(dim=axes, keepdim=True)).exponent
    mean_s, centred_s, var_s = _statistics(_ldexp(xc, -e), axes, ddof, center)
    root_eps = math.sqrt(float(torch.tensor(eps, dtype=xc.dtype)))
    h = (math.frexp(root_eps)[1] - e).clamp(min=0) if root_eps > 0 else torch.zeros_like(e)
    denominator = torch.hypot(_ldexp(var_s.sqrt(), -h), _ldexp(torch.full_like(var_s, root_eps), -e - h))
    x_hat = _ldexp(centred_s, -h) / denominator
    return x_hat, _ldexp(1.0 / denominator, -(e + h)), _ldexp(mean_s, e), _ldexp(var_s, 2 * e)


def standardize(x: torch.Tensor, axes: tuple[int, ...], eps: float, ddof: int = 0,
                center: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x_hat, r)``: the standardized input and the reciprocal standard deviation (kept dims).

    With ``center=False`` the mean is taken to be 0 and the "variance" is the mean square (RMSNorm).
    Arguments must already be validated; this is the shared kernel of the public functions. Slices whose
    statistics left the accurate range are recomputed by :func:`rescaled_standardize` (all slices when
    autograd records, so that no gradient passes through a discarded inf or NaN).
    """
    xc = _as(x, compute_dtype(x.dtype))
    _, centred, var = _statistics(xc, axes, ddof, center)
    rstd = torch.rsqrt(var + eps)
    if rstd_in_range(rstd, eps):
        return centred * rstd, rstd
    safe_hat, safe_rstd, _, _ = rescaled_standardize(xc, axes, eps, ddof, center)
    if xc.requires_grad and torch.is_grad_enabled():
        return safe_hat, safe_rstd
    redo = rstd_out_of_range(rstd)
    return torch.where(redo, safe_hat, centred * rstd), torch.where(redo, safe_rstd, rstd)


def _as(tensor: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return tensor if tensor.dtype == dtype else tensor.to(dtype)


class _Normalize(torch.autograd.Function):
    """Forward: standardize then affine. Backward: :func:`gradients` on the saved ``x_hat`` and ``rstd``.

    Higher derivatives are exact: when autograd records the backward (``create_graph=True``, as in
    ``torch.autograd.grad(..., create_graph=True)`` or a double ``backward``), ``x_hat`` and ``rstd`` are
    recomputed from the saved ``x`` with differentiable operations, and :func:`gradients` (torch operations
    only) is differentiated by autograd like any other function; ``gradgradcheck`` in float64 checks it for
    every layout (``tests/test_double_backward.py``). Without ``create_graph`` the backward costs what it
    did before: the formula on the saved tensors. ``x`` is saved only when it requires grad.
    """

    @staticmethod
    def forward(ctx, x, gamma, beta, axes, eps, ddof, center):  # noqa: ANN001, ANN205 (autograd's signature)
        x_hat, rstd = standardize(x, axes, eps, ddof, center)
        y = x_hat
        if gamma is not None:
            y = y * _as(gamma, x_hat.dtype)
        if beta is not None:
            y = y + _as(beta, x_hat.dtype)
        ctx.save_for_backward(x_hat, rstd, gamma, x if x.requires_grad else None)
        ctx.axes, ctx.eps, ctx.ddof, ctx.center, ctx.x_dtype = axes, eps, ddof, center, x.dtype
        ctx.beta_shape = None if beta is None else tuple(beta.shape)
        ctx.beta_dtype = None if beta is None else beta.dtype
        return _as(y, x.dtype)

    @staticmethod
    def backward(ctx, dy):  # noqa: ANN001, ANN205
        x_hat, rstd, gamma, x = ctx.saved_tensors
        if torch.is_grad_enabled() and x is not None:  # create_graph: let autograd see x_hat(x) and rstd(x)
            x_hat, rstd = standardize(x, ctx.axes, ctx.eps, ctx.ddof, ctx.center)
        g = None if gamma is None else _as(gamma, x_hat.dtype)
        dx, dgamma, dbeta = gradients(dy, x_hat, rstd, g, ctx.beta_shape, ctx.axes, ctx.ddof, ctx.center)
        return (
            _as(dx, ctx.x_dtype),
            None if dgamma is None else _as(dgamma, gamma.dtype),
            None if dbeta is None else _as(dbeta, ctx.beta_dtype),
            None, None, None, None,
        )


def normalize(x: torch.Tensor, gamma: torch.Tensor | None = None, beta: torch.Tensor | None = None, *,
              axis: int | tuple[int, ...], eps: float, ddof: int = 0, center: bool = True, minimum: int = 1,
              what: str = "normalize", native: bool = True) -> torch.Tensor:
    """``gamma * (x - mean) / sqrt(var + eps) + beta`` with statistics over ``axis`` (differentiable).

    ``center=False`` drops the mean: ``gamma * x / sqrt(mean(x**2) + eps) + beta`` (RMSNorm).
    ``native`` allows PyTorch's fused kernels for the layouts they cover (module docstring).
    """
    x = as_float_tensor(x)
    axes = normalize_axis(axis, x.ndim)
    eps, ddof = check_eps(eps), check_ddof(ddof)
    check_reduction_size(tuple(x.shape), axes, minimum=max(minimum, ddof + 1), what=what)
    gamma = as_param(gamma, x, name="gamma")
    beta = as_param(beta, x, name="beta")
    if check_bool(native, name="native") and ddof == 0:
        fused = _native(x, gamma, beta, axes, eps, center)
        if fused is not None:
            return fused
    return _Normalize.apply(x, gamma, beta, axes, eps, ddof, center)


def _native(x: torch.Tensor, gamma: torch.Tensor | None, beta: torch.Tensor | None, axes: tuple[int, ...],
            eps: float, center: bool) -> torch.Tensor | None:
    """PyTorch's fused kernel for this layout, or ``None`` when none computes exactly this, or when its
    statistics left the accurate range (:func:`rstd_in_range`; the composite path then repairs them)."""
    if (gamma is not None and gamma.dtype != x.dtype) or (beta is not None and beta.dtype != x.dtype):
        return None
    kind = _fused_kind(x.shape, axes, None if gamma is None else gamma.shape, None if beta is None else beta.shape,
                       center, eps > 0)
    if kind == "layer_norm":
        y, _, rstd = torch.native_layer_norm(x, x.shape[axes[0]:], gamma, beta, eps)
    elif kind == "rms_norm":
        y, rstd = torch._fused_rms_norm(x, x.shape[axes[0]:], gamma, eps)
    elif kind == "batch_norm":
        flat = [None if p is None else p.reshape(x.shape[1]) for p in (gamma, beta)]
        y, _, rstd = torch.native_batch_norm(x, flat[0], flat[1], None, None, True, 0.0, eps)
    else:
        return None
    return y if rstd_in_range(rstd, eps) else None


@functools.lru_cache(maxsize=4096)
def _fused_kind(shape: tuple[int, ...], axes: tuple[int, ...], gamma_shape: tuple[int, ...] | None,
                beta_shape: tuple[int, ...] | None, center: bool, positive_eps: bool) -> str | None:
    """Which fused kernel computes this layout (``"layer_norm"``, ``"rms_norm"``, ``"batch_norm"``), or
    ``None``; cached, as it depends on shapes only."""
    ndim, trailing = len(shape), tuple(shape[axes[0]:])
    if axes == tuple(range(axes[0], ndim)) and all(p is None or tuple(p) == trailing for p in (gamma_shape, beta_shape)):
        if center:
            return "layer_norm"
        return "rms_norm" if beta_shape is None and hasattr(torch, "_fused_rms_norm") else None  # PyTorch >= 2.8
    if (center and positive_eps and ndim >= 2 and axes == (0, *range(2, ndim)) and reduced_size(shape, axes) > 1
            and all(_per_channel(p, ndim, shape[1]) for p in (gamma_shape, beta_shape))):
        return "batch_norm"
    return None


def _per_channel(param_shape: tuple[int, ...] | None, ndim: int, channels: int) -> bool:
    """Whether a parameter of ``param_shape`` (broadcastable against an ``ndim``-dimensional x) holds exactly
    one value per channel of axis 1 (``channels`` of them)."""
    if param_shape is None:
        return True
    aligned = (1,) * (ndim - len(param_shape)) + tuple(param_shape)
    return aligned[1] == channels and all(n == 1 for i, n in enumerate(aligned) if i != 1)


def normalize_backward(dy: torch.Tensor, x: torch.Tensor, gamma: torch.Tensor | None = None,
                       beta: torch.Tensor | None = None, *, axis: int | tuple[int, ...], eps: float, ddof: int = 0,
                       center: bool = True, minimum: int = 1, what: str = "normalize_backward"
                       ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """``(dx, dgamma, dbeta)`` for :func:`normalize`, from the closed form (no autograd involved)."""
    x = as_float_tensor(x)
    dy = as_float_tensor(dy, name="dy")
    if dy.shape != x.shape:
        raise ValueError(f"dy must have the shape of x, {tuple(x.shape)}; got {tuple(dy.shape)}")
    axes = normalize_axis(axis, x.ndim)
    eps, ddof = check_eps(eps), check_ddof(ddof)
    check_reduction_size(tuple(x.shape), axes, minimum=max(minimum, ddof + 1), what=what)
    gamma = as_param(gamma, x, name="gamma")
    beta = as_param(beta, x, name="beta")
    with torch.no_grad():
        x_hat, rstd = standardize(x, axes, eps, ddof, center)
        g = None if gamma is None else gamma.to(x_hat.dtype)
        dx, dgamma, dbeta = gradients(dy, x_hat, rstd, g, None if beta is None else tuple(beta.shape), axes, ddof,
                                      center)
    return _to_dtype(dx, x.dtype), _to_dtype(dgamma, x.dtype), _to_dtype(dbeta, x.dtype)


def gradients(dy: torch.Tensor, x_hat: torch.Tensor, rstd: torch.Tensor, gamma: torch.Tensor | None,
              beta_shape: tuple[int, ...] | None, axes: tuple[int, ...], ddof: int = 0, center: bool = True
              ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """The closed-form backward from the saved ``x_hat`` and ``rstd`` (compute dtype, no casting back)."""
    dy = _as(dy, x_hat.dtype)
    g = dy * gamma if gamma is not None else dy
    size = reduced_size(tuple(x_hat.shape), axes)
    centred_g = g - g.sum(dim=axes, keepdim=True) / size if center else g
    dx = rstd * (centred_g - x_hat * ((g * x_hat).sum(dim=axes, keepdim=True) / (size - ddof)))
    dgamma = None if gamma is None else sum_to_shape(dy * x_hat, tuple(gamma.shape))
    dbeta = None if beta_shape is None else sum_to_shape(dy, beta_shape)
    return dx, dgamma, dbeta


def _to_dtype(tensor: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    return None if tensor is None else tensor.to(dtype)
