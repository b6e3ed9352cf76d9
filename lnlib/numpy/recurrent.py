r"""Recurrent cells with layer normalization (Ba, Kiros & Hinton 2016, §3.1 and appendix), NumPy reference.

Every cell is a pure *step function* that takes one time step of a batch and the parameters explicitly,
plus :func:`run_sequence`, which unrolls a step over time. :mod:`lnlib.torch.recurrent` has the same
functions for tensors and ``nn.Module`` cells with the same parameter names; this module is the reference
they are tested against. Normalization is never re-implemented here: every LN is
:func:`lnlib.numpy.layer_norm` (statistics over the units of one case, biased variance, :math:`\epsilon`
inside the square root) and every BN is :func:`lnlib.numpy.batch_norm` (statistics over the batch).

**Conventions.** One time step of a batch is a matrix with one row per case: ``x`` is ``(N, D)``,
``h`` and ``c`` are ``(N, H)``. Weights multiply from the right, as in the authors' Theano code:
``W_x`` is ``(D, kH)`` and ``W_h`` is ``(H, kH)``, so the stacked pre-activations ``x @ W_x`` are
``(N, kH)``. A sequence is time-major, ``xs`` of shape ``(T, N, D)``. Every LN runs over the *whole*
stacked pre-activation vector (``4H`` for an LSTM, ``2H`` for the GRU gates), as the vector form of the
equations says and the code does, not gate by gate.

**Gate order.** We follow the paper's equations: the LSTM stacks :math:`(f, i, o, g)` (eq. 17), the GRU
stacks :math:`(z, r)` (eq. 23). The authors' code slices ``i, f, o, c~`` and ``r, u``; the order only
permutes the columns of the weights and of the LN parameters, but it matters when parameters are copied
between implementations.

**The cells** (:math:`\sigma` the logistic function, :math:`LN(\cdot;\alpha,\beta)` layer norm with gain
:math:`\alpha` and bias :math:`\beta`, :math:`BN` batch norm):

- ``rnn``: :math:`h_t = \tanh(W_h h_{t-1} + W_x x_t + b)`.
- ``ln_rnn`` (eq. 4): :math:`h_t = \tanh(LN(W_h h_{t-1} + W_x x_t;\ \alpha, \beta))`: *one* LN of the
  summed input (joint normalization).
- ``lstm`` (eqs. 17–19): :math:`(f,i,o,g) = W_h h_{t-1} + W_x x_t + b`,
  :math:`c_t = \sigma(f)\odot c_{t-1} + \sigma(i)\odot\tanh(g)`, :math:`h_t = \sigma(o)\odot\tanh(c_t)`.
- ``ln_lstm`` (eqs. 20–22): :math:`(f,i,o,g) = LN(W_h h_{t-1};\alpha_1,\beta_1) + LN(W_x x_t;\alpha_2,
  \beta_2) + b`, the same :math:`c_t`, and :math:`h_t = \sigma(o)\odot\tanh(LN(c_t;\alpha_3,\beta_3))`.
  The cell state passed on is the *un-normalized* :math:`c_t`; only the copy inside the tanh is
  normalized (as in the code).
- ``ln_lstm_joint``: eq. 4's joint normalization applied to the LSTM gates,
  :math:`(f,i,o,g) = LN(W_h h_{t-1} + W_x x_t;\alpha,\beta)`, with the cell LN of eq. 22. It differs
  from ``ln_lstm`` only in normalizing the sum instead of each term; the book uses it to measure what the
  choice changes.
- ``draw_lstm`` (eqs. 29–31): the plain LSTM gates, LN on the cell only,
  :math:`h_t = \sigma(o)\odot\tanh(LN(c_t;\alpha,\beta))` (also what the authors' Torch ``LSTM_LN.lua``
  does).
- ``bn_lstm`` (Cooijmans et al. 2016): :math:`(f,i,o,g) = BN(W_h h_{t-1};\gamma_h) + BN(W_x x_t;\gamma_x)
  + b`, :math:`h_t = \sigma(o)\odot\tanh(BN(c_t;\gamma_c,\beta_c))`, with statistics over the batch and
  *separately for every time step*. The two gate BNs have no shift: Cooijmans et al. fix it at zero because
  :math:`b` already provides one. See :func:`bn_lstm_step` for training and evaluation mode.
- ``gru`` (eqs. 23–25): :math:`(z,r) = W_h h_{t-1} + W_x x_t + b`,
  :math:`\hat h_t = \tanh(W_{xn} x_t + b_n + \sigma(r)\odot(W_{hn} h_{t-1}))`,
  :math:`h_t = (1-\sigma(z))\odot h_{t-1} + \sigma(z)\odot\hat h_t`. Eq. 23 writes no biases; we keep
  the two biases of the skip-thoughts code (``b``, ``bx``), initialized to 0, so the baseline is not
  handicapped.
- ``ln_gru`` (eqs. 26–28): :math:`(z,r) = LN(W_h h_{t-1};\alpha_1,\beta_1) + LN(W_x x_t;\alpha_2,\beta_2)`,
  :math:`\hat h_t = \tanh(LN(W_{xn} x_t;\alpha_3,\beta_3) + \sigma(r)\odot LN(W_{hn} h_{t-1};\alpha_4,
  \beta_4))`, the same :math:`h_t`. The paper's :math:`W` and :math:`U` are our ``W_xn`` and ``W_hn``.

**The authors' code adds the LSTM bias twice.** In ``lnlstm_layer`` the input term is
``ln(x W + b, b1, s1)`` and the bias ``b`` is added again after the two LNs, so
:math:`(f,i,o,g) = LN(W_x x_t + b) + LN(W_h h_{t-1}) + b`. Eq. 20 has a single :math:`+b` after the LNs.
We follow eq. 20; ``bias_in_input_ln=True`` reproduces the code. The two agree while :math:`b = 0`
(at initialization) and drift apart as :math:`b` is learned. (The code's GRU also puts biases inside its
input LNs; eq. 26 has none, and neither does our ``ln_gru``.)

**Initialization** (:func:`init_params`), following the helpers the authors' code relies on (the
skip-thoughts ``norm_weight`` and ``ortho_weight``): input matrices uniform on :math:`[-0.1, 0.1]`;
recurrent matrices orthogonal, one independent :math:`H\times H` block per gate (the U factor of the SVD
of a standard Gaussian matrix); ordinary biases 0 (no forget-gate offset). LN gains start at 1 and LN
biases at 0, as §6 of the paper says and the code does; the appendix text under eqs. 22, 28 and 31 swaps
the names and would set the gains to 0. BN-LSTM gains start at 0.1, the value Cooijmans et al. recommend;
the paper's §6.2 reports that for LN a gain of 1.0 worked significantly better than 0.1 (claim H12), so
``gain=`` overrides the default of either.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from .._checks import check_choice, check_eps
from ._arrays import as_float_array
from .batch_norm import batch_norm, batch_norm_inference
from .layer_norm import layer_norm
from .normalization import moments

#: the cell kinds, in the order the book lists them.
KINDS = ("rnn", "ln_rnn", "lstm", "ln_lstm", "ln_lstm_joint", "draw_lstm", "bn_lstm", "gru", "ln_gru")
#: kinds whose state is ``(h, c)``; the others carry ``(h,)``.
CELL_KINDS = ("lstm", "ln_lstm", "ln_lstm_joint", "draw_lstm", "bn_lstm")
#: the LSTM gates in the order they are stacked (the paper's eq. 17); the GRU stacks (z, r).
LSTM_GATES = ("f", "i", "o", "g")
GRU_GATES = ("z", "r")
#: keys of one time step's BN-LSTM statistics (means and variances of the three normalized quantities).
STAT_KEYS = ("mean_x", "var_x", "mean_h", "var_h", "mean_c", "var_c")
#: a feature whose values over the batch spread by at most this many units of the dtype's machine epsilon
#: (relative to its largest magnitude) is *constant over the batch*; see :func:`constant_over_batch`.
CONSTANT_ULPS = 64

Params = Mapping[str, np.ndarray]
Stats = Mapping[str, np.ndarray]


# --------------------------------------------------------------------------------------------------------
# parameters


def param_shapes(kind: str, input_size: int, hidden_size: int) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every parameter of a ``kind`` cell with ``D = input_size``, ``H = hidden_size``.

    Names: ``W_x``/``W_h`` (input/recurrent weights of the stacked gates), ``b`` (ordinary bias),
    ``gain_*``/``bias_*`` (the gain :math:`\\alpha` and bias :math:`\\beta` of one LN or BN: ``_x`` of the
    input term, ``_h`` of the recurrent term, ``_c`` of the cell, ``_xn``/``_hn`` of the GRU candidate's
    two terms; no suffix for the single LN of the joint forms), ``W_xn``/``W_hn``/``b_n`` (GRU candidate).
    """
    kind = check_kind(kind)
    d, h = _check_size(input_size, "input_size"), _check_size(hidden_size, "hidden_size")
    k = 4 if kind in CELL_KINDS else 2 if kind in ("gru", "ln_gru") else 1
    shapes: dict[str, tuple[int, ...]] = {"W_x": (d, k * h), "W_h": (h, k * h)}
    if kind in ("rnn", "lstm", "ln_lstm", "draw_lstm", "bn_lstm", "gru"):
        shapes["b"] = (k * h,)
    if kind in ("ln_rnn", "ln_lstm_joint"):
        shapes.update(gain=(k * h,), bias=(k * h,))
    if kind in ("ln_lstm", "ln_gru"):
        shapes.update(gain_x=(k * h,), bias_x=(k * h,), gain_h=(k * h,), bias_h=(k * h,))
    if kind == "bn_lstm":
        shapes.update(gain_x=(k * h,), gain_h=(k * h,))
    if kind in ("ln_lstm", "ln_lstm_joint", "draw_lstm", "bn_lstm"):
        shapes.update(gain_c=(h,), bias_c=(h,))
    if kind in ("gru", "ln_gru"):
        shapes.update(W_xn=(d, h), W_hn=(h, h))
    if kind == "gru":
        shapes["b_n"] = (h,)
    if kind == "ln_gru":
        shapes.update(gain_xn=(h,), bias_xn=(h,), gain_hn=(h,), bias_hn=(h,))
    return shapes


