"""Datasets shipped with the book, verified by checksum before use.

Files live in the repository's ``data/`` folder (or under ``$LNLIB_DATA_DIR``). Every loader checks the
file's SHA-256 first and raises :class:`DatasetChecksumError` naming the file and how to restore it, so a
truncated or corrupted download never reaches an experiment. Nothing is unpickled at run time.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from ..results import checkout_root


class DatasetChecksumError(ValueError):
    """A dataset file is missing or does not have the expected SHA-256."""


def data_dir() -> Path:
    """``$LNLIB_DATA_DIR`` if set, else the ``data/`` folder of the clone of the book this process works in
    (:func:`lnlib.results.checkout_root`), else ``data/`` under the working directory."""
    env = os.environ.get("LNLIB_DATA_DIR")
    if env:
        return Path(env)
    root = checkout_root()
    return (root if root is not None else Path.cwd()) / "data"


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def verified(path: Path, expected_sha256: str, restore: str) -> Path:
    """``path`` if it exists and has ``expected_sha256``; otherwise :class:`DatasetChecksumError` with ``restore``."""
    if not path.exists():
        raise DatasetChecksumError(f"{path}: dataset file not found; {restore} (or set LNLIB_DATA_DIR to the "
                                   f"data/ folder of a clone of the book)")
    actual = sha256_of(path)
    if actual != expected_sha256:
        raise DatasetChecksumError(f"{path}: SHA-256 is {actual}, expected {expected_sha256} (the file is corrupted "
                                   f"or truncated); {restore}")
    return path
