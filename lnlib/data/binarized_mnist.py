"""Binarized MNIST for DRAW (§6.4, Figure 4): one fixed stochastic binarization, split 50,000 / 10,000 / 10,000.

The paper models "binarized MNIST" with the split of the DRAW paper (Gregor et al. 2015), which uses the
fixed binarization of Larochelle & Murray (2011): every pixel drawn once as Bernoulli(intensity) and the
result published as a file. That file is not on a package registry, so it cannot be had offline. We make
our own fixed binarization the same way from the MNIST shipped with the book (:mod:`lnlib.data.mnist`):
pixel :math:`k` of image :math:`n` is 1 when :math:`u_{nk} < x_{nk}/255`, with :math:`u` uniform from
NumPy's PCG64 generator seeded with :data:`SEED` (one draw per pixel, training images then test images, in
file order). The result is checked against :data:`SHA256`, so every machine trains on the same bits.

The split: the first 50,000 of the 60,000 MNIST training images for training, the last 10,000 for
validation, the 10,000 test images for testing (the paper's 50k/10k/10k). Nats on our binarization are
close to, but not the same numbers as, nats on Larochelle & Murray's: a different draw of the same kind
makes a slightly different data set, and bounds differ by a fraction of a nat between draws.
"""

from __future__ import annotations

import hashlib
from typing import NamedTuple

import numpy as np

from . import data_dir, verified
from .mnist import MNIST_SHA256, RESTORE

SEED = 20150210  #: the DRAW paper's arXiv date; any fixed seed would do, this one is recorded
#: of the packed bits (np.packbits of the train, valid and test images, in order)
SHA256 = "32de4fb7cd6f8d9f86541e39c340af75ccbd344d18e5f82fbbbf44f293544d8e"
TRAIN = 50_000


class Binarized(NamedTuple):
    train: np.ndarray  #: (50000, 784) float32 in {0, 1}
    valid: np.ndarray  #: (10000, 784)
    test: np.ndarray  #: (10000, 784)


def binarize(pixels: np.ndarray, seed: int = SEED) -> np.ndarray:
    """``pixels`` (uint8, any shape) to {0, 1} uint8: 1 where a uniform draw is below ``pixels / 255``."""
    if pixels.dtype != np.uint8:
        raise TypeError(f"pixels must be uint8 MNIST intensities, got dtype {pixels.dtype}")
    u = np.random.default_rng(seed).random(pixels.shape)
    return (u < pixels / 255.0).astype(np.uint8)


def digest(data: Binarized) -> str:
    """SHA-256 of the packed bits of ``train``, ``valid`` and ``test``, in that order."""
    h = hashlib.sha256()
    for part in data:
        h.update(np.packbits(part.astype(np.uint8)).tobytes())
    return h.hexdigest()


def load(dtype: object = np.float32) -> Binarized:
    """The fixed binarization, split 50k/10k/10k, checked against :data:`SHA256`."""
    path = verified(data_dir() / "mnist" / "mnist.npz", MNIST_SHA256, RESTORE)
    with np.load(path, allow_pickle=False) as archive:
        pixels = np.concatenate([archive["train_images"], archive["test_images"]])
    bits = binarize(pixels.reshape(len(pixels), -1))
    data = Binarized(bits[:TRAIN], bits[TRAIN:60_000], bits[60_000:])
    actual = digest(data)
    if actual != SHA256:
        raise ValueError(f"binarized MNIST has SHA-256 {actual}, expected {SHA256}: the generator (NumPy PCG64 "
                         f"random()) gave other bits on this machine, so results would not be comparable")
    return Binarized(*(part.astype(dtype) for part in data))
