r"""Layer normalization (Ba, Kiros & Hinton 2016), PyTorch twin of :mod:`lnlib.numpy.layer_norm`.

Same definition: statistics over ``axis`` for each training case, biased variance, :math:`\epsilon` inside
the square root, gains and biases that broadcast against ``x``. :func:`layer_norm` is differentiable
through the hand-derived backward of :mod:`lnlib.torch.normalization`; :class:`LayerNorm` is the
``nn.Module`` with learnable gain (initialized to 1) and bias (initialized to 0), on any device.
"""

from __future__ import annotations

import torch
from torch import nn

from .._checks import check_axis, check_bool, check_eps, check_shape
from ._tensors import add_affine, as_float_dtype
from .normalization import normalize, normalize_backward

Axis = int | tuple[int, ...]


def layer_norm(x: torch.Tensor, gamma: torch.Tensor | None = None, beta: torch.Tensor | None = None, *,
               axis: Axis = -1, eps: float = 1e-5, native: bool = True) -> torch.Tensor:
    """Layer-normalize ``x`` over ``axis``: ``gamma * (x - mean) / sqrt(var + eps) + beta``.

    ``native=False`` forces the hand-derived backward even where PyTorch's fused kernel applies (trailing
    axes with parameters of their shape; see :mod:`lnlib.torch.normalization`).
    """
    return normalize(x, gamma, beta, axis=axis, eps=eps, what="layer_norm", native=native)


def layer_norm_backward(dy: torch.Tensor, x: torch.Tensor, gamma: torch.Tensor | None = None,
                        beta: torch.Tensor | None = None, *, axis: Axis = -1, eps: float = 1e-5
                        ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Gradients ``(dx, dgamma, dbeta)`` of :func:`layer_norm`, derived by hand (no autograd)."""
    return normalize_backward(dy, x, gamma, beta, axis=axis, eps=eps, what="layer_norm_backward")


class LayerNorm(nn.Module):
    """Layer norm with a learnable gain and bias of shape ``shape`` (gains 1, biases 0, as the paper's §6)."""

    def __init__(self, shape: int | tuple[int, ...], *, axis: Axis = -1, eps: float = 1e-5, affine: bool = True,
                 native: bool = True, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> None:
        super().__init__()
        shape = check_shape(shape, name="shape")
        check_axis(axis)
        self.axis, self.eps, self.native = axis, check_eps(eps), check_bool(native, name="native")
        dtype = as_float_dtype(dtype)
        add_affine(self, shape, check_bool(affine, name="affine"), device=device, dtype=dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return layer_norm(x, self.gamma, self.beta, axis=self.axis, eps=self.eps, native=self.native)

    def extra_repr(self) -> str:
        shape = None if self.gamma is None else tuple(self.gamma.shape)
        return f"shape={shape}, axis={self.axis}, eps={self.eps}"
