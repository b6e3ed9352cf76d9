"""Print the table rows of data/runs/superseded/README.md or data/runs/retrained/README.md from the logs.

    .venv/bin/python scripts/trained_twice_table.py superseded [--folder fig6_mnist-cpu-seed0]
    .venv/bin/python scripts/trained_twice_table.py retrained

For each run trained twice: the commit of each training and whether it had local changes to lnlib, the
fields the first lacks that a chapter reads, and what differs (training NLL after epoch 1, the last epoch's
test error and training NLL, and the epochs to a training NLL of 0.1, 0.01, 0.001). Figure 6 runs only.
"""

from __future__ import annotations

import argparse
import json
import sys

from lnlib import claims
from lnlib.experiments import training

#: fields a chapter reads that an older log may lack
NEWER_FIELDS = ("train_nll_batch_statistics",)


def _trained(log: dict) -> str:
    return f"{str(log.get('git_commit'))[:7]}{' with local changes' if log.get('code_modified') else ', clean'}"


def _reach(log: dict) -> str:
    return ", ".join("-" if r is None else str(r)
                     for r in (claims.epochs_to_reach(log, "train_nll", t) for t in claims.FIG6_THRESHOLDS))


def row(folder: str, key: str, first: dict, second: dict) -> str:
    lacks = [f"`{name}`" for name in NEWER_FIELDS if name in second and name not in first]
    return (f"| `{folder}/{key}` | {_trained(first)}{'; lacks ' + ', '.join(lacks) if lacks else ''} "
            f"| {_trained(second)} | training NLL after epoch 1 {second['train_nll'][0]:.4g} (second) against "
            f"{first['train_nll'][0]:.4g} (first); last epoch {100 * second['test_error'][-1]:.2f} % against "
            f"{100 * first['test_error'][-1]:.2f} % test error, training NLL {second['train_nll'][-1]:.2g} against "
            f"{first['train_nll'][-1]:.2g}; epochs to a training NLL of 0.1, 0.01, 0.001: {_reach(second)} "
            f"against {_reach(first)} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("kind", choices=training.OTHER_TRAINING_KINDS)
    parser.add_argument("--folder", default="fig6_mnist-cpu-seed0", help="the run folder (default %(default)s)")
    args = parser.parse_args(argv)
    for other in sorted((training.COMMITTED_RUNS / args.kind / args.folder).glob("*.json")):
        used = json.loads((training.COMMITTED_RUNS / args.folder / other.name).read_text(encoding="utf-8"))
        kept = json.loads(other.read_text(encoding="utf-8"))
        first, second = (kept, used) if args.kind == "superseded" else (used, kept)
        print(row(args.folder, other.stem, first, second))
    return 0


if __name__ == "__main__":
    sys.exit(main())
