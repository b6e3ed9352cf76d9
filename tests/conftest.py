"""Shared fixtures: the two backends behind one small adapter, so most tests run on both."""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Any, Callable

import numpy as np
import pytest
import torch

import lnlib.numpy as lnp
import lnlib.torch as lnt


@dataclass(frozen=True)
class Backend:
    name: str
    lib: ModuleType
    asarray: Callable[[Any], Any]      # NumPy array -> the backend's array type (same dtype)
    to_numpy: Callable[[Any], np.ndarray]

    def __repr__(self) -> str:
        return self.name


def _to_numpy(value: Any) -> Any:
    if value is None:
        return None
    return value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)


NUMPY = Backend("numpy", lnp, lambda a: None if a is None else np.asarray(a), _to_numpy)
TORCH = Backend("torch", lnt, lambda a: None if a is None else torch.from_numpy(np.array(a, order="C")), _to_numpy)
BACKENDS = [NUMPY, TORCH]


@pytest.fixture(params=BACKENDS, ids=lambda b: b.name)
def backend(request: pytest.FixtureRequest) -> Backend:
    return request.param


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(12345)


def reference_normalize(x: np.ndarray, axes: tuple[int, ...], eps: float, gamma=None, beta=None,
                        ddof: int = 0) -> np.ndarray:
    """The defining formula written directly, in float64 with NumPy's own var (an independent reference)."""
    x64 = x.astype(np.float64)
    mean = x64.mean(axis=axes, keepdims=True)
    var = x64.var(axis=axes, keepdims=True, ddof=ddof)
    y = (x64 - mean) / np.sqrt(var + eps)
    if gamma is not None:
        y = y * gamma
    if beta is not None:
        y = y + beta
    return y


@pytest.fixture
def one_torch_thread():
    """Tiny tensors: extra threads only add overhead (a lot of it on a busy machine)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
