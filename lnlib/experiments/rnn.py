r"""Recurrent experiments (chapter 11): LSTM vs LN-LSTM vs BN-LSTM on two sequence tasks, claims H8, H9,
H12 and H13.

The paper trains its LN-LSTMs and LN-GRUs on tasks out of reach here (§6.1–6.5: COCO, the CNN corpus,
BookCorpus, IAM-OnDB). This module measures the same four claims at CPU scale, on two small tasks:

* **sequential MNIST** (``seqmnist``): each 28x28 image is read one row per time step (28 steps of 28
  pixels, top to bottom); the class is predicted by a linear layer from the last hidden state;
  cross-entropy loss; data split 55k/5k/10k (:mod:`lnlib.data.mnist`). Pixels are standardized with the
  mean and standard deviation of all training pixels (``standardize``). With raw pixels in [0, 1], the
  blank rows at the top of a digit are exact zeros: with the zero initial state, every layer norm of the
  LN-LSTM then normalizes an all-zero vector for several steps, where its derivative is
  :math:`\text{gain}/\sqrt{\epsilon}\approx 316` (chapter 6), and the first gradient overflows.
  Each run records that first gradient on raw pixels too (``norms_init_raw_pixels``);
* **the adding problem** (``adding``) of Hochreiter & Schmidhuber (1997), in its common two-marker form
  (:func:`adding_batch`): at every step the input is a pair (value ~ U(0, 1), marker), exactly two
  steps are marked, one in each half of the sequence, and the target is the sum of the two marked values;
  a linear layer reads the prediction from the last hidden state; squared-error loss. Predicting the
  mean (1) has an expected squared error of Var(u1 + u2) = 1/6, the *trivial* error. Sequences are
  generated, so the task can be evaluated at any length: trained at one length ``T``, each model is
  evaluated at ``T``, ``2T``, ``4T``, ``8T`` (claim H13), with the markers still one in each half.

The cells are those of :mod:`lnlib.torch.recurrent` (chapter 10): ``lstm`` (eqs. 17–19), ``ln_lstm``
(eqs. 20–22, gains initialized to 1 as the paper's §6) and ``bn_lstm`` (Cooijmans et al. 2016, gains 0.1
as they recommend, per-time-step running statistics with momentum 0.1; beyond the longest training
sequence, evaluation reuses the statistics of the last trained step). Two more variants test the gain
initialization (H12): ``ln_lstm_gain0.1`` and ``bn_lstm_gain1``.

**Measurements**, per run (one variant on one task, trained from scratch):

* H8: the mean training loss of the last ``eval_every`` steps and the validation error (sequential MNIST)
  or validation squared error (adding) every ``eval_every`` steps; :func:`steps_to_reach` turns these
  curves into steps-to-threshold;
* H9: on a fixed batch, before and after training, the norm of the hidden state :math:`h_t`, of the cell
  state :math:`c_t` and of the loss gradients :math:`\partial L/\partial h_t`, :math:`\partial L/\partial
  c_t`, at every time step (per-case Euclidean norms, averaged over the cases; BN-LSTM in training mode,
  i.e. with batch statistics, as training sees it); and, on the adding task, :math:`\|h_t\|` and
  :math:`\|c_t\|` over a sequence 8 times longer than the training ones (evaluation mode);
* H12: the learning curves of the gain variants;
* the first mini-batch's parameter-gradient norm (``param_grad_norm``), at initialization;
* H13: the squared error at each test length; for the BN-LSTM also with "matched" statistics,
  re-estimated from a batch of sequences of the test length (an oracle no deployed BN-LSTM has: it
  separates what the missing statistics cost from what the longer memory costs).

**Fairness and determinism.** All variants of a task start from the same weights (the cells initialize
through :func:`lnlib.numpy.recurrent.init_params` with the same seed, so ``W_x`` and ``W_h`` agree, and
the read-out is drawn from the same torch seed) and see the same mini-batches in the same order; Adam
(PyTorch defaults but the learning rate), gradients clipped to a norm of ``clip``, one thread per process,
deterministic algorithms. Batches are a function of the step number only, so a run interrupted and
resumed from its last checkpoint (written at every evaluation under ``_build/checkpoints/`` or
``$LNLIB_CHECKPOINT_DIR``, loaded weights-only) ends bit-identical to an uninterrupted one. ``python -m
lnlib.experiments.rnn --profile cpu --worker 0 --workers 2`` trains every second run in one process;
:func:`run` then only assembles the finished runs.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from .. import results
from ..verdicts import Verdict
from ..verdicts import status_of as _status
from ..data import mnist
from ..torch import recurrent as rt
from .fig6_mnist import _prepare_device, _save_checkpoint, balance, finish_run, finished_log, parse_worker_args

NAME = "rnn"
TASKS = ("seqmnist", "adding")
#: variant -> (cell kind, gain initialization; None: the cell's default)
VARIANTS: dict[str, tuple[str, float | None]] = {
    "lstm": ("lstm", None),
    "ln_lstm": ("ln_lstm", 1.0),
    "ln_lstm_gain0.1": ("ln_lstm", 0.1),
    "bn_lstm": ("bn_lstm", 0.1),
    "bn_lstm_gain1": ("bn_lstm", 1.0),
}
#: the trivial squared error on the adding problem: predicting the mean 1 of u1 + u2, Var = 2/12
ADDING_TRIVIAL_MSE = 1.0 / 6.0
#: thresholds for steps-to-threshold (H8): validation error (seqmnist), validation squared error (adding)
THRESHOLDS = {"seqmnist": (0.5, 0.2, 0.1, 0.05), "adding": (0.1, 0.05, 0.01)}

_ALL = list(VARIANTS)
_THREE = ["lstm", "ln_lstm", "bn_lstm"]


def _seqmnist(hidden: int, steps: int, eval_every: int, train: int, valid: int, final_valid: int, test: int,
              norm: int, batch_size: int = 64) -> dict[str, Any]:
    return {"variants": _ALL, "standardize": True, "hidden": hidden, "batch_size": batch_size, "steps": steps,
            "lr": 1e-3, "clip": 1.0, "eval_every": eval_every, "train_cases": train, "valid_cases": valid,
            "final_valid_cases": final_valid, "test_cases": test, "norm_cases": norm}


def _adding(variants: list[str], length: int, hidden: int, steps: int, eval_every: int, valid: int, test: int,
            norm: int, batch_size: int = 64) -> dict[str, Any]:
    return {"variants": variants, "length": length, "hidden": hidden, "batch_size": batch_size, "steps": steps,
            "lr": 1e-3, "clip": 1.0, "eval_every": eval_every, "valid_cases": valid, "test_cases": test,
            "factors": [1, 2, 4, 8], "stat_cases": test, "norm_cases": norm}


PROFILES: dict[str, dict[str, Any]] = {
    "smoke": {"seeds": 1,
              "seqmnist": _seqmnist(16, 20, 10, 2000, 200, 200, 200, 32, batch_size=16),
              "adding": _adding(_THREE, 8, 16, 20, 10, 100, 100, 32, batch_size=16)},
    "cpu": {"seeds": 1,
            "seqmnist": _seqmnist(128, 2000, 50, 55_000, 1000, 5000, 10_000, 256),
            "adding": _adding(_THREE, 40, 64, 3000, 50, 500, 1000, 256)},
    "paper": {"seeds": 3,
              "seqmnist": _seqmnist(128, 10_000, 100, 55_000, 5000, 5000, 10_000, 256),
              "adding": _adding(_ALL, 100, 128, 10_000, 100, 1000, 2000, 256)},
}


# ---------------------------------------------------------------------------------------------------------
# Data


def adding_batch(n: int, length: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``n`` sequences of the adding problem of length ``length``: ``(xs, targets)``.

    ``xs`` is time-major float32 ``(length, n, 2)``: channel 0 the values, i.i.d. U(0, 1); channel 1 the
    markers, 1 at exactly two steps of each sequence, one drawn uniformly from the first half
    ``[0, length // 2)`` and one from the second half ``[length // 2, length)``, 0 elsewhere.
    ``targets`` (float32, ``(n,)``) is the sum of the two marked values.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int (the number of sequences), got {n!r}")
    if isinstance(length, bool) or not isinstance(length, int) or length < 2:
        raise ValueError(f"length must be an int >= 2 (one marker in each half), got {length!r}")
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    half = length // 2
    values = rng.random((length, n))
    first = rng.integers(0, half, n)
    second = rng.integers(half, length, n)
    markers = np.zeros((length, n))
    cases = np.arange(n)
    markers[first, cases] = 1.0
    markers[second, cases] = 1.0
    targets = values[first, cases] + values[second, cases]
    return np.stack([values, markers], axis=-1).astype(np.float32), targets.astype(np.float32)


def pixel_statistics(images: np.ndarray) -> tuple[float, float]:
    """Mean and standard deviation of all pixels of ``images`` (computed in float64)."""
    images = np.asarray(images, dtype=np.float64)
    if images.size == 0:
        raise ValueError("images must not be empty")
    return float(images.mean()), float(images.std())


def mnist_rows(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Flat images ``(N, 784)`` -> time-major row sequences ``(28, N, 28)`` (row ``t`` is time step ``t``)."""
    images = torch.as_tensor(images)
    if images.ndim != 2 or images.shape[1] != 784:
        raise ValueError(f"images must have shape (N, 784), got {tuple(images.shape)}")
    return images.reshape(-1, 28, 28).transpose(0, 1).contiguous()


