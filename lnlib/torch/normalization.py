r"""Standardization over named axes, PyTorch twin of :mod:`lnlib.numpy.normalization`.

The maths (forward, two-pass variance, the closed-form backward) is derived in the NumPy module's
docstring; this file follows it line by line with torch operations, so it runs on any device.

Autograd: :func:`normalize` is a :class:`torch.autograd.Function` whose ``backward`` is the hand-derived
formula (:func:`gradients`), not autograd's trace of the forward. The backward is itself computed from
saved tensors and is therefore marked once-differentiable: asking for a second derivative raises instead of
returning a wrong one.

Native kernels (``native=True``, the default). Two layouts are so common that PyTorch has a fused kernel
for them, and :func:`normalize` calls it instead of the composite path:

* statistics over the trailing axes with gain and bias of exactly those axes' shape (or none) is
  ``torch.nn.functional.layer_norm`` (and ``rms_norm`` without centering, where PyTorch has it);
* statistics over every axis but axis 1 with per-channel parameters (shape ``(1, C, 1, ...)``, ``(C, 1,
  ...)`` or ``(C,)`` for 2-D input) is ``torch.nn.functional.batch_norm`` in training mode.

Both compute the same definition (biased variance, :math:`\epsilon` inside the square root, same affine
step), with their own summation order (Welford-style moments on the CPU): results agree with the composite
path to rounding, which the tests check. They are one fused pass instead of about ten tensor operations, and
their backward passes are compiled kernels: this is what makes ``lnlib.torch`` as fast as ``torch.nn``
(chapter 13). ``native=False`` forces the composite path with the hand-derived backward for every layout;
the unbiased variance (``ddof=1``) and every other layout always use it.
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

from .._checks import check_ddof, check_eps, check_reduction_size, normalize_axis, reduced_size
from ._tensors import as_float_tensor, as_param, compute_dtype, sum_to_shape


def moments(x: torch.Tensor, *, axis: int | tuple[int, ...] = -1, ddof: int = 0,
            keepdims: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and variance of ``x`` over ``axis``, by two passes (mean first, then the centred squares)."""
    x = as_float_tensor(x)
    axes = normalize_axis(axis, x.ndim)
    ddof = check_ddof(ddof)
    check_reduction_size(tuple(x.shape), axes, minimum=ddof + 1, what="moments")
    mean, _, var = _moments(x, axes, ddof)
    if not keepdims:
        mean, var = mean.squeeze(axes), var.squeeze(axes)
    return mean, var


def _moments(x: torch.Tensor, axes: tuple[int, ...], ddof: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(mean, x - mean, var)`` in the compute dtype, for already validated arguments.

    Means are written ``sum / n``: the same arithmetic as ``Tensor.mean``, at a lower fixed cost per call,
    which matters for the small batches of the experiments.
    """
    xc = _as(x, compute_dtype(x.dtype))
    size = reduced_size(tuple(x.shape), axes)
    mean = xc.sum(dim=axes, keepdim=True) / size
    centred = xc - mean
    var = (centred * centred).sum(dim=axes, keepdim=True) / (size - ddof)
    return mean, centred, var


def standardize(x: torch.Tensor, axes: tuple[int, ...], eps: float, ddof: int = 0,
                center: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x_hat, r)``: the standardized input and the reciprocal standard deviation (kept dims).

    With ``center=False`` the mean is taken to be 0 and the "variance" is the mean square (RMSNorm).
    Arguments must already be validated; this is the shared kernel of the public functions.
    """
    if center:
        _, centred, var = _moments(x, axes, ddof)
    else:
        centred = _as(x, compute_dtype(x.dtype))
        var = (centred * centred).sum(dim=axes, keepdim=True) / reduced_size(tuple(x.shape), axes)
    rstd = torch.rsqrt(var + eps)
    return centred * rstd, rstd


def _as(tensor: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return tensor if tensor.dtype == dtype else tensor.to(dtype)


class _Normalize(torch.autograd.Function):
    """Forward: standardize then affine. Backward: :func:`gradients` on the saved ``x_hat`` and ``rstd``."""

    @staticmethod
    def forward(ctx, x, gamma, beta, axes, eps, ddof, center):  # noqa: ANN001, ANN205 (autograd's signature)
        x_hat, rstd = standardize(x, axes, eps, ddof, center)
        y = x_hat
        if gamma is not None:
            y = y * _as(gamma, x_hat.dtype)
        if beta is not None:
            y = y + _as(beta, x_hat.dtype)
        ctx.save_for_backward(x_hat, rstd, gamma)
        ctx.axes, ctx.ddof, ctx.center, ctx.x_dtype = axes, ddof, center, x.dtype
        ctx.beta_shape = None if beta is None else tuple(beta.shape)
        ctx.beta_dtype = None if beta is None else beta.dtype
        return _as(y, x.dtype)

    @staticmethod
    @once_differentiable
    def backward(ctx, dy):  # noqa: ANN001, ANN205
        x_hat, rstd, gamma = ctx.saved_tensors
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
    if native and ddof == 0:
        fused = _native(x, gamma, beta, axes, eps, center)
        if fused is not None:
            return fused
    return _Normalize.apply(x, gamma, beta, axes, eps, ddof, center)


def _native(x: torch.Tensor, gamma: torch.Tensor | None, beta: torch.Tensor | None, axes: tuple[int, ...],
            eps: float, center: bool) -> torch.Tensor | None:
    """PyTorch's fused kernel for this layout, or ``None`` when none computes exactly this."""
    if any(p is not None and p.dtype != x.dtype for p in (gamma, beta)):
        return None
    trailing = tuple(x.shape[axes[0]:])
    if axes == tuple(range(axes[0], x.ndim)) and all(p is None or tuple(p.shape) == trailing for p in (gamma, beta)):
        if center:
            return torch.nn.functional.layer_norm(x, trailing, gamma, beta, eps)
        if beta is None and hasattr(torch.nn.functional, "rms_norm"):  # PyTorch >= 2.4
            return torch.nn.functional.rms_norm(x, trailing, gamma, eps)
        return None
    if (center and eps > 0 and x.ndim >= 2 and axes == (0, *range(2, x.ndim)) and reduced_size(tuple(x.shape), axes) > 1
            and all(_per_channel(p, x) for p in (gamma, beta))):
        flat = [None if p is None else p.reshape(x.shape[1]) for p in (gamma, beta)]
        return torch.nn.functional.batch_norm(x, None, None, flat[0], flat[1], training=True, eps=eps)
    return None


def _per_channel(param: torch.Tensor | None, x: torch.Tensor) -> bool:
    """Whether ``param`` (broadcastable against ``x``) holds exactly one value per channel of axis 1."""
    if param is None:
        return True
    aligned = (1,) * (x.ndim - param.ndim) + tuple(param.shape)
    return aligned[1] == x.shape[1] and all(n == 1 for i, n in enumerate(aligned) if i != 1)


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
