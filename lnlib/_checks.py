"""Argument checks shared by the NumPy and the PyTorch backends.

Both backends validate their inputs with the same functions, so a bad argument gets the same message
whichever backend receives it. Every check raises ``ValueError`` (wrong value or shape) or ``TypeError``
(wrong kind of object or dtype) and names the argument, what was received and what is expected.

The functions here only look at shapes, integers and dtype *names*; they never import NumPy or PyTorch.
"""

from __future__ import annotations

import functools
import numbers
from collections.abc import Sequence

Axis = int | Sequence[int]

#: dtypes a normalization accepts, by name (NumPy's and PyTorch's spellings agree for these).
FLOAT_DTYPES = ("float16", "bfloat16", "float32", "float64")

#: The dtype statistics are accumulated in, by input dtype name: one rule for both backends. The two 16-bit
#: formats (8 and 11 significant bits) are accumulated in float32; float32 and float64 in themselves.
ACCUMULATION_DTYPES = {"float16": "float32", "bfloat16": "float32", "float32": "float32", "float64": "float64"}

#: Below this value of ``var + eps`` (per accumulation dtype) the squares that make up a variance may be
#: subnormal and lose relative precision: ``tiny / u`` (smallest normal number over the unit roundoff),
#: 2**-102 in float32 and 2**-969 in float64. Slices whose ``var + eps`` falls below it, or whose variance
#: overflowed (inf or NaN), are recomputed on values rescaled by a power of two (exact), which keeps the
#: two-pass accuracy over the whole finite range of the dtype. Both backends test the reciprocal standard
#: deviation ``r = 1/sqrt(var + eps)`` they compute anyway: the statistics are in range exactly when
#: ``0 < r <= RSTD_CEILING[dtype]`` (NaN fails both comparisons).
VARIANCE_FLOOR = {"float32": 2.0 ** -102, "float64": 2.0 ** -969}
RSTD_CEILING = {name: floor ** -0.5 for name, floor in VARIANCE_FLOOR.items()}


def accumulation_dtype(dtype_name: str) -> str:
    """Name of the dtype statistics of a ``dtype_name`` input are accumulated in (see ACCUMULATION_DTYPES)."""
    return ACCUMULATION_DTYPES.get(dtype_name, dtype_name)


#: The largest floor: an ``eps`` at least this large makes the ceiling check unnecessary in every dtype.
LARGEST_FLOOR = max(VARIANCE_FLOOR.values())


def ceiling_needed(eps: float, dtype_name: str) -> bool:
    """Whether ``r <= RSTD_CEILING`` must be checked: only when ``eps`` is below the variance floor (with a
    larger ``eps``, ``var + eps`` cannot fall below it, and ``r > 0`` alone decides: one reduction)."""
    return eps < VARIANCE_FLOOR[dtype_name]


def normalize_axis(axis: object, ndim: int, *, name: str = "axis") -> tuple[int, ...]:
    """Turn ``axis`` (an int or a sequence of ints, negative allowed) into sorted non-negative axes.

    Results for hashable arguments are cached (typed, so ``True`` is never taken for ``1``): the checks run
    on every call of every normalization, and small-batch training calls them thousands of times a second.

    Raises ``TypeError`` for anything that is not an int or a sequence of ints (bools included: ``True``
    is an int to Python but never an axis), and ``ValueError`` for an empty sequence, an axis out of
    range for ``ndim`` dimensions, or an axis named twice (``(1, -1)`` on a 2-D array names axis 1 twice).
    """
    try:
        return _normalize_axis_cached(axis, ndim, name)
    except TypeError as err:
        if "unhashable" not in str(err):
            raise
    return _normalize_axis(axis, ndim, name)


@functools.lru_cache(maxsize=4096, typed=True)
def _normalize_axis_cached(axis: object, ndim: int, name: str) -> tuple[int, ...]:
    return _normalize_axis(axis, ndim, name)


def check_axis(axis: object, *, name: str = "axis") -> tuple[int, ...]:
    """The checks of an ``axis`` argument that need no input: an int or a non-empty sequence of ints (bools
    and strings refused). Returns the axes as a tuple; constructors call it so that a bad ``axis`` is
    refused when the module is built, not at its first call."""
    if isinstance(axis, bool) or not isinstance(axis, (numbers.Integral, Sequence)) or isinstance(axis, str):
        raise TypeError(f"{name} must be an int or a tuple of ints, got {axis!r} ({type(axis).__name__})")
    axes = (axis,) if isinstance(axis, numbers.Integral) else tuple(axis)
    if len(axes) == 0:
        raise ValueError(f"{name} must name at least one axis, got an empty {type(axis).__name__}")
    for a in axes:
        if isinstance(a, bool) or not isinstance(a, numbers.Integral):
            raise TypeError(f"{name} must contain ints, got {a!r} ({type(a).__name__}) in {axis!r}")
    return axes


