r"""Batch normalization, PyTorch twin of :mod:`lnlib.numpy.batch_norm`.

Training mode normalizes with the statistics of the batch (over ``axis``) through the hand-derived
backward of :mod:`lnlib.torch.normalization`, and updates running estimates exactly as
``torch.nn.BatchNorm1d/2d`` do (unbiased variance in the running estimate, ``momentum=None`` for the
cumulative average). Eval mode normalizes with the running estimates, with plain differentiable torch ops.
"""

from __future__ import annotations

import torch
from torch import nn

from .._checks import (check_axis, check_bool, check_ddof, check_eps, check_momentum, check_shape, feature_shape,
                       kept_shape, normalize_axis, required)
from ._tensors import add_affine, as_float_dtype, as_float_tensor, as_param, compute_dtype
from .normalization import moments, normalize, normalize_backward

Axis = int | tuple[int, ...]


def batch_norm(x: torch.Tensor, gamma: torch.Tensor | None = None, beta: torch.Tensor | None = None, *,
               axis: Axis = 0, eps: float = 1e-5, ddof: int = 0, native: bool = True) -> torch.Tensor:
    """Batch-normalize ``x`` with the statistics of this batch over ``axis`` (>= 2 values per statistic).

    ``native=False`` forces the hand-derived backward even where ``torch.nn.functional.batch_norm`` applies.
    """
    return normalize(x, gamma, beta, axis=axis, eps=eps, ddof=ddof, minimum=2, what="batch_norm in training mode",
                     native=native)


def batch_norm_backward(dy: torch.Tensor, x: torch.Tensor, gamma: torch.Tensor | None = None,
                        beta: torch.Tensor | None = None, *, axis: Axis = 0, eps: float = 1e-5, ddof: int = 0
                        ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Gradients ``(dx, dgamma, dbeta)`` of :func:`batch_norm`, derived by hand (no autograd)."""
    return normalize_backward(dy, x, gamma, beta, axis=axis, eps=eps, ddof=ddof, minimum=2,
                              what="batch_norm_backward")


def batch_norm_inference(x: torch.Tensor, mean: torch.Tensor, var: torch.Tensor, gamma: torch.Tensor | None = None,
                         beta: torch.Tensor | None = None, eps: float = 1e-5) -> torch.Tensor:
    """Eval-mode batch norm: normalize with given (running) statistics, all broadcastable against ``x``
    without changing its shape (keep the reduced axes). Arithmetic in the compute dtype of ``x``."""
    x = as_float_tensor(x)
    mean, var = (as_param(required(s, name=n, what="a tensor of statistics"), x, name=n)
                 for s, n in ((mean, "mean"), (var, "var")))
    gamma, beta = as_param(gamma, x, name="gamma"), as_param(beta, x, name="beta")
    dtype = compute_dtype(x.dtype)
    y = (x.to(dtype) - mean.to(dtype)) / torch.sqrt(var.to(dtype) + check_eps(eps))
    if gamma is not None:
        y = y * gamma.to(dtype)
    if beta is not None:
        y = y + beta.to(dtype)
    return y.to(x.dtype)


class BatchNorm(nn.Module):
    """Batch norm with gain, bias, running statistics and train/eval modes, on any device.

    ``num_features`` is the shape of the statistics: the shape of ``x`` without the axes in ``axis``.
    """

    def __init__(self, num_features: int | tuple[int, ...], *, axis: Axis = 0, eps: float = 1e-5,
                 momentum: float | None = 0.1, affine: bool = True, ddof: int = 0, native: bool = True,
                 device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> None:
        super().__init__()
        self.native = check_bool(native, name="native")
        self.feature_shape = check_shape(num_features, name="num_features")
        check_axis(axis)
        self.axis, self.eps, self.momentum, self.ddof = axis, check_eps(eps), check_momentum(momentum), check_ddof(ddof)
        dtype = as_float_dtype(dtype)
        add_affine(self, self.feature_shape, check_bool(affine, name="affine"), device=device, dtype=dtype)
        self.register_buffer("running_mean", torch.zeros(self.feature_shape, device=device, dtype=dtype))
        self.register_buffer("running_var", torch.ones(self.feature_shape, device=device, dtype=dtype))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long, device=device))

    def _axes_and_shape(self, x: torch.Tensor) -> tuple[tuple[int, ...], tuple[int, ...]]:
        axes = normalize_axis(self.axis, x.ndim)
        if feature_shape(tuple(x.shape), axes) != self.feature_shape:
            raise ValueError(
                f"x with shape {tuple(x.shape)} and axis={self.axis} has statistics of shape "
                f"{feature_shape(tuple(x.shape), axes)}, but this BatchNorm was built for "
                f"num_features={self.feature_shape}"
            )
        return axes, kept_shape(tuple(x.shape), axes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = as_float_tensor(x)
        axes, shape = self._axes_and_shape(x)
        gamma = None if self.gamma is None else self.gamma.reshape(shape)
        beta = None if self.beta is None else self.beta.reshape(shape)
        if not self.training:
            return batch_norm_inference(x, self.running_mean.reshape(shape), self.running_var.reshape(shape),
                                        gamma, beta, self.eps)
        y = batch_norm(x, gamma, beta, axis=axes, eps=self.eps, ddof=self.ddof, native=self.native)
        self._update_running_stats(x, axes)
        return y

    @torch.no_grad()
    def _update_running_stats(self, x: torch.Tensor, axes: tuple[int, ...]) -> None:
        if self.momentum == 0.0:  # frozen running statistics: nothing to compute
            return
        mean, unbiased_var = moments(x.detach(), axis=axes, ddof=1, keepdims=False)
        self.num_batches_tracked += 1
        factor = 1.0 / int(self.num_batches_tracked) if self.momentum is None else self.momentum
        self.running_mean.mul_(1.0 - factor).add_(factor * mean.to(self.running_mean.dtype))
        self.running_var.mul_(1.0 - factor).add_(factor * unbiased_var.to(self.running_var.dtype))

    def extra_repr(self) -> str:
        return f"num_features={self.feature_shape}, axis={self.axis}, eps={self.eps}, momentum={self.momentum}"
