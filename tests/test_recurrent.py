"""Recurrent cells (lnlib.numpy.recurrent, lnlib.torch.recurrent): parity, gradients, the equations' details."""

from __future__ import annotations

import numpy as np
import pytest

import lnlib.numpy as lnp
from conftest import HAVE_CUDA, first_values, needs_torch, torch, torch_param
from lnlib.numpy import recurrent as rn

if torch is not None:
    from lnlib.torch import recurrent as rt

KINDS = rn.KINDS
DEVICES = ["cpu"] + (["cuda"] if HAVE_CUDA else [])
D, H, N, T = 3, 5, 4, 6


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _params(kind, rng, d=D, h=H, spread=0.3):
    """Initialized parameters with every gain and bias moved away from 1 and 0 (so that each one matters)."""
    params = rn.init_params(kind, d, h, rng)
    return {k: v if k.startswith("W") else v + rng.normal(0.0, spread, size=v.shape) for k, v in params.items()}


def _tensors(params, device="cpu", requires_grad=False):
    return {k: torch.tensor(v, device=device, requires_grad=requires_grad) for k, v in params.items()}


def _state(kind, rng, n=N, h=H):
    return tuple(rng.normal(size=(n, h)) for _ in range(2 if kind in rn.CELL_KINDS else 1))


def _cell(kind, params, device="cpu", max_steps=T, **kwargs):
    extra = {"max_steps": max_steps} if kind == "bn_lstm" else {}
    cell = rt.make_cell(kind, D, H, dtype=torch.float64, device=device, **extra, **kwargs)
    return cell.load_params(params)


# --------------------------------------------------------------------------------------------------------
# NumPy <-> torch parity, float64, 1e-10


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kind", KINDS)
@needs_torch
def test_single_step_parity(kind, device, rng):
    params = _params(kind, rng)
    x, state = rng.normal(size=(N, D)), _state(kind, rng)
    expected = rn.step(kind, x, state, params)
    as_t = [torch.tensor(s, device=device) for s in state]
    got_f = rt.step(kind, torch.tensor(x, device=device), as_t, _tensors(params, device))
    got_m = _cell(kind, params, device)(torch.tensor(x, device=device), as_t, t=0)
    assert len(expected) == len(got_f) == len(got_m)
    for e, f, m in zip(expected, got_f, got_m):
        np.testing.assert_allclose(f.cpu().numpy(), e, rtol=0, atol=1e-10)
        np.testing.assert_allclose(m.detach().cpu().numpy(), e, rtol=0, atol=1e-10)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kind", KINDS)
@needs_torch
def test_sequence_parity_time_major_and_batch_first(kind, device, rng):
    params = _params(kind, rng)
    xs = rng.normal(size=(T, N, D))
    hs, final = rn.run_sequence(kind, xs, params)
    assert hs.shape == (T, N, H)
    np.testing.assert_array_equal(hs[-1], final[0])
    hs_f, final_f = rt.run_sequence(kind, torch.tensor(xs, device=device), _tensors(params, device))
    np.testing.assert_allclose(hs_f.cpu().numpy(), hs, rtol=0, atol=1e-10)
    for e, g in zip(final, final_f):
        np.testing.assert_allclose(g.cpu().numpy(), e, rtol=0, atol=1e-10)
    hs_m, _ = rt.Recurrent(_cell(kind, params, device))(torch.tensor(xs, device=device))
    np.testing.assert_allclose(hs_m.detach().cpu().numpy(), hs, rtol=0, atol=1e-10)
    batch_first = rt.Recurrent(_cell(kind, params, device), batch_first=True)
    hs_b, _ = batch_first(torch.tensor(xs.transpose(1, 0, 2).copy(), device=device))
    assert tuple(hs_b.shape) == (N, T, H)
    np.testing.assert_allclose(hs_b.detach().cpu().numpy().transpose(1, 0, 2), hs, rtol=0, atol=1e-10)