def _normalize_axis(axis: object, ndim: int, name: str) -> tuple[int, ...]:
    axes = check_axis(axis, name=name)
    if ndim == 0:
        raise ValueError(f"{name}={axis!r} cannot apply to a 0-dimensional input (a scalar); expected an input "
                         f"with at least one axis to take statistics over")
    normalized = []
    for a in axes:
        if not -ndim <= a < ndim:
            raise ValueError(
                f"{name}={axis!r} is out of range for an input with {ndim} dimension(s); "
                f"expected values in [{-ndim}, {ndim - 1}]"
            )
        normalized.append(int(a) % ndim)
    if len(set(normalized)) != len(normalized):
        raise ValueError(f"{name}={axis!r} names the same axis more than once (as axes {tuple(normalized)})")
    return tuple(sorted(normalized))


def reduced_size(shape: Sequence[int], axes: tuple[int, ...]) -> int:
    """Number of values each statistic is computed from: the product of ``shape`` over ``axes``."""
    size = 1
    for a in axes:
        size *= shape[a]
    return size


def check_reduction_size(shape: Sequence[int], axes: tuple[int, ...], *, minimum: int = 1, what: str) -> None:
    """Raise ``ValueError`` when fewer than ``minimum`` values enter each statistic.

    ``what`` names the operation in the message (``"layer_norm"``, ``"batch_norm in training mode"``).
    """
    size = reduced_size(shape, axes)
    if size < minimum:
        sizes = tuple(shape[a] for a in axes)
        if size == 0:
            detail = "there are no values to average (empty reduction)"
        else:
            detail = f"each statistic would be computed from {size} value(s)"
        raise ValueError(
            f"{what}: axis={axes} of an input with shape {tuple(shape)} has sizes {sizes}, so {detail}; "
            f"expected at least {minimum} value(s) per statistic"
        )


def check_float_dtype(dtype_name: str, *, name: str) -> None:
    """Raise ``TypeError`` unless ``dtype_name`` is a real floating dtype.

    Integers and bools are refused rather than converted: normalizing them silently in float64 would
    break the rule that the output dtype is the input dtype. Complex numbers are refused because mean
    and variance of complex activations are not what the paper defines.
    """
    if dtype_name not in FLOAT_DTYPES:
        raise TypeError(
            f"{name} must have a real floating dtype ({', '.join(FLOAT_DTYPES)}), got dtype {dtype_name}; "
            f"convert it first, e.g. with .astype('float32') / .float()"
        )


def check_eps(eps: object) -> float:
    """``eps`` must be a finite real number >= 0; returns it as a Python float."""
    if type(eps) is float and 0.0 <= eps < float("inf"):  # the common case, without the ABC checks below
        return eps
    if isinstance(eps, bool) or not isinstance(eps, numbers.Real):
        raise TypeError(f"eps must be a real number, got {eps!r} ({type(eps).__name__})")
    value = float(eps)
    if not (value >= 0.0 and value != float("inf")):
        raise ValueError(f"eps must be a finite number >= 0, got {eps!r}")
    return value


def check_ddof(ddof: object) -> int:
    """``ddof`` (NumPy's delta degrees of freedom) must be an int >= 0, bools refused; returns it as an int."""
    if type(ddof) is int and ddof >= 0:  # the common case, without the ABC checks below
        return ddof
    if isinstance(ddof, bool) or not isinstance(ddof, numbers.Integral):
        raise TypeError(f"ddof must be an int (0: biased, 1: unbiased variance), got {ddof!r} "
                        f"({type(ddof).__name__})")
    if ddof < 0:
        raise ValueError(f"ddof must be >= 0 (0: biased, 1: unbiased variance), got {ddof}")
    return int(ddof)


