"""Result files: what the book shows, written atomically, with provenance, validated when read.

A result file is one JSON object::

    {"schema_version": 1, "experiment": "bn_batch_size", "profile": "cpu", "seed": 0,
     "params": {...},           # every parameter the run used (profile values included)
     "data": {...},             # the measurements (lists of numbers, not pickles)
     "provenance": {"git_commit": ..., "code_modified": ..., "versions": {...}, "device": ...,
                    "wall_time_s": ..., "created_utc": ..., "platform": ..., "threads": ...}}

Files live in ``data/results/`` of the repository, or wherever ``LNLIB_RESULTS_DIR`` points (``make test``
points it into ``_build/`` so smoke runs never touch the committed results). Writing goes through a
temporary file in the same folder and ``os.replace``, so a crash leaves either the old file or the new one,
never half of one. Loading checks the schema and raises :class:`ResultFileError` (a ``ValueError``)
naming the file and how to regenerate it, instead of failing later inside a plot.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1
REPO_ROOT = Path(__file__).resolve().parents[1]
_REQUIRED = {"schema_version": int, "experiment": str, "profile": str, "seed": int, "params": dict,
             "data": dict, "provenance": dict}
_REQUIRED_PROVENANCE = {"git_commit": (str, type(None)), "code_modified": (bool, type(None)), "versions": dict,
                        "device": str, "wall_time_s": (int, float), "created_utc": str}


class ResultFileError(ValueError):
    """A result file is missing, unreadable or does not follow the schema."""


def checkout_root() -> Path | None:
    """The clone of the book this process works in, or ``None``.

    The folder lnlib is imported from when it is a checkout (an editable install: it has ``data/``);
    else the first folder at or above the working directory that holds ``data/results`` (lnlib installed
    as a package, run from inside a clone). Never ``site-packages``."""
    if (REPO_ROOT / "data").is_dir():
        return REPO_ROOT
    for folder in (Path.cwd(), *Path.cwd().parents):
        if (folder / "data" / "results").is_dir():
            return folder
    return None


def results_dir() -> Path:
    """Where result files live: ``$LNLIB_RESULTS_DIR`` if set; else ``data/results`` of the checkout
    (:func:`checkout_root`); else ``data/results`` under the working directory (created when a result is
    saved), so that an installed lnlib never writes into its own installation folder."""
    env = os.environ.get("LNLIB_RESULTS_DIR")
    if env:
        return Path(env)
    root = checkout_root()
    return (root if root is not None else Path.cwd()) / "data" / "results"


def result_path(experiment: str, profile: str, seed: int) -> Path:
    """Where the result of one run lives: ``<results_dir>/<experiment>-<profile>-seed<seed>.json``."""
    return results_dir() / f"{experiment}-{profile}-seed{seed}.json"


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def code_version() -> tuple[str | None, bool | None]:
    """``(commit, code_modified)``: the git commit of the checkout and whether ``lnlib/`` differs from it.

    Both are ``None`` outside a git checkout (e.g. lnlib installed from a wheel).
    """
    commit = _git("rev-parse", "HEAD")
    if commit is None:
        return None, None
    status = _git("status", "--porcelain", "--", "lnlib")
    return commit, (None if status is None else bool(status))


def versions() -> dict[str, str]:
    """Versions of Python and of the libraries a result can depend on (those that are importable)."""
    found = {"python": platform.python_version()}
    for name in ("lnlib", "numpy", "torch"):
        module = sys.modules.get(name)
        if module is None:
            try:
                module = __import__(name)
            except ImportError:
                continue
        found[name] = getattr(module, "__version__", "unknown")
    return found


def describe_device(device: str) -> str:
    """A human-readable device: ``"cuda:0 (NVIDIA H100 ...)"`` or
    ``"cpu (AMD EPYC, x86_64, 2 cores, torch kernels AVX512)"``.

    The CPU's model and the instruction set torch's CPU kernels dispatch to are named because they change
    float rounding: the same code and seed train to trajectories that part from the first epoch on two CPU
    models (chapter 6 measured it), while on one model a run is bit-for-bit repeatable."""
    if device.startswith("cuda"):
        import torch

        return f"{device} ({torch.cuda.get_device_name(torch.device(device))})"
    return f"cpu ({cpu_model()}, {platform.machine()}, {os.cpu_count()} cores{_torch_kernels()})"


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The CPU's model name: ``model name`` of ``/proc/cpuinfo`` on Linux, else what :mod:`platform` says."""
    try:
        for line in Path(cpuinfo).read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU model"


def _torch_kernels() -> str:
    if "torch" not in sys.modules:  # naming torch's kernels is not worth importing it
        return ""
    capability = getattr(sys.modules["torch"].backends.cpu, "get_cpu_capability", lambda: None)()
    return f", torch kernels {capability}" if capability else ""


def run_provenance(device: str) -> dict[str, Any]:
    """What a training run's log records about where it ran: the git commit and whether ``lnlib/`` had local
    changes (:func:`code_version`), and the device (:func:`describe_device`)."""
    commit, modified = code_version()
    return {"git_commit": commit, "code_modified": modified, "machine": describe_device(str(device))}


