r"""Verdicts on the claims the book tests, computed from result files (never typed by hand).

Every tested claim has a function here that takes the result record it rests on and returns a
:class:`Verdict`: a status, one short line of evidence (at most :data:`EVIDENCE_LIMIT` characters, for the
ledger's table) and the full numbers (``details``, for the chapters). The chapters print these verdicts,
and the claims ledger (``data/claims.yml`` + ``chapters/99_claims_ledger.ipynb``) evaluates the same
functions on the same files through :func:`judge`, which never raises: a missing result is "not tested at
this profile", a malformed one or one that cannot be read "could not be judged", each with the reason.

This module judges JSON and nothing else: it imports neither torch nor the trainers, so the ledger can be
checked anywhere NumPy is installed.

**The one decision rule for claims that compare training runs** (page "How verdicts are decided"). A
claim is split into *parts*, each a paired comparison: for every seed, the two runs being compared (same
seed, same data order, same initial weights where the experiment allows) give one *effect*, signed so that
a positive effect is the direction the claim predicts. A part with effects :math:`e_1..e_n` and the
measurement's *resolution* :math:`r` (one grid step for epoch, step or test-case counts; a stated precision
for continuous quantities) is

* a *tie* in a seed where :math:`|e_s| < r` (no effect, in every claim alike; the comparison allows a
  relative rounding margin of :math:`10^{-9}`, so that one test case out of :math:`N`, computed as a
  difference of two fractions, is not lost to floating-point rounding);
* **reproduced** when every seed shows the claimed direction (:math:`e_s \ge r` for all :math:`s`) and
  there are at least :data:`MIN_SEEDS` seeds; then the range :math:`[\min e, \max e]` excludes no effect;
* **partly reproduced** when the median effect is at least :math:`r` but the part falls short of that
  (a seed against or tied, or fewer than :data:`MIN_SEEDS` seeds: one seed is never "reproduced");
* **not reproduced** when the median effect is below :math:`r` (a tie or the opposite direction).

A claim is reproduced when every part is, not reproduced when every part is not, and partly reproduced
otherwise. Effects are reported as median and range over the seeds, with the number of seeds.

The rule is deliberately asymmetric: fewer than :data:`MIN_SEEDS` seeds can never make a part reproduced,
but one seed that shows no effect makes it "not reproduced". That status says "these runs do not show
the claimed effect", never "the opposite is true".
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import results

Record = dict[str, Any]
Log = dict[str, Any]
Effect = float | None  # one seed's effect; None: that seed could not give this comparison

#: Statuses of the ledger. The first three are verdicts; the others say why there is none.
STATUSES = ("reproduced", "partly reproduced", "not reproduced", "not tested here", "not tested at this profile",
            "could not be judged")
JUDGED = STATUSES[:3]
#: The fewest seeds on which a comparison of training runs can be "reproduced".
MIN_SEEDS = 3
#: The ledger table's evidence column holds at most this many characters; the chapter has the rest.
EVIDENCE_LIMIT = 160


@dataclass(frozen=True)
class Verdict:
    """A status, a short evidence line for the ledger table, and every number behind it."""

    status: str
    evidence: str
    details: str = ""

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {self.status!r}")
        if len(self.evidence) > EVIDENCE_LIMIT:
            raise ValueError(f"evidence must be at most {EVIDENCE_LIMIT} characters (the rest goes into details), "
                             f"got {len(self.evidence)}: {self.evidence!r}")


# ---------------------------------------------------------------------------------------------------------
# The decision rule


@dataclass(frozen=True)
class Part:
    """One paired comparison of a claim, judged over seeds by the rule (module docstring); made by
    :func:`compare`, which drops the seeds without a comparison."""

    name: str
    effects: tuple[float, ...]  # the seeds that gave a comparison
    resolution: float
    missing: int = 0  # seeds that could not give one (both runs failed, or neither reached a threshold)
    unit: str = ""
    favourable: int = field(init=False)
    median: float = field(init=False)
    status: str = field(init=False)

    def __post_init__(self) -> None:
        values, at_least = self.effects, _at_least(self.resolution)
        favourable = sum(e >= at_least for e in values)
        median = _median(values) if values else math.nan
        if not values:
            status = "could not be judged"
        elif favourable == len(values) and len(values) >= MIN_SEEDS:
            status = "reproduced"
        elif median >= at_least:
            status = "partly reproduced"
        else:
            status = "not reproduced"
        object.__setattr__(self, "favourable", favourable)
        object.__setattr__(self, "median", median)
        object.__setattr__(self, "status", status)

    def describe(self) -> str:
        """``name: median +1.5 epochs (range +1 to +3), 3 of 3 seeds in the claimed direction``."""
        if not self.effects:
            return f"{self.name}: no seed gave a comparison"
        unit = f" {self.unit}" if self.unit else ""
        spread = (f" (range {_signed(min(self.effects))} to {_signed(max(self.effects))})"
                  if len(self.effects) > 1 else "")
        missing = f", {self.missing} without a comparison" if self.missing else ""
        return (f"{self.name}: {_signed(self.median)}{unit}{spread}, {self.favourable} of {len(self.effects)} "
                f"seed{'s' if len(self.effects) != 1 else ''} in the claimed direction{missing}")


def _at_least(resolution: float) -> float:
    """The smallest effect that counts as one, with a relative margin of 1e-9 for rounding (a difference of
    two error rates that is exactly one case of N can come out a hair below 1/N)."""
    return resolution * (1.0 - 1e-9)


def _median(values: Sequence[float]) -> float:
    """The median, with infinities allowed: -inf and +inf in the middle pair average to 0 (a tie), not NaN."""
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    low, high = ordered[middle - 1], ordered[middle]
    if math.isinf(low) and math.isinf(high) and low != high:
        return 0.0
    return (low + high) / 2


def _signed(value: float) -> str:
    if math.isinf(value):
        return "+inf" if value > 0 else "-inf"
    return f"{value:+.3g}"


def compare(name: str, effects: Sequence[Effect], resolution: float, unit: str = "") -> Part:
    """Judge one paired comparison: ``effects`` per seed (positive = the claimed direction; ``None`` or NaN:
    no comparison in that seed; +-inf: one side failed outright), ties below ``resolution``."""
    if not (isinstance(resolution, (int, float)) and resolution >= 0):
        raise ValueError(f"resolution must be a number >= 0, got {resolution!r}")
    usable = tuple(float(e) for e in effects if e is not None and not math.isnan(e))
    return Part(name, usable, resolution, len(effects) - len(usable), unit)


def combine(statuses: Sequence[str]) -> str:
    """A claim's status from its parts': reproduced if all are, not reproduced if all are not, else partly;
    parts that could not be judged are left out ("could not be judged" if no part could)."""
    judged = [s for s in statuses if s in JUDGED]
    if not judged:
        return "could not be judged"
    if all(s == "reproduced" for s in judged):
        return "reproduced"
    if all(s == "not reproduced" for s in judged):
        return "not reproduced"
    return "partly reproduced"


def status_of(checks: Sequence[bool]) -> str:
    """For exact measurements (not training runs): every check holds: reproduced; some: partly; none: not."""
    if not checks:
        return "could not be judged"
    return combine(["reproduced" if c else "not reproduced" for c in checks])


def verdict_from_parts(parts: Sequence[Part], seeds: int, summary: str, details_head: str = "",
                       planned: int | None = None) -> Verdict:
    """The claim's verdict from its parts: status by :func:`combine`, a short line that starts with the
    number of seeds and the count of parts reproduced, partly and not (and how many of those not reproduced
    have a median effect the other way, beyond the resolution; and, if fewer comparisons could be judged
    than ``planned``, how many), and every part in ``details``."""
    status = combine([p.status for p in parts])
    judged = [p for p in parts if p.status in JUDGED]
    planned = len(parts) if planned is None else planned
    of = f"of {len(judged)} comparisons" + (f" ({planned} planned)" if planned != len(judged) else "")
    against = sum(p.status == "not reproduced" and p.median <= -_at_least(p.resolution) for p in judged)
    counts = (f"{seeds} seed{'s' if seeds != 1 else ''}; {sum(p.status == 'reproduced' for p in judged)} "
              f"reproduced, {sum(p.status == 'partly reproduced' for p in judged)} partly, "
              f"{sum(p.status == 'not reproduced' for p in judged)} not"
              f"{f' ({against} the other way)' if against else ''}, {of}")
    evidence = f"{counts}; {summary}" if summary else counts
    if len(evidence) > EVIDENCE_LIMIT:
        evidence = counts
    details = "; ".join(([details_head] if details_head else []) + [f"[{p.status}] {p.describe()}" for p in parts])
    return Verdict(status, evidence, details)


def _finite(values: Sequence[float | None]) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(v)]


# ---------------------------------------------------------------------------------------------------------
# Reading training logs (shared by the verdicts and the chapters)


def seeds_of(logs: Sequence[Log]) -> dict[int, Log]:
    """Logs keyed by their spec's seed (the pairing key of every comparison)."""
    return {int(log["spec"]["seed"]): log for log in logs}


def paired(a: Sequence[Log], b: Sequence[Log]) -> list[tuple[Log, Log]]:
    """The (a, b) pairs of runs with the same seed, in seed order."""
    sa, sb = seeds_of(a), seeds_of(b)
    return [(sa[s], sb[s]) for s in sorted(set(sa) & set(sb))]


def first_reaching(positions: Sequence[int], values: Sequence[float | None], threshold: float, *,
                   consecutive: int = 1, holds_after_end: bool = False) -> int | None:
    """The first position (epoch, step) at which the value is at most ``threshold``; ``None``: never. With
    ``consecutive`` ``k``, the first of ``k`` consecutive evaluations at most ``threshold`` (a noisy curve that
    dips below it once does not count); ``holds_after_end``: a streak still running at the last evaluation
    counts as long enough (a run stopped because it was below a lower threshold stays below this one)."""
    streak = 0
    for i, value in enumerate(values):
        streak = streak + 1 if value is not None and value <= threshold else 0
        if streak == consecutive or (holds_after_end and streak and i == len(values) - 1):
            return int(positions[i - streak + 1])
    return None


