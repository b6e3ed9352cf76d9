r"""The training toolkit: what every experiment that trains networks shares, written once.

An experiment that trains (Figure 6, the recurrent networks, and any later one) describes each network it
trains by a *spec*, a flat JSON-able dict of everything that defines the run (kind, variant, batch size,
learning rate, epochs or steps, seed, data sizes, ...). From the spec this module derives:

* the **run key** (:func:`run_key`): a readable label plus the first 12 hex digits of the SHA-256 of the
  whole spec, so two runs that differ in any parameter (``hidden``, ``train_cases``, ...) never share a file;
* the **run folder** (:func:`run_folder`): ``_build/checkpoints/<experiment>-<profile>-seed<seed>/`` of the
  checkout (or of the working directory outside one, or under ``$LNLIB_CHECKPOINT_DIR``), named after the
  profile the caller passes explicitly;
* **checkpoints** (:func:`save_checkpoint`, :func:`load_checkpoint`) that carry their spec and the SHA-256 of
  their payload: a checkpoint of another spec, or one with a flipped bit, is rejected with a message naming
  the file, set aside as ``<key>.pt.rejected``, and the run is trained again from scratch;
* **finished-run logs** (``<key>.json``, written atomically) and a **lock** (``<key>.lock``, created with
  ``O_EXCL``) so that two processes asked to train the same run do not both train it: the second waits for
  the first and then reads its log (a lock left by a process that no longer exists is broken);
* **worker splitting** (:func:`balance`, :func:`parse_worker_args`): two processes, one per core, each
  train their share of a profile's runs.

:func:`run_environment` is the one place that resolves ``device="auto"``, seeds the global generators,
switches on deterministic algorithms and sets the thread count, for the duration of a run only: on exit
the caller's settings are restored, so running an experiment in a notebook leaves its kernel as it was.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import os
import random
import socket
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch

from .. import results
from ..torch.device import resolve_device

#: The first line of every checkpoint file (then one line of JSON header, then the torch payload).
CHECKPOINT_MAGIC = b"lnlib-checkpoint 1\n"


class CheckpointError(ValueError):
    """A checkpoint file that cannot be resumed from: another spec, a damaged payload, or not a checkpoint."""


# ---------------------------------------------------------------------------------------------------------
# Naming runs


def spec_digest(spec: dict[str, Any]) -> str:
    """SHA-256 (hex) of the spec's canonical JSON: equal for equal specs, different for any changed value."""
    if not isinstance(spec, dict):
        raise TypeError(f"spec must be a dict, got {type(spec).__name__}")
    return hashlib.sha256(json.dumps(spec, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def run_key(label: str, spec: dict[str, Any]) -> str:
    """``<label>-<12 hex digits of the spec's hash>``: readable, and unique to the whole spec."""
    return f"{label}-{spec_digest(spec)[:12]}"


def checkpoint_root() -> Path:
    """The folder that holds every run folder: ``$LNLIB_CHECKPOINT_DIR``, else ``_build/checkpoints`` of the
    checkout (or of the working directory outside one)."""
    base = os.environ.get("LNLIB_CHECKPOINT_DIR")
    checkout = results.checkout_root()
    return Path(base) if base else (checkout if checkout is not None else Path.cwd()) / "_build" / "checkpoints"


def run_folder(experiment: str, profile: str, seed: int) -> Path:
    """Where an experiment's runs of one profile keep their checkpoints, logs and locks."""
    for name, value in (("experiment", experiment), ("profile", profile)):
        if not isinstance(value, str) or not value or "/" in value:
            raise ValueError(f"{name} must be a non-empty name without '/', got {value!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    return checkpoint_root() / f"{experiment}-{profile}-seed{seed}"


# ---------------------------------------------------------------------------------------------------------
# Checkpoints: spec + payload hash, checked before anything is loaded


def save_checkpoint(path: Path, spec: dict[str, Any], state: dict[str, Any]) -> Path:
    """Write ``state`` (tensors and plain data) for the run ``spec`` to ``path``, atomically."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    payload = buffer.getvalue()
    header = json.dumps({"spec": spec, "sha256": hashlib.sha256(payload).hexdigest(), "bytes": len(payload)},
                        sort_keys=True, allow_nan=False).encode()
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(CHECKPOINT_MAGIC + header + b"\n" + payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: Path, spec: dict[str, Any], device: torch.device | str = "cpu") -> dict[str, Any]:
    """The state stored by :func:`save_checkpoint`, after checking that it belongs to ``spec`` and that its
    payload is intact; :class:`CheckpointError` naming the file and the problem otherwise."""
    path = Path(path)
    blob = path.read_bytes()
    if not blob.startswith(CHECKPOINT_MAGIC) or b"\n" not in blob[len(CHECKPOINT_MAGIC):]:
        raise CheckpointError(f"{path}: not an lnlib checkpoint (no '{CHECKPOINT_MAGIC.decode().strip()}' header)")
    header_bytes, payload = blob[len(CHECKPOINT_MAGIC):].split(b"\n", 1)
    try:
        header = json.loads(header_bytes)
        stored_spec, digest, size = header["spec"], header["sha256"], header["bytes"]
    except (ValueError, KeyError, TypeError) as err:
        raise CheckpointError(f"{path}: damaged checkpoint header ({err})") from err
    if stored_spec != json.loads(json.dumps(spec)):
        changed = sorted(k for k in set(stored_spec) | set(spec) if stored_spec.get(k) != spec.get(k))
        raise CheckpointError(f"{path}: checkpoint of another run (its spec differs in {changed})")
    if len(payload) != size or hashlib.sha256(payload).hexdigest() != digest:
        raise CheckpointError(f"{path}: damaged checkpoint (the payload's SHA-256 does not match its header)")
    return torch.load(io.BytesIO(payload), map_location=device, weights_only=True)


def resume_state(path: Path, spec: dict[str, Any], device: torch.device | str = "cpu") -> dict[str, Any] | None:
    """The checkpoint at ``path`` if there is a valid one for ``spec``; ``None`` to start from scratch.

    A rejected checkpoint is never used: a warning says why, and the file is kept as ``<name>.rejected``.
    The run's log (``state["log"]``) gains an entry in ``resumed``: where it resumed (its ``epoch`` or
    ``step``) and the code and machine it resumed with, since its ``git_commit`` and ``machine`` name those it
    started with."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        state = load_checkpoint(path, spec, device)
        if isinstance(state.get("log"), dict):
            where = {k: state[k] for k in ("epoch", "step") if k in state}
            state["log"].setdefault("resumed", []).append({**where, **results.run_provenance(str(device))})
        return state
    except CheckpointError as err:
        aside = path.with_name(path.name + ".rejected")
        os.replace(path, aside)
        warnings.warn(f"{err}; it was moved to {aside.name} and this run is trained again from scratch",
                      RuntimeWarning, stacklevel=2)
        return None


# ---------------------------------------------------------------------------------------------------------
# Finished runs, trained once


def _as_stored(obj: Any) -> Any:
    """``obj`` as JSON stores it: non-finite floats become ``None`` (JSON has no NaN), tuples lists."""
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _as_stored(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_as_stored(v) for v in obj]
    return obj


def finished_log(folder: Path, key: str, spec: dict[str, Any]) -> dict[str, Any] | None:
    """The stored log of run ``key`` if it finished with this ``spec``; ``None`` if it has to be trained.

    A log that is unreadable or belongs to another spec is set aside (``.rejected``) with a warning."""
    done = Path(folder) / f"{key}.json"
    if not done.exists():
        return None
    try:
        log = json.loads(done.read_text(encoding="utf-8"))
        if log.get("spec") == _as_stored(spec):
            return log
        problem = "it holds the log of another spec"
    except (ValueError, AttributeError) as err:
        problem = f"it is not a readable log ({err})"
    aside = done.with_name(done.name + ".rejected")
    os.replace(done, aside)
    warnings.warn(f"{done}: {problem}; moved to {aside.name}, the run is trained again", RuntimeWarning,
                  stacklevel=2)
    return None


#: Finished runs' logs committed to the repository (``data/runs/<run folder name>/<key>.json``): a run whose
#: log is there with the same spec is read, not trained, so a profile can be trained over several sittings.
COMMITTED_RUNS = results.REPO_ROOT / "data" / "runs"


def committed_log(folder: Path, key: str, spec: dict[str, Any]) -> dict[str, Any] | None:
    """The committed log ``data/runs/<folder's name>/<key>.json`` of run ``spec``, if there is one of this
    spec (one of another spec is ignored here: the run folder's own log or a new run decides).

    A run that another profile of the same experiment and seed also plans (the key hashes the whole spec,
    so the same key and spec is the same run: the paper profile's batch-128 runs are the cpu profile's) is
    read from that profile's folder when its own has none."""
    experiment, seed = Path(folder).name.split("-", 1)[0], Path(folder).name.rsplit("-", 1)[-1]
    own = COMMITTED_RUNS / Path(folder).name
    for runs in [own, *sorted(p for p in COMMITTED_RUNS.glob(f"{experiment}-*-{seed}") if p != own)]:
        path = runs / f"{key}.json"
        if path.exists():
            log = json.loads(path.read_text(encoding="utf-8"))
            if log.get("spec") == _as_stored(spec):
                return log
    return None


#: Where the other training of a run trained twice is committed, beside the run folders: first trainings that
#: a second one replaced (:func:`supersede`), and second trainings kept as evidence beside the first.
OTHER_TRAINING_KINDS = ("superseded", "retrained")


def other_training_path(committed: Path, kind: str) -> Path:
    """Where the other training of the committed log ``data/runs/<run folder>/<key>.json`` is kept:
    ``data/runs/<kind>/<run folder>/<key>.json``, ``kind`` one of :data:`OTHER_TRAINING_KINDS`."""
    if kind not in OTHER_TRAINING_KINDS:
        raise ValueError(f"kind must be one of {OTHER_TRAINING_KINDS}, got {kind!r}")
    committed = Path(committed).resolve()
    return committed.parent.parent / kind / committed.parent.name / committed.name


def supersede(committed: Path, new: dict[str, Any]) -> Path:
    """Replace the committed log ``data/runs/<run folder>/<key>.json`` by ``new``, a second training of the
    same run (same spec) made without local changes, keeping the first as
    ``data/runs/superseded/<run folder>/<key>.json`` (``superseded/`` beside the run folder). Nothing
    assembles results from the first trainings; a chapter reads them back (:func:`other_trainings`) to show
    how much its verdicts depend on which training it uses. Returns where the first is kept.

    The first is written before the new one replaces it, both atomically, so an interruption leaves at worst
    both copies of the first training, never none; superseding again then finishes the job."""
    committed = Path(committed)
    first = json.loads(committed.read_text(encoding="utf-8"))
    if first.get("spec") != new.get("spec"):
        raise ValueError(f"new: its spec differs from that of the committed log {committed}; expected a second "
                         "training of the same run")
    kept = other_training_path(committed, "superseded")
    if kept.exists() and json.loads(kept.read_text(encoding="utf-8")) != first:
        raise ValueError(f"committed: {committed.name} was superseded before ({kept} holds its first training, "
                         "which is never overwritten)")
    results.write_json_atomic(kept, first)
    results.write_json_atomic(committed, new)
    return kept


def other_trainings(run_folder_name: str) -> dict[str, dict[str, Any]]:
    """The other training of each committed run of ``run_folder_name`` that was trained twice, by run key:
    first trainings that :func:`supersede` replaced (``data/runs/superseded/<run folder>/``) and second
    trainings kept as evidence without replacing the first (``data/runs/retrained/<run folder>/``, written by
    ``scripts/retrain_committed_run.py --keep``). Empty if no run was trained twice."""
    logs = {}
    for kind in OTHER_TRAINING_KINDS:
        for path in sorted((COMMITTED_RUNS / kind / run_folder_name).glob("*.json")):
            if path.stem in logs:
                raise ValueError(f"run {path.stem} of {run_folder_name} is both superseded and retrained; expected "
                                 "one other training per run")
            logs[path.stem] = json.loads(path.read_text(encoding="utf-8"))
    return logs


def commit_finished_logs(folder: Path) -> list[Path]:
    """Copy the finished logs of a run folder that are not committed yet to ``data/runs/<folder's name>/``
    (atomically; a committed log is never overwritten). Returns the new files, for ``git add``."""
    target = COMMITTED_RUNS / Path(folder).name
    new = []
    for done in sorted(Path(folder).glob("*.json")):
        if not (target / done.name).exists():
            new.append(results.write_json_atomic(target / done.name, json.loads(done.read_text(encoding="utf-8"))))
    return new


def progress(folder: Path, specs: list[dict[str, Any]], key: Callable[[dict[str, Any]], str],
             seconds: Callable[[dict[str, Any]], float], *, committed_only: bool = False) -> dict[str, Any]:
    """How far a profile's training got: runs planned, runs finished, and the single-core hours of the
    finished ones (``seconds(log)`` each). Finished means committed under :data:`COMMITTED_RUNS`, or, unless
    ``committed_only`` (what a chapter prints must not depend on the local run folder), finished there."""
    done = []
    for spec in specs:
        log = committed_log(folder, key(spec), spec)
        if log is None and not committed_only:
            log = finished_log(folder, key(spec), spec)
        if log is not None:
            done.append(log)
    return {"planned": len(specs), "finished": len(done), "core_hours": sum(seconds(log) for log in done) / 3600.0}


def _owner_is_gone(lock: Path) -> bool:
    """Whether the process named in ``lock`` (``pid@host``) has ended (only knowable on this host)."""
    try:
        pid_text, host = lock.read_text().strip().split("@", 1)
        pid = int(pid_text)
    except (OSError, ValueError):
        return False  # being written right now, or unreadable: not provably stale
    if host != socket.gethostname():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def read_or_train(folder: Path, key: str, spec: dict[str, Any], train: Callable[[Path], dict[str, Any]]
                  ) -> dict[str, Any]:
    """The log of run ``key``: its committed log if there is one (:func:`committed_log`), else
    :func:`train_once` (read if finished in ``folder``, resumed from its checkpoint, or trained)."""
    committed = committed_log(folder, key, spec)
    return committed if committed is not None else train_once(folder, key, spec, train)


def end_of_epoch(checkpoint: Path, spec: dict[str, Any], model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                 log: dict[str, Any], epoch: int, watched: float) -> bool:
    """After epoch ``epoch`` (1-based) of an epoch-based run: if ``watched`` (a loss just measured) is not
    finite, mark the log diverged and return False (stop); otherwise save the checkpoint (model, optimizer,
    log, epoch) and return True."""
    if not np.isfinite(watched):
        log["diverged"] = True
        return False
    save_checkpoint(checkpoint, spec, {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                                       "log": log, "epoch": epoch})
    return True


def train_all(name: str, profile: str, seed: int, specs: list[dict[str, Any]], key: Callable[[dict[str, Any]], str],
              train_run: Callable[..., dict[str, Any]], data: Any, device: str, progress: bool
              ) -> dict[str, dict[str, Any]]:
    """Every run of ``specs`` by ``train_run`` (read if finished or committed, else resumed or trained), as
    ``{key: log}``: the body of an experiment's ``run`` for a profile of independent runs."""
    folder = run_folder(name, profile, seed)
    return {key(s): train_run(s, data, folder, device=torch.device(device), progress=progress) for s in specs}


def assemble(name: str, profile: str, seed: int, specs: list[dict[str, Any]], key: Callable[[dict[str, Any]], str],
             train_run: Callable[..., dict[str, Any]], data: Any, device: str, progress: bool, *, train: bool,
             label: Callable[[dict[str, Any]], str]) -> dict[str, Any]:
    """The part of an experiment's result that :func:`train_all` makes, for ``train=True``; for ``train=False``
    nothing is trained and only the runs finished so far (committed or in the run folder) are read.

    Returns ``{"runs": {key: log}, "complete": bool, "missing": [label of each planned run not finished],
    "training_seconds": ...}``, so that a profile trained over several sittings can be shown as far as it
    got, and never as more."""
    if train:
        logs = train_all(name, profile, seed, specs, key, train_run, data, device, progress)
        missing: list[str] = []
    else:
        logs, missing = finished_runs(run_folder(name, profile, seed), specs, key, label)
    return {"runs": logs, "complete": not missing, "missing": missing,
            "training_seconds": sum(map(run_seconds, logs.values()))}


def finished_runs(folder: Path, specs: list[dict[str, Any]], key: Callable[[dict[str, Any]], str],
                  label: Callable[[dict[str, Any]], str]) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """``({key: log}, [label, ...])``: the runs of ``specs`` finished so far (committed or in ``folder``), and
    the labels of the others; nothing is trained."""
    logs, missing = {}, []
    for spec in specs:
        log = committed_log(folder, key(spec), spec) or finished_log(folder, key(spec), spec)
        if log is None:
            missing.append(label(spec))
        else:
            logs[key(spec)] = log
    return logs, missing


def assemble_command(name: str, module: ModuleType, args: argparse.Namespace) -> None:
    """``--assemble`` of a worker command: write the profile's result file from the runs finished so far
    (``module``'s ``run`` with ``train=False``, through :func:`lnlib.experiments.run`: provenance, atomic write)."""
    from . import run as run_experiment

    d = run_experiment(module, profile=args.profile, seed=args.seed, device=args.device, train=False)["data"]
    print(f"{name}-{args.profile}-seed{args.seed}: {len(d['runs'])} runs assembled, {len(d['missing'])} "
          "planned runs missing; written to the results folder")


def run_seconds(log: dict[str, Any]) -> float:
    """The single-core seconds an epoch-based run took (the sum of its ``epoch_seconds``), for :func:`progress`."""
    return float(sum(log["epoch_seconds"]))


def work_through_queue(name: str, description: str, profiles: dict[str, Any], argv: list[str] | None, *,
                       specs: Callable[[dict[str, Any], int], list[dict[str, Any]]],
                       key: Callable[[dict[str, Any]], str], train_run: Callable[..., dict[str, Any]],
                       load: Callable[[], Any], threads: int | None, module: ModuleType | None = None) -> None:
    """The worker command of an experiment (``python -m lnlib.experiments.<name> --profile P --worker i
    --workers n``): train the profile's unfinished runs from the queue the workers share (:func:`pending`),
    with ``train_run(spec, data, folder, device=...)`` and ``data = load()``.

    With ``module`` (an experiment whose ``run`` takes ``train=``), ``--assemble`` trains nothing and writes
    the profile's result file from the runs finished so far (:func:`assemble`)."""
    args = parse_worker_args(description, profiles, argv, assemble="train nothing: write the profile's result "
                             "file from the runs finished so far (it records which planned runs are missing)"
                             if module is not None else "")
    if getattr(args, "assemble", False):
        assemble_command(name, module, args)
        return
    folder = run_folder(name, args.profile, args.seed)
    data = load()
    with run_environment(args.device, threads=threads) as device:
        for spec in pending(specs(profiles[args.profile], args.seed), folder, key):
            train_run(spec, data, folder, device=device)
    print(f"worker {args.worker} of {args.workers}: no runs of profile {args.profile} of {name} left to start")


def pending(specs: list[dict[str, Any]], folder: Path, key: Callable[[dict[str, Any]], str]
            ) -> Iterator[dict[str, Any]]:
    """The runs of ``specs`` (in their order) that are not finished (committed or in ``folder``), each checked
    when its turn comes and skipped while another live process trains it: workers that iterate the same
    list share one queue, and a worker started later joins it where it stands."""
    for spec in specs:
        k = key(spec)
        if committed_log(folder, k, spec) is None and finished_log(folder, k, spec) is None \
                and not in_training_elsewhere(folder, k):
            yield spec


def in_training_elsewhere(folder: Path, key: str) -> bool:
    """Whether a live process holds the lock of run ``key`` in ``folder`` right now (a worker that takes runs
    from a shared queue skips it instead of waiting for it)."""
    lock = Path(folder) / f"{key}.lock"
    return lock.exists() and not _owner_is_gone(lock)


@contextlib.contextmanager
def _exclusive(lock: Path, *, poll: float, announce: Callable[[str], None]) -> Iterator[None]:
    """Hold ``lock`` (created with O_EXCL) for the block; wait while a live process holds it."""
    told = False
    while True:
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            break
        except FileExistsError:
            if _owner_is_gone(lock):
                lock.unlink(missing_ok=True)
                continue
            if not told:
                owner = lock.read_text().strip() if lock.exists() else "?"
                announce(f"{lock.stem}: another process ({owner}) is training this run (lock {lock}); "
                         f"waiting for it to finish")
                told = True
            time.sleep(poll)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(f"{os.getpid()}@{socket.gethostname()}\n")
        yield
    finally:
        lock.unlink(missing_ok=True)


def train_once(folder: Path, key: str, spec: dict[str, Any], train: Callable[[Path], dict[str, Any]], *,
               poll: float = 2.0, announce: Callable[[str], None] = print) -> dict[str, Any]:
    """The log of run ``key``: read if it finished, else trained by ``train(checkpoint_path)`` exactly once.

    While this process trains, ``<key>.lock`` tells others; a second process asked for the same run waits
    (saying so once through ``announce``) and then reads the first one's log. Temporary files of the run
    left by a process killed while writing are removed before training starts. The finished log is stored
    atomically as ``<key>.json`` (non-finite numbers as ``null``) and the checkpoint is removed. Returns
    the log as stored.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    log = finished_log(folder, key, spec)
    if log is not None:
        return log
    with _exclusive(folder / f"{key}.lock", poll=poll, announce=announce):
        log = finished_log(folder, key, spec)  # the process we waited for may have finished it
        if log is not None:
            return log
        for stale in folder.glob(f".{key}.*.tmp"):  # half-written by a process killed mid-write; we hold the lock
            stale.unlink(missing_ok=True)
        checkpoint = folder / f"{key}.pt"
        trained = train(checkpoint)
        done = results.write_json_atomic(folder / f"{key}.json", _as_stored(trained))
        checkpoint.unlink(missing_ok=True)
        return json.loads(done.read_text(encoding="utf-8"))


# ---------------------------------------------------------------------------------------------------------
# The process: device, determinism, threads, for one run only


@contextlib.contextmanager
def run_environment(device: str | torch.device = "auto", *, seed: int | None = None,
                    threads: int | None = None) -> Iterator[torch.device]:
    """Resolve ``device`` and, inside the block, run deterministically; restore everything on exit.

    Inside: deterministic algorithms on (CPU and CUDA; cuBLAS needs ``CUBLAS_WORKSPACE_CONFIG``), the global
    generators of ``random``, NumPy and torch seeded with ``seed`` (unless ``None``), and ``threads`` torch
    threads (unless ``None``). Experiments draw their randomness from explicit generators; seeding the global
    ones guards against a library call that does not. On exit the caller's thread count, determinism flags,
    environment variable and generator states are put back.
    """
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ValueError(f"threads must be a positive int or None, got {threads!r}")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise TypeError(f"seed must be an int or None, got {type(seed).__name__}")
    dev = resolve_device(device)
    saved_threads = torch.get_num_threads()
    saved_flags = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled())
    saved_env = os.environ.get("CUBLAS_WORKSPACE_CONFIG")
    saved_rng = (random.getstate(), np.random.get_state(), torch.get_rng_state(),
                 torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None)
    try:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        if seed is not None:
            random.seed(seed)
            np.random.seed(seed % 2**32)
            torch.manual_seed(seed)
        if threads is not None:
            torch.set_num_threads(threads)
        yield dev
    finally:
        torch.set_num_threads(saved_threads)
        torch.use_deterministic_algorithms(saved_flags[0], warn_only=saved_flags[1])
        if saved_env is None:
            os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)
        else:
            os.environ["CUBLAS_WORKSPACE_CONFIG"] = saved_env
        random.setstate(saved_rng[0])
        np.random.set_state(saved_rng[1])
        torch.set_rng_state(saved_rng[2])
        if saved_rng[3] is not None:
            torch.cuda.set_rng_state_all(saved_rng[3])


# ---------------------------------------------------------------------------------------------------------
# Workers: one process per core, each training its share


def balance(specs: list[dict[str, Any]], workers: int, cost: Callable[[dict[str, Any]], float],
            key: Callable[[dict[str, Any]], str]) -> list[list[dict[str, Any]]]:
    """Greedy load balancing: most expensive first, each to the least loaded worker; ties broken by ``key``,
    so every worker computes the same split."""
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a positive int, got {workers!r}")
    shares: list[list[dict[str, Any]]] = [[] for _ in range(workers)]
    loads = [0.0] * workers
    for spec in sorted(specs, key=lambda s: (-cost(s), key(s))):
        least = loads.index(min(loads))
        shares[least].append(spec)
        loads[least] += cost(spec)
    return shares


def parse_worker_args(description: str, profiles: dict[str, Any], argv: list[str] | None, *,
                      assemble: str = "") -> argparse.Namespace:
    """The command line shared by the training workers: ``--profile --seed --device --worker --workers``, and
    ``--assemble`` (with ``assemble`` as its help) for an experiment that can assemble a result from the runs
    finished so far.

    Every mistake ends in argparse's usage message naming the option (a CUDA device on a machine without
    CUDA included), never in a traceback."""
    parser = argparse.ArgumentParser(description=description)
    if assemble:
        parser.add_argument("--assemble", action="store_true", help=assemble)
    parser.add_argument("--profile", choices=sorted(profiles), required=True)
    parser.add_argument("--seed", type=int, default=0, help="first seed of the profile (default 0)")
    parser.add_argument("--device", default="auto", help="'auto' (CUDA if available, else CPU; the default), "
                        "'cpu', 'cuda' or 'cuda:N'")
    parser.add_argument("--worker", type=int, default=0, help="this worker's index, 0 .. workers-1")
    parser.add_argument("--workers", type=int, default=1, help="how many workers share the runs (one per core)")
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error(f"--workers must be a positive number of worker processes, got {args.workers}")
    if not 0 <= args.worker < args.workers:
        parser.error(f"--worker must be in [0, {args.workers - 1}] for --workers {args.workers}, got {args.worker}")
    check_seed_and_device(parser, args)
    return args


def check_seed_and_device(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """``--seed`` and ``--device`` of a command line, checked before any work: a usage error naming the
    option (a CUDA device on a machine without CUDA included), never a traceback."""
    if args.seed < 0:
        parser.error(f"--seed must be a non-negative int, got {args.seed}")
    try:
        resolve_device(args.device)
    except (ValueError, TypeError) as err:
        parser.error(f"--device: {err}")
