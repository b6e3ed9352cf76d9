"""lnlib's NumPy backend: the reference implementation the book derives.

Same names and semantics as :mod:`lnlib.torch`. ``axis=`` always names the axes the statistics are taken
over; gains and biases broadcast against the input as in NumPy.
"""

from .batch_norm import BatchNorm, batch_norm, batch_norm_backward, batch_norm_inference
from .group_norm import GroupNorm, group_norm, group_norm_backward
from .layer_norm import LayerNorm, layer_norm, layer_norm_backward
from .normalization import moments
from .rms_norm import rms_norm, rms_norm_backward
from .weight_norm import weight_norm, weight_norm_backward

__all__ = [
    "BatchNorm",
    "GroupNorm",
    "LayerNorm",
    "batch_norm",
    "batch_norm_backward",
    "batch_norm_inference",
    "group_norm",
    "group_norm_backward",
    "layer_norm",
    "layer_norm_backward",
    "moments",
    "rms_norm",
    "rms_norm_backward",
    "weight_norm",
    "weight_norm_backward",
]
