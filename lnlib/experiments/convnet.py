r"""Convolutional networks (§6.7, claim H14): no normalization, batch norm, layer norm and group norm on MNIST.

The paper reports only "preliminary experiments": in convolutional networks layer normalization "offers a
speedup over the baseline model without normalization, but batch normalization outperforms the other
methods". It gives no data set, architecture or numbers, and an explanation: in a fully connected layer
all hidden units contribute similarly, while in a convolutional layer "the large number of the hidden units
whose receptive fields lie near the boundary of the image are rarely turned on and thus have very different
statistics from the rest of the hidden units within the same layer". Layer norm pools all of them into one
mean and one variance.

**The network (ours; the paper gives none).** Two 3x3 convolutions with padding 1 (``channels`` filters
each), each followed by the normalization, a ReLU and 2x2 max pooling, then one linear layer to the 10
logits: 28x28 -> 14x14 -> 7x7. The normalization variants, each on both convolutional layers, with a
per-channel gain (1) and bias (0) as convolutional batch norm has:

* ``none``: no normalization;
* ``batchnorm``: statistics per channel over the batch and both spatial axes, ``axis=(0, 2, 3)``
  (population statistics at test time, recomputed after every epoch as in :mod:`.fig6_mnist`);
* ``layernorm_chw``: statistics per case over *all* hidden units of the layer, ``axis=(1, 2, 3)``: the
  paper's layer norm applied to a convolutional layer, the one H14 is about;
* ``layernorm_c``: statistics per case and *position* over the channels, ``axis=1`` (what a transformer
  does per token): no pooling across the border and the centre;
* ``groupnorm``: statistics per case over groups of :data:`GROUPS` channels and both spatial axes
  (Wu & He 2018), between the two layer norms.

Adam with PyTorch's defaults at the profile's learning rate, no weight decay, no augmentation; the 55,000 /
5,000 / 10,000 split of :mod:`lnlib.data.mnist`. Every run is checkpointed after each epoch, resumable and
deterministic (one thread), like the Figure 6 runs; workers share one queue (``python -m
lnlib.experiments.convnet --profile cpu --worker 0 --workers 2``, and worker 1).

**The paper's explanation, measured** (:func:`unit_statistics`): for every hidden unit :math:`(c, h, w)` of
both convolutional layers of a trained network, over the test set, the mean and the variance of its summed
input (the convolution's output, before the normalization) and the fraction of cases in which it is on
(positive after the ReLU). A unit is at the *border* when its position lies in the outer ring of
:data:`BORDER_PIXELS` input pixels (4 of 28, where MNIST has no ink: its digits are centred in a 20x20 box;
2 of 14 in the second layer), in the *centre* otherwise.
"""

from __future__ import annotations

import sys
import hashlib
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from .. import results
from .. import torch as lnt
from ..data import mnist
from . import training
from .fig6_mnist import evaluate, population_statistics

NAME = "convnet"
VARIANTS = ("none", "batchnorm", "layernorm_chw", "layernorm_c", "groupnorm")
GROUPS = 4  # channels per group of the group-norm variant (channels / GROUPS groups)
BORDER_PIXELS = 4  # the ring of the 28x28 input without ink; each pooling halves it
THREADS = 1

PROFILES: dict[str, dict[str, Any]] = {
    "smoke": {"channels": 8, "train_cases": 2000, "eval_cases": 1000, "epochs": 2, "batch_size": 64,
              "lr": 1e-3, "seeds": 1, "statistics_cases": 500},
    "cpu": {"channels": 16, "train_cases": 55_000, "eval_cases": 10_000, "epochs": 6, "batch_size": 64,
            "lr": 1e-3, "seeds": 5, "statistics_cases": 10_000},
    "paper": {"channels": 32, "train_cases": 55_000, "eval_cases": 10_000, "epochs": 30, "batch_size": 64,
              "lr": 1e-3, "seeds": 5, "statistics_cases": 10_000},
}


# ---------------------------------------------------------------------------------------------------------
# The model


