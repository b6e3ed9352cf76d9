r"""Figure 4 of the paper: DRAW on binarized MNIST with and without layer normalization (claim H15).

The paper (§6.4) trains DRAW (Gregor et al. 2015) with 64 glimpses and 256 LSTM units on binarized MNIST,
with layer norm on the LSTM cell before the output tanh (eqs. 29–31), and reports that the LN model
"converges almost twice as fast" and reaches a test variational bound of 82.09 nats after 200 epochs,
against 82.36 for the baseline. The model is :mod:`lnlib.torch.draw`, the data
:mod:`lnlib.data.binarized_mnist` (our own fixed binarization: the nats are not the paper's to the
decimal, see there).

**What the paper leaves unstated, and what we chose** (each in the result file): the latent size, the
attention sizes, the learning rate and the batch size are not given; we take the DRAW paper's MNIST
settings where it has them (read 2x2, write 5x5 attention) and Adam at 1e-3 with batches of 64 and the
gradient's global norm clipped at ``clip`` (10). With the loss in nats per image the norm exceeds 10 at
every step of the cpu profile (``clipped_steps`` in the log), so every gradient is rescaled to norm 10
before Adam, whose step is nearly invariant to a rescaling that changes slowly from step to step; the
pre-clip norms are not logged, so whether the rescaling differs between the variants is not measured.
Both variants are treated alike. The initial canvas and LSTM states are zeros. The ``paper`` profile has the paper's 64 glimpses, 256 units and 200 epochs, with latent size
100; the ``cpu`` profile is reduced to fit about three single-core hours for both variants and three
seeds: 16 glimpses, 128 units, latent size 10, 20 epochs.

**Measured after every epoch**: the bound on the test set and on the first ``train_eval_cases`` training
images, each with one posterior sample per image from a generator seeded per epoch (the same noise for
both variants), in nats per image, split into its reconstruction and KL parts. After the last epoch: 36
samples from the prior and the glimpse sequence of one test digit's reconstruction (first seed only).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from .. import results
from ..data import binarized_mnist
from ..torch import draw as model_lib
from . import training

NAME = "draw"
VARIANTS = tuple(model_lib.CELLS)  # ("baseline", "layernorm")
THREADS = 1

PROFILES: dict[str, dict[str, Any]] = {
    "smoke": {"glimpses": 4, "hidden": 16, "latent": 4, "read_n": 2, "write_n": 5, "batch_size": 64, "lr": 1e-3,
              "clip": 10.0, "epochs": 2, "seeds": 1, "train_cases": 2000, "test_cases": 500,
              "train_eval_cases": 500},
    "cpu": {"glimpses": 16, "hidden": 128, "latent": 10, "read_n": 2, "write_n": 5, "batch_size": 64, "lr": 1e-3,
            "clip": 10.0, "epochs": 20, "seeds": 3, "train_cases": 50_000, "test_cases": 10_000,
            "train_eval_cases": 10_000},
    "paper": {"glimpses": 64, "hidden": 256, "latent": 100, "read_n": 2, "write_n": 5, "batch_size": 64,
              "lr": 1e-3, "clip": 10.0, "epochs": 200, "seeds": 3, "train_cases": 50_000, "test_cases": 10_000,
              "train_eval_cases": 10_000},
}
MODEL_KEYS = ("glimpses", "hidden", "latent", "read_n", "write_n")


def _label(spec: dict[str, Any]) -> str:
    return f"{spec['variant']}-T{spec['glimpses']}-H{spec['hidden']}-Z{spec['latent']}-e{spec['epochs']}-s{spec['seed']}"


def run_key(spec: dict[str, Any]) -> str:
    return training.run_key(_label(spec), spec)


def run_seed(spec: dict[str, Any]) -> int:
    """The seed of a run's weights, batches and noise: the same for both variants of a seed (paired)."""
    return int(spec["seed"]) * 1_000_003 + 1607


def specs(params: dict[str, Any], seed: int) -> list[dict[str, Any]]:
    """Every run of a profile, seed by seed."""
    keys = MODEL_KEYS + ("batch_size", "lr", "clip", "epochs", "train_cases", "test_cases", "train_eval_cases")
    return [dict({k: params[k] for k in keys}, variant=v, seed=seed + s, pictures=s == 0)
            for s in range(params["seeds"]) for v in VARIANTS]


def make_model(spec: dict[str, Any]) -> model_lib.DRAW:
    torch.manual_seed(run_seed(spec))
    return model_lib.DRAW(spec["variant"], **{k: spec[k] for k in MODEL_KEYS}, rng=run_seed(spec))