def check_bool(value: object, *, name: str) -> bool:
    """``value`` must be ``True`` or ``False`` (a truthy string such as ``'no'`` is refused); returns it."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r} ({type(value).__name__})")
    return value


def check_shape(shape: object, *, name: str) -> tuple[int, ...]:
    """A parameter or statistics shape: a positive int or a non-empty tuple of positive ints (bools and
    floats refused, as ``2.5`` features or ``True`` features are not a shape); returns it as a tuple."""
    what = "a positive int or a non-empty tuple of positive ints"
    if isinstance(shape, bool) or not isinstance(shape, (numbers.Integral, Sequence)) or isinstance(shape, str):
        raise TypeError(f"{name} must be {what}, got {shape!r} ({type(shape).__name__})")
    sizes = (shape,) if isinstance(shape, numbers.Integral) else tuple(shape)
    if not sizes:
        raise ValueError(f"{name} must be {what}, got an empty {type(shape).__name__}")
    for n in sizes:
        if isinstance(n, bool) or not isinstance(n, numbers.Integral):
            raise TypeError(f"{name} must be {what}, got {n!r} ({type(n).__name__}) in {shape!r}")
        if n < 1:
            raise ValueError(f"{name} must be {what}, got {shape!r}")
    return tuple(int(n) for n in sizes)


def check_momentum(momentum: object) -> float | None:
    """``momentum`` of a running average: ``None`` (cumulative average) or a real number in [0, 1]; bools
    and strings refused. Returns it as a float (or ``None``)."""
    if momentum is None:
        return None
    if isinstance(momentum, bool) or not isinstance(momentum, numbers.Real):
        raise TypeError(f"momentum must be None or a real number in [0, 1], got {momentum!r} "
                        f"({type(momentum).__name__})")
    value = float(momentum)
    if not 0.0 <= value <= 1.0:  # NaN fails too
        raise ValueError(f"momentum must be None or in [0, 1], got {momentum!r}")
    return value


def check_num_groups(num_groups: object) -> int:
    """``num_groups`` of group norm: a positive int (bools refused); returns it as an int."""
    if isinstance(num_groups, bool) or not isinstance(num_groups, numbers.Integral):
        raise TypeError(f"num_groups must be a positive int, got {num_groups!r} ({type(num_groups).__name__})")
    if num_groups < 1:
        raise ValueError(f"num_groups must be a positive int, got {num_groups!r}")
    return int(num_groups)


def required(value: object, *, name: str, what: str) -> object:
    """``value`` itself, unless it is ``None``: then ``TypeError`` naming ``name`` and saying ``what`` it is."""
    if value is None:
        raise TypeError(f"{name} must be {what}, got None")
    return value


def check_choice(value: object, choices: tuple[str, ...], *, name: str) -> str:
    """``value`` must be one of the strings in ``choices``; returns it."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
    return value


def broadcast_shapes(*shapes: Sequence[int]) -> tuple[int, ...] | None:
    """NumPy's broadcasting rule on plain shapes; ``None`` when the shapes do not broadcast."""
    ndim = max(len(s) for s in shapes)
    result = []
    for i in range(-ndim, 0):
        sizes = {s[i] for s in shapes if len(s) >= -i and s[i] != 1}
        if len(sizes) > 1:
            return None
        result.append(sizes.pop() if sizes else 1)
    return tuple(result)


def check_param_shape(param_shape: Sequence[int], x_shape: Sequence[int], *, name: str) -> None:
    """A gain or bias must broadcast against ``x`` *without changing x's shape*.

    So ``gamma`` of shape ``(H,)`` against ``x`` of shape ``(N, H)`` is fine (the paper's per-unit gain),
    as are ``(C, H, W)`` (PyTorch's per-element affine) and ``(C, 1, 1)`` against ``(N, C, H, W)``
    (a per-channel affine, as MATLAB's), but ``(N, H)`` against ``(H,)`` is refused: it would quietly
    turn one example into N. Shapes that pass are cached.
    """
    _check_param_shape(tuple(param_shape), tuple(x_shape), name)


@functools.lru_cache(maxsize=4096)
def _check_param_shape(param_shape: tuple[int, ...], x_shape: tuple[int, ...], name: str) -> None:
    """The check behind :func:`check_param_shape`, cached for shapes that pass."""
    x_shape, param_shape = tuple(x_shape), tuple(param_shape)
    result = broadcast_shapes(param_shape, x_shape)
    if result is None:
        raise ValueError(
            f"{name} with shape {param_shape} does not broadcast against x with shape {x_shape}; "
            f"expected a shape that NumPy broadcasting aligns with x's trailing axes, e.g. {x_shape[-1:]}"
        )
    if result != x_shape:
        raise ValueError(
            f"{name} with shape {param_shape} would broadcast x with shape {x_shape} to {result}; "
            f"expected a shape that leaves x's shape unchanged"
        )


def kept_shape(shape: Sequence[int], axes: tuple[int, ...]) -> tuple[int, ...]:
    """The shape of a statistic with ``keepdims=True``: ``shape`` with every axis in ``axes`` set to 1."""
    return tuple(1 if i in axes else n for i, n in enumerate(shape))


def feature_shape(shape: Sequence[int], axes: tuple[int, ...]) -> tuple[int, ...]:
    """The shape of a statistic with ``keepdims=False``: ``shape`` without the axes in ``axes``."""
    return tuple(n for i, n in enumerate(shape) if i not in axes)
