r"""Recurrent experiments (chapter 8): LSTM vs LN-LSTM vs BN-LSTM on two sequence tasks, claims H8, H9,
H12 and H13.

The paper trains its LN-LSTMs and LN-GRUs on tasks out of reach here (§6.1–6.5: COCO, the CNN corpus,
BookCorpus, IAM-OnDB). This module measures the same four claims at CPU scale, on two small tasks:

* **sequential MNIST** (``seqmnist``): each 28x28 image is read one row per time step (28 steps of 28
  pixels, top to bottom); the class is predicted by a linear layer from the last hidden state;
  cross-entropy loss; data split 55k/5k/10k (:mod:`lnlib.data.mnist`). Pixels are standardized with the
  mean and standard deviation of all training pixels (``standardize``). With raw pixels in [0, 1], the
  blank rows at the top of a digit are exact zeros: with the zero initial state, every layer norm of the
  LN-LSTM then normalizes an all-zero vector for several steps, where its derivative is
  :math:`\text{gain}/\sqrt{\epsilon}\approx 316` (chapter 15), and the first gradient overflows.
  Each run records that first gradient on raw pixels too (``norms_init_raw_pixels``);
* **the adding problem** (``adding``) of Hochreiter & Schmidhuber (1997), in its common two-marker form
  (:func:`adding_batch`): at every step the input is a pair (value ~ U(0, 1), marker), exactly two
  steps are marked, one in each half of the sequence, and the target is the sum of the two marked values;
  a linear layer reads the prediction from the last hidden state; squared-error loss. Predicting the
  mean (1) has an expected squared error of Var(u1 + u2) = 1/6, the *trivial* error. Sequences are
  generated, so the task can be evaluated at any length: trained at one length ``T``, each model is
  evaluated at ``T``, ``2T``, ``4T``, ``8T`` (claim H13), with the markers still one in each half.

The cells are those of :mod:`lnlib.torch.recurrent` (chapter 7): ``lstm`` (eqs. 17–19), ``ln_lstm``
(eqs. 20–22, gains initialized to 1 as the paper's §6) and ``bn_lstm`` (Cooijmans et al. 2016, gains 0.1
as they recommend, per-time-step running statistics with momentum 0.1; beyond the longest training
sequence, evaluation reuses the statistics of the last trained step). Two more variants test the gain
initialization (H12): ``ln_lstm_gain0.1`` and ``bn_lstm_gain1``.

**Measurements**, per run (one variant on one task, trained from scratch):

* H8: the mean training loss of the last ``eval_every`` steps and the validation error (sequential MNIST)
  or validation squared error (adding) every ``eval_every`` steps (or on the geometric grid of
  :func:`evaluation_steps`); :func:`steps_to_reach` turns these curves into steps-to-threshold; the mean
  and the largest gradient norm (before clipping) of the steps since the previous evaluation;
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
resumed from its last checkpoint (written at every evaluation in its run folder by
:mod:`lnlib.experiments.training`, checked against the spec and its hash, loaded weights-only) ends bit-identical to an uninterrupted one. ``python -m
lnlib.experiments.rnn --profile cpu --worker 0 --workers 2`` trains every second run in one process;
:func:`run` then only assembles the finished runs.
"""

from __future__ import annotations

import copy
import hashlib
import math
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from .. import results
from ..data import mnist
from ..torch import recurrent as rt
from . import training

