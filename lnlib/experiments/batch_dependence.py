r"""Does a normalized example depend on its batch, or on the mode? Claims H1 and H2 (chapter 2).

The paper's abstract says layer normalization "performs exactly the same computation at training and test
times" (H1), and §3 that it puts no constraint on the mini-batch size and works "in the pure online regime
with batch size 1" (H2). Batch normalization does neither. This experiment measures both, twice:

* on the normalization alone: a fixed matrix of summed inputs, normalized by :func:`lnlib.torch.layer_norm`
  or :class:`lnlib.torch.BatchNorm` (float32, on ``device``) and by :mod:`lnlib.numpy` (float64);
* in a small network, ``Linear(inputs, hidden) -> norm -> ReLU -> Linear(hidden, classes)``, with random
  weights (no training is needed to test these claims) and, for batch norm, running statistics warmed up
  on ``warmup_batches`` training-mode batches.

For each batch size :math:`N` a *probe* case is evaluated alone (batch size 1) and inside ``repeats``
random batches of size :math:`N`; reported is the largest absolute change of the probe's output. For the
modes, the same batches are evaluated in ``train()`` and ``eval()`` mode. Batch norm in training mode is
undefined at :math:`N = 1` (reported as ``None``).

Inside a network, the linear layer itself can differ in the last bits between a batch of 1 and a batch of
:math:`N` (BLAS picks different kernels for different shapes); the measurement on the normalization alone
separates that from the normalization.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from .. import numpy as lnp
from .. import torch as lnt

NAME = "batch_dependence"

PROFILES: dict[str, dict[str, Any]] = {
    "smoke": {"inputs": 16, "hidden": 32, "classes": 10, "population": 512, "batch_sizes": [1, 4, 16],
              "repeats": 5, "warmup_batches": 10},
    "cpu": {"inputs": 64, "hidden": 256, "classes": 10, "population": 20_000,
            "batch_sizes": [1, 2, 4, 8, 16, 32, 64, 128, 256], "repeats": 50, "warmup_batches": 200},
    # The paper reports no number for these claims; "paper" is the cpu profile with four times the repeats.
    "paper": {"inputs": 64, "hidden": 256, "classes": 10, "population": 20_000,
              "batch_sizes": [1, 2, 4, 8, 16, 32, 64, 128, 256], "repeats": 200, "warmup_batches": 200},
}


def make_network(norm: str, params: dict[str, Any], device: torch.device) -> nn.Sequential:
    """``Linear -> LayerNorm or BatchNorm (lnlib.torch) -> ReLU -> Linear``, float32, on ``device``."""
    hidden = params["hidden"]
    layer = lnt.LayerNorm(hidden) if norm == "layer" else lnt.BatchNorm(hidden)
    return nn.Sequential(nn.Linear(params["inputs"], hidden), layer, nn.ReLU(),
                         nn.Linear(hidden, params["classes"])).to(device)


def _batches(population: torch.Tensor, size: int, repeats: int, generator: torch.Generator) -> torch.Tensor:
    """``repeats`` batches of ``size`` rows: row 0 is the probe, the others are drawn at random."""
    others = torch.randint(1, population.shape[0], (repeats, size - 1), generator=generator)
    probe = population[:1].expand(repeats, 1, -1)
    return torch.cat([probe, population[others]], dim=1)


def normalization_only(summed: torch.Tensor, params: dict[str, Any], generator: torch.Generator) -> dict[str, list]:
    """Largest change of the probe's normalized summed inputs, alone vs in a batch, per batch size."""
    alone_t = lnt.layer_norm(summed[:1])
    alone_np = lnp.layer_norm(summed[:1].double().cpu().numpy())
    out: dict[str, list] = {"layer_norm_float32": [], "layer_norm_float64": [], "batch_norm_float32": []}
    for n in params["batch_sizes"]:
        batches = _batches(summed, n, params["repeats"], generator)
        ln_t = lnt.layer_norm(batches)[:, 0]
        ln_np = lnp.layer_norm(batches.double().cpu().numpy())[:, 0]
        out["layer_norm_float32"].append(float((ln_t - alone_t).abs().max()))
        out["layer_norm_float64"].append(float(np.abs(ln_np - alone_np).max()))
        if n == 1:
            out["batch_norm_float32"].append(None)
        else:  # the probe's batch-normalized value, against its value normalized with population statistics
            mean, var = lnt.moments(summed, axis=0)
            ideal = ((summed[:1] - mean) / torch.sqrt(var + 1e-5))[0]
            bn = lnt.batch_norm(batches, axis=1)[:, 0]
            out["batch_norm_float32"].append(float((bn - ideal).abs().max()))
    return out


@torch.no_grad()
def in_network(norm: str, population: torch.Tensor, params: dict[str, Any], generator: torch.Generator,
               device: torch.device) -> dict[str, list]:
    """Batch and mode dependence of the probe's logits in a network with ``norm`` ("layer" or "batch").

    ``train_vs_online``: the probe's logits in training mode inside a batch of N, against the logits an
    online (batch size 1) evaluation-mode deployment computes for it. ``mode_change``: the same batches
    in training mode against evaluation mode.
    """
    torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=generator)))
    net = make_network(norm, params, device)
    for _ in range(params["warmup_batches"]):  # running statistics of BN; a no-op for LN
        net(population[torch.randint(0, population.shape[0], (64,), generator=generator)])
    net[1].momentum = 0.0 if norm == "batch" else None  # measuring must not move the running statistics
    online = net.eval()(population[:1])[0]
    train_vs_online, mode_change = [], []
    for n in params["batch_sizes"]:
        if n == 1 and norm == "batch":  # undefined: one value per statistic
            train_vs_online.append(None)
            mode_change.append(None)
            continue
        batches = _batches(population, n, params["repeats"], generator)
        evaluated = torch.stack([net.eval()(b) for b in batches])
        trained = torch.stack([net.train()(b) for b in batches])
        train_vs_online.append(float((trained[:, 0] - online).abs().max()))
        mode_change.append(float((trained - evaluated).abs().max()))
    return {"train_vs_online": train_vs_online, "mode_change": mode_change}


def run(params: dict[str, Any], *, profile: str = "", seed: int, device: str, progress: bool = True) -> dict[str, Any]:
    """Both measurements for layer norm and batch norm; JSON-ready lists indexed like ``batch_sizes``."""
    dev = torch.device(device)
    generator = torch.Generator().manual_seed(seed)
    population = torch.randn(params["population"], params["inputs"], generator=generator)
    population = (population * torch.linspace(0.5, 2.0, params["inputs"]) + 0.3).to(dev)
    weight = torch.randn(params["inputs"], params["hidden"], generator=generator) / params["inputs"] ** 0.5
    summed = population @ weight.to(dev)
    data: dict[str, Any] = {"batch_sizes": list(params["batch_sizes"])}
    steps = tqdm(total=3, desc="batch dependence", disable=not progress)
    data["normalization_only"] = normalization_only(summed, params, generator)
    steps.update()
    for norm in ("layer", "batch"):
        data[f"{norm}_norm_network"] = in_network(norm, population, params, generator, dev)
        steps.update()
    steps.close()
    return data


if __name__ == "__main__":
    from . import cli

    cli(NAME)
