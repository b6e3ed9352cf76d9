"""Verdicts on the claims the book tests, computed from result files (never typed by hand).

Every testable claim has a function here that takes the result record it rests on and returns a
:class:`Verdict`: a status (``reproduced``, ``partly reproduced``, ``not reproduced``) and one sentence of
evidence with the numbers. The chapters print these verdicts, and the claims ledger
(``data/claims.yml`` + ``chapters/99_claims_ledger.ipynb``) evaluates the same functions on the same files,
so a verdict cannot drift from its numbers. Claims the book does not test are listed in the ledger with
the status ``not tested here`` and the reason.
"""

from __future__ import annotations

import math
from typing import Any, Callable

from .experiments import fig6_mnist, rnn
from .verdicts import STATUSES, Verdict, status_of as _status

def _largest(values: list[float | None]) -> float:
    return max(v for v in values if v is not None)


# --- chapter 2: batch_dependence -------------------------------------------------------------------------

def h1_same_computation_in_training_and_test(record: Record) -> Verdict:
    """H1: layer norm computes the same function in training and evaluation mode; batch norm does not."""
    d = record["data"]
    ln = _largest(d["layer_norm_network"]["mode_change"])
    bn = [v for v in d["batch_norm_network"]["mode_change"] if v is not None]
    return Verdict(_status([ln == 0.0, min(bn) > 1e-3]),
                   f"largest train-vs-eval change of a network's logits: layer norm {ln:.1e}, "
                   f"batch norm {min(bn):.2f} to {max(bn):.2f} (batch sizes 2 to {max(d['batch_sizes'])})")


def h2_no_batch_size_constraint(record: Record) -> Verdict:
    """H2: a case's layer-normalized values do not depend on the batch, down to batch size 1."""
    d = record["data"]
    only = d["normalization_only"]
    ln = max(_largest(only["layer_norm_float32"]), _largest(only["layer_norm_float64"]))
    network = _largest(d["layer_norm_network"]["train_vs_online"])
    return Verdict(_status([ln == 0.0, network < 1e-5]),
                   f"largest change of a case's layer-normalized values between batch sizes 1 and "
                   f"{max(d['batch_sizes'])}: {ln:.1e}; of a network's logits: {network:.1e} (float32 rounding "
                   f"of the matrix product); batch norm cannot run at batch size 1 in training mode")


# --- chapter 7: invariance --------------------------------------------------------------------------------

def h5_table_1(record: Record, tolerance: float = 1e-9) -> Verdict:
    """H5: the invariance table (Table 1), every cell measured with eps = 0."""
    d = record["data"]
    changes = d["change"]["eps_zero"]
    agree = total = 0
    for method, row in zip(d["methods"], changes):
        if method in d["paper_table"]:
            for cell, paper in zip(row, d["paper_table"][method]):
                total += 1
                agree += (cell <= tolerance) == paper
    invariant = [c for row in changes for c in row if c <= tolerance]
    variant = [c for row in changes for c in row if c > tolerance]
    status = "reproduced" if agree == total else ("partly reproduced" if agree else "not reproduced")
    wn = changes[d["methods"].index("weight norm")][d["transformations"].index("dataset re-scaling")]
    return Verdict(status, f"{agree} of {total} cells of Table 1 agree with the measurements (invariant cells "
                           f"change by at most {max(invariant):.0e}, the others by at least {min(variant):.2f}); "
                           f"weight norm changes by {wn:.1f} under dataset re-scaling, so the text's 'all methods "
                           f"are invariant' to it is wrong and the table's 'No' is right")


# --- chapter 8: geometry ----------------------------------------------------------------------------------

def h6_implicit_learning_rate(record: Record) -> Verdict:
    """H6: scaling a normalized weight block by k keeps the output, divides the gradient by k."""
    d = record["data"]
    i = min(range(len(d["scales"])), key=lambda j: abs(d["scales"][j] - 2.0))
    rows = d["rescaling"].values()
    grad = [r["gradient_ratio"][i] for r in rows]
    fisher = [r["fisher_fixed_ratio"][i] for r in rows]
    out = max(max(r["output_change"]) for r in rows)
    checks = [out < 1e-10, all(abs(g - 0.5) < 1e-6 for g in grad)]
    return Verdict(_status(checks), f"doubling the weights changes the output by {out:.0e}, the gradient by a "
                                    f"factor {grad[0]:.4f} and the Fisher curvature of a fixed step by "
                                    f"{fisher[0]:.4f}: the paper's 'factor 1/2' fits the gradient, while the "
                                    f"curvature changes by {fisher[0]:.2f}")


def h7_gain_metric(record: Record) -> Verdict:
    """H7: the KL metric of the gains does not depend on the input scale under BN and LN."""
    gains = record["data"]["gains"]
    normalized = max(abs(v - 1.0) for m in ("batch norm", "layer norm") for v in gains[m])
    plain = max(gains["plain GLM"])
    return Verdict(_status([normalized < 1e-9, plain > 2.0]),
                   f"gain metric at input scales {min(record['data']['input_scales']):g}x to "
                   f"{max(record['data']['input_scales']):g}x: BN and LN within {normalized:.0e} of constant; "
                   f"plain GLM up to {plain:.1f}x, weight norm up to {max(gains['weight norm']):.1f}x")


# --- chapter 9: fig6_mnist --------------------------------------------------------------------------------

