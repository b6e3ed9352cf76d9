"""The claims ledger: its data file is complete and consistent, and verdicts follow the numbers."""

from __future__ import annotations

import copy
import math

import pytest
import yaml

from lnlib import claims, results

LEDGER = yaml.safe_load((results.REPO_ROOT / "data" / "claims.yml").read_text())
ENTRIES = LEDGER["paper"] + LEDGER["sources"]


def test_every_paper_claim_is_listed_once():
    split = {"H13": ["H13a", "H13b"], "H14": ["H14a", "H14b"], "H15": ["H15a", "H15b"]}  # judged in two parts
    assert [e["id"] for e in LEDGER["paper"]] == [h for i in range(1, 17) for h in split.get(f"H{i}", [f"H{i}"])]
    ids = [e["id"] for e in ENTRIES]
    assert len(ids) == len(set(ids))


def test_every_source_document_is_covered():
    sources = " ".join(e["source"] for e in LEDGER["sources"])
    for document in ("000", "001", "002", "003"):
        assert document in sources


@pytest.mark.parametrize("entry", ENTRIES, ids=[e["id"] for e in ENTRIES])
def test_entry_is_well_formed(entry):
    assert entry["claim"] and entry["source"]
    kinds = [k for k in ("check", "measured", "status") if k in entry]
    assert len(kinds) == 1, f"{entry['id']}: exactly one of check / measured / status"
    if "check" in entry and isinstance(entry["result"], list):  # judged across several results
        assert entry["check"] in claims.CHECKS_ACROSS and entry["result"]
    elif "check" in entry:
        assert entry["check"] in claims.CHECKS and entry["result"]
    elif "measured" in entry:
        assert entry["measured"] in claims.STATUSES and entry["evidence"]
    else:
        assert entry["status"] == "not tested here" and entry["reason"]
    if entry.get("chapter"):
        assert (results.REPO_ROOT / f"{entry['chapter']}.ipynb").exists(), f"{entry['chapter']}: no such chapter"


@pytest.mark.parametrize("entry", [e for e in ENTRIES if "check" in e], ids=lambda e: e["id"])
def test_tested_claims_are_judged_from_committed_results(entry):
    judgement = claims.judge(entry, profile="cpu")
    assert judgement.status in claims.JUDGED, judgement  # never "could not be judged" on the committed files
    assert judgement.evidence and len(judgement.evidence) <= claims.EVIDENCE_LIMIT and judgement.result_file
    assert entry["section"], "a tested claim links to the chapter section with its numbers"


@pytest.mark.parametrize("entry", [e for e in ENTRIES if "check" not in e], ids=lambda e: e["id"])
def test_untested_and_measured_entries_fit_the_ledger_table(entry):
    text = entry.get("evidence") or entry["reason"]
    assert len(text) <= claims.EVIDENCE_LIMIT


@pytest.mark.parametrize("profile", ["smoke", "cpu", "paper", "nonexistent"])
def test_the_ledger_judges_every_entry_at_every_profile_without_raising(profile):
    for entry in ENTRIES:
        judgement = claims.judge(entry, profile=profile)
        assert judgement.status in claims.STATUSES
    if profile in ("paper", "nonexistent"):
        h3 = claims.judge(next(e for e in ENTRIES if e["id"] == "H3"), profile=profile)
        assert h3.status == "not tested at this profile" and f"fig6_mnist-{profile}-seed0.json" in h3.evidence


def test_a_verdict_changes_when_the_numbers_do():
    record = results.load(results.result_path("batch_dependence", "cpu", 0))
    assert claims.h1_same_computation_in_training_and_test(record).status == "reproduced"
    broken = copy.deepcopy(record)
    broken["data"]["layer_norm_network"]["mode_change"][3] = 0.2  # LN changing with the mode
    assert claims.h1_same_computation_in_training_and_test(broken).status == "partly reproduced"
    table = results.load(results.result_path("invariance", "cpu", 0))
    flipped = copy.deepcopy(table)
    flipped["data"]["paper_table"]["layer norm"][0] = False
    assert claims.h5_table_1(flipped).status == "partly reproduced"
    assert "17 of 18" in claims.h5_table_1(flipped).evidence


def test_h6_needs_both_the_gradient_and_the_curvature_factor():
    record = results.load(results.result_path("geometry", "cpu", 0))
    verdict = claims.h6_implicit_learning_rate(record)
    assert verdict.status == "partly reproduced" and "curvature x0.2500 (not as claimed 1/2)" in verdict.evidence
    halved = copy.deepcopy(record)
    i = halved["data"]["scales"].index(2.0)
    for row in halved["data"]["rescaling"].values():
        row["fisher_fixed_ratio"][i] = 0.5
    assert claims.h6_implicit_learning_rate(halved).status == "reproduced"


