r"""RMS normalization (Zhang & Sennrich 2019), NumPy reference.

RMSNorm keeps layer norm's re-scaling and drops its re-centering: for the summed inputs :math:`a` of one
case, over the axes ``axis``,

.. math::

    \mathrm{RMS}(a) = \sqrt{\frac1M\sum_A a^2 + \epsilon}, \qquad y = \gamma \odot \frac{a}{\mathrm{RMS}(a)} + \beta .

It is :func:`lnlib.numpy.normalization.normalize` with ``center=False``; the backward pass is the layer-norm
formula without the mean term, :math:`\partial L/\partial a = r\,(g - \hat a\,\frac1M\sum_A g\,\hat a)`.
Without centering it is not invariant to adding a constant to every summed input (chapter 4 measures
which of the paper's invariances it keeps).
"""

from __future__ import annotations

import numpy as np

from .normalization import normalize, normalize_backward

Axis = int | tuple[int, ...]


def rms_norm(x: object, gamma: object = None, beta: object = None, *, axis: Axis = -1,
             eps: float = 1e-5, out: np.ndarray | None = None) -> np.ndarray:
    """``gamma * x / sqrt(mean(x**2 over axis) + eps) + beta`` (``out`` as in :func:`layer_norm`)."""
    return normalize(x, gamma, beta, axis=axis, eps=eps, center=False, what="rms_norm", out=out)


def rms_norm_backward(dy: object, x: object, gamma: object = None, beta: object = None, *, axis: Axis = -1,
                      eps: float = 1e-5) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Gradients ``(dx, dgamma, dbeta)`` of :func:`rms_norm`, derived by hand."""
    return normalize_backward(dy, x, gamma, beta, axis=axis, eps=eps, center=False, what="rms_norm_backward")
