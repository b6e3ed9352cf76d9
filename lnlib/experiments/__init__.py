"""Experiments: one module per figure of the book, each a plain function that returns measurements.

Every experiment module defines

- ``NAME``: the experiment's name (the prefix of its result files),
- ``PROFILES``: a dict from profile name (``"smoke"``, ``"cpu"``, ``"paper"``) to its parameters,
- ``run(params, *, profile, seed, device, progress) -> dict``: the measurements, as JSON-serializable data
  (``profile`` names the run folder of experiments that train; the others ignore it),
- optionally ``THREADS``: the torch thread count the experiment runs with (default: the caller's).

:func:`load_or_run` is what a chapter calls: with ``recompute=False`` it loads the committed result of
the profile from ``data/results/`` (and fails clearly if there is none); with ``recompute=True`` it runs
the experiment, records provenance and writes the result file atomically.
"""

from __future__ import annotations

import argparse
import importlib
import time
from types import ModuleType
from typing import Any

from .. import results
from . import training

PROFILE_NAMES = ("smoke", "cpu", "paper")


def check_parameters(*, profile: object = "cpu", recompute: object = False, device: object = "auto",
                     seed: object = 0, progress: object = True) -> None:
    """Refuse chapter parameters of the wrong type (papermill passes strings when asked to: ``-p recompute
    false`` gives the truthy string ``"false"``, which must not silently recompute and overwrite results)."""
    expected = {"profile": (profile, str, "a profile name such as 'cpu'"),
                "recompute": (recompute, bool, "True or False (papermill: -p recompute True, not 'true')"),
                "device": (device, str, "'auto', 'cpu', 'cuda' or 'cuda:N'"),
                "seed": (seed, int, "an int such as 0"),
                "progress": (progress, bool, "True or False")}
    for name, (value, kind, what) in expected.items():
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise TypeError(f"{name} must be {what}, got {value!r} ({type(value).__name__})")
    if not 0 <= seed < 2**63:  # type: ignore[operator]  # an int here; NumPy and torch take 64-bit seeds
        raise ValueError(f"seed must be a non-negative int below 2**63, got {seed!r}")


def check_profile(module: ModuleType, profile: object) -> dict[str, Any]:
    """The parameters of ``profile`` for ``module``; ``ValueError`` for an unknown profile."""
    if not isinstance(profile, str) or profile not in module.PROFILES:
        raise ValueError(f"profile must be one of {sorted(module.PROFILES)} for experiment {module.NAME!r}, "
                         f"got {profile!r}")
    return dict(module.PROFILES[profile])


def run(module: ModuleType, *, profile: str, seed: int = 0, device: str = "auto", progress: bool = True,
        save: bool = True, **options: Any) -> dict[str, Any]:
    """Run ``module`` at ``profile`` and return the full record (saved atomically unless ``save=False``);
    ``options`` go to the module's ``run`` (such as ``train=False`` for :mod:`.fig6_mnist`).

    The run happens inside :func:`training.run_environment`: ``device`` resolved (``"auto"``: CUDA if
    available), global generators seeded, deterministic algorithms, the module's ``THREADS`` (if it sets
    one) torch threads; the caller's settings are restored afterwards."""
    check_parameters(profile=profile, device=device, seed=seed, progress=progress)
    params = check_profile(module, profile)
    with training.run_environment(device, seed=seed, threads=getattr(module, "THREADS", None)) as dev:
        start = time.perf_counter()
        data = module.run(params, profile=profile, seed=seed, device=str(dev), progress=progress, **options)
        wall = time.perf_counter() - start
        record = results.make_record(experiment=module.NAME, profile=profile, seed=seed, params=params, data=data,
                                     device=str(dev), wall_time_s=wall)
    if save:
        results.save(record)
    return record


def load_or_run(module: ModuleType, *, profile: str, recompute: bool, seed: int = 0, device: str = "auto",
                progress: bool = True) -> dict[str, Any]:
    """The chapters' entry point: load the stored result of ``profile``, or recompute it."""
    check_parameters(profile=profile, recompute=recompute, device=device, seed=seed, progress=progress)
    check_profile(module, profile)
    if recompute:
        return run(module, profile=profile, seed=seed, device=device, progress=progress)
    return results.load_result(module.NAME, profile, seed)


def cli(name: str, argv: list[str] | None = None) -> dict[str, Any]:
    """``python -m lnlib.experiments.<name>``: run one experiment at a profile and save its result file.

    The experiments that train networks (``fig6_mnist``, ``rnn``) have their own worker command line
    instead (:func:`training.parse_worker_args`), which splits the runs between processes."""
    module = importlib.import_module(f"{__name__}.{name}")
    summary = (module.__doc__ or name).strip().splitlines()[0]
    parser = argparse.ArgumentParser(prog=f"python -m {module.__name__}", description=summary,
                                     epilog="The result is written to data/results/ of the clone (or to "
                                            "$LNLIB_RESULTS_DIR); the chapters read it with recompute=False.")
    parser.add_argument("--profile", choices=sorted(module.PROFILES), default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", help="'auto' (CUDA if available; the default), 'cpu', "
                        "'cuda' or 'cuda:N'")
    parser.add_argument("--no-save", action="store_true", help="run and print, but write no result file")
    args = parser.parse_args(argv)
    training.check_seed_and_device(parser, args)
    record = run(module, profile=args.profile, seed=args.seed, device=args.device, save=not args.no_save)
    where = "not saved" if args.no_save else f"saved to {results.result_path(module.NAME, args.profile, args.seed)}"
    print(f"{module.NAME}, profile {args.profile}, seed {args.seed}, device {record['provenance']['device']}: "
          f"{record['provenance']['wall_time_s']:.1f} s; {where}")
    return record