# ---------------------------------------------------------------------------------------------------------
# The model


class SequenceModel(nn.Module):
    """One recurrent cell of ``variant`` unrolled over time, and a linear read-out of the last hidden state.

    ``forward(xs)`` takes time-major ``(T, N, input_size)`` and returns ``(N, outputs)``. The cell's
    parameters come from ``init_seed`` through :func:`lnlib.numpy.recurrent.init_params`, the read-out
    from ``torch.manual_seed(init_seed)``: two models of different variants with the same seed share
    ``W_x``, ``W_h`` and the read-out. ``max_steps``: the BN-LSTM's number of statistics slots.
    """

    def __init__(self, variant: str, input_size: int, hidden: int, outputs: int, *, max_steps: int,
                 init_seed: int) -> None:
        super().__init__()
        kind, gain = check_variant(variant)
        kwargs: dict[str, Any] = {"max_steps": max_steps} if kind == "bn_lstm" else {}
        self.variant = variant
        self.cell = rt.make_cell(kind, input_size, hidden, gain=gain, rng=init_seed, **kwargs)
        self.rnn = rt.Recurrent(self.cell)
        torch.manual_seed(init_seed)
        self.readout = nn.Linear(hidden, outputs)

    def forward(self, xs: torch.Tensor) -> torch.Tensor:
        hs, _ = self.rnn(xs)
        return self.readout(hs[-1])


