"""``python -m lnlib.gpu_check``: the experiment and summary steps of the GPU check (``scripts/gpu_check.sh``).

Why this exists: readers run the chapters on a GPU (``device="auto"`` picks CUDA), so every experiment
must run there, pick CUDA and produce finite numbers, and the check must say so in one short report.

``experiments --out DIR``
    Runs every experiment of :mod:`lnlib.experiments` (all but the benchmark, which has its own step) at
    the ``smoke`` profile, and the quick ones (:data:`QUICK`) at ``cpu`` too, through the public
    ``lnlib.experiments.run(module, profile=..., seed=0, device="auto", progress=False, save=False)``.
    Each record must name a CUDA device in its provenance (a CPU device where CUDA is available is the
    failure this check exists to catch), validate against the result schema, and hold only finite
    numbers. Training runs start from scratch in a fresh checkpoint folder. All records go to
    ``DIR/gpu_experiments.json``; the exit status is 1 if any run failed. Without CUDA it refuses to run
    (exit 2) unless ``--allow-cpu`` is given, which checks the same at the ``smoke`` profile on the CPU (a
    dry run of the GPU check on any machine).

``summary --out DIR [--step NAME=STATUS ...]``
    Reads what the other steps left in ``DIR`` (``pytest-junit.xml``, ``cuda_errors.json``,
    ``gpu_experiments.json``, ``bench-*-seed0.json``) and writes ``DIR/summary.txt``: tests passed and
    skipped (with CUDA present, no test may skip for want of it), the largest error per dtype, the runs,
    the benchmark's ratios and the projected Figure 6 ``paper`` time. Exit status 1 if a step failed or a
    check did not hold.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import pkgutil
import re
import sys
import tempfile
import time
import traceback
import xml.etree.ElementTree as ElementTree
from collections import Counter
from pathlib import Path
from types import ModuleType
from typing import Any

from . import report, results

#: Experiments fast enough to run at their ``cpu`` profile too (seconds each on the CPU).
QUICK = ("batch_dependence", "bn_batch_size", "epsilon_numerics", "geometry", "invariance")
SEPARATE = ("bench",)  # experiments with their own step in the GPU check
EXPERIMENTS_FILE = "gpu_experiments.json"
JUNIT_FILE = "pytest-junit.xml"
ERRORS_FILE = "cuda_errors.json"
SUMMARY_FILE = "summary.txt"
MAX_PROBLEMS = 10  # non-finite values listed per run; the count says how many there were
#: Skip reasons that mean "no CUDA here" (not, say, "CUDA is available here" of a CPU-only check).
CUDA_MISSING = re.compile(r"needs? a CUDA|CUDA is not available|without CUDA|no CUDA", re.IGNORECASE)


def experiment_modules() -> list[ModuleType]:
    """Every experiment module of :mod:`lnlib.experiments` but :data:`SEPARATE`, by name.

    An experiment module is one that defines ``NAME``, ``PROFILES`` and ``run``; helper modules of the
    package (a shared training toolkit, say) define no profiles and are left out.
    """
    from . import experiments

    found = []
    for info in sorted(pkgutil.iter_modules(experiments.__path__), key=lambda i: i.name):
        module = importlib.import_module(f"{experiments.__name__}.{info.name}")
        if all(hasattr(module, attr) for attr in ("NAME", "PROFILES", "run")) and module.NAME not in SEPARATE:
            found.append(module)
    return found


def plan(modules: list[ModuleType], *, quick_cpu: bool) -> list[tuple[ModuleType, str]]:
    """``(module, profile)`` pairs: every module at ``smoke``; with ``quick_cpu``, :data:`QUICK` at ``cpu``."""
    pairs = [(module, "smoke") for module in modules]
    if quick_cpu:
        names = {module.NAME for module in modules}
        missing = sorted(set(QUICK) - names)
        if missing:
            raise ValueError(f"quick experiments {missing} are not in lnlib.experiments (found {sorted(names)})")
        pairs += [(module, "cpu") for module in modules if module.NAME in QUICK]
    return pairs


def scrub(obj: Any, path: str = "data", problems: list[str] | None = None) -> Any:
    """``obj`` with every NaN or infinite float replaced by ``None`` (strict JSON), each one's path
    appended to ``problems``: a result must hold finite numbers, and the bundle must still be written."""
    if problems is None:
        problems = []
    if isinstance(obj, float) and not math.isfinite(obj):
        problems.append(f"{path} = {obj}")
        return None
    if isinstance(obj, dict):
        return {k: scrub(v, f"{path}.{k}", problems) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [scrub(v, f"{path}[{i}]", problems) for i, v in enumerate(obj)]
    return obj


def check_record(record: dict[str, Any], *, want_device: str) -> tuple[dict[str, Any], list[str]]:
    """``(record scrubbed to strict JSON, problems)``: the schema, the device type named in the
    provenance (``want_device``, ``"cuda"`` or ``"cpu"``) and the finiteness of every number."""
    if want_device not in ("cuda", "cpu"):
        raise ValueError(f"want_device must be 'cuda' or 'cpu', got {want_device!r}")
    problems: list[str] = []
    try:
        results.validate(record, source="<record>")
    except results.ResultFileError as err:
        problems.append(str(err))
    device = str(record.get("provenance", {}).get("device", ""))
    if not device.startswith(want_device):
        problems.append(f"ran on {device or 'an unrecorded device'!r}, expected {want_device}")
    non_finite: list[str] = []
    clean = scrub(record, "record", non_finite)
    if non_finite:
        problems.append(f"{len(non_finite)} non-finite values: " + "; ".join(non_finite[:MAX_PROBLEMS]))
    return clean, problems


def run_experiments(out: Path, *, allow_cpu: bool) -> int:
    """The ``experiments`` step (module docstring); returns the exit status."""
    import torch

    from . import experiments
    from .torch import resolve_device

    cuda = torch.cuda.is_available()
    if not cuda and not allow_cpu:
        print("gpu_check experiments: CUDA is not available here; pass --allow-cpu for a CPU dry run", flush=True)
        return 2
    want = "cuda" if cuda else "cpu"
    resolved = str(resolve_device("auto"))
    header = {"cuda_available": cuda, "auto_device": resolved, "torch": torch.__version__,
              "cuda": torch.version.cuda, "device_name": torch.cuda.get_device_name() if cuda else None,
              "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    print(f"device='auto' resolves to {resolved!r}; CUDA available: {cuda}"
          + (f" ({header['device_name']}, CUDA {torch.version.cuda})" if cuda else ""), flush=True)
    runs: list[dict[str, Any]] = []
    records: dict[str, Any] = {}
    if not resolved.startswith(want):
        runs.append({"experiment": "*", "profile": "*", "status": "failed", "wall_time_s": 0.0, "device": resolved,
                     "problems": [f"device='auto' resolved to {resolved!r} although CUDA is available"]})
    scratch = Path(tempfile.mkdtemp(prefix="lnlib-gpu-check-"))
    os.environ["LNLIB_CHECKPOINT_DIR"] = str(scratch / "checkpoints")  # train from scratch, never resume
    os.environ["LNLIB_RESULTS_DIR"] = str(scratch / "results")  # save=False; nothing should land there
    for module, profile in plan(experiment_modules(), quick_cpu=cuda):
        began = time.perf_counter()
        print(f"-- {module.NAME} at profile {profile} ...", flush=True)
        try:
            record = experiments.run(module, profile=profile, seed=0, device="auto", progress=False, save=False)
        except Exception:  # noqa: BLE001  (one broken experiment must not hide the others' results)
            problems, device, record = [traceback.format_exc(limit=8)], "", None
        else:
            record, problems = check_record(record, want_device=want)
            device = record["provenance"]["device"]
            records[f"{module.NAME}-{profile}"] = record
        wall = time.perf_counter() - began
        runs.append({"experiment": module.NAME, "profile": profile, "status": "failed" if problems else "ok",
                     "wall_time_s": round(wall, 2), "device": device, "problems": problems})
        print(f"   {runs[-1]['status']} in {wall:.1f} s on {device or '?'}"
              + "".join(f"\n   problem: {p}" for p in problems), flush=True)
    failed = [r for r in runs if r["status"] != "ok"]
    print(report.table(["experiment", "profile", "status", "seconds", "device"],
                       [(r["experiment"], r["profile"], r["status"], f"{r['wall_time_s']:.1f}", r["device"])
                        for r in runs]), flush=True)
    results.write_json_atomic(out / EXPERIMENTS_FILE, {**header, "runs": runs, "records": records})
    print(f"{len(runs) - len(failed)} of {len(runs)} runs passed; records in {out / EXPERIMENTS_FILE}", flush=True)
    return 1 if failed else 0


# ---------------------------------------------------------------------------------------------------------
# The summary


def junit_counts(path: Path) -> dict[str, Any]:
    """Totals of a pytest JUnit XML file and the reasons of its skips, with how many tests each."""
    root = ElementTree.parse(path).getroot()
    cases = list(root.iter("testcase"))
    outcome = Counter()
    reasons: Counter[str] = Counter()
    cuda_dtypes = Counter()
    for case in cases:
        kind = next((child.tag for child in case if child.tag in ("failure", "error", "skipped")), "passed")
        outcome[kind] += 1
        if kind == "skipped":
            reasons[(case.find("skipped").get("message") or "").strip()] += 1
        if case.get("classname", "").endswith("test_cuda_dtypes"):
            cuda_dtypes[kind] += 1
    return {"tests": len(cases), "passed": outcome["passed"], "failed": outcome["failure"],
            "errors": outcome["error"], "skipped": outcome["skipped"], "skip_reasons": dict(reasons),
            "cuda_dtype_tests": dict(cuda_dtypes)}


def summarize(out: Path, steps: dict[str, int], *, cuda: bool) -> tuple[str, bool]:
    """The text of ``summary.txt`` and whether everything held."""
    from . import bench as bench_cli

    ok = all(status == 0 for status in steps.values())
    lines = ["lnlib GPU check (issue 19): " + time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
             "steps: " + ", ".join(f"{name} exit {status}" for name, status in steps.items())]

    junit = out / JUNIT_FILE
    if junit.exists():
        t = junit_counts(junit)
        lines.append(f"tests: {t['passed']} passed, {t['failed']} failed, {t['errors']} errors, {t['skipped']} "
                     f"skipped of {t['tests']}; tests/test_cuda_dtypes.py: "
                     + (", ".join(f"{n} {k}" for k, n in sorted(t["cuda_dtype_tests"].items())) or "none ran"))
        lines += [f"  skipped {n}: {reason}" for reason, n in sorted(t["skip_reasons"].items())]
        if t["failed"] or t["errors"]:
            ok = False
        cuda_skips = sum(n for reason, n in t["skip_reasons"].items() if CUDA_MISSING.search(reason))
        if cuda and cuda_skips:
            ok = False
            lines.append(f"  FAILED: {cuda_skips} tests skipped for want of CUDA although CUDA is available")
        if cuda and t["cuda_dtype_tests"].get("passed", 0) == 0:
            ok = False
            lines.append("  FAILED: no test of tests/test_cuda_dtypes.py passed")
    else:
        ok = False
        lines.append(f"tests: no {JUNIT_FILE} (the test step did not finish)")

    errors = out / ERRORS_FILE
    if errors.exists():
        report_ = json.loads(errors.read_text())
        lines.append("largest normwise relative error per dtype, CUDA against the CPU in float64 "
                     "(error, operation, fraction of its tolerance):")
        for dtype, worst in report_["largest"].items():
            close = report_["closest_to_tolerance"][dtype]
            lines.append(f"  {dtype:9s} {worst['error']:.2e}  {worst['op']}  ({worst['ratio']:.2f} of "
                         f"{worst['tolerance']:.1e}); closest to its tolerance: {close['op']} ({close['ratio']:.2f})")
    elif cuda:
        lines.append(f"largest error per dtype: no {ERRORS_FILE} (the CUDA dtype tests recorded nothing)")

    bundle = out / EXPERIMENTS_FILE
    if bundle.exists():
        data = json.loads(bundle.read_text())
        failed = [r for r in data["runs"] if r["status"] != "ok"]
        devices = sorted({r["device"] for r in data["runs"] if r["device"]})
        lines.append(f"experiments: {len(data['runs']) - len(failed)} of {len(data['runs'])} runs passed "
                     f"(device='auto' resolved to {data['auto_device']!r}; provenance devices: {', '.join(devices)})")
        lines += [f"  {r['experiment']} {r['profile']} {r['wall_time_s']:.1f} s" for r in data["runs"]]
        for run in failed:
            ok = False
            lines.append(f"  FAILED {run['experiment']} at {run['profile']}: " + " | ".join(
                p.strip().splitlines()[-1] for p in run["problems"]))
    else:
        ok = False
        lines.append(f"experiments: no {EXPERIMENTS_FILE}")

    benches = sorted(out.glob("bench-*-seed0.json"))
    if benches:
        record = results.load(benches[-1])
        lines.append(f"bench ({benches[-1].name}, {record['provenance']['wall_time_s']:.0f} s, "
                     f"{record['provenance']['device']}):")
        lines.append(bench_cli.gpu_summary(record) if "gpu" in record["data"] else "  no GPU rows (a CPU run)")
    else:
        ok = False
        lines.append("bench: no bench-*-seed0.json")

    files = sorted({*(p for p in out.rglob("*") if p.is_file()), out / SUMMARY_FILE})
    big = [p.name for p in files if p.exists() and p.stat().st_size > 16 * 2**20]
    lines.append(f"files in {out}: {len(files)} ({', '.join(p.name for p in files)})"
                 + (f"; over 16 MiB: {big}" if big else "") + ("; more than 8" if len(files) > 8 else ""))
    lines.append("RESULT: " + ("PASS" if ok else "FAIL"))
    return "\n".join(lines) + "\n", ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lnlib.gpu_check", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    exp = commands.add_parser("experiments", help="run every experiment with device='auto' and check it")
    exp.add_argument("--out", type=Path, required=True)
    exp.add_argument("--allow-cpu", action="store_true", help="without CUDA, check on the CPU at smoke")
    summ = commands.add_parser("summary", help="write summary.txt from what the other steps left")
    summ.add_argument("--out", type=Path, required=True)
    summ.add_argument("--step", action="append", default=[], metavar="NAME=STATUS",
                      help="a step's exit status, e.g. tests=0 (repeatable)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.command == "experiments":
        return run_experiments(args.out, allow_cpu=args.allow_cpu)
    steps = {}
    for item in args.step:
        name, sep, status = item.partition("=")
        if not sep or not status.lstrip("-").isdigit():
            parser.error(f"--step takes NAME=STATUS with an integer status, got {item!r}")
        steps[name] = int(status)
    import torch

    text, ok = summarize(args.out, steps, cuda=torch.cuda.is_available())
    (args.out / SUMMARY_FILE).write_text(text)
    print(text, end="", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