def race_effect(first: int | None, second: int | None, censored_at: int, *, earliest: int | None = None,
                resolution: float = 0.0) -> Effect:
    """``second - first``: how much earlier the first run got there; a run that never did counts as
    ``censored_at`` (one grid step past the budget, so the effect is a lower bound); neither: ``None``. A
    ``first`` run already there at the first evaluation ``earliest`` got there at some step up to it, so the
    effect is a lower bound too. A lower bound counts only if it is at least ``resolution``: a smaller one
    says nothing either way (``None``)."""
    if first is None and second is None:
        return None
    effect = float((censored_at if second is None else second) - (censored_at if first is None else first))
    lower_bound = first is not None and (second is None or first == earliest)
    return _unless_uninformative(effect, lower_bound, resolution)


def _unless_uninformative(effect: float, lower_bound: bool, resolution: float) -> Effect:
    """``effect``, or ``None`` when it is only a lower bound and falls short of ``resolution``: the true effect
    could then be anything from that bound up, so it says nothing either way (the rule's bound clause)."""
    return None if lower_bound and effect < _at_least(resolution) else effect


def race(first: int | None, second: int | None) -> str | None:
    """Who gets there first, from two :func:`first_reaching` answers: ``"earlier"`` when ``first`` does (or
    ``second`` never does), ``"tie"`` at the same position, ``"later"`` otherwise, ``None`` when neither does."""
    if first is None and second is None:
        return None
    if first == second:
        return "tie"
    return "earlier" if second is None or (first is not None and first < second) else "later"


def median_or_none(values: Sequence[float | None]) -> float | None:
    """Median with ``None`` as +infinity (never reached); ``None`` if that median is infinite or empty."""
    if not values:
        return None
    value = float(np.median([math.inf if v is None else float(v) for v in values]))
    return None if math.isinf(value) else value


def decades(values: Sequence[float | None]) -> float:
    """``log10(max / min)`` of non-negative values: how many orders of magnitude they span; ``inf`` if one
    of them is 0, infinite or missing (``None``: a non-finite value stored as JSON null)."""
    if not values:
        raise ValueError("decades needs at least one value")
    if any(v is None or not math.isfinite(v) for v in values):
        return math.inf
    low, high = min(values), max(values)  # type: ignore[type-var]  # no None left
    if low < 0:
        raise ValueError(f"decades needs non-negative values, got a minimum of {low}")
    return math.inf if low == 0 else math.log10(high / low)


def _difference(a: float, b: float) -> Effect:
    """``a - b`` with inf - inf (both sides failed) as no comparison."""
    value = a - b
    return None if math.isnan(value) else value


# --- Figure 6 (chapter 6) ----------------------------------------------------------------------------------

FIG6_THRESHOLDS = (1e-1, 1e-2, 1e-3)
#: Ties in H3's training-NLL comparison: log ratios that differ by less than 0.01 (1 %).
NLL_LOG_RATIO_RESOLUTION = 0.01
#: H3 compares the batch sizes over the last epochs both were trained for (median over this many), so
#: that one noisy epoch does not decide it.
H3_WINDOW = 5
#: Steps-to-threshold measured on an evaluation grid: a crossing is known to within one grid step, so a
#: difference must be at least two steps to be one (one step can come from no difference at all).
GRID_STEPS_RESOLUTION = 2


def select_fig6(data: dict[str, Any], *, kind: str, variant: str, batch_size: int) -> list[Log]:
    """The Figure 6 logs of every seed of one (kind, variant, batch size), in seed order."""
    logs = [log for log in data["runs"].values() if log["spec"]["kind"] == kind
            and log["spec"]["variant"] == variant and int(log["spec"]["batch_size"]) == batch_size]
    return sorted(logs, key=lambda log: log["spec"]["seed"])


def epochs_to_reach(log: Log, key: str, threshold: float) -> int | None:
    """The first epoch at which ``log[key]`` is at most ``threshold`` (``None`` if it never is)."""
    return first_reaching(log["epoch"], log[key], threshold)


def at_epoch(log: Log, key: str, epoch: int) -> float | None:
    """``log[key]`` at ``epoch`` (1-based); ``None`` if the run did not get that far or the value is not
    finite (a diverged run)."""
    value = log[key][epoch - 1] if epoch <= len(log[key]) else None
    return None if value is None or not math.isfinite(value) else float(value)


def _main_batch_sizes(record: Record) -> list[int]:
    return sorted((int(b) for b in record["params"]["main_batch_sizes"]), reverse=True)


def _fig6_seeds(record: Record) -> int:
    return len({log["spec"]["seed"] for log in record["data"]["runs"].values() if log["spec"]["kind"] == "main"})


#: H3's and H4's rivals: batch norm as the paper applies it (every layer, the logits included) and, where
#: trained, the control with batch norm where layer norm is (the hidden layers only)
BN_RIVALS = (("batchnorm", "BN"), ("batchnorm_hidden", "BN hidden-only"))
H4_RIVALS = BN_RIVALS
#: the two measures of batch norm's training NLL: in evaluation mode (population statistics; the paper's
#: figure, presumably) and in training mode (the batch statistics of the run's batch size: what the
#: optimizer minimizes; logged from issue 14 on)
BN_NLL_KEYS = ("train_nll", "train_nll_batch_statistics")


def h4_faster_convergence(record: Record, *, rival_nll: str = "train_nll", consecutive: int = 1) -> Verdict:
    """H4: layer norm reaches each training-NLL threshold in fewer epochs than batch norm.

    One part per (rival, batch size, threshold), the rivals of :data:`H4_RIVALS` that the result has: per
    seed, the rival's epoch minus LN's (a run that never reaches it counts as one epoch past its budget);
    resolution two epochs (the evaluation grid's step is one epoch). Parts that neither variant reaches in
    any seed are left out and counted as planned but not judged. ``rival_nll`` (one of
    :data:`BN_NLL_KEYS`) is the batch-norm runs' NLL to race with: a pair whose rival log lacks it is left
    out (layer norm's NLL is the same in both modes). ``consecutive``: a threshold counts as reached at the
    first of that many consecutive epochs at or below it (:func:`first_reaching`; the NLL jumps by a factor
    of several from epoch to epoch late in training, so one dip below a threshold can be luck)."""
    if rival_nll not in BN_NLL_KEYS:
        raise ValueError(f"rival_nll must be one of {BN_NLL_KEYS}, got {rival_nll!r}")
    parts, skipped, leads = [], [], []
    for rival, name in H4_RIVALS:
        rival_parts = []
        for bs in _main_batch_sizes(record):
            pairs = [(ln, bn) for ln, bn in
                     paired(select_fig6(record["data"], kind="main", variant="layernorm", batch_size=bs),
                            select_fig6(record["data"], kind="main", variant=rival, batch_size=bs))
                     if rival_nll in bn]
            if not pairs:
                continue
            for t in FIG6_THRESHOLDS:
                label = f"{name} batch {bs} NLL<={t:g}" if rival != "batchnorm" else f"batch {bs} NLL<={t:g}"
                reached = [(first_reaching(ln["epoch"], ln["train_nll"], t, consecutive=consecutive),
                            first_reaching(bn["epoch"], bn[rival_nll], t, consecutive=consecutive)) for ln, bn in pairs]
                effects = [race_effect(a, b, int(ln["spec"]["epochs"]) + 1, earliest=1,
                                       resolution=float(GRID_STEPS_RESOLUTION)) for (a, b), (ln, _) in zip(reached, pairs)]
                if all(e is None for e in effects):
                    both_at_once = all(a == 1 and b == 1 for a, b in reached)
                    skipped.append(f"{label} ({'both there at epoch 1' if both_at_once else 'neither reached it'})")
                    continue
                rival_parts.append(compare(label, effects, float(GRID_STEPS_RESOLUTION), "epochs"))
        if rival_parts:
            lead = [p.median for p in rival_parts]
            leads.append(f"over {name} {min(lead):+g} to {max(lead):+g}")
        parts += rival_parts
    if not parts:
        return Verdict("not tested at this profile", "no training-NLL threshold was reached by either variant",
                       f"thresholds {FIG6_THRESHOLDS} not reached: {', '.join(skipped)}")
    head = f"not measurable: {', '.join(skipped)}" if skipped else ""
    return verdict_from_parts(parts, _fig6_seeds(record), f"LN's median lead {', '.join(leads)} epochs", head,
                              planned=len(parts) + len(skipped))


def under_every_pairing(check: Callable[..., Verdict], record: Record, variant: str = "layernorm",
                        kind: str = "main", **options: Any) -> dict[str, int]:
    """How many matchings of seeds give each status of ``check`` (H3 or H4).

    The Figure 6 runs of different variants share a seed *number* only: each run's weights and batch order
    come from a hash of its whole label (:func:`lnlib.experiments.fig6_mnist.run_seed`), so "paired per seed"
    is one arbitrary matching of independent runs. Here the main runs of ``variant`` get every permutation
    of the seed numbers in turn (the other variants keep theirs) and ``check`` is judged for each. ``kind``
    names the runs that move (``"outliers"`` for :func:`s001_outliers`, whose runs are Figure 6 runs: a
    variant's clean and corrupted runs of one seed move together, so its impacts stay paired)."""
    counts: dict[str, int] = {}
    for matched in seed_matchings(record, variant, kind):
        status = check(matched, **options).status
        counts[status] = counts.get(status, 0) + 1
    return counts


