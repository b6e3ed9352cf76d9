r"""Table 1 of the paper, measured: which transformations leave each normalization unchanged (chapter 4).

A layer has weights :math:`W\in\mathbb R^{H\times D}` (row :math:`w_i` feeds hidden unit :math:`i`) and sees a
data set :math:`X\in\mathbb R^{N\times D}`; its summed inputs are :math:`A = XW^\top`. Each method maps
:math:`(W, X)` to *normalized summed inputs* (gains 1, biases 0), the quantity Table 1 is about:

* batch norm: :math:`A` standardized over the cases (axis 0);
* weight norm: :math:`a_{ni}/\lVert w_i\rVert` (eq. 5 with :math:`\mu = 0`, :math:`\sigma=\lVert w_i\rVert`);
* layer norm: :math:`A` standardized over the units of each case (axis 1);
* beyond the paper, RMSNorm (axis 1, no centering) and group norm (axis 1 split into 4 groups).

The six transformations of Table 1, each applied to a fresh random layer and data set:

========================================  ===========================================================
weight matrix re-scaling                  :math:`W \to \delta W`
weight matrix re-centering                :math:`W \to W + \mathbf 1\gamma^\top` (one vector added to every row)
weight vector re-scaling                  :math:`w_i \to \delta w_i` for one unit :math:`i`
dataset re-scaling                        :math:`X \to \delta X`
dataset re-centering                      :math:`X \to X + \mathbf 1 c^\top` (one vector added to every case)
single training case re-scaling           :math:`x_n \to \delta x_n` for one case :math:`n`
========================================  ===========================================================

Scale factors :math:`\delta` are positive (a negative one flips the sign of every normalized value; the
paper's invariances are for positive rescaling). Reported is the largest absolute change of the
normalized summed inputs over ``draws`` random layers, in float64, with :math:`\epsilon = 0` (the paper's
exact definitions) and with :math:`\epsilon = 10^{-5}` (the code's). The ``eps_sweep`` measures how far the
:math:`\epsilon = 10^{-5}` versions are from invariant as the rescaling factor shrinks the variance
towards :math:`\epsilon`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from tqdm import tqdm

from .. import numpy as lnp

NAME = "invariance"
GROUPS = 4

PROFILES: dict[str, dict[str, Any]] = {
    "smoke": {"cases": 8, "inputs": 6, "units": 8, "draws": 3, "eps": 1e-5, "sweep": [1e-3, 1e-1, 1.0, 10.0]},
    "cpu": {"cases": 256, "inputs": 64, "units": 128, "draws": 20, "eps": 1e-5,
            "sweep": [float(d) for d in np.logspace(-4, 2, 25)]},
    # Table 1 is exact; "paper" only draws more random layers.
    "paper": {"cases": 256, "inputs": 64, "units": 128, "draws": 200, "eps": 1e-5,
              "sweep": [float(d) for d in np.logspace(-4, 2, 49)]},
}

METHODS = ("batch norm", "weight norm", "layer norm", "RMSNorm", "group norm")
TRANSFORMATIONS = ("weight matrix re-scaling", "weight matrix re-centering", "weight vector re-scaling",
                   "dataset re-scaling", "dataset re-centering", "single training case re-scaling")

#: Table 1 of the paper, transcribed (True = "Invariant", False = "No").
PAPER_TABLE = {
    "batch norm": (True, False, True, True, True, False),
    "weight norm": (True, False, True, False, False, False),
    "layer norm": (True, True, False, True, False, True),
}


def normalized_inputs(method: str, W: np.ndarray, X: np.ndarray, eps: float) -> np.ndarray:
    """The normalized summed inputs of ``method`` (gains 1, biases 0) for weights ``W`` and data ``X``."""
    if method == "weight norm":
        return X @ lnp.weight_norm(W, axis=1).T
    A = X @ W.T
    if method == "batch norm":
        return lnp.batch_norm(A, axis=0, eps=eps)
    if method == "layer norm":
        return lnp.layer_norm(A, axis=1, eps=eps)
    if method == "RMSNorm":
        return lnp.rms_norm(A, axis=1, eps=eps)
    if method == "group norm":
        return lnp.group_norm(A, GROUPS, axis=1, eps=eps)
    raise ValueError(f"method must be one of {METHODS}, got {method!r}")


def transform(name: str, W: np.ndarray, X: np.ndarray, rng: np.random.Generator,
              scale: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Apply one of Table 1's transformations; ``scale`` fixes the factor (else one is drawn in [0.2, 5])."""
    delta = float(np.exp(rng.uniform(np.log(0.2), np.log(5.0)))) if scale is None else scale
    W, X = W.copy(), X.copy()
    if name == "weight matrix re-scaling":
        W *= delta
    elif name == "weight matrix re-centering":
        W += rng.normal(size=(1, W.shape[1]))
    elif name == "weight vector re-scaling":
        W[rng.integers(W.shape[0])] *= delta
    elif name == "dataset re-scaling":
        X *= delta
    elif name == "dataset re-centering":
        X += rng.normal(size=(1, X.shape[1]))
    elif name == "single training case re-scaling":
        X[rng.integers(X.shape[0])] *= delta
    else:
        raise ValueError(f"transformation must be one of {TRANSFORMATIONS}, got {name!r}")
    return W, X