def test_epsilon_quiz_c1_is_computed_from_the_output_rms():
    record = results.load(results.result_path("epsilon_numerics", "cpu", 0))
    assert "eps enlarges the std: yes" in claims.s001_epsilon_quiz(record).evidence
    flat = copy.deepcopy(record)
    nc = flat["data"]["near_constant"]
    nc["output_rms"] = [[1.0] * len(row) for row in nc["output_rms"]]  # eps would change nothing
    assert "eps enlarges the std: no" in claims.s001_epsilon_quiz(flat).evidence


def test_unknown_status_and_long_evidence_are_refused():
    with pytest.raises(ValueError, match="status must be one of"):
        claims.Verdict("sort of", "no")
    with pytest.raises(ValueError, match="at most 160 characters"):
        claims.Verdict("reproduced", "x" * 161)


# ---------------------------------------------------------------------------------------------------------
# the one rule


@pytest.mark.parametrize("effects,status", [
    ([2.0, 1.0, 3.0], "reproduced"),                 # every seed in the claimed direction, 3 seeds
    ([2.0, 1.0], "partly reproduced"),               # too few seeds
    ([2.0], "partly reproduced"),                    # one seed is never reproduced
    ([2.0, 0.0, 3.0], "partly reproduced"),          # a tie in one seed
    ([2.0, -1.0, 3.0], "partly reproduced"),         # one seed against, median in favour
    ([0.0, 0.0, 0.0], "not reproduced"),             # ties everywhere: no effect
    ([0.5, -0.5, 0.9], "not reproduced"),            # every effect below the resolution 1
    ([-2.0, -1.0, 3.0], "not reproduced"),           # median against
    ([math.inf, 1.0, 2.0], "reproduced"),            # a rival that diverged counts fully
    ([None, float("nan"), None], "could not be judged"),
])
def test_compare_applies_the_rule(effects, status):
    part = claims.compare("part", effects, 1.0)
    assert part.status == status
    assert part.missing == sum(e is None or (isinstance(e, float) and math.isnan(e)) for e in effects)


def test_compare_reports_median_range_and_seed_count():
    text = claims.compare("bz4", [1.0, 3.0, 2.0, None], 1.0, "epochs").describe()
    assert text == "bz4: +2 epochs (range +1 to +3), 3 of 3 seeds in the claimed direction, 1 without a comparison"


@pytest.mark.parametrize("parts,status", [
    (["reproduced", "reproduced"], "reproduced"),
    (["reproduced", "partly reproduced"], "partly reproduced"),
    (["reproduced", "not reproduced"], "partly reproduced"),
    (["not reproduced", "not reproduced"], "not reproduced"),
    (["not reproduced", "could not be judged"], "not reproduced"),
    (["could not be judged"], "could not be judged"),
])
def test_a_claim_is_reproduced_only_when_every_part_is(parts, status):
    assert claims.combine(parts) == status


def _fig6_record(ln_nll, bn_nll, seeds=3):
    def log(variant, nll, seed):
        return {"spec": {"kind": "main", "variant": variant, "batch_size": 128, "seed": seed, "epochs": len(nll)},
                "epoch": list(range(1, len(nll) + 1)), "train_nll": nll, "test_error": [0.02] * len(nll)}
    runs = {f"{v}-{s}": log(v, nll, s) for s in range(seeds) for v, nll in (("layernorm", ln_nll), ("batchnorm", bn_nll))}
    return {"params": {"main_batch_sizes": {"128": len(ln_nll)}}, "data": {"runs": runs}}


FAST = [0.5, 0.05, 0.005, 0.0005, 0.0001]  # LN reaches 0.1, 0.01, 0.001 at epochs 2, 3, 4


@pytest.mark.parametrize("ln,bn,status", [
    (FAST, [0.5, 0.5, 0.2, 0.05, 0.005], "reproduced"),                  # LN two epochs first everywhere
    (FAST, [0.5, 0.05, 0.2, 0.05, 0.005], "partly reproduced"),          # a tie at 0.1 is no effect
    (FAST, [0.5, 0.5, 0.005, 0.0005, 0.0001], "not reproduced"),         # one epoch on the grid is a tie
    ([0.5, 0.5, 0.5, 0.005, 0.0005], [0.05] * 5, "partly reproduced"),   # a win and a loss
    ([0.5, 0.5, 0.5, 0.5, 0.05], [0.05, 0.005, 0.0005, 0.0005, 0.0005], "not reproduced"),  # BN first
    (FAST, [0.5, 0.2, None, None, None], "reproduced"),                  # BN diverged: never reaches
])
def test_h4_counts_wins_ties_and_losses(ln, bn, status):
    assert claims.h4_faster_convergence(_fig6_record(ln, bn)).status == status