def check_variant(variant: object) -> tuple[str, float | None]:
    if not isinstance(variant, str) or variant not in VARIANTS:
        raise ValueError(f"variant must be one of {tuple(VARIANTS)}, got {variant!r}")
    return VARIANTS[variant]


def with_matched_statistics(model: SequenceModel, xs: torch.Tensor) -> SequenceModel:
    """A copy of a BN-LSTM ``model`` whose per-step statistics are those of the batch ``xs`` (``(T, N, D)``,
    any ``T``): the oracle of H13, statistics for every test step instead of the last trained step's."""
    cell = model.cell
    if not isinstance(cell, rt.BNLSTMCell):
        raise ValueError(f"with_matched_statistics needs a BN-LSTM model, got variant {model.variant!r}")
    length = int(xs.shape[0])
    matched = copy.deepcopy(model)
    w = cell.W_x
    fresh = rt.BNLSTMCell(cell.input_size, cell.hidden_size, max_steps=max(length, cell.max_steps), momentum=None,
                          eps=cell.eps, rng=0, device=w.device, dtype=w.dtype).load_params(cell.params())
    matched.cell = fresh
    matched.rnn = rt.Recurrent(fresh)
    matched.train()
    with torch.no_grad():
        matched.rnn(xs)  # momentum None, one batch: the running statistics become this batch's statistics
    return matched.eval()


# ---------------------------------------------------------------------------------------------------------
# Measurements


def per_case_norm(values: torch.Tensor) -> float:
    """Mean over the cases (rows) of the Euclidean norm of each row."""
    return float(values.detach().norm(dim=-1).mean())


