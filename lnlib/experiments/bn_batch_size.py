r"""How much does a batch-normalized example depend on the batch it happens to be in? (Chapter 1.)

Setup. A layer of ``units`` hidden units has summed inputs drawn from a fixed distribution (a
"population" of ``population`` cases): unit :math:`i` has mean :math:`m_i \sim N(0, 1)` and standard deviation
:math:`s_i \sim U(0.5, 2)`, values Gaussian. One case, the *probe*, is fixed. Its ideal normalized value uses
the population statistics (what eq. 2 of the paper means by expectations over the data distribution):
:math:`z_i = (a_i - \mu_i)/\sqrt{\sigma_i^2 + \epsilon}`.

Measurements, for each batch size :math:`N`:

1. *Batch noise.* ``repeats`` times, put the probe in a batch with :math:`N-1` other cases drawn at random
   (with replacement, i.e. i.i.d.), batch-normalize in training mode, and compare the probe's output
   with :math:`z`. Reported: the root-mean-square deviation over repeats and units, and the spread (standard
   deviation over repeats, averaged over units). The delta method predicts an RMS deviation of about
   :math:`\sqrt{\overline{1 + z_i^2/2}\,/\,N}` for large :math:`N`. For one unit (the one whose ideal value
   is closest to 1) the histogram of the probe's outputs is kept, to show the whole distribution.
2. *Train/eval gap.* Train a :class:`lnlib.numpy.BatchNorm` (momentum 0.1) on ``running_batches`` batches,
   then compare its training-mode output (batch statistics) with its eval-mode output (running
   statistics) on ``eval_batches`` fresh batches: the RMS difference is the train/test discrepancy a
   network sees when it switches modes.

Everything is NumPy; ``device`` is recorded but not used.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from tqdm import tqdm

from ..numpy import BatchNorm, batch_norm, moments

NAME = "bn_batch_size"
EPS = 1e-5

PROFILES: dict[str, dict[str, Any]] = {
    "smoke": {"units": 16, "population": 2_000, "batch_sizes": [2, 8, 32], "repeats": 40,
              "running_batches": 20, "eval_batches": 5},
    "cpu": {"units": 64, "population": 100_000, "batch_sizes": [2, 3, 4, 8, 16, 32, 64, 128, 256, 1024],
            "repeats": 2_000, "running_batches": 500, "eval_batches": 50},
    # The paper has no such experiment; "paper" is the cpu profile with five times the samples.
    "paper": {"units": 64, "population": 100_000, "batch_sizes": [2, 3, 4, 8, 16, 32, 64, 128, 256, 1024],
              "repeats": 10_000, "running_batches": 500, "eval_batches": 250},
}

HISTOGRAM_EDGES = np.linspace(-3.0, 3.0, 61)
_CHUNK_ELEMENTS = 1 << 22  # batches are normalized in chunks of about 4M values (32 MiB in float64)


def make_population(units: int, population: int, rng: np.random.Generator) -> np.ndarray:
    """Gaussian summed inputs with per-unit means N(0, 1) and standard deviations U(0.5, 2)."""
    means = rng.normal(0.0, 1.0, size=units)
    stds = rng.uniform(0.5, 2.0, size=units)
    return means + stds * rng.standard_normal((population, units))


def probe_outputs(data: np.ndarray, batch_size: int, repeats: int, rng: np.random.Generator) -> np.ndarray:
    """The probe's (row 0) batch-normalized values in ``repeats`` random batches: shape ``(repeats, units)``."""
    units = data.shape[1]
    outputs = np.empty((repeats, units))
    per_chunk = max(1, _CHUNK_ELEMENTS // (batch_size * units))
    for start in range(0, repeats, per_chunk):
        count = min(per_chunk, repeats - start)
        others = rng.integers(1, data.shape[0], size=(count, batch_size - 1))
        batches = np.concatenate([np.broadcast_to(data[0], (count, 1, units)), data[others]], axis=1)
        outputs[start:start + count] = batch_norm(batches, axis=1, eps=EPS)[:, 0, :]
    return outputs


def summarize(outputs: np.ndarray, z: np.ndarray) -> tuple[float, float, float]:
    """``(rms deviation from z, spread, fraction of |y| within 0.01 of 1)``. The last is the batch-size-2
    signature: two values normalize to -1 and +1."""
    deviation = outputs - z
    rms = float(np.sqrt(np.mean(deviation**2)))
    spread = float(np.mean(outputs.std(axis=0)))
    unit_fraction = float(np.mean(np.abs(np.abs(outputs) - 1.0) < 0.01))
    return rms, spread, unit_fraction


def train_eval_gap(data: np.ndarray, batch_size: int, running_batches: int, eval_batches: int,
                   rng: np.random.Generator) -> tuple[float, float, float]:
    """``(rms train/eval difference, rms running-mean error, mean running-var ratio)`` for one batch size."""
    mu, var = moments(data, axis=0, keepdims=False)
    layer = BatchNorm(data.shape[1], eps=EPS, momentum=0.1)
    for _ in range(running_batches):
        layer(data[rng.integers(0, data.shape[0], size=batch_size)])
    layer.eval()
    squared = []
    for _ in range(eval_batches):
        batch = data[rng.integers(0, data.shape[0], size=batch_size)]
        squared.append(np.mean((batch_norm(batch, axis=0, eps=EPS) - layer(batch)) ** 2))
    mean_error = float(np.sqrt(np.mean((layer.running_mean - mu) ** 2)))
    var_ratio = float(np.mean(layer.running_var / var))
    return float(np.sqrt(np.mean(squared))), mean_error, var_ratio


def run(params: dict[str, Any], *, profile: str = "", seed: int, device: str, progress: bool = True) -> dict[str, Any]:
    """Both measurements for every batch size of the profile; returns JSON-ready lists."""
    rng = np.random.default_rng(seed)
    data = make_population(params["units"], params["population"], rng)
    mu, var = moments(data, axis=0, keepdims=False)
    z = (data[0] - mu) / np.sqrt(var + EPS)
    predicted_coefficient = float(np.sqrt(np.mean(1.0 + z**2 / 2.0)))
    shown_unit = int(np.argmin(np.abs(z - 1.0)))  # the unit whose ideal value is closest to 1
    counts = []
    out: dict[str, list[float]] = {key: [] for key in (
        "rms_deviation", "spread", "unit_magnitude_fraction", "predicted_rms", "train_eval_rms",
        "running_mean_rms_error", "running_var_ratio")}
    for n in tqdm(params["batch_sizes"], desc="batch sizes", disable=not progress):
        outputs = probe_outputs(data, n, params["repeats"], rng)
        rms, spread, unit_fraction = summarize(outputs, z)
        counts.append(np.histogram(outputs[:, shown_unit], bins=HISTOGRAM_EDGES)[0].tolist())
        gap, mean_error, var_ratio = train_eval_gap(data, n, params["running_batches"], params["eval_batches"], rng)
        for key, value in zip(out, (rms, spread, unit_fraction, predicted_coefficient / math.sqrt(n), gap,
                                    mean_error, var_ratio)):
            out[key].append(value)
    return {"batch_sizes": list(params["batch_sizes"]), "probe_z": z.tolist(), **out,
            "histogram_unit": shown_unit, "histogram_edges": HISTOGRAM_EDGES.tolist(), "histogram_counts": counts}


if __name__ == "__main__":
    from . import cli

    cli(NAME)
