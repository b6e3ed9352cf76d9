r"""The geometry of §5.2, measured: implicit learning-rate reduction and the metric of the gains (chapter 5).

Three measurements, all in float64 with :math:`\epsilon = 0` (the paper's exact definitions):

1. **Rescaling a weight vector** (claim H6). A layer with weights :math:`W` (row :math:`w_i` per unit), its
   normalized summed inputs, and a fixed softmax read-out give log-likelihoods :math:`\log p(y\mid x)`.
   For batch norm and weight norm, one row :math:`w_i` is scaled by :math:`k`; for layer norm and RMSNorm,
   which are invariant to scaling the whole matrix but not one row, all of :math:`W` is. Reported per
   :math:`k`: the change of the log-likelihoods (should be zero), the gradient-norm ratio
   :math:`\lVert\nabla L(k)\rVert/\lVert\nabla L(1)\rVert` (predicted :math:`1/k`), and the Fisher quadratic form
   :math:`u^\top F u = \mathbb E_x\sum_y p(y\mid x)\,(\partial_u \log p(y\mid x))^2` along a fixed random direction
   :math:`u` of the scaled parameters (predicted :math:`1/k^2`), along the *same relative* direction
   :math:`k u` (predicted 1), and along the radial direction :math:`w` itself (predicted 0). Directional
   derivatives are central differences of the log-likelihood, independent of autograd.
2. **The metric of the gains** (claim H7, eqs. 32–35). A softmax GLM whose :math:`K` logits are
   :math:`h_i = g_i\,n_i(x) + b_i`, with :math:`n_i` the normalized summed input of unit :math:`i` (batch norm,
   layer norm, weight norm) or, for the plain GLM, :math:`a_i/\lVert w_i\rVert` with the gain update applied
   along :math:`w_i/\lVert w_i\rVert` (eq. 35). The KL metric of a gain update :math:`\delta` is
   :math:`\tfrac12\,\mathbb E_x[(\delta\odot n)^\top(\mathrm{diag}(p)-pp^\top)(\delta\odot n)]`. Reported: its value
   when the inputs are rescaled by :math:`s`, relative to :math:`s = 1`.
3. **A training run.** An MLP ``Linear(no bias) -> LayerNorm -> ReLU -> Linear`` trained with plain SGD on
   a teacher-labelled synthetic task, from two initial scales of the first weight matrix. Layer norm makes
   the loss invariant to the scale of that matrix, so its gradient is orthogonal to it and SGD obeys
   :math:`\lVert W_{t+1}\rVert^2 = \lVert W_t\rVert^2 + \eta^2\lVert\nabla_t\rVert^2` exactly: the norm only grows,
   and the *effective* step :math:`\eta\lVert\nabla_t\rVert/\lVert W_t\rVert` shrinks. Reported per step: norms,
   effective steps, losses, and the largest deviation from that identity.

Not part of :func:`run`: the autograd twin of :func:`lnlib.numpy.fisher.normalized_glm_fisher` (eq. 13),
:func:`fisher_autograd`, which chapter 5 and ``tests/test_fisher.py`` compare with the closed form. It
builds :math:`F = \mathbb E_x\,\mathbb E_{y\sim P(y\mid x)}[\nabla_\theta\log P\,\nabla_\theta\log P^\top]` from
the scores torch's autograd gives for the model's log-likelihood, with no use of the closed form's algebra.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from .. import torch as lnt
from .._checks import check_choice
from ..numpy import fisher as _fisher

NAME = "geometry"

PROFILES: dict[str, dict[str, Any]] = {
    "smoke": {"cases": 32, "inputs": 8, "units": 8, "classes": 4, "scales": [0.5, 1.0, 2.0],
              "input_scales": [0.5, 1.0, 2.0], "glm_classes": 4, "train_hidden": 16, "train_steps": 40,
              "train_batch": 16, "learning_rate": 0.5, "init_scales": [1.0, 4.0], "train_cases": 512, "log_every": 5},
    "cpu": {"cases": 512, "inputs": 32, "units": 64, "classes": 10,
            "scales": [0.25, 0.5, 1.0, 2.0, 4.0, 10.0], "input_scales": [0.1, 0.3, 1.0, 3.0, 10.0],
            "glm_classes": 10, "train_hidden": 128, "train_steps": 3000, "train_batch": 64,
            "learning_rate": 0.5, "init_scales": [1.0, 4.0], "train_cases": 20_000, "log_every": 10},
    # The paper gives no experiment for §5.2; "paper" trains four times longer.
    "paper": {"cases": 512, "inputs": 32, "units": 64, "classes": 10,
              "scales": [0.25, 0.5, 1.0, 2.0, 4.0, 10.0], "input_scales": [0.1, 0.3, 1.0, 3.0, 10.0],
              "glm_classes": 10, "train_hidden": 128, "train_steps": 12000, "train_batch": 64,
              "learning_rate": 0.5, "init_scales": [1.0, 4.0], "train_cases": 20_000, "log_every": 10},
}

METHODS = ("batch norm", "weight norm", "layer norm", "RMSNorm")
ROW_INVARIANT = ("batch norm", "weight norm")  # invariant to scaling one row; the others to scaling W


def normalized(method: str, W: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
    """Normalized summed inputs of ``X @ W.T`` (gains 1, biases 0, eps 0)."""
    if method == "weight norm":
        return X @ lnt.weight_norm(W, axis=1).T
    A = X @ W.T
    if method == "batch norm":
        return lnt.batch_norm(A, axis=0, eps=0.0)
    if method == "layer norm":
        return lnt.layer_norm(A, axis=1, eps=0.0)
    if method == "RMSNorm":
        return lnt.rms_norm(A, axis=1, eps=0.0)
    raise ValueError(f"method must be one of {METHODS}, got {method!r}")


def log_likelihoods(method: str, W: torch.Tensor, X: torch.Tensor, readout: torch.Tensor) -> torch.Tensor:
    """``log p(y | x)`` for every case and class, shape ``(N, K)``."""
    return torch.log_softmax(normalized(method, W, X) @ readout.T, dim=1)


def fisher_form(method: str, W: torch.Tensor, X: torch.Tensor, readout: torch.Tensor, direction: torch.Tensor,
                step: float = 1e-5) -> float:
    """``u^T F u`` by central differences of ``log p`` along ``u = direction`` (exact expectation over y)."""
    t = step / float(direction.norm())
    derivative = (log_likelihoods(method, W + t * direction, X, readout)
                  - log_likelihoods(method, W - t * direction, X, readout)) / (2 * t)
    p = log_likelihoods(method, W, X, readout).exp()
    return float((p * derivative**2).sum(dim=1).mean())


def rescaling(params: dict[str, Any], generator: torch.Generator, device: torch.device) -> dict[str, Any]:
    """Measurement 1: output change, gradient ratio and Fisher ratios against the scale factor k."""
    opts = {"dtype": torch.float64, "device": device}
    X = torch.randn(params["cases"], params["inputs"], generator=generator).to(**opts)
    W = (torch.randn(params["units"], params["inputs"], generator=generator) / params["inputs"] ** 0.5).to(**opts)
    readout = torch.randn(params["classes"], params["units"], generator=generator).to(**opts)
    labels = torch.randint(0, params["classes"], (params["cases"],), generator=generator).to(device)
    noise = torch.randn(W.shape, generator=generator).to(**opts)
    out: dict[str, Any] = {}
    for method in METHODS:
        mask = torch.zeros_like(W)
        if method in ROW_INVARIANT:
            mask[0] = 1.0  # scale only unit 0's weight vector
        else:
            mask += 1.0
        u = noise * mask
        base_ll = log_likelihoods(method, W, X, readout)
        base_grad = _grad(method, W, X, readout, labels) * mask
        base_fisher = fisher_form(method, W, X, readout, u)
        rows = {"output_change": [], "gradient_ratio": [], "fisher_fixed_ratio": [], "fisher_relative_ratio": []}
        for k in params["scales"]:
            Wk = W * (1.0 + (k - 1.0) * mask)
            rows["output_change"].append(float((log_likelihoods(method, Wk, X, readout) - base_ll).abs().max()))
            rows["gradient_ratio"].append(float((_grad(method, Wk, X, readout, labels) * mask).norm()
                                                / base_grad.norm()))
            rows["fisher_fixed_ratio"].append(fisher_form(method, Wk, X, readout, u) / base_fisher)
            rows["fisher_relative_ratio"].append(fisher_form(method, Wk, X, readout, k * u) / base_fisher)
        rows["radial_over_random"] = fisher_form(method, W, X, readout, W * mask) / base_fisher
        out[method] = rows
    return out


def _grad(method: str, W: torch.Tensor, X: torch.Tensor, readout: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    W = W.detach().clone().requires_grad_(True)
    loss = torch.nn.functional.nll_loss(log_likelihoods(method, W, X, readout), labels)
    (grad,) = torch.autograd.grad(loss, W)
    return grad


def gain_metric(model: str, W: torch.Tensor, X: torch.Tensor, delta: torch.Tensor) -> float:
    """KL metric ``1/2 E_x[(delta*n)^T (diag p - p p^T) (delta*n)]`` of a gain update (gains 1, biases 0)."""
    if model == "plain GLM":
        n = (X @ W.T) / W.norm(dim=1)      # the gain update moves w_i along w_i/||w_i|| (eq. 35) ...
        logits = X @ W.T                    # ... while the model itself is un-normalized
    else:
        n = normalized(model, W, X)
        logits = n
    p = torch.softmax(logits, dim=1)
    v = delta * n
    quadratic = (p * v**2).sum(dim=1) - (p * v).sum(dim=1) ** 2
    return 0.5 * float(quadratic.mean())


def gains(params: dict[str, Any], generator: torch.Generator, device: torch.device) -> dict[str, list[float]]:
    """Measurement 2: the gain metric against the input scale, relative to scale 1."""
    opts = {"dtype": torch.float64, "device": device}
    X = torch.randn(params["cases"], params["inputs"], generator=generator).to(**opts)
    W = (torch.randn(params["glm_classes"], params["inputs"], generator=generator) / params["inputs"] ** 0.5).to(**opts)
    delta = torch.randn(params["glm_classes"], generator=generator).to(**opts)
    out = {}
    for model in ("batch norm", "layer norm", "weight norm", "plain GLM"):
        reference = gain_metric(model, W, X, delta)
        out[model] = [gain_metric(model, W, s * X, delta) / reference for s in params["input_scales"]]
    return out


def train(params: dict[str, Any], init_scale: float, seed: int, device: torch.device,
          progress: bool) -> dict[str, list[float]]:
    """Measurement 3: SGD on ``Linear(no bias) -> LN -> ReLU -> Linear``; norms, effective steps, losses.

    Every run with the same ``seed`` sees the same task, initial directions and mini-batches; only the
    scale of the first weight matrix differs, so all runs start from the same function.
    """
    generator = torch.Generator().manual_seed(seed)
    opts = {"dtype": torch.float64, "device": device}
    d, h, k = params["inputs"], params["train_hidden"], params["classes"]
    teacher = torch.randn(k, d, generator=generator).to(**opts)
    X = torch.randn(params["train_cases"], d, generator=generator).to(**opts)
    y = (X @ teacher.T).argmax(dim=1)
    W1 = (init_scale * torch.randn(h, d, generator=generator) / d**0.5).to(**opts).requires_grad_(True)
    W2 = (torch.randn(k, h, generator=generator) / h**0.5).to(**opts).requires_grad_(True)
    b2 = torch.zeros(k, **opts, requires_grad=True)
    lr = params["learning_rate"]
    log: dict[str, Any] = {"initial_norm": float(W1.detach().norm()), "step": [], "norm": [],
                           "effective_step": [], "loss": []}
    worst_identity_error, recent_losses = 0.0, []
    for step in tqdm(range(1, params["train_steps"] + 1), desc=f"SGD, init scale {init_scale:g}",
                     disable=not progress):
        idx = torch.randint(0, X.shape[0], (params["train_batch"],), generator=generator).to(device)
        hidden = torch.relu(lnt.layer_norm(X[idx] @ W1.T, axis=1, eps=0.0))
        loss = torch.nn.functional.cross_entropy(hidden @ W2.T + b2, y[idx])
        grads = torch.autograd.grad(loss, (W1, W2, b2))
        with torch.no_grad():
            norm2_before, grad2 = float(W1.square().sum()), float(grads[0].square().sum())
            for p, g in zip((W1, W2, b2), grads):
                p -= lr * g
            norm2_after = float(W1.square().sum())
        worst_identity_error = max(worst_identity_error, abs(norm2_after - norm2_before - lr**2 * grad2) / norm2_before)
        recent_losses.append(float(loss.detach()))
        if step == 1 or step % params["log_every"] == 0:  # the loss is averaged since the last point
            log["step"].append(step)
            log["norm"].append(norm2_after**0.5)
            log["effective_step"].append(lr * grad2**0.5 / norm2_before**0.5)
            log["loss"].append(sum(recent_losses) / len(recent_losses))
            recent_losses = []
    log["identity_error_max"] = worst_identity_error
    return log


def glm_log_likelihood(theta: torch.Tensor, X: torch.Tensor, Y: torch.Tensor, *, output: str, phi: float,
                       statistics: str) -> torch.Tensor:
    r"""``log P(y_n | x_n; theta)`` of the normalized GLM for every case, shape ``(N,)`` (torch, differentiable).

    ``theta`` is ``(H, D+2)``, row :math:`i` holding :math:`(w_i, b_i, g_i)` (flattened, this is
    :math:`\mathrm{vec}([W, b, g]^\top)`); ``X`` is ``(N, D)``, ``Y`` is ``(N, H)``: one-hot rows for
    ``output="softmax"``, real values for ``"gaussian"``. The logits are
    :math:`h_i = g_i (a_i - \mu_i)/\sigma_i + b_i` with :math:`\mu_i, \sigma_i` the mean and standard deviation
    (``ddof`` 0) of :math:`a_i` over the rows of ``X``, computed from ``theta`` (``statistics="population"``)
    or from a detached copy of it (``"fixed"``: their values are the same, their derivatives are dropped).
    ``softmax``: :math:`y^\top h - \log\sum_k e^{h_k}`; ``gaussian``: eq. 10 with :math:`\eta(h) = h^2/2`,
    :math:`c(y, \phi) = -y^2/(2\phi) - \tfrac12\log(2\pi\phi)`, summed over the :math:`H` outputs.
    """
    h = _logits(theta, X, None if statistics == "population" else theta[:, :-2].detach())
    if output == "softmax":
        return (Y * torch.log_softmax(h, dim=1)).sum(dim=1)
    return ((h * Y - h.square() / 2) / phi - Y.square() / (2 * phi) - 0.5 * np.log(2 * np.pi * phi)).sum(dim=1)


def fisher_autograd(X: object, W: object, b: object, g: object, *, output: str = "softmax", phi: float = 1.0,
                    statistics: str = "population") -> np.ndarray:
    r"""The Fisher matrix of the normalized GLM from autograd scores: the twin of eq. 13, ``(P, P)`` float64.

    Arguments and parameter order as in :func:`lnlib.numpy.fisher.normalized_glm_fisher`. For each case
    :math:`x_n` and outcome :math:`y`, the score :math:`s = \nabla_\theta \log P(y\mid x_n)` of
    :func:`glm_log_likelihood` comes from ``torch.autograd``; then
    :math:`F = \frac1N\sum_n \sum_y q_n(y)\, s s^\top`, with the expectation over :math:`y` done exactly:

    - ``softmax``: :math:`y` runs over the :math:`H` classes with weights :math:`q_n(y) = p(y\mid x_n)`;
    - ``gaussian``: :math:`y = h(x_n) + \sqrt\phi\,e` for the :math:`2^H` sign vectors
      :math:`e \in \{-1, 1\}^H`, each with weight :math:`2^{-H}`. The score is linear in :math:`y`, so
      :math:`ss^\top` is a polynomial of degree 2 in it, and this product Gauss–Hermite rule (two nodes per
      output, exact up to degree 3 in each coordinate) gives its expectation under
      :math:`\mathcal N(h, \phi I)` exactly.

    With ``statistics="population"`` this is the Fisher matrix of the model as defined (statistics
    differentiated through); with ``"fixed"``, of the model with the statistics held constant.
    """
    X, W, b, g = _fisher.check_normalized_glm(X, W, b, g)
    output = check_choice(output, _fisher.OUTPUTS, name="output")
    statistics = check_choice(statistics, _fisher.STATISTICS, name="statistics")
    phi = _fisher.check_phi(phi, output)
    X_t = torch.from_numpy(X)
    theta = torch.from_numpy(np.concatenate([W, b[:, None], g[:, None]], axis=1))
    n, h = X.shape[0], W.shape[0]
    outcomes: list[tuple[torch.Tensor, torch.Tensor]] = []  # (Y, q(Y | x_n)); Y is data, constant in theta
    with torch.no_grad():
        if output == "softmax":
            for k in range(h):
                Y = torch.zeros(n, h, dtype=torch.float64)
                Y[:, k] = 1.0
                outcomes.append((Y, glm_log_likelihood(theta, X_t, Y, output=output, phi=phi,
                                                       statistics=statistics).exp()))
        else:
            mean = _logits(theta, X_t)
            for signs in itertools.product((-1.0, 1.0), repeat=h):
                Y = mean + phi**0.5 * torch.tensor(signs, dtype=torch.float64)
                outcomes.append((Y, torch.full((n,), 2.0**-h, dtype=torch.float64)))
    fisher = torch.zeros(theta.numel(), theta.numel(), dtype=torch.float64)
    for Y, weight in outcomes:
        scores = torch.autograd.functional.jacobian(
            lambda t, Y=Y: glm_log_likelihood(t, X_t, Y, output=output, phi=phi, statistics=statistics), theta,
            vectorize=True)
        scores = scores.reshape(n, -1)
        fisher += scores.T @ (weight[:, None] * scores)
    return (fisher / n).numpy()


def gradient_autograd(X: object, W: object, b: object, g: object, Y: object, *, output: str = "softmax",
                      phi: float = 1.0, statistics: str = "population") -> np.ndarray:
    """Gradient of the mean log-likelihood ``mean_n log P(Y[n] | X[n])`` with respect to ``theta``, ``(H, D+2)``.

    ``Y`` is ``(N, H)`` (one-hot rows for softmax); the rest as in :func:`fisher_autograd`.
    """
    X, W, b, g = _fisher.check_normalized_glm(X, W, b, g)
    output = check_choice(output, _fisher.OUTPUTS, name="output")
    statistics = check_choice(statistics, _fisher.STATISTICS, name="statistics")
    phi = _fisher.check_phi(phi, output)
    Y = np.asarray(Y, dtype=np.float64)
    if Y.shape != (X.shape[0], W.shape[0]):
        raise ValueError(f"Y must have shape {(X.shape[0], W.shape[0])} (cases, units), got shape {Y.shape}")
    theta = torch.from_numpy(np.concatenate([W, b[:, None], g[:, None]], axis=1)).requires_grad_(True)
    loglik = glm_log_likelihood(theta, torch.from_numpy(X), torch.from_numpy(Y), output=output, phi=phi,
                                statistics=statistics).mean()
    (grad,) = torch.autograd.grad(loglik, theta)
    return grad.numpy()


def _logits(theta: torch.Tensor, X: torch.Tensor, stats_W: torch.Tensor | None = None) -> torch.Tensor:
    """:math:`h_i = g_i (a_i - \\mu_i)/\\sigma_i + b_i`, the statistics from ``stats_W`` (default: ``theta``'s W)."""
    W, b, g = theta[:, :-2], theta[:, -2], theta[:, -1]
    a_stats = X @ (W if stats_W is None else stats_W).T
    mu = a_stats.mean(dim=0)
    sigma = (a_stats - mu).square().mean(dim=0).sqrt()
    return g * (X @ W.T - mu) / sigma + b


def run(params: dict[str, Any], *, profile: str = "", seed: int, device: str, progress: bool = True) -> dict[str, Any]:
    """All three measurements; JSON-ready."""
    dev = torch.device(device)
    generator = torch.Generator().manual_seed(seed)
    data: dict[str, Any] = {"scales": list(params["scales"]), "input_scales": list(params["input_scales"])}
    data["rescaling"] = rescaling(params, generator, dev)
    data["gains"] = gains(params, generator, dev)
    data["training"] = {str(s): train(params, s, seed + 1, dev, progress) for s in params["init_scales"]}
    return data


if __name__ == "__main__":
    from . import cli

    cli(NAME)
