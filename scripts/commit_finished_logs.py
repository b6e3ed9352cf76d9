"""Copy the finished runs' logs of every local run folder to ``data/runs/`` (for ``git add``).

    .venv/bin/python scripts/commit_finished_logs.py [--profile cpu]

A profile trained over several sittings keeps its progress in the repository this way: each finished run's
log (small JSON) is committed as it completes, and a later sitting reads it instead of training the run again
(:func:`lnlib.experiments.training.commit_finished_logs`; a committed log is never overwritten). Prints the
new files.
"""

from __future__ import annotations

import argparse
import sys

from lnlib.experiments import training


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--profile", default="cpu", help="the profile whose run folders to read (default cpu)")
    args = parser.parse_args(argv)
    root = training.run_folder("any", args.profile, 0).parent
    folders = sorted(p for p in root.glob(f"*-{args.profile}-seed*") if p.is_dir())
    new = [path for folder in folders for path in training.commit_finished_logs(folder)]
    for path in new:
        print(path)
    print(f"{len(new)} new finished logs from {len(folders)} run folders of profile {args.profile}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
