"""Exact references for the numerics tests: the defining formulas evaluated in decimal arithmetic.

``decimal`` converts every float exactly (``Decimal(float)`` is exact) and has an exponent range far wider
than float64's, so these references neither overflow nor underflow: what they return is the correctly
rounded float64 value of the exact result, for any finite input, however large or tiny.
"""

from __future__ import annotations

import decimal
from decimal import Decimal

import numpy as np

#: The accuracy statement of :mod:`lnlib.numpy.normalization`, per input dtype: with every statistic of a
#: slice accumulated as the docstring says, |computed - exact| <= TOLERANCE * (1 + |mean| / sigma) *
#: (largest |exact| of the slice) + 2 * (smallest normal number of the dtype), for every finite input.
TOLERANCE = {"float64": 4e-15, "float32": 2e-6, "float16": 2e-3, "bfloat16": 1.6e-2}

CONTEXT = decimal.Context(prec=60, Emin=-999999, Emax=999999)
#: Enough digits for the exact sum of any float64 values (a float64 has at most 767 significant decimal
#: digits; the sum of floats spanning the whole exponent range needs about 650 more): the mean must be
#: exact, or ``x - mean`` of a slice whose values are all equal comes out as a rounding residue, not 0.
EXACT_SUM = decimal.Context(prec=1500, Emin=-999999, Emax=999999)


def _exact_mean(values: list[Decimal]) -> Decimal:
    """The mean of ``values`` with the sum exact and one division rounded to :data:`EXACT_SUM`'s digits."""
    with decimal.localcontext(EXACT_SUM):
        return sum(values) / len(values)

#: The smallest normal number of each dtype (bfloat16 has float32's exponent range: 2**-126), from NumPy so
#: that these references need no torch.
SMALLEST_NORMAL = {"float64": float(np.finfo(np.float64).smallest_normal),
                   "float32": float(np.finfo(np.float32).smallest_normal),
                   "float16": float(np.finfo(np.float16).smallest_normal), "bfloat16": 2.0 ** -126}


def _slices(x: np.ndarray, axes: tuple[int, ...]) -> tuple[np.ndarray, tuple[int, ...]]:
    """``x`` with the axes in ``axes`` moved last and flattened: shape ``(slices, M)``; and the other sizes."""
    moved = np.moveaxis(x, axes, tuple(range(-len(axes), 0)))
    rest = moved.shape[: x.ndim - len(axes)]
    return moved.reshape(int(np.prod(rest, dtype=int)), -1), rest


def _back(values: np.ndarray, reduced: tuple[int, ...], axes: tuple[int, ...], rest: tuple[int, ...]) -> np.ndarray:
    """Undo :func:`_slices` for ``values`` of shape ``(slices, prod(reduced))``."""
    return np.moveaxis(values.reshape(rest + reduced), tuple(range(-len(axes), 0)), axes)


def exact_standardize(x: np.ndarray, axes: tuple[int, ...], eps: float, *, center: bool = True, ddof: int = 0
                      ) -> np.ndarray:
    """``(x - mean) / sqrt(var + eps)`` over ``axes`` (``center=False``: ``x / sqrt(mean(x**2) + eps)``),
    exact, rounded once to float64. A slice with a non-finite value or ``var + eps == 0`` gives NaN."""
    rows, rest = _slices(np.asarray(x, dtype=np.float64), axes)
    out = np.empty(rows.shape)
    eps_d = Decimal(float(eps))
    with decimal.localcontext(CONTEXT):
        for i, row in enumerate(rows):
            if not np.isfinite(row).all():
                out[i] = np.nan
                continue
            values = [Decimal(float(v)) for v in row]
            mean = _exact_mean(values) if center else Decimal(0)
            with decimal.localcontext(EXACT_SUM):  # the differences exactly (60 digits could cancel to noise)
                centred = [+(v - mean) for v in values]
            denominator = (sum(c * c for c in centred) / (len(values) - ddof) + eps_d).sqrt()
            out[i] = [float(c / denominator) if denominator else np.nan for c in centred]
    return _back(out, tuple(np.shape(x)[a] for a in axes), axes, rest)


def exact_direction(v: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    """``v / ||v||`` over ``axes``, exact, rounded once to float64 (NaN for a zero vector)."""
    rows, rest = _slices(np.asarray(v, dtype=np.float64), axes)
    out = np.empty(rows.shape)
    with decimal.localcontext(CONTEXT):
        for i, row in enumerate(rows):
            values = [Decimal(float(a)) for a in row]
            norm = sum(a * a for a in values).sqrt()
            out[i] = [float(a / norm) if norm else np.nan for a in values]
    return _back(out, tuple(np.shape(v)[a] for a in axes), axes, rest)


def exact_moments(x: np.ndarray, axes: tuple[int, ...], ddof: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(mean, var)`` over ``axes`` with the reduced axes kept, exact, rounded once to float64."""
    rows, rest = _slices(np.asarray(x, dtype=np.float64), axes)
    means, variances = np.empty(len(rows)), np.empty(len(rows))
    with decimal.localcontext(CONTEXT):
        for i, row in enumerate(rows):
            values = [Decimal(float(v)) for v in row]
            mean = _exact_mean(values)
            means[i] = float(mean)
            with decimal.localcontext(EXACT_SUM):
                centred = [+(v - mean) for v in values]
            variances[i] = float(sum(c * c for c in centred) / (len(values) - ddof))
    ones = (1,) * len(axes)
    return _back(means[:, None], ones, axes, rest), _back(variances[:, None], ones, axes, rest)


def relative_errors(y: np.ndarray, exact: np.ndarray, conditioning: np.ndarray | float = 1.0) -> np.ndarray:
    """Per slice (last axis), the largest |y - exact| in units of the slice's largest |exact| value times
    ``conditioning`` (``1 + |mean| / sigma``, broadcast against the slices)."""
    scale = np.max(np.abs(exact), axis=-1, keepdims=True) * conditioning
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.max(np.where(scale > 0, np.abs(y - exact) / scale, 0.0), axis=-1)  # all-0 slice: floor only


def assert_accurate(y: np.ndarray, exact: np.ndarray, dtype: str, what: str,
                    conditioning: np.ndarray | float = 1.0) -> float:
    """Check the accuracy statement (statistics over the last axis of ``y`` and ``exact``); returns the
    largest error in units of ``scale * conditioning`` over the slices where the relative part of the bound
    is at least the absolute floor (0 if there are none)."""
    y = np.asarray(y, dtype=np.float64)
    scale = np.nanmax(np.abs(exact), axis=-1, keepdims=True)
    floor = 2 * SMALLEST_NORMAL[dtype]
    assert np.isfinite(y).all(), f"{what}: non-finite output {y} where the exact result is {exact}"
    bad = np.abs(y - exact) > TOLERANCE[dtype] * scale * conditioning + floor
    assert not bad.any(), f"{what}: computed {y[bad]}, exact {exact[bad]}"
    errors = relative_errors(y, exact, conditioning)
    above_floor = (scale * conditioning * TOLERANCE[dtype] >= floor)[..., 0]  # where the relative bound rules
    return float(errors[above_floor].max()) if above_floor.any() else 0.0
