r"""Benchmarks: how fast lnlib's layer norm and batch norm are, against PyTorch and a memory copy (chapter 16).

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
* a training step of the 784-1000-1000-10 LN-MLP of chapter 6 with ``lnlib.torch.LayerNorm`` against
  ``torch.nn.LayerNorm``, at batch sizes 128 and 4 (Adam, fused), about ``train_steps`` steps each, the two
  models taking turns loop by loop (:func:`interleaved_seconds`);
* with a CUDA device, the torch rows again on the GPU, next to a device copy (``Tensor.copy_``) and a
  device ``torch.add`` (two reads and a write) of the same shapes, and the training step on the GPU:
  timed with ``torch.cuda.synchronize()`` after every timed loop (a kernel launch returns before the
  kernel has run), with all host threads. The record then has a ``gpu`` entry: the device's name,
  compute capability, the CUDA and torch versions, its peak memory bandwidth (:func:`peak_bandwidth`),
  and what the training steps mean for Figure 6 (:func:`fig6_projection`).

Profiles ``smoke``, ``cpu`` and ``paper`` time the CPU rows, plus the GPU rows where the device is CUDA.
Profile ``gpu`` times the GPU rows only (it needs CUDA): the book's shapes, which mostly fit in a large
GPU's L2 cache and so measure launch overhead, plus one large shape (512 MiB per float32 array) that
measures the memory bandwidth; about a minute on an H200.
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
    "gpu": {"shapes": [[4096, 1024], [32768, 256], [512, 8192], [64, 1000], [32768, 4096]], "repeats": 7,
            "min_seconds": 0.05, "train_steps": 200, "host_rows": False},
}
EPS = 1e-5
TAG = " (GPU)"  # the suffix of every implementation timed on the GPU
COPY_IMPLS = {"host": {"forward": "np.copyto", "backward": "np.add 2R1W"},
              "device": {"forward": "torch copy_", "backward": "torch.add 2R1W"}}
#: Peak memory bandwidth (GB/s) from the vendors' datasheets, by a part of the name CUDA reports; the first
#: match wins, so the more specific names come first. The GPUs of Colab and of this project's checks.
DATASHEET_BANDWIDTH_GBS = (("H200", 4800.0), ("H100 NVL", 3900.0), ("H100 PCIe", 2000.0), ("H100", 3350.0),
                           ("A100-SXM4-80GB", 2039.0), ("A100 80GB PCIe", 1935.0), ("A100", 1555.0),
                           ("L40S", 864.0), ("A10G", 600.0), ("V100", 900.0), ("L4", 300.0), ("T4", 320.0))
FIG6_CASES_PER_EPOCH = 55_000  # the training set of Figure 6 (and of its paper profile)


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


def synchronizer(device: torch.device) -> Callable[[], None]:
    """What ends a timed loop on ``device``: ``torch.cuda.synchronize`` on CUDA, where a call returns as soon
    as its kernels are queued, so that a loop's time includes running them; nothing on the CPU."""
    return torch.cuda.synchronize if device.type == "cuda" else (lambda: None)


