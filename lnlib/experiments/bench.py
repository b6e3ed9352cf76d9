r"""Benchmarks: how fast lnlib's layer norm and batch norm are, against PyTorch and a memory copy (chapter 13).

Method (after ``shared/reference/performance.md``): one thread (``threadpoolctl`` for NumPy's BLAS,
``torch.set_num_threads(1)``), float32, C-contiguous inputs prepared outside the timed region, one warm-up
call, a loop long enough to take at least ``min_seconds`` per implementation, then ``repeats`` rounds in
which all the implementations of one shape take turns (in alternating order, so that the drift of a shared
machine hits them alike); the *median* time per call is reported. Effective bandwidth counts the compulsory
traffic only: forward = read x + write y (:math:`8MN` bytes in float32), backward = read x and dy + write
dx (:math:`12MN`); the references are ``np.copyto`` (read + write) and ``np.add(a, b, out=c)`` (two reads
+ a write), timed in the same run, so ratios survive a change of machine while milliseconds do not.

Rows (``M x N`` input, layer norm over the last axis, batch norm over the first):

* ``lnlib.numpy`` forward (``out=``, allocation-free) and backward; a naive NumPy version (``mean``/``var``
  then one expression); ``torch.nn.functional`` forward under ``no_grad``, its pure backward
  (``torch.ops.aten.native_layer_norm_backward``) and autograd forward+backward; ``lnlib.torch`` forward
  and autograd forward+backward, with its default (fused kernels) and with ``native=False`` (the
  hand-derived backward);
* a training step of the 784-1000-1000-10 LN-MLP of chapter 9 with ``lnlib.torch.LayerNorm`` against
  ``torch.nn.LayerNorm``, at batch sizes 128 and 4 (Adam, fused), about ``train_steps`` steps each, the two
  models taking turns loop by loop (:func:`interleaved_seconds`);
* with a CUDA device, the torch rows again on the GPU (all threads, synchronized timings).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from .. import numpy as lnp
from .. import torch as lnt

NAME = "bench"

PROFILES: dict[str, dict[str, Any]] = {
    "smoke": {"shapes": [[64, 1000], [256, 256]], "repeats": 3, "min_seconds": 0.005, "train_steps": 5},
    "cpu": {"shapes": [[4096, 1024], [32768, 256], [512, 8192], [64, 1000]], "repeats": 7, "min_seconds": 0.05,
            "train_steps": 200},
    "paper": {"shapes": [[4096, 1024], [32768, 256], [512, 8192], [64, 1000]], "repeats": 15,
              "min_seconds": 0.1, "train_steps": 500},
}
EPS = 1e-5


def loop_length(call: Callable[[], object], min_seconds: float, sync: Callable[[], None] = lambda: None) -> int:
    """How many calls in a row take at least ``min_seconds`` (doubling from 1, after one warm-up call)."""
    call()
    sync()
    n = 1
    while n < 1 << 20:
        start = time.perf_counter()
        for _ in range(n):
            call()
        sync()
        if time.perf_counter() - start >= min_seconds:
            break
        n *= 2
    return n


Job = tuple[dict[str, Any], Callable[[], object]]  # a row without its time, and the call that times it


def time_jobs(jobs: list[Job], params: dict[str, Any], sync: Callable[[], None] = lambda: None
              ) -> list[dict[str, Any]]:
    """Rows with ``seconds``: every job's loop calibrated alone, then all jobs timed in turns."""
    calls = [call for _, call in jobs]
    loops = [loop_length(call, params["min_seconds"], sync) for call in calls]
    seconds = interleaved_seconds(calls, params["repeats"], loops, sync)
    return [{**row, "seconds": t} for (row, _), t in zip(jobs, seconds)]


def interleaved_seconds(calls: list[Callable[[], object]], repeats: int, loop: int | list[int],
                        sync: Callable[[], None] = lambda: None) -> list[float]:
    """Median seconds per call of each of ``calls``, timing ``loop`` calls at a time and taking turns
    (forward order, then backward order, and so on).

    Timed one after the other, two implementations meet different moments of a shared machine (another
    process waking up, the clock changing); alternating their timed loops lets such drift hit both alike,
    which is what a ratio between them needs. ``loop`` is one length for all calls or one per call.
    """
    loops = [loop] * len(calls) if isinstance(loop, int) else list(loop)
    if len(loops) != len(calls):
        raise ValueError(f"loop must be an int or one length per call ({len(calls)}), got {len(loops)}")
    for call in calls:
        call()
    sync()
    times: list[list[float]] = [[] for _ in calls]
    for repeat in range(repeats):
        turns = list(zip(calls, loops, times))
        for call, n, spent in (turns if repeat % 2 == 0 else turns[::-1]):  # ABBA...: a trend cancels out
            start = time.perf_counter()
            for _ in range(n):
                call()
            sync()
            spent.append((time.perf_counter() - start) / n)
    return [statistics.median(spent) for spent in times]