def state_and_gradient_norms(model: SequenceModel, xs: torch.Tensor, targets: torch.Tensor,
                             loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> dict[str, Any]:
    """At every time step: mean per-case norms of ``h_t``, ``c_t``, ``dL/dh_t`` and ``dL/dc_t`` for one
    batch, in training mode (a BN-LSTM uses batch statistics), on a copy of ``model`` (the model itself,
    its gradients and its running statistics are untouched); plus ``param_grad_norm``, the Euclidean norm
    of the gradient of all parameters (what gradient clipping sees; inf or nan if the gradient is not
    finite)."""
    probe = copy.deepcopy(model).train()
    state = probe.cell.initial_state(xs.shape[1])
    hs, cs = [], []
    for t in range(xs.shape[0]):
        state = probe.cell(xs[t], state, t=t)
        for tensor in state:
            tensor.retain_grad()
        hs.append(state[0])
        cs.append(state[1])
    loss_fn(probe.readout(hs[-1]), targets).backward()
    grads = [p.grad.detach().flatten() for p in probe.parameters() if p.grad is not None]
    return {"h": [per_case_norm(h) for h in hs], "c": [per_case_norm(c) for c in cs],
            "grad_h": [per_case_norm(h.grad) for h in hs], "grad_c": [per_case_norm(c.grad) for c in cs],
            "param_grad_norm": float(torch.cat(grads).norm())}


@torch.no_grad()
def forward_norms(model: SequenceModel, xs: torch.Tensor) -> dict[str, list[float]]:
    """Mean per-case norms of ``h_t`` and ``c_t`` at every step, in the model's current mode, no gradient."""
    state = model.cell.initial_state(xs.shape[1])
    h, c = [], []
    for t in range(xs.shape[0]):
        state = model.cell(xs[t], state, t=t)
        h.append(per_case_norm(state[0]))
        c.append(per_case_norm(state[1]))
    return {"h": h, "c": c}


def _mse(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return nn.functional.mse_loss(out.squeeze(-1), target)


@torch.no_grad()
def evaluate(model: SequenceModel, task: str, xs: torch.Tensor, targets: torch.Tensor,
             batch: int = 1000) -> dict[str, float]:
    """Evaluation mode: ``{"nll", "error"}`` for sequential MNIST, ``{"mse"}`` for the adding problem
    (``xs`` time-major, split into batches along the cases)."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    model.eval()
    n = xs.shape[1]
    nll = wrong = squared = 0.0
    for start in range(0, n, batch):
        out = model(xs[:, start:start + batch])
        target = targets[start:start + batch]
        if task == "seqmnist":
            nll += float(nn.functional.cross_entropy(out, target, reduction="sum"))
            wrong += float((out.argmax(dim=1) != target).sum())
        else:
            squared += float(((out.squeeze(-1) - target) ** 2).sum())
    if task == "seqmnist":
        return {"nll": nll / n, "error": wrong / n}
    return {"mse": squared / n}


# ---------------------------------------------------------------------------------------------------------
# Runs


def make_spec(task: str, variant: str, seed: int, task_params: dict[str, Any]) -> dict[str, Any]:
    """Everything that defines one run (its key hashes all of it, so changed parameters never reuse a file)."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    check_variant(variant)
    spec = {"task": task, "variant": variant, "seed": seed}
    spec.update({k: v for k, v in task_params.items() if k != "variants"})
    return spec


def run_key(spec: dict[str, Any]) -> str:
    digest = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:10]
    return f"{spec['task']}-{spec['variant']}-s{spec['seed']}-{digest}"


def task_seed(task: str, seed: int) -> int:
    """The seed of a task's weights and data: the same for every variant of that task."""
    return int(hashlib.sha256(f"{NAME}-{task}-seed{seed}".encode()).hexdigest()[:8], 16)


def checkpoint_dir(profile: str, seed: int) -> Path:
    base = os.environ.get("LNLIB_CHECKPOINT_DIR")
    root = Path(base) if base else results.REPO_ROOT / "_build" / "checkpoints"
    return root / f"{NAME}-{profile}-seed{seed}"


class _Task:
    """The data of one run: training batches as a function of the step, fixed validation/test/probe sets."""

    def __init__(self, spec: dict[str, Any], data: mnist.MNIST | None, device: torch.device) -> None:
        self.spec, self.device = spec, device
        self.seed = task_seed(spec["task"], spec["seed"])
        put = lambda a: torch.as_tensor(a).to(device)  # noqa: E731
        if spec["task"] == "seqmnist":
            if data is None:
                raise ValueError("the seqmnist task needs the MNIST data (lnlib.data.mnist.load())")
            cases = spec["train_cases"]
            self.pixel_mean, self.pixel_std = pixel_statistics(data.train.images[:cases])
            scale = lambda a: put((a - np.float32(self.pixel_mean)) / np.float32(self.pixel_std))  # noqa: E731
            if not spec["standardize"]:
                scale = put
            self.train_x, self.train_y = scale(data.train.images[:cases]), put(data.train.labels[:cases])
            v, f, t = spec["valid_cases"], spec["final_valid_cases"], spec["test_cases"]
            self.valid = (mnist_rows(scale(data.valid.images[:v])), put(data.valid.labels[:v]))
            self.final_valid = (mnist_rows(scale(data.valid.images[:f])), put(data.valid.labels[:f]))
            self.test = (mnist_rows(scale(data.test.images[:t])), put(data.test.labels[:t]))
            m = spec["norm_cases"]
            self.probe = (mnist_rows(scale(data.valid.images[:m])), put(data.valid.labels[:m]))
            self.raw_probe = (mnist_rows(put(data.valid.images[:m])), put(data.valid.labels[:m]))
            self.steps_per_epoch = cases // spec["batch_size"]
            self._order: tuple[int, torch.Tensor] | None = None
            self.loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = nn.functional.cross_entropy
            self.input_size, self.outputs, self.max_steps = 28, 10, 28
        else:
            length = spec["length"]
            self.valid = self.adding(spec["valid_cases"], length, 1)
            self.final_valid = self.valid
            self.probe = self.adding(spec["norm_cases"], length, 2)
            self.loss_fn = _mse
            self.input_size, self.outputs, self.max_steps = 2, 1, length

    def adding(self, n: int, length: int, stream: int) -> tuple[torch.Tensor, torch.Tensor]:
        """A fixed set of adding sequences; ``stream`` separates the sets (training batches use stream 0)."""
        xs, ys = adding_batch(n, length, np.random.default_rng([self.seed, stream, length]))
        return torch.from_numpy(xs).to(self.device), torch.from_numpy(ys).to(self.device)

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        spec, bs = self.spec, self.spec["batch_size"]
        if spec["task"] == "adding":
            xs, ys = adding_batch(bs, spec["length"], np.random.default_rng([self.seed, 0, step]))
            return torch.from_numpy(xs).to(self.device), torch.from_numpy(ys).to(self.device)
        epoch, within = divmod(step, self.steps_per_epoch)
        if self._order is None or self._order[0] != epoch:
            order = np.random.default_rng([self.seed, 1, epoch]).permutation(self.train_x.shape[0])
            self._order = (epoch, torch.from_numpy(order).to(self.device))
        idx = self._order[1][within * bs:(within + 1) * bs]
        return mnist_rows(self.train_x[idx]), self.train_y[idx]

    def metric(self, model: SequenceModel, split: tuple[torch.Tensor, torch.Tensor]) -> float:
        scores = evaluate(model, self.spec["task"], *split)
        return scores["error"] if self.spec["task"] == "seqmnist" else scores["mse"]


def train_run(spec: dict[str, Any], data: mnist.MNIST | None, folder: Path, *,
              device: torch.device = torch.device("cpu"), progress: bool = True) -> dict[str, Any]:
    """Train one run (or resume it from its last checkpoint, or read it if finished); returns its log."""
    key = run_key(spec)
    finished = finished_log(folder, key)
    if finished is not None:
        return finished
    torch.use_deterministic_algorithms(True)
    task = _Task(spec, data, device)
    model = SequenceModel(spec["variant"], task.input_size, spec["hidden"], task.outputs,
                          max_steps=task.max_steps, init_seed=task.seed).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=spec["lr"])
    commit, modified = results.code_version()
    log: dict[str, Any] = {"spec": spec, "git_commit": commit, "code_modified": modified, "step": [],
                           "train_loss": [], "grad_norm": [], "valid": [], "diverged": False,
                           "timing": {"train": 0.0, "evaluation": 0.0}}
    checkpoint = folder / f"{key}.pt"
    start = 0
    if checkpoint.exists():  # resume: model (with BN statistics), optimizer and log at the last evaluation
        state = torch.load(checkpoint, map_location=device, weights_only=True)  # tensors and plain data only
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        log, start = state["log"], state["step"]
    else:
        log["norms_init"] = state_and_gradient_norms(model, *task.probe, task.loss_fn)
        if spec["task"] == "seqmnist":  # the same first batch with raw pixels in [0, 1]: blank rows are zeros
            log["norms_init_raw_pixels"] = state_and_gradient_norms(model, *task.raw_probe, task.loss_fn)
            log["pixel_mean"], log["pixel_std"] = task.pixel_mean, task.pixel_std
    every = spec["eval_every"]
    loss_sum = grad_sum = 0.0
    began = time.perf_counter()
    for step in tqdm(range(start, spec["steps"]), desc=key, disable=not progress, leave=False, mininterval=2.0):
        model.train()
        xs, ys = task.batch(step)
        loss = task.loss_fn(model(xs), ys)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = nn.utils.clip_grad_norm_(model.parameters(), spec["clip"])  # the norm before clipping
        optimizer.step()
        loss_sum += float(loss.detach())
        grad_sum += float(grad_norm)
        if (step + 1) % every and step + 1 != spec["steps"]:
            continue
        trained = time.perf_counter()
        window = step % every + 1
        log["step"].append(step + 1)
        log["train_loss"].append(loss_sum / window)
        log["grad_norm"].append(grad_sum / window)
        log["valid"].append(task.metric(model, task.valid))
        loss_sum = grad_sum = 0.0
        log["timing"]["train"] += trained - began
        log["timing"]["evaluation"] += time.perf_counter() - trained
        if not all(math.isfinite(v) for v in (log["train_loss"][-1], log["valid"][-1])):
            log["diverged"] = True
            break
        _save_checkpoint(checkpoint, {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                                      "log": log, "step": step + 1})
        began = time.perf_counter()
    if not log["diverged"]:
        began = time.perf_counter()
        _final_measurements(model, task, log)
        log["timing"]["evaluation"] += time.perf_counter() - began
    return finish_run(folder, key, log)


