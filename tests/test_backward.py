"""Backward passes: hand-derived formulas against central finite differences and against torch autograd."""

from __future__ import annotations

import numpy as np
import pytest

import lnlib.numpy as lnp
from conftest import F, lnt, needs_torch, torch


def finite_difference_grads(f, arrays, dy, h=1e-6):
    """Central differences of L = sum(dy * f(*arrays)) with respect to each array (float64)."""
    grads = []
    for k, a in enumerate(arrays):
        g = np.zeros_like(a)
        for idx in np.ndindex(a.shape):
            plus = [b.copy() for b in arrays]
            minus = [b.copy() for b in arrays]
            plus[k][idx] += h
            minus[k][idx] -= h
            g[idx] = (np.sum(dy * f(*plus)) - np.sum(dy * f(*minus))) / (2 * h)
        grads.append(g)
    return grads


CASES = [
    ("layer_norm", (3, 5), -1, (5,), 0),
    ("layer_norm", (2, 3, 4), (1, 2), (3, 1), 0),
    ("batch_norm", (6, 4), 0, (4,), 0),
    ("batch_norm", (4, 2, 3), (0, 2), (2, 1), 0),
    ("batch_norm", (4, 3), 0, (3,), 1),
]


@pytest.mark.parametrize("name,shape,axis,pshape,ddof", CASES)
def test_hand_backward_matches_finite_differences(backend, rng, name, shape, axis, pshape, ddof):
    x = rng.normal(1.0, 2.0, size=shape)
    gamma, beta, dy = rng.normal(size=pshape), rng.normal(size=pshape), rng.normal(size=shape)
    kwargs = {"axis": axis, "eps": 1e-3, **({"ddof": ddof} if name == "batch_norm" else {})}
    forward = getattr(lnp, name)
    expected = finite_difference_grads(lambda a, g, b: forward(a, g, b, **kwargs), [x, gamma, beta], dy)
    backward = getattr(backend.lib, f"{name}_backward")
    got = backward(*(backend.asarray(a) for a in (dy, x, gamma, beta)), **kwargs)
    for g, e in zip(got, expected):
        np.testing.assert_allclose(backend.to_numpy(g), e, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("native", [False, True], ids=["hand-derived", "native-where-possible"])
@pytest.mark.parametrize("name,shape,axis,pshape,ddof", CASES)
@needs_torch
def test_torch_autograd_passes_gradcheck(name, shape, axis, pshape, ddof, native):
    gen = torch.Generator().manual_seed(0)
    tensors = [torch.randn(s, generator=gen, dtype=torch.float64, requires_grad=True) for s in (shape, pshape, pshape)]
    kwargs = {"axis": axis, "eps": 1e-3, "native": native, **({"ddof": ddof} if name == "batch_norm" else {})}
    assert torch.autograd.gradcheck(lambda a, g, b: getattr(lnt, name)(a, g, b, **kwargs), tensors)


@needs_torch
def test_native_kernels_are_used_only_where_they_compute_the_same_thing(rng):
    x = torch.tensor(rng.normal(size=(4, 3, 5)), requires_grad=True)
    grad_fn = lambda y: type(y.grad_fn).__name__  # noqa: E731
    assert "NativeLayerNorm" in grad_fn(lnt.layer_norm(x, torch.ones(3, 5, dtype=torch.float64), axis=(1, 2)))
    assert "Normalize" in grad_fn(lnt.layer_norm(x, torch.ones(3, 5, dtype=torch.float64), axis=(1, 2), native=False))
    assert "Normalize" in grad_fn(lnt.layer_norm(x, torch.ones(3, 1, dtype=torch.float64), axis=(1, 2)))  # per channel
    assert "NativeBatchNorm" in grad_fn(lnt.batch_norm(x, torch.ones(3, 1, dtype=torch.float64), axis=(0, 2)))
    assert "Normalize" in grad_fn(lnt.batch_norm(x, axis=(0, 2), ddof=1))  # unbiased: no native kernel
    assert "Normalize" in grad_fn(lnt.layer_norm(x, axis=1))  # not trailing


@pytest.mark.parametrize("name,axis,pshape", [("layer_norm", (1, 2), (3, 5)), ("batch_norm", (0, 2), (3, 1)),
                                              ("rms_norm", -1, (5,))])
@needs_torch
def test_native_and_hand_derived_paths_agree(rng, name, axis, pshape):
    x = rng.normal(2.0, 3.0, size=(6, 3, 5))
    g, b, dy = rng.normal(size=pshape), rng.normal(size=pshape), rng.normal(size=(6, 3, 5))
    outs = []
    for native in (True, False):
        leaves = [torch.tensor(a, requires_grad=True) for a in (x, g)]
        beta = None if name == "rms_norm" else torch.tensor(b)
        y = getattr(lnt, name)(leaves[0], leaves[1], beta, axis=axis, native=native)
        y.backward(torch.tensor(dy))
        outs.append([y.detach(), leaves[0].grad, leaves[1].grad])
    for a, c in zip(*outs):
        torch.testing.assert_close(a, c, rtol=0, atol=1e-12)


@needs_torch
def test_autograd_gradients_equal_torch_layer_norm_autograd(rng):
    x = torch.tensor(rng.normal(2.0, 3.0, size=(6, 4, 5)), requires_grad=True)
    w = torch.tensor(rng.normal(size=(4, 5)), requires_grad=True)
    b = torch.tensor(rng.normal(size=(4, 5)), requires_grad=True)
    dy = torch.tensor(rng.normal(size=(6, 4, 5)))
    ours = [t.detach().clone().requires_grad_() for t in (x, w, b)]
    F.layer_norm(x, (4, 5), w, b).backward(dy)
    lnt.layer_norm(*ours, axis=(1, 2), native=False).backward(dy)  # the hand-derived backward
    for ref, mine in zip((x, w, b), ours):
        torch.testing.assert_close(mine.grad, ref.grad, rtol=0, atol=1e-12)


@needs_torch
def test_autograd_gradients_equal_torch_batch_norm_autograd(rng):
    x = torch.tensor(rng.normal(2.0, 3.0, size=(5, 3, 4)), requires_grad=True)
    w = torch.tensor(rng.normal(size=3), requires_grad=True)
    b = torch.tensor(rng.normal(size=3), requires_grad=True)
    dy = torch.tensor(rng.normal(size=(5, 3, 4)))
    ours = [t.detach().clone().requires_grad_() for t in (x, w, b)]
    F.batch_norm(x, None, None, w, b, training=True).backward(dy)
    lnt.batch_norm(ours[0], ours[1].view(3, 1), ours[2].view(3, 1), axis=(0, 2), native=False).backward(dy)
    for ref, mine in zip((x, w, b), ours):
        torch.testing.assert_close(mine.grad, ref.grad, rtol=0, atol=1e-12)


@pytest.mark.parametrize("eps", [0.0, 1e-5, 1.0])
def test_layer_norm_input_gradient_is_orthogonal_to_ones_and_nearly_to_x_hat(backend, rng, eps):
    # dx . 1 = 0 exactly; dx . x_hat = r (g . x_hat) eps / (var + eps): zero only for eps = 0.
    x = rng.normal(3.0, 2.0, size=(4, 50))
    dy = rng.normal(size=(4, 50))
    dx, dgamma, dbeta = backend.lib.layer_norm_backward(backend.asarray(dy), backend.asarray(x), eps=eps)
    assert dgamma is None and dbeta is None
    dx = backend.to_numpy(dx)
    x_hat = backend.to_numpy(backend.lib.layer_norm(backend.asarray(x), eps=eps))
    var = x.var(axis=1)
    predicted = (dy * x_hat).sum(axis=1) / np.sqrt(var + eps) * eps / (var + eps)
    np.testing.assert_allclose(dx.sum(axis=1), 0.0, atol=1e-12)
    np.testing.assert_allclose((dx * x_hat).sum(axis=1), predicted, rtol=1e-8, atol=1e-12)


def test_parameter_gradients_have_the_parameters_shapes(backend, rng):
    x, dy = rng.normal(size=(2, 3, 4)), rng.normal(size=(2, 3, 4))
    for pshape in [(4,), (3, 1), (1, 3, 4), (1, 1)]:
        _, dgamma, dbeta = backend.lib.layer_norm_backward(
            backend.asarray(dy), backend.asarray(x), backend.asarray(np.ones(pshape)),
            backend.asarray(np.zeros(pshape)), axis=(1, 2))
        assert backend.to_numpy(dgamma).shape == pshape and backend.to_numpy(dbeta).shape == pshape


def test_float32_backward_is_accurate_at_a_large_mean(backend, rng):
    x = rng.normal(1e4, 1.0, size=(8, 1024)).astype(np.float32)
    dy = rng.normal(size=(8, 1024)).astype(np.float32)
    ref = lnp.layer_norm_backward(dy.astype(np.float64), x.astype(np.float64))[0]
    dx = backend.to_numpy(backend.lib.layer_norm_backward(backend.asarray(dy), backend.asarray(x))[0])
    assert dx.dtype == np.float32
    assert np.abs(dx - ref).max() < 5e-3 * np.abs(ref).max()