# --- naive NumPy: what one writes first ----------------------------------------------------------------

def naive_layer_norm(x: np.ndarray, g: np.ndarray, b: np.ndarray, axis: int) -> np.ndarray:
    mu = x.mean(axis=axis, keepdims=True)
    var = x.var(axis=axis, keepdims=True)
    return (x - mu) / np.sqrt(var + EPS) * g + b


def naive_layer_norm_backward(dy: np.ndarray, x: np.ndarray, g: np.ndarray, axis: int):
    mu = x.mean(axis=axis, keepdims=True)
    rstd = 1.0 / np.sqrt(x.var(axis=axis, keepdims=True) + EPS)
    xhat = (x - mu) * rstd
    dxhat = dy * g
    dx = rstd * (dxhat - dxhat.mean(axis=axis, keepdims=True)
                 - xhat * (dxhat * xhat).mean(axis=axis, keepdims=True))
    other = 1 - axis if x.ndim == 2 else 0
    return dx, (dy * xhat).sum(axis=other), dy.sum(axis=other)


# --- one shape ---------------------------------------------------------------------------------------

def cpu_rows(shape: tuple[int, int], params: dict[str, Any], rng: np.random.Generator) -> list[dict[str, Any]]:
    """Every CPU row for one ``(M, N)`` shape."""
    m, n = shape
    x = rng.standard_normal((m, n), dtype=np.float32)
    dy = rng.standard_normal((m, n), dtype=np.float32)
    out = np.empty_like(x)
    xt, dyt = torch.from_numpy(x), torch.from_numpy(dy)
    jobs: list[Job] = []

    def add(norm: str, direction: str, impl: str, call: Callable[[], object]) -> None:
        jobs.append(({"shape": [m, n], "norm": norm, "direction": direction, "impl": impl}, call))

    add("copy", "forward", "np.copyto", lambda: np.copyto(out, x))
    add("copy", "backward", "np.add 2R1W", lambda: np.add(x, dy, out=out))
    for norm, axis in (("layer norm", 1), ("batch norm", 0)):
        size = n if axis == 1 else m
        pshape = (size,) if axis == 1 else (1, n)
        g = rng.standard_normal(pshape).astype(np.float32)
        b = rng.standard_normal(pshape).astype(np.float32)
        gt, bt = torch.from_numpy(g.reshape(-1)), torch.from_numpy(b.reshape(-1))
        fwd = lnp.layer_norm if axis == 1 else lnp.batch_norm
        bwd = lnp.layer_norm_backward if axis == 1 else lnp.batch_norm_backward
        kwargs = {"out": out} if axis == 1 else {}
        add(norm, "forward", "lnlib.numpy", partial(fwd, x, g, b, axis=axis, **kwargs))
        add(norm, "forward", "naive numpy", partial(naive_layer_norm, x, g, b, axis))
        add(norm, "backward", "lnlib.numpy", partial(bwd, dy, x, g, b, axis=axis))
        add(norm, "backward", "naive numpy", partial(naive_layer_norm_backward, dy, x, g, axis))
        jobs += torch_jobs(norm, xt, dyt, gt, bt, shape)
    return time_jobs(jobs, params)


