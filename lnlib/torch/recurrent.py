r"""Recurrent cells with layer normalization, PyTorch twin of :mod:`lnlib.numpy.recurrent`.

The maths, the gate order (LSTM :math:`(f, i, o, g)`, GRU :math:`(z, r)`), the parameter names and shapes,
the initialization and the choice of following eq. 20 rather than the authors' double bias are documented
in the NumPy module; this file follows it line by line with torch operations, so it runs on any device
and is differentiable. The LNs are :func:`lnlib.torch.layer_norm` and the BNs
:func:`lnlib.torch.batch_norm` (differentiable, on PyTorch's fused kernels for these layouts), never
re-implemented.

Two layers of API:

- functions with the NumPy names and signatures (:func:`lstm_step`, :func:`ln_lstm_step`, ...,
  :func:`step`, :func:`run_sequence`), taking the parameters explicitly as a mapping of tensors;
- ``nn.Module`` cells whose parameters carry the *same names* (``cell.W_x``, ``cell.gain_h``, ...), so a
  NumPy parameter dict can be copied in with :meth:`RecurrentCell.load_params`: :class:`RecurrentCell`
  (every kind but ``bn_lstm``), :class:`BNLSTMCell` (per-time-step running statistics), the factory
  :func:`make_cell`, and :class:`Recurrent`, which unrolls a cell over time.

A cell's state is a tuple: ``(h, c)`` for the LSTM kinds, ``(h,)`` for the others. Sequences are
time-major ``(T, N, D)`` unless :class:`Recurrent` is built with ``batch_first=True`` (then ``(N, T, D)``
in and ``(N, T, H)`` out).

**BN-LSTM statistics over time.** :class:`BNLSTMCell` keeps separate running estimates for each time
step ``t < max_steps`` (buffers of shape ``(max_steps, ...)``), updated in training mode exactly as
``torch.nn.BatchNorm1d`` updates its single set. In evaluation mode, time step ``t`` uses the estimates of
``min(t, T_train - 1)``, where ``T_train`` (the buffer ``steps_tracked``) is the longest sequence seen in
training: beyond it, the statistics of the last trained time step are reused, as Cooijmans et al. (2016)
do. This is the behaviour the paper's claim H13 (LN generalizes to longer sequences, per-step BN needs
statistics it never estimated) is about. Training on a time step ``t >= max_steps`` is an error: there is
no slot to store its statistics.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import nn

from .._checks import check_eps
from ..numpy import recurrent as _ref
from ..numpy.recurrent import (CELL_KINDS, CONSTANT_ULPS, KINDS, STAT_KEYS, check_kind, check_params, constant_tolerance,
                               param_shapes)
from ._tensors import as_float_tensor
from .batch_norm import batch_norm, batch_norm_inference
from .layer_norm import layer_norm
from .normalization import moments

__all__ = [
    "BNLSTMCell", "CELL_KINDS", "CONSTANT_ULPS", "KINDS", "Recurrent", "RecurrentCell", "STAT_KEYS", "bn_lstm_step",
    "constant_over_batch", "draw_lstm_step", "gru_step", "initial_state", "ln_gru_step", "ln_lstm_joint_step", "ln_lstm_step",
    "ln_rnn_step", "lstm_step", "make_cell", "param_shapes", "rnn_step", "run_sequence", "step",
]

Params = Mapping[str, torch.Tensor]
Stats = Mapping[str, torch.Tensor]


# --------------------------------------------------------------------------------------------------------
# step functions (same names, signatures and maths as lnlib.numpy.recurrent)


def rnn_step(x: torch.Tensor, h: torch.Tensor, params: Params) -> torch.Tensor:
    """Plain tanh RNN: ``h_t = tanh(h W_h + x W_x + b)``."""
    x, (h,) = _check_step("rnn", x, params, h=h)
    return torch.tanh(h @ params["W_h"] + x @ params["W_x"] + params["b"])


def ln_rnn_step(x: torch.Tensor, h: torch.Tensor, params: Params, *, eps: float = 1e-5) -> torch.Tensor:
    """Eq. 4: ``h_t = tanh(LN(h W_h + x W_x; gain, bias))``, one LN of the summed input."""
    x, (h,) = _check_step("ln_rnn", x, params, h=h)
    a = h @ params["W_h"] + x @ params["W_x"]
    return torch.tanh(layer_norm(a, params["gain"], params["bias"], axis=-1, eps=eps))


def lstm_step(x: torch.Tensor, h: torch.Tensor, c: torch.Tensor,
              params: Params) -> tuple[torch.Tensor, torch.Tensor]:
    """Plain LSTM (eqs. 17–19); returns ``(h_t, c_t)``."""
    x, (h, c) = _check_step("lstm", x, params, h=h, c=c)
    return _lstm_update(h @ params["W_h"] + x @ params["W_x"] + params["b"], c)


def ln_lstm_step(x: torch.Tensor, h: torch.Tensor, c: torch.Tensor, params: Params, *, eps: float = 1e-5,
                 bias_in_input_ln: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """LN-LSTM (eqs. 20–22); ``c_t`` is returned un-normalized. ``bias_in_input_ln=True``: the code's
    ``LN(x W_x + b) + LN(h W_h) + b``."""
    x, (h, c) = _check_step("ln_lstm", x, params, h=h, c=c)
    p = params
    x_term = x @ p["W_x"] + p["b"] if bias_in_input_ln else x @ p["W_x"]
    a = (layer_norm(h @ p["W_h"], p["gain_h"], p["bias_h"], axis=-1, eps=eps)
         + layer_norm(x_term, p["gain_x"], p["bias_x"], axis=-1, eps=eps) + p["b"])
    return _lstm_update(a, c, lambda cell: layer_norm(cell, p["gain_c"], p["bias_c"], axis=-1, eps=eps))


def ln_lstm_joint_step(x: torch.Tensor, h: torch.Tensor, c: torch.Tensor, params: Params, *,
                       eps: float = 1e-5) -> tuple[torch.Tensor, torch.Tensor]:
    """LSTM with eq. 4's joint LN ``LN(h W_h + x W_x; gain, bias)`` and the cell LN of eq. 22."""
    x, (h, c) = _check_step("ln_lstm_joint", x, params, h=h, c=c)
    p = params
    a = layer_norm(h @ p["W_h"] + x @ p["W_x"], p["gain"], p["bias"], axis=-1, eps=eps)
    return _lstm_update(a, c, lambda cell: layer_norm(cell, p["gain_c"], p["bias_c"], axis=-1, eps=eps))


