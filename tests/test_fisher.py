"""The Fisher matrix of a normalized GLM (lnlib.numpy.fisher, the paper's eqs. 12-14): the closed form against
the autograd twin (lnlib.experiments.geometry.fisher_autograd), entry by entry against eq. 13 written out,
its structure (symmetric, PSD, null directions, the scaling law of a weight vector), and bad input."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import needs_torch, torch
from lnlib.numpy import fisher

SEEDS = [0, 1, 2]
# (output, phi): the softmax has no dispersion; the Gaussian output is tried with phi != 1
OUTPUTS = [("softmax", 1.0), ("gaussian", 0.5), ("gaussian", 2.0)]
OUTPUT_IDS = [f"{o}-phi{p:g}" for o, p in OUTPUTS]


def _model(seed: int, n: int = 30, d: int = 4, h: int = 3):
    """A small random normalized GLM: inputs off-centre and correlated, so x-bar and S matter in chi."""
    rng = np.random.default_rng(seed)
    mixing = rng.normal(size=(d, d))
    X = rng.normal(size=(n, d)) @ mixing + rng.normal(size=d)
    return X, rng.normal(size=(h, d)), rng.normal(size=h), rng.normal(1.0, 0.5, size=h)


def _unit_block(F: np.ndarray, h: int, i: int, j: int) -> np.ndarray:
    m = F.shape[0] // h
    return F.reshape(h, m, h, m)[i, :, j, :]


@needs_torch
@pytest.mark.parametrize("statistics", fisher.STATISTICS)
@pytest.mark.parametrize("output,phi", OUTPUTS, ids=OUTPUT_IDS)
@pytest.mark.parametrize("seed", SEEDS)
def test_closed_form_equals_autograd_fisher(seed, output, phi, statistics):
    from lnlib.experiments import geometry

    X, W, b, g = _model(seed)
    closed = fisher.normalized_glm_fisher(X, W, b, g, output=output, phi=phi, statistics=statistics)
    auto = geometry.fisher_autograd(X, W, b, g, output=output, phi=phi, statistics=statistics)
    assert closed.shape == auto.shape == (3 * 6, 3 * 6) and closed.dtype == auto.dtype == np.float64
    assert np.abs(closed).max() > 1e-2, "a vanishing matrix would make the comparison empty"
    assert np.abs(closed - auto).max() <= 1e-10 * np.abs(auto).max()


@needs_torch
@pytest.mark.parametrize("output,phi", OUTPUTS, ids=OUTPUT_IDS)
def test_the_comparison_tells_the_two_statistics_apart(output, phi):
    """Dropping the derivatives of mu and sigma changes the Fisher matrix by far more than the tolerance."""
    from lnlib.experiments import geometry

    X, W, b, g = _model(3)
    full = fisher.normalized_glm_fisher(X, W, b, g, output=output, phi=phi, statistics="population")
    fixed_auto = geometry.fisher_autograd(X, W, b, g, output=output, phi=phi, statistics="fixed")
    assert np.abs(full - fixed_auto).max() > 1e-2 * np.abs(full).max()
    # the b and g rows and columns do not involve chi: there the two agree
    keep = np.tile(np.r_[np.zeros(X.shape[1], bool), True, True], W.shape[0])
    np.testing.assert_allclose(full[np.ix_(keep, keep)], fixed_auto[np.ix_(keep, keep)], rtol=0, atol=1e-12)


@pytest.mark.parametrize("statistics", fisher.STATISTICS)
@pytest.mark.parametrize("output,phi", OUTPUTS, ids=OUTPUT_IDS)
def test_every_block_is_eq_13_written_out(output, phi, statistics):
    """Block (i, j) is E_x[Cov_ij / phi^2 * the 3x3 bracket of eq. 13], built here case by case."""
    X, W, b, g = _model(4, n=12)
    F = fisher.normalized_glm_fisher(X, W, b, g, output=output, phi=phi, statistics=statistics)
    n, d = X.shape
    h = W.shape[0]
    xbar = X.mean(axis=0)
    S = (X - xbar).T @ (X - xbar) / n
    a = X @ W.T
    mu = a.mean(axis=0)
    sigma = np.sqrt(((a - mu) ** 2).mean(axis=0))
    logits = g * (a - mu) / sigma + b
    for i in range(h):
        for j in range(h):
            block = np.zeros((d + 2, d + 2))
            for case in range(n):
                x = X[case]
                if output == "softmax":
                    p = np.exp(logits[case] - logits[case].max())
                    p /= p.sum()
                    cov = (p[i] if i == j else 0.0) - p[i] * p[j]
                else:
                    cov = phi if i == j else 0.0
                chi = {}
                for k in (i, j):
                    chi[k] = x if statistics == "fixed" else (
                        x - xbar - (a[case, k] - mu[k]) / sigma[k] * (S @ W[k]) / sigma[k])
                ci, cj = (a[case, i] - mu[i]) / sigma[i], (a[case, j] - mu[j]) / sigma[j]
                bracket = np.zeros((d + 2, d + 2))
                bracket[:d, :d] = g[i] * g[j] / (sigma[i] * sigma[j]) * np.outer(chi[i], chi[j])
                bracket[:d, d] = chi[i] * g[i] / sigma[i]
                bracket[:d, d + 1] = chi[i] * g[i] * cj / sigma[i]
                bracket[d, :d] = chi[j] * g[j] / sigma[j]
                bracket[d, d] = 1.0
                bracket[d, d + 1] = cj
                bracket[d + 1, :d] = chi[j] * g[j] * ci / sigma[j]
                bracket[d + 1, d] = ci
                bracket[d + 1, d + 1] = ci * cj
                block += cov / phi**2 * bracket / n
            np.testing.assert_allclose(_unit_block(F, h, i, j), block, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("output,phi", OUTPUTS, ids=OUTPUT_IDS)
def test_fixed_statistics_with_gains_sigma_is_eq_12_on_w_and_b(output, phi):
    """With mu, sigma constant and g_i = sigma_i, h_i = w_i.x + b_i - mu_i: the (w, b) part is eq. 12."""
    X, W, b, _ = _model(5)
    n, d = X.shape
    h = W.shape[0]
    a = X @ W.T
    sigma = np.sqrt(((a - a.mean(axis=0)) ** 2).mean(axis=0))
    F = fisher.normalized_glm_fisher(X, W, b, sigma, output=output, phi=phi, statistics="fixed")
    cov = fisher.output_covariance(fisher.normalized_glm_logits(X, W, b, sigma), output=output, phi=phi)
    eq12 = sum(np.kron(cov[k] / phi**2, np.block([[np.outer(x, x), x[:, None]], [x[None, :], np.ones((1, 1))]]))
               for k, x in enumerate(X)) / n
    wb = np.tile(np.r_[np.ones(d + 1, bool), False], h)
    np.testing.assert_allclose(F[np.ix_(wb, wb)], eq12, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("statistics", fisher.STATISTICS)
@pytest.mark.parametrize("output,phi", OUTPUTS, ids=OUTPUT_IDS)
@pytest.mark.parametrize("seed", SEEDS)
def test_symmetric_and_positive_semidefinite(seed, output, phi, statistics):
    F = fisher.normalized_glm_fisher(*_model(seed), output=output, phi=phi, statistics=statistics)
    scale = np.abs(F).max()
    assert np.abs(F - F.T).max() <= 1e-14 * scale
    eigenvalues = np.linalg.eigvalsh(F)
    assert eigenvalues.min() >= -1e-12 * scale
    assert eigenvalues.max() > 1e-3 * scale


@pytest.mark.parametrize("output,phi", OUTPUTS, ids=OUTPUT_IDS)
def test_null_directions(output, phi):
    """A step along w_i itself changes nothing (w_i . chi_i = 0); for a softmax neither does adding the
    same constant to every bias. Neither holds with the statistics held fixed."""
    X, W, b, g = _model(6)
    d, h = X.shape[1], W.shape[0]
    full = fisher.normalized_glm_fisher(X, W, b, g, output=output, phi=phi)
    fixed = fisher.normalized_glm_fisher(X, W, b, g, output=output, phi=phi, statistics="fixed")
    for i in range(h):
        radial = np.zeros((h, d + 2))
        radial[i, :d] = W[i]
        radial = radial.ravel()
        assert radial @ full @ radial <= 1e-12 * np.abs(full).max() * (radial @ radial)
        assert radial @ fixed @ radial > 1e-3 * np.abs(fixed).max() * (radial @ radial)
    shift = np.zeros((h, d + 2))
    shift[:, d] = 1.0
    shift = shift.ravel()
    if output == "softmax":
        assert np.abs(full @ shift).max() <= 1e-13
    else:
        assert shift @ full @ shift == pytest.approx(h / phi, rel=1e-12)  # Cov/phi^2 = I/phi, d h_i/d b_i = 1


@pytest.mark.parametrize("k", [0.5, 2.0, 10.0])
@pytest.mark.parametrize("output,phi", OUTPUTS, ids=OUTPUT_IDS)
def test_scaling_a_weight_vector_by_k_scales_its_rows_and_columns_by_1_over_k(output, phi, k):
    """F(k w_i) = D_k F(w_i) D_k: the w_i-w_i block x 1/k^2 (a fixed step), a relative step k u unchanged."""
    X, W, b, g = _model(7)
    d, h = X.shape[1], W.shape[0]
    scaled = W.copy()
    scaled[1] *= k
    F = fisher.normalized_glm_fisher(X, W, b, g, output=output, phi=phi)
    Fk = fisher.normalized_glm_fisher(X, scaled, b, g, output=output, phi=phi)
    diagonal = np.ones((h, d + 2))
    diagonal[1, :d] = 1.0 / k
    diagonal = diagonal.ravel()
    np.testing.assert_allclose(Fk, diagonal[:, None] * F * diagonal[None, :], rtol=1e-10, atol=1e-12)
    block, block_k = _unit_block(F, h, 1, 1)[:d, :d], _unit_block(Fk, h, 1, 1)[:d, :d]
    u = np.random.default_rng(8).normal(size=d)
    assert (u @ block_k @ u) / (u @ block @ u) == pytest.approx(1 / k**2, rel=1e-10)
    assert ((k * u) @ block_k @ (k * u)) / (u @ block @ u) == pytest.approx(1.0, rel=1e-10)


@needs_torch
def test_gradient_is_orthogonal_to_w_and_halves_when_w_doubles():
    from lnlib.experiments import geometry

    X, W, b, g = _model(9)
    labels = np.random.default_rng(10).integers(0, W.shape[0], size=X.shape[0])
    Y = np.eye(W.shape[0])[labels]
    d = X.shape[1]
    grad = geometry.gradient_autograd(X, W, b, g, Y)
    assert grad.shape == (W.shape[0], d + 2)
    assert np.abs((grad[:, :d] * W).sum(axis=1)).max() <= 1e-14 * np.abs(grad).max() * np.abs(W).max()
    doubled = W.copy()
    doubled[0] *= 2.0
    grad2 = geometry.gradient_autograd(X, doubled, b, g, Y)
    assert np.linalg.norm(grad2[0, :d]) / np.linalg.norm(grad[0, :d]) == pytest.approx(0.5, rel=1e-12)
    np.testing.assert_allclose(grad2[:, d:], grad[:, d:], rtol=1e-12, atol=1e-15)  # b and g: unchanged
    fixed = geometry.gradient_autograd(X, W, b, g, Y, statistics="fixed")
    assert np.abs((fixed[:, :d] * W).sum(axis=1)).max() > 1e-6


def test_float32_input_is_computed_in_float64():
    X, W, b, g = _model(11)
    F64 = fisher.normalized_glm_fisher(X, W, b, g)
    F32 = fisher.normalized_glm_fisher(*(a.astype(np.float32) for a in (X, W, b, g)))
    assert F32.dtype == np.float64
    np.testing.assert_allclose(F32, F64, rtol=1e-4, atol=1e-6)


def _bad_inputs():
    X, W, b, g = _model(12)
    nan = X.copy()
    nan[2, 1] = np.nan
    constant = X.copy()
    constant[:] = 1.5  # every summed input is constant over the cases
    return [
        ("int X", dict(X=X.astype(int)), TypeError, "X must have a real floating dtype"),
        ("list of lists W", dict(W=[[1, 2, 3, 4]] * 3), TypeError, "W must have a real floating dtype"),
        ("1-D X", dict(X=X[0]), ValueError, "X must be a 2-D"),
        ("one case", dict(X=X[:1]), ValueError, "at least 2 cases"),
        ("W columns", dict(W=W[:, :3]), ValueError, "W must be a 2-D .units, inputs. array with 4 inputs"),
        ("b shape", dict(b=b[:2]), ValueError, r"b must have shape \(3,\)"),
        ("g shape", dict(g=g[:, None]), ValueError, r"g must have shape \(3,\)"),
        ("NaN in X", dict(X=nan), ValueError, "X must be finite"),
        ("inf gain", dict(g=np.r_[g[:2], np.inf]), ValueError, "g must be finite"),
        ("constant inputs", dict(X=constant), ValueError, "W row 0 gives a summed input that is constant"),
        ("zero weight row", dict(W=np.r_[W[:2], np.zeros((1, 4))]), ValueError, "W row 2"),
        ("unknown output", dict(output="poisson"), ValueError, "output must be one of"),
        ("unknown statistics", dict(statistics="batch"), ValueError, "statistics must be one of"),
        ("phi not a number", dict(output="gaussian", phi="1"), TypeError, "phi must be a real number"),
        ("phi a bool", dict(output="gaussian", phi=True), TypeError, "phi must be a real number"),
        ("phi zero", dict(output="gaussian", phi=0.0), ValueError, "phi must be a finite number > 0"),
        ("phi inf", dict(output="gaussian", phi=float("inf")), ValueError, "phi must be a finite number > 0"),
        ("softmax phi", dict(phi=2.0), ValueError, "phi must be 1 for output='softmax'"),
    ]


BAD = _bad_inputs()


@pytest.mark.parametrize("case,changes,error,match", BAD, ids=[c[0] for c in BAD])
def test_bad_input_is_refused_with_the_argument_named(case, changes, error, match):
    X, W, b, g = _model(12)
    kwargs = dict(X=X, W=W, b=b, g=g) | changes
    with pytest.raises(error, match=match):
        fisher.normalized_glm_fisher(**kwargs)


@needs_torch
@pytest.mark.parametrize("case,changes,error,match", BAD, ids=[c[0] for c in BAD])
def test_the_autograd_twin_refuses_the_same_input(case, changes, error, match):
    from lnlib.experiments import geometry

    X, W, b, g = _model(12)
    with pytest.raises(error, match=match):
        geometry.fisher_autograd(**(dict(X=X, W=W, b=b, g=g) | changes))


@needs_torch
def test_tensors_and_bad_labels_are_refused():
    from lnlib.experiments import geometry

    X, W, b, g = _model(13)
    with pytest.raises(TypeError, match="X is a torch.Tensor"):
        fisher.normalized_glm_fisher(torch.from_numpy(X), W, b, g)
    with pytest.raises(ValueError, match=r"Y must have shape \(30, 3\)"):
        geometry.gradient_autograd(X, W, b, g, np.zeros((30, 2)))


def test_output_covariance_rows():
    h = np.random.default_rng(14).normal(size=(5, 4))
    cov = fisher.output_covariance(h, output="softmax")
    p = np.exp(h) / np.exp(h).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(cov, [np.diag(q) - np.outer(q, q) for q in p], rtol=1e-13, atol=1e-16)
    assert np.abs(cov.sum(axis=2)).max() <= 1e-15
    np.testing.assert_array_equal(fisher.output_covariance(h, output="gaussian", phi=0.3), np.tile(0.3 * np.eye(4),
                                                                                                     (5, 1, 1)))
    with pytest.raises(ValueError, match="h must be a 2-D"):
        fisher.output_covariance(h[0], output="softmax")
