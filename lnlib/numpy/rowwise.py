r"""Row-blocked kernels: the standardization of :mod:`lnlib.numpy.normalization` for the commonest layout.

When the statistics run over the last axis only (layer norm of ``(..., H)`` activations, the paper's eq. 3)
and the gain and bias are per unit, the arithmetic is the same as the general path, but it is organised
for speed (chapter 16 measures it):

* the rows are processed in blocks of about 512 KiB, so the five passes over a block (sum, centre, square
  and sum, scale, affine) hit the processor's L2 cache instead of main memory;
* every pass writes into the output array (or a block-sized buffer), never into fresh temporaries;
* sums use ``np.add.reduce`` along contiguous rows (pairwise summation), and the sum of squares of the
  centred block ``np.einsum('ij,ij->i')``; the variance is still computed from centred values, never as
  :math:`\mathbb E[x^2]-\mathbb E[x]^2`.

The results agree with the general path to rounding (tested), so the choice between the two is an
implementation detail of :func:`lnlib.numpy.normalization.normalize`.
"""

from __future__ import annotations

import numpy as np

from . import normalization

BLOCK_BYTES = 512 * 1024


def applies(x: np.ndarray, axes: tuple[int, ...], gamma: np.ndarray | None, beta: np.ndarray | None,
            ddof: int) -> bool:
    """Whether the row-blocked kernels compute this case: float32/float64, statistics over the last axis
    only, biased variance, and per-unit (or no) gain and bias."""
    if x.dtype not in (np.float32, np.float64) or axes != (x.ndim - 1,) or ddof != 0 or x.size == 0:
        return False
    width = x.shape[-1]
    return all(p is None or (p.size == width and (p.ndim == 0 or p.shape[-1] == width)) for p in (gamma, beta))


def _rows(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x).reshape(-1, x.shape[-1])


def _block_rows(width: int, itemsize: int) -> int:
    return max(1, BLOCK_BYTES // (width * itemsize))


def _standardize_block(xb: np.ndarray, yb: np.ndarray, eps: float, center: bool, rstd: np.ndarray) -> np.ndarray:
    """Write the standardized rows of ``xb`` into ``yb`` and their reciprocal standard deviations into
    ``rstd`` (returned), as computed: the callers check ``rstd`` once per call (:func:`forward`)."""
    width = xb.shape[1]
    if center:
        mean = np.add.reduce(xb, axis=1)
        mean *= 1.0 / width
        np.subtract(xb, mean[:, None], out=yb)
    else:
        np.copyto(yb, xb)
    var = np.einsum("ij,ij->i", yb, yb, out=rstd)
    var *= 1.0 / width
    var += eps
    np.sqrt(var, out=rstd)
    np.divide(1.0, rstd, out=rstd)
    yb *= rstd[:, None]
    return rstd


def forward(x: np.ndarray, gamma: np.ndarray | None, beta: np.ndarray | None, eps: float, center: bool = True,
            out: np.ndarray | None = None) -> np.ndarray:
    """``gamma * standardize(x) + beta`` over the last axis, block by block, into ``out`` (allocated if None).

    Rows whose statistics left the accurate range (overflow, harmful underflow:
    :func:`lnlib.numpy.normalization.standardize`) are recomputed at the end by
    :func:`~lnlib.numpy.normalization.rescaled_standardize`, so the common case costs one min over the
    reciprocal standard deviations. In place (``out`` overlapping ``x``), the rows are computed into a new
    array first, so that ``x`` is still there for such a repair.
    """
    if out is not None and np.may_share_memory(out, x):
        np.copyto(out, forward(x, gamma, beta, eps, center))
        return out
    if out is None:
        out = np.empty(x.shape, dtype=x.dtype)
    rows_in, rows_out = _rows(x), out.reshape(-1, x.shape[-1])
    rstd = np.empty(rows_in.shape[0], dtype=x.dtype)
    g = None if gamma is None else gamma.reshape(-1).astype(x.dtype, copy=False)
    b = None if beta is None else beta.reshape(-1).astype(x.dtype, copy=False)
    step = _block_rows(x.shape[-1], x.itemsize)
    with np.errstate(all="ignore"):  # whatever goes wrong here is detected and redone below
        for start in range(0, rows_in.shape[0], step):
            yb = rows_out[start:start + step]
            _standardize_block(rows_in[start:start + step], yb, eps, center, rstd[start:start + step])
            if g is not None:
                yb *= g
            if b is not None:
                yb += b
    if not normalization.rstd_in_range(rstd, eps):
        redo = normalization.rstd_out_of_range(rstd)
        y, _, _, _ = normalization.rescaled_standardize(rows_in[redo], (1,), eps, 0, center)
        if g is not None:
            y *= g
        if b is not None:
            y += b
        rows_out[redo] = y
    return out


def backward(dy: np.ndarray, x: np.ndarray, gamma: np.ndarray | None, eps: float, center: bool = True
             ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray] | None:
    """``(dx, dgamma, dbeta)`` over the last axis; ``dgamma`` and ``dbeta`` as flat ``(H,)`` arrays; ``None``
    when some row's statistics left the accurate range (the caller then takes the general path, which
    repairs them).

    Per block: recompute :math:`\\hat x` and :math:`r`, then
    :math:`dx = r\\,(g - \\overline{g} - \\hat x\\,\\overline{g\\hat x})` with :math:`g = \\gamma\\,dy`, and
    accumulate :math:`\\sum dy\\,\\hat x` and :math:`\\sum dy` over the rows.
    """
    width = x.shape[-1]
    rows_x, rows_dy = _rows(x), _rows(dy.astype(x.dtype, copy=False))
    dx = np.empty(x.shape, dtype=x.dtype)
    rows_dx = dx.reshape(-1, width)
    g_vec = None if gamma is None else gamma.reshape(-1).astype(x.dtype, copy=False)
    dgamma = np.zeros(width, dtype=x.dtype)
    dbeta = np.zeros(width, dtype=x.dtype)
    step = _block_rows(width, x.itemsize)
    x_hat = np.empty((min(step, rows_x.shape[0]), width), dtype=x.dtype)
    rstd_rows = np.empty(rows_x.shape[0], dtype=x.dtype)
    with np.errstate(all="ignore"):  # whatever goes wrong here is detected below
        for start in range(0, rows_x.shape[0], step):
            xb, dyb, dxb = rows_x[start:start + step], rows_dy[start:start + step], rows_dx[start:start + step]
            hat = x_hat[: xb.shape[0]]
            rstd = _standardize_block(xb, hat, eps, center, rstd_rows[start:start + step])
            dgamma += np.einsum("ij,ij->j", dyb, hat)
            dbeta += np.add.reduce(dyb, axis=0)
            if g_vec is None:
                np.copyto(dxb, dyb)
            else:
                np.multiply(dyb, g_vec, out=dxb)
            along = np.einsum("ij,ij->i", dxb, hat)
            along *= 1.0 / width
            if center:
                mean_g = np.add.reduce(dxb, axis=1)
                mean_g *= 1.0 / width
                dxb -= mean_g[:, None]
            hat *= along[:, None]
            dxb -= hat
            dxb *= rstd[:, None]
    if not normalization.rstd_in_range(rstd_rows, eps):
        return None
    return dx, (None if gamma is None else dgamma), dbeta