def largest_change(method: str, name: str, params: dict[str, Any], eps: float,
                   rng: np.random.Generator) -> float:
    """Largest |change| of the normalized summed inputs over ``draws`` random layers and data sets."""
    worst = 0.0
    for _ in range(params["draws"]):
        W = rng.normal(size=(params["units"], params["inputs"])) / np.sqrt(params["inputs"])
        X = rng.normal(0.5, 1.0, size=(params["cases"], params["inputs"]))
        W2, X2 = transform(name, W, X, rng)
        change = np.abs(normalized_inputs(method, W2, X2, eps) - normalized_inputs(method, W, X, eps)).max()
        worst = max(worst, float(change))
    return worst


SWEEPS: dict[str, tuple[str, str]] = {  # an invariant cell whose variance the rescaling moves towards eps
    "layer norm, single training case re-scaling": ("layer norm", "single training case re-scaling"),
    "batch norm, dataset re-scaling": ("batch norm", "dataset re-scaling"),
    "layer norm, weight matrix re-scaling": ("layer norm", "weight matrix re-scaling"),
}


def eps_sweep(params: dict[str, Any], rng: np.random.Generator) -> dict[str, list[float]]:
    """For each cell of :data:`SWEEPS`: the largest change against the rescaling factor, at eps = params["eps"]."""
    W = rng.normal(size=(params["units"], params["inputs"])) / np.sqrt(params["inputs"])
    X = rng.normal(0.5, 1.0, size=(params["cases"], params["inputs"]))
    out: dict[str, list[float]] = {}
    for label, (method, name) in SWEEPS.items():
        base = normalized_inputs(method, W, X, params["eps"])
        changes = []
        for delta in params["sweep"]:
            W2, X2 = transform(name, W, X, np.random.default_rng(0), scale=delta)
            changes.append(float(np.abs(normalized_inputs(method, W2, X2, params["eps"]) - base).max()))
        out[label] = changes
    return out


def run(params: dict[str, Any], *, profile: str = "", seed: int, device: str, progress: bool = True) -> dict[str, Any]:
    """The full table at eps = 0 and eps = params["eps"], plus the eps sweep; JSON-ready."""
    rng = np.random.default_rng(seed)
    tables: dict[str, list[list[float]]] = {}
    bar = tqdm(total=2 * len(METHODS), desc="invariance table", disable=not progress)
    for key, eps in (("eps_zero", 0.0), ("eps_code", params["eps"])):
        rows = []
        for method in METHODS:
            rows.append([largest_change(method, name, params, eps, rng) for name in TRANSFORMATIONS])
            bar.update()
        tables[key] = rows
    bar.close()
    return {"methods": list(METHODS), "transformations": list(TRANSFORMATIONS), "change": tables,
            "paper_table": {k: list(v) for k, v in PAPER_TABLE.items()}, "sweep_factors": list(params["sweep"]),
            "eps_sweep": eps_sweep(params, rng)}


def verdict_table(changes: list[list[float]], tolerance: float = 1e-9) -> list[list[bool]]:
    """Invariant (True) where the largest change is at most ``tolerance``."""
    return [[c <= tolerance for c in row] for row in changes]


if __name__ == "__main__":
    from . import cli

    cli(NAME)
