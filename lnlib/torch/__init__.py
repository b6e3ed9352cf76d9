"""lnlib's PyTorch backend: the maths of :mod:`lnlib.numpy`, differentiable, on CPU or CUDA.

Same names and semantics as :mod:`lnlib.numpy`; functions take and return tensors, and the modules
:class:`LayerNorm`, :class:`BatchNorm` and :class:`GroupNorm` are ``torch.nn.Module`` objects.
"""

from .batch_norm import BatchNorm, batch_norm, batch_norm_backward, batch_norm_inference
from .device import resolve_device
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
    "resolve_device",
    "weight_norm",
    "weight_norm_backward",
]
