"""What a verdict on a claim is: a status and one sentence of evidence (see :mod:`lnlib.claims`).

Kept apart from :mod:`lnlib.claims` so that experiment modules can build verdicts without importing the
ledger (which imports them).
"""

from __future__ import annotations

from dataclasses import dataclass

STATUSES = ("reproduced", "partly reproduced", "not reproduced", "not tested here")


@dataclass(frozen=True)
class Verdict:
    status: str
    evidence: str

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {self.status!r}")


def status_of(checks: list[bool]) -> str:
    """All checks pass: reproduced; some: partly; none: not reproduced; no checks at all: not tested here."""
    if not checks:
        return "not tested here"
    if all(checks):
        return "reproduced"
    return "partly reproduced" if any(checks) else "not reproduced"
