"""Result files: atomic writes, provenance, schema validation, and the chapters' load-or-run entry point."""

from __future__ import annotations

import json
import os
import platform

import pytest

from lnlib import experiments, results
from lnlib.experiments import bn_batch_size


@pytest.fixture
def results_in_tmp(tmp_path, monkeypatch):
    monkeypatch.setenv("LNLIB_RESULTS_DIR", str(tmp_path))
    return tmp_path


def test_smoke_run_writes_a_valid_record_with_provenance(results_in_tmp):
    record = experiments.run(bn_batch_size, profile="smoke", seed=3, device="cpu", progress=False)
    path = results_in_tmp / "bn_batch_size-smoke-seed3.json"
    assert path.exists() and not list(results_in_tmp.glob(".*.tmp"))
    loaded = results.load(path)
    assert loaded == json.loads(json.dumps(record))
    prov = loaded["provenance"]
    assert prov["device"].startswith("cpu") and prov["wall_time_s"] >= 0
    assert {"python", "numpy", "lnlib"} <= set(prov["versions"])
    assert loaded["params"] == bn_batch_size.PROFILES["smoke"]
    assert len(loaded["data"]["rms_deviation"]) == len(loaded["params"]["batch_sizes"])


def test_same_seed_gives_the_same_data(results_in_tmp):
    a = experiments.run(bn_batch_size, profile="smoke", seed=1, device="cpu", progress=False, save=False)
    b = experiments.run(bn_batch_size, profile="smoke", seed=1, device="cpu", progress=False, save=False)
    c = experiments.run(bn_batch_size, profile="smoke", seed=2, device="cpu", progress=False, save=False)
    assert a["data"] == b["data"] and a["data"] != c["data"]


def test_load_or_run_loads_without_recomputing(results_in_tmp, monkeypatch):
    experiments.run(bn_batch_size, profile="smoke", seed=0, device="cpu", progress=False)
    monkeypatch.setattr(bn_batch_size, "run", lambda *a, **k: pytest.fail("recomputed although recompute=False"))
    record = experiments.load_or_run(bn_batch_size, profile="smoke", recompute=False)
    assert record["profile"] == "smoke"


def test_load_or_run_without_a_stored_result_says_how_to_make_one(results_in_tmp):
    with pytest.raises(results.ResultFileError, match="recompute=True"):
        experiments.load_or_run(bn_batch_size, profile="paper", recompute=False, seed=99)


def test_unknown_profile_is_refused():
    with pytest.raises(ValueError, match=r"profile must be one of \['cpu', 'paper', 'smoke'\]"):
        experiments.load_or_run(bn_batch_size, profile="huge", recompute=False)


@pytest.mark.parametrize("content,message", [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "JSON object"),
    ('{"schema_version": 1}', "missing key 'experiment'"),
])
def test_malformed_files_give_a_clear_error(tmp_path, content, message):
    path = tmp_path / "broken.json"
    path.write_text(content)
    with pytest.raises(results.ResultFileError, match=message) as info:
        results.load(path)
    assert str(path) in str(info.value)


def test_truncated_file_is_detected(results_in_tmp):
    path = results.save(experiments.run(bn_batch_size, profile="smoke", seed=0, device="cpu", progress=False,
                                        save=False))
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(results.ResultFileError, match="not valid JSON"):
        results.load(path)


def test_wrong_types_and_versions_are_detected(results_in_tmp):
    record = experiments.run(bn_batch_size, profile="smoke", seed=0, device="cpu", progress=False, save=False)
    for key, value, message in [("seed", "0", "'seed' should be int"), ("schema_version", 99, "schema_version 99"),
                                ("data", [], "'data' should be dict")]:
        broken = {**record, key: value}
        with pytest.raises(results.ResultFileError, match=message):
            results.validate(broken, source="test")
    del record["provenance"]["git_commit"]
    with pytest.raises(results.ResultFileError, match="provenance lacks 'git_commit'"):
        results.validate(record, source="test")


def test_failed_write_leaves_the_old_file_intact(tmp_path):
    path = tmp_path / "r.json"
    results.write_json_atomic(path, {"a": 1})
    with pytest.raises(ValueError):
        results.write_json_atomic(path, {"a": float("nan")})  # NaN is not JSON; refused mid-write
    assert json.loads(path.read_text()) == {"a": 1}
    assert list(tmp_path.iterdir()) == [path]


def test_committed_results_are_valid():
    committed = sorted((results.REPO_ROOT / "data" / "results").glob("*.json"))
    assert committed, "data/results/ holds no result files"
    for path in committed:
        record = results.load(path)
        assert path.name == f"{record['experiment']}-{record['profile']}-seed{record['seed']}.json"
        assert record["provenance"]["git_commit"], f"{path.name} has no git commit in its provenance"


def test_batch_dependence_smoke_run_measures_what_the_chapter_claims(results_in_tmp):
    from lnlib.experiments import batch_dependence

    data = experiments.run(batch_dependence, profile="smoke", seed=0, device="cpu", progress=False)["data"]
    only, ln_net, bn_net = data["normalization_only"], data["layer_norm_network"], data["batch_norm_network"]
    assert only["layer_norm_float64"] == [0.0] * len(data["batch_sizes"])
    assert only["batch_norm_float32"][0] is None and min(only["batch_norm_float32"][1:]) > 0.01
    assert ln_net["mode_change"] == [0.0] * len(data["batch_sizes"])
    assert max(ln_net["train_vs_online"]) < 1e-5
    assert bn_net["mode_change"][0] is None and min(bn_net["mode_change"][1:]) > 1e-3


