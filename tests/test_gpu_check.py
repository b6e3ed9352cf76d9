"""The GPU check's own logic (lnlib.gpu_check), on the CPU: what it runs, what it calls a failure, its summary."""

from __future__ import annotations

import json
import math
import shutil

import pytest

from lnlib import gpu_check, results


def _record(data: dict, device: str = "cpu") -> dict:
    return results.make_record(experiment="x", profile="smoke", seed=0, params={}, data=data, device=device,
                               wall_time_s=1.0)


def test_scrub_replaces_every_non_finite_number_and_says_where():
    problems: list[str] = []
    clean = gpu_check.scrub({"a": [1.0, math.nan], "b": {"c": math.inf, "d": "text"}, "e": 3}, "data", problems)
    assert clean == {"a": [1.0, None], "b": {"c": None, "d": "text"}, "e": 3}
    assert problems == ["data.a[1] = nan", "data.b.c = inf"]
    json.dumps(clean, allow_nan=False)  # strict JSON now


def test_a_record_must_name_the_wanted_device_and_hold_finite_numbers():
    clean, problems = gpu_check.check_record(_record({"loss": [0.5, 0.25]}), want_device="cpu")
    assert problems == [] and clean["data"] == {"loss": [0.5, 0.25]}
    _, problems = gpu_check.check_record(_record({"loss": [0.5]}), want_device="cuda")
    assert len(problems) == 1 and "expected cuda" in problems[0]  # CUDA available, but the run used the CPU
    clean, problems = gpu_check.check_record(_record({"loss": [math.nan]}), want_device="cpu")
    assert clean["data"]["loss"] == [None] and "1 non-finite values: record.data.loss[0] = nan" in problems[0]
    with pytest.raises(ValueError):
        gpu_check.check_record(_record({}), want_device="gpu")


def test_every_experiment_runs_at_smoke_and_the_quick_ones_at_cpu_too():
    names = [module.NAME for module in gpu_check.experiment_modules()]
    assert {"fig6_mnist", "rnn", *gpu_check.QUICK} <= set(names)
    assert "bench" not in names  # a step of its own
    pairs = [(module.NAME, profile) for module, profile in gpu_check.plan(gpu_check.experiment_modules(),
                                                                          quick_cpu=True)]
    assert [p for p in pairs if p[1] == "smoke"] == [(name, "smoke") for name in names]
    assert sorted(name for name, profile in pairs if profile == "cpu") == sorted(gpu_check.QUICK)
    assert all(profile == "smoke" for _, profile in gpu_check.plan(gpu_check.experiment_modules(), quick_cpu=False))


JUNIT = """<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest" tests="5">
<testcase classname="tests.test_forward" name="test_a" time="0.1"/>
<testcase classname="tests.test_bad_input" name="test_e" time="0.0"><skipped type="pytest.skip"
 message="CUDA is available here">skip</skipped></testcase>
<testcase classname="tests.test_cuda_dtypes" name="test_b[float16]" time="0.1"/>
<testcase classname="tests.test_modules" name="test_c" time="0.0"><skipped type="pytest.skip"
 message="needs a CUDA device">skip</skipped></testcase>
<testcase classname="tests.test_forward" name="test_d" time="0.1"><failure message="boom">x</failure></testcase>
</testsuite></testsuites>"""


def test_junit_counts_and_skip_reasons(tmp_path):
    (tmp_path / "j.xml").write_text(JUNIT)
    counts = gpu_check.junit_counts(tmp_path / "j.xml")
    assert (counts["tests"], counts["passed"], counts["failed"], counts["skipped"]) == (5, 2, 1, 2)
    assert counts["skip_reasons"] == {"needs a CUDA device": 1, "CUDA is available here": 1}
    assert counts["cuda_dtype_tests"] == {"passed": 1}


def test_summary_fails_a_cuda_test_skipped_with_cuda_present(tmp_path):
    (tmp_path / gpu_check.JUNIT_FILE).write_text(JUNIT)
    run = {"experiment": "geometry", "profile": "smoke", "status": "ok", "wall_time_s": 0.1,
           "device": "cuda (NVIDIA H200)", "problems": []}
    (tmp_path / gpu_check.EXPERIMENTS_FILE).write_text(json.dumps({"auto_device": "cuda", "runs": [run]}))
    (tmp_path / gpu_check.ERRORS_FILE).write_text(json.dumps({
        "largest": {"float16": {"op": "cell:lstm", "error": 1e-3, "tolerance": 3e-2, "ratio": 0.03}},
        "closest_to_tolerance": {"float16": {"op": "layer_norm", "error": 1e-3, "tolerance": 8e-3, "ratio": 0.12}}}))
    shutil.copy(results.REPO_ROOT / "data" / "results" / "bench-smoke-seed0.json", tmp_path)
    text, ok = gpu_check.summarize(tmp_path, {"tests": 0, "experiments": 0, "bench": 0}, cuda=True)
    assert not ok and text.rstrip().endswith("RESULT: FAIL")
    assert "1 tests skipped for want of CUDA although CUDA is available" in text  # not "CUDA is available here"
    assert "float16   1.00e-03  cell:lstm" in text and "experiments: 1 of 1 runs passed" in text
    assert "tests: 2 passed, 1 failed, 0 errors, 2 skipped of 5" in text
    passing = "\n".join(line for line in JUNIT.splitlines() if "test_d" not in line)
    (tmp_path / gpu_check.JUNIT_FILE).write_text(passing)
    text, ok = gpu_check.summarize(tmp_path, {"tests": 0}, cuda=False)  # a CPU dry run: skips are expected
    assert ok and "no GPU rows" in text and text.rstrip().endswith("RESULT: PASS")


def test_summary_step_arguments_are_checked(tmp_path):
    with pytest.raises(SystemExit):
        gpu_check.main(["summary", "--out", str(tmp_path), "--step", "tests"])