def test_h4_on_one_seed_is_at_most_partly_and_says_so():
    verdict = claims.h4_faster_convergence(_fig6_record(FAST, [0.5, 0.5, 0.2, 0.05, 0.005], seeds=1))
    assert verdict.status == "partly reproduced" and verdict.evidence.startswith("1 seed;")


def test_h4_is_judged_against_both_batch_norm_placements_where_the_control_was_trained():
    record = _fig6_record(FAST, [0.5, 0.5, 0.2, 0.05, 0.005])
    runs = record["data"]["runs"]
    # the hidden-only control converges as fast as LN: H4 holds against the paper's BN only
    for seed in range(3):
        runs[f"batchnorm_hidden-{seed}"] = dict(runs[f"layernorm-{seed}"],
                                                spec=dict(runs[f"layernorm-{seed}"]["spec"], variant="batchnorm_hidden"))
    verdict = claims.h4_faster_convergence(record)
    assert verdict.status == "partly reproduced"
    assert "[reproduced] batch 128 NLL<=0.1" in verdict.details
    assert "[not reproduced] BN hidden-only batch 128 NLL<=0.1" in verdict.details
    assert "over BN hidden-only +0 to +0" in verdict.evidence


def test_a_one_case_difference_survives_floating_point_rounding():
    n = 10_000
    misses = sum(claims.compare("p", [(k + 1) / n - k / n], 1.0 / n).status != "partly reproduced"
                 for k in range(1, 2000))
    assert misses == 0
    assert claims.compare("p", [math.inf, -math.inf, math.inf, -math.inf], 1.0).median == 0.0


def _h3_record(small_ln, small_bn, seeds=3):
    """Figure 6 runs at batch sizes 128 (NLL 0.01) and 4 (the given NLL curves), 3 epochs."""
    runs = {}
    for s in range(seeds):
        for variant, small in (("layernorm", small_ln), ("batchnorm", small_bn)):
            for bs, nll in ((128, [0.1, 0.02, 0.01]), (4, small)):
                runs[f"{variant}-{bs}-{s}"] = {
                    "spec": {"kind": "main", "variant": variant, "batch_size": bs, "seed": s, "epochs": 3, "lr": 1e-3},
                    "epoch": [1, 2, 3][:len(nll)], "train_nll": nll, "test_error": [0.05, 0.03, 0.02][:len(nll)]}
    return {"params": {"main_batch_sizes": {"128": 3, "4": 3}, "eval_cases": 10_000}, "data": {"runs": runs}}


def test_h3_judges_diverged_runs_instead_of_crashing():
    assert claims.h3_batch_size_robustness(_h3_record([0.1, 0.02, 0.011], [0.5, 0.3, 0.2])).status == "partly reproduced"
    diverged = _h3_record([0.1, 0.02, 0.011], [0.5, None])  # BN at batch size 4 diverged after one epoch
    verdict = claims.h3_batch_size_robustness(diverged)
    assert verdict.status == "reproduced" and verdict.details.count(": +inf") == 2  # an infinite gap in both parts
    both = _h3_record([0.5, None], [0.5, None])
    assert claims.h3_batch_size_robustness(both).status == "could not be judged"


def test_judge_reports_malformed_and_foreign_result_files(tmp_path, monkeypatch):
    monkeypatch.setenv("LNLIB_RESULTS_DIR", str(tmp_path))
    entry = next(e for e in ENTRIES if e["id"] == "H1")
    source = results.load(results.REPO_ROOT / "data" / "results" / "batch_dependence-cpu-seed0.json")
    path = results.result_path("batch_dependence", "cpu", 0)
    results.write_json_atomic(path, dict(source, profile="smoke"))  # a smoke result copied under the cpu name
    judgement = claims.judge(entry, profile="cpu")
    assert judgement.status == "could not be judged" and "profile 'smoke'" in judgement.evidence
    path.write_text(path.read_text().replace('"seed": 0', '"seed": NaN', 1))
    judgement = claims.judge(entry, profile="cpu")
    assert judgement.status == "could not be judged" and "NaN" in judgement.evidence
    broken = copy.deepcopy(source)
    del broken["data"]["layer_norm_network"]
    results.write_json_atomic(path, broken)
    judgement = claims.judge(entry, profile="cpu")
    assert judgement.status == "could not be judged" and "KeyError" in judgement.evidence
    empty = copy.deepcopy(source)
    empty["data"]["layer_norm_network"]["mode_change"] = []
    results.write_json_atomic(path, empty)
    assert claims.judge(entry, profile="cpu").status == "could not be judged"


