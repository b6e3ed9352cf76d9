r"""Group normalization (Wu & He 2018), NumPy reference.

Group norm sits between layer norm and instance norm. ``axis`` names the axes the statistics are taken
over, as for :func:`~lnlib.numpy.layer_norm`; the *first* of them (the channel axis) is split into
``num_groups`` contiguous groups of :math:`C/G` channels, and each case gets one mean and one variance per
group:

.. math::

    \mu_{ng} = \frac{1}{|S_g|}\sum_{k\in S_g} x_{nk}, \qquad
    \sigma^2_{ng} = \frac{1}{|S_g|}\sum_{k\in S_g} (x_{nk}-\mu_{ng})^2, \qquad
    y_{nk} = \gamma_k\,\frac{x_{nk}-\mu_{ng}}{\sqrt{\sigma^2_{ng}+\epsilon}} + \beta_k ,

where :math:`S_g` holds the positions of group :math:`g` (its channels, and every position along the other
axes in ``axis``). ``num_groups=1`` is layer norm over ``axis``; ``num_groups=C`` with ``axis=(1, 2, 3)`` of
an NCHW batch is instance norm. The gain and bias broadcast against ``x`` (per channel: shape ``(C, 1, 1)``
for NCHW, as ``torch.nn.GroupNorm``). The backward pass is the standardization backward applied to the
grouped array.
"""

from __future__ import annotations

import numpy as np

from .._checks import check_axis, check_bool, check_eps, check_num_groups, check_reduction_size, check_shape, normalize_axis
from ._arrays import as_float_array, as_float_dtype, as_param, sum_to_shape
from .normalization import gradients, standardize

Axis = int | tuple[int, ...]


def grouped_shape(shape: tuple[int, ...], axes: tuple[int, ...], num_groups: object) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """``(shape, axes)`` of the view in which the channel axis ``axes[0]`` is split into ``(G, C // G)``."""
    num_groups = check_num_groups(num_groups)
    channel = axes[0]
    channels = shape[channel]
    if channels % num_groups:
        raise ValueError(f"num_groups={num_groups} does not divide the {channels} channels of axis {channel}; "
                         f"expected a divisor of {channels}")
    new_shape = shape[:channel] + (int(num_groups), channels // int(num_groups)) + shape[channel + 1:]
    new_axes = (channel + 1,) + tuple(a + 1 for a in axes[1:])
    return new_shape, new_axes


def _prepare(x: object, num_groups: object, gamma: object, beta: object, axis: Axis, eps: float, what: str):
    x = as_float_array(x)
    axes = normalize_axis(axis, x.ndim)
    eps = check_eps(eps)
    shape, grouped_axes = grouped_shape(x.shape, axes, num_groups)
    check_reduction_size(shape, grouped_axes, what=what)
    x_hat, rstd = standardize(x.reshape(shape), grouped_axes, eps)
    return x, as_param(gamma, x, name="gamma"), as_param(beta, x, name="beta"), x_hat, rstd, shape, grouped_axes


def group_norm(x: object, num_groups: int, gamma: object = None, beta: object = None, *, axis: Axis = -1,
               eps: float = 1e-5) -> np.ndarray:
    """Group-normalize ``x``: statistics per case and per group of channels (the first axis in ``axis``)."""
    x, gamma, beta, x_hat, _, _, _ = _prepare(x, num_groups, gamma, beta, axis, eps, "group_norm")
    y = x_hat.reshape(x.shape)
    if gamma is not None:
        y = y * gamma
    if beta is not None:
        y = y + beta
    return y.astype(x.dtype, copy=False)


def group_norm_backward(dy: object, x: object, num_groups: int, gamma: object = None, beta: object = None, *,
                        axis: Axis = -1, eps: float = 1e-5) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Gradients ``(dx, dgamma, dbeta)`` of :func:`group_norm`, derived by hand."""
    x, gamma, beta, x_hat, rstd, shape, grouped_axes = _prepare(x, num_groups, gamma, beta, axis, eps,
                                                                "group_norm_backward")
    dy = as_float_array(dy, name="dy")
    if dy.shape != x.shape:
        raise ValueError(f"dy must have the shape of x, {x.shape}; got {dy.shape}")
    dy = dy.astype(x_hat.dtype, copy=False)
    g = dy * gamma if gamma is not None else dy  # the affine step is per channel, outside the groups
    dx, _, _ = gradients(g.reshape(shape), x_hat, rstd, None, None, grouped_axes)
    x_hat = x_hat.reshape(x.shape)
    dgamma = None if gamma is None else sum_to_shape(dy * x_hat, gamma.shape).astype(x.dtype)
    dbeta = None if beta is None else sum_to_shape(dy, beta.shape).astype(x.dtype)
    return dx.reshape(x.shape).astype(x.dtype, copy=False), dgamma, dbeta


class GroupNorm:
    """Group norm with its own gain and bias (gains 1, biases 0), the twin of :class:`~lnlib.numpy.LayerNorm`.

    ``shape`` is the shape of the gain and bias, broadcast against ``x`` (``(C, 1, 1)``: per channel, for an
    NCHW batch with ``axis=(1, 2, 3)``). ``num_groups`` must divide the channels of ``axis``'s first axis
    (checked on each call, with the input in hand). ``train()``/``eval()`` change nothing: the statistics
    are each case's own.
    """

    def __init__(self, shape: int | tuple[int, ...], num_groups: int, *, axis: Axis = -1, eps: float = 1e-5,
                 affine: bool = True, dtype: object = np.float64) -> None:
        shape = check_shape(shape, name="shape")
        check_axis(axis)
        self.num_groups, self.axis, self.eps, self.training = check_num_groups(num_groups), axis, check_eps(eps), True
        dtype = as_float_dtype(dtype)
        self.gamma = np.ones(shape, dtype=dtype) if check_bool(affine, name="affine") else None
        self.beta = np.zeros(shape, dtype=dtype) if affine else None

    def __call__(self, x: object) -> np.ndarray:
        return group_norm(x, self.num_groups, self.gamma, self.beta, axis=self.axis, eps=self.eps)

    def train(self, mode: bool = True) -> "GroupNorm":
        self.training = mode
        return self

    def eval(self) -> "GroupNorm":
        return self.train(False)

    def __repr__(self) -> str:
        shape = None if self.gamma is None else self.gamma.shape
        return f"GroupNorm(shape={shape}, num_groups={self.num_groups}, axis={self.axis}, eps={self.eps})"