def torch_jobs(norm: str, xt: torch.Tensor, dyt: torch.Tensor, gt: torch.Tensor, bt: torch.Tensor,
               shape: tuple[int, int], tag: str = "") -> list[Job]:
    """The torch jobs (F.* and lnlib.torch) for one shape, on ``xt``'s device."""
    m, n = shape
    jobs: list[Job] = []

    def add(direction: str, impl: str, call: Callable[[], object]) -> None:
        jobs.append(({"shape": [m, n], "norm": norm, "direction": direction, "impl": impl + tag}, call))

    if norm == "layer norm":
        def reference(a, w, b):
            return torch.nn.functional.layer_norm(a, (n,), w, b, EPS)

        def ours(a, w, b, native=True):
            return lnt.layer_norm(a, w, b, axis=-1, eps=EPS, native=native)
    else:
        def reference(a, w, b):
            return torch.nn.functional.batch_norm(a, None, None, w, b, training=True, eps=EPS)

        def ours(a, w, b, native=True):
            return lnt.batch_norm(a, w.view(1, n), b.view(1, n), axis=0, eps=EPS, native=native)

    add("forward", "torch F", without_grad(reference, xt, gt, bt))
    add("forward", "lnlib.torch", without_grad(ours, xt, gt, bt))
    add("forward", "lnlib.torch native=False", without_grad(ours, xt, gt, bt, native=False))
    if norm == "layer norm":
        _, mean, rstd = torch.ops.aten.native_layer_norm(xt, [n], gt, bt, EPS)
        add("backward", "torch native backward",
            partial(torch.ops.aten.native_layer_norm_backward, dyt, xt, [n], mean, rstd, gt, bt, [True, True, True]))
    leaves = [t.clone().requires_grad_(True) for t in (xt, gt, bt)]

    def fwd_bwd(function: Callable[..., torch.Tensor]) -> Callable[[], None]:
        def step() -> None:
            for leaf in leaves:
                leaf.grad = None
            function(*leaves).backward(dyt)
        return step

    add("forward+backward", "torch F", fwd_bwd(reference))
    add("forward+backward", "lnlib.torch", fwd_bwd(ours))
    add("forward+backward", "lnlib.torch native=False", fwd_bwd(partial(ours, native=False)))
    return jobs


def without_grad(function: Callable[..., object], *args: Any, **kwargs: Any) -> Callable[[], object]:
    """A call of ``function`` under ``torch.no_grad()`` (a forward pass timed without the autograd graph)."""
    def call() -> object:
        with torch.no_grad():
            return function(*args, **kwargs)
    return call