def _final_measurements(model: SequenceModel, task: _Task, log: dict[str, Any]) -> None:
    spec = task.spec
    log["norms_trained"] = state_and_gradient_norms(model, *task.probe, task.loss_fn)
    if spec["task"] == "seqmnist":
        log["final_valid"] = evaluate(model, "seqmnist", *task.final_valid)
        log["test"] = evaluate(model, "seqmnist", *task.test)
        return
    lengths = [int(k) * spec["length"] for k in spec["factors"]]
    log["lengths"] = lengths
    log["test_mse"], log["test_mse_matched"] = [], []
    is_bn = isinstance(model.cell, rt.BNLSTMCell)
    for length in lengths:
        test = task.adding(spec["test_cases"], length, 3)
        log["test_mse"].append(evaluate(model, "adding", *test)["mse"])
        if is_bn:
            stats_xs, _ = task.adding(spec["stat_cases"], length, 4)
            matched = with_matched_statistics(model, stats_xs)
            log["test_mse_matched"].append(evaluate(matched, "adding", *test)["mse"])
    longest = task.adding(spec["norm_cases"], lengths[-1], 3)[0]
    model.eval()
    log["long_norms"] = forward_norms(model, longest)
    if is_bn:
        stats_xs, _ = task.adding(spec["stat_cases"], lengths[-1], 4)
        log["long_norms_matched"] = forward_norms(with_matched_statistics(model, stats_xs), longest)


