r"""The Fisher information of a normalized generalized linear model in closed form (the paper's eqs. 10–14).

**The GLM (eqs. 10–11).** One output with summed input :math:`a = w^\top x` and bias :math:`b` has

.. math::

    \log P(y\mid x; w, b) = \frac{(a+b)\,y - \eta(a+b)}{\phi} + c(y, \phi), \qquad
    \mathbb E[y\mid x] = f(a+b) = \eta'(a+b), \qquad \mathrm{Var}[y\mid x] = \phi\, f'(a+b),

so the score with respect to the natural parameter :math:`h = a + b` is :math:`(y - f(h))/\phi`. With
:math:`H` outputs :math:`h \in \mathbb R^H`, independent (a sum of such terms) or a softmax (a multinomial
with :math:`\phi = 1`: :math:`\log P = y^\top h - \log\sum_k e^{h_k}` for a one-hot :math:`y`), the score is
:math:`(y - \mathbb E[y\mid x])/\phi`. With :math:`J = \partial h/\partial\theta` (an :math:`H\times P`
matrix per case) the chain rule gives

.. math::

    \frac{\partial \log P}{\partial\theta} = J^\top\,\frac{y - \mathbb E[y\mid x]}{\phi}, \qquad
    F(\theta) = \mathop{\mathbb E}_{x}\,\mathop{\mathbb E}_{y\sim P(y\mid x)}
        \Big[\frac{\partial \log P}{\partial\theta}\frac{\partial \log P}{\partial\theta}^{\!\top}\Big]
      = \mathop{\mathbb E}_{x}\Big[J^\top\,\frac{\mathrm{Cov}[y\mid x]}{\phi^2}\,J\Big].

For the plain GLM :math:`h_i = w_i^\top x + b_i`, row :math:`i` of :math:`J` is :math:`[x^\top, 1]` in unit
:math:`i`'s slot, which is eq. 12: :math:`F = \mathbb E_x[\mathrm{Cov}[y\mid x]/\phi^2 \otimes
\left[\begin{smallmatrix} xx^\top & x\\ x^\top & 1\end{smallmatrix}\right]]`.

**The normalized GLM (eqs. 13–14).** The logits are :math:`h_i = g_i\,(a_i - \mu_i)/\sigma_i + b_i` with the
batch-norm statistics of eq. 2 over the data distribution, :math:`\mu_i = \mathbb E_x[a_i]` and
:math:`\sigma_i^2 = \mathbb E_x[(a_i-\mu_i)^2]`: numbers that depend on :math:`w_i` but not on the case
:math:`x`. The parameters are :math:`\theta = \mathrm{vec}([W, b, g]^\top)`, i.e. unit by unit
:math:`(w_1, b_1, g_1, w_2, b_2, g_2, \dots)`, :math:`D + 2` entries per unit. :math:`h_i` depends on unit
:math:`i`'s parameters only, through

.. math::

    J_i = \frac{\partial h_i}{\partial (w_i, b_i, g_i)}
        = \Big[\frac{g_i}{\sigma_i}\chi_i,\; 1,\; \frac{a_i - \mu_i}{\sigma_i}\Big], \qquad
    \chi_i = x - \frac{\partial\mu_i}{\partial w_i} - \frac{a_i-\mu_i}{\sigma_i}\frac{\partial\sigma_i}{\partial w_i},

and block :math:`(i, j)` of the Fisher matrix is :math:`\bar F_{ij} = \mathbb E_x[\mathrm{Cov}[y_i, y_j\mid x]
/\phi^2\; J_i J_j^\top]`; the outer product :math:`J_i J_j^\top` is, entry by entry, the bracketed
:math:`3\times3` block matrix of eq. 13. When :math:`P(x)` is the uniform distribution over :math:`N` cases
:math:`x_n` (statistics with ``ddof`` 0), :math:`\mu_i = w_i^\top\bar x` and :math:`\sigma_i^2 = w_i^\top S w_i`
with :math:`S = \frac1N\sum_n (x_n-\bar x)(x_n-\bar x)^\top`, so

.. math::

    \frac{\partial\mu_i}{\partial w_i} = \bar x, \qquad \frac{\partial\sigma_i}{\partial w_i} = \frac{S w_i}{\sigma_i},
    \qquad \chi_i = x - \bar x - z_i\,\frac{S w_i}{\sigma_i}, \quad z_i = \frac{a_i - \mu_i}{\sigma_i}.

Two consequences: :math:`w_i^\top\chi_i = (a_i - \mu_i) - z_i\sigma_i = 0` (a step along :math:`w_i` itself
does not change the model), and :math:`\chi_i` and :math:`z_i` do not change when :math:`w_i \to k w_i`, so
:math:`\bar F(k w_i) = D_k \bar F(w_i) D_k` with :math:`D_k` the diagonal matrix that holds :math:`1/k` at the
entries of :math:`w_i` and 1 elsewhere: the :math:`w_i`–:math:`w_i` block scales by :math:`1/k^2`, the rest of
:math:`w_i`'s rows and columns by :math:`1/k`, everything else not at all.

**When the closed form is the Fisher matrix.** Nothing is dropped: :math:`\chi_i` carries the dependence
of :math:`\mu_i` and :math:`\sigma_i` on :math:`w_i`. With ``statistics="population"`` the result is the
Fisher matrix of the model whose statistics are computed from the data set as functions of :math:`W`, and
differentiated through. ``statistics="fixed"`` treats :math:`\mu_i, \sigma_i` as constants (their values
are the same; only their derivatives are dropped, as for statistics frozen to running averages): then
:math:`\chi_i = x`, and the result is the Fisher matrix of that other model. Both equal the expected outer
product of autograd scores of the corresponding model (:func:`lnlib.experiments.geometry.fisher_autograd`).
The block form needs per-unit statistics, as batch norm has; under layer norm :math:`\mu` and
:math:`\sigma` are shared by the units of a case, :math:`h_i` depends on every :math:`w_j`, and eq. 13 is not
its Fisher matrix. :math:`\epsilon = 0` throughout, as in the paper.

**Output distributions** (``output``): ``"softmax"``, :math:`\mathrm{Cov}[y\mid x] = \mathrm{diag}(p) - pp^\top`
with :math:`p = \mathrm{softmax}(h)` and :math:`\phi = 1`; ``"gaussian"``, independent
:math:`y_i \sim \mathcal N(h_i, \phi)` (:math:`\eta(h) = h^2/2`, :math:`f` the identity), :math:`\mathrm{Cov}[y\mid x]
= \phi I`, so :math:`\mathrm{Cov}/\phi^2 = I/\phi`.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from .._checks import check_choice
from ._arrays import as_float_array

OUTPUTS = ("softmax", "gaussian")
STATISTICS = ("population", "fixed")


def normalized_glm_fisher(X: object, W: object, b: object, g: object, *, output: str = "softmax",
                          phi: float = 1.0, statistics: str = "population") -> np.ndarray:
    r"""The paper's eq. 13: the Fisher matrix :math:`\bar F` of a normalized GLM, shape ``(P, P)``, float64.

    ``X`` holds the data set, ``(N, D)``, one case per row; :math:`P(x)` is uniform over its rows and the
    statistics :math:`\mu_i, \sigma_i` are the mean and standard deviation (``ddof`` 0) of
    :math:`a_i = w_i^\top x` over them. ``W`` is ``(H, D)``, one unit per row; ``b`` and ``g`` are ``(H,)``.
    ``P = H * (D + 2)``, ordered as :math:`\theta = \mathrm{vec}([W, b, g]^\top)`: entries
    ``i*(D+2) : i*(D+2)+D`` are :math:`w_i`, then :math:`b_i`, then :math:`g_i`, so the block
    :math:`\bar F_{ij}` is ``F.reshape(H, D+2, H, D+2)[i, :, j, :]``. ``output`` (``"softmax"`` or ``"gaussian"``), ``phi`` (the
    dispersion :math:`\phi > 0`; 1 for softmax) and ``statistics`` (``"population"``: :math:`\chi_i` of eq. 14;
    ``"fixed"``: :math:`\chi_i = x`) are as in the module docstring.

    Raises ``TypeError`` for arrays that are not real floating (tensors included) and for a ``phi`` that is
    not a real number; ``ValueError`` for wrong shapes, non-finite values, fewer than 2 cases, a unit whose
    summed input is constant over ``X`` (:math:`\sigma_i = 0`), an unknown ``output`` or ``statistics``, or a
    ``phi`` that is not finite and positive (or not 1 with ``output="softmax"``).
    """
    X, W, b, g = check_normalized_glm(X, W, b, g)
    output = check_choice(output, OUTPUTS, name="output")
    statistics = check_choice(statistics, STATISTICS, name="statistics")
    phi = check_phi(phi, output)
    jac = _jacobian(X, W, g, statistics)
    cov = output_covariance(g * _standardized(X, W)[2] + b, output=output, phi=phi) / phi**2
    n, h, m = jac.shape
    blocks = np.einsum("nij,nip,njq->ipjq", cov, jac, jac) / n
    return blocks.reshape(h * m, h * m)


def normalized_glm_jacobian(X: object, W: object, b: object, g: object, *,
                            statistics: str = "population") -> np.ndarray:
    r"""Per case and unit, :math:`J_i = [g_i\chi_i/\sigma_i,\; 1,\; (a_i-\mu_i)/\sigma_i]`: shape ``(N, H, D+2)``.

    Row ``[n, i]`` is :math:`\partial h_i/\partial(w_i, b_i, g_i)` at case ``n`` (:math:`h_i` does not depend on
    the other units' parameters). ``statistics`` and the arguments as in :func:`normalized_glm_fisher`.
    """
    X, W, b, g = check_normalized_glm(X, W, b, g)
    return _jacobian(X, W, g, check_choice(statistics, STATISTICS, name="statistics"))


def _jacobian(X: np.ndarray, W: np.ndarray, g: np.ndarray, statistics: str) -> np.ndarray:
    centered, sigma, z = _standardized(X, W)
    if statistics == "population":
        covariance = centered.T @ centered / X.shape[0]                  # S
        chi = centered[:, None, :] - z[:, :, None] * ((W @ covariance) / sigma[:, None])[None]
    else:
        chi = np.broadcast_to(X[:, None, :], (X.shape[0], W.shape[0], X.shape[1]))
    ones = np.ones_like(z)[:, :, None]
    return np.concatenate([(g / sigma)[None, :, None] * chi, ones, z[:, :, None]], axis=2)


def normalized_glm_logits(X: object, W: object, b: object, g: object) -> np.ndarray:
    r"""The natural parameters :math:`h_i = g_i\,(a_i - \mu_i)/\sigma_i + b_i`, shape ``(N, H)``."""
    X, W, b, g = check_normalized_glm(X, W, b, g)
    return g * _standardized(X, W)[2] + b


def output_covariance(h: object, *, output: str, phi: float = 1.0) -> np.ndarray:
    r""":math:`\mathrm{Cov}[y\mid x]` for natural parameters ``h`` of shape ``(N, H)``: shape ``(N, H, H)``.

    ``"softmax"``: :math:`\mathrm{diag}(p) - pp^\top`, :math:`p = \mathrm{softmax}(h)` (``phi`` must be 1).
    ``"gaussian"``: :math:`\phi I`.
    """
    h = np.asarray(as_float_array(h, name="h"), dtype=np.float64)
    if h.ndim != 2:
        raise ValueError(f"h must be a 2-D (cases, units) array, got shape {h.shape}")
    output = check_choice(output, OUTPUTS, name="output")
    phi = check_phi(phi, output)
    if output == "gaussian":
        return np.broadcast_to(phi * np.eye(h.shape[1]), (h.shape[0], h.shape[1], h.shape[1])).copy()
    e = np.exp(h - h.max(axis=1, keepdims=True))
    p = e / e.sum(axis=1, keepdims=True)
    return p[:, :, None] * np.eye(h.shape[1]) - p[:, :, None] * p[:, None, :]


def check_normalized_glm(X: object, W: object, b: object, g: object) -> tuple[np.ndarray, ...]:
    """``(X, W, b, g)`` as float64 arrays of shapes ``(N, D)``, ``(H, D)``, ``(H,)``, ``(H,)``, all finite, with
    ``N >= 2`` and every unit's summed input non-constant over ``X``; ``TypeError``/``ValueError`` otherwise."""
    arrays = {name: np.asarray(as_float_array(value, name=name), dtype=np.float64)
              for name, value in (("X", X), ("W", W), ("b", b), ("g", g))}
    X, W, b, g = arrays.values()
    if X.ndim != 2 or X.shape[0] < 2 or X.shape[1] < 1:
        raise ValueError(f"X must be a 2-D (cases, inputs) array with at least 2 cases and 1 input, "
                         f"got shape {X.shape}")
    if W.ndim != 2 or W.shape[0] < 1 or W.shape[1] != X.shape[1]:
        raise ValueError(f"W must be a 2-D (units, inputs) array with {X.shape[1]} inputs (the columns of X), "
                         f"got shape {W.shape}")
    for name, value in (("b", b), ("g", g)):
        if value.shape != (W.shape[0],):
            raise ValueError(f"{name} must have shape ({W.shape[0]},), one entry per unit (row of W), "
                             f"got shape {value.shape}")
    for name, value in arrays.items():
        if not np.all(np.isfinite(value)):
            raise ValueError(f"{name} must be finite, got {np.count_nonzero(~np.isfinite(value))} "
                             f"non-finite entries")
    sigma = _standardized(X, W)[1]
    scale = np.linalg.norm(W, axis=1) * np.abs(X).max()
    flat = np.flatnonzero(~(sigma > 1e3 * np.finfo(np.float64).eps * scale))
    if flat.size:
        raise ValueError(f"W row {int(flat[0])} gives a summed input that is constant over the cases of X "
                         f"(sigma = {sigma[flat[0]]:.3g}): its normalized input is undefined")
    return X, W, b, g


def check_phi(phi: object, output: str) -> float:
    """The dispersion ``phi``: a finite real number > 0, and exactly 1 for ``output="softmax"``."""
    if isinstance(phi, bool) or not isinstance(phi, numbers.Real):
        raise TypeError(f"phi must be a real number, got {phi!r} ({type(phi).__name__})")
    value = float(phi)
    if not 0.0 < value < math.inf:
        raise ValueError(f"phi must be a finite number > 0, got {phi!r}")
    if output == "softmax" and value != 1.0:
        raise ValueError(f"phi must be 1 for output='softmax' (a softmax has no dispersion), got {phi!r}")
    return value


def _standardized(X: np.ndarray, W: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(X - mean(X), sigma, z)``: the centred cases, :math:`\\sigma_i` and :math:`z_i = (a_i - \\mu_i)/\\sigma_i`."""
    centered = X - X.mean(axis=0)
    deviations = centered @ W.T                                   # a_i - mu_i, exactly as (x - xbar) . w_i
    sigma = np.sqrt(np.mean(deviations**2, axis=0))
    with np.errstate(divide="ignore", invalid="ignore"):          # sigma = 0 is refused by the check
        return centered, sigma, deviations / sigma