def seed_matchings(record: Record, variant: str = "layernorm", kind: str = "main") -> Iterator[Record]:
    """``record`` once per permutation of the seed numbers of ``variant``'s runs of ``kind`` (the identity
    first), the other runs unchanged: every matching of independent runs (:func:`under_every_pairing`)."""
    runs = record["data"]["runs"]
    seeds = sorted({int(log["spec"]["seed"]) for log in runs.values() if log["spec"]["kind"] == kind})
    for order in itertools.permutations(seeds):
        relabel = dict(zip(seeds, order))

        def moved(log: Log) -> Log:
            if log["spec"]["kind"] != kind or log["spec"]["variant"] != variant:
                return log
            return dict(log, spec=dict(log["spec"], seed=relabel[int(log["spec"]["seed"])]))

        yield dict(record, data=dict(record["data"], runs={k: moved(log) for k, log in runs.items()}))


def with_runs(record: Record, logs: dict[str, Log]) -> Record:
    """``record`` with the runs named in ``logs`` (by run key) replaced by those logs, the rest unchanged: a
    verdict judged on it says how much the verdict depends on which training of those runs it reads (such
    as the other training of runs trained twice, :func:`lnlib.experiments.training.other_trainings`)."""
    runs = record["data"]["runs"]
    unknown = sorted(set(logs) - set(runs))
    if unknown:
        raise ValueError(f"logs: {unknown} are not runs of this record; expected keys of record['data']['runs']")
    for key, log in logs.items():
        if log.get("spec") != runs[key].get("spec"):
            raise ValueError(f"logs[{key!r}]: its spec differs from the record's run of that key; expected "
                             "another training of the same run")
    return dict(record, data=dict(record["data"], runs={**runs, **logs}))


def _window_median(log: Log, key: str, epochs: range, transform: Callable[[float], float]) -> float:
    """Median of ``transform(log[key])`` over ``epochs``; ``inf`` if the run has no finite value at one of
    them (it diverged or stopped)."""
    values = [at_epoch(log, key, e) for e in epochs]
    if any(v is None for v in values):
        return math.inf
    return _median([transform(v) for v in values])  # type: ignore[arg-type]  # no None left


def _log(value: float) -> float:
    return math.log(max(value, 1e-300))  # a training NLL that rounds to 0 is tiny, not missing


def small_batch_rates(data: dict[str, Any], variant: str, batch_size: int) -> dict[float, list[Log]]:
    """The runs of ``variant`` at the small ``batch_size`` by learning rate: the main runs (the rate chosen at
    the large batch size) and the control runs at other rates (kind ``lr_small``), seeds in order."""
    rates: dict[float, list[Log]] = {}
    for kind in ("main", "lr_small"):
        for log in select_fig6(data, kind=kind, variant=variant, batch_size=batch_size):
            rates.setdefault(float(log["spec"]["lr"]), []).append(log)
    return {lr: sorted(logs, key=lambda log: log["spec"]["seed"]) for lr, logs in sorted(rates.items())}


def best_small_batch_rate(data: dict[str, Any], variant: str, batch_size: int) -> float | None:
    """The learning rate with the lowest median final *validation* error over the seeds that trained every
    rate of :func:`small_batch_rates` (a diverged run counts as error 1); ``None`` if no seed trained them all."""
    rates = small_batch_rates(data, variant, batch_size)
    common = set.intersection(*(set(seeds_of(logs)) for logs in rates.values())) if rates else set()
    if not common:
        return None

    def final_error(log: Log) -> float:
        return 1.0 if log.get("diverged") or not log["valid_error"] else float(log["valid_error"][-1])

    return min(rates, key=lambda lr: (_median([final_error(seeds_of(rates[lr])[s]) for s in sorted(common)]), lr))


def h3_batch_size_robustness(record: Record, *, small_batch_rate: str = "shared") -> Verdict:
    r"""H3: a small batch hurts layer norm less than batch norm.

    For each variant and seed, the *worsening* at the small batch size against the large one, over the
    last :data:`H3_WINDOW` epochs both were trained for (the median over those epochs, so one noisy epoch
    does not decide): of the training NLL, :math:`\log(\text{NLL}_{small}/\text{NLL}_{large})`, and of the
    test error, :math:`\text{err}_{small}-\text{err}_{large}`; positive means the small batch is worse, and
    a run that diverged is infinitely worse. Two parts per rival of :data:`BN_RIVALS` that the result has,
    per seed the rival's worsening minus LN's: NLL (resolution 0.01) and test error (resolution one test
    case). ``small_batch_rate``: ``"shared"`` judges the main runs (one learning rate, chosen at the large
    batch size, for every run); ``"own best"`` judges each variant at the small batch size at its own best
    rate there (:func:`best_small_batch_rate`; the control of issue 14), and says which."""
    if small_batch_rate not in ("shared", "own best"):
        raise ValueError(f"small_batch_rate must be 'shared' or 'own best', got {small_batch_rate!r}")
    sizes = _main_batch_sizes(record)
    small, large = sizes[-1], sizes[0]
    data = record["data"]
    if small_batch_rate == "own best" and not any(log["spec"]["kind"] == "lr_small" for log in data["runs"].values()):
        return Verdict("not tested at this profile", f"no runs at other batch-{small} learning rates (control c) in "
                                                     f"this result")
    eval_cases = int(record["params"]["eval_cases"])
    worse: dict[str, dict[int, tuple[float, float]]] = {}
    window = range(1, 1)
    rates: list[str] = []
    for variant in ("layernorm",) + tuple(rival for rival, _ in BN_RIVALS):
        worse[variant] = {}
        small_logs = select_fig6(data, kind="main", variant=variant, batch_size=small)
        if small_batch_rate == "own best":
            best = best_small_batch_rate(data, variant, small)
            small_logs = [] if best is None else small_batch_rates(data, variant, small)[best]
            if best is not None:
                rates.append(f"{variant} {best:g}")
        for a, b in paired(small_logs, select_fig6(data, kind="main", variant=variant, batch_size=large)):
            last = min(int(a["spec"]["epochs"]), int(b["spec"]["epochs"]))
            window = range(max(1, last - H3_WINDOW + 1), last + 1)
            nll = _window_median(a, "train_nll", window, _log) - _window_median(b, "train_nll", window, _log)
            err = (_window_median(a, "test_error", window, float)
                   - _window_median(b, "test_error", window, float))
            worse[variant][int(a["spec"]["seed"])] = (math.inf if math.isnan(nll) else nll,
                                                      math.inf if math.isnan(err) else err)
    parts, nll_changes, error_changes, judged_seeds = [], [], [], set()
    for rival, name in BN_RIVALS:
        seeds = sorted(set(worse["layernorm"]) & set(worse[rival]))
        if not seeds:
            continue
        judged_seeds |= set(seeds)
        ln = [worse["layernorm"][s] for s in seeds]
        bn = [worse[rival][s] for s in seeds]
        parts += [compare(f"NLL log ratio batch {small}/{large}, {name} minus LN",
                          [_difference(b[0], a[0]) for a, b in zip(ln, bn)], NLL_LOG_RATIO_RESOLUTION),
                  compare(f"test error batch {small} minus {large}, {name} minus LN",
                          [_difference(b[1], a[1]) for a, b in zip(ln, bn)], 1.0 / eval_cases)]
        if not nll_changes:
            nll_changes.append(f"LN {_median([g[0] for g in ln]):+.2f}")
            error_changes.append(f"LN {100 * _median([g[1] for g in ln]):+.2f}")
        nll_changes.append(f"{name} {_median([g[0] for g in bn]):+.2f}")
        error_changes.append(f"{name} {100 * _median([g[1] for g in bn]):+.2f}")
    if not parts:
        return Verdict("not tested at this profile", f"no seed has both batch sizes {small} and {large} for LN and BN")
    summary = (f"epochs {window.start}-{window.stop - 1}, batch {small} vs {large}: log NLL ratio "
               f"{', '.join(nll_changes)}; error change {', '.join(error_changes)} pts")
    head = f"batch-{small} learning rates: {', '.join(rates)}" if rates else ""
    return verdict_from_parts(parts, len(judged_seeds), summary, head)


# --- Recurrent networks (chapter 8) -------------------------------------------------------------------------

RNN_TASKS = ("seqmnist", "adding")  # the tasks of H8 and H9 (adding_var is H13b's)
#: thresholds for steps-to-threshold (H8): validation error (seqmnist), validation squared error (adding)
RNN_THRESHOLDS = {"seqmnist": (0.5, 0.2, 0.1, 0.05), "adding": (0.1, 0.05, 0.01)}
#: the trivial squared error on the adding problem: predicting the mean 1 of u1 + u2, Var = 2/12
ADDING_TRIVIAL_MSE = 1.0 / 6.0
#: Ties in H9: spans of norms that differ by less than 0.01 decades (2.3 %).
DECADES_RESOLUTION = 0.01
#: Ties in H13: squared errors printed to 4 decimals; closer than 1e-4 is no difference.
MSE_RESOLUTION = 1e-4


def select_rnn(data: dict[str, Any], task: str, variant: str) -> list[Log]:
    """The recurrent logs of one (task, variant), one per seed, in seed order."""
    logs = [log for log in data["runs"].values()
            if log["spec"]["task"] == task and log["spec"]["variant"] == variant]
    return sorted(logs, key=lambda log: log["spec"]["seed"])


def steps_to_reach(log: Log, threshold: float, key: str = "valid", consecutive: int = 1) -> int | None:
    """The first logged step at which ``log[key]`` is at most ``threshold`` (``None``: never); with
    ``consecutive`` ``k``, the first of ``k`` consecutive evaluations there (a run that stopped early, below a
    lower threshold, counts as staying there)."""
    return first_reaching(log["step"], log[key], threshold, consecutive=consecutive,
                          holds_after_end="stopped_at" in log)


def _rnn_seeds(record: Record) -> int:
    return len({log["spec"]["seed"] for log in record["data"]["runs"].values()})


