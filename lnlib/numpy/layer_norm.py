r"""Layer normalization (Ba, Kiros & Hinton 2016), NumPy reference.

For the summed inputs :math:`a` of one layer on *one* training case, the paper's eq. 3 takes the
statistics over the :math:`H` hidden units,

.. math::

    \mu = \frac{1}{H}\sum_{i=1}^{H} a_i, \qquad
    \sigma = \sqrt{\frac{1}{H}\sum_{i=1}^{H}(a_i-\mu)^2},

and every unit gets its own gain and bias (eq. 5 with these statistics):
:math:`y_i = g_i\,(a_i-\mu)/\sigma + b_i`. The paper writes no :math:`\epsilon`; the authors' code adds
:math:`10^{-5}` inside the square root, and so do we: :math:`\sigma = \sqrt{\sigma^2_{\text{biased}}+\epsilon}`.

``axis`` names the axes the statistics run over (``-1`` for a ``(batch, H)`` matrix, ``(1, 2, 3)`` for
MATLAB-style statistics over channels and space of an NCHW image). ``gamma``/``beta`` broadcast against
``x`` as in NumPy, so the paper's per-unit affine ``(H,)``, PyTorch's per-element affine ``(C, H, W)``
and a per-channel affine ``(C, 1, 1)`` are all spelled the same way.

The maths and the backward pass live in :mod:`lnlib.numpy.normalization`: layer norm is that
standardization with the statistics taken across features instead of across the batch.
"""

from __future__ import annotations

import numpy as np

from .._checks import check_axis, check_bool, check_eps, check_shape
from ._arrays import as_float_dtype
from .normalization import normalize, normalize_backward

Axis = int | tuple[int, ...]


def layer_norm(x: object, gamma: object = None, beta: object = None, *, axis: Axis = -1,
               eps: float = 1e-5, out: np.ndarray | None = None) -> np.ndarray:
    """Layer-normalize ``x`` over ``axis``: ``gamma * (x - mean) / sqrt(var + eps) + beta``.

    The variance is biased (divides by the number of values, as eq. 3). Each slice over ``axis`` is one
    training case's statistics, so the output for one example never depends on the other examples.
    ``axis`` may have size 1 (the output is then ``beta``: every value equals its mean). ``out`` (NumPy
    only) receives the result: a writable array of x's shape and dtype sharing no memory with ``x``,
    ``gamma`` or ``beta``, except ``out=x`` (or a view of exactly x's memory), which normalizes in place;
    anything else is a ``ValueError``/``TypeError`` naming ``out``.
    """
    return normalize(x, gamma, beta, axis=axis, eps=eps, what="layer_norm", out=out)


def layer_norm_backward(dy: object, x: object, gamma: object = None, beta: object = None, *, axis: Axis = -1,
                        eps: float = 1e-5) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Gradients ``(dx, dgamma, dbeta)`` of :func:`layer_norm`, derived by hand.

    ``dgamma`` has the shape of ``gamma`` and ``dbeta`` the shape of ``beta``; each is ``None`` when the
    corresponding parameter is ``None`` (``beta`` is only read for its shape).
    """
    return normalize_backward(dy, x, gamma, beta, axis=axis, eps=eps, what="layer_norm_backward")


class LayerNorm:
    """Layer norm with its own gain and bias, initialized as in the paper (§6): gains 1, biases 0.

    ``shape`` is the shape of the gain and bias (``(H,)`` for the paper's per-unit affine). ``train()``
    and ``eval()`` exist only so that LN and :class:`~lnlib.numpy.BatchNorm` can be swapped in an
    experiment: layer norm computes the same thing in both modes (the paper's abstract).
    """

    def __init__(self, shape: int | tuple[int, ...], *, axis: Axis = -1, eps: float = 1e-5, affine: bool = True,
                 dtype: object = np.float64) -> None:
        shape = check_shape(shape, name="shape")
        check_axis(axis)
        self.axis, self.eps, self.training = axis, check_eps(eps), True
        dtype = as_float_dtype(dtype)
        self.gamma = np.ones(shape, dtype=dtype) if check_bool(affine, name="affine") else None
        self.beta = np.zeros(shape, dtype=dtype) if affine else None

    def __call__(self, x: object) -> np.ndarray:
        return layer_norm(x, self.gamma, self.beta, axis=self.axis, eps=self.eps)

    def train(self, mode: bool = True) -> "LayerNorm":
        self.training = mode
        return self

    def eval(self) -> "LayerNorm":
        return self.train(False)

    def __repr__(self) -> str:
        shape = None if self.gamma is None else self.gamma.shape
        return f"LayerNorm(shape={shape}, axis={self.axis}, eps={self.eps})"