def draw_lstm_step(x: torch.Tensor, h: torch.Tensor, c: torch.Tensor, params: Params, *,
                   eps: float = 1e-5) -> tuple[torch.Tensor, torch.Tensor]:
    """The DRAW variant (eqs. 29–31): plain LSTM gates, LN of the cell before the output tanh only."""
    x, (h, c) = _check_step("draw_lstm", x, params, h=h, c=c)
    p = params
    a = h @ p["W_h"] + x @ p["W_x"] + p["b"]
    return _lstm_update(a, c, lambda cell: layer_norm(cell, p["gain_c"], p["bias_c"], axis=-1, eps=eps))


def bn_lstm_step(x: torch.Tensor, h: torch.Tensor, c: torch.Tensor, params: Params, *,
                 stats: Stats | None = None, eps: float = 1e-5,
                 return_batch_stats: bool = False) -> tuple[torch.Tensor, ...]:
    r"""BN-LSTM (Cooijmans et al. 2016), one time step: batch statistics when ``stats`` is ``None``
    (training mode), the given per-step population statistics otherwise; see the NumPy twin.
    ``return_batch_stats=True`` adds this step's means and unbiased variances (detached).

    In training mode a feature constant over the batch (:func:`constant_over_batch`) is set to its shift
    (exactly, as the NumPy twin) and passes **no gradient** back: its exact gradient with respect to each
    case is :math:`\gamma/\sqrt{\epsilon}\,(g_n - \bar g)`, which sums to zero over the batch, so when
    the feature comes from values that are the same for every case (a constant input row, the zero
    initial state and everything computed from them) it adds exactly nothing to any parameter gradient.
    In float32 that zero is the difference of numbers amplified by :math:`1/\sqrt{\epsilon}` at every
    such step, i.e. rounding noise (chapter 8 measured a first gradient norm of 3.4e3 where float64 gives
    2.5); dropping it makes the float32 gradient agree with float64 (``tests/test_recurrent_numerics.py``).
    The running statistics are updated as before."""
    x, (h, c) = _check_step("bn_lstm", x, params, h=h, c=c)
    p = params
    if stats is not None:
        stats = _check_stats(stats, p, x)
        ax, ah = x @ p["W_x"], h @ p["W_h"]
    else:  # training mode: products of batch-centred inputs (BN removes their batch mean anyway)
        (ax, mean_ax), (ah, mean_ah) = _centred_product(x, p["W_x"]), _centred_product(h, p["W_h"])

    def bn(value: torch.Tensor, key: str, gamma: torch.Tensor, beta: torch.Tensor | None) -> torch.Tensor:
        if stats is None:
            out = batch_norm(value, gamma, beta, axis=0, eps=eps)
            shift = torch.zeros_like(out) if beta is None else beta.expand_as(out)
            return torch.where(constant_over_batch(value), shift, out)
        return batch_norm_inference(value, stats["mean_" + key], stats["var_" + key], gamma, beta, eps)

    a = bn(ah, "h", p["gain_h"], None) + bn(ax, "x", p["gain_x"], None) + p["b"]
    new_h, new_c = _lstm_update(a, c, lambda cell: bn(cell, "c", p["gain_c"], p["bias_c"]))
    if not return_batch_stats:
        return new_h, new_c
    batch_stats = {}
    with torch.no_grad():
        for key, value, offset in (("x", ax, mean_ax), ("h", ah, mean_ah), ("c", new_c, 0.0)):
            mean, var = moments(value.detach(), axis=0, ddof=1, keepdims=False)
            batch_stats["mean_" + key], batch_stats["var_" + key] = mean + offset, var
    return new_h, new_c, batch_stats