def _h8_parts(record: Record, rival: str, ln: str = "ln_lstm") -> tuple[list[Part], int]:
    """H8's comparisons of the LN cell ``ln`` with ``rival``: one per (task, threshold of the validation
    metric), per seed the rival's steps to reach it minus the LN cell's (never: one evaluation past the
    budget), resolution two evaluation intervals (:data:`GRID_STEPS_RESOLUTION`); and how many were planned
    (thresholds that no run reaches are left out)."""
    d = record["data"]
    parts, planned = [], 0
    for task in RNN_TASKS:
        pairs = paired(select_rnn(d, task, ln), select_rnn(d, task, rival))
        if not pairs:
            continue
        every, budget = int(pairs[0][0]["spec"]["eval_every"]), int(pairs[0][0]["spec"]["steps"])
        for t in RNN_THRESHOLDS[task]:
            planned += 1
            effects = [race_effect(steps_to_reach(a, t), steps_to_reach(b, t), budget + every, earliest=every,
                                   resolution=float(GRID_STEPS_RESOLUTION * every)) for a, b in pairs]
            if all(e is None for e in effects):
                continue
            parts.append(compare(f"{task} vs {rival} <={t:g}", effects, float(GRID_STEPS_RESOLUTION * every),
                                 "steps"))
    return parts, planned


#: H8's paired cells: (LN cell, its un-normalized baseline), the LSTM and the GRU of the paper's §6.1-6.5
H8_CELLS = (("ln_lstm", "lstm"), ("ln_gru", "gru"))


def h8_faster_recurrent_training(record: Record, cells: Sequence[tuple[str, str]] = H8_CELLS) -> Verdict:
    """H8, LN speeds up recurrent training, judged against the paper's baselines, the un-normalized LSTM
    and GRU (``cells``, where trained): one part per (cell, task, threshold of the validation metric), as
    :func:`_h8_parts`. The comparison with the BN-LSTM is reported in the details beside the verdict, not
    judged: the paper's claim is about LN against no normalization."""
    parts, planned = [], 0
    for ln, baseline in cells:
        more, more_planned = _h8_parts(record, baseline, ln)
        parts, planned = parts + more, planned + more_planned
    if not parts:
        return Verdict("not tested at this profile", "no threshold of the validation metric was reached")
    by_task = ", ".join(f"{t} {sum(p.status == 'not reproduced' for p in ps)}/{len(ps)}"
                        for t in RNN_TASKS if (ps := [p for p in parts if p.name.startswith(t)]))
    verdict = verdict_from_parts(parts, _rnn_seeds(record), f"LN not earlier than its baseline at {by_task} "
                                 f"thresholds", planned=planned)
    beside, _ = _h8_parts(record, "bn_lstm")
    if not beside:
        return verdict
    return Verdict(verdict.status, verdict.evidence, f"{verdict.details}; beside the claim, against the BN-LSTM: "
                   + "; ".join(p.describe() for p in beside))


def h9_numbers(log: Log, which: str) -> tuple[float, float]:
    """(decades spanned by |dL/dh_t| over all t, decades spanned by |h_t| over the second half of t)."""
    norms = log[which]
    half = len(norms["h"]) // 2
    return decades(norms["grad_h"]), decades(norms["h"][half:])


def h9_parts(record: Record, ln: str, baseline: str) -> list[Part]:
    """The H9 comparisons of ``ln`` against ``baseline``: one part per (task, before/after training,
    quantity): per seed, the decades spanned by the baseline's norms minus ``ln``'s (quantities:
    |dL/dh_t| over all steps, |h_t| over the second half); resolution 0.01 decades."""
    d = record["data"]
    parts = []
    for task in RNN_TASKS:
        pairs = paired(select_rnn(d, task, ln), select_rnn(d, task, baseline))
        for which, label in (("norms_init", "init"), ("norms_trained", "trained")):
            usable = [(a, b) for a, b in pairs if which in a and which in b]
            if not usable:
                continue
            numbers = [(h9_numbers(a, which), h9_numbers(b, which)) for a, b in usable]
            parts.append(compare(f"{task} {baseline} {label} |dL/dh|", [_difference(b[0], a[0]) for a, b in numbers],
                                 DECADES_RESOLUTION, "decades"))
            parts.append(compare(f"{task} {baseline} {label} |h|", [_difference(b[1], a[1]) for a, b in numbers],
                                 DECADES_RESOLUTION, "decades"))
    return parts


def h9_stable_dynamics(record: Record) -> Verdict:
    """H9, LN stabilizes the hidden-state dynamics, judged on the paper's case (§3.1, eq. 4): the plain tanh
    RNN against the LN-RNN (:func:`h9_parts`). The LSTM against the LN-LSTM is reported beside it in the
    details, not judged: an LSTM's hidden state is bounded by construction, so §3.1's argument (summed
    inputs that grow or shrink) is not about it."""
    parts = h9_parts(record, "ln_rnn", "rnn")
    if not parts:
        return Verdict("not tested at this profile", "the result holds no plain RNN and LN-RNN norms to compare")
    beside = "; ".join(f"[{p.status}] {p.describe()}" for p in h9_parts(record, "ln_lstm", "lstm"))
    verdict = verdict_from_parts(parts, _rnn_seeds(record), "span of norms over time, RNN minus LN-RNN")
    return Verdict(verdict.status, verdict.evidence,
                   verdict.details + (f"; beside it, not judged: LSTM minus LN-LSTM: {beside}" if beside else ""))


def s001_vanishing_gradients(record: Record) -> Verdict:
    r"""S001-vanishing, "LN prevents the vanishing-gradient problem": how many decades the loss gradient
    loses from the last time step back to the first, :math:`\log_{10}(|\partial L/\partial h_T| /
    |\partial L/\partial h_1|)`, before and after training. One part per (task, cell, before/after) for
    each normalized cell and its plain twin in the result (LN-LSTM and LSTM; LN-RNN and tanh RNN): per
    seed the plain cell's loss minus the normalized one's, resolution 0.01 decades. A gradient that
    *grows* backwards in time loses a negative number of decades: exploding is not vanishing."""
    d = record["data"]

    def lost(log: Log, which: str) -> float:
        grads = log[which]["grad_h"]
        first, last = grads[0], grads[-1]
        if first is None or last is None or not (math.isfinite(first) and math.isfinite(last)) or last <= 0:
            return math.nan
        return math.inf if first <= 0 else math.log10(last / first)

    parts = []
    for task in RNN_TASKS:
        for normalized, plain in (("ln_lstm", "lstm"), ("ln_rnn", "rnn")):
            pairs = paired(select_rnn(d, task, normalized), select_rnn(d, task, plain))
            for which, label in (("norms_init", "init"), ("norms_trained", "trained")):
                usable = [(a, b) for a, b in pairs if which in a and which in b]
                if usable:
                    parts.append(compare(f"{task} {plain} {label}",
                                         [_difference(lost(b, which), lost(a, which)) for a, b in usable],
                                         DECADES_RESOLUTION, "decades"))
    if not parts:
        return Verdict("not tested at this profile", "the result holds no gradient norms of a cell and its LN twin")
    against = [p.name for p in parts if p.status == "not reproduced"]
    return verdict_from_parts(parts, _rnn_seeds(record), "LN loses fewer decades of gradient"
                              + (f" except: {', '.join(against)}" if against else " in every comparison"))


def s003_placement(record: Record) -> Verdict:
    """S003-placement, "LN after LSTM layers speeds up training and reduces the sensitivity to
    initialization": the speed half is H8 against the LSTM; the initialization half is not tested here,
    so the claim is at most partly reproduced."""
    speed = h8_faster_recurrent_training(record, cells=(("ln_lstm", "lstm"),))  # the LSTM half of H8
    if speed.status not in JUDGED:
        return speed
    status = "partly reproduced" if speed.status == "reproduced" else speed.status
    return Verdict(status, f"speed half only, as H8: {speed.status}; the sensitivity to initialization is not "
                           f"tested here", speed.details)


def final_valid_error(log: Log) -> float:
    """The validation error at the end of training on the final validation set; ``inf`` if the run diverged
    (a run that failed is as bad as can be)."""
    if log.get("diverged") or "final_valid" not in log:
        return math.inf
    value = log["final_valid"]["error"]
    return math.inf if value is None or not math.isfinite(value) else float(value)


def h12_gain_insensitivity(record: Record) -> Verdict:
    """H12 on sequential MNIST, final validation error: (a) the paper's observation, the LN-LSTM with gain
    1.0 better than with 0.1 (per seed, error at 0.1 minus error at 1.0); (b) "insensitive unlike recurrent
    BN": the LN-LSTM's change between the two gains smaller than the BN-LSTM's (per seed, |change BN| minus
    |change LN|). Resolution one validation case."""
    d = record["data"]
    runs = {v: seeds_of(select_rnn(d, "seqmnist", v)) for v in ("ln_lstm", "ln_lstm_gain0.1", "bn_lstm",
                                                                 "bn_lstm_gain1")}
    seeds = sorted(set.intersection(*(set(r) for r in runs.values())))
    if not seeds:
        return Verdict("not tested at this profile", "the result lacks one of the four gain variants on sequential MNIST")
    err = {v: [final_valid_error(runs[v][s]) for s in seeds] for v in runs}
    resolution = 1.0 / int(runs["ln_lstm"][seeds[0]]["spec"]["final_valid_cases"])
    ln_change = [_difference(a, b) for a, b in zip(err["ln_lstm_gain0.1"], err["ln_lstm"])]
    bn_change = [_difference(a, b) for a, b in zip(err["bn_lstm"], err["bn_lstm_gain1"])]
    parts = [compare("(a) LN gain 0.1 minus gain 1.0", ln_change, resolution),
             compare("(b) |BN change| minus |LN change|",
                     [None if a is None or b is None else abs(b) - abs(a) for a, b in zip(ln_change, bn_change)],
                     resolution)]

    def pct(values: list[float]) -> str:
        return f"{100 * float(np.median(values)):.2f}"

    summary = (f"final valid error % LN g1 {pct(err['ln_lstm'])}, g0.1 {pct(err['ln_lstm_gain0.1'])}; "
               f"BN g0.1 {pct(err['bn_lstm'])}, g1 {pct(err['bn_lstm_gain1'])}")
    return verdict_from_parts(parts, len(seeds), summary)


