r"""Does layer normalization "reduce the impact of outliers" in the training data? (source S001, issue 16)

The OpenGenus article (``shared/sources/001``) says so without defining an outlier. We take an outlier to
be a *training case whose input is far off the data's scale or distribution*, and test two definitions:

* ``scaled``: the case's pixels multiplied by ``factor`` (10): the same digit, ten times too bright, as a
  sensor with the wrong gain would record it. Eq. 7 of the paper predicts the difference: layer norm
  computes the statistics of each case alone, so a rescaled case is normalized back (exactly, up to the
  first layer's bias), while batch norm pools the batch, so one rescaled case shifts the mean and inflates
  the variance *for every case of its mini-batch*;
* ``noisy``: heavy-tailed noise added to every pixel of the case, Student's t with one degree of freedom
  (Cauchy) times ``noise_scale`` (0.5): most pixels move a little, a few by tens.

A fraction ``rate`` of the 55,000 training cases (chosen once per seed, the same for every variant) is
corrupted; labels, validation and test sets stay clean. The Figure 6 MLP (:mod:`.fig6_mnist`: 784-1000-
1000-10, ReLU, Adam 1e-3 as its sweep chose, batch size 128) is trained for ``epochs`` epochs by each of
the baseline, batch norm (all layers) and layer norm (hidden layers). A run at rate 0 is the clean run, and
a variant's *impact* at a rate is its test error there minus its test error at rate 0, paired per seed
(the same initial weights and batch order: the seed of a run does not depend on the corruption).

Batch norm's population statistics for evaluation are recomputed on the (corrupted) training set after
every epoch, as running averages would be in practice. As a control, a batch-normalized run on corrupted
data is evaluated once more after its last epoch with the statistics of the clean training images
(``log["clean_statistics"]``; :func:`lnlib.claims.s001_outliers` with ``batch_norm_statistics="clean
images"``): that separates what the corruption did to the weights from what it did to the statistics.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
import torch

from ..data import mnist
from . import fig6_mnist as fig6
from . import training

NAME = "outliers"
VARIANTS = fig6.VARIANTS
DEFINITIONS = ("scaled", "noisy")
THREADS = fig6.THREADS

PROFILES: dict[str, dict[str, Any]] = {
    "smoke": {"hidden": 64, "train_cases": 2000, "eval_cases": 1000, "epochs": 1, "batch_size": 128,
              "lr": 1e-3, "rates": [0.0, 0.1], "seeds": 1, "factor": 10.0, "noise_scale": 0.5},
    "cpu": {"hidden": 1000, "train_cases": 55_000, "eval_cases": 10_000, "epochs": 5, "batch_size": 128,
            "lr": 1e-3, "rates": [0.0, 0.02, 0.1], "seeds": 3, "factor": 10.0, "noise_scale": 0.5},
    "paper": {"hidden": 1000, "train_cases": 55_000, "eval_cases": 10_000, "epochs": 20, "batch_size": 128,
              "lr": 1e-3, "rates": [0.0, 0.01, 0.02, 0.05, 0.1, 0.2], "seeds": 5, "factor": 10.0,
              "noise_scale": 0.5},
}


def corrupt(images: np.ndarray, definition: str, rate: float, seed: int, *, factor: float = 10.0,
            noise_scale: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """A copy of ``images`` (``(n, 784)``) with ``round(rate * n)`` cases corrupted by ``definition``, and the
    indices of those cases. The cases and the noise depend on ``seed`` only."""
    if definition not in DEFINITIONS:
        raise ValueError(f"definition must be one of {DEFINITIONS}, got {definition!r}")
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0.0 <= rate <= 1.0:
        raise ValueError(f"rate must be a fraction in [0, 1], got {rate!r}")
    rng = np.random.default_rng([seed, 1607_06450])
    n = images.shape[0]
    chosen = np.sort(rng.choice(n, size=int(round(rate * n)), replace=False))
    out = images.copy()
    if definition == "scaled":
        out[chosen] *= np.float32(factor)
    else:
        noise = rng.standard_t(1.0, size=(chosen.size, images.shape[1])) * noise_scale
        out[chosen] += noise.astype(images.dtype)
    return out, chosen


def specs(params: dict[str, Any], seed: int) -> list[dict[str, Any]]:
    """Every run: per seed and variant the clean run (rate 0, definition ``"none"``) and each definition at
    each non-zero rate; Figure 6 specs with an ``outliers`` entry (which changes the key, not the seed)."""
    out = []
    for s in range(params["seeds"]):
        for variant in VARIANTS:
            corruptions = [("none", 0.0)] + [(d, r) for d in DEFINITIONS for r in params["rates"] if r > 0]
            for definition, rate in corruptions:
                spec = fig6._spec("outliers", variant, params["batch_size"], "relu", params["lr"],
                                  params["epochs"], seed + s, params)
                spec["outliers"] = {"definition": definition, "rate": rate, "factor": params["factor"],
                                    "noise_scale": params["noise_scale"]}
                out.append(spec)
    return out


def data_for(spec: dict[str, Any], data: mnist.MNIST) -> mnist.MNIST:
    """MNIST with the training images of ``spec``'s corruption (clean for rate 0)."""
    o = spec["outliers"]
    if o["rate"] == 0:
        return data
    images, _ = corrupt(data.train.images[:spec["train_cases"]], o["definition"], o["rate"], spec["seed"],
                        factor=o["factor"], noise_scale=o["noise_scale"])
    return data._replace(train=mnist.Split(images, data.train.labels[:spec["train_cases"]]))


def train_run(spec: dict[str, Any], data: mnist.MNIST, folder, *, device: torch.device = torch.device("cpu"),
              progress: bool = True) -> dict[str, Any]:
    """One run: :func:`fig6_mnist.train_run` on the corrupted training set (read if finished or committed)."""
    committed = training.committed_log(folder, fig6.run_key(spec), spec)
    if committed is not None:
        return committed
    clean = data.train.images[:spec["train_cases"]] if spec["outliers"]["rate"] > 0 else None
    return fig6.train_run(spec, data_for(spec, data), folder, device=device, progress=progress, clean_images=clean)


def progress_of(params: dict[str, Any], profile: str, seed: int, *, committed_only: bool = False) -> dict[str, Any]:
    return training.progress(training.run_folder(NAME, profile, seed), specs(params, seed), fig6.run_key,
                             training.run_seconds, committed_only=committed_only)


def run(params: dict[str, Any], *, profile: str, seed: int, device: str, progress: bool = True,
        train: bool = True) -> dict[str, Any]:
    """Train every run of the profile that is not finished yet, then assemble; ``train=False`` assembles the
    runs finished so far (:func:`training.assemble`)."""
    return training.assemble(NAME, profile, seed, specs(params, seed), fig6.run_key, train_run, mnist.load(), device,
                             progress, train=train, label=_label)


def _label(spec: dict[str, Any]) -> str:
    o = spec["outliers"]
    return f"{spec['variant']}-{o['definition']}-{100 * o['rate']:g}%-s{spec['seed']}"


def main(argv: list[str] | None = None) -> None:
    training.work_through_queue(NAME, "Train this worker's share of the outlier runs of a profile.", PROFILES, argv,
                                specs=specs, key=fig6.run_key, train_run=train_run, load=mnist.load,
                                threads=THREADS, module=sys.modules[__name__])


if __name__ == "__main__":
    main()
