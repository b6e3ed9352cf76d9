"""Float32 against float64: the first gradient of every recurrent model on batches with constant time steps.

Sequential MNIST's top pixel rows are the same for every image of a batch, and the initial state is zero,
so at the first steps every normalization sees a batch (BN) or a vector (LN) with zero variance, where its
derivative is gain/sqrt(eps) ~ 316. These tests check that the float32 parameter gradient is what the
float64 one (close to exact arithmetic) says, for every kind of cell (issue 13), and that the one cell
that needed a fix, the BN-LSTM, needed it: the plain computation is off in float32.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lnlib.numpy import recurrent as rn
from lnlib.torch import batch_norm
from lnlib.torch import recurrent as rt

T, N, D, H = 10, 64, 12, 32
#: the largest relative difference between the float32 and float64 first gradients we accept
TOLERANCE = 1e-3


def constant_step_batch(zero_rows: bool, constant_steps: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """Float64 ``(T, N, D)`` inputs whose first ``constant_steps`` steps are the same row for every case (all
    zeros when ``zero_rows``, as raw blank MNIST rows; one fixed nonzero row otherwise, as standardized ones),
    then random rows, the last step again constant but for one case (a nearly constant batch); and targets."""
    rng = np.random.default_rng(3)
    xs = rng.normal(size=(T, N, D))
    xs[:constant_steps] = 0.0 if zero_rows else rng.normal(size=(1, 1, D))
    xs[-1] = -0.4
    xs[-1, 0, 0] = 0.3
    return torch.tensor(xs), torch.tensor(rng.normal(size=N))


def first_gradient(kind: str, xs: torch.Tensor, targets: torch.Tensor, dtype: torch.dtype,
                   gain: float | None = None, plain_bn: bool = False) -> torch.Tensor:
    """The gradient of a squared-error read-out loss with respect to all cell parameters, in ``dtype``;
    ``plain_bn``: the BN-LSTM step written with :func:`lnlib.torch.batch_norm` and nothing else (the
    computation before the fix)."""
    params = {k: torch.tensor(v, dtype=dtype, requires_grad=True)
              for k, v in rn.init_params(kind, D, H, 0, gain=gain).items()}
    readout = torch.tensor(np.random.default_rng(1).normal(size=H) / np.sqrt(H), dtype=dtype)
    state = rt.initial_state(kind, N, H, dtype=dtype)
    for t in range(T):
        x = xs[t].to(dtype)
        state = _plain_bn_lstm_step(x, state, params) if plain_bn else rt.step(kind, x, state, params)
    loss = ((state[0] @ readout - targets.to(dtype)) ** 2).mean()
    grads = torch.autograd.grad(loss, list(params.values()))
    return torch.cat([g.flatten() for g in grads]).double()


def _plain_bn_lstm_step(x: torch.Tensor, state: tuple[torch.Tensor, ...],
                        p: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    h, c = state
    a = (batch_norm(h @ p["W_h"], p["gain_h"], None, axis=0) + batch_norm(x @ p["W_x"], p["gain_x"], None, axis=0)
         + p["b"])
    f, i, o, g = a.chunk(4, dim=-1)
    new_c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(batch_norm(new_c, p["gain_c"], p["bias_c"], axis=0)), new_c


def relative_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("zero_rows", [False, True], ids=["constant rows", "zero rows"])
@pytest.mark.parametrize("kind,gain", [(k, None) for k in rn.KINDS] + [("bn_lstm", 1.0), ("ln_lstm", 0.1)])
def test_float32_first_gradient_agrees_with_float64(kind, gain, zero_rows, one_torch_thread):
    xs, targets = constant_step_batch(zero_rows)
    g32 = first_gradient(kind, xs, targets, torch.float32, gain)
    g64 = first_gradient(kind, xs, targets, torch.float64, gain)
    assert torch.isfinite(g64).all() and torch.isfinite(g32).all()
    assert relative_difference(g32, g64) <= TOLERANCE, (kind, gain, relative_difference(g32, g64))


@pytest.mark.parametrize("zero_rows", [False, True], ids=["constant rows", "zero rows"])
def test_the_bn_lstm_fix_keeps_the_exact_gradient_and_the_plain_computation_fails_in_float32(zero_rows,
                                                                                              one_torch_thread):
    """With two constant steps the plain computation is still accurate in float64 (its rounding is amplified
    ~316x per normalization, about 1e-6 here; with four steps it is wrong in float64 too): the fixed cell's
    gradient is that gradient (the fix changes only rounding), while the plain computation in float32 is far
    off (relative errors 1.7 and 2e3 here): the bug the fix removes."""
    xs, targets = constant_step_batch(zero_rows, constant_steps=2)
    fixed64 = first_gradient("bn_lstm", xs, targets, torch.float64, 1.0)
    plain64 = first_gradient("bn_lstm", xs, targets, torch.float64, 1.0, plain_bn=True)
    plain32 = first_gradient("bn_lstm", xs, targets, torch.float32, 1.0, plain_bn=True)
    assert relative_difference(fixed64, plain64) <= 1e-4
    assert relative_difference(plain32, plain64) > 100 * TOLERANCE


def test_layer_norm_of_a_zero_state_gives_a_large_but_exact_gradient(one_torch_thread):
    """LN of an all-zero vector has derivative gain/sqrt(eps) too; with zero input rows the LN-LSTM's state
    stays exactly zero and its gradient grows by that factor per step. That is the true derivative (float32
    and float64 agree), not rounding, which is why sequential MNIST is standardized (chapter 8)."""
    xs, targets = constant_step_batch(zero_rows=True)
    g32 = first_gradient("ln_lstm", xs, targets, torch.float32)
    g64 = first_gradient("ln_lstm", xs, targets, torch.float64)
    assert float(g64.norm()) > 1e6 and relative_difference(g32, g64) <= TOLERANCE


def test_constant_features_normalize_to_their_shift_in_both_twins():
    rng = np.random.default_rng(0)
    params = rn.init_params("bn_lstm", 3, 4, rng, gain=1.0)
    params["bias_c"] = rng.normal(size=4)
    x = np.repeat(rng.normal(size=(1, 3)), 5, axis=0)  # the same row for every case
    h, c = np.zeros((5, 4)), np.repeat(rng.normal(size=(1, 4)), 5, axis=0)
    new_h, new_c = rn.bn_lstm_step(x, h, c, params)
    b = params["b"]
    expected_c = rn.sigmoid(b[:4]) * c + rn.sigmoid(b[4:8]) * np.tanh(b[12:])
    assert np.allclose(new_c, expected_c, rtol=1e-12)
    assert np.allclose(new_h, rn.sigmoid(b[8:12]) * np.tanh(params["bias_c"]), rtol=1e-12)
    torch_params = {k: torch.tensor(v) for k, v in params.items()}
    th, tc = rt.bn_lstm_step(torch.tensor(x), torch.tensor(h), torch.tensor(c), torch_params)
    assert np.allclose(th.numpy(), new_h, rtol=1e-12) and np.allclose(tc.numpy(), new_c, rtol=1e-12)


def test_constant_over_batch_twins_agree_and_refuse_bad_shapes():
    values = np.array([[1.0, 0.0, 2.0, 5.0], [1.0, 0.0, 2.0 + 1e-15, 5.1], [1.0, 0.0, 2.0, 5.0]])
    expected = [True, True, True, False]
    assert rn.constant_over_batch(values).tolist() == expected
    assert rt.constant_over_batch(torch.tensor(values)).tolist() == expected
    assert rn.constant_over_batch(values.astype(np.float32)).tolist() == expected
    with pytest.raises(ValueError, match=r"values must have shape \(N, F\)"):
        rn.constant_over_batch(np.zeros(3))
    with pytest.raises(ValueError, match=r"values must have shape \(N, F\)"):
        rt.constant_over_batch(torch.zeros(3))