def training_step_rows(params: dict[str, Any], device: torch.device, tag: str = "") -> list[dict[str, Any]]:
    """A training step of chapter 6's LN-MLP: lnlib.torch.LayerNorm against torch.nn.LayerNorm."""
    rows = []
    sync = synchronizer(device)
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
    """All rows on one CPU thread (and on the GPU when ``device`` is CUDA); JSON-ready.

    A profile with ``host_rows`` false (``gpu``) skips the CPU rows and needs ``device`` to be CUDA: a
    ``ValueError`` otherwise, since it would measure nothing.
    """
    dev = torch.device(device)
    host = params.get("host_rows", True)
    if not host and dev.type != "cuda":
        raise ValueError(f"this profile times the GPU rows only and needs a CUDA device, got device={device!r}; "
                         f"use profile 'smoke', 'cpu' or 'paper' on the CPU")
    rng = np.random.default_rng(seed)
    data: dict[str, Any] = {"rows": []}
    if host:
        data.update(host_rows(params, rng, progress))
    data["cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    if dev.type == "cuda":
        data["rows"] += gpu_rows(params, dev, rng)
        data["gpu"] = {**device_info(dev), "fig6": fig6_projection(data["rows"])}
    return data


def host_rows(params: dict[str, Any], rng: np.random.Generator, progress: bool) -> dict[str, Any]:
    """The CPU rows, the pass profile and the thread pools, all on one thread (BLAS and torch)."""
    from threadpoolctl import threadpool_info, threadpool_limits

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
    return {"rows": rows, "passes": passes, "threads": 1, "thread_pools": libraries}


def gpu_rows(params: dict[str, Any], dev: torch.device, rng: np.random.Generator) -> list[dict[str, Any]]:
    """The torch rows on ``dev``, implementations suffixed :data:`TAG`: per shape a device copy and add
    (:func:`device_copy_jobs`) and :func:`torch_jobs` for layer and batch norm, then the training step.

    ``dev`` is the GPU; the CPU works too (the rows still say GPU), which is how the tests run this path.
    Inputs come from a generator seeded from ``rng``, so the GPU rows are reproducible like the others.
    """
    generator = torch.Generator(device=dev).manual_seed(int(rng.integers(2**31)))
    rows = []
    for m, n in params["shapes"]:
        def draw(*size: int) -> torch.Tensor:
            return torch.randn(*size, device=dev, generator=generator)

        xt, dyt = draw(m, n), draw(m, n)
        jobs = device_copy_jobs(xt, dyt, TAG)
        for norm in ("layer norm", "batch norm"):
            jobs += torch_jobs(norm, xt, dyt, draw(n), draw(n), (m, n), tag=TAG)
        rows += time_jobs(jobs, params, synchronizer(dev))
    rows += training_step_rows(params, dev, tag=TAG)
    return rows


def device_copy_jobs(x: torch.Tensor, dy: torch.Tensor, tag: str) -> list[Job]:
    """The bandwidth references on ``x``'s device, the twins of ``np.copyto`` and ``np.add``: a copy (one
    read and one write, the forward's compulsory traffic) and an add (two reads and a write, the
    backward's)."""
    out = torch.empty_like(x)
    row = {"shape": list(x.shape), "norm": "copy"}
    names = COPY_IMPLS["device"]
    return [({**row, "direction": "forward", "impl": names["forward"] + tag}, partial(out.copy_, x)),
            ({**row, "direction": "backward", "impl": names["backward"] + tag}, partial(torch.add, x, dy, out=out))]


def device_info(dev: torch.device) -> dict[str, Any]:
    """What the GPU rows ran on, for the record: name, compute capability, versions, peak bandwidth."""
    props = torch.cuda.get_device_properties(dev)
    peak, source = peak_bandwidth(props.name, getattr(props, "memory_clock_rate", None),
                                  getattr(props, "memory_bus_width", None))
    return {"name": props.name, "capability": f"{props.major}.{props.minor}",
            "multiprocessors": props.multi_processor_count, "memory_gib": round(props.total_memory / 2**30, 1),
            "torch": torch.__version__, "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(),
            "peak_bandwidth_gbs": peak, "peak_bandwidth_source": source}


def peak_bandwidth(name: str, memory_clock_khz: int | None = None, bus_width_bits: int | None = None
                   ) -> tuple[float | None, str]:
    """``(GB/s, where it came from)``: the datasheet value of a known GPU (:data:`DATASHEET_BANDWIDTH_GBS`),
    else two transfers per memory clock times the bus width where the device properties give both, else
    ``(None, "unknown")``. The summary reports measured bandwidths as a fraction of this."""
    if not isinstance(name, str):
        raise TypeError(f"name must be a str (the CUDA device name), got {type(name).__name__}")
    for part, gbs in DATASHEET_BANDWIDTH_GBS:
        if part in name:
            return gbs, "datasheet"
    if memory_clock_khz and bus_width_bits:
        return 2 * memory_clock_khz * 1e3 * bus_width_bits / 8 / 1e9, "device properties"
    return None, "unknown"


def fig6_projection(rows: list[dict[str, Any]], tag: str = TAG) -> dict[str, Any]:
    """Figure 6's training time from the training-step rows: seconds per epoch of 55,000 cases at batch
    sizes 4 and 128, and the projected training time of the ``paper`` profile of :mod:`.fig6_mnist`.

    The projection counts the profile's epochs at every batch size (:func:`fig6_epochs`) and prices a
    step at the measured lnlib LN-MLP step, interpolated linearly in the batch size between 4 and 128
    (extrapolated to 256; held at the batch-size-4 time below 4, where a GPU step is all launch
    overhead). It leaves out the per-epoch evaluation and batch norm's population statistics (forward
    passes only), and prices the baseline and batch norm runs like the layer norm runs: an estimate of
    the training time's order, not a measurement.
    """
    from .fig6_mnist import PROFILES as FIG6_PROFILES

    steps: dict[int, dict[str, float]] = {}
    for bs in (4, 128):
        found = {impl: lookup(rows, [bs, 1000], "layer norm", "training step", impl + tag)
                 for impl in ("lnlib.torch.LayerNorm", "torch.nn.LayerNorm")}
        if any(seconds is None for seconds in found.values()):
            raise ValueError(f"no training-step rows{tag} at batch size {bs} to project Figure 6 from")
        steps[bs] = found
    paper = FIG6_PROFILES["paper"]
    epochs = fig6_epochs(paper)
    t4, t128 = steps[4]["lnlib.torch.LayerNorm"], steps[128]["lnlib.torch.LayerNorm"]

    def step_seconds(bs: int) -> float:
        return t4 + (t128 - t4) * (max(bs, 4) - 4) / (128 - 4)

    seconds = sum(count * (paper["train_cases"] // bs) * step_seconds(bs) for bs, count in epochs.items())
    per_batch_size = {str(bs): {"seconds_per_step": t, "seconds_per_epoch": {
        impl: s * (FIG6_CASES_PER_EPOCH // bs) for impl, s in t.items()}} for bs, t in steps.items()}
    return {"cases_per_epoch": FIG6_CASES_PER_EPOCH, "per_batch_size": per_batch_size,
            "paper": {"epochs_by_batch_size": {str(bs): count for bs, count in sorted(epochs.items())},
                      "epochs": sum(epochs.values()), "training_seconds": seconds,
                      "training_hours": seconds / 3600}}


def fig6_epochs(params: dict[str, Any]) -> dict[int, int]:
    """Epochs trained at each batch size by a Figure 6 profile (its ``PROFILES`` entry ``params``).

    The count follows the plan of :mod:`.fig6_mnist`: the sweep trains the three variants (baseline, batch
    norm, layer norm) for every activation and learning rate at batch size 128; the main runs train the
    three variants for every seed at each batch size of ``main_batch_sizes``; the batch-size sweep trains
    batch norm and layer norm at every ``sweep_batch_sizes`` entry, batch norm never at batch size 1.
    """
    if not isinstance(params, dict):
        raise TypeError(f"params must be a Figure 6 profile (a dict), got {type(params).__name__}")
    variants = 3
    epochs: dict[int, int] = {}

    def add(bs: int, count: int) -> None:
        epochs[bs] = epochs.get(bs, 0) + count

    add(128, variants * len(params["sweep_activations"]) * len(params["sweep_lrs"]) * params["sweep_epochs"])
    for bs, count in params["main_batch_sizes"].items():
        add(int(bs), params["seeds"] * variants * count)
    for bs in params["sweep_batch_sizes"]:
        add(bs, (1 if bs == 1 else 2) * params["batch_sweep_epochs"])
    return epochs


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
