r"""The conventions of layer normalization: one parameterized function and the presets of the field.

The paper's eq. 3 defines :math:`\sigma` with no :math:`\epsilon` (Ba, Kiros & Hinton 2016); every
implementation adds one, and they disagree about where, how large, and with which variance. All of them
are special cases of one function of the values :math:`x_1,\dots,x_M` of one slice over ``axis``:

.. math::

    \mu = \frac1M\sum_i x_i, \qquad
    s^2 = \frac{1}{M-d}\sum_i (x_i-\mu)^2, \qquad
    y_i = \gamma_i\,\frac{x_i-\mu}{D} + \beta_i,

with the knobs

``eps_placement="variance"``  :math:`D = \sqrt{s^2+\epsilon}` (the authors' Theano ``ln``, PyTorch,
                              Keras, Flax, MATLAB);
``eps_placement="std"``       :math:`D = \sqrt{s^2}+\epsilon` (the authors' Lua Torch module, the
                              Annotated Transformer);
``ddof`` :math:`= d`          0 for the biased variance of eq. 3, 1 for the unbiased (Bessel-corrected)
                              estimator of ``torch.std`` / ``torch.var`` defaults;
``variance="two-pass"``       :math:`s^2` from the centred values, as written above
                              (:func:`lnlib.numpy.moments`);
``variance="one-pass"``       :math:`s^2 = \frac{M}{M-d}\max\!\big(0,\ \frac1M\sum_i x_i^2-\mu^2\big)`,
                              Flax's "fast variance": one sweep over the data
                              (:func:`lnlib.numpy.variance.one_pass_moments`), clamped at 0 because
                              rounding can make the difference negative.

In exact arithmetic the two variance algorithms agree. In floating point the one-pass form subtracts two
numbers of size :math:`\mu^2`: with :math:`|\mu|\gg s` it loses about :math:`2\log_{10}(|\mu|/s)` of the
format's digits (float32 has about 7), so at :math:`|\mu|/s = 10^4` nothing is left.

**Closed forms.** For :math:`\gamma=1,\ \beta=0` a convention's output is the exactly standardized slice
:math:`\hat x_i=(x_i-\mu)/\sigma` (biased :math:`\sigma`) times an *output scale*

.. math::

    f = \frac{\sigma}{D}, \qquad
    D = \sqrt{\tfrac{M}{M-d}\,\sigma^2+\epsilon}\ \ \text{or}\ \ \sqrt{\tfrac{M}{M-d}}\,\sigma+\epsilon,

(:func:`output_scale`), so two two-pass conventions ``a`` and ``b`` differ on a slice by exactly
:math:`\max_i|x_i-\mu|\cdot|1/D_a-1/D_b|` (:func:`predicted_difference`). Special cases: with
:math:`\epsilon\ll\sigma^2` the unbiased variant is the biased one times :math:`\sqrt{(M-1)/M}`; at
:math:`d=0`, :math:`\epsilon` in the variance gives :math:`f=\sigma/\sqrt{\sigma^2+\epsilon}` and
:math:`\epsilon` on the standard deviation gives :math:`f=\sigma/(\sigma+\epsilon)`.

The presets in :data:`CONVENTIONS` record, for each knob, the source where it was read and whether it was
verified there; :func:`apply_convention` runs a preset, taking MATLAB's statistics axes from a dimension
format through :func:`lnlib.matlab.layout`.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from .. import matlab
from .._checks import check_choice, check_ddof, check_eps, check_reduction_size, normalize_axis, reduced_size
from ._arrays import as_float_array, as_param
from .normalization import moments
from .variance import one_pass_moments

Axis = int | tuple[int, ...]

EPS_PLACEMENTS = ("variance", "std")
VARIANCE_ALGORITHMS = ("two-pass", "one-pass")


def layer_norm_variant(x: object, gamma: object = None,
                       beta: object = None, *, axis: Axis = -1,
                       eps: float = 1e-5, eps_placement: str = "variance",
                       ddof: int = 0, variance: str = "two-pass"
                       ) -> np.ndarray:
    r"""Layer normalization under any convention of the module docstring.

    ``gamma * (x - mean) / D + beta`` with :math:`D=\sqrt{s^2+\epsilon}`
    (``eps_placement="variance"``) or :math:`D=\sqrt{s^2}+\epsilon`
    (``"std"``); :math:`s^2` with ``ddof`` as in :func:`numpy.var`, by
    ``variance="two-pass"`` or ``"one-pass"``. The defaults give
    :func:`lnlib.numpy.layer_norm` (the paper's Theano code). Output dtype
    = input dtype; float16 and bfloat16 are computed in float32.
    """
    x = as_float_array(x)
    axes = normalize_axis(axis, x.ndim)
    eps = check_eps(eps)
    eps_placement = check_choice(eps_placement, EPS_PLACEMENTS,
                                 name="eps_placement")
    variance = check_choice(variance, VARIANCE_ALGORITHMS, name="variance")
    ddof = check_ddof(ddof)
    check_reduction_size(x.shape, axes, minimum=ddof + 1,
                         what="layer_norm_variant")
    gamma = as_param(gamma, x, name="gamma")
    beta = as_param(beta, x, name="beta")
    if variance == "two-pass":
        mean, var = moments(x, axis=axes, ddof=ddof)
    else:  # Flax's fast variance: clamped at 0 (lnlib's one-pass is not)
        mean, var = one_pass_moments(x, axis=axes, ddof=ddof)
        var = np.maximum(var, 0)
    eps_ = np.asarray(eps, dtype=var.dtype)
    if eps_placement == "variance":
        denominator = np.sqrt(var + eps_)
    else:
        denominator = np.sqrt(var) + eps_
    # multiply by the reciprocal, as lnlib.numpy.layer_norm does (same bits)
    y = (x.astype(var.dtype, copy=False) - mean) * (1.0 / denominator)
    if gamma is not None:
        y *= gamma
    if beta is not None:
        y += beta
    return y.astype(x.dtype, copy=False)


class Check(NamedTuple):
    """One knob of a preset and where its value comes from."""

    knob: str       #: "eps", "eps_placement", "ddof", "variance" or "axes"
    verified: bool  #: True when the value was read in the cited source (code or documentation)
    evidence: str   #: what was read, or why it could not be


@dataclass(frozen=True)
class Convention:
    """A named set of knobs for :func:`layer_norm_variant`, with its provenance."""

    key: str
    label: str
    short: str                #: at most 9 characters, for table columns
    eps: float
    eps_placement: str
    ddof: int
    variance: str
    cite: str                 #: citation key in the book's references.bib
    source: str               #: URL or repository file the knobs were read from
    checks: tuple[Check, ...]
    matlab_format: str | None = None  #: statistics axes from these labels (in the array's axis order)
    note: str = ""

    def knobs(self) -> dict[str, object]:
        """The keyword arguments of :func:`layer_norm_variant` this convention sets."""
        return {"eps": self.eps, "eps_placement": self.eps_placement, "ddof": self.ddof,
                "variance": self.variance}

    def unverified(self) -> tuple[Check, ...]:
        """The knobs whose values could not be confirmed in a source."""
        return tuple(c for c in self.checks if not c.verified)


_KIROS = "https://github.com/ryankiros/layer-norm (commit 7a9a1bf)"

CONVENTIONS: dict[str, Convention] = {c.key: c for c in (
    Convention(
        "paper_theano", "paper, Theano ln()", "paper", 1e-5, "variance", 0, "two-pass", "kiros2016code",
        f"{_KIROS}, layers.py, function ln",
        (Check("eps", True, "layers.py: _eps = 1e-5"),
         Check("eps_placement", True, "layers.py: tensor.sqrt(x.var(1) + _eps)"),
         Check("ddof", True, "Theano tensor.var: mean of the centred squares (biased)"),
         Check("variance", True, "Theano tensor.var centres first (two-pass)"),
         Check("axes", True, "layers.py: axis 1 of a (batch, units) matrix")),
        note="The reference of this chapter: eq. 3 of the paper plus the code's epsilon."),
    Convention(
        "authors_lua", "authors' Lua module", "Lua", 1e-5, "std", 0, "two-pass", "kiros2016code",
        f"{_KIROS}, torch_modules/LayerNormalization.lua",
        (Check("eps", True, "LayerNormalization.lua: eps = eps or 1e-5"),
         Check("eps_placement", True, "nn.AddConstant(eps) after nn.Sqrt(): added to the std"),
         Check("ddof", True, "nn.Mean(2) of the squared centred input (biased)"),
         Check("variance", True, "the input is centred before squaring (two-pass)"),
         Check("axes", True, "nn.Mean(2): dimension 2 of (batch, units)")),
        note="Commit 64cd3bb divided by variance + eps (no sqrt); fixed in 7a9a1bf."),
    Convention(
        "pytorch", "PyTorch nn.LayerNorm", "PyTorch", 1e-5, "variance", 0, "two-pass", "pytorch_layernorm",
        "https://docs.pytorch.org/docs/stable/generated/torch.nn.LayerNorm.html",
        (Check("eps", True, "docs: eps=1e-05"),
         Check("eps_placement", True, "docs formula: sqrt(Var[x] + eps)"),
         Check("ddof", True, "docs: biased estimator, torch.var(input, correction=0)"),
         Check("variance", False, "CPU kernel uses a Welford-type update, not two-pass; same "
                                  "maths, different rounding (compared with torch in tests)"),
         Check("axes", True, "docs: the last len(normalized_shape) dimensions")),
        note="Numerically checked against torch.nn.functional.layer_norm."),
    Convention(
        "keras", "Keras LayerNormalization", "Keras", 1e-3, "variance", 0, "two-pass", "keras_layernorm",
        "https://github.com/keras-team/keras keras/src/layers/normalization/layer_normalization.py",
        (Check("eps", True, "epsilon=1e-3 in the constructor and the docs"),
         Check("eps_placement", True, "code: ops.rsqrt(variance + self.epsilon)"),
         Check("ddof", True, "docstring: var_i = sum((x_i[j] - mean_i) ** 2) / k"),
         Check("variance", False, "ops.moments differs by backend: E[x^2]-E[x]^2 in the NumPy and "
                                  "PyTorch backends, jnp.var in JAX, tf.nn.moments in TensorFlow"),
         Check("axes", True, "axis=-1 by default")),
        note="Not run: TensorFlow/Keras is not installed; the knobs are transcribed."),
    Convention(
        "flax", "Flax linen LayerNorm", "Flax", 1e-6, "variance", 0, "one-pass", "flax_layernorm",
        "https://github.com/google/flax flax/linen/normalization.py",
        (Check("eps", True, "epsilon: float = 1e-6"),
         Check("eps_placement", True, "_normalize: lax.rsqrt(var + epsilon)"),
         Check("ddof", True, "_compute_stats: means over the reduction axes (biased)"),
         Check("variance", True, "use_fast_variance=True by default: max(0, E[x^2] - E[x]^2); "
                                 "statistics in at least float32"),
         Check("axes", True, "reduction_axes=-1, feature_axes=-1")),
        note="Not run: JAX/Flax is not installed; read in a 2024 copy of the source. Older Flax "
             "releases used the one-pass form without the option and without the clamp."),
    Convention(
        "annotated_transformer", "Annotated Transformer", "Annotated", 1e-6, "std", 1, "two-pass",
        "rush2018annotated",
        "https://github.com/harvardnlp/annotated-transformer the_annotated_transformer.py, LayerNorm",
        (Check("eps", True, "LayerNorm(features, eps=1e-6)"),
         Check("eps_placement", True, "a_2 * (x - mean) / (std + eps) + b_2"),
         Check("ddof", True, "std = x.std(-1): torch's default is the unbiased estimator"),
         Check("variance", False, "torch.std's summation algorithm was not read"),
         Check("axes", True, "mean(-1), std(-1): the last dimension")),
        note="Copied by codertimo/BERT-pytorch (issue 30) and many others."),
    Convention(
        "matlab", "MATLAB layerNormalizationLayer", "MATLAB", 1e-5, "variance", 0, "two-pass",
        "mathworks_layernormlayer",
        "https://www.mathworks.com/help/deeplearning/ref/nnet.cnn.layer.layernormalizationlayer.html",
        (Check("eps", True, "Epsilon default 1e-5 (documentation)"),
         Check("eps_placement", True, "documented formula: (x - mu) / sqrt(sigma^2 + eps)"),
         Check("ddof", False, "the page writes sigma_L^2 without its divisor; biased assumed"),
         Check("variance", False, "MATLAB's summation algorithm is not documented"),
         Check("axes", True, "OperationDimension 'auto' from the format (lnlib.matlab.layout)")),
        matlab_format="BC",
        note="Statistics axes from MATLAB dimension labels. 'BC' is a (batch, features) NumPy array, "
             "which MATLAB would store as 'CB'; per-channel scale and offset."),
)}


def get_convention(convention: object) -> Convention:
    """A :class:`Convention`, given itself or its key in :data:`CONVENTIONS`."""
    if isinstance(convention, Convention):
        return convention
    if isinstance(convention, str) and convention in CONVENTIONS:
        return CONVENTIONS[convention]
    raise ValueError(f"convention must be a Convention or one of {tuple(CONVENTIONS)}, got {convention!r}")


def resolve_axes(x: np.ndarray, convention: Convention, axis: Axis = -1,
                 fmt: str | None = None) -> tuple[tuple[int, ...], tuple[int, ...] | None]:
    """``(axes, param_shape)`` for running ``convention`` on ``x``.

    Conventions with a MATLAB format take their axes (and per-channel parameter shape) from
    :func:`lnlib.matlab.layout` with ``fmt`` (default: the convention's own format), whose labels name
    the axes of ``x`` in order; the others use ``axis`` and leave the parameters as given.
    """
    if convention.matlab_format is None:
        if fmt is not None:
            raise ValueError(f"fmt is only used by conventions with MATLAB dimension labels; "
                             f"{convention.key!r} takes axis=, got fmt={fmt!r}")
        return normalize_axis(axis, x.ndim), None
    fmt = matlab.check_format(convention.matlab_format if fmt is None else fmt)
    if len(fmt) != x.ndim:
        raise ValueError(f"fmt={fmt!r} has {len(fmt)} labels but x has {x.ndim} dimensions (shape {x.shape}); "
                         f"expected one label per dimension")
    layout = matlab.layout(fmt, num_channels=x.shape[fmt.index("C")])
    return layout.axis, layout.param_shape


def apply_convention(x: object, convention: object, gamma: object = None, beta: object = None, *,
                     axis: Axis = -1, fmt: str | None = None) -> np.ndarray:
    """Run a preset (a :class:`Convention` or its key) through :func:`layer_norm_variant`.

    For the MATLAB preset the statistics axes come from ``fmt`` (see :func:`resolve_axes`) and a 1-D
    ``gamma``/``beta`` of one value per channel is reshaped to broadcast along the channel axis.
    """
    conv = get_convention(convention)
    x = as_float_array(x)
    axes, param_shape = resolve_axes(x, conv, axis, fmt)
    if param_shape is not None:
        gamma, beta = (_per_channel(p, param_shape, name) for p, name in ((gamma, "gamma"), (beta, "beta")))
    return layer_norm_variant(x, gamma, beta, axis=axes, **conv.knobs())


def _per_channel(param: object, param_shape: tuple[int, ...], name: str) -> object:
    if param is None:
        return None
    array = as_float_array(param, name=name)
    channels = max(param_shape)
    if array.ndim == 1 and array.shape[0] == channels:
        return array.reshape(param_shape)
    return array


def output_scale(sigma: object, size: int, *, eps: float, eps_placement: str = "variance",
                 ddof: int = 0) -> np.ndarray:
    r"""The factor :math:`f=\sigma/D` by which a convention shrinks an exactly standardized slice.

    ``sigma`` is the *biased* standard deviation of a slice of ``size`` values (scalar or array);
    :math:`D` as in the module docstring. :math:`f\to1` for :math:`\sigma^2\gg\epsilon` (and
    ``ddof=0``), :math:`f\to0` for a near-constant slice.
    """
    sigma = np.asarray(sigma, dtype=np.float64)
    denominator = _denominator(sigma, size, check_eps(eps),
                               check_choice(eps_placement, EPS_PLACEMENTS, name="eps_placement"),
                               check_ddof(ddof))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(sigma == 0, 0.0, sigma / denominator)


def _denominator(sigma: np.ndarray, size: int, eps: float, eps_placement: str, ddof: int) -> np.ndarray:
    if isinstance(size, bool) or not isinstance(size, numbers.Integral) or size <= ddof:
        raise ValueError(f"size must be an int > ddof={ddof} (values per statistic), got {size!r}")
    s = sigma * np.sqrt(size / (size - ddof))
    return np.sqrt(s * s + eps) if eps_placement == "variance" else s + eps


def predicted_difference(x: object, a: object, b: object, *, axis: Axis = -1, fmt: str | None = None) -> float:
    r"""Closed-form :math:`\max|y_a-y_b|` of two conventions on ``x`` (no affine), in exact arithmetic.

    Per slice the outputs differ by :math:`\max_i|x_i-\mu|\cdot|1/D_a-1/D_b|`; the statistics are taken
    in float64 by two passes, so the prediction ignores the rounding of one-pass variances (that
    rounding is what the measured difference then shows). Both conventions must take their statistics
    over the same axes of ``x``.
    """
    ca, cb = get_convention(a), get_convention(b)
    x = as_float_array(x)
    axes_a, _ = resolve_axes(x, ca, axis, fmt if ca.matlab_format else None)
    axes_b, _ = resolve_axes(x, cb, axis, fmt if cb.matlab_format else None)
    if axes_a != axes_b:
        raise ValueError(f"conventions {ca.key!r} and {cb.key!r} take statistics over different axes of x "
                         f"({axes_a} vs {axes_b}); the closed form compares slices over the same axes")
    x64 = x.astype(np.float64)
    mean, var = moments(x64, axis=axes_a)
    size = reduced_size(x.shape, axes_a)
    largest = np.abs(x64 - mean).max(axis=axes_a, keepdims=True)
    sigma = np.sqrt(var)
    with np.errstate(invalid="ignore", divide="ignore"):  # 0/0 only where the slice is constant
        inv = [1.0 / _denominator(sigma, size, c.eps, c.eps_placement, c.ddof) for c in (ca, cb)]
        per_slice = np.where(largest == 0, 0.0, largest * np.abs(inv[0] - inv[1]))
    return float(per_slice.max()) if per_slice.size else 0.0
