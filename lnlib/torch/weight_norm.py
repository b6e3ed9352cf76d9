r"""Weight normalization, PyTorch twin of :mod:`lnlib.numpy.weight_norm`.

:func:`weight_norm` is composed of differentiable torch operations (autograd derives the same backward as
:func:`weight_norm_backward`, which is written out by hand and tested against it).
"""

from __future__ import annotations

import torch

from .._checks import normalize_axis, reduced_size
from ._tensors import as_float_tensor, as_param, compute_dtype, sum_to_shape
from .normalization import rescaled_standardize, rstd_in_range

Axis = int | tuple[int, ...]


def _direction(v: torch.Tensor, axis: Axis) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, tuple[int, ...]]:
    """``(v, v / ||v||, 1 / ||v||, axes)``, the last two in the compute dtype, accurate for every finite ``v``
    (the twin of :func:`lnlib.numpy.weight_norm._direction`; every slice is rescaled when one is out of
    range, so that autograd never differentiates a discarded inf or NaN)."""
    v = as_float_tensor(v, name="v")
    axes = normalize_axis(axis, v.ndim)
    vc = v.to(compute_dtype(v.dtype))
    norm = vc.square().sum(dim=axes, keepdim=True).sqrt()
    inverse_norm = 1.0 / norm
    if rstd_in_range(inverse_norm, 0.0):
        return v, vc / norm, inverse_norm, axes
    direction, inverse_norm, _, _ = rescaled_standardize(vc, axes, 0.0, reduced_size(tuple(vc.shape), axes) - 1,
                                                         center=False)
    return v, direction, inverse_norm, axes


def weight_norm(v: torch.Tensor, g: torch.Tensor | None = None, *, axis: Axis = -1) -> torch.Tensor:
    """``g * v / ||v||`` with the norm over ``axis``; ``g=None`` gives unit-length vectors."""
    v, direction, _, _ = _direction(v, axis)
    g = as_param(g, v, name="g")
    w = direction if g is None else direction * g.to(direction.dtype)
    return w.to(v.dtype)


def weight_norm_backward(dw: torch.Tensor, v: torch.Tensor, g: torch.Tensor | None = None, *, axis: Axis = -1
                         ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Gradients ``(dv, dg)`` of :func:`weight_norm`, derived by hand (no autograd)."""
    with torch.no_grad():
        v, direction, inverse_norm, axes = _direction(v, axis)
        dw = as_float_tensor(dw, name="dw")
        if dw.shape != v.shape:
            raise ValueError(f"dw must have the shape of v, {tuple(v.shape)}; got {tuple(dw.shape)}")
        g = as_param(g, v, name="g")
        dw = dw.to(direction.dtype)
        along = (direction * dw).sum(dim=axes, keepdim=True)
        scale = inverse_norm if g is None else g.to(direction.dtype) * inverse_norm
        dv = scale * (dw - direction * along)
        dg = None if g is None else sum_to_shape(dw * direction, tuple(g.shape)).to(v.dtype)
    return dv.to(v.dtype), dg
