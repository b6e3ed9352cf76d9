"""Input conversion for the PyTorch backend: tensors in, clear errors for anything else."""

from __future__ import annotations

import torch

from .._checks import check_float_dtype, check_param_shape


def dtype_name(dtype: torch.dtype) -> str:
    """``torch.float32`` -> ``"float32"``: the spelling the shared checks use."""
    name = _DTYPE_NAMES.get(dtype)
    if name is None:
        name = _DTYPE_NAMES[dtype] = str(dtype).removeprefix("torch.")
    return name


_DTYPE_NAMES: dict[torch.dtype, str] = {}


def as_float_tensor(x: object, *, name: str = "x") -> torch.Tensor:
    """``x`` itself when it is a tensor of a real floating dtype; ``TypeError`` otherwise.

    NumPy arrays are refused rather than converted: a silent conversion would put data on the CPU
    whatever device the rest of the computation uses.
    """
    if not isinstance(x, torch.Tensor):
        hint = " use lnlib.numpy for NumPy arrays, or torch.from_numpy(...)" if type(x).__module__ == "numpy" else ""
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__};{hint}".rstrip(";"))
    check_float_dtype(dtype_name(x.dtype), name=name)
    return x


def as_float_dtype(dtype: object, *, name: str = "dtype") -> torch.dtype | None:
    """A ``dtype`` argument of a module: ``None`` (torch's default) or a real floating ``torch.dtype``."""
    if dtype is None:
        return None
    if not isinstance(dtype, torch.dtype):
        raise TypeError(f"{name} must be None or a real floating torch.dtype such as torch.float32, got {dtype!r} "
                        f"({type(dtype).__name__})")
    check_float_dtype(dtype_name(dtype), name=name)
    return dtype


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype statistics are accumulated in (:data:`lnlib._checks.ACCUMULATION_DTYPES`, the rule of both
    backends): float32 for float16 and bfloat16 inputs, the input's dtype otherwise."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def as_param(param: object, x: torch.Tensor, *, name: str) -> torch.Tensor | None:
    """A gain or bias: ``None``, or a floating tensor on ``x``'s device that broadcasts against ``x``
    without changing its shape."""
    if param is None:
        return None
    tensor = as_float_tensor(param, name=name)
    check_param_shape(tuple(tensor.shape), tuple(x.shape), name=name)
    if tensor.device != x.device:
        raise ValueError(f"{name} is on device {tensor.device} but x is on {x.device}; expected the same device")
    return tensor


def sum_to_shape(grad: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """Undo broadcasting: sum ``grad`` over the axes along which a parameter of ``shape`` was repeated."""
    lead = grad.ndim - len(shape)
    dims = tuple(range(lead)) + tuple(lead + i for i, n in enumerate(shape) if n == 1 and grad.shape[lead + i] != 1)
    if dims:  # torch sums over *every* dim when given an empty tuple
        grad = grad.sum(dim=dims, keepdim=True)
    return grad.reshape(shape)


def add_affine(module: torch.nn.Module, shape: tuple[int, ...], affine: bool, *, device: object = None,
               dtype: torch.dtype | None = None) -> None:
    """Give ``module`` a learnable gain ``gamma`` (ones) and bias ``beta`` (zeros) of ``shape`` (the paper's
    initialization, §6), or register both as ``None`` when ``affine`` is false."""
    if affine:
        module.gamma = torch.nn.Parameter(torch.ones(shape, device=device, dtype=dtype))
        module.beta = torch.nn.Parameter(torch.zeros(shape, device=device, dtype=dtype))
    else:
        module.register_parameter("gamma", None)
        module.register_parameter("beta", None)