@needs_torch
def test_parity_with_a_given_initial_state_and_the_code_quirk(rng):
    params = _params("ln_lstm", rng)
    xs, state = rng.normal(size=(T, N, D)), _state("ln_lstm", rng)
    for quirk in (False, True):
        hs, _ = rn.run_sequence("ln_lstm", xs, params, state=state, bias_in_input_ln=quirk)
        hs_t, _ = rt.run_sequence("ln_lstm", torch.tensor(xs), _tensors(params),
                                  state=[torch.tensor(s) for s in state], bias_in_input_ln=quirk)
        np.testing.assert_allclose(hs_t.numpy(), hs, rtol=0, atol=1e-10)
        cell = _cell("ln_lstm", params, bias_in_input_ln=quirk)
        hs_m, _ = rt.Recurrent(cell)(torch.tensor(xs), [torch.tensor(s) for s in state])
        np.testing.assert_allclose(hs_m.detach().numpy(), hs, rtol=0, atol=1e-10)


# --------------------------------------------------------------------------------------------------------
# gradients: torch autograd against central differences of the NumPy reference


def _numeric_grad(f, array, h=1e-6):
    grad = np.zeros_like(array)
    for idx in np.ndindex(array.shape):
        old = array[idx]
        array[idx] = old + h
        up = f()
        array[idx] = old - h
        down = f()
        array[idx] = old
        grad[idx] = (up - down) / (2 * h)
    return grad


@pytest.mark.parametrize("seed", [7, 8])
@pytest.mark.parametrize("kind", KINDS)
@needs_torch
def test_autograd_gradients_match_finite_differences_of_numpy(kind, seed):
    """Every parameter, the inputs and the initial state. A random initial state and inputs of standard
    deviation 3 keep every normalized term's variance far above eps, where central differences are accurate."""
    rng = np.random.default_rng(seed)
    d, h, n, steps = 2, 3, 4, 3
    params = _params(kind, rng, d, h)
    xs = rng.normal(0.0, 3.0, size=(steps, n, d))
    state = list(_state(kind, rng, n, h))
    weights = rng.normal(size=(steps, n, h))  # loss = sum(weights * hs) + sum(final c) for LSTM kinds

    def loss_np():
        hs, final = rn.run_sequence(kind, xs, params, state=state)
        return float((weights * hs).sum() + (final[1].sum() if len(final) == 2 else 0.0))

    p_t = _tensors(params, requires_grad=True)
    xs_t, *state_t = (torch.tensor(a, requires_grad=True) for a in [xs, *state])
    hs_t, final_t = rt.run_sequence(kind, xs_t, p_t, state=state_t)
    loss = (torch.tensor(weights) * hs_t).sum() + (final_t[1].sum() if len(final_t) == 2 else 0.0)
    loss.backward()
    np.testing.assert_allclose(float(loss.detach()), loss_np(), rtol=0, atol=1e-12)
    pairs = [(name, p_t[name], value) for name, value in params.items()] + [("xs", xs_t, xs)]
    pairs += [(f"state[{i}]", t, a) for i, (t, a) in enumerate(zip(state_t, state))]
    largest = max(float(t.grad.abs().max()) for _, t, _ in pairs)
    for name, tensor, value in pairs:
        numeric = _numeric_grad(loss_np, value)
        np.testing.assert_allclose(tensor.grad.numpy(), numeric, rtol=0, atol=1e-6 * largest,
                                   err_msg=f"{kind}: d loss / d {name}")


# --------------------------------------------------------------------------------------------------------
# the equations' details


def test_ln_lstm_passes_the_cell_on_unnormalized(rng):
    params = _params("ln_lstm", rng)
    x, (h, c) = rng.normal(size=(N, D)), _state("ln_lstm", rng)
    new_h, new_c = rn.ln_lstm_step(x, h, c, params)
    p = params
    a = (lnp.layer_norm(h @ p["W_h"], p["gain_h"], p["bias_h"]) + lnp.layer_norm(x @ p["W_x"], p["gain_x"],
                                                                                 p["bias_x"]) + p["b"])
    f, i, o, g = np.split(a, 4, axis=1)
    sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    cell = sig(f) * c + sig(i) * np.tanh(g)
    np.testing.assert_allclose(new_c, cell, rtol=0, atol=1e-14)  # the raw cell is passed on
    assert np.abs(new_c.mean(axis=1)).max() > 1e-3  # ... and it is not layer-normalized
    np.testing.assert_allclose(new_h, sig(o) * np.tanh(lnp.layer_norm(cell, p["gain_c"], p["bias_c"])),
                               rtol=0, atol=1e-14)
    assert np.abs(new_h - sig(o) * np.tanh(cell)).max() > 1e-2  # the output does see LN(c)