# ---------------------------------------------------------------------------------------------------------
# The plan, and reading a result


def specs(params: dict[str, Any], seed: int) -> list[dict[str, Any]]:
    """Every run of a profile: each task's variants, for seeds ``seed .. seed + params["seeds"] - 1``."""
    return [make_spec(task, variant, seed + s, params[task]) for s in range(params["seeds"]) for task in TASKS
            for variant in params[task]["variants"]]


def estimated_cost(spec: dict[str, Any]) -> float:
    """Rough single-core seconds of a run's training: about 1.5 ms per time step of a batch of 64 for the
    LSTM, 1.5x that for the LN-LSTM and 2.5x for the BN-LSTM (measured on a busy 2-core machine at the
    ``cpu`` profile's sizes; evaluation adds about 10%). Used to balance workers."""
    length = 28 if spec["task"] == "seqmnist" else spec["length"]
    factor = {"lstm": 1.0, "ln_lstm": 1.5, "bn_lstm": 2.5}[VARIANTS[spec["variant"]][0]]
    return spec["steps"] * length * 1.5e-3 * factor * spec["batch_size"] / 64


def assign(all_specs: list[dict[str, Any]], workers: int) -> list[list[dict[str, Any]]]:
    """Split runs between workers, most expensive first, each to the least loaded worker (deterministic)."""
    return balance(all_specs, workers, estimated_cost, run_key)


def select(data: dict[str, Any], task: str, variant: str) -> list[dict[str, Any]]:
    """The logs of one (task, variant), one per seed, in seed order."""
    logs = [log for log in data["runs"].values()
            if log["spec"]["task"] == task and log["spec"]["variant"] == variant]
    return sorted(logs, key=lambda log: log["spec"]["seed"])


def steps_to_reach(log: dict[str, Any], threshold: float, key: str = "valid") -> int | None:
    """The first logged step at which ``log[key]`` is at most ``threshold`` (``None``: never)."""
    for step, value in zip(log["step"], log[key]):
        if value is not None and value <= threshold:
            return step
    return None


def decades(values: list[float | None]) -> float:
    """``log10(max / min)`` of non-negative values: how many orders of magnitude they span; ``inf`` if one
    of them is 0, infinite or missing (``None``: a non-finite value stored as JSON null)."""
    if not values:
        raise ValueError("decades needs at least one value")
    if any(v is None or not math.isfinite(v) for v in values):
        return math.inf
    low, high = min(values), max(values)
    if low < 0:
        raise ValueError(f"decades needs non-negative values, got a minimum of {low}")
    return math.inf if low == 0 else math.log10(high / low)


def _median(values: list[float | None]) -> float | None:
    """Median with ``None`` as +infinity (a threshold never reached); ``None`` if the median is infinite."""
    finite = [math.inf if v is None else float(v) for v in values]
    if not finite:
        return None
    value = float(np.median(finite))
    return None if math.isinf(value) else value


# ---------------------------------------------------------------------------------------------------------
# Verdicts (one per claim; lnlib.claims registers them)


def _fmt(value: float | None) -> str:
    return "never" if value is None else f"{value:g}"


