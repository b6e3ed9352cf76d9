"""RMSNorm, GroupNorm and weight norm in both backends: against PyTorch, finite differences and each other."""

from __future__ import annotations

import numpy as np
import pytest
from test_backward import finite_difference_grads

import lnlib.numpy as lnp
from conftest import F, needs_torch, torch


@needs_torch
def test_rms_norm_matches_torch_rms_norm(backend, rng):
    x = rng.normal(0.5, 2.0, size=(4, 3, 8))
    gamma = rng.normal(size=(3, 8))
    y = backend.lib.rms_norm(backend.asarray(x), backend.asarray(gamma), axis=(1, 2), eps=1e-6)
    ref = F.rms_norm(torch.from_numpy(x), (3, 8), torch.from_numpy(gamma), eps=1e-6)
    np.testing.assert_allclose(backend.to_numpy(y), ref.numpy(), rtol=0, atol=1e-12)


def test_rms_norm_is_not_centred(backend):
    x = np.array([[1.0, 1.0, 1.0, 1.0]])
    y = backend.to_numpy(backend.lib.rms_norm(backend.asarray(x), eps=0.0))
    np.testing.assert_allclose(y, 1.0)  # layer norm would give 0 (or NaN without eps)


@pytest.mark.parametrize("groups", [1, 2, 3, 6])
@needs_torch
def test_group_norm_matches_torch_group_norm(backend, rng, groups):
    x = rng.normal(1.0, 2.0, size=(4, 6, 3, 5))
    gamma, beta = rng.normal(size=6), rng.normal(size=6)
    y = backend.lib.group_norm(backend.asarray(x), groups, backend.asarray(gamma.reshape(6, 1, 1)),
                               backend.asarray(beta.reshape(6, 1, 1)), axis=(1, 2, 3))
    ref = F.group_norm(torch.from_numpy(x), groups, torch.from_numpy(gamma), torch.from_numpy(beta))
    np.testing.assert_allclose(backend.to_numpy(y), ref.numpy(), rtol=0, atol=1e-12)


def test_group_norm_extremes_are_layer_norm_and_instance_norm(backend, rng):
    x = backend.asarray(rng.normal(size=(3, 4, 5, 5)))
    np.testing.assert_allclose(backend.to_numpy(backend.lib.group_norm(x, 1, axis=(1, 2, 3))),
                               backend.to_numpy(backend.lib.layer_norm(x, axis=(1, 2, 3))), rtol=0, atol=1e-13)
    np.testing.assert_allclose(backend.to_numpy(backend.lib.group_norm(x, 4, axis=(1, 2, 3))),
                               backend.to_numpy(backend.lib.layer_norm(x, axis=(2, 3))), rtol=0, atol=1e-13)


@pytest.mark.parametrize("name", ["rms_norm", "group_norm"])
def test_hand_backward_matches_finite_differences(backend, rng, name):
    x = rng.normal(1.0, 2.0, size=(3, 4, 2))
    gamma, beta, dy = rng.normal(size=(4, 1)), rng.normal(size=(4, 1)), rng.normal(size=x.shape)
    extra = (2,) if name == "group_norm" else ()
    forward = getattr(lnp, name)
    expected = finite_difference_grads(lambda a, g, b: forward(a, *extra, g, b, axis=(1, 2), eps=1e-3),
                                       [x, gamma, beta], dy)
    got = getattr(backend.lib, f"{name}_backward")(backend.asarray(dy), backend.asarray(x), *extra,
                                                   backend.asarray(gamma), backend.asarray(beta), axis=(1, 2), eps=1e-3)
    for g, e in zip(got, expected):
        np.testing.assert_allclose(backend.to_numpy(g), e, rtol=1e-6, atol=1e-8)


@needs_torch
def test_torch_relatives_pass_gradcheck():
    import lnlib.torch as lnt

    gen = torch.Generator().manual_seed(0)
    x, g, b = (torch.randn(s, generator=gen, dtype=torch.float64, requires_grad=True) for s in ((3, 4, 2), (4, 1), (4, 1)))
    assert torch.autograd.gradcheck(lambda *a: lnt.rms_norm(*a, axis=(1, 2)), (x, g, b))
    assert torch.autograd.gradcheck(lambda *a: lnt.group_norm(a[0], 2, *a[1:], axis=(1, 2)), (x, g, b))
    v, s = (torch.randn(sh, generator=gen, dtype=torch.float64, requires_grad=True) for sh in ((5, 3), (5, 1)))
    assert torch.autograd.gradcheck(lambda *a: lnt.weight_norm(*a, axis=1), (v, s))


@needs_torch
def test_weight_norm_matches_torch(backend, rng):
    v, g = rng.normal(size=(5, 7)), rng.normal(size=(5, 1))
    w = backend.to_numpy(backend.lib.weight_norm(backend.asarray(v), backend.asarray(g), axis=1))
    np.testing.assert_allclose(w, torch._weight_norm(torch.from_numpy(v), torch.from_numpy(g), 0).numpy(),
                               rtol=0, atol=1e-13)


def test_weight_norm_has_unit_rows(backend, rng):
    v = rng.normal(size=(5, 7))
    unit = backend.to_numpy(backend.lib.weight_norm(backend.asarray(v), axis=1))
    np.testing.assert_allclose(np.linalg.norm(unit, axis=1), 1.0, rtol=1e-14)


@needs_torch
def test_weight_norm_backward_matches_autograd(backend, rng):
    v, g, dw = rng.normal(size=(5, 7)), rng.normal(size=(5, 1)), rng.normal(size=(5, 7))
    vt, gt = (torch.tensor(a, requires_grad=True) for a in (v, g))
    torch._weight_norm(vt, gt, 0).backward(torch.from_numpy(dw))
    dv, dg = backend.lib.weight_norm_backward(backend.asarray(dw), backend.asarray(v), backend.asarray(g), axis=1)
    np.testing.assert_allclose(backend.to_numpy(dv), vt.grad.numpy(), rtol=0, atol=1e-13)
    np.testing.assert_allclose(backend.to_numpy(dg), gt.grad.numpy(), rtol=0, atol=1e-13)


def test_weight_norm_backward_is_orthogonal_to_v_and_scales_as_one_over_k(backend, rng):
    v, g, dw = rng.normal(size=(5, 7)), rng.normal(size=(5, 1)), rng.normal(size=(5, 7))
    dv, _ = backend.lib.weight_norm_backward(backend.asarray(dw), backend.asarray(v), backend.asarray(g), axis=1)
    np.testing.assert_allclose((backend.to_numpy(dv) * v).sum(axis=1), 0.0, atol=1e-12)
    # scaling v by k leaves w unchanged and scales the gradient with respect to v by 1/k
    dv_scaled, _ = backend.lib.weight_norm_backward(backend.asarray(dw), backend.asarray(3.0 * v), backend.asarray(g),
                                                    axis=1)
    np.testing.assert_allclose(backend.to_numpy(dv_scaled), backend.to_numpy(dv) / 3.0, rtol=1e-12)


def test_bad_group_counts(backend):
    x = backend.asarray(np.ones((2, 6)))
    for bad, error in ((4, ValueError), (0, ValueError), (2.5, TypeError), (True, TypeError)):
        with pytest.raises(error, match="num_groups"):
            backend.lib.group_norm(x, bad)


def test_zero_weight_vector_has_no_direction(backend):
    w = backend.to_numpy(backend.lib.weight_norm(backend.asarray(np.zeros((2, 3))), axis=1))
    assert np.isnan(w).all()
