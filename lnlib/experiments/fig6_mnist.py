r"""Figure 6 of the paper: permutation-invariant MNIST, batch norm vs layer norm vs none (chapter 6).

The paper (§6.6) trains a 784-1000-1000-10 MLP with Adam on 55,000 MNIST cases, at mini-batch sizes 128
and 4, with batch normalization "applied to all layers", layer normalization on the hidden layers only
(not the logits), and no normalization (the baseline); at batch size 4 batch norm uses the unbiased
variance. It plots training negative log-likelihood (log scale) and test error for 60 epochs, and claims
that layer norm is robust to the batch size and converges faster than batch norm (claims H3, H4).

What the paper leaves unstated, and what we chose (each recorded in the result file):

* activation and learning rate: chosen by a validation sweep (``sweep`` runs: 3 epochs at batch size
  128 for every variant, activation and learning rate); the pair with the lowest validation error
  averaged over the three variants is used for every run, at both batch sizes;
* Adam's other settings: PyTorch's defaults (betas 0.9/0.999, eps 1e-8), no weight decay, no dropout;
* initialization: PyTorch's default for ``nn.Linear``; normalization gains 1, biases 0 (§6);
* batch norm's test-time statistics: *population* statistics, recomputed after every epoch as the
  average over the whole training set (batches of 1,000 in training mode, no gradient), not a running
  average; the unbiased variance is used for normalizing at batch sizes below 16;
* "training NLL": the mean NLL over the 55,000 training cases at the end of each epoch, in evaluation
  mode (batch norm with population statistics).

Runs are independent units (variant x batch size x learning rate x activation x epochs), each with a
checkpoint after every epoch in its run folder (:mod:`lnlib.experiments.training`: keys that hash the
whole spec, checked checkpoints, one trainer per run), so an interrupted run resumes where it stopped with
bit-identical results (single thread, deterministic algorithms, a shuffling order that depends only on the
seed and the epoch). ``python -m
lnlib.experiments.fig6_mnist --profile cpu --worker 0 --workers 2`` (and ``--worker 1``) start two
processes that take the unfinished units from one queue in priority order (:func:`next_runs`), so two
cores train two networks at once; :func:`run` then only assembles the finished units (``--assemble``:
from the units finished so far, saying which are missing).
"""

from __future__ import annotations

import hashlib
import sys
import time
from pathlib import Path
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from .. import results
from .. import torch as lnt
from ..data import mnist
from . import training

NAME = "fig6_mnist"
VARIANTS = ("baseline", "batchnorm", "layernorm")  # the paper's three curves (and the sweep's variants)
#: controls a referee asks for (issue 14), trained in the main stage only: batch norm on the hidden layers
#: only, the placement layer norm has (the paper's BN is "applied to all layers", the logits included)
CONTROLS = ("batchnorm_hidden",)
THREADS = 1  # one torch thread per process: the runs are small, and two workers use the two cores
ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh}

PROFILES: dict[str, dict[str, Any]] = {
    "smoke": {"hidden": 64, "train_cases": 2000, "eval_cases": 1000, "sweep_lrs": [1e-3],
              "sweep_activations": ["relu"], "sweep_epochs": 1, "main_batch_sizes": {"128": 2, "4": 1},
              "small_batch_lrs": [3e-4],
              "seeds": 1, "sweep_batch_sizes": [1, 4, 128], "batch_sweep_epochs": 1, "timing_steps": 20},
    "cpu": {"hidden": 1000, "train_cases": 55_000, "eval_cases": 10_000, "sweep_lrs": [3e-4, 1e-3, 3e-3],
            "sweep_activations": ["relu", "tanh"], "sweep_epochs": 3, "main_batch_sizes": {"128": 60, "4": 15},
            "small_batch_lrs": [1e-4, 3e-4, 1e-3],
            "seeds": 3, "sweep_batch_sizes": [1, 2, 4, 8, 32, 128, 256], "batch_sweep_epochs": 2,
            "timing_steps": 300},
    "paper": {"hidden": 1000, "train_cases": 55_000, "eval_cases": 10_000, "sweep_lrs": [3e-4, 1e-3, 3e-3],
              "sweep_activations": ["relu", "tanh"], "sweep_epochs": 3, "main_batch_sizes": {"128": 60, "4": 60},
              "small_batch_lrs": [1e-4, 3e-4, 1e-3], "seeds": 3, "sweep_batch_sizes": [1, 2, 4, 8, 32, 128, 256],
              "batch_sweep_epochs": 10, "timing_steps": 1000},
}
UNBIASED_BELOW = 16  # batch sizes below this normalize batch norm with the unbiased variance (paper: bs 4)