def verdict_h8(record: dict[str, Any]) -> Verdict:
    """H8, LN speeds up recurrent training: on each task, for each threshold of the validation metric that
    the LN-LSTM or a rival reaches, does the LN-LSTM reach it in fewer steps (median over seeds) than the
    LSTM, and than the BN-LSTM? Ties (the same evaluation) count against LN."""
    d = record["data"]
    checks: list[bool] = []
    parts = []
    for task in TASKS:
        ln = select(d, task, "ln_lstm")
        if not ln:
            continue
        for rival in ("lstm", "bn_lstm"):
            other = select(d, task, rival)
            if not other:
                continue
            wins = compared = 0
            cells = []
            for threshold in THRESHOLDS[task]:
                a = _median([steps_to_reach(log, threshold) for log in ln])
                b = _median([steps_to_reach(log, threshold) for log in other])
                if a is None and b is None:
                    continue
                compared += 1
                win = a is not None and (b is None or a < b)
                wins += win
                checks.append(win)
                cells.append(f"<={threshold:g}: {_fmt(a)} vs {_fmt(b)}")
            if compared:
                parts.append(f"{task} vs {rival}: LN first in {wins}/{compared} ({', '.join(cells)})")
    if not checks:
        return Verdict("not tested here",
                              "no threshold of the validation metric was reached at this profile")
    return Verdict(_status(checks),
                          f"steps to reach a validation threshold, LN-LSTM vs rival: {'; '.join(parts)}")


def _h9_numbers(log: dict[str, Any], which: str) -> tuple[float, float]:
    """(decades spanned by |dL/dh_t| over all t, decades spanned by |h_t| over the second half of t)."""
    norms = log[which]
    half = len(norms["h"]) // 2
    return decades(norms["grad_h"]), decades(norms["h"][half:])


def verdict_h9(record: dict[str, Any]) -> Verdict:
    """H9, LN stabilizes the hidden-state dynamics: on each task, before and after training, does the
    LN-LSTM's gradient norm |dL/dh_t| span fewer orders of magnitude over the time steps than the LSTM's,
    and does its hidden-state norm |h_t| over the second half of the sequence? (Seed ``seed``'s runs.)"""
    d = record["data"]
    checks: list[bool] = []
    parts = []
    for task in TASKS:
        ln, lstm, bn = (select(d, task, v) for v in ("ln_lstm", "lstm", "bn_lstm"))
        if not ln or not lstm:
            continue
        for which, label in (("norms_init", "init"), ("norms_trained", "trained")):
            if which not in ln[0] or which not in lstm[0]:
                continue
            (g_ln, h_ln), (g_lstm, h_lstm) = _h9_numbers(ln[0], which), _h9_numbers(lstm[0], which)
            checks += [g_ln < g_lstm, h_ln < h_lstm]
            bn_part = ""
            if bn and which in bn[0]:
                g_bn, h_bn = _h9_numbers(bn[0], which)
                bn_part = f", BN {g_bn:.2f}/{h_bn:.2f}"
            parts.append(f"{task} {label}: LN {g_ln:.2f}/{h_ln:.2f}, LSTM {g_lstm:.2f}/{h_lstm:.2f}{bn_part}")
    if not checks:
        return Verdict("not tested here", "the result holds no LN-LSTM and LSTM norms to compare")
    return Verdict(_status(checks), f"LN-LSTM more stable than the LSTM in {sum(checks)} of {len(checks)} "
                                           f"comparisons; decades spanned by |dL/dh_t| (all t) / |h_t| (second "
                                           f"half): {'; '.join(parts)}")


def mean_valid(logs: list[dict[str, Any]]) -> float:
    """The validation metric averaged over a learning curve (an area under the curve), median over seeds."""
    return float(np.median([np.mean([v for v in log["valid"] if v is not None]) for log in logs]))


def verdict_h12(record: dict[str, Any]) -> Verdict:
    """H12 on sequential MNIST, mean validation error over training (lower is better): (a) the paper's
    observation, LN-LSTM with gain 1.0 at least as good as with 0.1; (b) the ledger's reading, "insensitive
    unlike recurrent BN": the LN-LSTM's change between the two gains smaller than the BN-LSTM's."""
    d = record["data"]
    runs = {v: select(d, "seqmnist", v) for v in ("ln_lstm", "ln_lstm_gain0.1", "bn_lstm", "bn_lstm_gain1")}
    if not all(runs.values()):
        return Verdict("not tested here",
                              "the result lacks one of the four gain variants on sequential MNIST")
    m = {v: mean_valid(logs) for v, logs in runs.items()}
    ln_change = m["ln_lstm_gain0.1"] - m["ln_lstm"]
    bn_change = m["bn_lstm"] - m["bn_lstm_gain1"]
    checks = [m["ln_lstm"] <= m["ln_lstm_gain0.1"], abs(ln_change) < abs(bn_change)]
    return Verdict(_status(checks), f"mean validation error over training (%): LN-LSTM gain 1.0 "
                                           f"{100 * m['ln_lstm']:.2f}, gain 0.1 {100 * m['ln_lstm_gain0.1']:.2f}; "
                                           f"BN-LSTM gain 0.1 {100 * m['bn_lstm']:.2f}, gain 1.0 "
                                           f"{100 * m['bn_lstm_gain1']:.2f}; changing the gain moves LN by "
                                           f"{100 * abs(ln_change):.2f} points, BN by {100 * abs(bn_change):.2f}")


