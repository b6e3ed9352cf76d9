"""Input conversion for the NumPy backend: arrays in, clear errors for anything else."""

from __future__ import annotations

import numpy as np
from numpy.ma import MaskedArray

from .._checks import accumulation_dtype, check_float_dtype, check_param_shape


def is_torch_tensor(obj: object) -> bool:
    """True for a ``torch.Tensor`` (checked without importing torch)."""
    cls = type(obj)
    return cls.__module__.split(".")[0] == "torch" and hasattr(obj, "detach")


def as_float_array(x: object, *, name: str = "x") -> np.ndarray:
    """``x`` as a NumPy array of a real floating dtype, without copying when it already is one.

    Tensors are refused (``TypeError``) instead of being converted: converting would silently move a
    CUDA tensor to the host and drop its autograd graph.
    """
    if is_torch_tensor(x):
        raise TypeError(
            f"{name} is a torch.Tensor, but lnlib.numpy works on NumPy arrays; use lnlib.torch for tensors, "
            f"or pass {name}.detach().cpu().numpy()"
        )
    if isinstance(x, MaskedArray):
        raise TypeError(
            f"{name} is a masked array, but lnlib.numpy would ignore its mask; expected a plain ndarray: pass "
            f"{name}.filled(value) or {name}.compressed(), or normalize the unmasked values yourself"
        )
    array = np.asarray(x)
    if array.dtype not in _NATIVE_FLOATS:  # ``dtype.name`` costs microseconds: only for the uncommon dtypes
        check_float_dtype(array.dtype.name, name=name)
    return array


#: float16/32/64: accepted without looking up the dtype's name (bfloat16, from ml_dtypes, is checked by name).
_NATIVE_FLOATS = frozenset(np.dtype(name) for name in ("float16", "float32", "float64"))


def as_float_dtype(dtype: object, *, name: str = "dtype") -> np.dtype:
    """A ``dtype`` argument (of a module's parameters, of loaded data) as a real floating NumPy dtype."""
    try:
        resolved = np.dtype(dtype)
    except TypeError as err:
        raise TypeError(f"{name} must be a real floating dtype such as np.float32, got {dtype!r}") from err
    check_float_dtype(resolved.name, name=name)
    return resolved


def compute_dtype(dtype: np.dtype) -> np.dtype:
    """The dtype statistics are accumulated in (:data:`lnlib._checks.ACCUMULATION_DTYPES`, the rule of both
    backends): float32 for float16 and bfloat16 (``ml_dtypes``) inputs, the input's dtype otherwise."""
    dtype = dtype if isinstance(dtype, np.dtype) else np.dtype(dtype)
    return np.dtype(accumulation_dtype(dtype.name)) if dtype.itemsize < 4 else dtype


def as_param(param: object, x: np.ndarray, *, name: str) -> np.ndarray | None:
    """A gain or bias: ``None``, or a floating array that broadcasts against ``x`` without changing its shape.

    A parameter of another floating dtype is cast to the compute dtype of ``x``, so the output dtype is
    always the dtype of ``x``.
    """
    if param is None:
        return None
    array = as_float_array(param, name=name)
    check_param_shape(array.shape, x.shape, name=name)
    return array.astype(compute_dtype(x.dtype), copy=False)


def sum_to_shape(grad: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Undo broadcasting: sum ``grad`` over the axes along which a parameter of ``shape`` was repeated."""
    lead = grad.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(lead + i for i, n in enumerate(shape) if n == 1 and grad.shape[lead + i] != 1)
    return grad.sum(axis=axes, keepdims=True).reshape(shape)