FIG6_THRESHOLDS = (1e-1, 1e-2, 1e-3)


def h4_faster_convergence(record: Record) -> Verdict:
    """H4: layer norm reaches each training-NLL threshold no later than batch norm, and earlier overall.

    Each (batch size, threshold) is a comparison: a win when layer norm gets there first (or batch norm never
    does), a tie at the same epoch, a loss otherwise. Reproduced: no loss and at least one win; partly: wins
    and losses; not reproduced: no win.
    """
    sizes = sorted((int(b) for b in record["params"]["main_batch_sizes"]), reverse=True)
    wins = ties = losses = 0
    parts = []
    for bs in sizes:
        ln = fig6_mnist.select(record["data"], kind="main", variant="layernorm", batch_size=bs)[0]
        bn = fig6_mnist.select(record["data"], kind="main", variant="batchnorm", batch_size=bs)[0]
        for t in FIG6_THRESHOLDS:
            a, b = fig6_mnist.epochs_to_reach(ln, "train_nll", t), fig6_mnist.epochs_to_reach(bn, "train_nll", t)
            outcome = fig6_mnist.race(a, b)
            if outcome is None:
                continue
            wins += outcome == "earlier"
            ties += outcome == "tie"
            losses += outcome == "later"
            parts.append(f"bz{bs} NLL<={t:g}: LN {a or '-'}, BN {b or '-'}")
    if not parts:
        return Verdict("not tested here", "no training-NLL threshold was reached at this profile")
    status = "not reproduced" if not wins else ("reproduced" if not losses else "partly reproduced")
    return Verdict(status, f"layer norm first in {wins}, tied in {ties}, later in {losses} of {len(parts)} "
                           f"comparisons (epoch reached: {'; '.join(parts)})")


def h3_batch_size_robustness(record: Record) -> Verdict:
    """H3: layer norm's batch-size-4 run is closer to its batch-size-128 run than batch norm's."""
    sizes = sorted(int(b) for b in record["params"]["main_batch_sizes"])
    small, large = sizes[0], sizes[-1]
    gaps = {}
    for variant in ("layernorm", "batchnorm"):
        a = fig6_mnist.select(record["data"], kind="main", variant=variant, batch_size=small)[0]
        b = fig6_mnist.select(record["data"], kind="main", variant=variant, batch_size=large)[0]
        epoch = min(len(a["epoch"]), len(b["epoch"]))
        gaps[variant] = (a["train_nll"][epoch - 1] / b["train_nll"][epoch - 1],
                         a["test_error"][epoch - 1] - b["test_error"][epoch - 1], epoch)
    (ln_ratio, ln_gap, epoch), (bn_ratio, bn_gap, _) = gaps["layernorm"], gaps["batchnorm"]
    checks = [abs(math.log(ln_ratio)) < abs(math.log(bn_ratio)), abs(ln_gap) < abs(bn_gap)]
    return Verdict(_status(checks),
                   f"at epoch {epoch}, training NLL ratio bz{small}/bz{large}: LN {ln_ratio:.3g}, BN {bn_ratio:.3g}; "
                   f"test error difference: LN {100 * ln_gap:+.2f}, BN {100 * bn_gap:+.2f} points")


# --- chapter 6: epsilon_numerics ---------------------------------------------------------------------------

def s001_epsilon_quiz(record: Record) -> Verdict:
    """The OpenGenus quiz: eps increases the std (C1), so limits the normalized values (C2); 1e-8 is fine (C3)."""
    d = record["data"]
    nc = d["near_constant"]
    no_eps = nc["eps"].index(0.0)
    largest_output = max(v for v in nc["max_abs_output"][no_eps] if v is not None)
    bound = math.sqrt(nc["width"] - 1)
    gains = {e: max(v for v in nc["grad_gain"][i] if v is not None) for i, e in enumerate(nc["eps"])}
    stored = next(s for s in d["half_precision"]["stored_eps"] if s["eps"] == 1e-8)
    c1 = True  # sqrt(sigma^2 + eps) > sigma for every eps > 0: the denominator does grow
    c2 = largest_output > bound  # the claim needs outputs that would be unbounded without eps
    c3 = stored["float16"] != 0.0
    return Verdict(_status([c1, c2, c3]),
                   f"without eps the largest |normalized value| is {largest_output:.2f} (bound sqrt(H-1) = "
                   f"{bound:.1f}), so eps does not limit the outputs; it bounds the gradient gain "
                   f"({gains[0.0]:.1e} without eps, {gains[1e-5]:.0f} with 1e-5); 1e-8 stored in float16 is "
                   f"{stored['float16']:g}")


#: Claim identifiers of ``data/claims.yml`` -> the function that judges them.
CHECKS: dict[str, Callable[[Record], Verdict]] = {
    "H1": h1_same_computation_in_training_and_test,
    "H2": h2_no_batch_size_constraint,
    "H3": h3_batch_size_robustness,
    "H4": h4_faster_convergence,
    "H5": h5_table_1,
    "H6": h6_implicit_learning_rate,
    "H7": h7_gain_metric,
    "S001-epsilon": s001_epsilon_quiz,
    "H8": rnn.verdict_h8,
    "H9": rnn.verdict_h9,
    "H12": rnn.verdict_h12,
    "H13": rnn.verdict_h13,
}