def normalization(variant: str, channels: int, channels_per_group: int = GROUPS) -> nn.Module:
    """The normalization of ``variant`` for an NCHW feature map with ``channels`` channels (group norm: groups of
    ``channels_per_group`` channels)."""
    if variant == "none":
        return nn.Identity()
    if variant == "batchnorm":  # running statistics frozen: population_statistics() recomputes them
        return lnt.BatchNorm(channels, axis=(0, 2, 3), momentum=0.0)
    if variant == "layernorm_chw":
        return lnt.LayerNorm((channels, 1, 1), axis=(1, 2, 3))
    if variant == "layernorm_c":
        return lnt.LayerNorm((channels, 1, 1), axis=1)
    if variant == "groupnorm":
        return lnt.GroupNorm((channels, 1, 1), channels // channels_per_group, axis=(1, 2, 3))
    raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")


def make_cnn(variant: str, channels: int, channels_per_group: int = GROUPS) -> nn.Sequential:
    """conv3x3 -> norm -> ReLU -> pool, twice, then linear: (N, 784) pixels in, (N, 10) logits out."""
    if isinstance(channels_per_group, bool) or not isinstance(channels_per_group, int) or channels_per_group < 1:
        raise ValueError(f"channels_per_group must be a positive int, got {channels_per_group!r}")
    if isinstance(channels, bool) or not isinstance(channels, int) or channels < channels_per_group \
            or channels % channels_per_group:
        raise ValueError(f"channels must be a positive multiple of {channels_per_group} (channels_per_group), "
                         f"got {channels!r}")
    layers: list[nn.Module] = [nn.Unflatten(1, (1, 28, 28))]
    for inputs in (1, channels):
        layers += [nn.Conv2d(inputs, channels, 3, padding=1), normalization(variant, channels, channels_per_group),
                   nn.ReLU(),
                   nn.MaxPool2d(2)]
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(channels * 7 * 7, 10))


def border_mask(size: int) -> np.ndarray:
    """``(size, size)`` booleans: the positions of a ``size``x``size`` map (28 or 14) in the border ring."""
    if size not in (28, 14):
        raise ValueError(f"size must be 28 or 14 (the two feature-map sizes), got {size!r}")
    ring = BORDER_PIXELS * size // 28
    mask = np.ones((size, size), dtype=bool)
    mask[ring:size - ring, ring:size - ring] = False
    return mask


@torch.no_grad()
def unit_statistics(model: nn.Sequential, images: torch.Tensor, batch: int = 1000) -> dict[str, Any]:
    """Per-unit statistics of both convolutional layers over ``images``, in evaluation mode: for each layer,
    ``(H, W)`` maps (averaged over the channels) and border/centre summaries of the summed input's mean and
    variance (the convolution's output) and of the fraction of cases in which the unit is on after the ReLU.

    The summaries: the median over the units of a region of each unit's statistic; for the variance also
    the median of the units' *log10* variance, since border units of the first layer see only padding and
    background and are constant (variance 0: their log is clipped at -12)."""
    convs = [m for m in model if isinstance(m, nn.Conv2d)]
    relus = [m for m in model if isinstance(m, nn.ReLU)]
    sums: dict[str, list[torch.Tensor]] = {}

    def keep(name: str):
        def hook(_module: nn.Module, _inputs: Any, output: torch.Tensor) -> None:
            x = output.double()
            sums.setdefault(name, []).append(torch.stack([x.sum(0), (x * x).sum(0), (x > 0).double().sum(0)]))
        return hook

    handles = [m.register_forward_hook(keep(f"conv{i}")) for i, m in enumerate(convs)]
    handles += [m.register_forward_hook(keep(f"relu{i}")) for i, m in enumerate(relus)]
    model.eval()
    try:
        for start in range(0, images.shape[0], batch):
            model(images[start:start + batch])
    finally:
        for handle in handles:
            handle.remove()
    n = images.shape[0]
    out = {}
    for i in range(len(convs)):
        total, squares, _ = sum(sums[f"conv{i}"]).unbind(0)  # (C, H, W) each
        active = sum(sums[f"relu{i}"])[2] / n
        mean = total / n
        var = (squares / n - mean ** 2).clamp_min(0.0)
        log_var = torch.log10(var.clamp_min(1e-12))
        mask = torch.from_numpy(border_mask(mean.shape[-1]))
        layer: dict[str, Any] = {"size": int(mean.shape[-1]), "border_units": int(mask.sum()) * int(mean.shape[0]),
                                 "units": int(mean.numel())}
        for name, value in (("mean", mean), ("variance", var), ("log10_variance", log_var), ("active", active)):
            layer[f"{name}_map"] = value.mean(0).tolist()
            for region, where in (("border", mask), ("centre", ~mask)):
                layer[f"{name}_{region}"] = float(value[:, where].median())
        out[f"layer{i + 1}"] = layer
    return out


# ---------------------------------------------------------------------------------------------------------
# Runs


def _label(spec: dict[str, Any]) -> str:
    return f"{spec['variant']}-c{spec['channels']}-bs{spec['batch_size']}-lr{spec['lr']:g}-e{spec['epochs']}-s{spec['seed']}"


def run_key(spec: dict[str, Any]) -> str:
    return training.run_key(_label(spec), spec)


def run_seed(spec: dict[str, Any]) -> int:
    """The seed of a run's weights and batch order: from its variant-free label, so that every variant of a
    seed starts from the same convolution and output weights and sees the same batches (paired runs)."""
    label = _label(dict(spec, variant="any"))
    return int(hashlib.sha256(label.encode()).hexdigest()[:8], 16)