def init_params(kind: str, input_size: int, hidden_size: int, rng: np.random.Generator | int | None = None,
                dtype: object = np.float64, *, gain: float | None = None) -> dict[str, np.ndarray]:
    """Fresh parameters of a ``kind`` cell, as a dict of arrays of ``dtype`` (see the module docstring).

    Input matrices (``W_x``, ``W_xn``): uniform on [-0.1, 0.1]. Recurrent matrices (``W_h``, ``W_hn``):
    one orthogonal ``H x H`` block per gate. Biases (``b``, ``b_n``, every ``bias_*``): 0. Gains: 1 for
    LN, 0.1 for the BN-LSTM (Cooijmans et al. 2016), or ``gain`` when given. ``rng`` is a NumPy
    ``Generator`` or a seed; the draws happen in the order of :func:`param_shapes`, so a seed fixes the
    parameters of every backend (:mod:`lnlib.torch.recurrent` initializes through this function).
    """
    shapes = param_shapes(kind, input_size, hidden_size)
    rng = _check_rng(rng)
    dtype = np.dtype(dtype)
    if dtype.kind != "f":
        raise TypeError(f"dtype must be a floating dtype, got {dtype}")
    if gain is None:
        gain = 0.1 if kind == "bn_lstm" else 1.0
    elif isinstance(gain, bool) or not isinstance(gain, numbers.Real) or not np.isfinite(gain):
        raise TypeError(f"gain must be a finite real number or None, got {gain!r}")
    hidden = int(hidden_size)
    params = {}
    for name, shape in shapes.items():
        if name in ("W_h", "W_hn"):
            value = np.concatenate([orthogonal(hidden, rng) for _ in range(shape[1] // hidden)], axis=1)
        elif name.startswith("W_"):
            value = rng.uniform(-0.1, 0.1, size=shape)
        elif name.startswith("gain"):
            value = np.full(shape, float(gain))
        else:
            value = np.zeros(shape)
        params[name] = value.astype(dtype)
    return params


def orthogonal(n: int, rng: np.random.Generator) -> np.ndarray:
    """An ``n x n`` orthogonal matrix: the U factor of the SVD of a standard Gaussian matrix (as the
    skip-thoughts ``ortho_weight``)."""
    u, _, _ = np.linalg.svd(rng.normal(size=(n, n)))
    return u


def check_params(kind: str, params: object, *, input_size: int | None = None) -> tuple[int, int]:
    """Validate ``params`` for a ``kind`` cell; returns ``(D, H)`` read from ``W_x`` and ``W_h``.

    ``params`` must be a mapping with exactly the names of :func:`param_shapes` and those shapes; a
    missing, extra or misshapen entry is a ``ValueError`` that names it.
    """
    kind = check_kind(kind)
    if not isinstance(params, Mapping):
        raise TypeError(f"params must be a mapping from parameter names to arrays, got {type(params).__name__}")
    for name in ("W_x", "W_h"):
        if name not in params:
            raise ValueError(f"params is missing {name!r}, needed by a {kind!r} cell")
    shape_x, shape_h = _shape(params["W_x"]), _shape(params["W_h"])
    if len(shape_x) != 2 or len(shape_h) != 2 or min(shape_x[0], shape_h[0]) < 1:
        raise ValueError(f"params['W_x'] and params['W_h'] must be matrices (D, kH) and (H, kH); "
                         f"got shapes {shape_x} and {shape_h}")
    d, h = shape_x[0], shape_h[0]
    if input_size is not None and d != input_size:
        raise ValueError(f"params['W_x'] has {d} rows, but x has {input_size} features; expected equal")
    expected = param_shapes(kind, d, h)
    missing = [n for n in expected if n not in params]
    extra = [n for n in params if n not in expected]
    if missing or extra:
        raise ValueError(f"params for a {kind!r} cell must have the names {sorted(expected)}; "
                         f"missing {missing}, unexpected {extra}")
    for name, shape in expected.items():
        if _shape(params[name]) != shape:
            raise ValueError(f"params[{name!r}] has shape {_shape(params[name])}; a {kind!r} cell with "
                             f"D={d}, H={h} expects {shape}")
    return d, h


def _shape(value: object) -> tuple[int, ...]:
    return tuple(value.shape) if hasattr(value, "shape") else np.shape(value)


def check_kind(kind: object) -> str:
    """``kind`` must be one of :data:`KINDS`."""
    return check_choice(kind, KINDS, name="kind")


# --------------------------------------------------------------------------------------------------------
# step functions


def sigmoid(a: np.ndarray) -> np.ndarray:
    """The logistic function, written so that it never overflows: ``exp`` only sees ``-|a|``."""
    e = np.exp(-np.abs(a))
    return np.where(a >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def rnn_step(x: object, h: object, params: Params) -> np.ndarray:
    """Plain tanh RNN: ``h_t = tanh(h W_h + x W_x + b)``."""
    x, (h,) = _check_step("rnn", x, params, h=h)
    return np.tanh(h @ params["W_h"] + x @ params["W_x"] + params["b"])


def ln_rnn_step(x: object, h: object, params: Params, *, eps: float = 1e-5) -> np.ndarray:
    """Eq. 4: ``h_t = tanh(LN(h W_h + x W_x; gain, bias))``, one LN of the summed input."""
    x, (h,) = _check_step("ln_rnn", x, params, h=h)
    a = h @ params["W_h"] + x @ params["W_x"]
    return np.tanh(layer_norm(a, params["gain"], params["bias"], axis=-1, eps=eps))


def lstm_step(x: object, h: object, c: object, params: Params) -> tuple[np.ndarray, np.ndarray]:
    """Plain LSTM (eqs. 17–19); returns ``(h_t, c_t)``."""
    x, (h, c) = _check_step("lstm", x, params, h=h, c=c)
    return _lstm_update(h @ params["W_h"] + x @ params["W_x"] + params["b"], c)


def ln_lstm_step(x: object, h: object, c: object, params: Params, *, eps: float = 1e-5,
                 bias_in_input_ln: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """LN-LSTM (eqs. 20–22): separate LNs of ``h W_h`` and ``x W_x`` over the 4H pre-activations, LN of
    the cell inside the output tanh; returns ``(h_t, c_t)`` with ``c_t`` *un-normalized*.

    ``bias_in_input_ln=True`` computes what the authors' Theano code computes,
    ``LN(x W_x + b) + LN(h W_h) + b`` (the bias twice); the default is eq. 20, ``... + b`` once.
    """
    x, (h, c) = _check_step("ln_lstm", x, params, h=h, c=c)
    p = params
    x_term = x @ p["W_x"] + p["b"] if bias_in_input_ln else x @ p["W_x"]
    a = (layer_norm(h @ p["W_h"], p["gain_h"], p["bias_h"], axis=-1, eps=eps)
         + layer_norm(x_term, p["gain_x"], p["bias_x"], axis=-1, eps=eps) + p["b"])
    return _lstm_update(a, c, lambda cell: layer_norm(cell, p["gain_c"], p["bias_c"], axis=-1, eps=eps))


def ln_lstm_joint_step(x: object, h: object, c: object, params: Params, *,
                       eps: float = 1e-5) -> tuple[np.ndarray, np.ndarray]:
    """LSTM with eq. 4's joint LN of the summed input, ``LN(h W_h + x W_x; gain, bias)``, and the cell
    LN of eq. 22; returns ``(h_t, c_t)`` (un-normalized ``c_t``)."""
    x, (h, c) = _check_step("ln_lstm_joint", x, params, h=h, c=c)
    p = params
    a = layer_norm(h @ p["W_h"] + x @ p["W_x"], p["gain"], p["bias"], axis=-1, eps=eps)
    return _lstm_update(a, c, lambda cell: layer_norm(cell, p["gain_c"], p["bias_c"], axis=-1, eps=eps))


def draw_lstm_step(x: object, h: object, c: object, params: Params, *,
                   eps: float = 1e-5) -> tuple[np.ndarray, np.ndarray]:
    """The DRAW variant (eqs. 29–31): plain LSTM gates, LN of the cell before the output tanh only."""
    x, (h, c) = _check_step("draw_lstm", x, params, h=h, c=c)
    p = params
    a = h @ p["W_h"] + x @ p["W_x"] + p["b"]
    return _lstm_update(a, c, lambda cell: layer_norm(cell, p["gain_c"], p["bias_c"], axis=-1, eps=eps))


def bn_lstm_step(x: object, h: object, c: object, params: Params, *, stats: Stats | None = None,
                 eps: float = 1e-5, return_batch_stats: bool = False) -> tuple[np.ndarray, ...]:
    r"""BN-LSTM of Cooijmans et al. (2016) for *one* time step; returns ``(h_t, c_t)``.

    Training mode (``stats=None``): each BN uses the statistics of this batch at this time step (mean and
    biased variance over the ``N`` cases; at least 2 cases). Evaluation mode: ``stats`` holds this time
    step's population statistics (:data:`STAT_KEYS`, e.g. from :func:`bn_lstm_population_stats`), and
    each case is normalized on its own. With ``return_batch_stats=True`` the result is
    ``(h_t, c_t, batch_stats)``, ``batch_stats`` holding this step's means and *unbiased* variances (what
    running estimates are fed, as in PyTorch).

    In training mode the products are formed from batch-centred inputs (:func:`_centred_product`; the
    same BN output in exact arithmetic, and no float32 cancellation in the weight gradients).
    **Features constant over the batch** (:func:`constant_over_batch`, e.g. every BN at the first steps of
    sequential MNIST, whose top pixel rows are the same for every image) normalize to exactly their shift
    (:math:`\hat x = 0`), where :func:`lnlib.numpy.batch_norm` would return the rounding error of
    :math:`x - \mu` divided by :math:`\sqrt{\epsilon}`. The PyTorch twin also passes no gradient through
    them; chapter 8 shows why that is the exact parameter gradient.
    """
    x, (h, c) = _check_step("bn_lstm", x, params, h=h, c=c)
    p = params
    if stats is not None:
        stats = _check_stats(stats, p)
        ax, ah = x @ p["W_x"], h @ p["W_h"]
    else:  # training mode: products of batch-centred inputs (BN removes their batch mean anyway)
        (ax, mean_ax), (ah, mean_ah) = _centred_product(x, p["W_x"]), _centred_product(h, p["W_h"])

    def bn(value: np.ndarray, key: str, gamma: np.ndarray, beta: np.ndarray | None) -> np.ndarray:
        if stats is None:
            out = batch_norm(value, gamma, beta, axis=0, eps=eps)
            return np.where(constant_over_batch(value), 0.0 if beta is None else beta, out).astype(out.dtype)
        return batch_norm_inference(value, stats["mean_" + key], stats["var_" + key], gamma, beta, eps)

    a = bn(ah, "h", p["gain_h"], None) + bn(ax, "x", p["gain_x"], None) + p["b"]
    new_h, new_c = _lstm_update(a, c, lambda cell: bn(cell, "c", p["gain_c"], p["bias_c"]))
    if not return_batch_stats:
        return new_h, new_c
    batch_stats = {}
    for key, value, offset in (("x", ax, mean_ax), ("h", ah, mean_ah), ("c", new_c, 0.0)):
        mean, var = moments(value, axis=0, ddof=1, keepdims=False)
        batch_stats["mean_" + key], batch_stats["var_" + key] = mean + offset, var
    return new_h, new_c, batch_stats


def _centred_product(z: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r"""``((z - mean(z)) @ w, mean(z) @ w)``, the mean over the batch (rows).

    BN over the batch gives the same result for :math:`zW` and :math:`(z - \bar z)W` in exact arithmetic,
    but the gradient of :math:`W` is then :math:`(z - \bar z)^\top \delta` instead of
    :math:`z^\top\delta`, whose part :math:`\bar z^\top \sum_n \delta_n` is exactly zero (BN's input
    gradient :math:`\delta` sums to zero over the batch) but in float32 is the rounding residue of terms
    amplified by up to :math:`1/\sqrt{\epsilon}` where the batch is (nearly) constant."""
    mean = z.mean(axis=0, keepdims=True)
    return (z - mean) @ w, (mean @ w)[0]


def constant_over_batch(values: np.ndarray) -> np.ndarray:
    r"""Boolean mask of the features (columns) of ``values`` ``(N, F)`` that are constant over the batch up
    to rounding: :math:`\max_n x_{nj} - \min_n x_{nj} \le` :data:`CONSTANT_ULPS` :math:`\cdot\,
    \varepsilon_{\text{dtype}} \max_n |x_{nj}|` (an all-zero column is constant).

    In exact arithmetic such a feature has batch variance 0, its batch-normalized value is
    :math:`\beta` and, when it is computed from values that are themselves the same for every case, its
    contribution to every parameter gradient is exactly zero (chapter 8). Computed in floating point its
    centred values :math:`x - \mu` are rounding errors that BN divides by :math:`\sqrt{\epsilon}`.
    """
    values = np.asarray(values)
    if values.ndim != 2:
        raise ValueError(f"values must have shape (N, F), got shape {values.shape}")
    spread = values.max(axis=0) - values.min(axis=0)
    finfo = np.finfo(values.dtype)
    return spread <= constant_tolerance(float(finfo.eps), finfo.bits) * np.abs(values).max(axis=0)


def constant_tolerance(eps: float, bits: int) -> float:
    """The relative spread below which a feature of a dtype with machine epsilon ``eps`` and ``bits`` bits
    counts as constant: :data:`CONSTANT_ULPS` units of rounding of the dtype the statistics are accumulated
    in, plus, for a half-precision dtype (accumulated in float32), two units of its own rounding, since the
    values themselves are rounded to it (:data:`CONSTANT_ULPS` units of bfloat16 would be 50 % of the value)."""
    if bits >= 32:
        return CONSTANT_ULPS * eps
    return CONSTANT_ULPS * float(np.finfo(np.float32).eps) + 2 * eps


def gru_step(x: object, h: object, params: Params) -> np.ndarray:
    """Plain GRU (eqs. 23–25, with the code's biases ``b`` and ``b_n``)."""
    x, (h,) = _check_step("gru", x, params, h=h)
    p = params
    z, r = _split(h @ p["W_h"] + x @ p["W_x"] + p["b"], 2)
    candidate = np.tanh(x @ p["W_xn"] + p["b_n"] + sigmoid(r) * (h @ p["W_hn"]))
    return _gru_update(z, h, candidate)


def ln_gru_step(x: object, h: object, params: Params, *, eps: float = 1e-5) -> np.ndarray:
    """LN-GRU (eqs. 26–28): four LNs, of ``h W_h`` and ``x W_x`` (the 2H gates) and of ``x W_xn`` and
    ``h W_hn`` (the candidate's two terms)."""
    x, (h,) = _check_step("ln_gru", x, params, h=h)
    p = params
    gates = (layer_norm(h @ p["W_h"], p["gain_h"], p["bias_h"], axis=-1, eps=eps)
             + layer_norm(x @ p["W_x"], p["gain_x"], p["bias_x"], axis=-1, eps=eps))
    z, r = _split(gates, 2)
    candidate = np.tanh(layer_norm(x @ p["W_xn"], p["gain_xn"], p["bias_xn"], axis=-1, eps=eps)
                        + sigmoid(r) * layer_norm(h @ p["W_hn"], p["gain_hn"], p["bias_hn"], axis=-1, eps=eps))
    return _gru_update(z, h, candidate)


def _lstm_update(a: np.ndarray, c: np.ndarray,
                 cell_norm: Callable[[np.ndarray], np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Gates ``(f, i, o, g)`` from the stacked pre-activations; returns ``(h_t, c_t)``."""
    f, i, o, g = _split(a, 4)
    new_c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
    shown = new_c if cell_norm is None else cell_norm(new_c)
    return sigmoid(o) * np.tanh(shown), new_c


def _gru_update(z: np.ndarray, h: np.ndarray, candidate: np.ndarray) -> np.ndarray:
    gate = sigmoid(z)
    return (1.0 - gate) * h + gate * candidate


def _split(a: np.ndarray, k: int) -> list[np.ndarray]:
    return np.split(a, k, axis=-1)


# --------------------------------------------------------------------------------------------------------
# sequences


def step(kind: str, x: object, state: Sequence[np.ndarray], params: Params, *, eps: float = 1e-5,
         stats: Stats | None = None, bias_in_input_ln: bool = False) -> tuple[np.ndarray, ...]:
    """One step of any ``kind``, with a uniform signature: ``state`` is ``(h, c)`` for the LSTM kinds
    (:data:`CELL_KINDS`) and ``(h,)`` for the others; returns the new state, a tuple of the same form.

    ``stats`` only applies to ``bn_lstm`` (evaluation mode), ``bias_in_input_ln`` only to ``ln_lstm``.
    """
    kind = check_kind(kind)
    state = _check_state(kind, state)
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


def initial_state(kind: str, batch_size: int, hidden_size: int, dtype: object = np.float64
                  ) -> tuple[np.ndarray, ...]:
    """Zeros: ``(h0, c0)`` for the LSTM kinds, ``(h0,)`` for the others."""
    kind = check_kind(kind)
    zeros = np.zeros((batch_size, hidden_size), dtype=dtype)
    return (zeros, zeros.copy()) if kind in CELL_KINDS else (zeros,)


def run_sequence(kind: str, xs: object, params: Params, *, state: Sequence[np.ndarray] | None = None,
                 eps: float = 1e-5, stats: Sequence[Stats] | None = None,
                 bias_in_input_ln: bool = False) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    """Unroll a ``kind`` cell over ``xs`` of shape ``(T, N, D)`` (time-major).

    Returns ``(hs, final_state)``: ``hs`` of shape ``(T, N, H)`` and the state after the last step.
    ``state`` defaults to zeros. For ``bn_lstm``, ``stats=None`` is training mode (per-time-step batch
    statistics); otherwise ``stats`` is a list of per-time-step population statistics and step ``t`` uses
    ``stats[min(t, len(stats) - 1)]``: beyond the longest training sequence the last time step's
    statistics are reused, as Cooijmans et al. (2016) do.
    """
    kind = check_kind(kind)
    xs = as_float_array(xs, name="xs")
    if xs.ndim != 3:
        raise ValueError(f"xs must have shape (T, N, D) (time-major), got an array with shape {xs.shape}")
    if xs.shape[0] < 1:
        raise ValueError(f"xs must have at least one time step, got shape {xs.shape}")
    _, hidden = check_params(kind, params, input_size=xs.shape[2])
    if state is None:
        state = initial_state(kind, xs.shape[1], hidden, dtype=xs.dtype)
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
    return np.stack(hs), tuple(state)


def bn_lstm_population_stats(sequences: Sequence[object], params: Params, *, momentum: float | None = 0.1,
                             eps: float = 1e-5, max_steps: int | None = None) -> list[dict[str, np.ndarray]]:
    """Per-time-step running statistics of a BN-LSTM after training-mode passes over ``sequences``.

    Each element of ``sequences`` is one batch ``(T, N, D)`` (lengths may differ), unrolled from zero
    state. At time step ``t`` of every sequence that reaches it, the running estimates of slot ``t`` are
    updated as ``torch.nn.BatchNorm1d`` does: ``running = (1 - m) running + m batch`` with the *unbiased*
    batch variance, starting from mean 0 and variance 1; ``momentum=None`` is the cumulative average of
    the batches that reached ``t``. Returns one dict (:data:`STAT_KEYS`) per time step up to the longest
    sequence (or ``max_steps`` slots, for comparison with a module that pre-allocates them), the reference
    for :class:`lnlib.torch.recurrent.BNLSTMCell`'s buffers. Parameters are not changed.
    """
    if momentum is not None and not 0.0 <= momentum <= 1.0:
        raise ValueError(f"momentum must be None or in [0, 1], got {momentum!r}")
    _, hidden = check_params("bn_lstm", params)
    four = 4 * hidden
    dtype = np.asarray(params["W_x"]).dtype
    running: list[dict[str, np.ndarray]] = []
    counts: list[int] = []

    def fresh() -> dict[str, np.ndarray]:
        out = {}
        for key, size in (("x", four), ("h", four), ("c", hidden)):
            out["mean_" + key], out["var_" + key] = np.zeros(size, dtype), np.ones(size, dtype)
        return out

    for i, xs in enumerate(sequences):
        xs = as_float_array(xs, name=f"sequences[{i}]")
        if xs.ndim != 3:
            raise ValueError(f"sequences[{i}] must have shape (T, N, D), got {xs.shape}")
        state = initial_state("bn_lstm", xs.shape[1], hidden, dtype=xs.dtype)
        for t in range(xs.shape[0]):
            h, c, batch = bn_lstm_step(xs[t], *state, params, eps=eps, return_batch_stats=True)
            state = (h, c)
            while len(running) <= t:
                running.append(fresh())
                counts.append(0)
            if momentum == 0.0:
                continue
            counts[t] += 1
            factor = 1.0 / counts[t] if momentum is None else momentum
            for key in STAT_KEYS:
                running[t][key] = (1.0 - factor) * running[t][key] + factor * batch[key].astype(dtype)
    if max_steps is not None:
        if len(running) > max_steps:
            raise ValueError(f"max_steps={max_steps} is shorter than the longest sequence ({len(running)} steps)")
        running += [fresh() for _ in range(max_steps - len(running))]
    return running


# --------------------------------------------------------------------------------------------------------
# checks


def _check_size(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def _check_rng(rng: object) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, numbers.Integral) and not isinstance(rng, bool) and rng < 0:
        raise ValueError(f"rng must be a non-negative int seed (or a numpy.random.Generator, or None), got {rng}")
    if rng is None or (isinstance(rng, numbers.Integral) and not isinstance(rng, bool)):
        return np.random.default_rng(rng)
    raise TypeError(f"rng must be a numpy.random.Generator, an int seed or None, got {type(rng).__name__}")


def _check_step(kind: str, x: object, params: Params, **state: object) -> tuple[np.ndarray, list[np.ndarray]]:
    """``x`` as a float matrix ``(N, D)`` and the state arrays ``(N, H)``, after validating ``params``."""
    x = as_float_array(x, name="x")
    if x.ndim != 2:
        raise ValueError(f"x must be one time step of shape (N, D), got an array with shape {x.shape}")
    _, hidden = check_params(kind, params, input_size=x.shape[1])
    for name, value in params.items():
        _same_dtype(as_float_array(value, name=f"params[{name!r}]"), x, f"params[{name!r}]")
    arrays = []
    for name, value in state.items():
        value = _same_dtype(as_float_array(value, name=name), x, name)
        if value.shape != (x.shape[0], hidden):
            raise ValueError(f"{name} must have shape (N, H) = {(x.shape[0], hidden)} for x of shape {x.shape} "
                             f"and H = {hidden}, got {value.shape}")
        arrays.append(value)
    return x, arrays


def _same_dtype(value: np.ndarray, x: np.ndarray, name: str) -> np.ndarray:
    """``value`` if it has ``x``'s dtype; else the ``TypeError`` the torch twin raises (no silent promotion
    of a float32 step to float64)."""
    if value.dtype != x.dtype:
        raise TypeError(f"{name} has dtype {value.dtype} but x has {x.dtype}; expected the same dtype")
    return value


def _check_state(kind: str, state: object) -> tuple[Any, ...]:
    size = 2 if kind in CELL_KINDS else 1
    if not isinstance(state, (tuple, list)) or len(state) != size:
        form = "(h, c)" if size == 2 else "(h,)"
        raise ValueError(f"state for kind={kind!r} must be a tuple {form}, got {type(state).__name__}"
                         + (f" of length {len(state)}" if isinstance(state, (tuple, list)) else ""))
    return tuple(state)


def _check_stats(stats: object, params: Params) -> dict[str, np.ndarray]:
    if not isinstance(stats, Mapping) or any(k not in stats for k in STAT_KEYS):
        raise ValueError(f"stats must be a mapping with the keys {STAT_KEYS}, got "
                         f"{sorted(stats) if isinstance(stats, Mapping) else type(stats).__name__}")
    hidden = params["W_h"].shape[0]
    out = {}
    for key in STAT_KEYS:
        size = hidden if key.endswith("_c") else 4 * hidden
        value = as_float_array(stats[key], name=f"stats[{key!r}]")
        if value.shape != (size,):
            raise ValueError(f"stats[{key!r}] must have shape {(size,)}, got {value.shape}")
        out[key] = value
    return out