def _centred_product(z: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``((z - mean(z)) @ w, mean(z) @ w)`` over the batch (rows); the second detached (NumPy twin)."""
    mean = z.mean(dim=0, keepdim=True)
    return (z - mean) @ w, (mean @ w).detach()[0]


def constant_over_batch(values: torch.Tensor) -> torch.Tensor:
    """Boolean mask of the features of ``values`` ``(N, F)`` constant over the batch up to
    :data:`CONSTANT_ULPS` units of rounding (NumPy twin, which has the maths); computed without gradient."""
    values = values.detach()
    if values.ndim != 2:
        raise ValueError(f"values must have shape (N, F), got shape {tuple(values.shape)}")
    spread = values.amax(dim=0) - values.amin(dim=0)
    finfo = torch.finfo(values.dtype)
    return spread <= constant_tolerance(finfo.eps, finfo.bits) * values.abs().amax(dim=0)


def gru_step(x: torch.Tensor, h: torch.Tensor, params: Params) -> torch.Tensor:
    """Plain GRU (eqs. 23–25, with the code's biases ``b`` and ``b_n``)."""
    x, (h,) = _check_step("gru", x, params, h=h)
    p = params
    z, r = (h @ p["W_h"] + x @ p["W_x"] + p["b"]).chunk(2, dim=-1)
    candidate = torch.tanh(x @ p["W_xn"] + p["b_n"] + torch.sigmoid(r) * (h @ p["W_hn"]))
    return _gru_update(z, h, candidate)


def ln_gru_step(x: torch.Tensor, h: torch.Tensor, params: Params, *, eps: float = 1e-5) -> torch.Tensor:
    """LN-GRU (eqs. 26–28): LNs of ``h W_h`` and ``x W_x`` (gates) and of ``x W_xn`` and ``h W_hn``."""
    x, (h,) = _check_step("ln_gru", x, params, h=h)
    p = params
    gates = (layer_norm(h @ p["W_h"], p["gain_h"], p["bias_h"], axis=-1, eps=eps)
             + layer_norm(x @ p["W_x"], p["gain_x"], p["bias_x"], axis=-1, eps=eps))
    z, r = gates.chunk(2, dim=-1)
    candidate = torch.tanh(layer_norm(x @ p["W_xn"], p["gain_xn"], p["bias_xn"], axis=-1, eps=eps)
                           + torch.sigmoid(r) * layer_norm(h @ p["W_hn"], p["gain_hn"], p["bias_hn"], axis=-1,
                                                           eps=eps))
    return _gru_update(z, h, candidate)


def _lstm_update(a: torch.Tensor, c: torch.Tensor, cell_norm=None) -> tuple[torch.Tensor, torch.Tensor]:  # noqa: ANN001
    f, i, o, g = a.chunk(4, dim=-1)
    new_c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    shown = new_c if cell_norm is None else cell_norm(new_c)
    return torch.sigmoid(o) * torch.tanh(shown), new_c


def _gru_update(z: torch.Tensor, h: torch.Tensor, candidate: torch.Tensor) -> torch.Tensor:
    gate = torch.sigmoid(z)
    return (1.0 - gate) * h + gate * candidate


def step(kind: str, x: torch.Tensor, state: Sequence[torch.Tensor], params: Params, *, eps: float = 1e-5,
         stats: Stats | None = None, bias_in_input_ln: bool = False) -> tuple[torch.Tensor, ...]:
    """One step of any ``kind``; ``state`` is ``(h, c)`` or ``(h,)`` and so is the result (NumPy twin)."""
    kind = check_kind(kind)
    state = _ref._check_state(kind, state)
    eps = check_eps(eps)
    if stats is not None and kind != "bn_lstm":
        raise ValueError(f"stats applies only to kind='bn_lstm', got kind={kind!r}")
    if bias_in_input_ln and kind != "ln_lstm":
        raise ValueError(f"bias_in_input_ln applies only to kind='ln_lstm', got kind={kind!r}")
    if kind == "rnn":
        return (rnn_step(x, state[0], params),)
    if kind == "ln_rnn":
        return (ln_rnn_step(x, state[0], params, eps=eps),)
    if kind == "gru":
        return (gru_step(x, state[0], params),)
    if kind == "ln_gru":
        return (ln_gru_step(x, state[0], params, eps=eps),)
    h, c = state
    if kind == "lstm":
        return lstm_step(x, h, c, params)
    if kind == "ln_lstm":
        return ln_lstm_step(x, h, c, params, eps=eps, bias_in_input_ln=bias_in_input_ln)
    if kind == "ln_lstm_joint":
        return ln_lstm_joint_step(x, h, c, params, eps=eps)
    if kind == "draw_lstm":
        return draw_lstm_step(x, h, c, params, eps=eps)
    return bn_lstm_step(x, h, c, params, stats=stats, eps=eps)


def initial_state(kind: str, batch_size: int, hidden_size: int, *, device: torch.device | str | None = None,
                  dtype: torch.dtype | None = None) -> tuple[torch.Tensor, ...]:
    """Zeros: ``(h0, c0)`` for the LSTM kinds, ``(h0,)`` for the others."""
    kind = check_kind(kind)
    zeros = [torch.zeros(batch_size, hidden_size, device=device, dtype=dtype)
             for _ in range(2 if kind in CELL_KINDS else 1)]
    return tuple(zeros)


def run_sequence(kind: str, xs: torch.Tensor, params: Params, *, state: Sequence[torch.Tensor] | None = None,
                 eps: float = 1e-5, stats: Sequence[Stats] | None = None,
                 bias_in_input_ln: bool = False) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """Unroll ``kind`` over time-major ``xs`` ``(T, N, D)``; returns ``(hs, final_state)`` (NumPy twin).

    For ``bn_lstm``, ``stats`` is a list of per-time-step statistics and step ``t`` uses
    ``stats[min(t, len(stats) - 1)]``; ``None`` is training mode."""
    kind = check_kind(kind)
    xs = as_float_tensor(xs, name="xs")
    if xs.ndim != 3:
        raise ValueError(f"xs must have shape (T, N, D) (time-major), got a tensor with shape {tuple(xs.shape)}")
    if xs.shape[0] < 1:
        raise ValueError(f"xs must have at least one time step, got shape {tuple(xs.shape)}")
    _, hidden = check_params(kind, params, input_size=xs.shape[2])
    if state is None:
        state = initial_state(kind, xs.shape[1], hidden, device=xs.device, dtype=xs.dtype)
    if stats is not None:
        if kind != "bn_lstm":
            raise ValueError(f"stats applies only to kind='bn_lstm', got kind={kind!r}")
        if isinstance(stats, Mapping) or len(stats) == 0:
            raise ValueError("stats must be a non-empty list of per-time-step statistics (one dict per step)")
    hs = []
    for t in range(xs.shape[0]):
        step_stats = None if stats is None else stats[min(t, len(stats) - 1)]
        state = step(kind, xs[t], state, params, eps=eps, stats=step_stats, bias_in_input_ln=bias_in_input_ln)
        hs.append(state[0])
    return torch.stack(hs), tuple(state)


# --------------------------------------------------------------------------------------------------------
# modules


class RecurrentCell(nn.Module):
    """A ``kind`` cell (any of :data:`KINDS` but ``bn_lstm``, which is :class:`BNLSTMCell`) as a module.

    Its parameters are the entries of :func:`param_shapes`, attributes with the same names. They are
    initialized by :func:`lnlib.numpy.recurrent.init_params` from ``rng`` (a NumPy ``Generator`` or a
    seed; ``None`` draws a seed from torch's global generator, so ``torch.manual_seed`` fixes it), then
    cast to ``dtype`` (default: torch's default dtype) on ``device``. The same seed therefore gives the
    same parameters in both backends. ``forward(x, state=None, t=0)`` does one step and returns the new
    state tuple; ``t`` is only used by the BN-LSTM.
    """

    def __init__(self, kind: str, input_size: int, hidden_size: int, *, eps: float = 1e-5,
                 gain: float | None = None, bias_in_input_ln: bool = False,
                 rng: np.random.Generator | int | None = None, device: torch.device | str | None = None,
                 dtype: torch.dtype | None = None) -> None:
        super().__init__()
        kind = check_kind(kind)
        if kind == "bn_lstm" and type(self) is RecurrentCell:
            raise ValueError("kind='bn_lstm' needs per-time-step statistics: use BNLSTMCell or make_cell")
        if bias_in_input_ln and kind != "ln_lstm":
            raise ValueError(f"bias_in_input_ln applies only to kind='ln_lstm', got kind={kind!r}")
        self.kind, self.eps, self.bias_in_input_ln = kind, check_eps(eps), bool(bias_in_input_ln)
        self.input_size, self.hidden_size = int(input_size), int(hidden_size)
        if rng is None:
            rng = int(torch.randint(0, 2**62, (1,)).item())
        values = _ref.init_params(kind, input_size, hidden_size, rng, np.float64, gain=gain)
        dtype = dtype or torch.get_default_dtype()
        for name, value in values.items():
            setattr(self, name, nn.Parameter(torch.tensor(value, dtype=dtype, device=device)))

    @property
    def param_names(self) -> tuple[str, ...]:
        """The parameter names in the order of :func:`param_shapes`."""
        return tuple(param_shapes(self.kind, self.input_size, self.hidden_size))

    def params(self) -> dict[str, torch.Tensor]:
        """The parameters as a name -> tensor dict (the ``params`` argument of the step functions)."""
        return {name: getattr(self, name) for name in self.param_names}

    @torch.no_grad()
    def load_params(self, params: Mapping[str, object]) -> "RecurrentCell":
        """Copy ``params`` (NumPy arrays or tensors, e.g. from :func:`lnlib.numpy.recurrent.init_params`)
        into this cell's parameters, keeping their dtype and device. Names and shapes must match."""
        d, h = check_params(self.kind, params)
        if (d, h) != (self.input_size, self.hidden_size):
            raise ValueError(f"params are for D={d}, H={h}, but this cell has D={self.input_size}, "
                             f"H={self.hidden_size}")
        for name in self.param_names:
            target = getattr(self, name)
            target.copy_(torch.as_tensor(params[name], dtype=target.dtype, device=target.device))
        return self

    def initial_state(self, batch_size: int) -> tuple[torch.Tensor, ...]:
        """Zeros of this cell's dtype and device: ``(h0, c0)`` or ``(h0,)``."""
        w = self.W_x
        return initial_state(self.kind, batch_size, self.hidden_size, device=w.device, dtype=w.dtype)

    def forward(self, x: torch.Tensor, state: Sequence[torch.Tensor] | None = None,
                t: int = 0) -> tuple[torch.Tensor, ...]:
        x = as_float_tensor(x)
        if state is None:
            state = self.initial_state(x.shape[0] if x.ndim == 2 else 1)
        return step(self.kind, x, state, self.params(), eps=self.eps, bias_in_input_ln=self.bias_in_input_ln)

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}, input_size={self.input_size}, hidden_size={self.hidden_size}, eps={self.eps}"


class BNLSTMCell(RecurrentCell):
    """BN-LSTM (Cooijmans et al. 2016) with per-time-step running statistics; see the module docstring.

    Buffers ``running_mean_x``/``running_var_x``/``running_mean_h``/``running_var_h`` of shape
    ``(max_steps, 4H)`` and ``running_mean_c``/``running_var_c`` of shape ``(max_steps, H)`` (means start
    at 0, variances at 1), ``num_batches_tracked`` ``(max_steps,)`` and ``steps_tracked`` (the longest
    sequence seen in training). ``momentum`` as in ``torch.nn.BatchNorm1d`` (``None``: cumulative average,
    ``0``: frozen). Gains start at 0.1 unless ``gain`` is given.
    """

    def __init__(self, input_size: int, hidden_size: int, *, max_steps: int, momentum: float | None = 0.1,
                 eps: float = 1e-5, gain: float | None = None, rng: np.random.Generator | int | None = None,
                 device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> None:
        super().__init__("bn_lstm", input_size, hidden_size, eps=eps, gain=gain, rng=rng, device=device,
                         dtype=dtype)
        if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1:
            raise ValueError(f"max_steps must be a positive int (the longest training sequence), got {max_steps!r}")
        if momentum is not None and not 0.0 <= momentum <= 1.0:
            raise ValueError(f"momentum must be None or in [0, 1], got {momentum!r}")
        self.max_steps, self.momentum = max_steps, momentum
        w = self.W_x
        for key in STAT_KEYS:
            size = hidden_size if key.endswith("_c") else 4 * hidden_size
            fill = torch.zeros if key.startswith("mean") else torch.ones
            self.register_buffer("running_" + key, fill(max_steps, size, device=w.device, dtype=w.dtype))
        self.register_buffer("num_batches_tracked", torch.zeros(max_steps, dtype=torch.long, device=w.device))
        self.register_buffer("steps_tracked", torch.tensor(0, dtype=torch.long, device=w.device))

    def stats_for_step(self, t: int) -> dict[str, torch.Tensor]:
        """The running statistics evaluation mode uses at time step ``t``: those of slot
        ``min(t, steps_tracked - 1)`` (slot 0, mean 0 and variance 1, before any training)."""
        if isinstance(t, bool) or not isinstance(t, int) or t < 0:
            raise ValueError(f"t must be a time step index >= 0, got {t!r}")
        slot = min(t, max(int(self.steps_tracked), 1) - 1)
        return {key: getattr(self, "running_" + key)[slot] for key in STAT_KEYS}

    def population_stats(self) -> list[dict[str, torch.Tensor]]:
        """The per-time-step statistics learned so far, one dict per trained step (``steps_tracked``)."""
        return [self.stats_for_step(t) for t in range(max(int(self.steps_tracked), 1))]

    def forward(self, x: torch.Tensor, state: Sequence[torch.Tensor] | None = None,
                t: int = 0) -> tuple[torch.Tensor, ...]:
        x = as_float_tensor(x)
        if isinstance(t, bool) or not isinstance(t, int) or t < 0:
            raise ValueError(f"t must be a time step index >= 0, got {t!r}")
        if state is None:
            state = self.initial_state(x.shape[0] if x.ndim == 2 else 1)
        h, c = _ref._check_state("bn_lstm", state)
        if not self.training:
            return bn_lstm_step(x, h, c, self.params(), stats=self.stats_for_step(t), eps=self.eps)
        if t >= self.max_steps:
            raise ValueError(f"t={t} is beyond max_steps={self.max_steps}: a BNLSTMCell in training mode keeps "
                             f"statistics for time steps 0..{self.max_steps - 1} only; build it with a larger "
                             f"max_steps")
        new_h, new_c, batch = bn_lstm_step(x, h, c, self.params(), eps=self.eps, return_batch_stats=True)
        self._update(t, batch)
        return new_h, new_c

    @torch.no_grad()
    def _update(self, t: int, batch: Mapping[str, torch.Tensor]) -> None:
        self.steps_tracked.fill_(max(int(self.steps_tracked), t + 1))
        if self.momentum == 0.0:
            return
        self.num_batches_tracked[t] += 1
        factor = 1.0 / int(self.num_batches_tracked[t]) if self.momentum is None else self.momentum
        for key in STAT_KEYS:
            running = getattr(self, "running_" + key)[t]
            running.mul_(1.0 - factor).add_(factor * batch[key].to(running.dtype))

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, max_steps={self.max_steps}, momentum={self.momentum}"


def make_cell(kind: str, input_size: int, hidden_size: int, **kwargs: object) -> RecurrentCell:
    """A cell of any ``kind``: :class:`BNLSTMCell` for ``"bn_lstm"`` (pass ``max_steps=``), otherwise
    :class:`RecurrentCell`. Keyword arguments go to the class."""
    kind = check_kind(kind)
    if kind == "bn_lstm":
        return BNLSTMCell(input_size, hidden_size, **kwargs)
    return RecurrentCell(kind, input_size, hidden_size, **kwargs)


class Recurrent(nn.Module):
    """Unrolls ``cell`` over time: ``forward(xs, state=None) -> (hs, final_state)``.

    ``xs`` is ``(T, N, D)`` (time-major, the default) or ``(N, T, D)`` with ``batch_first=True``; ``hs``
    has the same layout with ``H`` features. Step ``t`` calls ``cell(xs[t], state, t=t)``, so a
    :class:`BNLSTMCell` sees the time index it needs.
    """

    def __init__(self, cell: RecurrentCell, *, batch_first: bool = False) -> None:
        super().__init__()
        if not isinstance(cell, RecurrentCell):
            raise TypeError(f"cell must be a RecurrentCell (see make_cell), got {type(cell).__name__}")
        self.cell, self.batch_first = cell, bool(batch_first)

    def forward(self, xs: torch.Tensor, state: Sequence[torch.Tensor] | None = None
                ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        xs = as_float_tensor(xs, name="xs")
        layout = "(N, T, D)" if self.batch_first else "(T, N, D)"
        if xs.ndim != 3:
            raise ValueError(f"xs must have shape {layout}, got a tensor with shape {tuple(xs.shape)}")
        if self.batch_first:
            xs = xs.transpose(0, 1)
        if xs.shape[0] < 1:
            raise ValueError(f"xs must have at least one time step, got layout {layout} with no steps")
        if state is None:
            state = self.cell.initial_state(xs.shape[1])
        hs = []
        for t in range(xs.shape[0]):
            state = self.cell(xs[t], state, t=t)
            hs.append(state[0])
        out = torch.stack(hs)
        return (out.transpose(0, 1) if self.batch_first else out), tuple(state)

    def extra_repr(self) -> str:
        return f"batch_first={self.batch_first}"


# --------------------------------------------------------------------------------------------------------
# checks


def _check_step(kind: str, x: object, params: Params, **state: object) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """``x`` as a float tensor ``(N, D)``, the state tensors ``(N, H)``; dtypes and devices must agree
    with the parameters'."""
    x = as_float_tensor(x)
    if x.ndim != 2:
        raise ValueError(f"x must be one time step of shape (N, D), got a tensor with shape {tuple(x.shape)}")
    _, hidden = check_params(kind, params, input_size=x.shape[1])
    tensors = []
    for name, value in [(f"params[{k!r}]", v) for k, v in params.items()] + list(state.items()):
        value = as_float_tensor(value, name=name)
        if value.dtype != x.dtype:
            raise TypeError(f"{name} has dtype {value.dtype} but x has {x.dtype}; expected the same dtype")
        if value.device != x.device:
            raise ValueError(f"{name} is on device {value.device} but x is on {x.device}; expected the same device")
        if not name.startswith("params"):
            if tuple(value.shape) != (x.shape[0], hidden):
                raise ValueError(f"{name} must have shape (N, H) = {(x.shape[0], hidden)} for x of shape "
                                 f"{tuple(x.shape)} and H = {hidden}, got {tuple(value.shape)}")
            tensors.append(value)
    return x, tensors


def _check_stats(stats: object, params: Params, x: torch.Tensor) -> dict[str, torch.Tensor]:
    if not isinstance(stats, Mapping) or any(k not in stats for k in STAT_KEYS):
        raise ValueError(f"stats must be a mapping with the keys {STAT_KEYS}, got "
                         f"{sorted(stats) if isinstance(stats, Mapping) else type(stats).__name__}")
    hidden = params["W_h"].shape[0]
    out = {}
    for key in STAT_KEYS:
        size = hidden if key.endswith("_c") else 4 * hidden
        value = as_float_tensor(stats[key], name=f"stats[{key!r}]")
        if tuple(value.shape) != (size,):
            raise ValueError(f"stats[{key!r}] must have shape {(size,)}, got {tuple(value.shape)}")
        if value.device != x.device:
            raise ValueError(f"stats[{key!r}] is on device {value.device} but x is on {x.device}")
        out[key] = value
    return out
