"""Experiments: one module per figure of the book, each a plain function that returns measurements.

Every experiment module defines

- ``NAME``: the experiment's name (the prefix of its result files),
- ``PROFILES``: a dict from profile name (``"smoke"``, ``"cpu"``, ``"paper"``) to its parameters,
- ``run(params, *, seed, device, progress) -> dict``: the measurements, as JSON-serializable data.

:func:`load_or_run` is what a chapter calls: with ``recompute=False`` it loads the committed result of
the profile from ``data/results/`` (and fails clearly if there is none); with ``recompute=True`` it runs
the experiment, records provenance and writes the result file atomically.
"""

from __future__ import annotations

import os
import random
import time
from types import ModuleType
from typing import Any

from .. import results

PROFILE_NAMES = ("smoke", "cpu", "paper")


def check_profile(module: ModuleType, profile: object) -> dict[str, Any]:
    """The parameters of ``profile`` for ``module``; ``ValueError`` for an unknown profile."""
    if not isinstance(profile, str) or profile not in module.PROFILES:
        raise ValueError(f"profile must be one of {sorted(module.PROFILES)} for experiment {module.NAME!r}, "
                         f"got {profile!r}")
    return dict(module.PROFILES[profile])


def run(module: ModuleType, *, profile: str, seed: int = 0, device: str = "auto", progress: bool = True,
        save: bool = True) -> dict[str, Any]:
    """Run ``module`` at ``profile`` and return the full record (saved atomically unless ``save=False``)."""
    params = check_profile(module, profile)
    device_name = _resolve_device_name(device)
    deterministic(seed)
    start = time.perf_counter()
    data = module.run(params, seed=seed, device=device_name, progress=progress)
    wall = time.perf_counter() - start
    record = results.make_record(experiment=module.NAME, profile=profile, seed=seed, params=params, data=data,
                                 device=device_name, wall_time_s=wall)
    if save:
        results.save(record)
    return record


def load_or_run(module: ModuleType, *, profile: str, recompute: bool, seed: int = 0, device: str = "auto",
                progress: bool = True) -> dict[str, Any]:
    """The chapters' entry point: load the stored result of ``profile``, or recompute it."""
    check_profile(module, profile)
    if recompute:
        return run(module, profile=profile, seed=seed, device=device, progress=progress)
    path = results.result_path(module.NAME, profile, seed)
    if not path.exists():
        raise results.ResultFileError(
            f"{path}: no stored result for experiment {module.NAME!r}, profile {profile!r}, seed {seed}; "
            f"run the chapter with recompute=True (e.g. `make reproduce PROFILE={profile}`) to create it"
        )
    return results.load(path)


def deterministic(seed: int) -> None:
    """Seed every global generator and make torch choose deterministic kernels (CPU and CUDA).

    Experiments draw their random numbers from explicit generators seeded from ``seed``; seeding the
    global ones too guards against any library call that uses them. On CUDA, deterministic cuBLAS needs
    ``CUBLAS_WORKSPACE_CONFIG`` set before the first matrix product.
    """
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)


def _resolve_device_name(device: str) -> str:
    """``"auto"`` -> ``"cuda"``/``"cpu"`` (via lnlib.torch only when torch is needed to decide)."""
    if device == "cpu":
        return "cpu"
    from ..torch import resolve_device

    return str(resolve_device(device))
