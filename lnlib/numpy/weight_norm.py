r"""Weight normalization (Salimans & Kingma 2016), NumPy reference.

Weight norm normalizes the *weights* instead of the summed inputs: each unit's incoming weight vector is
written as a direction and a length,

.. math::

    w = g\,\frac{v}{\lVert v\rVert}, \qquad \lVert v\rVert = \sqrt{\textstyle\sum_A v^2},

with the norm over ``axis`` (``axis=-1`` of an ``(out, in)`` matrix: one norm per output unit). In the
paper's common form (eq. 5) this is :math:`\mu = 0`, :math:`\sigma = \lVert w\rVert_2`: the summed input
:math:`w^\top x` is divided by the weight norm, whatever the data. The backward pass projects the incoming
gradient onto the directions orthogonal to :math:`\hat v = v/\lVert v\rVert`,

.. math::

    \frac{\partial L}{\partial g} = \sum_A \hat v \odot \frac{\partial L}{\partial w}, \qquad
    \frac{\partial L}{\partial v} = \frac{g}{\lVert v\rVert}\Big(\frac{\partial L}{\partial w}
        - \hat v \sum_A \hat v \odot \frac{\partial L}{\partial w}\Big),

so the gradient with respect to :math:`v` is orthogonal to :math:`v` and shrinks as :math:`\lVert v\rVert`
grows (the implicit learning-rate reduction of the paper's §5.2). A zero vector has no direction: its
normalized weights are NaN (0/0), as in PyTorch.
"""

from __future__ import annotations

import numpy as np

from .._checks import normalize_axis, reduced_size
from ._arrays import as_float_array, as_param, compute_dtype, sum_to_shape
from .normalization import rescaled_standardize, rstd_in_range, rstd_out_of_range

Axis = int | tuple[int, ...]


def _direction(v: object, axis: Axis) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[int, ...]]:
    """``(v, v / ||v||, 1 / ||v||, axes)``, the last two in the compute dtype.

    The norm is checked like a variance (:func:`lnlib.numpy.normalization.standardize`): where the sum of
    squares overflowed or underflowed, the direction is recomputed on ``v`` scaled by a power of two
    (:func:`~lnlib.numpy.normalization.rescaled_standardize` without centering and with ``ddof = M - 1``,
    which makes its "variance" the plain sum of squares), so it is accurate for every finite ``v``.
    """
    v = as_float_array(v, name="v")
    axes = normalize_axis(axis, v.ndim)
    vc = v.astype(compute_dtype(v.dtype), copy=False)
    with np.errstate(all="ignore"):  # a zero vector gives NaN (0/0), as documented; the rest is redone
        sum_squares = np.square(vc).sum(axis=axes, keepdims=True)
        norm = np.sqrt(sum_squares)
        direction, inverse_norm = vc / norm, 1.0 / norm
        if rstd_in_range(inverse_norm, 0.0):
            return v, direction, inverse_norm, axes
        redo = rstd_out_of_range(inverse_norm)
        safe_direction, safe_inverse, _, _ = rescaled_standardize(vc, axes, 0.0, reduced_size(vc.shape, axes) - 1,
                                                                  center=False)
    return v, np.where(redo, safe_direction, direction), np.where(redo, safe_inverse, inverse_norm), axes


def weight_norm(v: object, g: object = None, *, axis: Axis = -1) -> np.ndarray:
    """``g * v / ||v||`` with the norm over ``axis``; ``g=None`` gives unit-length vectors."""
    v, direction, _, _ = _direction(v, axis)
    g = as_param(g, v, name="g")
    w = direction if g is None else direction * g
    return w.astype(v.dtype, copy=False)


def weight_norm_backward(dw: object, v: object, g: object = None, *, axis: Axis = -1
                         ) -> tuple[np.ndarray, np.ndarray | None]:
    """Gradients ``(dv, dg)`` of :func:`weight_norm`; ``dg`` has the shape of ``g`` (``None`` without ``g``)."""
    v, direction, inverse_norm, axes = _direction(v, axis)
    dw = as_float_array(dw, name="dw")
    if dw.shape != v.shape:
        raise ValueError(f"dw must have the shape of v, {v.shape}; got {dw.shape}")
    g = as_param(g, v, name="g")
    dw = dw.astype(direction.dtype, copy=False)
    along = (direction * dw).sum(axis=axes, keepdims=True)
    scale = inverse_norm if g is None else g * inverse_norm
    dv = scale * (dw - direction * along)
    dg = None if g is None else sum_to_shape(dw * direction, g.shape).astype(v.dtype)
    return dv.astype(v.dtype, copy=False), dg
