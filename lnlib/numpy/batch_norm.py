r"""Batch normalization (Ioffe & Szegedy 2015), NumPy reference.

The paper under study writes batch norm as eq. 2: each hidden unit :math:`i` is normalized with the mean
and standard deviation of its summed input *over the data distribution*,
:math:`\bar a_i = g_i\,(a_i-\mu_i)/\sigma_i`, and in practice :math:`\mu_i, \sigma_i` are estimated from
the current mini-batch. With a mini-batch of :math:`N` cases (``axis=0`` of an ``(N, F)`` matrix, or
``axis=(0, 2, 3)`` of an ``NCHW`` image batch) the training-time computation is

.. math::

    \mu_i = \frac1N\sum_{n} a_{ni}, \qquad \sigma_i^2 = \frac1N\sum_n (a_{ni}-\mu_i)^2, \qquad
    y_{ni} = \gamma_i\,\frac{a_{ni}-\mu_i}{\sqrt{\sigma_i^2+\epsilon}} + \beta_i ,

the same standardization as layer norm with the axes transposed (:mod:`lnlib.numpy.normalization`).
At test time there is no batch to average over, so :class:`BatchNorm` keeps running estimates and uses
them instead: the output for a case then depends on the mode (train or eval) and, in training, on the
other cases of its batch. That difference is what layer norm removes.

Running statistics follow PyTorch: ``running = (1 - momentum) * running + momentum * batch_stat``, where
the variance fed to the running estimate is the *unbiased* one (:math:`N/(N-1)` times the biased), and
``momentum=None`` gives the cumulative average over all batches seen (population statistics), and
``momentum=0`` freezes them (training mode then skips computing them).
"""

from __future__ import annotations

import numpy as np

from .._checks import (check_axis, check_bool, check_ddof, check_eps, check_momentum, check_shape, feature_shape,
                       kept_shape, normalize_axis, required)
from ._arrays import as_float_array, as_float_dtype, as_param, compute_dtype
from .normalization import moments, normalize, normalize_backward

Axis = int | tuple[int, ...]


def batch_norm(x: object, gamma: object = None, beta: object = None, *, axis: Axis = 0, eps: float = 1e-5,
               ddof: int = 0) -> np.ndarray:
    """Batch-normalize ``x`` with the statistics of this batch, taken over ``axis``.

    ``ddof=0`` is the biased variance (PyTorch's training mode); ``ddof=1`` the unbiased estimator the
    paper uses for batch norm at batch size 4. At least two values per statistic are required, as in
    PyTorch: with one value the output would be ``beta`` whatever the input.
    """
    return normalize(x, gamma, beta, axis=axis, eps=eps, ddof=ddof, minimum=2, what="batch_norm in training mode")


def batch_norm_backward(dy: object, x: object, gamma: object = None, beta: object = None, *, axis: Axis = 0,
                        eps: float = 1e-5, ddof: int = 0) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Gradients ``(dx, dgamma, dbeta)`` of :func:`batch_norm`, derived by hand.

    Unlike layer norm, ``dx`` of one case depends on the whole batch: the two subtracted terms of the
    backward formula are batch averages.
    """
    return normalize_backward(dy, x, gamma, beta, axis=axis, eps=eps, ddof=ddof, minimum=2,
                              what="batch_norm_backward")


def batch_norm_inference(x: object, mean: object, var: object, gamma: object = None, beta: object = None,
                         eps: float = 1e-5) -> np.ndarray:
    """Eval-mode batch norm: normalize with given (running) statistics, all broadcastable against ``x``
    without changing its shape (keep the reduced axes). Arithmetic in the compute dtype of ``x``."""
    x = as_float_array(x)
    mean, var = (as_param(required(s, name=n, what="an array of statistics"), x, name=n)
                 for s, n in ((mean, "mean"), (var, "var")))
    gamma, beta = as_param(gamma, x, name="gamma"), as_param(beta, x, name="beta")
    dtype = compute_dtype(x.dtype)
    y = (x.astype(dtype, copy=False) - mean) / np.sqrt(var + dtype.type(check_eps(eps)))
    if gamma is not None:
        y *= gamma
    if beta is not None:
        y += beta
    return y.astype(x.dtype, copy=False)


class BatchNorm:
    """Batch norm with gain, bias, running statistics and train/eval modes (PyTorch's semantics).

    ``num_features`` is the shape of the statistics: the shape of ``x`` without the axes in ``axis``
    (``F`` for ``(N, F)`` input and ``axis=0``; ``C`` for NCHW input and ``axis=(0, 2, 3)``).
    Gains start at 1, biases at 0, the running mean at 0 and the running variance at 1.
    """

    def __init__(self, num_features: int | tuple[int, ...], *, axis: Axis = 0, eps: float = 1e-5,
                 momentum: float | None = 0.1, affine: bool = True, ddof: int = 0, dtype: object = np.float64) -> None:
        self.feature_shape = check_shape(num_features, name="num_features")
        check_axis(axis)
        self.axis, self.eps, self.momentum, self.ddof = axis, check_eps(eps), check_momentum(momentum), check_ddof(ddof)
        dtype = as_float_dtype(dtype)
        self.gamma = np.ones(self.feature_shape, dtype=dtype) if check_bool(affine, name="affine") else None
        self.beta = np.zeros(self.feature_shape, dtype=dtype) if affine else None
        self.running_mean = np.zeros(self.feature_shape, dtype=dtype)
        self.running_var = np.ones(self.feature_shape, dtype=dtype)
        self.num_batches_tracked = 0
        self.training = True

    def _axes_and_shape(self, x: np.ndarray) -> tuple[tuple[int, ...], tuple[int, ...]]:
        axes = normalize_axis(self.axis, x.ndim)
        if feature_shape(x.shape, axes) != self.feature_shape:
            raise ValueError(
                f"x with shape {x.shape} and axis={self.axis} has statistics of shape "
                f"{feature_shape(x.shape, axes)}, but this BatchNorm was built for num_features={self.feature_shape}"
            )
        return axes, kept_shape(x.shape, axes)

    def __call__(self, x: object) -> np.ndarray:
        x = as_float_array(x)
        axes, shape = self._axes_and_shape(x)
        gamma = None if self.gamma is None else self.gamma.reshape(shape)
        beta = None if self.beta is None else self.beta.reshape(shape)
        if not self.training:
            return batch_norm_inference(x, self.running_mean.reshape(shape), self.running_var.reshape(shape),
                                        gamma, beta, self.eps)
        y = batch_norm(x, gamma, beta, axis=axes, eps=self.eps, ddof=self.ddof)
        self._update_running_stats(x, axes)
        return y

    def _update_running_stats(self, x: np.ndarray, axes: tuple[int, ...]) -> None:
        if self.momentum == 0.0:  # frozen running statistics: nothing to compute
            return
        mean, unbiased_var = moments(x, axis=axes, ddof=1, keepdims=False)
        self.num_batches_tracked += 1
        factor = 1.0 / self.num_batches_tracked if self.momentum is None else self.momentum
        self.running_mean = (1.0 - factor) * self.running_mean + factor * mean.astype(self.running_mean.dtype)
        self.running_var = (1.0 - factor) * self.running_var + factor * unbiased_var.astype(self.running_var.dtype)

    def train(self, mode: bool = True) -> "BatchNorm":
        self.training = mode
        return self

    def eval(self) -> "BatchNorm":
        return self.train(False)

    def __repr__(self) -> str:
        return (f"BatchNorm(num_features={self.feature_shape}, axis={self.axis}, eps={self.eps}, "
                f"momentum={self.momentum}, training={self.training})")