def mse_at(log: Log, i: int, key: str = "test_mse") -> float:
    """The squared error at the ``i``-th test length (``inf`` if it was not finite)."""
    value = log[key][i]
    return math.inf if value is None else float(value)


def h13a_missing_statistics(record: Record) -> Verdict:
    """H13a, what §3.1 argues: a BN-LSTM trained at one length ``T`` lacks statistics for the steps beyond
    it. On the adding problem, at every test length beyond ``T``: per seed, the BN-LSTM's squared error with
    the last trained step's statistics reused minus its error with statistics matched to the test length, less
    that same difference at the training length ``T`` (where no statistics are missing). Resolution 1e-4."""
    logs = [log for log in select_rnn(record["data"], "adding", "bn_lstm") if log.get("test_mse_matched")]
    if not logs:
        return Verdict("not tested at this profile", "the result has no BN-LSTM length evaluation on the adding problem")
    lengths = logs[0]["lengths"]
    # reused and matched statistics differ a little at the training length already (running averages over
    # changing weights vs one batch's statistics): that per-seed difference is subtracted
    def excess(log: Log, i: int) -> Effect:
        beyond = _difference(mse_at(log, i), mse_at(log, i, "test_mse_matched"))
        at_training_length = _difference(mse_at(log, 0), mse_at(log, 0, "test_mse_matched"))
        return None if beyond is None or at_training_length is None else _difference(beyond, at_training_length)

    parts = [compare(f"T={length} reused minus matched, beyond the difference at T={lengths[0]}",
                     [excess(log, i) for log in logs], MSE_RESOLUTION)
             for i, length in enumerate(lengths[1:], start=1)]
    last = len(lengths) - 1
    summary = (f"BN-LSTM at T={lengths[-1]} (trained {lengths[0]}): median MSE reused statistics "
               f"{np.median([mse_at(g, last) for g in logs]):.3f}, matched "
               f"{np.median([mse_at(g, last, 'test_mse_matched') for g in logs]):.3f}")
    return verdict_from_parts(parts, len(logs), summary)


def h13b_longer_sequences(record: Record) -> Verdict:
    """H13b, what a reader takes the claim to mean: trained on lengths up to ``T`` (variable lengths, both
    markers within a fixed horizon, task ``adding_var``), at every test length beyond ``T``: (i) the LN-LSTM
    explains at least half the variance (per seed, half the trivial 1/6 minus its squared error); (ii) its
    squared error below the BN-LSTM's (per seed, BN minus LN). Resolution 1e-4. The LSTM is in the details."""
    d = record["data"]
    pairs = [(a, b) for a, b in paired(select_rnn(d, "adding_var", "ln_lstm"), select_rnn(d, "adding_var", "bn_lstm"))
             if "test_mse" in a and "test_mse" in b]
    if not pairs:
        return Verdict("not tested at this profile", "the result has no variable-length adding runs of LN and BN")
    lengths = pairs[0][0]["lengths"]
    parts = []
    for i, length in enumerate(lengths[1:], start=1):
        parts.append(compare(f"(i) T={length} LN below half trivial",
                             [ADDING_TRIVIAL_MSE / 2 - mse_at(a, i) for a, _ in pairs], MSE_RESOLUTION))
        parts.append(compare(f"(ii) T={length} BN minus LN",
                             [_difference(mse_at(b, i), mse_at(a, i)) for a, b in pairs], MSE_RESOLUTION))
    last = len(lengths) - 1
    lstm = [log for log in select_rnn(d, "adding_var", "lstm") if "test_mse" in log]
    summary = (f"T={lengths[-1]} (trained <= {lengths[0]}): median MSE LN {np.median([mse_at(a, last) for a, _ in pairs]):.3f}"
               f", BN {np.median([mse_at(b, last) for _, b in pairs]):.3f}, trivial {ADDING_TRIVIAL_MSE:.3f}")
    head = (f"LSTM median MSE {np.median([mse_at(g, last) for g in lstm]):.3f} at T={lengths[-1]}" if lstm else "")
    if lstm:  # in the ledger line too, so that LN's lead over BN is not read as a lead over no normalization
        summary += f", LSTM {np.median([mse_at(g, last) for g in lstm]):.3f}"
    return verdict_from_parts(parts, len(pairs), summary, head)


#: H11's proxy comparisons: (task, LN variant, baseline)
H11_PAIRS = tuple((task, ln, base) for task in ("seqmnist", "adding", "adding_var")
                  for ln, base in (("ln_lstm", "lstm"), ("ln_rnn", "rnn"), ("ln_gru", "gru")))


def final_test_metric(log: Log) -> float:
    """The test-set metric at the end of training: error rate (sequential MNIST) or squared error at the
    training length (adding tasks); ``inf`` for a run that diverged or lacks it."""
    if log.get("diverged"):
        return math.inf
    if log["spec"]["task"] == "seqmnist":
        value = log.get("test", {}).get("error")
    else:
        value = log["test_mse"][0] if log.get("test_mse") else None
    return math.inf if value is None or not math.isfinite(value) else float(value)


def _rnn_resolution(task: str, log: Log) -> float:
    """The resolution of a recurrent task's final test metric: one test case for an error rate, else
    :data:`MSE_RESOLUTION`."""
    return 1.0 / int(log["spec"]["test_cases"]) if task == "seqmnist" else MSE_RESOLUTION


def h11_generalization_proxy(record: Record) -> Verdict:
    """H11, as a proxy only (the paper's tasks are out of reach): on every recurrent task here, per seed,
    the baseline's final test metric minus the LN cell's (LSTM vs LN-LSTM, RNN vs LN-RNN, GRU vs LN-GRU,
    where trained). Resolution: one test case for error rates, 1e-4 for squared errors."""
    d = record["data"]
    parts = []
    for task, ln, base in H11_PAIRS:
        pairs = paired(select_rnn(d, task, ln), select_rnn(d, task, base))
        if not pairs:
            continue
        resolution = _rnn_resolution(task, pairs[0][0])
        parts.append(compare(f"{task} {base} minus {ln}",
                             [_difference(final_test_metric(b), final_test_metric(a)) for a, b in pairs], resolution))
    if not parts:
        return Verdict("not tested at this profile", "the result holds no LN and baseline runs to compare")
    return verdict_from_parts(parts, _rnn_seeds(record), "proxy: test metrics of small tasks, not the paper's")


#: A speed-up of the H10 grid, in octaves, and what it is: measured, or a bound because a run never reached
#: the threshold within its budget (the LSTM: the speed-up is at least this; the LN-LSTM: at most)
Speedup = tuple[float, str]  # (log2 speed-up, "exact" | "at least" | "at most")


def grid_speedup(lstm: Log, ln: Log, threshold: float, consecutive: int = 1) -> Speedup | None:
    """One seed's speed-up of the LN-LSTM over the LSTM in one cell of the H10 grid: ``log2`` of the steps the
    LSTM needs to bring the validation squared error to ``threshold`` over the steps the LN-LSTM needs. A run
    that never gets there counts as one point of the geometric evaluation grid past its budget, which makes
    the speed-up a bound; ``None`` if neither run gets there. ``consecutive``: as :func:`steps_to_reach`."""
    first = steps_to_reach(lstm, threshold, consecutive=consecutive)
    second = steps_to_reach(ln, threshold, consecutive=consecutive)
    if first is None and second is None:
        return None
    past_budget = int(lstm["spec"]["steps"]) * 2.0 ** (1.0 / int(lstm["spec"]["evals_per_octave"]))
    # a run below the threshold at the first evaluation got there at some step up to it: an upper bound
    earliest = int(lstm["spec"]["eval_every"])
    kind = "exact"
    if first is None or second == earliest:
        kind = "at least"
    if second is None or first == earliest:
        kind = "at most" if kind == "exact" else "unknown"
    if kind == "unknown":
        return None
    return math.log2((first or past_budget) / (second or past_budget)), kind


def grid_speedups(record: Record, threshold: float, consecutive: int = 1,
                  baseline: str = "lstm") -> dict[tuple[int, int], dict[int, Speedup | None]]:
    """Every cell ``(length, batch size)`` of the H10 grid -> seed -> :func:`grid_speedup` of the LN-LSTM over
    ``baseline`` (the cells and seeds where both were trained)."""
    cells: dict[tuple[int, int], dict[str, list[Log]]] = {}
    for log in record["data"]["runs"].values():
        spec = log["spec"]
        cells.setdefault((int(spec["length"]), int(spec["batch_size"])), {}).setdefault(spec["variant"], []).append(log)
    return {cell: {int(a["spec"]["seed"]): grid_speedup(a, b, threshold, consecutive)
                   for a, b in paired(by.get(baseline, []), by.get("ln_lstm", []))}
            for cell, by in sorted(cells.items()) if by.get(baseline) and by.get("ln_lstm")}


def _larger_speedup(larger: Speedup | None, smaller: Speedup | None, resolution: float) -> Effect:
    """``larger - smaller`` in octaves, the claimed-positive effect. A bound is used only where it makes the
    effect a lower bound (the claimed-larger speed-up "at least", the other "at most"), and only if that
    lower bound is at least the resolution: a lower bound below it says nothing either way. Else ``None``."""
    if larger is None or smaller is None or larger[1] == "at most" or smaller[1] == "at least":
        return None
    lower_bound = larger[1] != "exact" or smaller[1] != "exact"
    return _unless_uninformative(larger[0] - smaller[0], lower_bound, resolution)