@pytest.mark.parametrize("name,value,message", [
    ("recompute", "false", r"recompute must be True or False .*got 'false' \(str\)"),
    ("recompute", 0, r"recompute must be True or False"),
    ("seed", "0", r"seed must be an int"),
    ("seed", True, r"seed must be an int"),
    ("device", None, r"device must be 'auto', 'cpu'"),
])
def test_chapter_parameters_of_the_wrong_type_are_refused(results_in_tmp, monkeypatch, name, value, message):
    monkeypatch.setattr(bn_batch_size, "run", lambda *a, **k: pytest.fail("ran although a parameter was wrong"))
    kwargs = {"profile": "smoke", "recompute": False, "seed": 0, "device": "cpu", name: value}
    with pytest.raises(TypeError, match=message):
        experiments.load_or_run(bn_batch_size, **kwargs)


def test_nan_tokens_and_foreign_contents_are_refused(results_in_tmp):
    record = experiments.run(bn_batch_size, profile="smoke", seed=0, device="cpu", progress=False)
    path = results.result_path("bn_batch_size", "smoke", 0)
    text = path.read_text()
    for token in ("NaN", "Infinity", "-Infinity"):
        path.write_text(text.replace('"seed": 0', f'"seed": {token}', 1))
        with pytest.raises(results.ResultFileError, match=f"the token {token} is not JSON"):
            results.load(path)
    for key, value in (("profile", "cpu"), ("experiment", "invariance"), ("seed", 3)):
        results.write_json_atomic(path, {**record, key: value})
        with pytest.raises(results.ResultFileError, match=f"its contents say {key}"):
            results.load_result("bn_batch_size", "smoke", 0)
    path.unlink()
    with pytest.raises(results.MissingResultError, match="no stored result"):
        results.load_result("bn_batch_size", "smoke", 0)


def test_an_installed_lnlib_never_writes_into_its_installation(tmp_path, monkeypatch):
    """lnlib imported from a folder without data/ (site-packages): results and checkpoints go to the clone
    the user works in, or under the working directory; never beside the package."""
    from lnlib.experiments import training

    site = tmp_path / "site-packages"
    site.mkdir()
    monkeypatch.setattr(results, "REPO_ROOT", site)
    monkeypatch.delenv("LNLIB_RESULTS_DIR", raising=False)
    monkeypatch.delenv("LNLIB_CHECKPOINT_DIR", raising=False)
    elsewhere = tmp_path / "work"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert results.checkout_root() is None
    assert results.results_dir() == elsewhere / "data" / "results"
    assert training.run_folder("fig6_mnist", "smoke", 0) == elsewhere / "_build" / "checkpoints" / "fig6_mnist-smoke-seed0"
    clone = tmp_path / "clone"
    (clone / "data" / "results").mkdir(parents=True)
    (clone / "chapters").mkdir()
    monkeypatch.chdir(clone / "chapters")
    assert results.checkout_root() == clone and results.results_dir() == clone / "data" / "results"
    with pytest.raises(results.MissingResultError, match="LNLIB_RESULTS_DIR"):
        results.load_result("bn_batch_size", "smoke", 0)


def test_rounding_level_errors_print_as_a_bound():
    from lnlib import report

    assert report.rounding(4.4e-16) == "<1e-13" and report.rounding(0.0) == "<1e-13"
    assert report.rounding(2.7e-8) == "2.7e-08" and report.rounding(3.3e-13, floor=1e-11) == "<1e-11"
    assert report.rounding(1.62e-6, 2) == "1.62e-06"


def test_a_verdict_prints_its_status_then_one_comparison_per_part():
    from lnlib import report

    from lnlib.claims import Verdict

    text = report.verdict("H14a", Verdict("reproduced", "5 seeds; 3 reproduced of 3 comparisons",
                                          "[reproduced] epoch 1: +0.48; [reproduced] epoch 6: +0.32"))
    assert text.splitlines() == ["H14a reproduced: 5 seeds; 3 reproduced of 3 comparisons.",
                                 "  [reproduced] epoch 1: +0.48", "  [reproduced] epoch 6: +0.32"]
    long = report.verdict("H", Verdict("not reproduced", "x " * 60, "a" * 10), width=40)
    assert all(len(line) <= 40 for line in long.splitlines()) and long.splitlines()[1].startswith("    ")


def test_run_commits_names_each_commit_once_and_flags_local_changes():
    from lnlib import report

    runs = {"a": {"git_commit": "0e4591a0000", "code_modified": False},
            "b": {"git_commit": "0e4591a0000", "code_modified": False},
            "c": {"git_commit": "759b3ab1111", "code_modified": True}}
    assert report.run_commits(runs) == "the runs were trained at 2 commits (0e4591a, 759b3ab +local changes)"
    assert report.run_commits({"a": runs["a"]}) == "the runs were trained at 1 commit (0e4591a)"


def test_a_cpu_is_described_by_its_model_and_the_kernels_torch_uses(tmp_path):
    import torch  # noqa: F401  (the kernels are named only once torch is imported)

    described = results.describe_device("cpu")
    assert described.startswith(f"cpu ({results.cpu_model()}, ") and f"{os.cpu_count()} cores" in described
    assert f"torch kernels {torch.backends.cpu.get_cpu_capability()}" in described
    assert results.cpu_model(tmp_path / "absent") == (platform.processor() or "unknown CPU model")  # not Linux
    (tmp_path / "cpuinfo").write_text("processor\t: 0\nmodel name\t: Some CPU @ 2.0GHz\nflags\t: avx2\n")
    assert results.cpu_model(tmp_path / "cpuinfo") == "Some CPU @ 2.0GHz"
    logged = results.run_provenance("cpu")
    assert set(logged) == {"git_commit", "code_modified", "machine"} and "machine" in results.VOLATILE_KEYS