def test_every_function_of_claims_has_resolvable_type_hints():
    import inspect
    import typing

    functions = [f for _, f in inspect.getmembers(claims, inspect.isfunction) if f.__module__ == claims.__name__]
    assert len(functions) > 20
    for function in functions:
        typing.get_type_hints(function)


@pytest.mark.slow
def test_claims_import_without_torch_or_tqdm(tmp_path):
    """In a process where torch and tqdm cannot be imported, lnlib.claims still imports and judges."""
    import subprocess
    import sys

    code = (f"import sys; sys.modules['torch'] = None; sys.modules['tqdm'] = None; "
            f"sys.path.insert(0, {str(results.REPO_ROOT)!r}); "
            "import lnlib.claims as c, yaml; "
            "e = [x for x in yaml.safe_load(open(c.results.REPO_ROOT / 'data/claims.yml'))['paper'] if x['id'] == 'H8'][0]; "
            "print(c.judge(e, profile='cpu').status)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() in claims.JUDGED


def _rnn_record(ln_valid, lstm_valid, ln_grads, lstm_grads, seeds=3):
    """Sequential-MNIST runs of the LN-LSTM and the LSTM: validation curves and gradient norms per step."""
    def log(variant, valid, grads, seed):
        norms = {"grad_h": grads, "h": [1.0] * len(grads)}
        return {"spec": {"task": "seqmnist", "variant": variant, "seed": seed, "eval_every": 10,
                         "steps": 10 * len(valid)},
                "step": [10 * (i + 1) for i in range(len(valid))], "valid": valid,
                "norms_init": norms, "norms_trained": norms}
    runs = {f"{v}-{s}": log(v, valid, grads, s) for s in range(seeds)
            for v, valid, grads in (("ln_lstm", ln_valid, ln_grads), ("lstm", lstm_valid, lstm_grads))}
    return {"data": {"runs": runs}}


def test_s003_placement_is_at_most_partly_since_half_of_it_is_untested():
    record = _rnn_record([0.01] * 5, [1.0] * 5, [1.0] * 4, [1.0] * 4)
    assert claims.h8_faster_recurrent_training(record).status == "reproduced"
    verdict = claims.s003_placement(record)
    assert verdict.status == "partly reproduced" and "not tested" in verdict.evidence


@pytest.mark.parametrize("lstm_grads,status", [
    ([1e-4, 1e-2, 1.0, 1.0], "reproduced"),      # the LSTM loses 4 decades back in time, LN none
    ([10.0, 5.0, 2.0, 1.0], "not reproduced"),   # a gradient growing back in time is not vanishing
    ([1.0, 1.0, 1.0, 1.0], "not reproduced"),    # no loss on either side: a tie
])
def test_s001_vanishing_counts_decades_lost_back_in_time(lstm_grads, status):
    record = _rnn_record([0.5] * 3, [0.5] * 3, [1.0] * 4, lstm_grads)
    assert claims.s001_vanishing_gradients(record).status == status


def _grid_record(reach, seeds=3, steps=1000, per_octave=8):
    """An H10 grid result: ``reach(variant, length, batch, seed)`` is the step at which that run's validation
    error first falls to 0.05 (``None``: never within ``steps``)."""
    grid = [10] + [round(10 * 2 ** (k / per_octave)) for k in range(1, 64) if 10 * 2 ** (k / per_octave) < steps]
    grid = sorted(set(grid) | {steps})
    runs = {}
    for seed in range(seeds):
        for length in (10, 40):
            for batch in (4, 64):
                for variant in ("lstm", "ln_lstm"):
                    at = reach(variant, length, batch, seed)
                    valid = [0.1 if at is None or s < at else 0.01 for s in grid]
                    spec = {"task": "adding", "variant": variant, "seed": seed, "length": length,
                            "batch_size": batch, "steps": steps, "eval_every": 10, "evals_per_octave": per_octave}
                    runs[f"{variant}-{length}-{batch}-{seed}"] = {"spec": spec, "step": grid, "valid": valid}
    return {"params": {"judged_threshold": 0.05, "evals_per_octave": per_octave}, "data": {"runs": runs}}


def test_h10_is_reproduced_when_the_speedup_grows_with_length_and_shrinks_with_batch_size():
    # LN needs 40 steps everywhere; the LSTM 80 at (10, 64), 160 at (40, 64) and (10, 4), 640 at (40, 4)
    lstm = {(10, 64): 80, (40, 64): 160, (10, 4): 160, (40, 4): 640}
    record = _grid_record(lambda v, t, b, s: 40 if v == "ln_lstm" else lstm[(t, b)])
    verdict = claims.h10_long_sequences_small_batches(record)
    assert verdict.status == "reproduced", verdict
    speedups = claims.grid_speedups(record, 0.05)
    assert speedups[(40, 4)][0][1] == "exact" and abs(speedups[(40, 4)][0][0] - 4.0) < 0.15
    assert "x16" in verdict.evidence  # the median speed-up of the long-sequence, small-batch corner


def test_h10_is_not_reproduced_when_the_speedup_is_the_same_everywhere():
    record = _grid_record(lambda v, t, b, s: 40 if v == "ln_lstm" else 320)
    assert claims.h10_long_sequences_small_batches(record).status == "not reproduced"


def test_h10_uses_a_censored_lstm_only_where_it_makes_the_effect_a_lower_bound():
    # the LSTM never reaches the threshold at (40, 4): its speed-up is "at least", usable against smaller cells
    lstm = {(10, 64): 80, (40, 64): 160, (10, 4): 160, (40, 4): None}
    record = _grid_record(lambda v, t, b, s: 40 if v == "ln_lstm" else lstm[(t, b)])
    speedups = claims.grid_speedups(record, 0.05)
    assert speedups[(40, 4)][1][1] == "at least"
    assert claims.h10_long_sequences_small_batches(record).status == "reproduced"
    # but a censored LSTM in the cell claimed to be the *smaller* one gives no comparison
    lstm[(10, 64)] = None
    parts = claims.h10_long_sequences_small_batches(_grid_record(
        lambda v, t, b, s: 40 if v == "ln_lstm" else lstm[(t, b)])).details
    assert "B=64: T=40 minus T=10: no seed gave a comparison" in parts


def test_h10_a_lower_bound_below_the_resolution_gives_no_comparison():
    # the LSTM never reaches at (40, 4) with a small budget: the bound is below the speed-up at (40, 64)
    lstm = {(10, 64): 80, (40, 64): 1000, (10, 4): 160, (40, 4): None}
    record = _grid_record(lambda v, t, b, s: 40 if v == "ln_lstm" else lstm[(t, b)])
    verdict = claims.h10_long_sequences_small_batches(record)
    assert "T=40: B=4 minus B=64: no seed gave a comparison" in verdict.details  # not counted against
    # an LN-LSTM already below the threshold at the first evaluation: its count is an upper bound
    first = _grid_record(lambda v, t, b, s: 10 if v == "ln_lstm" else 80)
    assert claims.grid_speedups(first, 0.05)[(10, 4)][0][1] == "at least"


def test_first_reaching_can_ask_for_consecutive_evaluations():
    steps, values = [10, 20, 30, 40, 50], [0.2, 0.04, 0.09, 0.04, 0.03]
    assert claims.first_reaching(steps, values, 0.05) == 20  # the first dip
    assert claims.first_reaching(steps, values, 0.05, consecutive=2) == 40  # the first dip that lasts
    assert claims.first_reaching(steps[:4], values[:4], 0.05, consecutive=2) is None
    assert claims.first_reaching(steps[:4], values[:4], 0.05, consecutive=2, holds_after_end=True) == 40


def test_a_race_won_at_the_first_evaluation_is_a_lower_bound():
    assert claims.race_effect(10, 10, 110, earliest=10, resolution=20) is None  # both there at once: unknown
    assert claims.race_effect(10, 50, 110, earliest=10, resolution=20) == 40.0  # a lower bound above r counts
    assert claims.race_effect(20, 20, 110, earliest=10, resolution=20) == 0.0  # a measured tie is a tie
    assert claims.race_effect(100, None, 110, resolution=20) is None  # censored rival, bound below r
    assert claims.race_effect(None, 60, 110, resolution=20) == -50.0  # LN never: an upper bound, against


def test_h3_is_judged_against_both_batch_norm_placements_where_the_control_was_trained():
    record = _h3_record([0.1, 0.02, 0.011], [0.5, 0.3, 0.2])
    runs = record["data"]["runs"]
    for key in [k for k in runs if k.startswith("layernorm")]:  # the control suffers from batch 4 as LN does
        runs[key.replace("layernorm", "batchnorm_hidden")] = dict(
            runs[key], spec=dict(runs[key]["spec"], variant="batchnorm_hidden"))
    verdict = claims.h3_batch_size_robustness(record)
    assert verdict.status == "partly reproduced" and verdict.evidence.startswith("3 seeds;")
    assert "[not reproduced] NLL log ratio batch 4/128, BN hidden-only minus LN: +0" in verdict.details
    assert "[reproduced] NLL log ratio batch 4/128, BN minus LN" in verdict.details


def _with_small_batch_rate(record, variant, lr, nll, valid):
    """Add ``lr_small`` runs of ``variant`` at batch size 4 and rate ``lr`` (the main runs have rate 1e-3)."""
    runs = record["data"]["runs"]
    for seed in range(3):
        main = runs[f"{variant}-4-{seed}"]
        main["valid_error"] = [0.05, 0.04, 0.03]
        runs[f"{variant}-4-{seed}-lr{lr}"] = dict(main, spec=dict(main["spec"], kind="lr_small", lr=lr),
                                                  train_nll=nll, valid_error=valid)


def test_h3_at_each_variants_own_best_small_batch_rate_uses_the_validation_error():
    record = _h3_record([0.1, 0.02, 0.011], [0.5, 0.3, 0.2])
    assert claims.h3_batch_size_robustness(record, small_batch_rate="own best").status == "not tested at this profile"
    # batch norm does as well as LN at batch 4 at a smaller rate, which validation prefers
    _with_small_batch_rate(record, "batchnorm", 3e-4, [0.1, 0.02, 0.011], [0.04, 0.03, 0.02])
    _with_small_batch_rate(record, "layernorm", 3e-4, [0.2, 0.1, 0.05], [0.06, 0.05, 0.04])
    assert claims.best_small_batch_rate(record["data"], "batchnorm", 4) == 3e-4
    assert claims.best_small_batch_rate(record["data"], "layernorm", 4) == 1e-3
    assert claims.best_small_batch_rate(record["data"], "batchnorm_hidden", 4) is None  # not trained
    assert claims.h3_batch_size_robustness(record).status == "partly reproduced"
    own = claims.h3_batch_size_robustness(record, small_batch_rate="own best")
    assert own.status == "not reproduced"
    assert "batch-4 learning rates: layernorm 0.001, batchnorm 0.0003" in own.details
    with pytest.raises(ValueError, match="small_batch_rate"):
        claims.h3_batch_size_robustness(record, small_batch_rate="best")


def test_h4_can_race_batch_norms_training_mode_nll_where_it_was_logged():
    record = _fig6_record(FAST, [0.5, 0.5, 0.2, 0.05, 0.005])
    assert claims.h4_faster_convergence(record, rival_nll="train_nll_batch_statistics").status == \
        "not tested at this profile"  # no log has it
    for seed in range(3):  # with batch statistics, batch norm is as fast as layer norm
        record["data"]["runs"][f"batchnorm-{seed}"]["train_nll_batch_statistics"] = FAST
    assert claims.h4_faster_convergence(record).status == "reproduced"
    assert claims.h4_faster_convergence(record, rival_nll="train_nll_batch_statistics").status == "not reproduced"
    with pytest.raises(ValueError, match="rival_nll"):
        claims.h4_faster_convergence(record, rival_nll="test_nll")


def _runs(*logs):
    return {"runs": {f"r{i}": log for i, log in enumerate(logs)}}


def _cnn(variant, seed, nll, err):
    return {"spec": {"variant": variant, "seed": seed}, "epoch": list(range(1, len(nll) + 1)), "train_nll": nll,
            "test_error": err}


def test_h14_splits_ln_beats_none_from_bn_beats_ln():
    logs = []
    for s in range(3):
        logs += [_cnn("none", s, [0.5, 0.3, 0.2, 0.1], [0.05, 0.03, 0.02, 0.02]),
                 _cnn("layernorm_chw", s, [0.3, 0.1, 0.05, 0.03], [0.03, 0.02, 0.015, 0.015]),
                 _cnn("batchnorm", s, [0.2, 0.05, 0.02, 0.01], [0.02, 0.012, 0.01, 0.01])]
    record = {"params": {"epochs": 4, "eval_cases": 10_000}, "data": _runs(*logs)}
    faster, beats = claims.h14a_ln_beats_none(record), claims.h14b_bn_beats_ln(record)
    assert faster.status == "reproduced" and faster.evidence.startswith("3 seeds; 3 reproduced")
    assert beats.status == "reproduced" and beats.evidence.startswith("3 seeds; 2 reproduced")
    for log in logs:  # now batch norm ends where layer norm does: LN still beats none, BN no longer beats LN
        if log["spec"]["variant"] == "batchnorm":
            log["train_nll"], log["test_error"] = [0.3, 0.1, 0.05, 0.03], [0.03, 0.02, 0.015, 0.015]
    assert claims.h14a_ln_beats_none(record).status == "reproduced"
    beats = claims.h14b_bn_beats_ln(record)
    assert beats.status == "not reproduced" and "0 reproduced, 0 partly, 2 not" in beats.evidence
    assert "LN 1.50%, BN 1.50%" in beats.evidence


def _outlier_log(variant, seed, definition, rate, err):
    return {"spec": {"variant": variant, "seed": seed,
                     "outliers": {"definition": definition, "rate": rate}}, "test_error": [err, err]}


def test_s001_outliers_compares_impacts_not_errors():
    logs = []
    for s in range(3):
        for variant, clean, hit in (("baseline", 0.02, 0.03), ("batchnorm", 0.015, 0.04), ("layernorm", 0.01, 0.012)):
            logs += [_outlier_log(variant, s, "none", 0.0, clean), _outlier_log(variant, s, "scaled", 0.1, hit)]
    record = {"params": {"eval_cases": 10_000}, "data": _runs(*logs)}
    verdict = claims.s001_outliers(record)
    assert verdict.status == "reproduced" and "scaled 10%: LN +0.20, none +1.00, BN +2.50" in verdict.evidence
    for log in logs:  # layer norm hit harder than no normalization, less than batch norm: partly
        if log["spec"]["variant"] == "layernorm" and log["spec"]["outliers"]["rate"]:
            log["test_error"] = [0.03, 0.03]
    assert claims.s001_outliers(record).status == "partly reproduced"
    # the control: batch norm measured with statistics of the clean images is hurt no more than LN
    for log in logs:
        if log["spec"]["variant"] == "batchnorm" and log["spec"]["outliers"]["rate"]:
            log["clean_statistics"] = {"test_error": 0.016}
    control = claims.s001_outliers(record, batch_norm_statistics="clean images")
    assert "BN minus LN: -0.019" in control.details and "BN +0.10" in control.evidence
    with pytest.raises(ValueError, match="batch_norm_statistics"):
        claims.s001_outliers(record, batch_norm_statistics="population")


def _draw_log(variant, seed, bounds):
    return {"spec": {"variant": variant, "seed": seed}, "epoch": list(range(1, len(bounds) + 1)),
            "test": [{"bound": b} for b in bounds]}


def test_h15_measures_the_speed_up_to_the_baselines_final_bound_and_the_final_gap():
    base = [120, 110, 104, 100, 97, 95, 94, 93]
    ln = [115, 100, 95, 93, 92, 91, 90.5, 90.2]  # reaches 93 (baseline's epoch 8) at epoch 4
    record = {"params": {"epochs": 8}, "data": _runs(*[_draw_log(v, s, b) for s in range(3)
                                                      for v, b in (("baseline", base), ("layernorm", ln))])}
    speed = claims.h15_draw_speed(record)
    assert speed.status == "reproduced" and "median factor x2.00" in speed.evidence
    final = claims.h15_draw_final_bound(record)
    assert final.status == "reproduced" and "baseline 93.50, LN 90.35" in final.evidence
    # faster, but not almost twice as fast: LN reaches 93 at epoch 6 (a factor 1.33 < 1.5)
    modest = [115, 105, 100, 97, 95, 93, 92, 91]
    record["data"] = _runs(*[_draw_log(v, s, b) for s in range(3) for v, b in (("baseline", base), ("layernorm", modest))])
    speed = claims.h15_draw_speed(record)
    assert speed.status == "partly reproduced" and "1 reproduced, 0 partly, 1 not" in speed.evidence
    slow = {"params": {"epochs": 8}, "data": _runs(*[_draw_log(v, s, base) for s in range(3)
                                                     for v in ("baseline", "layernorm")])}
    assert claims.h15_draw_speed(slow).status == "not reproduced"  # the same curve: no speed-up
    assert claims.h15_draw_final_bound(slow).status == "not reproduced"


def test_generalization_is_judged_across_the_results_that_exist(tmp_path, monkeypatch):
    monkeypatch.setenv("LNLIB_RESULTS_DIR", str(tmp_path))
    logs = [_cnn(v, s, [0.1, 0.1], [err, err]) for s in range(3) for v, err in (("none", 0.02), ("layernorm_chw", 0.015))]
    record = results.make_record(experiment="convnet", profile="cpu", seed=0, params={"epochs": 2, "eval_cases": 10_000},
                                 data=_runs(*logs),
                                 device="cpu", wall_time_s=1.0)
    results.save(record)
    entry = {"id": "S001-generalization", "check": "S001-generalization", "result": ["convnet", "draw"]}
    judgement = claims.judge(entry, profile="cpu")
    assert judgement.status == "reproduced" and "LN helps in 1, hurts in 0, ties in 0 of 1 settings" in judgement.evidence
    assert "not available at this profile: draw-cpu-seed0.json" in judgement.details
    assert judgement.result_file == "convnet-cpu-seed0.json"
    assert claims.judge(entry, profile="paper").status == "not tested at this profile"


def test_every_pairing_of_independent_runs_is_judged():
    # LN reaches 0.1 at epoch 2 in every seed; BN at epochs 5, 5, 3: the pairing decides nothing here
    record = _fig6_record(FAST, [0.5, 0.5, 0.2, 0.05, 0.005])
    assert claims.under_every_pairing(claims.h4_faster_convergence, record) == {"reproduced": 6}
    runs = record["data"]["runs"]
    runs["layernorm-2"] = dict(runs["layernorm-2"], train_nll=[0.5, 0.5, 0.5, 0.005, 0.0005])  # one slow LN run
    counts = claims.under_every_pairing(claims.h4_faster_convergence, record)
    assert sum(counts.values()) == 6 and set(counts) <= set(claims.JUDGED)


def test_h4_can_demand_consecutive_epochs_below_a_threshold():
    dip = [0.5, 0.05, 0.2, 0.05, 0.005]  # LN dips below 0.1 at epoch 2, stays there from epoch 4
    record = _fig6_record(dip, [0.5, 0.5, 0.05, 0.05, 0.05])
    once = claims.h4_faster_convergence(record)
    twice = claims.h4_faster_convergence(record, consecutive=2)
    assert "[partly reproduced] batch 128 NLL<=0.1" not in once.details
    assert "batch 128 NLL<=0.1: -1 epochs" in twice.details


def test_outlier_verdict_under_other_windows_and_matchings():
    logs = []
    for s in range(3):
        for variant, clean, hit in (("baseline", 0.02, 0.03), ("batchnorm", 0.015, 0.04), ("layernorm", 0.01, 0.012)):
            for definition, rate, err in (("none", 0.0, clean), ("scaled", 0.1, hit)):
                log = _outlier_log(variant, s, definition, rate, err)
                log["spec"]["kind"] = "outliers"
                noisy = variant == "layernorm" and rate > 0  # a bad middle epoch of LN's corrupted runs
                log["test_error"] = [0.5, 0.05 if noisy else err, err]
                logs.append(log)
    record = {"params": {"eval_cases": 10_000}, "data": _runs(*logs)}
    assert claims.s001_outliers(record, window=1).status == "reproduced"
    assert claims.under_every_pairing(claims.s001_outliers, record, variant="layernorm", kind="outliers",
                                      window=1) == {"reproduced": 6}
    # the median of three epochs is the bad middle one for LN: its impact is the largest, nothing is reproduced
    assert claims.s001_outliers(record, window=3).status == "not reproduced"


def test_a_verdict_can_be_judged_with_other_trainings_of_some_runs():
    record = _fig6_record(FAST, [0.5, 0.5, 0.2, 0.05, 0.005])
    slow_first_training = dict(record["data"]["runs"]["layernorm-0"], train_nll=[0.5] * 5)
    first = claims.with_runs(record, {"layernorm-0": slow_first_training})
    assert claims.h4_faster_convergence(record).status == "reproduced"
    assert claims.h4_faster_convergence(first).status == "partly reproduced"  # seed 0 no longer first
    assert record["data"]["runs"]["layernorm-0"]["train_nll"] == FAST  # the record itself is unchanged
    with pytest.raises(ValueError, match=r"logs: \['layernorm-9'\] are not runs"):
        claims.with_runs(record, {"layernorm-9": slow_first_training})
    other_run = dict(slow_first_training, spec=dict(slow_first_training["spec"], seed=1))
    with pytest.raises(ValueError, match=r"logs\['layernorm-0'\]: its spec differs"):
        claims.with_runs(record, {"layernorm-0": other_run})