def h10_long_sequences_small_batches(record: Record, threshold: float | None = None, consecutive: int = 1,
                                     baseline: str = "lstm") -> Verdict:
    """H10, the benefit of LN is largest for long sequences and small mini-batches: on the grid of the
    ``rnn_grid`` experiment, per seed, the LN-LSTM's speed-up over the LSTM (:func:`grid_speedup`, at the
    profile's judged threshold unless ``threshold`` is given) at the longest length minus that at the shortest
    (one part per batch size), and at the smallest batch minus that at the largest (one part per length).
    Resolution: two points of the geometric evaluation grid, ``2 / evals_per_octave`` octaves.
    ``consecutive``: a threshold counts as reached at the first of that many evaluations below it.
    ``baseline``: the un-normalized cell (``"lstm_fb1"``: the control with a forget-gate bias of 1)."""
    params = record["params"]
    threshold = float(params["judged_threshold"] if threshold is None else threshold)
    speedups = grid_speedups(record, threshold, consecutive, baseline)
    if not speedups:
        return Verdict("not tested at this profile", "the result has no LSTM and LN-LSTM runs on the grid")
    lengths = sorted({t for t, _ in speedups})
    batches = sorted({b for _, b in speedups})
    resolution = 2.0 / int(params["evals_per_octave"])
    seeds = sorted({s for by_seed in speedups.values() for s in by_seed})

    def part(name: str, larger: tuple[int, int], smaller: tuple[int, int]) -> Part:
        big, small = speedups.get(larger, {}), speedups.get(smaller, {})
        return compare(name, [_larger_speedup(big.get(s), small.get(s), resolution) for s in seeds], resolution,
                       "octaves")

    parts = [part(f"B={b}: T={lengths[-1]} minus T={lengths[0]}", (lengths[-1], b), (lengths[0], b)) for b in batches]
    parts += [part(f"T={t}: B={batches[0]} minus B={batches[-1]}", (t, batches[0]), (t, batches[-1])) for t in lengths]

    def corner(cell: tuple[int, int]) -> str:
        values = [v for v in speedups.get(cell, {}).values() if v is not None]
        if not values:
            return "none"
        bounds = [k for _, k in values if k != "exact"]
        sign = "" if not bounds else ">=" if all(k == "at least" for k in bounds) else "~"
        detail = f" ({len(bounds)} of {len(values)} bounds)" if bounds else ""
        return f"{sign}x{2 ** float(np.median([v for v, _ in values])):.3g}{detail}"

    if not any(p.status in JUDGED for p in parts):
        return Verdict("not tested at this profile", f"no cell pair of the grid where both runs reached validation "
                       f"MSE <= {threshold:g} in a seed")
    summary = (f"median speed-up {corner((lengths[-1], batches[0]))} at T={lengths[-1]},B={batches[0]}, "
               f"{corner((lengths[0], batches[-1]))} at T={lengths[0]},B={batches[-1]}")
    head = (f"{baseline} steps / LN-LSTM steps to validation MSE <= {threshold:g}, in octaves (log2); "
            f"resolution {resolution:g}")
    return verdict_from_parts(parts, len(seeds), summary, head)


# --- Convolutional networks, outliers, DRAW, generalization (chapters 10, 11, 17) ----------------------------

#: The last epochs a final test metric is taken over (median), so that one noisy epoch does not decide.
FINAL_WINDOW = 2
#: Ties in a comparison of DRAW bounds: the bound is evaluated with one posterior sample per test image, so
#: it is noisy. Four evaluations of the same cpu-profile checkpoint (10,000 test images) with other noise
#: (scripts/draw_evaluation_noise.py) spanned 0.19 nats (baseline, seed 0, epoch 3), 0.05 (LN, seed 0,
#: epoch 3), 0.26 (LN, seed 2, epoch 6) and 0.02 (a collapsed baseline): about twice the largest, 0.5 nats,
#: is the smallest difference that counts.
NATS_RESOLUTION = 0.5


def _final(log: Log, key: str, window: int = FINAL_WINDOW) -> float:
    """The median of ``log[key]`` over its last ``window`` epochs; ``inf`` for a diverged or empty run."""
    values = [v for v in log[key][-window:]]
    if log.get("diverged") or not values or any(v is None or not math.isfinite(v) for v in values):
        return math.inf
    return _median([float(v) for v in values])


def select(data: dict[str, Any], **spec: Any) -> list[Log]:
    """The logs whose spec has every given ``key=value`` (nested ``outliers`` entries as ``definition``,
    ``rate``), in seed order."""
    def has(log: Log) -> bool:
        s = dict(log["spec"], **log["spec"].get("outliers", {}))
        return all(s.get(k) == v for k, v in spec.items())
    return sorted((log for log in data["runs"].values() if has(log)), key=lambda log: log["spec"]["seed"])


def _seeds(data: dict[str, Any]) -> int:
    return len({log["spec"]["seed"] for log in data["runs"].values()})


def _h14_logs(record: Record) -> tuple[list[Log], list[Log], list[Log]]:
    """The convnet runs of no normalization, the paper's layer norm (over C, H, W) and batch norm."""
    return tuple(select(record["data"], variant=v) for v in ("none", "layernorm_chw", "batchnorm"))  # type: ignore[return-value]


def _h14_summary(record: Record) -> str:
    errors = {name: _median([_final(log, "test_error") for log in logs]) for name, logs in
              zip(("none", "LN", "BN"), _h14_logs(record)) if logs}
    return "final test error " + ", ".join(f"{k} {100 * v:.2f}%" for k, v in errors.items())


