r"""Every normalization and recurrent cell of ``lnlib.torch`` on CUDA, in float32, float16 and bfloat16,
against the same computation on the CPU in float64: outputs, input gradients and parameter gradients.

Why. The rest of the suite checks ``lnlib.torch`` against ``lnlib.numpy`` in float64, mostly on the CPU.
Readers run the chapters on a GPU (Colab), where PyTorch picks other kernels (``F.layer_norm`` and
``F.batch_norm`` on CUDA, cuBLAS for the recurrent matrix products) and where the half-precision
dtypes are the point of using one. This module runs each function through both of its paths
(``native=True``: PyTorch's fused kernel where the layout allows it; ``native=False``: lnlib's composite
forward and hand-derived backward) and says how far each dtype lands from the exact answer.

How the error is measured. Inputs, parameters and the upstream gradient are drawn in float64 and rounded
*once* to the dtype under test; the reference runs on the CPU in float64 on those rounded values. The
difference therefore holds only what the computation in the low precision adds, not the rounding of the
inputs. Each output and the input gradient get a normwise relative error,
:math:`\max_i |got_i - ref_i| / \max_i |ref_i|`, and so do the parameter gradients taken together as one
vector (:func:`measure` says why): a result that is the exact value rounded once to the dtype has an
error of at most :math:`u`, the unit roundoff, where an element-wise relative error would blow up on
entries that are zero by cancellation.

The tolerances: :math:`u` times a growth factor. :math:`u = 2^{-24}` for float32, :math:`2^{-11}` for
float16, :math:`2^{-8}` for bfloat16 (half the distance from 1 to the next number: 24, 11 and 8
significant bits). How many roundings can pile up decides the growth factor:

* **normalizations**, growth 16 for the half types, 64 for float32. lnlib (and PyTorch's fused kernels)
  accumulate the statistics and the gradient sums of float16/bfloat16 inputs in float32, so in these
  dtypes the error is a few roundings to the dtype: the output itself, and for ``group_norm`` the affine
  step, which runs in the dtype after the float32 normalization. In float32 every intermediate rounds at
  :math:`u` and a sum of :math:`n` terms adds error growing like :math:`\log_2 n` (the tree reductions of
  CUDA kernels) to :math:`\sqrt n` (random rounding), here for sums of 32 and 128 terms, and the backward
  subtracts two such sums. Measured on the CPU over 12 random draws, the largest errors were 4 :math:`u`
  (float16), 5 :math:`u` (bfloat16) and 9 :math:`u` (float32): the factors leave a margin of 3 or more
  for the GPU's other summation orders, while 16 :math:`u` (0.8 % in float16, 6 % in bfloat16) still
  fails a wrong statistic, a misplaced :math:`\epsilon` or a gradient term of the wrong sign.
* **recurrent cells**, growth 64 for the half types, 256 for float32. Every matrix product, gate
  nonlinearity, sum and product of a cell rounds to the dtype, about ten roundings per time step, and
  each of the :data:`T` steps feeds its error into the next; backpropagation through time runs the chain
  again in reverse. The errors have both signs and grow far less than their count: over 12 random draws
  on the CPU the largest were 28 :math:`u` (float16), 37 :math:`u` (bfloat16) and 30 :math:`u`
  (float32), each from the LSTM with the joint LN, and about 20 :math:`u` at most for the draws used here.
  64 :math:`u` is 3 % in float16 and 25 % in bfloat16: loose, because bfloat16's 8 bits are loose, yet
  a wrong gate order, a missing term or a state carried wrongly gives errors of order 100 %.

With ``LNLIB_CUDA_ERRORS_JSON`` naming a file, every test also records its errors and tolerance there
(largest per dtype and operation, merged across tests and pytest-xdist workers), so that a GPU run can
report the largest error per dtype (``python -m lnlib.gpu_check summary`` reads it).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

import lnlib.torch as lnt
from lnlib.numpy import recurrent as rn
from lnlib.torch import recurrent as rt

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
UNIT_ROUNDOFF = {"float32": 2.0**-24, "float16": 2.0**-11, "bfloat16": 2.0**-8}
GROWTH = {"norm": {"float32": 64, "float16": 16, "bfloat16": 16},
          "cell": {"float32": 256, "float16": 64, "bfloat16": 64}}
M, N = 32, 128            # normalization inputs: M cases of N features
D, H, B, T = 8, 16, 8, 5  # recurrent cells: input size, hidden size, batch, time steps
ERRORS_ENV = "LNLIB_CUDA_ERRORS_JSON"
INPUTS = ("x", "xs")      # the leaves that are inputs; every other leaf is a parameter

Arrays = dict[str, np.ndarray]
Tensors = dict[str, torch.Tensor]


def tolerance(family: str, dtype: str) -> float:
    """The largest normwise relative error allowed: growth factor times unit roundoff (module docstring)."""
    return GROWTH[family][dtype] * UNIT_ROUNDOFF[dtype]


@dataclass(frozen=True)
class Case:
    """One operation: how to draw its float64 inputs, and how to run it on tensors of any dtype/device.

    ``run`` returns ``(outputs, leaves)``: the outputs to compare (the first is the one backpropagated)
    and the tensors whose ``.grad`` is compared, the input ``x`` or ``xs`` and every parameter.
    """

    name: str
    family: str
    draw: Callable[[np.random.Generator], Arrays]
    run: Callable[[Tensors], tuple[Tensors, Tensors]]


# --------------------------------------------------------------------------------------------------------
# the operations


def _affine(rng: np.random.Generator, shape: tuple[int, ...]) -> Arrays:
    """Gains around 1 and biases around 0, away from the initial values so that each matters."""
    return {"gamma": 1.0 + 0.3 * rng.standard_normal(shape), "beta": 0.3 * rng.standard_normal(shape)}


def _features(rng: np.random.Generator, param_shape: tuple[int, ...] = (N,)) -> Arrays:
    """``x``: M x N, with a per-feature offset and scale so that statistics over either axis are not trivial."""
    x = 2.0 + rng.uniform(0.5, 2.0, size=N) * rng.standard_normal((M, N))
    return {"x": x, **_affine(rng, param_shape)}


def _functional(function: Callable[..., torch.Tensor], **kwargs: object) -> Callable[[Tensors], tuple[Tensors, Tensors]]:
    def run(t: Tensors) -> tuple[Tensors, Tensors]:
        args = [t["x"]] + [t[k] for k in ("gamma", "beta") if k in t]
        return {"y": function(*args, **kwargs)}, t
    return run


def _layer_norm_module(native: bool) -> Callable[[Tensors], tuple[Tensors, Tensors]]:
    def run(t: Tensors) -> tuple[Tensors, Tensors]:
        module = lnt.LayerNorm(N, native=native, device=t["x"].device, dtype=t["x"].dtype)
        _load(module, t)
        return {"y": module(t["x"])}, {"x": t["x"], "gamma": module.gamma, "beta": module.beta}
    return run


def _group_norm_module(t: Tensors) -> tuple[Tensors, Tensors]:
    module = lnt.GroupNorm(N, 8, device=t["x"].device, dtype=t["x"].dtype)
    _load(module, t)
    return {"y": module(t["x"])}, {"x": t["x"], "gamma": module.gamma, "beta": module.beta}


def _batch_norm_module(native: bool) -> Callable[[Tensors], tuple[Tensors, Tensors]]:
    """Training mode (batch statistics, running estimates updated), then evaluation mode with them."""
    def run(t: Tensors) -> tuple[Tensors, Tensors]:
        module = lnt.BatchNorm(N, native=native, device=t["x"].device, dtype=t["x"].dtype)
        _load(module, t)
        y = module(t["x"])
        module.eval()
        y_eval = module(t["x"].detach())
        outputs = {"y": y, "running_mean": module.running_mean, "running_var": module.running_var, "y_eval": y_eval}
        return outputs, {"x": t["x"], "gamma": module.gamma, "beta": module.beta}
    return run


def _load(module: torch.nn.Module, t: Tensors) -> None:
    with torch.no_grad():
        module.gamma.copy_(t["gamma"])
        module.beta.copy_(t["beta"])


def _cell_draw(kind: str) -> Callable[[np.random.Generator], Arrays]:
    def draw(rng: np.random.Generator) -> Arrays:
        params = rn.init_params(kind, D, H, rng)
        moved = {k: v if k.startswith("W") else v + 0.3 * rng.standard_normal(v.shape) for k, v in params.items()}
        return {"xs": rng.standard_normal((T, B, D)), **moved}
    return draw


def _cell_run(kind: str) -> Callable[[Tensors], tuple[Tensors, Tensors]]:
    """The module API (``make_cell`` + ``Recurrent``) unrolled over :data:`T` steps, in training mode."""
    def run(t: Tensors) -> tuple[Tensors, Tensors]:
        xs = t["xs"]
        extra = {"max_steps": T} if kind == "bn_lstm" else {}
        cell = rt.make_cell(kind, D, H, rng=0, device=xs.device, dtype=xs.dtype, **extra)
        cell.load_params({k: v for k, v in t.items() if k != "xs"})
        hs, _ = rt.Recurrent(cell)(xs)
        return {"hs": hs}, {"xs": xs, **cell.params()}
    return run


CASES = [
    Case("layer_norm", "norm", _features, _functional(lnt.layer_norm, axis=-1)),
    Case("layer_norm[native=False]", "norm", _features, _functional(lnt.layer_norm, axis=-1, native=False)),
    Case("batch_norm", "norm", lambda rng: _features(rng, (1, N)), _functional(lnt.batch_norm, axis=0)),
    Case("batch_norm[native=False]", "norm", lambda rng: _features(rng, (1, N)),
         _functional(lnt.batch_norm, axis=0, native=False)),
    Case("rms_norm", "norm", lambda rng: {k: v for k, v in _features(rng).items() if k != "beta"},
         _functional(lnt.rms_norm, axis=-1)),
    Case("rms_norm[native=False]", "norm", _features, _functional(lnt.rms_norm, axis=-1, native=False)),
    Case("group_norm", "norm", _features, _functional(lambda x, g, b: lnt.group_norm(x, 8, g, b, axis=-1))),
    Case("weight_norm", "norm", lambda rng: {"x": rng.standard_normal((M, N)), "gamma": 1.0 + rng.random((M, 1))},
         _functional(lambda v, g: lnt.weight_norm(v, g, axis=-1))),
    Case("LayerNorm", "norm", _features, _layer_norm_module(native=True)),
    Case("LayerNorm[native=False]", "norm", _features, _layer_norm_module(native=False)),
    Case("BatchNorm", "norm", _features, _batch_norm_module(native=True)),
    Case("GroupNorm", "norm", _features, _group_norm_module),
    Case("BatchNorm[native=False]", "norm", _features, _batch_norm_module(native=False)),
    *[Case(f"cell:{kind}", "cell", _cell_draw(kind), _cell_run(kind)) for kind in rt.KINDS],
]


# --------------------------------------------------------------------------------------------------------
# the comparison


def _leaves(arrays: Arrays, dtype: torch.dtype, device: torch.device | str) -> Tensors:
    return {k: torch.tensor(v, dtype=dtype, device=device, requires_grad=True) for k, v in arrays.items()}


def _forward_backward(case: Case, arrays: Arrays, cotangent: np.ndarray, dtype: torch.dtype,
                      device: torch.device | str) -> tuple[Tensors, Tensors]:
    """Outputs and gradients of ``case`` in ``dtype`` on ``device``, all as float64 CPU tensors."""
    outputs, leaves = case.run(_leaves(arrays, dtype, device))
    first = next(iter(outputs.values()))
    first.backward(torch.tensor(cotangent, dtype=first.dtype, device=first.device))
    grads = {}
    for name, leaf in leaves.items():
        assert leaf.grad is not None, f"{case.name}: no gradient reached {name}"
        assert leaf.grad.dtype == dtype and leaf.grad.device.type == torch.device(device).type, \
            f"{case.name}: gradient of {name} is {leaf.grad.dtype} on {leaf.grad.device}"
        grads[name] = leaf.grad.detach().to("cpu", torch.float64)
    for name, out in outputs.items():
        assert out.dtype == dtype, f"{case.name}: output {name} is {out.dtype}, expected {dtype}"
    return {k: v.detach().to("cpu", torch.float64) for k, v in outputs.items()}, grads


def _normwise(got: torch.Tensor, ref: torch.Tensor, scale: torch.Tensor | None = None) -> float:
    """``max|got - ref| / scale``, ``scale`` being ``max|ref|`` unless given; infinite if ``got`` is not finite."""
    assert got.shape == ref.shape
    if not bool(torch.isfinite(got).all()):
        return float("inf")
    scale = ref.abs().max() if scale is None else scale
    return float((got - ref).abs().max() / scale.clamp_min(torch.finfo(torch.float64).tiny))


def measure(case: Case, dtype_name: str, device: torch.device | str) -> dict[str, float]:
    """Normwise relative error of every output (``forward:<name>``) and gradient (``grad:<name>``).

    Outputs and the input gradient are measured each against its own largest value; the parameter
    gradients together against the largest of them, as one vector (what an optimizer step uses). A
    parameter gradient that is small by cancellation, such as the BN-LSTM's bias gradient, a sum over
    the batch that the per-step batch norm of the cell nearly cancels, has no relative accuracy to speak
    of in any dtype (about 80 u against its own size in each of the three, measured on the CPU), and is
    held to the accuracy of the gradient it is part of instead.
    """
    rng = np.random.default_rng(zlib.crc32(case.name.encode()))
    dtype = DTYPES[dtype_name]
    # rounded once to the dtype under test; the reference computes exactly (float64) on the rounded values
    arrays = {k: torch.tensor(v).to(dtype).double().numpy() for k, v in case.draw(rng).items()}
    reference_out, _ = case.run(_leaves(arrays, torch.float64, "cpu"))
    first = next(iter(reference_out.values()))
    cotangent = torch.tensor(rng.standard_normal(tuple(first.shape))).to(dtype).double().numpy()
    ref_out, ref_grads = _forward_backward(case, arrays, cotangent, torch.float64, "cpu")
    got_out, got_grads = _forward_backward(case, arrays, cotangent, dtype, device)
    errors = {f"forward:{k}": _normwise(got_out[k], ref_out[k]) for k in ref_out}
    params = [k for k in ref_grads if k not in INPUTS]
    scale = max(ref_grads[k].abs().max() for k in params)
    errors.update({f"grad:{k}": _normwise(got_grads[k], ref_grads[k], None if k in INPUTS else scale)
                   for k in ref_grads})
    return errors


# --------------------------------------------------------------------------------------------------------
# recording the errors (LNLIB_CUDA_ERRORS_JSON)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock for ``path``, so that pytest-xdist workers merge into it one at a time (the lock
    file lives in the temporary folder, not beside ``path``, whose folder may be collected as results)."""
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    lock = Path(tempfile.gettempdir()) / f"lnlib-cuda-errors-{zlib.crc32(str(path.resolve()).encode()):08x}.lock"
    with open(lock, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def record_errors(path: Path, case: Case, dtype_name: str, device: str, errors: dict[str, float]) -> None:
    """Merge one test's errors into ``path``: per dtype and operation the largest forward and gradient
    error with its tolerance; per dtype the largest error overall (the summary's "largest error per
    dtype") and the one closest to its tolerance."""
    with _locked(path):
        report = json.loads(path.read_text()) if path.exists() else {}
        report.setdefault("unit_roundoff", UNIT_ROUNDOFF)
        report.setdefault("growth", GROWTH)
        report["device"] = device
        ops = report.setdefault("errors", {}).setdefault(dtype_name, {})
        entry = {"tolerance": tolerance(case.family, dtype_name),
                 "forward": max(v for k, v in errors.items() if k.startswith("forward:")),
                 "gradient": max(v for k, v in errors.items() if k.startswith("grad:")),
                 "worst": max(errors, key=errors.get)}
        ops[case.name] = entry
        summaries = {dtype: [{"op": op, "error": max(e["forward"], e["gradient"]), "tolerance": e["tolerance"],
                              "ratio": max(e["forward"], e["gradient"]) / e["tolerance"]} for op, e in entries.items()]
                     for dtype, entries in report["errors"].items()}
        report["largest"] = {dtype: max(items, key=lambda item: item["error"]) for dtype, items in summaries.items()}
        report["closest_to_tolerance"] = {dtype: max(items, key=lambda item: item["ratio"])
                                          for dtype, items in summaries.items()}
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(report, indent=1, allow_nan=True) + "\n")
        os.replace(tmp, path)