def test_draw_lstm_normalizes_only_the_cell(rng):
    params = _params("draw_lstm", rng)
    plain = {k: params[k] for k in ("W_x", "W_h", "b")}
    x, (h, c) = rng.normal(size=(N, D)), _state("draw_lstm", rng)
    h_draw, c_draw = rn.draw_lstm_step(x, h, c, params)
    h_plain, c_plain = rn.lstm_step(x, h, c, plain)
    np.testing.assert_allclose(c_draw, c_plain, rtol=0, atol=1e-15)  # same gates, same cell
    assert np.abs(h_draw - h_plain).max() > 1e-2


def test_lstm_gate_order_is_f_i_o_g(rng):
    params = rn.init_params("lstm", D, H, rng)
    params["b"] = np.concatenate([np.full(H, 50.0), np.full(H, -50.0), np.full(H, 50.0), np.zeros(H)])
    x, (h, c) = rng.normal(size=(N, D)), _state("lstm", rng)
    new_h, new_c = rn.lstm_step(x, h, c, params)
    np.testing.assert_allclose(new_c, c, rtol=0, atol=1e-12)  # forget gate open, input gate shut
    np.testing.assert_allclose(new_h, np.tanh(c), rtol=0, atol=1e-12)  # output gate open


def test_gru_update_gate_follows_the_paper(rng):
    # eq. 28: h_t = (1 - sigmoid(z)) h_{t-1} + sigmoid(z) h_hat; z is the first half of the gates
    params = rn.init_params("ln_gru", D, H, rng)
    x, (h,) = rng.normal(size=(N, D)), _state("ln_gru", rng)
    params["bias_h"][:H] = -50.0
    np.testing.assert_allclose(rn.ln_gru_step(x, h, params), h, rtol=0, atol=1e-12)
    params["bias_h"][:H] = 50.0
    params["bias_h"][H:] = 50.0  # r = 1: the candidate sees the whole recurrent term
    p = params
    candidate = np.tanh(lnp.layer_norm(x @ p["W_xn"], p["gain_xn"], p["bias_xn"])
                        + lnp.layer_norm(h @ p["W_hn"], p["gain_hn"], p["bias_hn"]))
    np.testing.assert_allclose(rn.ln_gru_step(x, h, params), candidate, rtol=0, atol=1e-12)


def test_joint_and_separate_layer_norm_differ(rng):
    sep = rn.init_params("ln_lstm", D, H, rng)
    joint = {k: sep[k] for k in ("W_x", "W_h", "gain_c", "bias_c")} | {"gain": np.ones(4 * H),
                                                                       "bias": np.zeros(4 * H)}
    xs = rng.normal(size=(T, N, D))
    state = _state("ln_lstm", rng)
    hs_sep, _ = rn.run_sequence("ln_lstm", xs, sep, state=state)
    hs_joint, _ = rn.run_sequence("ln_lstm_joint", xs, joint, state=state)
    assert np.abs(hs_sep - hs_joint).max() > 1e-2
    # separate LNs make the input term invariant to rescaling x alone (exactly so with eps = 0); the joint
    # LN is not
    runs = {(kind, scale): rn.run_sequence(kind, scale * xs, p, state=state, eps=0.0)[0]
            for kind, p in (("ln_lstm", sep), ("ln_lstm_joint", joint)) for scale in (1.0, 10.0)}
    assert np.abs(runs["ln_lstm", 10.0] - runs["ln_lstm", 1.0]).max() < 1e-12
    assert np.abs(runs["ln_lstm_joint", 10.0] - runs["ln_lstm_joint", 1.0]).max() > 1e-2


