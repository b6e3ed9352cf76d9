"""Jacobian matrices (lnlib.numpy.jacobian): analytic vs finite differences vs torch autograd, their
null space and eigenvalues, their block structure, and their agreement with the hand-derived backward."""

from __future__ import annotations

import numpy as np
import pytest

import lnlib.numpy as lnp
from conftest import F, first_values, needs_torch, torch, torch_param
from lnlib.numpy import jacobian as jac

# (function, shape, axis, gain shape or None, ddof)
CASES = [
    ("layer_norm", (3, 5), -1, None, 0),
    ("layer_norm", (3, 5), -1, (5,), 0),
    ("layer_norm", (7,), 0, (7,), 0),
    ("layer_norm", (2, 3, 4), (1, 2), (3, 4), 0),
    ("layer_norm", (2, 3, 4), 1, (3, 1), 0),
    ("batch_norm", (5, 4), 0, None, 0),
    ("batch_norm", (6, 3), 0, (3,), 0),
    ("batch_norm", (4, 2, 3), (0, 2), (2, 1), 0),
    ("batch_norm", (4, 3), 0, (3,), 1),
]
IDS = [f"{c[0]}-{c[1]}-axis{c[2]}-gain{c[3]}-ddof{c[4]}" for c in CASES]


def _kwargs(name, axis, ddof, eps):
    return {"axis": axis, "eps": eps, **({"ddof": ddof} if name == "batch_norm" else {})}


def _torch_formula(x, gamma, axis, eps, ddof):
    """The defining formula in plain torch ops, for torch.autograd (independent of lnlib)."""
    dims = axis if isinstance(axis, tuple) else (axis,)
    mean = x.mean(dim=dims, keepdim=True)
    var = x.var(dim=dims, correction=ddof, keepdim=True)
    y = (x - mean) / torch.sqrt(var + eps)
    return y if gamma is None else y * gamma


def _analytic(rng, name, shape, axis, pshape, ddof):
    """(x, gamma, kwargs, the analytic Jacobian) for one of CASES, drawn from ``rng``."""
    x = rng.normal(1.0, 2.0, size=shape)
    gamma = None if pshape is None else rng.normal(size=pshape)
    kwargs = _kwargs(name, axis, ddof, 1e-3)
    got = getattr(jac, f"{name}_jacobian")(x, gamma, **kwargs)
    assert got.shape == (x.size, x.size) and got.dtype == np.float64
    return x, gamma, kwargs, got


@needs_torch
@pytest.mark.parametrize("name,shape,axis,pshape,ddof", CASES, ids=IDS)
def test_analytic_jacobian_matches_autograd(rng, name, shape, axis, pshape, ddof):
    x, gamma, _, got = _analytic(rng, name, shape, axis, pshape, ddof)
    tgamma = None if gamma is None else torch.tensor(gamma)
    auto = torch.autograd.functional.jacobian(lambda t: _torch_formula(t, tgamma, axis, 1e-3, ddof), torch.tensor(x))
    np.testing.assert_allclose(got, auto.reshape(x.size, x.size).numpy(), rtol=0, atol=1e-12)


@pytest.mark.parametrize("name,shape,axis,pshape,ddof", CASES, ids=IDS)
def test_analytic_jacobian_matches_finite_differences(rng, name, shape, axis, pshape, ddof):
    x, gamma, kwargs, got = _analytic(rng, name, shape, axis, pshape, ddof)
    forward = getattr(lnp, name)
    fd = jac.finite_difference_jacobian(lambda a: forward(a, gamma, **kwargs), x, h=1e-5)
    np.testing.assert_allclose(got, fd, rtol=0, atol=1e-7)


@needs_torch
def test_layer_norm_jacobian_equals_torch_layer_norm_autograd(rng):
    x = rng.normal(2.0, 3.0, size=(3, 4, 5))
    w = rng.normal(size=(4, 5))
    auto = torch.autograd.functional.jacobian(
        lambda t: F.layer_norm(t, (4, 5), torch.tensor(w), None, eps=1e-5), torch.tensor(x))
    got = jac.layer_norm_jacobian(x, w, axis=(1, 2))
    np.testing.assert_allclose(got, auto.reshape(60, 60).numpy(), rtol=0, atol=1e-12)