@pytest.fixture
def ieee_float32_matmul():
    """TF32 (10-bit mantissa) matrix products would make float32 a 2^-11 dtype: switch them off here."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


@pytest.mark.cuda
@needs_cuda
@pytest.mark.usefixtures("ieee_float32_matmul")
@pytest.mark.parametrize("dtype_name", list(DTYPES))
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_cuda_matches_cpu_float64(case: Case, dtype_name: str):
    errors = measure(case, dtype_name, "cuda")
    if os.environ.get(ERRORS_ENV):
        record_errors(Path(os.environ[ERRORS_ENV]), case, dtype_name, torch.cuda.get_device_name(), errors)
    limit = tolerance(case.family, dtype_name)
    over = {k: f"{v:.3g}" for k, v in errors.items() if not v <= limit}
    assert not over, f"{case.name} in {dtype_name}: errors above {limit:.3g} (= {GROWTH[case.family][dtype_name]} u): {over}"


def test_every_normalization_and_cell_is_covered():
    """A new public normalization, module or cell kind must get a case here (this check needs no CUDA).

    Not cases of their own: the hand-written ``*_backward`` functions (the autograd paths above run them),
    ``batch_norm_inference`` (BatchNorm in evaluation mode), ``moments`` and ``resolve_device``.
    """
    names = {c.name.split("[")[0] for c in CASES}
    public = {n for n in lnt.__all__ if not n.endswith("_backward")} - {"batch_norm_inference", "moments",
                                                                        "resolve_device"}
    assert public <= names, f"no case for {sorted(public - names)}"
    assert {f"cell:{kind}" for kind in rt.KINDS} <= names
    natives = {c.name.split("[")[0] for c in CASES if c.name.endswith("[native=False]")}
    assert natives == {"layer_norm", "batch_norm", "rms_norm", "LayerNorm", "BatchNorm"}
