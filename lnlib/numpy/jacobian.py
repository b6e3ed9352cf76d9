r"""Jacobians of the normalization, written out as matrices: the analytic one and a finite-difference one.

The backward pass of :mod:`lnlib.numpy.normalization` never forms a Jacobian; it applies one. For small
arrays it pays to build the matrix itself, to *look* at it (which inputs influence which outputs) and to
check it entry by entry.

**The analytic Jacobian.** Within one slice over the axes :math:`A` (:math:`M` values, variance with
``ddof`` :math:`d`), write :math:`c = x - \mu` and :math:`r = (\sigma^2+\epsilon)^{-1/2}`. Then

.. math::

    \frac{\partial \mu}{\partial x_j} = \frac1M, \qquad
    \frac{\partial \sigma^2}{\partial x_j} = \frac{2 c_j}{M-d}, \qquad
    \frac{\partial r}{\partial x_j} = -\tfrac12 r^3 \frac{2c_j}{M-d} = -\frac{r^2\,\hat x_j}{M-d},

(the term of :math:`\partial\sigma^2/\partial x_j` that comes through :math:`\mu` is
:math:`-\frac{2}{M(M-d)}\sum_i c_i = 0`) and, from :math:`\hat x_i = c_i\,r`,

.. math::

    \frac{\partial \hat x_i}{\partial x_j}
      = r\Big(\delta_{ij} - \frac1M\Big) + c_i\frac{\partial r}{\partial x_j}
      = r\Big(\delta_{ij} - \frac1M - \frac{\hat x_i\,\hat x_j}{M-d}\Big),
    \qquad
    J = r\Big(I - \frac{\mathbf 1\mathbf 1^\top}{M} - \frac{\hat x\hat x^\top}{M-d}\Big).

Entries between different slices are zero: each slice is standardized with its own statistics. With a
gain, :math:`y = \gamma\odot\hat x + \beta` and the Jacobian is :math:`\operatorname{diag}(\gamma)\,J`
(:math:`\beta` does not enter). :math:`\epsilon` only enters through :math:`r` and :math:`\hat x`, so the
formula is exact for every :math:`\epsilon \ge 0`.

**Its spectrum** (one slice, no gain). :math:`J` is symmetric. Since :math:`\sum_i \hat x_i = 0`,
:math:`J\mathbf 1 = 0`. Since :math:`\lVert\hat x\rVert^2 = r^2\sum_i c_i^2 = r^2 (M-d)\,\sigma^2`,

.. math::

    J\hat x = r\,(1 - r^2\sigma^2)\,\hat x = \frac{r\,\epsilon}{\sigma^2+\epsilon}\,\hat x ,

and every vector orthogonal to both :math:`\mathbf 1` and :math:`\hat x` has eigenvalue :math:`r`. So the
input gradient :math:`J^\top g = J g` is orthogonal to :math:`\mathbf 1` exactly, and its component along
:math:`\hat x` is :math:`r\,(g\cdot\hat x)\,\epsilon/(\sigma^2+\epsilon)`: zero only for
:math:`\epsilon = 0`.

**Flattening.** An input of shape ``S`` is flattened in C order, so the matrix has shape
``(x.size, x.size)`` and ``J[p, q]`` is :math:`\partial y_p/\partial x_q` for the flat indices ``p, q``
(:func:`numpy.ravel_multi_index` with shape ``S`` turns coordinates into flat indices).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable

import numpy as np

from .._checks import check_ddof, check_eps, check_reduction_size, kept_shape, normalize_axis, reduced_size
from ._arrays import as_float_array, as_param
from .normalization import standardize

Axis = int | tuple[int, ...]

#: Largest ``x.size`` for which a Jacobian matrix is built (``x.size**2`` float64 entries: 128 MiB).
MAX_JACOBIAN_SIZE = 4096


def normalization_jacobian(x: object, gamma: object = None, *, axis: Axis, eps: float, ddof: int = 0,
                           minimum: int = 1, what: str = "normalization_jacobian") -> np.ndarray:
    r"""The Jacobian :math:`\partial y/\partial x` of :func:`~lnlib.numpy.normalization.normalize`, as a matrix.

    ``y = gamma * (x - mean) / sqrt(var + eps) + beta`` with the statistics over ``axis``; the result has
    shape ``(x.size, x.size)`` (C-order flattening of input and output) and the compute dtype of ``x``.
    Entry ``[p, q]`` is :math:`\gamma_p\, r_p(\delta_{pq} - 1/M - \hat x_p \hat x_q/(M-d))` when ``p`` and
    ``q`` lie in the same slice over ``axis`` and 0 otherwise (module docstring). ``beta`` does not enter.
    ``minimum`` and ``what`` are as in :func:`~lnlib.numpy.normalization.normalize`.
    """
    x = as_float_array(x)
    axes = normalize_axis(axis, x.ndim)
    eps = check_eps(eps)
    ddof = check_ddof(ddof)
    check_reduction_size(x.shape, axes, minimum=max(minimum, ddof + 1), what=what)
    gamma = as_param(gamma, x, name="gamma")
    _check_jacobian_size(x.shape)
    x_hat, rstd = standardize(x, axes, eps, ddof)
    size = reduced_size(x.shape, axes)
    flat_hat = x_hat.reshape(-1)
    flat_r = np.broadcast_to(rstd, x.shape).reshape(-1)
    jac = np.eye(x.size, dtype=x_hat.dtype) - x_hat.dtype.type(1.0 / size)
    jac -= np.outer(flat_hat, flat_hat) / (size - ddof)
    jac *= flat_r[:, None]
    jac[~same_slice(x.shape, axes)] = 0.0
    if gamma is not None:
        jac *= np.broadcast_to(gamma, x.shape).reshape(-1)[:, None]
    return jac


def layer_norm_jacobian(x: object, gamma: object = None, *, axis: Axis = -1, eps: float = 1e-5) -> np.ndarray:
    """The Jacobian of :func:`lnlib.numpy.layer_norm` with respect to ``x``, shape ``(x.size, x.size)``.

    Block diagonal over the training cases: an output never depends on another case's input.
    """
    return normalization_jacobian(x, gamma, axis=axis, eps=eps, what="layer_norm_jacobian")


def batch_norm_jacobian(x: object, gamma: object = None, *, axis: Axis = 0, eps: float = 1e-5,
                        ddof: int = 0) -> np.ndarray:
    """The Jacobian of :func:`lnlib.numpy.batch_norm` (training mode) with respect to ``x``.

    Shape ``(x.size, x.size)``. Zero between different features (slices over ``axis``), dense between
    the cases of the batch within one feature.
    """
    return normalization_jacobian(x, gamma, axis=axis, eps=eps, ddof=ddof, minimum=2,
                                  what="batch_norm_jacobian")


def same_slice(shape: tuple[int, ...], axes: tuple[int, ...]) -> np.ndarray:
    """Boolean ``(size, size)`` matrix: True where two flat indices of ``shape`` share a slice over ``axes``.

    Two elements share a slice (and so the same mean and variance) when their coordinates agree on
    every axis *not* in ``axes``. ``axes`` must already be normalized (sorted, non-negative).
    """
    kept = kept_shape(shape, axes)
    slice_id = np.broadcast_to(np.arange(math.prod(kept)).reshape(kept), shape).reshape(-1)
    return slice_id[:, None] == slice_id[None, :]


def finite_difference_jacobian(f: Callable[[np.ndarray], object], x: object, *, h: float = 1e-6) -> np.ndarray:
    r"""Central-difference Jacobian of ``f`` at ``x``, shape ``(f(x).size, x.size)``, in float64.

    Column ``q`` is :math:`(f(x + h e_q) - f(x - h e_q)) / (2h)`, with the step actually taken
    (:math:`(x_q+h)-(x_q-h)`, which rounding can make differ from :math:`2h`) in the denominator. The
    error is :math:`O(h^2)` (truncation, :math:`\frac{h^2}{6}f'''`) plus :math:`O(u/h)` (rounding of the
    two evaluations, :math:`u\approx 1.1\times10^{-16}`), smallest near :math:`h\approx u^{1/3}\approx
    5\times10^{-6}` for values of order one. ``x`` must be float64 (a float32 difference quotient has
    only a few correct digits) and ``f`` must return float64 values of one fixed shape. ``f`` gets a
    fresh copy of the perturbed input on every call; ``x`` itself is not modified.
    """
    if not callable(f):
        raise TypeError(f"f must be a callable taking and returning arrays, got {type(f).__name__}")
    x = as_float_array(x)
    if x.dtype != np.float64:
        raise TypeError(f"x must have dtype float64 for finite differences, got dtype {x.dtype}; "
                        f"convert it first with .astype('float64')")
    h = _check_step(h)
    _check_jacobian_size(x.shape)
    base = _evaluate(f, x.copy())
    jac = np.empty((base.size, x.size), dtype=np.float64)
    flat = x.reshape(-1)
    for q in range(x.size):
        plus, minus = flat.copy(), flat.copy()
        plus[q] += h
        minus[q] -= h
        f_plus = _evaluate(f, plus.reshape(x.shape), base.shape)
        f_minus = _evaluate(f, minus.reshape(x.shape), base.shape)
        jac[:, q] = (f_plus - f_minus).reshape(-1) / (plus[q] - minus[q])
    return jac


def coupling(jacobian: object, shape: tuple[int, ...], *, axis: int) -> np.ndarray:
    r"""How strongly the positions along one axis are coupled: ``C[a, b] = max |dy[..a..] / dx[..b..]|``.

    ``jacobian`` is a ``(size, size)`` matrix of a function from arrays of ``shape`` to arrays of ``shape``
    (C-order flattening, as the functions above return). ``C`` has shape ``(shape[axis], shape[axis])``;
    entry ``[a, b]`` is the largest absolute derivative of an output at coordinate ``a`` along ``axis``
    with respect to an input at coordinate ``b`` along ``axis``, over all other coordinates. With
    ``axis=0`` of an ``(N, H)`` batch, a diagonal ``C`` means that no case influences another case.
    """
    if (not isinstance(shape, (tuple, list))
            or not all(isinstance(n, numbers.Integral) and not isinstance(n, bool) and n >= 0 for n in shape)):
        raise TypeError(f"shape must be a tuple of non-negative ints, got {shape!r}")
    shape = tuple(int(n) for n in shape)
    jac = as_float_array(jacobian, name="jacobian")
    size = math.prod(shape)
    if jac.shape != (size, size):
        raise ValueError(f"jacobian must be a ({size}, {size}) matrix for arrays of shape {shape}, "
                         f"got shape {jac.shape}")
    (ax,) = normalize_axis(axis, len(shape))
    blocks = np.abs(jac).reshape(shape + shape)
    blocks = np.moveaxis(blocks, (ax, len(shape) + ax), (0, 1))
    return blocks.reshape(shape[ax], shape[ax], -1).max(axis=-1, initial=0.0)


def _evaluate(f: Callable[[np.ndarray], object], x: np.ndarray,
              shape: tuple[int, ...] | None = None) -> np.ndarray:
    value = np.asarray(f(x))
    if value.dtype != np.float64:
        raise TypeError(f"f must return float64 values for finite differences, got dtype {value.dtype}")
    if shape is not None and value.shape != shape:
        raise ValueError(f"f must return arrays of one shape; got {shape} at x and {value.shape} at a perturbed x")
    return value


def _check_step(h: object) -> float:
    if isinstance(h, bool) or not isinstance(h, numbers.Real):
        raise TypeError(f"h must be a real number, got {h!r} ({type(h).__name__})")
    value = float(h)
    if not (0.0 < value < math.inf):
        raise ValueError(f"h must be a finite number > 0, got {h!r}")
    return value


def _check_jacobian_size(shape: tuple[int, ...]) -> None:
    size = math.prod(shape)
    if size > MAX_JACOBIAN_SIZE:
        raise ValueError(f"x with shape {shape} has {size} elements; a Jacobian matrix is built only for "
                         f"x.size <= {MAX_JACOBIAN_SIZE} ({size}**2 entries would not fit in memory sensibly)")