# ---------------------------------------------------------------------------------------------------------
# The model


def make_mlp(variant: str, activation: str, hidden: int) -> nn.Sequential:
    """784-hidden-hidden-10 with ``variant``'s normalization after every (BN) or every hidden (LN) Linear."""
    if variant not in VARIANTS + CONTROLS:
        raise ValueError(f"variant must be one of {VARIANTS + CONTROLS}, got {variant!r}")
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {tuple(ACTIVATIONS)}, got {activation!r}")
    sizes = [784, hidden, hidden, 10]
    layers: list[nn.Module] = []
    for i in range(3):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if variant == "batchnorm" or (variant == "batchnorm_hidden" and i < 2):
            # running statistics are frozen while training: population_statistics() recomputes them
            layers.append(lnt.BatchNorm(sizes[i + 1], momentum=0.0))
        elif variant == "layernorm" and i < 2:
            layers.append(lnt.LayerNorm(sizes[i + 1]))
        if i < 2:
            layers.append(ACTIVATIONS[activation]())
    return nn.Sequential(*layers)


def set_batch_norm_ddof(model: nn.Module, batch_size: int) -> None:
    for module in model.modules():
        if isinstance(module, lnt.BatchNorm):
            module.ddof = 1 if batch_size < UNBIASED_BELOW else 0


@torch.no_grad()
def population_statistics(model: nn.Module, images: torch.Tensor, batch: int = 1000) -> None:
    """Replace every BatchNorm's running statistics by their average over ``images`` (population stats)."""
    norms = [m for m in model.modules() if isinstance(m, lnt.BatchNorm)]
    if not norms:
        return
    saved = [(m.momentum, m.ddof) for m in norms]  # momentum None: a cumulative average
    for m in norms:
        m.momentum, m.ddof = None, 0
        m.running_mean.zero_()
        m.running_var.fill_(1.0)
        m.num_batches_tracked.zero_()
    model.train()
    for start in range(0, images.shape[0], batch):
        model(images[start:start + batch])
    for m, (momentum, ddof) in zip(norms, saved):
        m.momentum, m.ddof = momentum, ddof


@torch.no_grad()
def training_mode_nll(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int) -> float:
    """Mean NLL over ``images`` in training mode, in consecutive batches of ``batch_size`` (a batch-norm
    network normalizes each with its own statistics, as during training; the running statistics are not
    touched: they are frozen, momentum 0). The cases of an incomplete last batch are left out, as in
    training."""
    model.train()
    n = images.shape[0] // batch_size * batch_size
    total = 0.0
    for start in range(0, n, batch_size):
        logits = model(images[start:start + batch_size])
        total += float(nn.functional.cross_entropy(logits, labels[start:start + batch_size], reduction="sum"))
    return total / n


@torch.no_grad()
def evaluate(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch: int = 2000) -> tuple[float, float]:
    """``(mean NLL, error rate)`` in evaluation mode."""
    model.eval()
    nll, wrong = 0.0, 0
    for start in range(0, images.shape[0], batch):
        logits = model(images[start:start + batch])
        target = labels[start:start + batch]
        nll += float(nn.functional.cross_entropy(logits, target, reduction="sum"))
        wrong += int((logits.argmax(dim=1) != target).sum())
    return nll / images.shape[0], wrong / images.shape[0]


# ---------------------------------------------------------------------------------------------------------
# Runs: one network trained from scratch, checkpointed every epoch


def _label(spec: dict[str, Any]) -> str:
    return (f"{spec['kind']}-{spec['variant']}-bs{spec['batch_size']}-{spec['activation']}-lr{spec['lr']:g}"
            f"-e{spec['epochs']}-s{spec['seed']}")


