"""Plain-text output for the chapters: tables and provenance cards.

Chapters print their numbers as text (never only in figures or HTML), so that nbval compares them when it
re-executes a chapter. Numbers are rounded to what is meaningful; floating-point noise below 1e-10 is
printed in scientific notation and sanitized by ``tests/nbval_sanitize.cfg``.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from typing import Any, Protocol


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A fixed-width text table; cells are formatted with ``str`` (format numbers before passing them).

    The first column (labels) is left-aligned, the others (numbers) right-aligned.
    """
    cells = [[str(c) for c in row] for row in rows]
    widths = [max(len(str(h)), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    line = "  ".join(str(h).ljust(w) for h, w in zip(headers, widths))
    rule = "  ".join("-" * w for w in widths)
    body = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
            for r in cells]
    return "\n".join([line, rule, *body])


def sci(value: float, digits: int = 1) -> str:
    """``1.2e-07``-style formatting for errors and tolerances."""
    return f"{value:.{digits}e}"


#: Below this, a float64 error is rounding, and its digits depend on the machine (summation order, SIMD
#: width, threads): :func:`rounding` prints the bound instead, so that a chapter re-executed elsewhere
#: prints the same text.
ROUNDING_FLOOR = 1e-13


def rounding(value: float, digits: int = 1, floor: float = ROUNDING_FLOOR) -> str:
    """An error as :func:`sci` prints it, or ``<1e-13`` when it is float64 rounding (below ``floor``,
    by default :data:`ROUNDING_FLOOR`, about 450 units in the last place at 1; a finite difference with
    step h needs a floor near ``1e-16 / h`` times the function's size)."""
    return f"<{floor:.0e}" if abs(value) < floor else sci(value, digits)


class Judged(Protocol):
    """What :func:`verdict` prints: ``lnlib.claims.Verdict`` has these three fields."""

    status: str
    evidence: str
    details: str


def verdict(name: str, judged: Judged, width: int = 78) -> str:
    """A claim's verdict as the chapters print it: ``name status: evidence.`` wrapped to ``width``, then each
    ``"; "``-separated part of ``details`` on its own indented lines (a part is one comparison of the rule)."""
    head = textwrap.fill(f"{name} {judged.status}: {judged.evidence}.", width, subsequent_indent="    ",
                         break_on_hyphens=False)
    parts = [textwrap.fill(part, width, initial_indent="  ", subsequent_indent="      ", break_on_hyphens=False)
             for part in judged.details.split("; ") if part]
    return "\n".join([head, *parts])


def run_commits(runs: Mapping[str, Mapping[str, Any]]) -> str:
    """Which commits the runs of a result were trained at (a result assembled from runs of several sessions
    says so): ``the runs were trained at 2 commits (0e4591a, 759b3ab +local changes)``."""
    commits = sorted({(str(log["git_commit"])[:7], bool(log["code_modified"])) for log in runs.values()})
    listed = ", ".join(f"{c}{' +local changes' if m else ''}" for c, m in commits)
    count = len({c for c, _ in commits})
    return f"the runs were trained at {count} commit{'s' if count != 1 else ''} ({listed})"


def provenance_card(record: dict[str, Any]) -> str:
    """A short, printable provenance record for a figure made from a result file."""
    prov = record["provenance"]
    commit = prov.get("git_commit") or "unknown"
    modified = " (lnlib modified)" if prov.get("code_modified") else ""
    versions = ", ".join(f"{k} {v}" for k, v in prov.get("versions", {}).items())
    flat = {k: v for k, v in record["params"].items() if not isinstance(v, dict)}
    nested = {k: v for k, v in record["params"].items() if isinstance(v, dict)}
    lines = [f"  parameters: {', '.join(f'{k}={_short(v)}' for k, v in flat.items())}"] if flat else []
    lines += [f"  parameters of {k}: {', '.join(f'{kk}={_short(vv)}' for kk, vv in v.items())}"
              for k, v in nested.items()]
    return "\n".join([
        f"Provenance: experiment {record['experiment']}, profile {record['profile']}, seed {record['seed']}",
        *lines,
        f"  commit {commit[:12]}{modified}; {versions}",
        f"  device {prov['device']}; wall time {prov['wall_time_s']:.1f} s{_training(record)}; "
        f"created {prov['created_utc']}",
    ])


def _short(value: Any, limit: int = 6) -> str:
    """Long lists are shown by their ends and length: ``[0.0001, 0.000178, ..., 100] (25 values)``."""
    if not isinstance(value, list) or len(value) <= limit:
        return str(value)
    ends = [f"{v:.3g}" if isinstance(v, float) else str(v) for v in (value[0], value[1], value[-1])]
    return f"[{ends[0]}, {ends[1]}, ..., {ends[2]}] ({len(value)} values)"


def _training(record: dict[str, Any]) -> str:
    """For experiments whose runs are trained separately (and resumed), the summed training time."""
    seconds = record["data"].get("training_seconds") if isinstance(record.get("data"), dict) else None
    return "" if not seconds else f" (assembly; training of all runs {seconds / 60:.1f} min)"
