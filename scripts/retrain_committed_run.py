"""Train a committed run again from scratch and compare it with its committed log.

    .venv/bin/python scripts/retrain_committed_run.py data/runs/rnn-cpu-seed0/<key>.json [--replace]

    .venv/bin/python scripts/retrain_committed_run.py data/runs/fig6_mnist-cpu-seed0/<key>.json [--replace]

    .venv/bin/python scripts/retrain_committed_run.py data/runs/fig6_mnist-cpu-seed0/<key>.json --supersede

    .venv/bin/python scripts/retrain_committed_run.py data/runs/rnn-cpu-seed0/<key>.json --precision-above 1000

The runs are deterministic (one thread, deterministic algorithms, batches a function of the step), so on
the same CPU model and with the same code the new log equals the committed one in every field that does
not record time, code version or machine. On another CPU model float rounding differs, and with it the
trajectory from the first epoch on (chapter 6 measured it; logs name their machine since). The command
prints each field that differs, with the first epoch (or evaluation) where it differs and the largest
difference. With ``--replace`` and no difference, the
committed log is replaced by the new one: the same run, with the fields that later code logs too (such as
``grad_norm_max``, the largest single-step gradient norm of each evaluation window of a recurrent run, or
``train_nll_batch_statistics``, batch norm's training NLL in training mode, of a Figure 6 run). A log that
differs is replaced only with ``--supersede``, for a run whose committed log was trained with local changes
to ``lnlib/`` (code nobody can check out) or lacks a field a chapter needs: the committed log then moves to
``data/runs/superseded/<run folder>/<key>.json`` (:func:`lnlib.experiments.training.supersede`; a chapter
can read it back to show how much its verdicts depend on it) and the new log takes its place. A new
log trained with local changes supersedes nothing. With ``--keep``, a differing new log is instead
committed beside the first as evidence, ``data/runs/retrained/<run folder>/<key>.json``, and results keep
reading the first. Either way the new log is kept, as ``retrained/<run folder>/<key>.json`` under
the checkpoint folder (``_build/checkpoints``, or ``$LNLIB_CHECKPOINT_DIR``); the retraining checkpoints
there every epoch, so an interrupted retraining resumes, and a finished one is read, not repeated (delete
the file to train again). The experiment is the run folder's first name (``rnn`` or ``fig6_mnist``).

With ``--precision-above NORM`` (recurrent runs only) the run is instead replayed up to its last evaluation window with a
single-step gradient norm above ``NORM`` (its log's ``grad_norm_max``), and at every step above ``NORM`` the
gradient is computed in float32 and in float64 from the same weights
(:func:`lnlib.experiments.rnn.replay_gradient_precision`); the answer, with the window means that show the
replay is the same run, is written next to the log as ``<key>.precision.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from lnlib import results
from lnlib.data import mnist
from lnlib.experiments import fig6_mnist, rnn, training

#: fields that record when, how long, or with which code a run was trained, not what it computed
VOLATILE = results.VOLATILE_KEYS | {"source_sha256"}
#: the experiments whose committed runs can be retrained, by the first name of their run folder
EXPERIMENTS = {"rnn": rnn, "fig6_mnist": fig6_mnist}


def differences(old: object, new: object, where: str = "") -> list[str]:
    """The paths at which ``new`` differs from ``old``; keys only ``new`` has are additions, not differences."""
    if isinstance(old, dict) and isinstance(new, dict):
        return [d for key in old if key not in VOLATILE
                for d in (differences(old[key], new[key], f"{where}.{key}") if key in new else [f"{where}.{key} missing"])]
    return [] if old == new else [where or "."]


def how_much(old: object, new: object) -> str:
    """For two equally long lists of numbers: the first index where they differ and the largest absolute and
    relative difference; for anything else, both values (shortened)."""
    numbers = (int, float)
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new) and old \
            and all(isinstance(v, numbers) for v in old + new):
        pairs = list(zip(old, new))
        first = next(i for i, (a, b) in enumerate(pairs) if a != b)
        largest = max(abs(a - b) for a, b in pairs)
        relative = max(abs(a - b) / max(abs(a), abs(b)) for a, b in pairs if a != b)
        return f"from index {first} of {len(pairs)}; largest difference {largest:.3g} (relative {relative:.3g})"
    return f"{str(old)[:60]} -> {str(new)[:60]}"


def at(log: object, path: str) -> object:
    """The value at a path that :func:`differences` printed (``.key.key``)."""
    for key in path.strip(".").split("."):
        log = log[key] if isinstance(log, dict) and key in log else None
    return log


def retrained_folder(log: Path) -> Path:
    """Where the new log of a committed run is trained and kept: ``retrained/<run folder>`` under the
    checkpoint folder."""
    return training.checkpoint_root() / "retrained" / log.resolve().parent.name


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("log", type=Path, help="a committed log, data/runs/<run folder>/<key>.json")
    parser.add_argument("--replace", action="store_true", help="replace the committed log if the new one agrees")
    parser.add_argument("--supersede", action="store_true",
                        help="replace the committed log by the new one even if they differ, keeping the committed "
                             "one under data/runs/superseded/")
    parser.add_argument("--keep", action="store_true",
                        help="if the new log differs, keep it under data/runs/retrained/ (the committed log stays)")
    parser.add_argument("--precision-above", type=float, metavar="NORM",
                        help="replay instead, comparing float32 with float64 gradients at steps with norms above NORM")
    args = parser.parse_args(argv)
    if args.supersede and args.keep:
        parser.error("--supersede and --keep exclude each other: the new log either replaces the committed one "
                     "or is kept beside it")
    experiment = args.log.resolve().parent.name.split("-")[0]
    if experiment not in EXPERIMENTS:
        parser.error(f"{args.log}: its run folder names experiment {experiment!r}; expected one of {sorted(EXPERIMENTS)}")
    module = EXPERIMENTS[experiment]
    committed = json.loads(args.log.read_text(encoding="utf-8"))
    spec = committed["spec"]
    if module.run_key(spec) != args.log.stem:
        parser.error(f"{args.log}: its spec hashes to {module.run_key(spec)}, not to its file name")
    data = mnist.load() if module is fig6_mnist or spec["task"] == "seqmnist" else None
    if args.precision_above is not None:
        if module is not rnn:
            parser.error("--precision-above replays recurrent runs only")
        return replay(args.log, committed, data, args.precision_above)
    folder = retrained_folder(args.log)
    with training.run_environment("cpu", threads=module.THREADS) as device:
        new = training.train_once(folder, module.run_key(spec), spec,
                                  lambda checkpoint: module._train(spec, data, checkpoint, device, True))
    print(f"the new log: {folder / args.log.name}, trained at commit {str(new.get('git_commit'))[:7]}"
          f"{' with local changes' if new.get('code_modified') else ''} (a log finished earlier is read, not "
          "retrained: delete it to retrain with the code of now)")
    changed = differences(committed, new)
    for path in changed:
        print(f"differs: {path}: {how_much(at(committed, path), at(new, path))}")
    added = sorted(set(new) - set(committed))
    print(f"{args.log.name}: {'identical' if not changed else f'{len(changed)} fields differ'}"
          f" (new fields: {', '.join(added) or 'none'}); torch {torch.__version__}")
    if (args.replace or args.supersede) and not changed:
        results.write_json_atomic(args.log, new)
        print(f"replaced {args.log}")
    elif args.supersede:
        if new.get("code_modified") is not False:
            print(f"not superseded: the new log was trained with local changes to lnlib (or outside git); "
                  f"commit them, delete {folder / args.log.name} and retrain")
            return 1
        kept = training.supersede(args.log, new)
        print(f"superseded: {args.log} is the new log now; the committed one moved to {kept}")
        return 0
    elif args.keep and changed:
        kept = results.write_json_atomic(training.other_training_path(args.log, "retrained"), new)
        print(f"kept the new log as {kept}; results still read {args.log}")
    return 1 if changed else 0


def replay(path: Path, committed: dict, data: mnist.MNIST | None, above: float) -> int:
    spec = committed["spec"]
    windows = [step for step, largest in zip(committed["step"], committed.get("grad_norm_max") or [])
               if largest is not None and largest > above]
    if not windows:
        print(f"{path.name}: no logged single-step gradient norm above {above:g} (grad_norm_max); nothing to replay")
        return 0
    began = time.perf_counter()
    with training.run_environment("cpu", threads=rnn.THREADS) as device:
        found = rnn.replay_gradient_precision(spec, data, until=windows[-1], above=above, device=device)
    logged = committed["grad_norm"][:len(found["window_mean_grad_norm"])]
    same = found["window_mean_grad_norm"] == logged
    commit, modified = results.code_version()
    out = {"log": path.name, "spec": spec, "same_run": same, **found,
           "provenance": {"git_commit": commit, "code_modified": modified, "torch": torch.__version__,
                          "device": results.describe_device(str(device)),
                          "wall_time_s": time.perf_counter() - began}}
    target = path.with_name(path.stem + ".precision.json")
    results.write_json_atomic(target, out)
    worst = max((s["relative_difference"] for s in found["steps"]), default=0.0)
    print(f"{path.name}: replay {'is' if same else 'is NOT'} the logged run; {len(found['steps'])} steps above "
          f"{above:g}, largest float32/float64 relative difference {worst:.1e}; written to {target}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