@needs_torch
def test_batch_norm_jacobian_equals_torch_batch_norm_autograd(rng):
    x = rng.normal(2.0, 3.0, size=(4, 3, 2, 2))
    w = rng.normal(size=3)
    auto = torch.autograd.functional.jacobian(
        lambda t: F.batch_norm(t, None, None, torch.tensor(w), None, training=True, eps=1e-5), torch.tensor(x))
    got = jac.batch_norm_jacobian(x, w.reshape(3, 1, 1), axis=(0, 2, 3))
    np.testing.assert_allclose(got, auto.reshape(48, 48).numpy(), rtol=0, atol=1e-12)


@pytest.mark.parametrize("ddof", [0, 1])
@pytest.mark.parametrize("eps", [0.0, 1e-5, 1.0])
def test_one_slice_spectrum_null_space_and_x_hat_eigenvalue(rng, eps, ddof):
    # J = r (I - 1 1^T / M - x_hat x_hat^T / (M - d)): J 1 = 0, J x_hat = r eps / (var + eps) x_hat, the rest r.
    m = 12
    x = rng.normal(3.0, 0.01, size=m)  # var ~ 1e-4, so eps = 1e-5 gives a visible eigenvalue
    j = jac.normalization_jacobian(x, axis=0, eps=eps, ddof=ddof)
    var = x.var(ddof=ddof)
    r = 1.0 / np.sqrt(var + eps)
    x_hat = (x - x.mean()) * r
    lam = r * eps / (var + eps)
    np.testing.assert_allclose(j, j.T, rtol=0, atol=1e-12 * r)
    np.testing.assert_allclose(j @ np.ones(m), 0.0, rtol=0, atol=1e-12 * r)
    np.testing.assert_allclose(j @ x_hat, lam * x_hat, rtol=0, atol=1e-10 * r)
    expected = np.sort(np.r_[0.0, lam, np.full(m - 2, r)])
    np.testing.assert_allclose(np.linalg.eigvalsh(j), expected, rtol=0, atol=1e-9 * r)
    if eps > 0:
        assert lam > 1e-3 * r  # the x_hat direction is *not* in the null space when eps > 0


@pytest.mark.parametrize("eps", [0.0, 1e-5])
def test_input_gradient_component_along_x_hat_is_r_g_dot_x_hat_eps_over_var_plus_eps(rng, eps):
    x = rng.normal(0.0, 0.005, size=(3, 10))  # var ~ 2.5e-5, comparable with eps
    g = rng.normal(size=(3, 10))
    j = jac.layer_norm_jacobian(x, eps=eps)
    dx = (j.T @ g.reshape(-1)).reshape(3, 10)
    var = x.var(axis=1)
    r = 1.0 / np.sqrt(var + eps)
    x_hat = lnp.layer_norm(x, eps=eps)
    gx = (g * x_hat).sum(axis=1)
    along = (dx * x_hat).sum(axis=1)
    np.testing.assert_allclose(dx.sum(axis=1), 0.0, rtol=0, atol=1e-12 * r.max())
    np.testing.assert_allclose(along, r * gx * eps / (var + eps), rtol=1e-8, atol=1e-12 * r.max())
    if eps == 0.0:
        assert np.abs(along).max() < 1e-10 * r.max()
    else:
        assert np.abs(along).min() > 1e-2 * np.abs(r * gx).min()


def test_layer_norm_jacobian_of_a_batch_is_zero_between_cases(rng):
    shape = (5, 2, 3)
    j = jac.layer_norm_jacobian(rng.normal(size=shape), axis=(1, 2))
    cases = jac.coupling(j, shape, axis=0)
    assert np.all(cases[~np.eye(5, dtype=bool)] == 0.0)  # exactly zero, not small
    assert np.all(np.diag(cases) > 0.1)
    assert np.all(jac.coupling(j, shape, axis=1) > 0.0)  # units of a case are coupled


def test_batch_norm_jacobian_is_zero_between_features_and_couples_the_cases(rng):
    shape = (6, 3, 2, 2)  # NCHW, statistics per channel
    j = jac.batch_norm_jacobian(rng.normal(size=shape), axis=(0, 2, 3))
    channels = jac.coupling(j, shape, axis=1)
    assert np.all(channels[~np.eye(3, dtype=bool)] == 0.0)
    cases = jac.coupling(j, shape, axis=0)
    assert np.all(cases[~np.eye(6, dtype=bool)] > 1e-3)