def run_key(spec: dict[str, Any]) -> str:
    """The run's name: a readable label and the hash of the whole spec (hidden size, data sizes included)."""
    return training.run_key(_label(spec), spec)


def run_seed(spec: dict[str, Any]) -> int:
    """The seed of a run's weights and shuffling, derived from its label (the committed runs used this)."""
    return int(hashlib.sha256(_label(spec).encode()).hexdigest()[:8], 16)


def train_run(spec: dict[str, Any], data: mnist.MNIST, folder: Path, *, device: torch.device = torch.device("cpu"),
              progress: bool = True, clean_images: np.ndarray | None = None) -> dict[str, Any]:
    """Train one network (or resume it from its last checkpoint, or read it if finished here or committed
    under :data:`training.COMMITTED_RUNS`); returns its log.

    ``clean_images`` (the training images before a corruption, :mod:`.outliers`): after the last epoch a
    batch-normalized network's population statistics are recomputed on them and its errors measured again,
    as ``log["clean_statistics"]``: what the network learned, apart from statistics the corruption shifted."""
    return training.read_or_train(folder, run_key(spec), spec,
                                  lambda checkpoint: _train(spec, data, checkpoint, device, progress, clean_images))


def _train(spec: dict[str, Any], data: mnist.MNIST, checkpoint: Path, device: torch.device,
           progress: bool, clean_images: np.ndarray | None = None) -> dict[str, Any]:
    key = run_key(spec)
    torch.manual_seed(run_seed(spec))
    model = make_mlp(spec["variant"], spec["activation"], spec["hidden"]).to(device)
    set_batch_norm_ddof(model, spec["batch_size"])
    optimizer = torch.optim.Adam(model.parameters(), lr=spec["lr"], fused=True)
    train_x, train_y, valid, test = _tensors(data, spec, device)
    log: dict[str, Any] = {"spec": spec, **results.run_provenance(device), "epoch": [],
                           "train_nll": [], "valid_error": [], "test_error": [], "test_nll": [], "train_seconds": [],
                           "epoch_seconds": [], "diverged": False}
    start_epoch = 0
    state = training.resume_state(checkpoint, spec, device)
    if state is not None:  # resume: model, optimizer and log of the last finished epoch
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        log, start_epoch = state["log"], state["epoch"]
    bs, n = spec["batch_size"], train_x.shape[0]
    steps = n // bs
    has_batch_norm = any(isinstance(m, lnt.BatchNorm) for m in model.modules())
    for epoch in range(start_epoch, spec["epochs"]):
        began = time.perf_counter()
        order = torch.randperm(n, generator=torch.Generator().manual_seed(run_seed(spec) + epoch))
        batches = order[: steps * bs].view(steps, bs).to(device)
        train_steps(model, optimizer, train_x, train_y, batches, desc=f"{key} epoch {epoch + 1}", progress=progress)
        trained = time.perf_counter() - began
        if has_batch_norm:  # what the optimizer saw: batch statistics of the run's own batch size
            log.setdefault("train_nll_batch_statistics", []).append(
                training_mode_nll(model, train_x, train_y, bs))
        population_statistics(model, train_x)
        train_nll, _ = evaluate(model, train_x, train_y)
        _, valid_error = evaluate(model, *valid)
        test_nll, test_error = evaluate(model, *test)
        log["epoch"].append(epoch + 1)
        log["train_nll"].append(train_nll)
        log["valid_error"].append(valid_error)
        log["test_error"].append(test_error)
        log["test_nll"].append(test_nll)
        log["train_seconds"].append(trained)
        log["epoch_seconds"].append(time.perf_counter() - began)
        if not training.end_of_epoch(checkpoint, spec, model, optimizer, log, epoch + 1, train_nll):
            break
    if spec.get("online_check"):
        log["online"] = online_inference(model, test)
    if clean_images is not None and has_batch_norm and not log["diverged"]:
        clean_x = torch.from_numpy(clean_images[:n]).to(device)
        population_statistics(model, clean_x)
        test_nll, test_error = evaluate(model, *test)
        log["clean_statistics"] = {"epoch": log["epoch"][-1], "train_nll": evaluate(model, clean_x, train_y)[0],
                                   "test_error": test_error, "test_nll": test_nll}
    return log


