"""The claims ledger: its data file is complete and consistent, and verdicts follow the numbers."""

from __future__ import annotations

import copy

import pytest
import yaml

from lnlib import claims, results

LEDGER = yaml.safe_load((results.REPO_ROOT / "data" / "claims.yml").read_text())
ENTRIES = LEDGER["paper"] + LEDGER["sources"]


def test_every_paper_claim_is_listed_once():
    assert [e["id"] for e in LEDGER["paper"]] == [f"H{i}" for i in range(1, 17)]
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
    if "check" in entry:
        assert entry["check"] in claims.CHECKS and entry["result"]
    elif "measured" in entry:
        assert entry["measured"] in claims.STATUSES and entry["evidence"]
    else:
        assert entry["status"] == "not tested here" and entry["reason"]
    if entry.get("chapter"):
        assert (results.REPO_ROOT / f"{entry['chapter']}.ipynb").exists() or "11_rnn" in entry["chapter"]


@pytest.mark.parametrize("entry", [e for e in ENTRIES if "check" in e], ids=lambda e: e["id"])
def test_tested_claims_are_judged_from_committed_results(entry):
    record = results.load(results.result_path(entry["result"], "cpu", 0))
    verdict = claims.CHECKS[entry["check"]](record)
    assert verdict.status in claims.STATUSES and verdict.evidence


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


def test_unknown_status_is_refused():
    with pytest.raises(ValueError, match="status must be one of"):
        claims.Verdict("sort of", "no")


def _fig6_record(ln_nll, bn_nll):
    def log(variant, nll):
        return {"spec": {"kind": "main", "variant": variant, "batch_size": 128, "seed": 0},
                "epoch": list(range(1, len(nll) + 1)), "train_nll": nll, "test_error": [0.02] * len(nll)}
    return {"params": {"main_batch_sizes": {"128": len(ln_nll)}},
            "data": {"runs": {"ln": log("layernorm", ln_nll), "bn": log("batchnorm", bn_nll)}}}


@pytest.mark.parametrize("ln,bn,status", [
    ([0.5, 0.05, 0.005, 0.0005], [0.5, 0.2, 0.05, 0.005], "reproduced"),          # LN first everywhere
    ([0.5, 0.05, 0.005, 0.0005], [0.5, 0.05, 0.05, 0.005], "reproduced"),         # one tie, no loss
    ([0.5, 0.2, 0.005, 0.0005], [0.05, 0.05, 0.05, 0.005], "partly reproduced"),  # a win and a loss
    ([0.5, 0.2, 0.05, 0.05], [0.05, 0.005, 0.0005, 0.0005], "not reproduced"),    # BN first everywhere
])
def test_h4_counts_wins_ties_and_losses(ln, bn, status):
    assert claims.h4_faster_convergence(_fig6_record(ln, bn)).status == status
