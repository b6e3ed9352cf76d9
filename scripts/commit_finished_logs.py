"""Copy the finished runs' logs of every local run folder to ``data/runs/`` (for ``git add``).

    .venv/bin/python scripts/commit_finished_logs.py [--profile cpu]

A profile trained over several sittings keeps its progress in the repository this way: each finished run's
log (small JSON) is committed as it completes, and a later sitting reads it instead of training the run again
(:func:`lnlib.experiments.training.commit_finished_logs`; a committed log is never overwritten). Prints the
new files, and the chapters whose stored outputs count the logs under ``data/runs`` (their progress lines):
re-execute those in the same commit, or nbval fails on them.
"""

from __future__ import annotations

import argparse
import sys

from lnlib import results
from lnlib.experiments import training


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--profile", default="cpu", help="the profile whose run folders to read (default cpu)")
    args = parser.parse_args(argv)
    root = training.checkpoint_root()
    folders = sorted(p for p in root.glob(f"*-{args.profile}-seed*") if p.is_dir())
    new = [path for folder in folders for path in training.commit_finished_logs(folder)]
    for path in new:
        print(path)
    print(f"{len(new)} new finished logs from {len(folders)} run folders of profile {args.profile}", file=sys.stderr)
    counting = sorted(str(p.relative_to(results.REPO_ROOT)) for p in (results.REPO_ROOT / "chapters").glob("*.ipynb")
                      if "progress_of(" in p.read_text(encoding="utf-8"))
    if new and counting:
        print("these chapters print how many logs are committed; re-execute them before committing: "
              + " ".join(counting), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