def h14a_ln_beats_none(record: Record) -> Verdict:
    r"""H14a: in a convolutional network layer norm (over each layer's channels and positions,
    ``layernorm_chw``) "offers a speedup over the baseline model without normalization".

    Per seed, :math:`\log(\text{NLL}_{none}/\text{NLL}_{LN})` of the training NLL at the first epoch, the
    middle one and the last (resolution :data:`NLL_LOG_RATIO_RESOLUTION`)."""
    epochs = int(record["params"]["epochs"])
    none, ln, _ = _h14_logs(record)
    parts = [compare(f"LN faster than none: training NLL log ratio at epoch {epoch}",
                     [_log_ratio(a, b, epoch) for a, b in paired(none, ln)], NLL_LOG_RATIO_RESOLUTION)
             for epoch in sorted({1, (epochs + 1) // 2, epochs})]
    return verdict_from_parts(parts, _seeds(record["data"]), _h14_summary(record))


def h14b_bn_beats_ln(record: Record) -> Verdict:
    """H14b: in a convolutional network "batch normalization outperforms" layer norm.

    Per seed, LN's final test error minus BN's (the median over the last :data:`FINAL_WINDOW` epochs;
    resolution one test case), and the log ratio of their training NLL at the last epoch."""
    epochs = int(record["params"]["epochs"])
    cases = int(record["params"]["eval_cases"])
    _, ln, bn = _h14_logs(record)
    parts = [compare("BN beats LN: final test error, LN minus BN",
                     [_difference(_final(a, "test_error"), _final(b, "test_error")) for a, b in paired(ln, bn)],
                     1.0 / cases),
             compare(f"BN beats LN: training NLL log ratio at epoch {epochs}",
                     [_log_ratio(a, b, epochs) for a, b in paired(ln, bn)], NLL_LOG_RATIO_RESOLUTION)]
    return verdict_from_parts(parts, _seeds(record["data"]), _h14_summary(record))


def _log_ratio(a: Log, b: Log, epoch: int) -> Effect:
    """``log(a/b)`` of the training NLL at ``epoch``: positive when ``b`` is lower; ``None`` if either is missing."""
    x, y = at_epoch(a, "train_nll", epoch), at_epoch(b, "train_nll", epoch)
    return None if x is None or y is None else _log(x) - _log(y)


def s001_outliers(record: Record, *, batch_norm_statistics: str = "training set",
                  window: int = FINAL_WINDOW) -> Verdict:
    """S001-outliers: layer norm "reduces the impact of outliers" in the training data.

    A variant's *impact* at a corruption and rate is its final test error there minus its final test error
    on clean data, per seed (the runs are paired: same weights and batches). One part per (definition,
    rate, rival): per seed the rival's impact minus LN's (positive: LN is hurt less), resolution one test
    case; rivals the baseline and batch norm.

    ``batch_norm_statistics="clean images"`` is a control: batch norm's corrupted runs are measured with
    population statistics recomputed on the clean training images (``log["clean_statistics"]``, after the
    last epoch, against the clean run's last epoch), so that its impact counts what the corruption did to
    the weights, not to the test-time statistics. ``window``: the last epochs the final test error is the
    median of (a sensitivity check)."""
    if batch_norm_statistics not in ("training set", "clean images"):
        raise ValueError(f"batch_norm_statistics must be 'training set' or 'clean images', "
                         f"got {batch_norm_statistics!r}")
    data = record["data"]
    cases = int(record["params"]["eval_cases"])
    parts, impacts = [], []
    clean = {v: seeds_of(select(data, variant=v, rate=0.0)) for v in ("baseline", "batchnorm", "layernorm")}

    def error(log: Log, variant: str, corrupted: bool) -> float:
        if variant == "batchnorm" and batch_norm_statistics == "clean images":  # the last epoch, as measured
            return log["clean_statistics"]["test_error"] if corrupted else log["test_error"][-1]
        return _final(log, "test_error", window)

    def impact(variant: str, definition: str, rate: float) -> dict[int, float]:
        return {s: error(log, variant, True) - error(clean[variant][s], variant, False)
                for s, log in seeds_of(select(data, variant=variant, definition=definition, rate=rate)).items()
                if s in clean[variant]}

    rates = sorted({float(log["spec"]["outliers"]["rate"]) for log in data["runs"].values()} - {0.0})
    definitions = sorted({log["spec"]["outliers"]["definition"] for log in data["runs"].values()} - {"none"})
    for definition in definitions:
        for rate in rates:
            ln = impact("layernorm", definition, rate)
            impacts.append(f"{definition} {100 * rate:g}%: LN {100 * _median(list(ln.values())):+.2f}"
                           if ln else f"{definition} {100 * rate:g}%: LN -")
            for rival, name in (("baseline", "none"), ("batchnorm", "BN")):
                other = impact(rival, definition, rate)
                common = sorted(set(ln) & set(other))
                parts.append(compare(f"{definition} {100 * rate:g}%: impact {name} minus LN",
                                     [_difference(other[s], ln[s]) for s in common], 1.0 / cases))
                impacts[-1] += f", {name} {100 * _median([other[s] for s in common]):+.2f}" if common else ""
    return verdict_from_parts(parts, _seeds(data), "test-error change (pts) " + "; ".join(impacts))


def _bounds(log: Log, split: str = "test") -> list[float]:
    return [float(b["bound"]) for b in log[split]]


#: H15a's reading of "almost twice as fast": LN reaches the baseline's bound in at most 1/1.5 of its epochs.
ALMOST_TWICE = 1.5


def h15_draw_speed(record: Record) -> Verdict:
    r"""H15a: DRAW with LN "converges almost twice as fast".

    Per seed: the baseline's test bound at the profile's last epoch :math:`E` is the target; LN's first
    epoch :math:`e` with a bound at most that target gives the speed-up :math:`\log_2(E/e)` (a run that never
    gets there: none). Two parts, both at resolution :math:`\log_2(E/(E-2))` (two epochs): *faster*, the
    speed-up itself (the direction), and *almost twice as fast*, the speed-up minus
    :math:`\log_2` :data:`ALMOST_TWICE` (the size). The summary gives the median factor :math:`E/e`."""
    data = record["data"]
    pairs = paired(select(data, variant="baseline"), select(data, variant="layernorm"))
    epochs = int(record["params"]["epochs"])
    effects: list[Effect] = []
    for base, ln in pairs:
        target = _bounds(base)[-1]
        reach = first_reaching(ln["epoch"], _bounds(ln), target)
        effects.append(None if reach is None else math.log2(epochs / reach))
    resolution = math.log2(epochs / max(epochs - 2, 1))
    faster = compare(f"LN faster: log2 speed-up to the baseline's epoch-{epochs} test bound", effects, resolution,
                     "octaves")
    twice = compare(f"almost twice as fast: log2 speed-up minus log2({ALMOST_TWICE:g})",
                    [None if e is None else e - math.log2(ALMOST_TWICE) for e in effects], resolution, "octaves")
    factor = (f"median factor x{2 ** faster.median:.2f} (paper: almost 2), to the baseline's epoch-{epochs} bound"
              if faster.effects else "LN never got there")
    return verdict_from_parts([faster, twice], len(pairs), factor)


def h15_draw_final_bound(record: Record) -> Verdict:
    """H15b: DRAW with LN reaches a better (lower) test bound at the end of training. The paper compares
    models after 200 epochs; here the bound is taken at the profile's last epoch (the median over the last
    :data:`FINAL_WINDOW`), which at the cpu profile (20 epochs) is a proxy: the models are still improving.
    Per seed the baseline's bound minus LN's, resolution :data:`NATS_RESOLUTION`."""
    data = record["data"]
    epochs = int(record["params"]["epochs"])
    pairs = paired(select(data, variant="baseline"), select(data, variant="layernorm"))
    final = [(_median(_bounds(b)[-FINAL_WINDOW:]), _median(_bounds(ln)[-FINAL_WINDOW:])) for b, ln in pairs]
    part = compare(f"test bound at the profile's last epoch ({epochs}), baseline minus LN",
                   [b - ln for b, ln in final], NATS_RESOLUTION, "nats")
    summary = (f"after {epochs} epochs: baseline {_median([b for b, _ in final]):.2f}, LN "
               f"{_median([ln for _, ln in final]):.2f} nats (paper, 200 epochs: 82.36, 82.09)") if final else ""
    return verdict_from_parts([part], len(pairs), summary)


#: S001-generalization's feed-forward, convolutional and generative settings: (result, label, LN variant,
#: baseline variant, selection). The recurrent settings are every pair of :data:`H11_PAIRS` the rnn result
#: holds (the same comparisons as H11's proxy).
GENERALIZATION_SETTINGS: tuple[tuple[str, str, str, str, dict[str, Any]], ...] = (
    ("fig6_mnist", "MLP batch 128, test error", "layernorm", "baseline", {"kind": "main", "batch_size": 128}),
    ("fig6_mnist", "MLP batch 4, test error", "layernorm", "baseline", {"kind": "main", "batch_size": 4}),
    ("convnet", "CNN, test error", "layernorm_chw", "none", {}),
    ("draw", "DRAW, test bound (nats)", "layernorm", "baseline", {}),
)
RNN_TASK_NAMES = {"seqmnist": "seq. MNIST", "adding": "adding", "adding_var": "variable-length adding"}


def test_metric(result: str, log: Log) -> float:
    """The final test metric of one run of ``result`` (lower is better): test error, test MSE or bound."""
    if result in ("fig6_mnist", "convnet"):
        return _final(log, "test_error")
    if result == "rnn":
        return final_test_metric(log)
    if result == "draw":
        return _median(_bounds(log)[-FINAL_WINDOW:])
    raise ValueError(f"result must be one of fig6_mnist, convnet, rnn, draw; got {result!r}")


def _generalization_comparisons(records: dict[str, Record]) -> list[tuple[str, str, list[tuple[Log, Log]], float]]:
    """(result, label, [(baseline log, LN log) per seed], resolution) for every setting the records hold;
    the resolution is one test case for error rates, :data:`MSE_RESOLUTION` for squared errors and
    :data:`NATS_RESOLUTION` for bounds."""
    out = []
    for result, label, ln, base, where in GENERALIZATION_SETTINGS:
        if result in records:
            data = records[result]["data"]
            pairs = paired(select(data, variant=base, **where), select(data, variant=ln, **where))
            resolution = NATS_RESOLUTION if result == "draw" else 1.0 / int(records[result]["params"]["eval_cases"])
            out.append((result, label, pairs, resolution))
    if "rnn" in records:
        data = records["rnn"]["data"]
        for task, ln, base in H11_PAIRS:
            pairs = paired(select_rnn(data, task, base), select_rnn(data, task, ln))
            if pairs:
                metric = "test error" if task == "seqmnist" else "test MSE at the training length"
                resolution = _rnn_resolution(task, pairs[0][0])
                out.append(("rnn", f"{RNN_TASK_NAMES[task]} {base.upper()}, {metric}", pairs, resolution))
    return out


def generalization_parts(records: dict[str, Record]) -> list[Part]:
    """One part per setting (:func:`_generalization_comparisons`) with paired runs: per seed the baseline's
    final test metric minus LN's (positive: LN is better on unseen data), at the setting's resolution."""
    return [compare(label, [_difference(test_metric(result, b), test_metric(result, a)) for b, a in pairs],
                    resolution)
            for result, label, pairs, resolution in _generalization_comparisons(records) if pairs]


def s001_generalization(records: dict[str, Record]) -> Verdict:
    """S001-generalization: layer norm "improves generalization", judged where the book has a test set.

    The parts of :func:`generalization_parts`; the summary counts the settings in which LN helps (the
    part's median at least the resolution), hurts (at most minus it) or ties."""
    parts = generalization_parts(records)
    if not parts:
        return Verdict("not tested at this profile", "none of the results with a test set exists at this profile")
    helps = sum(p.median >= _at_least(p.resolution) for p in parts)
    hurts = sum(p.median <= -_at_least(p.resolution) for p in parts)
    ties = sum(abs(p.median) < _at_least(p.resolution) for p in parts)  # a part without effects is none of them
    seeds = min(len(p.effects) for p in parts)
    return verdict_from_parts(parts, seeds, f"LN helps in {helps}, hurts in {hurts}, ties in {ties} of "
                                            f"{len(parts)} settings")


# ---------------------------------------------------------------------------------------------------------
# Exact measurements (no training, no seeds to pool): each check holds or it does not


def _largest(values: Sequence[float | None]) -> float:
    finite = _finite(values)
    if not finite:
        raise ValueError("no finite measurement to judge")
    return max(finite)


def h1_same_computation_in_training_and_test(record: Record) -> Verdict:
    """H1: layer norm computes the same function in training and evaluation mode; batch norm does not."""
    d = record["data"]
    ln = _largest(d["layer_norm_network"]["mode_change"])
    bn = _finite(d["batch_norm_network"]["mode_change"])
    if not bn:
        raise ValueError("no finite batch-norm measurement to judge")
    checks = [ln == 0.0, min(bn) > 1e-3]
    return Verdict(status_of(checks),
                   f"largest change of a network's logits from training to evaluation mode: LN {ln:.1e} "
                   f"({'none' if checks[0] else 'changes'}), BN {min(bn):.2f} to {max(bn):.2f}",
                   f"batch sizes 2 to {max(d['batch_sizes'])}; LN unchanged: {checks[0]}, BN changes by more than "
                   f"1e-3: {checks[1]}")


def h2_no_batch_size_constraint(record: Record) -> Verdict:
    """H2: a case's layer-normalized values do not depend on the batch, down to batch size 1."""
    d = record["data"]
    only = d["normalization_only"]
    ln = max(_largest(only["layer_norm_float32"]), _largest(only["layer_norm_float64"]))
    network = _largest(d["layer_norm_network"]["train_vs_online"])
    checks = [ln == 0.0, network < 1e-5]
    return Verdict(status_of(checks),
                   f"change between batch sizes 1 and {max(d['batch_sizes'])}: LN values {ln:.1e}, network logits "
                   f"{network:.1e} (below 1e-5: {checks[1]})",
                   "the network's logits differ only through the float32 matrix product's summation order")


def h5_table_1(record: Record, tolerance: float = 1e-9) -> Verdict:
    """H5: the invariance table (Table 1), every cell measured with eps = 0 (invariant: change <= 1e-9)."""
    d = record["data"]
    changes = d["change"]["eps_zero"]
    agree = total = 0
    for method, row in zip(d["methods"], changes):
        if method in d["paper_table"]:
            for cell, paper in zip(row, d["paper_table"][method]):
                total += 1
                agree += (cell <= tolerance) == paper
    if not total:
        raise ValueError("the result holds no cell of the paper's table")
    invariant = [c for row in changes for c in row if c <= tolerance]
    variant = [c for row in changes for c in row if c > tolerance]
    status = "reproduced" if agree == total else ("partly reproduced" if agree else "not reproduced")
    wn = changes[d["methods"].index("weight norm")][d["transformations"].index("dataset re-scaling")]
    wn_word = "is not" if wn > tolerance else "is"
    return Verdict(status, f"{agree} of {total} cells agree (invariant cells change <= {max(invariant, default=0):.0e}, "
                           f"others >= {min(variant, default=math.inf):.2f})",
                   f"weight norm changes by {wn:.1f} under dataset re-scaling: it {wn_word} invariant to it")


def h6_implicit_learning_rate(record: Record) -> Verdict:
    """H6, three parts for doubling a normalized weight block: the output unchanged (< 1e-10), the gradient
    scaled by 1/2, and the curvature of a fixed step (Fisher quadratic form) scaled by the paper's 1/2."""
    d = record["data"]
    i = min(range(len(d["scales"])), key=lambda j: abs(d["scales"][j] - 2.0))
    if d["scales"][i] != 2.0:
        raise ValueError(f"the result has no weight scale 2 (scales {d['scales']})")
    rows = list(d["rescaling"].values())
    grad = [r["gradient_ratio"][i] for r in rows]
    fisher = [r["fisher_fixed_ratio"][i] for r in rows]
    out = max(max(r["output_change"]) for r in rows)
    checks = [out < 1e-10, all(abs(g - 0.5) < 1e-6 for g in grad), all(abs(f - 0.5) < 1e-6 for f in fisher)]

    def word(ok: bool) -> str:
        return "as claimed" if ok else "not as claimed"

    return Verdict(status_of(checks),
                   f"doubling a normalized weight vector: output change at most {out:.0e} (any scale factor); "
                   f"gradient x{np.median(grad):.4f} "
                   f"({word(checks[1])} 1/2); curvature x{np.median(fisher):.4f} ({word(checks[2])} 1/2)",
                   f"over {', '.join(d['rescaling'])}: gradient factors {min(grad):.4f} to {max(grad):.4f}, curvature "
                   f"factors {min(fisher):.4f} to {max(fisher):.4f}")


def h7_gain_metric(record: Record) -> Verdict:
    """H7: the KL metric of the gains does not depend on the input scale under BN and LN (within 1e-9);
    for a plain GLM it does (changes more than 2x)."""
    d = record["data"]
    gains = d["gains"]
    normalized = max(abs(v - 1.0) for m in ("batch norm", "layer norm") for v in gains[m])
    plain = max(gains["plain GLM"])
    checks = [normalized < 1e-9, plain > 2.0]
    return Verdict(status_of(checks),
                   f"gain metric over input scales {min(d['input_scales']):g}x-{max(d['input_scales']):g}x: BN/LN "
                   f"within {normalized:.0e} of constant; plain GLM up to {plain:.1f}x",
                   f"weight norm up to {max(gains['weight norm']):.1f}x")


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def s001_epsilon_quiz(record: Record) -> Verdict:
    """The OpenGenus quiz: eps increases the std (C1: with eps > 0 the output's RMS falls below 1 for a
    near-constant input), so it limits the normalized values (C2: without eps they exceed the bound
    sqrt(H-1) that every normalized vector obeys anyway, else eps limits nothing); 1e-8 keeps the
    normalization stable (C3: 1e-8 survives being stored in float16)."""
    d = record["data"]
    nc = d["near_constant"]
    with_eps = [i for i, e in enumerate(nc["eps"]) if e > 0]
    no_eps = nc["eps"].index(0.0)
    largest_output = _largest(nc["max_abs_output"][no_eps])
    bound = math.sqrt(nc["width"] - 1)
    stored = next(s for s in d["half_precision"]["stored_eps"] if s["eps"] == 1e-8)
    c1 = bool(with_eps) and all(min(_finite(nc["output_rms"][i])) < 1.0 - 1e-12 for i in with_eps)
    c2 = largest_output > bound
    c3 = stored["float16"] != 0.0
    gains = {e: _largest(nc["grad_gain"][i]) for i, e in enumerate(nc["eps"])}
    return Verdict(status_of([c1, c2, c3]),
                   f"eps enlarges the std: {_yes(c1)}; limits |x_hat|: {_yes(c2)} (max {largest_output:.2f} "
                   f"without eps, {bound:.1f} allowed); 1e-8 survives float16: {_yes(c3)}",
                   f"gradient gain without eps {gains[0.0]:.1e}, with 1e-5 {gains.get(1e-5, math.nan):.0f}")


#: Claim identifiers of ``data/claims.yml`` -> the function that judges them.
CHECKS: dict[str, Callable[[Record], Verdict]] = {
    "H1": h1_same_computation_in_training_and_test,
    "H2": h2_no_batch_size_constraint,
    "H3": h3_batch_size_robustness,
    "H4": h4_faster_convergence,
    "H5": h5_table_1,
    "H6": h6_implicit_learning_rate,
    "H7": h7_gain_metric,
    "H8": h8_faster_recurrent_training,
    "H9": h9_stable_dynamics,
    "H10": h10_long_sequences_small_batches,
    "H11": h11_generalization_proxy,
    "H12": h12_gain_insensitivity,
    "H13a": h13a_missing_statistics,
    "H13b": h13b_longer_sequences,
    "H14a": h14a_ln_beats_none,
    "H14b": h14b_bn_beats_ln,
    "H15a": h15_draw_speed,
    "H15b": h15_draw_final_bound,
    "S001-epsilon": s001_epsilon_quiz,
    "S001-outliers": s001_outliers,
    "S001-vanishing": s001_vanishing_gradients,
    "S003-placement": s003_placement,
}


#: Claim identifiers judged across several result files (their entry's ``result`` is a list).
CHECKS_ACROSS: dict[str, Callable[[dict[str, Record]], Verdict]] = {
    "S001-generalization": s001_generalization,
}


# ---------------------------------------------------------------------------------------------------------
# The ledger: every entry judged, never an exception


@dataclass(frozen=True)
class Judgement:
    """One ledger row: status, short evidence, full details, and the result file it rests on (if any)."""

    status: str
    evidence: str
    details: str = ""
    result_file: str | None = None


#: What a verdict function may raise on a result that has the right schema but not the expected contents.
_MALFORMED = (KeyError, IndexError, TypeError, ValueError, ZeroDivisionError, AttributeError, StopIteration)


def judge(entry: dict[str, Any], *, profile: str, seed: int = 0) -> Judgement:
    """Judge one entry of ``data/claims.yml`` at ``profile`` and ``seed``; never raises for bad results.

    ``check`` entries are judged by :data:`CHECKS` from their result file: "not tested at this profile" if
    the file does not exist, "could not be judged" (naming the file and the reason) if it is malformed,
    names another experiment/profile/seed, or lacks what the verdict needs. ``measured`` entries carry a
    status shown by a chapter's direct computation; the others are "not tested here" with a reason."""
    if "check" in entry and isinstance(entry["result"], list):
        return _judge_across(entry, profile, seed)
    if "check" in entry:
        path = results.result_path(entry["result"], profile, seed)
        try:
            record = results.load_result(entry["result"], profile, seed)
        except results.MissingResultError:
            return Judgement("not tested at this profile", f"no result {path.name} at profile {profile!r}")
        except results.ResultFileError as err:
            return Judgement("could not be judged", _clip(f"{path.name}: {_reason(err, path)}"), str(err), path.name)
        try:
            verdict = CHECKS[entry["check"]](record)
        except _MALFORMED as err:
            reason = f"{path.name}: {type(err).__name__}: {err}"
            return Judgement("could not be judged", _clip(reason), reason, path.name)
        return Judgement(verdict.status, verdict.evidence, verdict.details, path.name)
    if "measured" in entry:
        return Judgement(entry["measured"], _clip(entry["evidence"]), entry["evidence"])
    return Judgement(entry["status"], _clip(entry["reason"]), entry["reason"])


def _judge_across(entry: dict[str, Any], profile: str, seed: int) -> Judgement:
    """An entry judged across several result files (``result`` a list; :data:`CHECKS_ACROSS`): those that
    exist at ``profile`` are judged together, the missing ones are named in the details."""
    records, missing = {}, []
    for name in entry["result"]:
        try:
            records[name] = results.load_result(name, profile, seed)
        except results.MissingResultError:
            missing.append(results.result_path(name, profile, seed).name)
        except results.ResultFileError as err:
            path = results.result_path(name, profile, seed)
            return Judgement("could not be judged", _clip(f"{path.name}: {_reason(err, path)}"), str(err), path.name)
    try:
        verdict = CHECKS_ACROSS[entry["check"]](records)
    except _MALFORMED as err:
        reason = f"{', '.join(records)}: {type(err).__name__}: {err}"
        return Judgement("could not be judged", _clip(reason), reason)
    files = ", ".join(results.result_path(name, profile, seed).name for name in records)
    details = verdict.details + (f"; not available at this profile: {', '.join(missing)}" if missing else "")
    return Judgement(verdict.status, verdict.evidence, details, files or None)


def _reason(err: Exception, path: Any) -> str:
    return str(err).replace(f"{path}: ", "")


def _clip(text: str) -> str:
    return text if len(text) <= EVIDENCE_LIMIT else text[:EVIDENCE_LIMIT - 3] + "..."