def test_batch_norm_jacobian_entries_follow_the_closed_form(rng):
    # d y[n, i] / d x[m, j] = delta_ij r_i (delta_nm - 1/N - x_hat[n, i] x_hat[m, i] / N)
    n_cases, n_feat = 4, 3
    x = rng.normal(size=(n_cases, n_feat))
    j = jac.batch_norm_jacobian(x, eps=0.0).reshape(n_cases, n_feat, n_cases, n_feat)
    x_hat = lnp.batch_norm(x, eps=0.0)
    r = 1.0 / x.std(axis=0)
    expected = np.zeros_like(j)
    for i in range(n_feat):
        expected[:, i, :, i] = r[i] * (np.eye(n_cases) - 1.0 / n_cases - np.outer(x_hat[:, i], x_hat[:, i]) / n_cases)
    np.testing.assert_allclose(j, expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("name,shape,axis,pshape,ddof", [c for c in CASES if c[3] is not None],
                         ids=[i for c, i in zip(CASES, IDS) if c[3] is not None])
def test_jacobian_transpose_times_dy_is_the_hand_backward(backend, rng, name, shape, axis, pshape, ddof):
    x, dy = rng.normal(1.0, 2.0, size=shape), rng.normal(size=shape)
    gamma, beta = rng.normal(size=pshape), rng.normal(size=pshape)
    kwargs = _kwargs(name, axis, ddof, 1e-5)
    j = getattr(jac, f"{name}_jacobian")(x, gamma, **kwargs)
    dx, _, _ = getattr(backend.lib, f"{name}_backward")(*(backend.asarray(a) for a in (dy, x, gamma, beta)), **kwargs)
    np.testing.assert_allclose(backend.to_numpy(dx), (j.T @ dy.reshape(-1)).reshape(shape), rtol=0, atol=1e-12)


def test_gain_multiplies_the_rows(rng):
    x, gamma = rng.normal(size=(2, 4)), rng.normal(size=4)
    plain = jac.layer_norm_jacobian(x)
    np.testing.assert_array_equal(jac.layer_norm_jacobian(x, gamma), np.tile(gamma, 2)[:, None] * plain)


def test_jacobian_dtype_follows_the_compute_dtype(rng):
    x = rng.normal(size=(2, 5))
    assert jac.layer_norm_jacobian(x.astype(np.float32)).dtype == np.float32
    assert jac.layer_norm_jacobian(x.astype(np.float16)).dtype == np.float32
    np.testing.assert_allclose(jac.layer_norm_jacobian(x.astype(np.float32)), jac.layer_norm_jacobian(x),
                               rtol=0, atol=1e-5)


def test_same_slice_groups_by_the_axes_not_reduced():
    same = jac.same_slice((2, 3), (1,))  # rows share statistics
    np.testing.assert_array_equal(same, np.kron(np.eye(2), np.ones((3, 3))).astype(bool))
    same = jac.same_slice((2, 3), (0,))  # columns share statistics
    np.testing.assert_array_equal(same, np.tile(np.eye(3, dtype=bool), (2, 2)))


def test_finite_differences_are_exact_for_a_linear_map_and_err_by_h_squared_for_a_cube(rng):
    a = rng.normal(size=(3, 4))
    x = rng.normal(size=4)
    np.testing.assert_allclose(jac.finite_difference_jacobian(lambda v: a @ v, x), a, rtol=0, atol=1e-9)
    # the denominator is the step actually taken, so the identity map is exact even where x + h rounds
    far = np.array([1e3, -7e4, 3.3e5])
    np.testing.assert_array_equal(jac.finite_difference_jacobian(lambda v: v.copy(), far, h=1e-6), np.eye(3))
    # (x+h)^3 - (x-h)^3 = 6 x^2 h + 2 h^3, so the central difference of x^3 is 3 x^2 + h^2.
    h = 1e-2
    got = jac.finite_difference_jacobian(lambda v: v**3, x, h=h)
    np.testing.assert_allclose(np.diag(got) - 3 * x**2, h**2, rtol=1e-6)
    assert np.all(got[~np.eye(4, dtype=bool)] == 0.0)


def test_finite_differences_leave_x_alone_and_accept_scalar_functions(rng):
    x = rng.normal(size=(2, 3))
    saved = x.copy()
    grad = jac.finite_difference_jacobian(lambda v: float(np.sum(v**2)), x)
    np.testing.assert_array_equal(x, saved)
    assert grad.shape == (1, 6)
    np.testing.assert_allclose(grad.reshape(2, 3), 2 * x, rtol=0, atol=1e-8)


def test_coupling_reads_the_blocks(rng):
    j = np.zeros((6, 6))
    j[0, 5] = -2.0  # y[0, 0] depends on x[1, 2] in a (2, 3) array
    c0 = jac.coupling(j, (2, 3), axis=0)
    np.testing.assert_array_equal(c0, [[0.0, 2.0], [0.0, 0.0]])
    c1 = jac.coupling(j, (2, 3), axis=-1)
    assert c1.shape == (3, 3) and c1[0, 2] == 2.0 and c1.sum() == 2.0


BAD = [
    ("f not callable", lambda: jac.finite_difference_jacobian(3, np.ones(2)), TypeError, ["f", "callable", "int"]),
    ("x float32", lambda: jac.finite_difference_jacobian(np.sin, np.ones(2, np.float32)), TypeError,
     ["x", "float64", "float32"]),
    ("x integer", lambda: jac.finite_difference_jacobian(np.sin, np.arange(3)), TypeError, ["x", "int64"]),
    ("h zero", lambda: jac.finite_difference_jacobian(np.sin, np.ones(2), h=0.0), ValueError, ["h", "> 0", "0.0"]),
    ("h negative", lambda: jac.finite_difference_jacobian(np.sin, np.ones(2), h=-1e-6), ValueError, ["h", "> 0"]),
    ("h infinite", lambda: jac.finite_difference_jacobian(np.sin, np.ones(2), h=float("inf")), ValueError, ["h"]),
    ("h a string", lambda: jac.finite_difference_jacobian(np.sin, np.ones(2), h="1e-6"), TypeError, ["h", "str"]),
    ("f returns float32", lambda: jac.finite_difference_jacobian(lambda v: v.astype(np.float32), np.ones(2)),
     TypeError, ["f", "float32"]),
    ("f changes shape", lambda: jac.finite_difference_jacobian(lambda v: v[v > 1.0], np.array([1.0, 2.0])),
     ValueError, ["f", "one shape"]),
    ("x too large", lambda: jac.layer_norm_jacobian(np.ones((100, 100))), ValueError, ["x", "(100, 100)", "4096"]),
    ("x too large for fd", lambda: jac.finite_difference_jacobian(np.sin, np.ones(5000)), ValueError, ["x", "5000"]),
    ("ddof negative", lambda: jac.batch_norm_jacobian(np.ones((3, 2)), ddof=-1), ValueError, ["ddof", ">= 0"]),
    ("ddof a float", lambda: jac.batch_norm_jacobian(np.ones((3, 2)), ddof=1.0), TypeError, ["ddof", "float"]),
    ("batch of one", lambda: jac.batch_norm_jacobian(np.ones((1, 3))), ValueError,
     ["batch_norm_jacobian", "at least 2"]),
    ("gamma wrong shape", lambda: jac.layer_norm_jacobian(np.ones((2, 3)), np.ones(4)), ValueError, ["gamma", "(4,)"]),
    ("axis out of range", lambda: jac.layer_norm_jacobian(np.ones((2, 3)), axis=2), ValueError, ["axis=2"]),
    ("eps negative", lambda: jac.layer_norm_jacobian(np.ones((2, 3)), eps=-1.0), ValueError, ["eps"]),
    torch_param("x a tensor", lambda: jac.layer_norm_jacobian(torch.ones(2, 3)), TypeError, ["x", "torch.Tensor"]),
    ("jacobian wrong shape", lambda: jac.coupling(np.ones((5, 5)), (2, 3), axis=0), ValueError,
     ["jacobian", "(6, 6)", "(5, 5)"]),
    ("coupling shape not a tuple", lambda: jac.coupling(np.ones((6, 6)), 6, axis=0), TypeError, ["shape", "6"]),
    ("coupling axis out of range", lambda: jac.coupling(np.ones((6, 6)), (2, 3), axis=2), ValueError, ["axis=2"]),
]


@pytest.mark.parametrize("what,call,error,words", BAD, ids=first_values(BAD))
def test_bad_input_is_refused_with_a_clear_message(what, call, error, words):
    with pytest.raises(error) as info:
        call()
    for word in words:
        assert word in str(info.value), f"{word!r} missing from: {info.value}"