def test_the_codes_double_bias_matters_only_once_the_bias_moves(rng):
    params = rn.init_params("ln_lstm", D, H, rng)
    x, (h, c) = rng.normal(size=(N, D)), _state("ln_lstm", rng)
    for a, b in zip(rn.ln_lstm_step(x, h, c, params), rn.ln_lstm_step(x, h, c, params, bias_in_input_ln=True)):
        np.testing.assert_array_equal(a, b)  # b = 0 at initialization: identical
    params["b"] = rng.normal(0.0, 0.5, size=4 * H)
    eq20 = rn.ln_lstm_step(x, h, c, params)[0]
    code = rn.ln_lstm_step(x, h, c, params, bias_in_input_ln=True)[0]
    assert np.abs(eq20 - code).max() > 1e-2


# --------------------------------------------------------------------------------------------------------
# initialization


@pytest.mark.parametrize("kind", KINDS)
def test_initialization(kind):
    params = rn.init_params(kind, D, H, 3)
    assert list(params) == list(rn.param_shapes(kind, D, H))
    for name, value in params.items():
        assert value.shape == rn.param_shapes(kind, D, H)[name] and value.dtype == np.float64
        if name.startswith("gain"):
            np.testing.assert_array_equal(value, 0.1 if kind == "bn_lstm" else 1.0)
        elif name.startswith(("bias", "b")):
            np.testing.assert_array_equal(value, 0.0)
        elif name in ("W_h", "W_hn"):
            for block in np.split(value, value.shape[1] // H, axis=1):
                np.testing.assert_allclose(block.T @ block, np.eye(H), rtol=0, atol=1e-12)
        else:
            assert np.abs(value).max() <= 0.1 and value.std() > 0.03
    again = rn.init_params(kind, D, H, np.random.default_rng(3))
    for name in params:
        np.testing.assert_array_equal(params[name], again[name])
    if kind in ("ln_lstm", "bn_lstm"):
        assert all((rn.init_params(kind, D, H, 3, gain=0.5)[k] == 0.5).all() for k in params if k.startswith("gain"))
    assert rn.init_params(kind, D, H, 3, np.float32)["W_x"].dtype == np.float32


@needs_torch
def test_torch_cells_initialize_like_numpy_from_the_same_seed():
    cell = rt.make_cell("ln_gru", D, H, rng=11, dtype=torch.float64)
    reference = rn.init_params("ln_gru", D, H, 11)
    assert [n for n, _ in cell.named_parameters()] == list(reference)
    for name, value in reference.items():
        np.testing.assert_array_equal(getattr(cell, name).detach().numpy(), value)
    torch.manual_seed(0)
    a = rt.make_cell("lstm", D, H).W_x.detach().clone()
    torch.manual_seed(0)
    b = rt.make_cell("lstm", D, H).W_x.detach()
    assert a.dtype == torch.get_default_dtype()
    torch.testing.assert_close(a, b, rtol=0, atol=0)


# --------------------------------------------------------------------------------------------------------
# BN-LSTM: per-time-step statistics


@pytest.mark.parametrize("momentum", [0.1, None])
@needs_torch
def test_bn_lstm_running_statistics_and_eval_mode_match_numpy(momentum, rng):
    params = _params("bn_lstm", rng)
    batches = [rng.normal(1.0, 2.0, size=(length, N, D)) for length in (4, 6, 5)]
    reference = rn.bn_lstm_population_stats(batches, params, momentum=momentum)
    assert len(reference) == 6
    cell = _cell("bn_lstm", params, max_steps=8, momentum=momentum)
    model = rt.Recurrent(cell)
    for xs in batches:
        hs_t, _ = model(torch.tensor(xs))
        hs, _ = rn.run_sequence("bn_lstm", xs, params)  # training mode: batch statistics
        np.testing.assert_allclose(hs_t.detach().numpy(), hs, rtol=0, atol=1e-10)
    assert int(cell.steps_tracked) == 6
    assert cell.num_batches_tracked.tolist() == [3, 3, 3, 3, 2, 1, 0, 0]
    for t in range(6):
        for key in rn.STAT_KEYS:
            np.testing.assert_allclose(getattr(cell, "running_" + key)[t].numpy(), reference[t][key],
                                       rtol=0, atol=1e-10)
    # eval mode, on a sequence longer than any training sequence: steps >= 6 reuse the statistics of step 5
    model.eval()
    long = rng.normal(1.0, 2.0, size=(10, N, D))
    hs_t, _ = model(torch.tensor(long))
    hs, _ = rn.run_sequence("bn_lstm", long, params, stats=reference)
    np.testing.assert_allclose(hs_t.detach().numpy(), hs, rtol=0, atol=1e-10)
    for t in (5, 6, 9, 50):
        for key in rn.STAT_KEYS:
            torch.testing.assert_close(cell.stats_for_step(t)[key], getattr(cell, "running_" + key)[5])
    assert len(cell.population_stats()) == 6


def test_bn_lstm_eval_mode_treats_cases_independently_but_training_mode_does_not(rng):
    params = _params("bn_lstm", rng)
    xs = rng.normal(size=(T, N, D))
    stats = rn.bn_lstm_population_stats([xs], params)
    full, _ = rn.run_sequence("bn_lstm", xs, params, stats=stats)
    alone, _ = rn.run_sequence("bn_lstm", xs[:, :1], params, stats=stats)
    np.testing.assert_allclose(alone[:, 0], full[:, 0], rtol=0, atol=1e-14)
    train_full, _ = rn.run_sequence("bn_lstm", xs, params)
    train_pair, _ = rn.run_sequence("bn_lstm", xs[:, :2], params)
    assert np.abs(train_full[:, 0] - train_pair[:, 0]).max() > 1e-2


@needs_torch
def test_bn_lstm_training_needs_a_batch_and_a_slot(rng):
    params = _params("bn_lstm", rng)
    with pytest.raises(ValueError, match="batch_norm in training mode"):
        rn.run_sequence("bn_lstm", rng.normal(size=(T, 1, D)), params)
    cell = _cell("bn_lstm", params, max_steps=3)
    with pytest.raises(ValueError, match=r"t=3 is beyond max_steps=3"):
        rt.Recurrent(cell)(torch.tensor(rng.normal(size=(4, N, D))))
    cell.eval()  # evaluation beyond max_steps is fine: it reuses the last trained step
    hs, _ = rt.Recurrent(cell)(torch.tensor(rng.normal(size=(5, 1, D))))
    assert tuple(hs.shape) == (5, 1, H)


@needs_torch
def test_bn_lstm_momentum_zero_freezes_the_statistics(rng):
    params = _params("bn_lstm", rng)
    xs = rng.normal(size=(T, N, D))
    stats = rn.bn_lstm_population_stats([xs], params, momentum=0.0, max_steps=T + 2)
    assert len(stats) == T + 2 and all((s["mean_x"] == 0).all() and (s["var_c"] == 1).all() for s in stats)
    cell = _cell("bn_lstm", params, momentum=0.0)
    rt.Recurrent(cell)(torch.tensor(xs))
    assert (cell.running_mean_x == 0).all() and int(cell.num_batches_tracked.sum()) == 0


# --------------------------------------------------------------------------------------------------------
# devices and dtypes


@pytest.mark.parametrize("device", DEVICES)
@needs_torch
def test_modules_move_between_devices_with_their_buffers(device, rng):
    cell = rt.make_cell("bn_lstm", D, H, max_steps=T, dtype=torch.float64).to(device)
    assert cell.running_var_c.device.type == device and cell.W_h.device.type == device
    hs, (h, c) = rt.Recurrent(cell)(torch.tensor(rng.normal(size=(T, N, D)), device=device))
    assert hs.device.type == device and c.device.type == device


@needs_torch
def test_float32_cells_stay_float32(rng):
    cell = rt.make_cell("ln_lstm", D, H)
    hs, (h, c) = rt.Recurrent(cell)(torch.tensor(rng.normal(size=(T, N, D)), dtype=torch.float32))
    assert hs.dtype == c.dtype == torch.float32
    params = rn.init_params("ln_lstm", D, H, 0, np.float32)
    hs_np, _ = rn.run_sequence("ln_lstm", rng.normal(size=(T, N, D)).astype(np.float32), params)
    assert hs_np.dtype == np.float32


# --------------------------------------------------------------------------------------------------------
# bad input


@needs_torch
def test_unknown_kind_is_refused_naming_the_argument(rng):
    for call in (lambda: rn.init_params("lstmm", D, H, 0), lambda: rn.run_sequence("LSTM", np.zeros((2, 2, D)), {}),
                 lambda: rt.make_cell("gru2", D, H), lambda: rn.param_shapes("ln-lstm", D, H)):
        with pytest.raises(ValueError, match=r"kind must be one of .*'ln_lstm'"):
            call()


BAD_STEPS = [
    ("x not a matrix", lambda p, x, h, c: rn.lstm_step(x[0], h, c, p), ValueError, ["x", "(N, D)", "(3,)"]),
    ("x with the wrong width", lambda p, x, h, c: rn.lstm_step(x[:, :2], h, c, p), ValueError,
     ["params['W_x']", "2 features"]),
    ("h of the wrong shape", lambda p, x, h, c: rn.lstm_step(x, h[:, :2], c, p), ValueError,
     ["h must have shape", "(4, 5)", "(4, 2)"]),
    ("c of the wrong batch", lambda p, x, h, c: rn.lstm_step(x, h, c[:2], p), ValueError, ["c must have shape"]),
    ("x of integers", lambda p, x, h, c: rn.lstm_step(x.astype(int), h, c, p), TypeError, ["x", "int64"]),
    ("missing parameter", lambda p, x, h, c: rn.lstm_step(x, h, c, {k: v for k, v in p.items() if k != "b"}),
     ValueError, ["params", "missing ['b']"]),
    ("extra parameter", lambda p, x, h, c: rn.lstm_step(x, h, c, p | {"gain_c": np.ones(H)}), ValueError,
     ["unexpected ['gain_c']"]),
    ("misshapen parameter", lambda p, x, h, c: rn.lstm_step(x, h, c, p | {"b": np.zeros(H)}), ValueError,
     ["params['b']", "(5,)", "(20,)"]),
    ("params not a mapping", lambda p, x, h, c: rn.lstm_step(x, h, c, [1, 2]), TypeError, ["params", "list"]),
    ("xs not 3-D", lambda p, x, h, c: rn.run_sequence("lstm", x, p), ValueError, ["xs", "(T, N, D)"]),
    ("no time steps", lambda p, x, h, c: rn.run_sequence("lstm", np.zeros((0, N, D)), p), ValueError,
     ["xs", "at least one time step"]),
    ("state of the wrong form", lambda p, x, h, c: rn.step("lstm", x, (h,), p), ValueError,
     ["state", "(h, c)", "length 1"]),
    ("stats for a kind without BN", lambda p, x, h, c: rn.run_sequence("lstm", x[None], p, stats=[{}]),
     ValueError, ["stats", "bn_lstm"]),
    torch_param("a torch tensor for numpy", lambda p, x, h, c: rn.lstm_step(torch.tensor(x), h, c, p), TypeError,
                ["x is a torch.Tensor"]),
]


@pytest.mark.parametrize("what,call,error,words", BAD_STEPS, ids=first_values(BAD_STEPS))
def test_bad_step_input_is_refused_with_a_clear_message(what, call, error, words, rng):
    params = rn.init_params("lstm", D, H, 0)
    x, (h, c) = rng.normal(size=(N, D)), _state("lstm", rng)
    with pytest.raises(error) as info:
        call(params, x, h, c)
    for word in words:
        assert word in str(info.value), f"{word!r} missing from: {info.value}"


@needs_torch
def test_bad_torch_input_is_refused_with_a_clear_message(rng):
    params = _tensors(rn.init_params("lstm", D, H, 0))
    x, h, c = (torch.tensor(a) for a in (rng.normal(size=(N, D)), *_state("lstm", rng)))
    with pytest.raises(TypeError, match=r"x has dtype torch.float32 but x|has dtype torch.float64 but x has torch"):
        rt.lstm_step(x.float(), h, c, params)
    with pytest.raises(TypeError, match="x must be a torch.Tensor"):
        rt.lstm_step(x.numpy(), h, c, params)
    with pytest.raises(ValueError, match=r"h must have shape"):
        rt.lstm_step(x, h[:, :1], c, params)
    with pytest.raises(ValueError, match=r"params\['W_h'\] has shape"):
        rt.lstm_step(x, h, c, params | {"W_h": torch.zeros(H, H, dtype=torch.float64)})
    with pytest.raises(ValueError, match="max_steps must be a positive int"):
        rt.BNLSTMCell(D, H, max_steps=0)
    with pytest.raises(ValueError, match="use BNLSTMCell"):
        rt.RecurrentCell("bn_lstm", D, H)
    with pytest.raises(ValueError, match="bias_in_input_ln applies only"):
        rt.make_cell("lstm", D, H, bias_in_input_ln=True)
    with pytest.raises(TypeError, match="cell must be a RecurrentCell"):
        rt.Recurrent(torch.nn.LSTMCell(D, H))
    with pytest.raises(ValueError, match=r"xs must have shape \(N, T, D\)"):
        rt.Recurrent(rt.make_cell("lstm", D, H), batch_first=True)(torch.zeros(N, D))
    with pytest.raises(ValueError, match=r"params are for D=3, H=5, but this cell has D=3, H=4"):
        rt.make_cell("lstm", D, 4).load_params(rn.init_params("lstm", D, H, 0))


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32", "float64"])
@needs_torch
def test_constant_over_batch_flags_rounding_not_half_precision_variation(dtype):
    """A feature that varies by a few percent is not constant in any dtype (64 units of bfloat16's rounding
    would be 50 %); one equal in every case, or within one unit of the dtype's rounding, is."""
    dtype = getattr(torch, dtype)
    gen = torch.Generator().manual_seed(0)
    varying = (1.0 + 0.05 * torch.randn(8, 32, generator=gen, dtype=torch.float64)).to(dtype)
    assert not rt.constant_over_batch(varying).any()
    constant = torch.full((8, 32), 1.5, dtype=dtype)
    constant[0] = torch.nextafter(constant[0], torch.full_like(constant[0], 2.0))  # one unit of rounding
    assert rt.constant_over_batch(constant).all()
    numpy_dtype = {torch.float16: np.float16, torch.float32: np.float32, torch.float64: np.float64}.get(dtype)
    if numpy_dtype is not None:
        assert np.array_equal(rn.constant_over_batch(constant.numpy()), rt.constant_over_batch(constant).numpy())


@needs_torch
def test_recurrent_steps_refuse_mixed_dtypes_and_negative_seeds_by_name():
    p = rn.init_params("lstm", 3, 4, 0)  # float64
    x, h, c = (np.zeros((2, n), np.float32) for n in (3, 4, 4))
    with pytest.raises(TypeError, match=r"params\['W_x'\] has dtype float64 but x has float32"):
        rn.lstm_step(x, h, c, p)
    with pytest.raises(TypeError, match=r"params\['W_x'\] has dtype torch.float64 but x has torch.float32"):
        rt.lstm_step(*(torch.from_numpy(a) for a in (x, h, c)), {k: torch.from_numpy(v) for k, v in p.items()})
    with pytest.raises(TypeError, match="h has dtype float64 but x has float32"):
        rn.lstm_step(x, h.astype(np.float64), c, {k: v.astype(np.float32) for k, v in p.items()})
    with pytest.raises(ValueError, match="rng must be a non-negative int seed"):
        rn.init_params("lstm", 3, 4, -1)
    with pytest.raises(ValueError, match="rng must be a non-negative int seed"):
        rt.make_cell("lstm", 3, 4, rng=-1)