@torch.no_grad()
def bound(model: model_lib.DRAW, images: torch.Tensor, seed: int, batch: int = 500) -> dict[str, float]:
    """Mean negative variational bound in nats per image (and its reconstruction and KL parts), one posterior
    sample per image drawn from a generator seeded with ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    recon = kl = 0.0
    for start in range(0, images.shape[0], batch):
        x = images[start:start + batch]
        noise = torch.randn(model.glimpses, x.shape[0], model.latent, generator=generator, dtype=x.dtype)
        r, k = model(x, noise=noise.to(x.device))
        recon, kl = recon + float(r.sum()), kl + float(k.sum())
    n = images.shape[0]
    return {"bound": (recon + kl) / n, "reconstruction": recon / n, "kl": kl / n}


def train_run(spec: dict[str, Any], data: binarized_mnist.Binarized, folder: Path, *,
              device: torch.device = torch.device("cpu"), progress: bool = True) -> dict[str, Any]:
    """Train one model (or resume it, or read its finished or committed log); returns its log."""
    return training.read_or_train(folder, run_key(spec), spec,
                                  lambda checkpoint: _train(spec, data, checkpoint, device, progress))


def _train(spec: dict[str, Any], data: binarized_mnist.Binarized, checkpoint: Path, device: torch.device,
           progress: bool) -> dict[str, Any]:
    model = make_model(spec).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=spec["lr"])
    train = torch.from_numpy(data.train[:spec["train_cases"]]).to(device)
    test = torch.from_numpy(data.test[:spec["test_cases"]]).to(device)
    log: dict[str, Any] = {"spec": spec, **results.run_provenance(device), "epoch": [],
                           "train_loss": [], "test": [], "train": [], "clipped_steps": [], "train_seconds": [],
                           "epoch_seconds": [], "diverged": False}
    start_epoch = 0
    state = training.resume_state(checkpoint, spec, device)
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        log, start_epoch = state["log"], state["epoch"]
    bs, n = spec["batch_size"], train.shape[0]
    steps = n // bs
    for epoch in range(start_epoch, spec["epochs"]):
        began = time.perf_counter()
        torch.manual_seed(run_seed(spec) + 7919 * (epoch + 1))  # the posterior samples of this epoch
        order = torch.randperm(n, generator=torch.Generator().manual_seed(run_seed(spec) + epoch))
        model.train()
        total, clipped = 0.0, 0
        for idx in tqdm(order[: steps * bs].view(steps, bs).to(device), desc=f"{_label(spec)} epoch {epoch + 1}",
                        disable=not progress, leave=False, mininterval=2.0):
            r, k = model(train[idx])
            loss = (r + k.sum(1)).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            norm = torch.nn.utils.clip_grad_norm_(model.parameters(), spec["clip"])
            clipped += int(norm > spec["clip"])
            optimizer.step()
            total += float(loss.detach())
        trained = time.perf_counter() - began
        model.eval()
        log["test"].append(bound(model, test, seed=epoch))
        log["train"].append(bound(model, train[:spec["train_eval_cases"]], seed=10_000 + epoch))
        for key, value in (("epoch", epoch + 1), ("train_loss", total / steps), ("clipped_steps", clipped),
                           ("train_seconds", trained), ("epoch_seconds", time.perf_counter() - began)):
            log[key].append(value)
        if not training.end_of_epoch(checkpoint, spec, model, optimizer, log, epoch + 1, log["test"][-1]["bound"]):
            break
    if spec["pictures"] and not log["diverged"]:
        log["pictures"] = pictures(model, test)
    return log


@torch.no_grad()
def pictures(model: model_lib.DRAW, test: torch.Tensor, samples: int = 36) -> dict[str, Any]:
    """What readers look at: ``samples`` digits generated from the prior (final canvases, pixel probabilities
    in 0..255), and the reconstruction of the first test digit glimpse by glimpse (the canvas after each step
    and the read attention's filter centres)."""
    model.eval()
    generated = model.sample(samples, generator=torch.Generator().manual_seed(0))[-1]
    trace: list[dict[str, torch.Tensor]] = []
    noise = torch.randn(model.glimpses, 1, model.latent, generator=torch.Generator().manual_seed(1))
    model(test[:1], noise=noise.to(test.device), trace=trace)
    pixels = torch.arange(1, 29, dtype=torch.float64)

    def centres(f: torch.Tensor) -> list[float]:  # the mean pixel of each filter (1-based)
        return (f[0].double().cpu() @ pixels).tolist()

    return {"samples": (255 * generated).round().to(torch.uint8).flatten(1).tolist(),
            "digit": (255 * test[0]).round().to(torch.uint8).tolist(),
            "canvases": [(255 * s["canvas"][0]).round().to(torch.uint8).flatten().tolist() for s in trace],
            "read_rows": [centres(s["read_fy"]) for s in trace], "read_cols": [centres(s["read_fx"]) for s in trace]}


# ---------------------------------------------------------------------------------------------------------
# Entry points


def progress_of(params: dict[str, Any], profile: str, seed: int, *, committed_only: bool = False) -> dict[str, Any]:
    return training.progress(training.run_folder(NAME, profile, seed), specs(params, seed), run_key,
                             training.run_seconds, committed_only=committed_only)


def run(params: dict[str, Any], *, profile: str, seed: int, device: str, progress: bool = True,
        train: bool = True) -> dict[str, Any]:
    """Train every run of the profile that is not finished yet (resuming interrupted ones), then assemble;
    ``train=False`` assembles the runs finished so far (:func:`training.assemble`)."""
    return dict(training.assemble(NAME, profile, seed, specs(params, seed), run_key, train_run,
                                  binarized_mnist.load(), device, progress, train=train, label=_label),
                binarization={"seed": binarized_mnist.SEED, "sha256": binarized_mnist.SHA256})


def main(argv: list[str] | None = None) -> None:
    training.work_through_queue(NAME, "Train this worker's share of the DRAW runs of a profile.", PROFILES,
                                argv, specs=specs, key=run_key, train_run=train_run, load=binarized_mnist.load,
                                threads=THREADS, module=sys.modules[__name__])


if __name__ == "__main__":
    main()
