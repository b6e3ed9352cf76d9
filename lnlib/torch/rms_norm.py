r"""RMS normalization, PyTorch twin of :mod:`lnlib.numpy.rms_norm` (differentiable, any device)."""

from __future__ import annotations

import torch

from .normalization import normalize, normalize_backward

Axis = int | tuple[int, ...]


def rms_norm(x: torch.Tensor, gamma: torch.Tensor | None = None, beta: torch.Tensor | None = None, *,
             axis: Axis = -1, eps: float = 1e-5, native: bool = True) -> torch.Tensor:
    """``gamma * x / sqrt(mean(x**2 over axis) + eps) + beta`` (``native`` as in :func:`layer_norm`)."""
    return normalize(x, gamma, beta, axis=axis, eps=eps, center=False, what="rms_norm", native=native)


def rms_norm_backward(dy: torch.Tensor, x: torch.Tensor, gamma: torch.Tensor | None = None,
                      beta: torch.Tensor | None = None, *, axis: Axis = -1, eps: float = 1e-5
                      ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Gradients ``(dx, dgamma, dbeta)`` of :func:`rms_norm`, derived by hand (no autograd)."""
    return normalize_backward(dy, x, gamma, beta, axis=axis, eps=eps, center=False, what="rms_norm_backward")