def specs(params: dict[str, Any], seed: int) -> list[dict[str, Any]]:
    """Every run of a profile, seed by seed (an interrupted profile has whole seeds finished first). A group-norm
    run's spec records :data:`GROUPS`, so that a run with another group size has another key and is trained,
    not read from a finished run."""
    return [{"variant": v, "channels": params["channels"], "batch_size": params["batch_size"], "lr": params["lr"],
             "epochs": params["epochs"], "seed": seed + s, "train_cases": params["train_cases"],
             "eval_cases": params["eval_cases"], "statistics_cases": params["statistics_cases"],
             **({"channels_per_group": GROUPS} if v == "groupnorm" else {})}
            for s in range(params["seeds"]) for v in VARIANTS]


def train_run(spec: dict[str, Any], data: mnist.MNIST, folder: Path, *, device: torch.device = torch.device("cpu"),
              progress: bool = True) -> dict[str, Any]:
    """Train one network (or resume it, or read its finished or committed log); returns its log."""
    return training.read_or_train(folder, run_key(spec), spec,
                                  lambda checkpoint: _train(spec, data, checkpoint, device, progress))


def _train(spec: dict[str, Any], data: mnist.MNIST, checkpoint: Path, device: torch.device,
           progress: bool) -> dict[str, Any]:
    torch.manual_seed(run_seed(spec))
    model = make_cnn(spec["variant"], spec["channels"], spec.get("channels_per_group", GROUPS)).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=spec["lr"])
    put = lambda array: torch.from_numpy(array).to(device)  # noqa: E731
    n, evals = spec["train_cases"], spec["eval_cases"]
    train_x, train_y = put(data.train.images[:n]), put(data.train.labels[:n])
    valid = put(data.valid.images[:evals]), put(data.valid.labels[:evals])
    test = put(data.test.images[:evals]), put(data.test.labels[:evals])
    log: dict[str, Any] = {"spec": spec, **results.run_provenance(device), "epoch": [],
                           "train_nll": [], "valid_error": [], "test_error": [], "test_nll": [],
                           "train_seconds": [], "epoch_seconds": [], "diverged": False}
    start_epoch = 0
    state = training.resume_state(checkpoint, spec, device)
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        log, start_epoch = state["log"], state["epoch"]
    bs = spec["batch_size"]
    steps = n // bs
    for epoch in range(start_epoch, spec["epochs"]):
        began = time.perf_counter()
        order = torch.randperm(n, generator=torch.Generator().manual_seed(run_seed(spec) + epoch))
        model.train()
        for idx in tqdm(order[: steps * bs].view(steps, bs).to(device), desc=f"{_label(spec)} epoch {epoch + 1}",
                        disable=not progress, leave=False, mininterval=2.0):
            loss = nn.functional.cross_entropy(model(train_x[idx]), train_y[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        trained = time.perf_counter() - began
        population_statistics(model, train_x)
        train_nll, _ = evaluate(model, train_x, train_y)
        _, valid_error = evaluate(model, *valid)
        test_nll, test_error = evaluate(model, *test)
        for key, value in (("epoch", epoch + 1), ("train_nll", train_nll), ("valid_error", valid_error),
                           ("test_error", test_error), ("test_nll", test_nll), ("train_seconds", trained),
                           ("epoch_seconds", time.perf_counter() - began)):
            log[key].append(value)
        if not training.end_of_epoch(checkpoint, spec, model, optimizer, log, epoch + 1, train_nll):
            break
    if not log["diverged"]:
        log["unit_statistics"] = unit_statistics(model, test[0][:spec["statistics_cases"]])
    return log


# ---------------------------------------------------------------------------------------------------------
# Entry points


def progress_of(params: dict[str, Any], profile: str, seed: int, *, committed_only: bool = False) -> dict[str, Any]:
    """Runs planned and finished, and the single-core hours of the finished ones (:func:`training.progress`)."""
    return training.progress(training.run_folder(NAME, profile, seed), specs(params, seed), run_key,
                             training.run_seconds, committed_only=committed_only)


def run(params: dict[str, Any], *, profile: str, seed: int, device: str, progress: bool = True,
        train: bool = True) -> dict[str, Any]:
    """Train every run of the profile that is not finished yet (resuming interrupted ones), then assemble;
    ``train=False`` assembles the runs finished so far (:func:`training.assemble`)."""
    return dict(training.assemble(NAME, profile, seed, specs(params, seed), run_key, train_run, mnist.load(), device,
                                  progress, train=train, label=_label),
                border_pixels=BORDER_PIXELS, groups=GROUPS)


def main(argv: list[str] | None = None) -> None:
    training.work_through_queue(NAME, "Train this worker's share of the convolutional runs of a profile.", PROFILES,
                                argv, specs=specs, key=run_key, train_run=train_run, load=mnist.load,
                                threads=THREADS, module=sys.modules[__name__])


if __name__ == "__main__":
    main()