NAME = "rnn"
TASKS = ("seqmnist", "adding", "adding_var")
#: The revision of the cell code every spec names (so logs of older code are never reused): 2 = the BN-LSTM
#: with batch-centred products and constant features set to their shift (issue 13; chapter 8).
CELL_CODE = 2
THREADS = 1  # one torch thread per process: the runs are small, and two workers use the two cores
#: variant -> (cell kind, gain initialization; None: the cell's default)
VARIANTS: dict[str, tuple[str, float | None]] = {
    "lstm": ("lstm", None),
    "ln_lstm": ("ln_lstm", 1.0),
    "ln_lstm_gain0.1": ("ln_lstm", 0.1),
    "bn_lstm": ("bn_lstm", 0.1),
    "bn_lstm_gain1": ("bn_lstm", 1.0),
    "rnn": ("rnn", None),
    "ln_rnn": ("ln_rnn", 1.0),
    "ln_lstm_codebias": ("ln_lstm", 1.0),
    "gru": ("gru", None),
    "ln_gru": ("ln_gru", 1.0),
    "lstm_fb1": ("lstm", None),
}
#: cell options of a variant beyond kind and gain: the authors' code adds the LSTM bias inside the input LN
#: and again after the LNs (``LN(x W_x + b) + LN(h W_h) + b``; chapter 7), an ablation of eq. 20
VARIANT_OPTIONS: dict[str, dict[str, Any]] = {"ln_lstm_codebias": {"bias_in_input_ln": True}}
#: forget-gate bias at initialization (the usual remedy for an LSTM's long plateau, Gers et al. 2000;
#: Jozefowicz et al. 2015): a control of H10's baseline (chapter 9); the authors' code has none
FORGET_BIAS: dict[str, float] = {"lstm_fb1": 1.0}
#: the trivial squared error on the adding problem: predicting the mean 1 of u1 + u2, Var = 2/12
ADDING_TRIVIAL_MSE = 1.0 / 6.0
#: thresholds for steps-to-threshold (H8): validation error (seqmnist), validation squared error (adding)
THRESHOLDS = {"seqmnist": (0.5, 0.2, 0.1, 0.05), "adding": (0.1, 0.05, 0.01)}

#: SHA-256 of the source files a run executes, taken when this module is imported (a long-running worker
#: records the code it runs, even if the checkout changes under it)
SOURCE_SHA256 = hashlib.sha256(b"".join(
    (Path(__file__).parent.parent / name).read_bytes()
    for name in ("experiments/rnn.py", "torch/recurrent.py", "numpy/recurrent.py"))).hexdigest()

_ALL = [v for v in VARIANTS if v not in FORGET_BIAS]  # the control of chapter 9 is trained there only
_THREE = ["lstm", "ln_lstm", "bn_lstm"]
_FIVE = _THREE + ["rnn", "ln_rnn"]


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


def _adding_var(variants: list[str], lengths: tuple[int, int], horizon: int, hidden: int, steps: int,
                eval_every: int, valid: int, test: int, norm: int, batch_size: int = 64) -> dict[str, Any]:
    """H13b: training lengths drawn from ``lengths`` (inclusive), both markers in the last ``horizon`` steps;
    evaluated at ``factors`` times the longest training length."""
    spec = _adding(variants, lengths[1], hidden, steps, eval_every, valid, test, norm, batch_size)
    spec.update({"min_length": lengths[0], "horizon": horizon})
    return spec


PROFILES: dict[str, dict[str, Any]] = {
    "smoke": {"seeds": 1,
              "seqmnist": _seqmnist(16, 20, 10, 2000, 200, 200, 200, 32, batch_size=16),
              "adding": _adding(_FIVE, 8, 16, 20, 10, 100, 100, 32, batch_size=16),
              "adding_var": _adding_var(_THREE, (6, 8), 4, 16, 20, 10, 100, 100, 32, batch_size=16)},
    "cpu": {"seeds": 5,
            "seqmnist": _seqmnist(128, 2000, 50, 55_000, 1000, 5000, 10_000, 256),
            "adding": _adding(_FIVE, 40, 64, 3000, 50, 500, 1000, 256),
            "adding_var": _adding_var(_THREE, (20, 40), 20, 64, 3000, 50, 500, 1000, 256)},
    "paper": {"seeds": 5,
              "seqmnist": _seqmnist(128, 10_000, 100, 55_000, 5000, 5000, 10_000, 256),
              "adding": _adding(_FIVE, 100, 128, 10_000, 100, 1000, 2000, 256),
              "adding_var": _adding_var(_THREE, (50, 100), 50, 128, 10_000, 100, 1000, 2000, 256)},
}


# ---------------------------------------------------------------------------------------------------------
# Data


