"""Train a committed recurrent run again from scratch and compare it with its committed log.

    .venv/bin/python scripts/retrain_committed_run.py data/runs/rnn-cpu-seed0/<key>.json [--replace]

The runs are deterministic (one thread, deterministic algorithms, batches a function of the step), so the
new log must equal the committed one in every field that does not record time or code version. The
command prints each field that differs. With ``--replace`` and no difference, the committed log is
replaced by the new one: the same run, with the fields that later code logs too (such as
``grad_norm_max``, the largest single-step gradient norm of each evaluation window). A log that differs is
never replaced.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch

from lnlib import results
from lnlib.data import mnist
from lnlib.experiments import rnn, training

#: fields that record when, how long, or with which code a run was trained, not what it computed
VOLATILE = ("timing", "git_commit", "code_modified", "source_sha256")


def differences(old: object, new: object, where: str = "") -> list[str]:
    """The paths at which ``new`` differs from ``old``; keys only ``new`` has are additions, not differences."""
    if isinstance(old, dict) and isinstance(new, dict):
        return [d for key in old if key not in VOLATILE
                for d in (differences(old[key], new[key], f"{where}.{key}") if key in new else [f"{where}.{key} missing"])]
    return [] if old == new else [where or "."]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("log", type=Path, help="a committed log, data/runs/<run folder>/<key>.json")
    parser.add_argument("--replace", action="store_true", help="replace the committed log if the new one agrees")
    args = parser.parse_args(argv)
    committed = json.loads(args.log.read_text(encoding="utf-8"))
    spec = committed["spec"]
    if rnn.run_key(spec) != args.log.stem:
        parser.error(f"{args.log}: its spec hashes to {rnn.run_key(spec)}, not to its file name")
    data = mnist.load() if spec["task"] == "seqmnist" else None
    with tempfile.TemporaryDirectory() as folder, training.run_environment("cpu", threads=rnn.THREADS) as device:
        new = training.train_once(Path(folder), rnn.run_key(spec), spec,
                                  lambda checkpoint: rnn._train(spec, data, checkpoint, device, True))
    changed = differences(committed, new)
    for path in changed:
        print(f"differs: {path}")
    added = sorted(set(new) - set(committed))
    print(f"{args.log.name}: {'identical' if not changed else f'{len(changed)} fields differ'}"
          f" (new fields: {', '.join(added) or 'none'}); torch {torch.__version__}")
    if args.replace and not changed:
        results.write_json_atomic(args.log, new)
        print(f"replaced {args.log}")
    return 1 if changed else 0


if __name__ == "__main__":
    sys.exit(main())
