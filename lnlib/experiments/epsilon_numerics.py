r"""Why layer norm has an :math:`\epsilon`, and how accurately its statistics can be computed (chapter 15).

Three measurements, all on synthetic inputs (no training is involved):

1. **Near-constant inputs** (float64, :mod:`lnlib.numpy`). Each of ``rows`` cases has ``width`` summed
   inputs :math:`x = c + \sigma z`, where :math:`z` is standard normal noise *standardized exactly* per
   row (mean 0, biased standard deviation 1) and :math:`c` is a constant ``offset``. So :math:`\sigma` is
   each row's exact standard deviation, and the closed forms hold row by row: with
   :math:`r = 1/\sqrt{\sigma^2+\epsilon}` and :math:`s = \sigma r`,

   * the normalized output is :math:`\hat x = s z`, with root mean square :math:`s`;
   * for an upstream gradient :math:`g` (fixed, standard normal), the input gradient of eq. 3's layer norm
     (:func:`lnlib.numpy.layer_norm_backward`) is :math:`r\,(g - \bar g - s^2 \overline{gz}\, z)`, whose
     norm is :math:`r\,\sqrt{\lVert g-\bar g\rVert^2 - H\,\overline{gz}^{\,2}\,s^2(2-s^2)}`; divided by
     :math:`\lVert g\rVert` (the *gradient gain*) it is :math:`r` times a factor at most 1 (for random
     :math:`g`, between about :math:`\sqrt{(H-2)/H}` and :math:`\sqrt{(H-1)/H}`).

   Measured for every :math:`\sigma` of a log grid (``sigmas_per_decade`` per decade over
   ``sigma_decades``) and every :math:`\epsilon` of ``eps_values``: the RMS and the largest magnitude of
   the output, and the gradient gain (mean over rows), each with its closed form. An exactly constant
   input (:math:`\sigma = 0`) is measured too: with :math:`\epsilon = 0` it is 0/0.
2. **float32 variance accuracy** (CPU). ``rows`` rows of :math:`\mu + N(0, 1)` rounded to float32, for
   every width in ``variance_widths`` and every :math:`\mu` in ``means``. The reference is the float64
   mean and variance of the *same* float32 numbers, so only the algorithms' error is measured.
   Algorithms: one-pass :math:`E[x^2]-E[x]^2`, two-pass and Welford (:mod:`lnlib.numpy.variance`,
   accumulating in float32), and ``torch.nn.functional.layer_norm`` on the CPU (variance recovered from
   the ``rstd`` that ``torch.ops.aten.native_layer_norm`` returns, :math:`1/\text{rstd}^2-\epsilon`, so
   its floor is about :math:`10^{-7}`). Reported: the largest relative error of the variance over rows,
   the number of rows with a negative variance, and the largest absolute error of the normalized output
   (:math:`\epsilon` = ``eps``; a negative variance clamped at 0, as PyTorch's old one-pass kernel did).
3. **Half precision** (on ``device``). ``rows`` rows of ``half_width`` values :math:`\mu + N(0, 1)`
   (:math:`\mu` in ``half_means``) stored in float16 and bfloat16, normalized by
   :func:`lnlib.torch.layer_norm` (statistics in float32, output cast back), by
   ``torch.nn.functional.layer_norm``, and by the same formula with every intermediate result in the half
   dtype. Errors are against float64 layer norm of the same stored inputs, next to the *storage floor*:
   the error of rounding that exact output to the half dtype, which no implementation returning that
   dtype can beat. Also recorded: what the values in ``stored_eps`` become when stored in each dtype
   (``np.float16(1e-8) == 0``), and whether an exactly constant row (all 3.0) comes out finite with each
   of them.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from .. import numpy as lnp
from .. import torch as lnt
from ..numpy import variance

NAME = "epsilon_numerics"

_SHARED: dict[str, Any] = {
    "eps_values": [0.0, 1e-8, 1e-5, 1e-3], "offset": 1.0,     # 1: near-constant inputs
    "means": [0.0, 1e2, 1e4, 1e6], "eps": 1e-5,                 # 2: float32 variance accuracy
    "half_means": [0.0, 1e2], "stored_eps": [1e-8, 1e-6, 1e-5, 1e-3],  # 3: half precision
}

PROFILES: dict[str, dict[str, Any]] = {
    "smoke": {"sigma_decades": [-8, 1], "sigmas_per_decade": 1, "width": 64, "rows": 4,
              "variance_widths": [256], "half_width": 256, **_SHARED},
    "cpu": {"sigma_decades": [-8, 1], "sigmas_per_decade": 4, "width": 256, "rows": 64,
            "variance_widths": [1024, 8192], "half_width": 1024, **_SHARED},
    # The paper has no such experiment; "paper" is the cpu profile with four times the rows and a finer grid.
    "paper": {"sigma_decades": [-8, 1], "sigmas_per_decade": 8, "width": 256, "rows": 256,
              "variance_widths": [1024, 8192], "half_width": 1024, **_SHARED},
}

HALF_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16}
#: Method names in the records: PyTorch's kernel on the CPU (float32 part), and the three half-precision paths.
TORCH_CPU = "F.layer_norm (CPU)"
LNLIB_TORCH = "lnlib.torch"
TORCH_F = "F.layer_norm"
HALF_ARITHMETIC = "half arithmetic"


def _number(value: float) -> float | None:
    """A JSON-ready float: ``None`` for NaN or infinity (result files are strict JSON)."""
    value = float(value)
    return value if math.isfinite(value) else None


def standardized_noise(rows: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """Standard normal rows shifted and scaled to mean exactly 0 and biased standard deviation 1 (float64)."""
    z = rng.standard_normal((rows, width))
    z -= z.mean(axis=-1, keepdims=True)
    return z / z.std(axis=-1, keepdims=True)


def gradient_gain_closed_form(z: np.ndarray, g: np.ndarray, sigma: float, eps: float) -> np.ndarray:
    r"""Per row :math:`\lVert\partial L/\partial x\rVert / \lVert g\rVert` for :math:`x = c + \sigma z`.

    ``z`` must be standardized per row (mean 0, biased std 1). From the module docstring:
    :math:`r\sqrt{\lVert g-\bar g\rVert^2 - H\,\overline{gz}^{\,2}\,s^2(2-s^2)}/\lVert g\rVert`.
    """
    width = z.shape[-1]
    r = 1.0 / math.sqrt(sigma**2 + eps)
    s2 = (sigma * r) ** 2
    centred = g - g.mean(axis=-1, keepdims=True)
    p = (g * z).mean(axis=-1)
    squared = np.square(centred).sum(axis=-1) - width * p**2 * s2 * (2.0 - s2)
    return r * np.sqrt(squared) / np.linalg.norm(g, axis=-1)


def sigma_grid(params: dict[str, Any]) -> list[float]:
    """The log grid of input standard deviations: ``sigmas_per_decade`` per decade over ``sigma_decades``."""
    low, high = params["sigma_decades"]
    return np.logspace(low, high, (high - low) * params["sigmas_per_decade"] + 1).tolist()


def near_constant(params: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
    """Measurement 1: output size and gradient gain of float64 layer norm as :math:`\\sigma \\to 0`."""
    rows, width, offset = params["rows"], params["width"], params["offset"]
    sigmas = sigma_grid(params)
    z = standardized_noise(rows, width, rng)
    g = rng.standard_normal((rows, width))
    g_norm = np.linalg.norm(g, axis=-1)
    keys = ("output_rms", "output_rms_closed_form", "max_abs_output", "grad_gain", "grad_gain_closed_form",
            "grad_scale")
    out: dict[str, list[list[float | None]]] = {key: [] for key in keys}
    constant: dict[str, list[Any]] = {"output_all_nan": [], "output_max_abs": [], "grad_gain": [],
                                      "grad_gain_bound": []}
    for eps in params["eps_values"]:
        rows_out: dict[str, list[float | None]] = {key: [] for key in keys}
        for sigma in sigmas:
            x = offset + sigma * z
            y = lnp.layer_norm(x, eps=eps)
            dx, _, _ = lnp.layer_norm_backward(g, x, eps=eps)
            r = 1.0 / math.sqrt(sigma**2 + eps)
            measured = {
                "output_rms": np.sqrt(np.mean(y**2)),
                "output_rms_closed_form": sigma * r,
                "max_abs_output": np.abs(y).max(),
                "grad_gain": np.mean(np.linalg.norm(dx, axis=-1) / g_norm),
                "grad_gain_closed_form": np.mean(gradient_gain_closed_form(z, g, sigma, eps)),
                "grad_scale": r,
            }
            for key, value in measured.items():
                rows_out[key].append(_number(value))
        for key in keys:
            out[key].append(rows_out[key])
        # An exactly constant input: sigma = 0.
        x = np.full((rows, width), offset)
        with np.errstate(divide="ignore", invalid="ignore"):
            y = lnp.layer_norm(x, eps=eps)
            dx, _, _ = lnp.layer_norm_backward(g, x, eps=eps)
        constant["output_all_nan"].append(bool(np.isnan(y).all()))
        constant["output_max_abs"].append(_number(np.abs(y).max()))
        constant["grad_gain"].append(_number(np.mean(np.linalg.norm(dx, axis=-1) / g_norm)))
        constant["grad_gain_bound"].append(_number(1.0 / math.sqrt(eps)) if eps > 0 else None)
    return {"sigmas": sigmas, "eps": list(params["eps_values"]), "width": width, **out,
            "constant_input": constant}


def variance_accuracy(params: dict[str, Any], rng: np.random.Generator, bar: tqdm) -> list[dict[str, Any]]:
    """Measurement 2: float32 variance and output errors of the four algorithms, one record per case."""
    eps = params["eps"]
    records = []
    for width in params["variance_widths"]:
        for mean in params["means"]:
            x = (mean + rng.standard_normal((params["rows"], width))).astype(np.float32)
            x64 = x.astype(np.float64)
            mean_ref, var_ref = x64.mean(axis=-1, keepdims=True), x64.var(axis=-1, keepdims=True)
            y_ref = (x64 - mean_ref) / np.sqrt(var_ref + eps)
            results = {}
            for name, algorithm in variance.ALGORITHMS.items():
                m, v = algorithm(x, axis=-1)
                results[name] = (v.astype(np.float64), variance.standardize_with(x, m, v, eps=eps))
            y_t, _, rstd = torch.ops.aten.native_layer_norm(torch.from_numpy(x), [width], None, None, eps)
            var_t = 1.0 / np.square(rstd.numpy().astype(np.float64)) - eps
            results[TORCH_CPU] = (var_t, y_t.numpy())
            for name, (v, y) in results.items():
                records.append({
                    "method": name, "width": width, "mean": mean,
                    "var_max_rel_error": _number(np.abs(v / var_ref - 1.0).max()),
                    "negative_var_rows": int((v < 0).sum()),
                    "y_max_abs_error": _number(np.abs(y.astype(np.float64) - y_ref).max()),
                    "input_spacing": float(np.spacing(np.abs(x).max())),
                })
            bar.update(1)
    return records


def _half_arithmetic(x: torch.Tensor, eps: float) -> torch.Tensor:
    """Layer norm written with torch operations on the half tensor itself: every intermediate result is
    rounded to its dtype (``eps`` too, when it is added to the half variance)."""
    mean = x.mean(dim=-1, keepdim=True)
    centred = x - mean
    var = (centred * centred).mean(dim=-1, keepdim=True)
    return centred / torch.sqrt(var + eps)


def _half_methods(x: torch.Tensor, eps: float) -> dict[str, torch.Tensor]:
    """The three half-precision paths by name: lnlib.torch.layer_norm, torch.nn.functional.layer_norm, and
    :func:`_half_arithmetic`."""
    return {
        LNLIB_TORCH: lnt.layer_norm(x, eps=eps),
        TORCH_F: F.layer_norm(x, (x.shape[-1],), eps=eps),
        HALF_ARITHMETIC: _half_arithmetic(x, eps),
    }


def half_precision(params: dict[str, Any], rng: np.random.Generator, dev: torch.device,
                   bar: tqdm) -> dict[str, Any]:
    """Measurement 3: float16/bfloat16 layer norm vs a float64 reference and the storage floor."""
    eps, width = params["eps"], params["half_width"]
    records = []
    for dtype_name, dtype in HALF_DTYPES.items():
        for mean in params["half_means"]:
            stored = torch.from_numpy(mean + rng.standard_normal((params["rows"], width))).to(dtype)
            x64 = stored.to(torch.float64)
            y_ref = (x64 - x64.mean(-1, keepdim=True)) / torch.sqrt(x64.var(-1, correction=0, keepdim=True) + eps)
            floor = (y_ref.to(dtype).to(torch.float64) - y_ref).abs()
            x = stored.to(dev)
            with torch.no_grad():
                outputs = _half_methods(x, eps)
            for name, y in outputs.items():
                err = (y.to("cpu", torch.float64) - y_ref).abs()
                records.append({
                    "dtype": dtype_name, "mean": mean, "method": name,
                    "output_dtype": str(y.dtype).removeprefix("torch."),
                    "max_abs_error": _number(err.max()), "rms_error": _number(err.square().mean().sqrt()),
                    "storage_max_abs_error": _number(floor.max()),
                    "storage_rms_error": _number(floor.square().mean().sqrt()),
                })
            bar.update(1)
    stored_eps = []
    for value in params["stored_eps"]:
        row: dict[str, Any] = {"eps": value}
        for dtype_name, dtype in {**HALF_DTYPES, "float32": torch.float32}.items():
            row[dtype_name] = float(torch.tensor(value, dtype=dtype))
        stored_eps.append(row)
    constant = []
    for dtype_name, dtype in HALF_DTYPES.items():
        x = torch.full((2, width), 3.0, dtype=dtype, device=dev)
        for value in params["stored_eps"]:
            with torch.no_grad():
                outputs = _half_methods(x, value)
            for name, y in outputs.items():
                finite = bool(torch.isfinite(y).all())
                constant.append({"dtype": dtype_name, "eps": value, "method": name, "all_finite": finite,
                                 "max_abs": _number(y.abs().max()) if finite else None})
    return {"width": width, "eps": eps, "records": records, "stored_eps": stored_eps, "constant_row": constant}


def run(params: dict[str, Any], *, profile: str = "", seed: int, device: str, progress: bool = True) -> dict[str, Any]:
    """All three measurements; JSON-ready. The CPU parts ignore ``device``; the half-precision part uses it."""
    dev = lnt.resolve_device(device)
    near_rng, var_rng, half_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(3))
    steps = 1 + len(params["variance_widths"]) * len(params["means"]) + len(HALF_DTYPES) * len(params["half_means"])
    with tqdm(total=steps, desc="epsilon_numerics", disable=not progress) as bar:
        near = near_constant(params, near_rng)
        bar.update(1)
        accuracy = variance_accuracy(params, var_rng, bar)
        half = half_precision(params, half_rng, dev, bar)
    return {"device": str(dev), "near_constant": near, "variance_accuracy": accuracy, "half_precision": half}


if __name__ == "__main__":
    from . import cli

    cli(NAME)