def verdict_h13(record: dict[str, Any]) -> Verdict:
    """H13 on the adding problem, at every test length longer than the training length: (a) the LN-LSTM
    still explains at least half the variance (squared error below half the trivial 1/6), (b) its squared
    error is at most the BN-LSTM's (which reuses its last trained step's statistics). Medians over seeds."""
    d = record["data"]
    ln, bn, lstm = (select(d, "adding", v) for v in ("ln_lstm", "bn_lstm", "lstm"))
    if not ln or not bn or "test_mse" not in ln[0] or "test_mse" not in bn[0]:
        return Verdict("not tested here", "the result has no adding-problem length evaluation of LN and BN")
    lengths = ln[0]["lengths"]

    def med(logs: list[dict[str, Any]], key: str, i: int) -> float:
        return float(np.median([log[key][i] for log in logs]))

    checks, parts = [], []
    for i, length in enumerate(lengths):
        a, b = med(ln, "test_mse", i), med(bn, "test_mse", i)
        extra = f", LSTM {med(lstm, 'test_mse', i):.4f}" if lstm else ""
        extra += f", BN matched stats {med(bn, 'test_mse_matched', i):.4f}" if bn[0]["test_mse_matched"] else ""
        parts.append(f"T={length}: LN {a:.4f}, BN {b:.4f}{extra}")
        if i > 0:
            checks += [a < ADDING_TRIVIAL_MSE / 2, a <= b]
    return Verdict(_status(checks), f"adding-problem squared error (trivial {ADDING_TRIVIAL_MSE:.4f}), "
                                           f"trained at T={lengths[0]}: {'; '.join(parts)}")


VERDICTS = {"H8": verdict_h8, "H9": verdict_h9, "H12": verdict_h12, "H13": verdict_h13}


# ---------------------------------------------------------------------------------------------------------
# Entry points


def _profile_of(params: dict[str, Any]) -> str:
    """The profile whose parameters these are, or ``custom-<hash>`` for any other dict (tests)."""
    for name, p in PROFILES.items():
        if p == params:
            return name
    return "custom-" + hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:8]


def _check_params(params: dict[str, Any]) -> None:
    for task in TASKS:
        if task not in params:
            raise ValueError(f"params must have a {task!r} entry, got keys {sorted(params)}")
        for variant in params[task]["variants"]:
            check_variant(variant)
    if params["adding"]["factors"][0] != 1:
        raise ValueError(f"params['adding']['factors'] must start with 1 (the training length), got "
                         f"{params['adding']['factors']}")


def run(params: dict[str, Any], *, seed: int, device: str, progress: bool = True) -> dict[str, Any]:
    """Train every run of the profile that is not finished yet (resuming interrupted ones), then assemble."""
    _check_params(params)
    folder = checkpoint_dir(_profile_of(params), seed)
    dev = _prepare_device(device)
    all_specs = specs(params, seed)
    data = mnist.load() if any(s["task"] == "seqmnist" for s in all_specs) else None
    logs = {run_key(s): train_run(s, data, folder, device=dev, progress=progress) for s in all_specs}
    return {"runs": logs, "trivial_adding_mse": ADDING_TRIVIAL_MSE, "thresholds": THRESHOLDS,
            "training_seconds": float(sum(sum(log["timing"].values()) for log in logs.values()))}


def main(argv: list[str] | None = None) -> None:
    args = parse_worker_args("Train this worker's share of the recurrent runs of a profile.", PROFILES, argv)
    params = PROFILES[args.profile]
    folder = checkpoint_dir(args.profile, args.seed)
    dev = _prepare_device(args.device)
    mine = assign(specs(params, args.seed), args.workers)[args.worker]
    data = mnist.load() if any(s["task"] == "seqmnist" for s in mine) else None
    for spec in mine:
        train_run(spec, data, folder, device=dev)
    print(f"worker {args.worker} of {args.workers}: my runs of profile {args.profile} are finished")


if __name__ == "__main__":
    main()
