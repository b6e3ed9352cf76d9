r"""Group normalization, PyTorch twin of :mod:`lnlib.numpy.group_norm`.

Differentiable: the grouped standardization goes through lnlib's hand-derived backward
(:mod:`lnlib.torch.normalization`), the reshapes and the per-channel affine step through autograd.
"""

from __future__ import annotations

import torch
from torch import nn

from .._checks import check_axis, check_bool, check_eps, check_num_groups, check_reduction_size, check_shape, \
    normalize_axis
from ..numpy.group_norm import grouped_shape
from ._tensors import add_affine, as_float_dtype, as_float_tensor, as_param, sum_to_shape
from .normalization import gradients, normalize, standardize

Axis = int | tuple[int, ...]


def group_norm(x: torch.Tensor, num_groups: int, gamma: torch.Tensor | None = None,
               beta: torch.Tensor | None = None, *, axis: Axis = -1, eps: float = 1e-5) -> torch.Tensor:
    """Group-normalize ``x``: statistics per case and per group of channels (the first axis in ``axis``)."""
    x = as_float_tensor(x)
    axes = normalize_axis(axis, x.ndim)
    eps = check_eps(eps)
    shape, grouped_axes = grouped_shape(tuple(x.shape), axes, num_groups)
    check_reduction_size(shape, grouped_axes, what="group_norm")
    gamma = as_param(gamma, x, name="gamma")
    beta = as_param(beta, x, name="beta")
    y = normalize(x.reshape(shape), axis=grouped_axes, eps=eps, what="group_norm").reshape(x.shape)
    if gamma is not None:
        y = y * gamma.to(y.dtype)
    if beta is not None:
        y = y + beta.to(y.dtype)
    return y


def group_norm_backward(dy: torch.Tensor, x: torch.Tensor, num_groups: int, gamma: torch.Tensor | None = None,
                        beta: torch.Tensor | None = None, *, axis: Axis = -1, eps: float = 1e-5
                        ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Gradients ``(dx, dgamma, dbeta)`` of :func:`group_norm`, derived by hand (no autograd)."""
    x = as_float_tensor(x)
    dy = as_float_tensor(dy, name="dy")
    if dy.shape != x.shape:
        raise ValueError(f"dy must have the shape of x, {tuple(x.shape)}; got {tuple(dy.shape)}")
    axes = normalize_axis(axis, x.ndim)
    eps = check_eps(eps)
    shape, grouped_axes = grouped_shape(tuple(x.shape), axes, num_groups)
    check_reduction_size(shape, grouped_axes, what="group_norm_backward")
    gamma = as_param(gamma, x, name="gamma")
    beta = as_param(beta, x, name="beta")
    with torch.no_grad():
        x_hat, rstd = standardize(x.reshape(shape), grouped_axes, eps)
        dy = dy.to(x_hat.dtype)
        g = dy * gamma.to(dy.dtype) if gamma is not None else dy  # the affine step is per channel
        dx, _, _ = gradients(g.reshape(shape), x_hat, rstd, None, None, grouped_axes)
        x_hat = x_hat.reshape(x.shape)
        dgamma = None if gamma is None else sum_to_shape(dy * x_hat, tuple(gamma.shape)).to(x.dtype)
        dbeta = None if beta is None else sum_to_shape(dy, tuple(beta.shape)).to(x.dtype)
    return dx.reshape(x.shape).to(x.dtype), dgamma, dbeta


class GroupNorm(nn.Module):
    """Group norm with a learnable gain and bias of shape ``shape`` (gains 1, biases 0), the twin of
    :class:`~lnlib.torch.LayerNorm`: ``GroupNorm((C, 1, 1), G, axis=(1, 2, 3))`` for an NCHW batch is
    ``torch.nn.GroupNorm(G, C)``; ``G = 1`` is layer norm over ``(C, H, W)`` with a per-channel affine."""

    def __init__(self, shape: int | tuple[int, ...], num_groups: int, *, axis: Axis = -1, eps: float = 1e-5,
                 affine: bool = True, device: torch.device | str | None = None,
                 dtype: torch.dtype | None = None) -> None:
        super().__init__()
        shape = check_shape(shape, name="shape")
        check_axis(axis)
        self.num_groups, self.axis, self.eps = check_num_groups(num_groups), axis, check_eps(eps)
        dtype = as_float_dtype(dtype)
        add_affine(self, shape, check_bool(affine, name="affine"), device=device, dtype=dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return group_norm(x, self.num_groups, self.gamma, self.beta, axis=self.axis, eps=self.eps)

    def extra_repr(self) -> str:
        shape = None if self.gamma is None else tuple(self.gamma.shape)
        return f"shape={shape}, num_groups={self.num_groups}, axis={self.axis}, eps={self.eps}"