def make_record(*, experiment: str, profile: str, seed: int, params: dict[str, Any], data: dict[str, Any],
                device: str, wall_time_s: float) -> dict[str, Any]:
    """Wrap measurements in the schema, with the provenance of this process."""
    commit, modified = code_version()
    threads = None
    if "torch" in sys.modules:
        threads = sys.modules["torch"].get_num_threads()
    record = {
        "schema_version": SCHEMA_VERSION,
        "experiment": experiment,
        "profile": profile,
        "seed": seed,
        "params": params,
        "data": data,
        "provenance": {
            "git_commit": commit,
            "code_modified": modified,
            "versions": versions(),
            "device": describe_device(device),
            "wall_time_s": round(float(wall_time_s), 3),
            "created_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "platform": platform.platform(),
            "torch_threads": threads,
        },
    }
    validate(record, source="<new record>")
    return record


def validate(record: object, *, source: str) -> dict[str, Any]:
    """Check the schema; raise :class:`ResultFileError` naming ``source`` and the first problem found."""
    hint = "delete it and rerun the experiment (recompute=True), or restore it with `git checkout -- <file>`"
    if not isinstance(record, dict):
        raise ResultFileError(f"{source}: expected a JSON object at the top level, got {type(record).__name__}; {hint}")
    for key, kind in _REQUIRED.items():
        if key not in record:
            raise ResultFileError(f"{source}: missing key {key!r}; {hint}")
        if not isinstance(record[key], kind) or isinstance(record[key], bool) and kind is int:
            raise ResultFileError(f"{source}: {key!r} should be {kind.__name__}, got {type(record[key]).__name__}; {hint}")
    if record["schema_version"] != SCHEMA_VERSION:
        raise ResultFileError(f"{source}: schema_version {record['schema_version']}, this lnlib reads {SCHEMA_VERSION}; {hint}")
    for key, kind in _REQUIRED_PROVENANCE.items():
        if key not in record["provenance"]:
            raise ResultFileError(f"{source}: provenance lacks {key!r}; {hint}")
        if not isinstance(record["provenance"][key], kind):
            raise ResultFileError(f"{source}: provenance {key!r} has the wrong type "
                                  f"({type(record['provenance'][key]).__name__}); {hint}")
    return record


#: Keys whose values are wall-clock measurements or timestamps: they differ between two identical runs.
VOLATILE_KEYS = frozenset({"wall_time_s", "created_utc", "train_seconds", "epoch_seconds", "assembly_seconds",
                           "training_seconds", "timing", "git_commit", "code_modified", "machine", "resumed"})


def without_volatile(obj: Any) -> Any:
    """``obj`` with every :data:`VOLATILE_KEYS` entry removed, at any depth (for comparing two runs)."""
    if isinstance(obj, dict):
        return {k: without_volatile(v) for k, v in obj.items() if k not in VOLATILE_KEYS}
    if isinstance(obj, list):
        return [without_volatile(v) for v in obj]
    return obj


def write_json_atomic(path: Path, obj: object, *, ensure_ascii: bool = True) -> Path:
    """Write ``obj`` as JSON to ``path`` via a temporary file and ``os.replace`` (all or nothing).

    ``ensure_ascii=False`` keeps non-ASCII text as it is (notebooks store it that way)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(obj, handle, indent=1, allow_nan=False, ensure_ascii=ensure_ascii)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes the file private; results are ordinary readable files
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def save(record: dict[str, Any], path: Path | None = None) -> Path:
    """Validate ``record`` and write it atomically (default path from :func:`result_path`)."""
    validate(record, source="<record to save>")
    if path is None:
        path = result_path(record["experiment"], record["profile"], record["seed"])
    return write_json_atomic(path, record)


def _refuse_constant(token: str) -> None:
    raise ValueError(f"the token {token} is not JSON (a measurement that was NaN or infinite must be stored as "
                     f"null)")


def load(path: Path | str) -> dict[str, Any]:
    """Read and validate one result file (strict JSON: ``NaN``/``Infinity`` tokens are refused)."""
    path = Path(path)
    if not path.exists():
        raise ResultFileError(f"{path}: no such result file; run the experiment with recompute=True to create it, "
                              f"or set LNLIB_RESULTS_DIR to the folder that holds the results")
    try:
        record = json.loads(path.read_text(encoding="utf-8"), parse_constant=_refuse_constant)
    except (ValueError, UnicodeDecodeError) as err:
        raise ResultFileError(f"{path}: not valid JSON ({err}); delete it and rerun with recompute=True, "
                              f"or restore it with `git checkout -- {path.name}`") from err
    return validate(record, source=str(path))


class MissingResultError(ResultFileError):
    """No result file exists for the requested experiment, profile and seed."""


def load_result(experiment: str, profile: str, seed: int) -> dict[str, Any]:
    """The result of ``experiment`` at ``profile`` and ``seed``, checked to be what its file name says.

    :class:`MissingResultError` if there is no such file; :class:`ResultFileError` if it is malformed or
    its contents name another experiment, profile or seed (a copied or renamed file)."""
    path = result_path(experiment, profile, seed)
    if not path.exists():
        raise MissingResultError(
            f"{path}: no stored result for experiment {experiment!r}, profile {profile!r}, seed {seed}; run the "
            f"chapter with recompute=True (e.g. `make reproduce PROFILE={profile}`) to create it, or set "
            f"LNLIB_RESULTS_DIR to the folder that holds the results")
    record = load(path)
    for key, wanted in (("experiment", experiment), ("profile", profile), ("seed", seed)):
        if record[key] != wanted:
            raise ResultFileError(f"{path}: its contents say {key} {record[key]!r}, the file name {wanted!r}; "
                                  f"the file was copied or renamed: restore it with `git checkout -- {path.name}` "
                                  f"or rerun the experiment")
    return record