def adding_batch(n: int, length: int, rng: np.random.Generator,
                 horizon: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``n`` sequences of the adding problem of length ``length``: ``(xs, targets)``.

    ``xs`` is time-major float32 ``(length, n, 2)``: channel 0 the values, i.i.d. U(0, 1); channel 1 the
    markers, 1 at exactly two steps of each sequence, one drawn uniformly from the first half
    ``[0, length // 2)`` and one from the second half ``[length // 2, length)``, 0 elsewhere.
    ``targets`` (float32, ``(n,)``) is the sum of the two marked values. With a ``horizon`` ``K``
    (``2 <= K <= length``) both markers lie in the last ``K`` steps, one in each half of them
    (``[length - K, length - K // 2)`` and ``[length - K // 2, length)``): the memory the task needs no
    longer grows with the length (claim H13b).
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int (the number of sequences), got {n!r}")
    if isinstance(length, bool) or not isinstance(length, int) or length < 2:
        raise ValueError(f"length must be an int >= 2 (one marker in each half), got {length!r}")
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    if horizon is not None and (isinstance(horizon, bool) or not isinstance(horizon, int)
                                or not 2 <= horizon <= length):
        raise ValueError(f"horizon must be None or an int in [2, length={length}], got {horizon!r}")
    start = 0 if horizon is None else length - horizon
    half = start + (length - start) // 2
    values = rng.random((length, n))
    first = rng.integers(start, half, n)
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
        kwargs.update(VARIANT_OPTIONS.get(variant, {}))
        self.variant = variant
        self.cell = rt.make_cell(kind, input_size, hidden, gain=gain, rng=init_seed, **kwargs)
        if variant in FORGET_BIAS:  # gates are stacked (f, i, o, g): the first H entries of b are f's
            params = {name: value.detach().clone() for name, value in self.cell.params().items()}
            params["b"][:hidden] = FORGET_BIAS[variant]
            self.cell.load_params(params)
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
    states = []
    for t in range(xs.shape[0]):
        state = probe.cell(xs[t], state, t=t)
        for tensor in state:
            tensor.retain_grad()
        states.append(state)
    loss_fn(probe.readout(states[-1][0]), targets).backward()
    grads = [p.grad.detach().flatten() for p in probe.parameters() if p.grad is not None]
    norms: dict[str, Any] = {}
    for i, name in enumerate(("h", "c")[:len(states[0])]):
        norms[name] = [per_case_norm(s[i]) for s in states]
        norms["grad_" + name] = [per_case_norm(s[i].grad) for s in states]
    norms["param_grad_norm"] = float(torch.cat(grads).norm())
    return norms


def first_gradient_precision(task: str, variants: list[str], seed: int, task_params: dict[str, Any],
                             data: mnist.MNIST | None) -> dict[str, dict[str, float]]:
    """For each variant, the gradient of the run's probe batch at initialization (the weights of seed
    ``seed``), computed in float32 and in float64 from the same weights: both norms and
    :math:`|g_{32}-g_{64}|/|g_{64}|`. Float64 stands in for exact arithmetic; a large difference is
    rounding, not a derivative."""
    run_task = _Task(make_spec(task, variants[0], seed, task_params), data, torch.device("cpu"))
    xs, ys = run_task.probe
    out = {}
    for variant in variants:
        check_variant(variant)
        g32, g64 = (_gradient(SequenceModel(variant, run_task.input_size, task_params["hidden"], run_task.outputs,
                                            max_steps=run_task.max_steps, init_seed=run_task.seed).to(dtype),
                              run_task.loss_fn, xs, ys)
                    for dtype in (torch.float32, torch.float64))
        out[variant] = _precision(g32, g64)
    return out


def _gradient(model: SequenceModel, loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
              xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
    """The loss gradient of all of ``model``'s parameters on one batch, computed in the model's dtype
    (inputs and real-valued targets cast to it), flattened into one float64 vector."""
    dtype = next(model.parameters()).dtype
    loss_fn(model(xs.to(dtype)), ys if not ys.is_floating_point() else ys.to(dtype)).backward()
    return _flat_grad(model)


def _flat_grad(model: nn.Module) -> torch.Tensor:
    return torch.cat([p.grad.flatten() for p in model.parameters()]).double()


def _precision(g32: torch.Tensor, g64: torch.Tensor) -> dict[str, float]:
    """Both gradient norms and :math:`|g_{32}-g_{64}|/|g_{64}|` (float64 standing in for exact arithmetic)."""
    return {"float32": float(g32.norm()), "float64": float(g64.norm()),
            "relative_difference": float((g32 - g64).norm() / g64.norm())}


def replay_gradient_precision(spec: dict[str, Any], data: mnist.MNIST | None, *, until: int, above: float,
                              device: torch.device = torch.device("cpu"), progress: bool = True) -> dict[str, Any]:
    """Train run ``spec`` again from scratch for ``until`` steps, exactly as :func:`_train` does, and at every
    step whose gradient norm (float32, before clipping) exceeds ``above``, compute the gradient of the same
    mini-batch in float64 from a copy of the same weights: both norms and :math:`|g_{32}-g_{64}|/|g_{64}|`.
    Float64 stands in for exact arithmetic, so a small relative difference means a large norm is the true
    derivative, not rounding. Also returns the mean gradient norm of every evaluation window, to check
    against the run's log that the replay is the same run."""
    if spec.get("evals_per_octave") is not None:
        raise ValueError("replay_gradient_precision replays runs evaluated every eval_every steps")
    task = _Task(spec, data, device)
    model = SequenceModel(spec["variant"], task.input_size, spec["hidden"], task.outputs,
                          max_steps=task.max_steps, init_seed=task.seed).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=spec["lr"])
    every, window_sum, window_means, large = spec["eval_every"], 0.0, [], []
    for step in tqdm(range(until), desc=f"replay {run_key(spec)}", disable=not progress, leave=False,
                     mininterval=2.0):
        model.train()
        xs, ys = task.batch(step)
        loss = task.loss_fn(model(xs), ys)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        g32 = _flat_grad(model)
        if float(g32.norm()) > above:
            exact = copy.deepcopy(model).double()
            exact.zero_grad(set_to_none=True)
            large.append({"step": step + 1, **_precision(g32, _gradient(exact, task.loss_fn, xs, ys))})
        window_sum += float(nn.utils.clip_grad_norm_(model.parameters(), spec["clip"]))
        optimizer.step()
        if (step + 1) % every == 0:
            window_means.append(window_sum / every)
            window_sum = 0.0
    return {"until": until, "above": above, "steps": large, "window_mean_grad_norm": window_means}


@torch.no_grad()
def forward_norms(model: SequenceModel, xs: torch.Tensor) -> dict[str, list[float]]:
    """Mean per-case norms of ``h_t`` (and ``c_t`` for the LSTMs) at every step, in the model's current mode,
    no gradient."""
    state = model.cell.initial_state(xs.shape[1])
    norms: dict[str, list[float]] = {name: [] for name in ("h", "c")[:len(state)]}
    for t in range(xs.shape[0]):
        state = model.cell(xs[t], state, t=t)
        for name, tensor in zip(norms, state):
            norms[name].append(per_case_norm(tensor))
    return norms


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
    spec = {"task": task, "variant": variant, "seed": seed, "cell_code": CELL_CODE}
    spec.update({k: v for k, v in task_params.items() if k != "variants"})
    return spec


def run_key(spec: dict[str, Any]) -> str:
    """The run's name: task, variant and seed, and the hash of the whole spec."""
    return training.run_key(f"{spec['task']}-{spec['variant']}-s{spec['seed']}", spec)


def task_seed(task: str, seed: int) -> int:
    """The seed of a task's weights and data: the same for every variant of that task."""
    return int(hashlib.sha256(f"{NAME}-{task}-seed{seed}".encode()).hexdigest()[:8], 16)


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
            self.horizon: int | None = spec.get("horizon")
            self.valid = self.adding(spec["valid_cases"], length, 1)
            self.final_valid = self.valid
            self.probe = self.adding(spec["norm_cases"], length, 2)
            self.loss_fn = _mse
            self.input_size, self.outputs, self.max_steps = 2, 1, length

    def adding(self, n: int, length: int, stream: int) -> tuple[torch.Tensor, torch.Tensor]:
        """A fixed set of adding sequences; ``stream`` separates the sets (training batches use stream 0)."""
        xs, ys = adding_batch(n, length, np.random.default_rng([self.seed, stream, length]), self.horizon)
        return torch.from_numpy(xs).to(self.device), torch.from_numpy(ys).to(self.device)

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        spec, bs = self.spec, self.spec["batch_size"]
        if spec["task"] != "seqmnist":  # adding_var: one length per batch, drawn from [min_length, length]
            rng = np.random.default_rng([self.seed, 0, step])
            length = int(rng.integers(spec["min_length"], spec["length"] + 1)) if "min_length" in spec else spec["length"]
            xs, ys = adding_batch(bs, length, rng, self.horizon)
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
    """Train one run (or resume it from its last checkpoint, or read it if finished here or committed under
    :data:`training.COMMITTED_RUNS`); returns its log."""
    return training.read_or_train(folder, run_key(spec), spec,
                                  lambda checkpoint: _train(spec, data, checkpoint, device, progress))


def progress_of(params: dict[str, Any], profile: str, seed: int, *, committed_only: bool = False) -> dict[str, Any]:
    """How far a profile's training got (:func:`training.progress`): runs planned and finished, and the
    single-core hours of the finished ones (training plus evaluation, from their logs)."""
    return training.progress(training.run_folder(NAME, profile, seed), specs(params, seed), run_key,
                             lambda log: sum(log["timing"].values()), committed_only=committed_only)


def evaluation_steps(spec: dict[str, Any]) -> list[int]:
    """The steps after which a run is evaluated (and checkpointed): every ``eval_every`` steps and at the last
    step; or, when the spec has ``evals_per_octave`` ``n``, on a geometric grid that starts at ``eval_every``
    and has ``n`` points per doubling of the step count (rounded to whole steps), plus the last step. On the
    geometric grid a step count is known to a fixed *factor*, :math:`2^{1/n}`, at every scale: what a ratio
    of two step counts (a speed-up) needs."""
    budget, first = int(spec["steps"]), int(spec["eval_every"])
    if "evals_per_octave" not in spec:
        return sorted(set(range(first, budget + 1, first)) | {budget})
    per_octave = spec["evals_per_octave"]
    if isinstance(per_octave, bool) or not isinstance(per_octave, int) or per_octave < 1:
        raise ValueError(f"spec['evals_per_octave'] must be a positive int, got {per_octave!r}")
    steps, k = {budget}, 0
    while (at := round(first * 2.0 ** (k / per_octave))) < budget:
        steps.add(at)
        k += 1
    return sorted(steps)


def _train(spec: dict[str, Any], data: mnist.MNIST | None, checkpoint: Path, device: torch.device,
           progress: bool) -> dict[str, Any]:
    key = run_key(spec)
    task = _Task(spec, data, device)
    model = SequenceModel(spec["variant"], task.input_size, spec["hidden"], task.outputs,
                          max_steps=task.max_steps, init_seed=task.seed).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=spec["lr"])
    log: dict[str, Any] = {"spec": spec, **results.run_provenance(device),
                           "source_sha256": SOURCE_SHA256, "step": [],
                           "train_loss": [], "grad_norm": [], "valid": [], "diverged": False,
                           "timing": {"train": 0.0, "evaluation": 0.0}}
    start = 0
    state = training.resume_state(checkpoint, spec, device)
    if state is not None:  # resume: model (with BN statistics), optimizer and log at the last evaluation
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        log, start = state["log"], state["step"]
    elif not spec.get("curve_only", False):
        log["norms_init"] = state_and_gradient_norms(model, *task.probe, task.loss_fn)
        if spec["task"] == "seqmnist":  # the same first batch with raw pixels in [0, 1]: blank rows are zeros
            log["norms_init_raw_pixels"] = state_and_gradient_norms(model, *task.raw_probe, task.loss_fn)
            log["pixel_mean"], log["pixel_std"] = task.pixel_mean, task.pixel_std
    evaluations = set(evaluation_steps(spec))
    stop_below = spec.get("stop_below")
    loss_sum = grad_sum = grad_max = 0.0
    window = 0
    began = time.perf_counter()
    for step in tqdm(range(start, spec["steps"]), desc=key, disable=not progress, leave=False, mininterval=2.0):
        model.train()
        xs, ys = task.batch(step)
        loss = task.loss_fn(model(xs), ys)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = nn.utils.clip_grad_norm_(model.parameters(), spec["clip"])  # the norm before clipping
        optimizer.step()
        norm = float(grad_norm)
        loss_sum += float(loss.detach())
        grad_sum += norm
        grad_max = max(grad_max, norm) if math.isfinite(norm) else math.inf
        window += 1
        if step + 1 not in evaluations:
            continue
        trained = time.perf_counter()
        log["step"].append(step + 1)
        log["train_loss"].append(loss_sum / window)
        log["grad_norm"].append(grad_sum / window)
        # the largest single-step gradient norm of the window; None for windows trained before it was logged
        log.setdefault("grad_norm_max", [None] * (len(log["step"]) - 1)).append(grad_max)
        log["valid"].append(task.metric(model, task.valid))
        loss_sum = grad_sum = grad_max = 0.0
        window = 0
        log["timing"]["train"] += trained - began
        log["timing"]["evaluation"] += time.perf_counter() - trained
        if not all(math.isfinite(v) for v in (log["train_loss"][-1], log["valid"][-1])):
            log["diverged"] = True
            break
        stopped = stop_below is not None and log["valid"][-1] <= stop_below
        if stopped:
            log["stopped_at"] = step + 1
        training.save_checkpoint(checkpoint, spec, {"model": model.state_dict(),
                                                    "optimizer": optimizer.state_dict(), "log": log,
                                                    "step": spec["steps"] if stopped else step + 1})
        if stopped:
            break
        began = time.perf_counter()
    if not log["diverged"] and not spec.get("curve_only", False):
        began = time.perf_counter()
        _final_measurements(model, task, log)
        log["timing"]["evaluation"] += time.perf_counter() - began
    return log


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
            if task in params for variant in params[task]["variants"]]


#: the cost of a time step relative to the LSTM's (see :func:`estimated_cost`)
COST_FACTORS = {"lstm": 1.0, "ln_lstm": 1.5, "bn_lstm": 2.5, "rnn": 0.5, "ln_rnn": 0.8, "gru": 1.0, "ln_gru": 1.8}


def estimated_cost(spec: dict[str, Any]) -> float:
    """Rough single-core seconds of a run's training: about 1.5 ms per time step of a batch of 64 for the
    LSTM, 1.5x that for the LN-LSTM and 2.5x for the BN-LSTM (measured on a busy 2-core machine at the
    ``cpu`` profile's sizes; evaluation adds about 10%). Used to balance workers."""
    length = 28 if spec["task"] == "seqmnist" else (spec["length"] + spec.get("min_length", spec["length"])) / 2
    factor = COST_FACTORS[VARIANTS[spec["variant"]][0]]
    return spec["steps"] * length * 1.5e-3 * factor * spec["batch_size"] / 64


def assign(all_specs: list[dict[str, Any]], workers: int) -> list[list[dict[str, Any]]]:
    """Split runs between workers, most expensive first, each to the least loaded worker (deterministic)."""
    return training.balance(all_specs, workers, estimated_cost, run_key)


# ---------------------------------------------------------------------------------------------------------
# Entry points


def _check_params(params: dict[str, Any]) -> None:
    if not any(task in params for task in TASKS):
        raise ValueError(f"params must have an entry for at least one of the tasks {TASKS}, got keys {sorted(params)}")
    for task in TASKS[1:]:
        if task in params and params[task]["factors"][0] != 1:
            raise ValueError(f"params[{task!r}]['factors'] must start with 1 (the training length), got "
                             f"{params[task]['factors']}")
    for task in TASKS:
        for variant in params.get(task, {}).get("variants", []):
            check_variant(variant)


def run(params: dict[str, Any], *, profile: str, seed: int, device: str, progress: bool = True) -> dict[str, Any]:
    """Train every run of the profile that is not finished yet (resuming interrupted ones), then assemble.
    ``profile`` names the run folder (any name for custom parameters: run keys hash every parameter)."""
    _check_params(params)
    folder = training.run_folder(NAME, profile, seed)
    dev = torch.device(device)
    all_specs = specs(params, seed)
    data = mnist.load() if any(s["task"] == "seqmnist" for s in all_specs) else None
    logs = {run_key(s): train_run(s, data, folder, device=dev, progress=progress) for s in all_specs}
    return {"runs": logs, "trivial_adding_mse": ADDING_TRIVIAL_MSE, "thresholds": THRESHOLDS,
            "training_seconds": float(sum(sum(log["timing"].values()) for log in logs.values()))}


def main(argv: list[str] | None = None) -> None:
    args = training.parse_worker_args("Train this worker's share of the recurrent runs of a profile.", PROFILES,
                                      argv)
    params = PROFILES[args.profile]
    folder = training.run_folder(NAME, args.profile, args.seed)
    # this worker's share, seed by seed, so that an interrupted profile has whole seeds finished
    mine = sorted(assign(specs(params, args.seed), args.workers)[args.worker],
                  key=lambda spec: (spec["seed"], TASKS.index(spec["task"]), run_key(spec)))
    data = mnist.load() if any(s["task"] == "seqmnist" for s in mine) else None
    with training.run_environment(args.device, threads=THREADS) as dev:
        for spec in mine:
            train_run(spec, data, folder, device=dev)
    print(f"worker {args.worker} of {args.workers}: my runs of profile {args.profile} are finished")


if __name__ == "__main__":
    main()
