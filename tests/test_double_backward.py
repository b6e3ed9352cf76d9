"""Higher-order autograd (issue 18, item 3): every differentiable lnlib.torch function has exact second
derivatives, checked with ``gradgradcheck`` in float64, on every path (the hand-derived backward of the
composite path, PyTorch's fused kernels, the affine and reshaping steps that autograd traces).

The composite path's :class:`torch.autograd.Function` recomputes ``x_hat`` and ``r`` differentiably when
the backward is recorded (``create_graph=True``); before issue 18 it returned a wrong second derivative
without an error whenever the incoming gradient did not itself require grad.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import lnlib.torch as lnt


def _t(rng, *shape, requires_grad=True):
    return torch.tensor(rng.normal(size=shape), dtype=torch.float64, requires_grad=requires_grad)


# (id, function of (x, gamma, beta), shapes of x, gamma, beta)
FUNCTIONS = [
    ("layer_norm native", lambda x, g, b: lnt.layer_norm(x, g, b), (3, 5), (5,), (5,)),
    ("layer_norm native=False", lambda x, g, b: lnt.layer_norm(x, g, b, native=False), (3, 5), (5,), (5,)),
    ("layer_norm over (1, 2), per-channel affine",
     lambda x, g, b: lnt.layer_norm(x, g, b, axis=(1, 2)), (2, 3, 4), (3, 1), (3, 1)),
    ("layer_norm eps=0", lambda x, g, b: lnt.layer_norm(x, g, b, eps=0.0, native=False), (3, 5), (5,), (5,)),
    ("rms_norm native", lambda x, g, b: lnt.rms_norm(x, g), (3, 5), (5,), (5,)),
    ("rms_norm native=False", lambda x, g, b: lnt.rms_norm(x, g, b, native=False), (3, 5), (5,), (5,)),
    ("batch_norm native", lambda x, g, b: lnt.batch_norm(x, g, b), (4, 3), (3,), (3,)),
    ("batch_norm native=False", lambda x, g, b: lnt.batch_norm(x, g, b, native=False), (4, 3), (3,), (3,)),
    ("batch_norm ddof=1", lambda x, g, b: lnt.batch_norm(x, g, b, ddof=1), (4, 3), (3,), (3,)),
    ("batch_norm NCHW", lambda x, g, b: lnt.batch_norm(x, g, b, axis=(0, 2, 3)), (2, 3, 2, 2), (3, 1, 1), (3, 1, 1)),
    ("group_norm", lambda x, g, b: lnt.group_norm(x, 2, g, b, axis=(1, 2)), (2, 4, 3), (4, 1), (4, 1)),
    ("weight_norm", lambda x, g, b: lnt.weight_norm(x, g), (3, 4), (3, 1), (3, 1)),
]


@pytest.mark.parametrize("name,function,xs,gs,bs", FUNCTIONS, ids=[f[0] for f in FUNCTIONS])
def test_gradgradcheck(name, function, xs, gs, bs, rng):
    inputs = (_t(rng, *xs), _t(rng, *gs), _t(rng, *bs))
    assert torch.autograd.gradcheck(function, inputs)
    assert torch.autograd.gradgradcheck(function, inputs)


def test_gradgradcheck_of_the_modules(rng):
    for module in (lnt.LayerNorm(5, native=False, dtype=torch.float64), lnt.BatchNorm(5, dtype=torch.float64),
                   lnt.BatchNorm(5, ddof=1, dtype=torch.float64)):
        assert torch.autograd.gradgradcheck(module, (_t(rng, 4, 5),)), module


def _plain_layer_norm(h, ddof=0, axis=-1):
    """The defining formula in plain torch operations: autograd's own derivatives, the reference."""
    mean = h.mean(dim=axis, keepdim=True)
    var = ((h - mean) ** 2).sum(dim=axis, keepdim=True) / (h.shape[axis] - ddof)
    return (h - mean) / torch.sqrt(var + 1e-5)


@pytest.mark.parametrize("case", ["layer_norm native=False", "batch_norm ddof=1"])
def test_the_issue_example_second_derivative_through_autograd_grad(case, rng):
    # torch.autograd.grad(..., inputs=W, create_graph=True) through lnt.layer_norm(x @ W, native=False)
    # returned a gradient off by 374 (true size ~336) before issue 18; batch_norm with ddof=1 took that path
    x, w = _t(rng, 6, 4, requires_grad=False), _t(rng, 4, 5)
    if case.startswith("layer_norm"):
        ours, reference = (lambda h: lnt.layer_norm(h, native=False)), _plain_layer_norm
    else:
        ours, reference = (lambda h: lnt.batch_norm(h, ddof=1)), (lambda h: _plain_layer_norm(h, ddof=1, axis=0))
    direction = torch.tensor(rng.normal(size=(4, 5)))
    results = []
    for f in (ours, reference):
        loss = (f(x @ w) ** 3).sum()
        (grad,) = torch.autograd.grad(loss, w, create_graph=True)
        (hvp,) = torch.autograd.grad((grad * direction).sum(), w)
        results.append((grad.detach(), hvp))
    torch.testing.assert_close(results[0][0], results[1][0], rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(results[0][1], results[1][1], rtol=1e-9, atol=1e-9)
    assert results[1][1].abs().max() > 1.0  # a second derivative that is not trivially 0


def test_first_order_backward_does_not_keep_x_when_it_needs_no_grad(rng):
    # x is saved only when it requires grad; a frozen input still gives gradients for gamma and beta
    x, g, b = _t(rng, 3, 5, requires_grad=False), _t(rng, 5), _t(rng, 5)
    assert torch.autograd.gradgradcheck(lambda g, b: lnt.layer_norm(x, g, b, native=False), (g, b))


def test_the_backward_functions_are_not_differentiable_and_say_so(rng):
    x, dy = _t(rng, 3, 5), _t(rng, 3, 5)
    dx, _, _ = lnt.layer_norm_backward(dy, x)
    assert not dx.requires_grad
    with pytest.raises(RuntimeError, match="does not require grad"):
        torch.autograd.grad(dx.sum(), x)


def test_second_derivatives_at_the_extremes_of_the_range(rng):
    # the rescaled path (statistics that would overflow) is differentiable twice as well
    x = torch.tensor(rng.normal(size=(2, 4)) * 1e200, requires_grad=True)
    assert torch.autograd.gradgradcheck(lambda x: lnt.layer_norm(x, native=False) * 1e-200, (x,), eps=1e194,
                                        atol=1e-5)
    np.testing.assert_allclose(lnt.layer_norm(x, native=False).detach().numpy(),
                               lnt.layer_norm(x / 1e200, eps=0.0).detach().numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name,function,xs,gs,bs", FUNCTIONS, ids=[f[0] for f in FUNCTIONS])
def test_gradgradcheck_on_cuda(name, function, xs, gs, bs, rng):
    inputs = tuple(t.detach().cuda().requires_grad_(True) for t in (_t(rng, *xs), _t(rng, *gs), _t(rng, *bs)))
    assert torch.autograd.gradgradcheck(function, inputs)