def train_steps(model: nn.Module, optimizer: torch.optim.Optimizer, images: torch.Tensor, labels: torch.Tensor,
                batches: torch.Tensor, *, desc: str = "", progress: bool = False) -> None:
    """One training step per row of ``batches`` (case indices into the preloaded ``images``/``labels``): the
    loop every Figure 6 run trains with, and the one :func:`loop_overhead` times."""
    model.train()
    for idx in tqdm(batches, desc=desc, disable=not progress, leave=False, mininterval=2.0):
        loss = nn.functional.cross_entropy(model(images[idx]), labels[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


def textbook_steps(model: nn.Module, optimizer: torch.optim.Optimizer, loader: torch.utils.data.DataLoader,
                   steps: int) -> None:
    """``steps`` training steps written the way a PyTorch tutorial writes them: a ``DataLoader`` over a
    ``TensorDataset``, ``zero_grad``, forward, ``backward``, ``step``."""
    model.train()
    for step, (x, y) in enumerate(loader):
        if step == steps:
            break
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()


def loop_overhead(variant: str, batch_size: int, steps: int, repeats: int, data: mnist.MNIST) -> dict[str, Any]:
    """Seconds per step of :func:`train_steps` (with the runs' fused Adam) and of :func:`textbook_steps`
    (``torch.optim.Adam`` with its defaults), on the full-size MLP, in the same process and thread count (one),
    alternating ``repeats`` times; the medians and their ratio (ours / textbook)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    try:
        images, labels = torch.from_numpy(data.train.images), torch.from_numpy(data.train.labels)
        loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(images, labels), batch_size=batch_size,
                                             shuffle=True, drop_last=True,
                                             generator=torch.Generator().manual_seed(0))
        order = torch.randperm(images.shape[0], generator=torch.Generator().manual_seed(0))
        batches = order[: steps * batch_size].view(steps, batch_size)
        times: dict[str, list[float]] = {"lnlib": [], "textbook": []}
        for _ in range(repeats):
            for loop in ("lnlib", "textbook"):
                torch.manual_seed(0)
                model = make_mlp(variant, "relu", 1000)
                set_batch_norm_ddof(model, batch_size)
                if loop == "lnlib":
                    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
                    train_steps(model, optimizer, images, labels, batches[:5])  # warm-up, not timed
                    began = time.perf_counter()
                    train_steps(model, optimizer, images, labels, batches)
                else:
                    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
                    textbook_steps(model, optimizer, loader, 5)
                    began = time.perf_counter()
                    textbook_steps(model, optimizer, loader, steps)
                times[loop].append((time.perf_counter() - began) / steps)
    finally:
        torch.set_num_threads(previous)
    ours, textbook = float(np.median(times["lnlib"])), float(np.median(times["textbook"]))
    return {"lnlib_seconds_per_step": ours, "textbook_seconds_per_step": textbook, "ratio": ours / textbook,
            "repeats": repeats, "steps": steps, "all_seconds_per_step": times}


def _tensors(data: mnist.MNIST, spec: dict[str, Any], device: torch.device):
    """The profile's slices of MNIST as tensors on ``device``, loaded once (no per-step host work)."""
    cases, evals = spec["train_cases"], spec["eval_cases"]

    def put(array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(array).to(device)

    valid = (put(data.valid.images[:evals]), put(data.valid.labels[:evals]))
    test = (put(data.test.images[:evals]), put(data.test.labels[:evals]))
    return put(data.train.images[:cases]), put(data.train.labels[:cases]), valid, test


@torch.no_grad()
def online_inference(model: nn.Module, test: tuple[torch.Tensor, torch.Tensor], cases: int = 1000) -> dict[str, Any]:
    """Evaluate ``cases`` test images one at a time (batch size 1) and in one batch, in evaluation mode;
    for models with batch norm, also try training mode (batch statistics) at batch size 1."""
    model.eval()
    images = test[0][:cases]
    batched = model(images)
    single = torch.cat([model(images[i:i + 1]) for i in range(images.shape[0])])
    out = {"cases": int(images.shape[0]), "max_logit_difference": float((single - batched).abs().max()),
           "same_predictions": bool((single.argmax(1) == batched.argmax(1)).all())}
    if any(isinstance(m, lnt.BatchNorm) for m in model.modules()):
        model.train()
        try:
            model(images[:1])
            out["train_mode_batch_of_one"] = "ran"
        except ValueError as err:
            out["train_mode_batch_of_one"] = f"ValueError: {err}"
        model.eval()
    return out


# ---------------------------------------------------------------------------------------------------------
# The plan: every run of a profile, in the order they depend on each other


def sweep_specs(params: dict[str, Any], seed: int) -> list[dict[str, Any]]:
    return [_spec("sweep", v, 128, a, lr, params["sweep_epochs"], seed, params)
            for v in VARIANTS for a in params["sweep_activations"] for lr in params["sweep_lrs"]]


def choose(sweep: list[dict[str, Any]], params: dict[str, Any]) -> dict[str, Any]:
    """The (activation, learning rate) with the lowest validation error averaged over the variants."""
    scores = {}
    for a in params["sweep_activations"]:
        for lr in params["sweep_lrs"]:
            errors = [r["valid_error"][-1] if r["valid_error"] and not r["diverged"] else 1.0
                      for r in sweep if r["spec"]["activation"] == a and r["spec"]["lr"] == lr]
            scores[(a, lr)] = float(np.mean(errors))
    (activation, lr), score = min(scores.items(), key=lambda item: (item[1], item[0][1]))
    return {"activation": activation, "lr": lr, "mean_valid_error": score,
            "table": [{"activation": a, "lr": l, "mean_valid_error": s} for (a, l), s in scores.items()]}


def main_specs(params: dict[str, Any], seed: int, chosen: dict[str, Any]) -> list[dict[str, Any]]:
    specs = []
    for s in range(params["seeds"]):
        for bs, epochs in params["main_batch_sizes"].items():
            for v in VARIANTS + CONTROLS:
                spec = _spec("main", v, int(bs), chosen["activation"], chosen["lr"], epochs, seed + s, params)
                spec["online_check"] = v != "baseline" and s == 0
                specs.append(spec)
    return specs


def small_batch_lr_specs(params: dict[str, Any], seed: int, chosen: dict[str, Any]) -> list[dict[str, Any]]:
    """Control (issue 14): the learning rate was chosen at batch size 128 and reused at the small batch size.
    Here every paper variant is also trained at the smallest main batch size, for as many epochs and seeds as
    the main runs, at each rate of ``small_batch_lrs`` other than the chosen one, so that each can be judged
    at its own best rate for that batch size (:func:`lnlib.claims.best_small_batch_rate`)."""
    bs = min(int(b) for b in params["main_batch_sizes"])
    epochs = params["main_batch_sizes"][str(bs)]
    return [_spec("lr_small", v, bs, chosen["activation"], lr, epochs, seed + s, params)
            for s in range(params["seeds"]) for v in VARIANTS
            for lr in params.get("small_batch_lrs", []) if lr != chosen["lr"]]


def batch_sweep_specs(params: dict[str, Any], seed: int, chosen: dict[str, Any]) -> list[dict[str, Any]]:
    """Batch norm and layer norm at every batch size of ``sweep_batch_sizes``, for ``seeds`` seeds (the main
    runs' seeds), each for ``batch_sweep_epochs`` epochs at the chosen activation and rate."""
    return [_spec("bsweep", v, bs, chosen["activation"], chosen["lr"], params["batch_sweep_epochs"], seed + s,
                  params)
            for s in range(params["seeds"]) for v in ("batchnorm", "layernorm") for bs in params["sweep_batch_sizes"]
            if not (v == "batchnorm" and bs == 1)]  # batch norm cannot train on one case per batch


def _spec(kind: str, variant: str, batch_size: int, activation: str, lr: float, epochs: int, seed: int,
          params: dict[str, Any]) -> dict[str, Any]:
    return {"kind": kind, "variant": variant, "batch_size": batch_size, "activation": activation, "lr": lr,
            "epochs": epochs, "seed": seed, "hidden": params["hidden"], "train_cases": params["train_cases"],
            "eval_cases": params["eval_cases"]}


def plan(params: dict[str, Any], seed: int, folder: Path) -> list[list[dict[str, Any]]]:
    """Stages of runs; a stage can start when the previous one is finished (the sweep decides the rest)."""
    sweep = sweep_specs(params, seed)
    stages = [sweep]
    logs = [training.committed_log(folder, run_key(s), s) or training.finished_log(folder, run_key(s), s)
            for s in sweep]
    if all(log is not None for log in logs):
        chosen = choose(logs, params)  # type: ignore[arg-type]  # none is None here
        stages.append(main_specs(params, seed, chosen) + batch_sweep_specs(params, seed, chosen)
                      + small_batch_lr_specs(params, seed, chosen))
    return stages


def progress_of(params: dict[str, Any], profile: str, seed: int, *, committed_only: bool = False) -> dict[str, Any]:
    """How far a profile's training got (:func:`training.progress`): runs planned (the sweep, and the main
    stage once the sweep has decided it: ``"stages"`` says how many are planned so far) and finished, and
    the single-core hours of the finished ones (from their logs); ``"by_kind"``: (finished, planned) per
    kind of run (``sweep``, ``main``, ``bsweep``, ``lr_small``)."""
    folder = training.run_folder(NAME, profile, seed)
    stages = plan(params, seed, folder)
    specs = [s for stage in stages for s in stage]
    by_kind = {}
    for kind in dict.fromkeys(s["kind"] for s in specs):
        part = training.progress(folder, [s for s in specs if s["kind"] == kind], run_key,
                                 training.run_seconds, committed_only=committed_only)
        by_kind[kind] = (part["finished"], part["planned"])
    done = training.progress(folder, specs, run_key, training.run_seconds,
                             committed_only=committed_only)
    return dict(done, stages=len(stages), by_kind=by_kind)


# ---------------------------------------------------------------------------------------------------------
# Timing: the batch-size-4 epoch, before and after the speed work


def time_steps(variant: str, batch_size: int, mode: str, steps: int, data: mnist.MNIST) -> float:
    """Seconds per training step of the full-size MLP, ``mode`` "naive" or "fast" (see the chapter)."""
    torch.manual_seed(0)
    model = make_mlp(variant, "relu", 1000)
    set_batch_norm_ddof(model, batch_size)
    rng = np.random.default_rng(0)
    if mode == "naive":  # a textbook loop: host-side batching, default threads, per-step .item()
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, foreach=False)
        threads = torch.get_num_threads()
    else:  # preloaded tensors, device-side indexing, fused Adam, one thread, no per-step synchronization
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
        threads = 1
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        images, labels = torch.from_numpy(data.train.images), torch.from_numpy(data.train.labels)
        order = torch.randperm(images.shape[0], generator=torch.Generator().manual_seed(0))
        total = torch.zeros(())
        start = 0.0
        for step in range(steps + 10):
            if step == 10:  # ten warm-up steps are not timed
                start = time.perf_counter()
            if mode == "naive":
                idx = rng.integers(0, images.shape[0], batch_size)
                x, y = torch.tensor(data.train.images[idx]), torch.tensor(data.train.labels[idx])
            else:
                idx = order[step * batch_size:(step + 1) * batch_size]
                x, y = images[idx], labels[idx]
            loss = nn.functional.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total = total + (loss.item() if mode == "naive" else loss.detach())
        return (time.perf_counter() - start) / steps
    finally:
        torch.set_num_threads(previous)


def timing(params: dict[str, Any], data: mnist.MNIST) -> dict[str, Any]:
    out = {}
    for bs in (4, 128):
        for variant in VARIANTS:
            for mode in ("naive", "fast"):
                seconds = time_steps(variant, bs, mode, params["timing_steps"], data)
                out[f"{variant}-bs{bs}-{mode}"] = {"seconds_per_step": seconds,
                                                   "seconds_per_epoch": seconds * (55_000 // bs)}
    # the training loop the runs use against a tutorial's loop, same process, same single thread
    out["loop_overhead"] = {f"{variant}-bs{bs}": loop_overhead(variant, bs, params["timing_steps"], 3, data)
                            for bs in (4, 128) for variant in VARIANTS}
    return out


# ---------------------------------------------------------------------------------------------------------
# Entry points


def run(params: dict[str, Any], *, profile: str, seed: int, device: str, progress: bool = True,
        train: bool = True) -> dict[str, Any]:
    """Train every run of the profile that is not finished yet, then assemble the result.

    Runs finished earlier (by this function or by ``python -m lnlib.experiments.fig6_mnist`` workers) are
    read from their files, so calling this after the workers only assembles and times. ``profile`` names
    the run folder (any name for custom parameters: the run keys hash every parameter anyway).

    ``train=False`` trains nothing: the result holds the runs finished so far (the learning-rate sweep must
    be), ``"complete"`` says whether that is every planned run, and ``"missing"`` names the others, so a
    profile trained over several sittings can be shown as far as it got and never as more.
    """
    folder = training.run_folder(NAME, profile, seed)
    dev = torch.device(device)
    data = mnist.load()
    began = time.perf_counter()
    while train:
        stages = plan(params, seed, folder)
        for spec in stages[-1]:
            train_run(spec, data, folder, device=dev, progress=progress)
        if len(stages) == 2:
            break
    stages = plan(params, seed, folder)
    if len(stages) < 2:
        raise ValueError(f"train=False needs the finished learning-rate sweep of profile {profile!r} in {folder}; "
                         f"it has {progress_of(params, profile, seed)['finished']} finished runs")
    every = [s for stage in stages for s in stage]
    if train:
        logs, missing = {run_key(s): train_run(s, data, folder, device=dev, progress=progress) for s in every}, []
    else:
        logs, missing = training.finished_runs(folder, every, run_key, _label)
    chosen = choose([logs[run_key(s)] for s in sweep_specs(params, seed)], params)
    return {"chosen": chosen, "runs": logs, "complete": not missing, "missing": missing,
            "timing": timing(params, data), "assembly_seconds": time.perf_counter() - began,
            "training_seconds": sum(map(training.run_seconds, logs.values()))}


def next_runs(specs: list[dict[str, Any]], folder: Path) -> Iterator[dict[str, Any]]:
    """The unfinished runs of a stage in :func:`in_priority_order`, from the queue the workers share
    (:func:`training.pending`): when a profile is trained over several sittings, the runs finished first are
    the first in priority, whatever the count of workers."""
    return training.pending(in_priority_order(specs), folder, run_key)


def in_priority_order(specs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A worker's share in the order that gives judged comparisons soonest when a profile is trained over
    several sittings: the learning-rate sweep, then the main runs by batch size (largest first, the cheap
    epochs), seed by seed, the paper's variants before the controls, then the batch-size sweep, then the
    small-batch learning rates."""
    kinds = {"sweep": 0, "main": 1, "bsweep": 2, "lr_small": 3}
    return sorted(specs, key=lambda s: (kinds[s["kind"]], -s["batch_size"] if s["kind"] == "main" else 0,
                                        s["seed"], s["variant"] in CONTROLS, run_key(s)))


def main(argv: list[str] | None = None) -> None:
    args = training.parse_worker_args(
        "Train this worker's share of the Figure 6 runs of a profile.", PROFILES, argv,
        assemble="train nothing: write the profile's result file from the runs finished so far (it records "
                 "which planned runs are missing), timing the training loop with nothing else running")
    if args.assemble:
        training.assemble_command(NAME, sys.modules[__name__], args)
        return
    params = PROFILES[args.profile]
    folder = training.run_folder(NAME, args.profile, args.seed)
    data = mnist.load()
    with training.run_environment(args.device, threads=THREADS) as dev:
        while True:  # the sweep stage must finish (on every worker) before the main stage can be planned
            stages = plan(params, args.seed, folder)
            for spec in next_runs(stages[-1], folder):
                train_run(spec, data, folder, device=dev)
            if len(stages) == 2:
                break
            if len(plan(params, args.seed, folder)) == 1:
                print(f"worker {args.worker} of {args.workers}: my sweep runs are finished; waiting for the other "
                      f"workers' sweep runs in {folder} (the main runs are planned from all of them)", flush=True)
            while len(plan(params, args.seed, folder)) == 1:
                time.sleep(10)
    print(f"worker {args.worker} of {args.workers}: my runs of profile {args.profile} are finished")


if __name__ == "__main__":
    main()
