"""Shared fixtures: the two backends behind one small adapter, so most tests run on both.

torch is optional here, as it is for ``lnlib.numpy``: where it is not installed (the NumPy-only run of
``make test-pythons``, over the modules listed in tests/numpy_only.txt) ``torch`` and ``lnt`` are None,
the torch backend and every test marked ``needs_torch`` are skipped, and the NumPy tests run. Where torch
is installed (``make test``) nothing is skipped for it: ``needs_torch`` is then a no-op.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Callable

import numpy as np
import pytest

import lnlib.numpy as lnp

if importlib.util.find_spec("torch") is None:  # the NumPy-only run: torch is not installed
    torch = None
    lnt = None
    F = None
else:  # installed: it must import (a broken torch fails here, it is not skipped)
    import torch
    import torch.nn.functional as F

    import lnlib.torch as lnt

HAVE_TORCH = torch is not None
HAVE_CUDA = HAVE_TORCH and torch.cuda.is_available()
#: Marks a test (or a parametrize row, via ``torch_param``) that cannot run without torch.
needs_torch = pytest.mark.skipif(not HAVE_TORCH, reason="needs torch (not installed: the NumPy-only run)")


def torch_param(*values: Any, id: str | None = None) -> Any:  # noqa: A002 - pytest.param's own name
    """A ``pytest.param`` row that needs torch: skipped, not dropped, in the NumPy-only run."""
    return pytest.param(*values, marks=needs_torch, id=id)


def first_values(rows: list) -> list:
    """The first value of each parametrize row, plain or ``pytest.param`` (for ``ids=``)."""
    return [row.values[0] if hasattr(row, "marks") else row[0] for row in rows]


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
    if HAVE_TORCH and isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return np.asarray(value)


NUMPY = Backend("numpy", lnp, lambda a: None if a is None else np.asarray(a), _to_numpy)
TORCH = Backend("torch", lnt, lambda a: None if a is None else torch.from_numpy(np.array(a, order="C")), _to_numpy)
BACKENDS = [NUMPY, pytest.param(TORCH, marks=needs_torch)]


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
    if not HAVE_TORCH:  # nothing to set; the tests that use torch are skipped
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
