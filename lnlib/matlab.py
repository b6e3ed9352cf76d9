r"""MATLAB's dimension labels, translated into lnlib's ``axis`` and affine shape.

MATLAB's deep-learning functions label every dimension of a ``dlarray`` with one letter, its *format*:
``S`` spatial, ``C`` channel, ``B`` batch (observations), ``T`` time, ``U`` unspecified. A batch of 2-D
RGB images is ``"SSCB"`` (height, width, channel, batch), a batch of feature vectors ``"CB"``, a batch of
sequences ``"CBT"``. ``layerNormalizationLayer`` (since R2021a) normalizes each observation with a mean
:math:`\mu_L` and variance :math:`\sigma_L^2` taken over some of the other dimensions,
:math:`\hat x_i = (x_i-\mu_L)/\sqrt{\sigma_L^2+\epsilon}`, then applies a learnable scale :math:`\gamma` and
offset :math:`\beta` with one value per channel, and :math:`\epsilon = 10^{-5}` by default.

Which dimensions enter the statistics is the layer's ``OperationDimension`` (documented since R2023a):

============================  =================================================================
``"auto"`` (default)          channel only for feature (``CB``), sequence (``CBT``), 1-D image
                              (``SCB``) and spatio-temporal (``S...CBT``) input; spatial and
                              channel for 2-D and 3-D images (``SSCB``, ``SSSCB``)
``"channel-only"``            the channel dimension
``"spatial-channel"``         the spatial and channel dimensions
``"batch-excluded"``          every dimension except the batch dimension (S, C, T and U)
============================  =================================================================

These rules are transcribed from MathWorks' documentation (``layerNormalizationLayer`` and
``dlarray/layernorm`` pages); they were not checked against MATLAB itself. Where the documentation is
silent we chose, and say so: ``U`` dimensions enter the statistics only under ``"batch-excluded"``.

``layout(fmt, ...)`` reads the labels in the order of the array's axes, so the same helper serves data
kept in MATLAB's order (``"SSCB"``: ``H x W x C x N``) and in PyTorch's (``"BCSS"``: ``N x C x H x W``).
"""

from __future__ import annotations

from typing import NamedTuple

LABELS = "SCBTU"
OPERATION_DIMENSIONS = ("auto", "channel-only", "spatial-channel", "batch-excluded")


class MatlabLayout(NamedTuple):
    """How to call :func:`lnlib.numpy.layer_norm` for MATLAB-style layer normalization."""

    axis: tuple[int, ...]         #: axes the statistics are taken over
    param_shape: tuple[int, ...]  #: shape of the per-channel scale and offset, broadcastable against x
    input_kind: str               #: MATLAB's name for this kind of input ("2-D image", "sequence", ...)
    statistics_over: str          #: the labels that enter the statistics, e.g. "SSC"


def input_kind(fmt: str) -> str:
    """MATLAB's name for the kind of input a format describes (it decides what ``"auto"`` does)."""
    spatial, time = fmt.count("S"), "T" in fmt
    if spatial == 0:
        return "sequence" if time else "feature"
    if time:
        return "spatio-temporal"
    return {1: "1-D image", 2: "2-D image", 3: "3-D image"}.get(spatial, f"{spatial}-D image")


def check_format(fmt: object) -> str:
    """Validate a MATLAB format string; returns it unchanged."""
    if not isinstance(fmt, str):
        raise TypeError(f"fmt must be a str of MATLAB dimension labels such as 'SSCB', got {type(fmt).__name__}")
    if not fmt:
        raise ValueError("fmt must not be empty; expected MATLAB dimension labels such as 'SSCB' or 'CBT'")
    unknown = sorted(set(fmt) - set(LABELS))
    if unknown:
        raise ValueError(f"fmt={fmt!r} has unknown label(s) {''.join(unknown)!r}; expected only the letters "
                         f"S (spatial), C (channel), B (batch), T (time), U (unspecified), in upper case")
    for label in "CBT":
        if fmt.count(label) > 1:
            raise ValueError(f"fmt={fmt!r} has {fmt.count(label)} {label!r} dimensions; expected at most one")
    if "C" not in fmt:
        raise ValueError(f"fmt={fmt!r} has no channel dimension 'C'; layer normalization needs one "
                         f"(its scale and offset are per channel)")
    return fmt


def statistics_labels(fmt: str, operation_dimension: str = "auto") -> str:
    """The set of labels (as a string, in ``LABELS`` order) whose dimensions enter the statistics."""
    check_format(fmt)
    if operation_dimension not in OPERATION_DIMENSIONS:
        raise ValueError(f"operation_dimension must be one of {OPERATION_DIMENSIONS}, got {operation_dimension!r}")
    if operation_dimension == "auto":  # images with two or more spatial dimensions and no time
        image = fmt.count("S") >= 2 and "T" not in fmt
        operation_dimension = "spatial-channel" if image else "channel-only"
    return {"channel-only": "C", "spatial-channel": "SC", "batch-excluded": "SCTU"}[operation_dimension]


def layout(fmt: str, operation_dimension: str = "auto", *, num_channels: int) -> MatlabLayout:
    """``axis`` and per-channel parameter shape for an array whose axes carry the labels in ``fmt``.

    >>> layout("SSCB", num_channels=3)
    MatlabLayout(axis=(0, 1, 2), param_shape=(1, 1, 3, 1), input_kind='2-D image', statistics_over='SSC')
    >>> layout("CBT", num_channels=8).axis      # per time step, as the paper's recurrent LN
    (0,)
    """
    labels = statistics_labels(fmt, operation_dimension)
    if isinstance(num_channels, bool) or not isinstance(num_channels, int) or num_channels < 1:
        raise ValueError(f"num_channels must be a positive int, got {num_channels!r}")
    axis = tuple(i for i, label in enumerate(fmt) if label in labels)
    param_shape = tuple(num_channels if label == "C" else 1 for label in fmt)
    return MatlabLayout(axis, param_shape, input_kind(fmt), "".join(label for label in fmt if label in labels))
