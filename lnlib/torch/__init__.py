"""lnlib's PyTorch backend: the maths of :mod:`lnlib.numpy`, differentiable, on CPU or CUDA.

Same names and semantics as :mod:`lnlib.numpy`; functions take and return tensors, and the modules
:class:`LayerNorm` and :class:`BatchNorm` are ``torch.nn.Module`` objects.
"""

from .batch_norm import BatchNorm, batch_norm, batch_norm_backward, batch_norm_inference
from .device import resolve_device
from .layer_norm import LayerNorm, layer_norm, layer_norm_backward
from .normalization import moments

__all__ = [
    "BatchNorm",
    "LayerNorm",
    "batch_norm",
    "batch_norm_backward",
    "batch_norm_inference",
    "layer_norm",
    "layer_norm_backward",
    "moments",
    "resolve_device",
]