def training_step_rows(params: dict[str, Any], device: torch.device, tag: str = "") -> list[dict[str, Any]]:
    """A training step of chapter 9's LN-MLP: lnlib.torch.LayerNorm against torch.nn.LayerNorm."""
    rows = []
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    impls = (("torch.nn.LayerNorm", lambda h: nn.LayerNorm(h)),
             ("lnlib.torch.LayerNorm", lambda h: lnt.LayerNorm(h)))
    for bs in (128, 4):
        steps = [_training_step(make, bs, device) for _, make in impls]
        loop = max(1, params["train_steps"] // params["repeats"])
        for (impl, _), seconds in zip(impls, interleaved_seconds(steps, params["repeats"], loop, sync)):
            rows.append({"shape": [bs, 1000], "norm": "layer norm", "direction": "training step",
                         "impl": impl + tag, "seconds": seconds})
    return rows


def _training_step(make_norm: Callable[[int], nn.Module], batch_size: int, device: torch.device
                   ) -> Callable[[], None]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(784, 1000), make_norm(1000), nn.ReLU(), nn.Linear(1000, 1000),
                          make_norm(1000), nn.ReLU(), nn.Linear(1000, 10)).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
    x = torch.rand(batch_size, 784, device=device)
    y = torch.randint(0, 10, (batch_size,), device=device)

    def step() -> None:
        loss = nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def pass_profile(shape: tuple[int, int], params: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
    """Each whole-array NumPy pass that ``lnlib.numpy``'s layer norm makes, on its own, next to a copy.

    The forward standardizes (row sums, centre, sum of squares, scale by :math:`1/\\sigma`) and applies the
    affine (two passes); the backward standardizes again and makes nine more passes. Each NumPy call reads
    and writes its operands once, so the sum of these times, in units of a copy, is what fusing passes
    (one sweep for the moments, one to normalize, as PyTorch's kernel does) would save.
    """
    m, n = shape
    x = rng.standard_normal(shape, dtype=np.float32)
    dy = rng.standard_normal(shape, dtype=np.float32)
    g = rng.choice(np.array([-1.0, 1.0], dtype=np.float32), size=n)  # +-1: repeated y *= g stays finite
    b = 1e-3 * rng.standard_normal(n, dtype=np.float32)  # small: y += b is repeated many times
    y, hat = np.empty_like(x), np.empty_like(x)
    per_row = np.ones(m, dtype=np.float32)[:, None]  # a factor of 1 keeps repeated in-place scalings finite
    mean = (np.add.reduce(x, axis=1) / n)[:, None]
    np.subtract(x, mean, out=hat)
    standardize = [
        ("row sums (np.add.reduce)", lambda: np.add.reduce(x, axis=1)),
        ("centre (np.subtract, out=)", lambda: np.subtract(x, mean, out=y)),
        ("row sums of squares (einsum)", lambda: np.einsum("ij,ij->i", y, y)),
        ("scale rows by 1/sigma (in place)", lambda: np.multiply(y, per_row, out=y)),
    ]
    affine = [
        ("multiply by gamma (in place)", lambda: np.multiply(y, g, out=y)),
        ("add beta (in place)", lambda: np.add(y, b, out=y)),
    ]
    gradient = [
        ("dgamma: column sums of dy * x_hat (einsum)", lambda: np.einsum("ij,ij->j", dy, hat)),
        ("dbeta: column sums of dy", lambda: np.add.reduce(dy, axis=0)),
        ("gamma * dy (out=)", lambda: np.multiply(dy, g, out=y)),
        ("row sums of (gamma dy) * x_hat (einsum)", lambda: np.einsum("ij,ij->i", y, hat)),
        ("row sums of gamma dy", lambda: np.add.reduce(y, axis=1)),
        ("subtract the row means (in place)", lambda: np.subtract(y, mean, out=y)),
        ("x_hat times a row factor (in place)", lambda: np.multiply(hat, per_row, out=hat)),
        ("subtract x_hat (in place)", lambda: np.subtract(y, hat, out=y)),
        ("scale rows by 1/sigma (in place)", lambda: np.multiply(y, per_row, out=y)),
    ]

    groups = {"standardize": standardize, "affine": affine, "gradient": gradient}
    jobs: list[Job] = [({"group": "copy", "pass": "copy"}, lambda: np.copyto(y, x))]
    jobs += [({"group": group, "pass": name}, call) for group, passes in groups.items() for name, call in passes]
    timed = time_jobs(jobs, params)
    profile: dict[str, Any] = {"shape": [m, n], "copy_seconds": timed[0]["seconds"]}
    for group in groups:
        profile[group] = [{"pass": row["pass"], "seconds": row["seconds"]} for row in timed if row["group"] == group]
    return profile


def run(params: dict[str, Any], *, profile: str = "", seed: int, device: str, progress: bool = True) -> dict[str, Any]:
    """All rows on one CPU thread (and on the GPU when ``device`` is CUDA); JSON-ready."""
    from threadpoolctl import threadpool_info, threadpool_limits

    rng = np.random.default_rng(seed)
    previous = torch.get_num_threads()
    rows: list[dict[str, Any]] = []
    try:
        torch.set_num_threads(1)
        with threadpool_limits(limits=1):
            for shape in tqdm(params["shapes"], desc="benchmark shapes", disable=not progress):
                rows += cpu_rows(tuple(shape), params, rng)
            rows += training_step_rows(params, torch.device("cpu"))
            passes = pass_profile(tuple(params["shapes"][0]), params, rng)
            libraries = [{k: v for k, v in info.items() if k in ("user_api", "internal_api", "version",
                                                                  "num_threads", "architecture")}
                         for info in threadpool_info()]
    finally:
        torch.set_num_threads(previous)
    dev = torch.device(device)
    if dev.type == "cuda":
        rows += gpu_rows(params, dev, rng)
    return {"rows": rows, "passes": passes, "threads": 1, "thread_pools": libraries,
            "cpu_capability": torch.backends.cpu.get_cpu_capability()}


def gpu_rows(params: dict[str, Any], dev: torch.device, rng: np.random.Generator) -> list[dict[str, Any]]:
    rows = []
    for m, n in params["shapes"]:
        xt = torch.randn(m, n, device=dev)
        dyt = torch.randn(m, n, device=dev)
        jobs: list[Job] = []
        for norm in ("layer norm", "batch norm"):
            gt, bt = torch.randn(n, device=dev), torch.randn(n, device=dev)
            jobs += torch_jobs(norm, xt, dyt, gt, bt, (m, n), tag=" (GPU)")
        rows += time_jobs(jobs, params, torch.cuda.synchronize)
    rows += training_step_rows(params, dev, tag=" (GPU)")
    return rows


# --- reading a result ---------------------------------------------------------------------------------

def traffic_bytes(row: dict[str, Any]) -> int:
    """Compulsory bytes moved in float32: 8MN forward, 12MN backward, 20MN forward+backward."""
    m, n = row["shape"]
    return {"forward": 8, "backward": 12, "forward+backward": 20, "training step": 0}[row["direction"]] * m * n


def lookup(rows: list[dict[str, Any]], shape: list[int], norm: str, direction: str, impl: str) -> float | None:
    for row in rows:
        if row["shape"] == list(shape) and row["norm"] == norm and row["direction"] == direction \
                and row["impl"] == impl:
            return row["seconds"]
    return None
