"""MATLAB dimension labels and OperationDimension -> axis and per-channel affine shape."""

from __future__ import annotations

import numpy as np
import pytest

import lnlib.numpy as lnp
from conftest import needs_torch, torch
from lnlib import matlab

# (format, OperationDimension, expected statistics axes) for every format of the issue and every option.
EXPECTED = {
    "SSCB": {"auto": (0, 1, 2), "channel-only": (2,), "spatial-channel": (0, 1, 2), "batch-excluded": (0, 1, 2)},
    "SCB": {"auto": (1,), "channel-only": (1,), "spatial-channel": (0, 1), "batch-excluded": (0, 1)},
    "CB": {"auto": (0,), "channel-only": (0,), "spatial-channel": (0,), "batch-excluded": (0,)},
    "CBT": {"auto": (0,), "channel-only": (0,), "spatial-channel": (0,), "batch-excluded": (0, 2)},
    "SSSCB": {"auto": (0, 1, 2, 3), "channel-only": (3,), "spatial-channel": (0, 1, 2, 3),
              "batch-excluded": (0, 1, 2, 3)},
    "SSCBT": {"auto": (2,), "channel-only": (2,), "spatial-channel": (0, 1, 2), "batch-excluded": (0, 1, 2, 4)},
}
CASES = [(fmt, option, axes) for fmt, options in EXPECTED.items() for option, axes in options.items()]


@pytest.mark.parametrize("fmt,option,axes", CASES, ids=[f"{f}-{o}" for f, o, _ in CASES])
def test_statistics_axes(fmt, option, axes):
    layout = matlab.layout(fmt, option, num_channels=3)
    assert layout.axis == axes
    assert layout.param_shape == tuple(3 if label == "C" else 1 for label in fmt)
    assert "B" not in layout.statistics_over


@pytest.mark.parametrize("fmt,kind", [("CB", "feature"), ("CBT", "sequence"), ("SCB", "1-D image"),
                                      ("SSCB", "2-D image"), ("SSSCB", "3-D image"), ("SSCBT", "spatio-temporal")])
def test_input_kinds(fmt, kind):
    assert matlab.input_kind(fmt) == kind


def test_labels_may_come_in_pytorch_order():
    assert matlab.layout("BCSS", num_channels=3).axis == (1, 2, 3)
    assert matlab.layout("BCSS", num_channels=3).param_shape == (1, 3, 1, 1)


def test_unspecified_dimensions_enter_only_batch_excluded():
    assert matlab.layout("SSCBU", num_channels=2).axis == (0, 1, 2)
    assert matlab.layout("SSCBU", "batch-excluded", num_channels=2).axis == (0, 1, 2, 4)


@pytest.mark.parametrize("fmt,error,words", [
    ("sscb", ValueError, "unknown label"),
    ("SSXB", ValueError, "unknown label(s) 'X'"),
    ("SCCB", ValueError, "2 'C' dimensions"),
    ("SSBT", ValueError, "no channel dimension"),
    ("", ValueError, "must not be empty"),
    (["S", "C"], TypeError, "fmt must be a str"),
])
def test_bad_formats(fmt, error, words):
    with pytest.raises(error, match="fmt") as info:
        matlab.layout(fmt, num_channels=3)
    assert words in str(info.value)


def test_bad_option_and_channels():
    with pytest.raises(ValueError, match="operation_dimension must be one of"):
        matlab.layout("SSCB", "spatial", num_channels=3)
    for bad in (0, -1, 2.0, True):
        with pytest.raises(ValueError, match="num_channels"):
            matlab.layout("SSCB", num_channels=bad)


@needs_torch
def test_matlab_style_image_layer_norm_is_group_norm_with_one_group(rng):
    x = rng.normal(1.0, 2.0, size=(5, 3, 4, 6))  # N x C x H x W, labels "BCSS"
    gamma, beta = rng.normal(size=3), rng.normal(size=3)
    layout = matlab.layout("BCSS", num_channels=3)
    ours = lnp.layer_norm(x, gamma.reshape(layout.param_shape), beta.reshape(layout.param_shape), axis=layout.axis)
    ref = torch.nn.functional.group_norm(torch.from_numpy(x), 1, torch.from_numpy(gamma), torch.from_numpy(beta))
    np.testing.assert_allclose(ours, ref.numpy(), rtol=0, atol=1e-12)


def test_matlab_order_and_pytorch_order_give_the_same_result(rng):
    x = rng.normal(size=(4, 5, 3, 2))  # H x W x C x N, labels "SSCB"
    gamma = rng.normal(size=3)
    a = matlab.layout("SSCB", num_channels=3)
    b = matlab.layout("BCSS", num_channels=3)
    y_matlab = lnp.layer_norm(x, gamma.reshape(a.param_shape), axis=a.axis)
    y_torch = lnp.layer_norm(x.transpose(3, 2, 0, 1), gamma.reshape(b.param_shape), axis=b.axis)
    np.testing.assert_allclose(y_matlab.transpose(3, 2, 0, 1), y_torch, rtol=0, atol=1e-13)
