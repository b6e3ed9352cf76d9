"""The benchmark experiment: its naive reference is correct, its pass profile is sound, its record is valid."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

import lnlib.numpy as lnp
from lnlib import experiments, results
from lnlib.experiments import bench


@pytest.mark.parametrize("axis", [0, 1])
def test_the_naive_baseline_computes_what_lnlib_computes(axis):
    # a benchmark against a wrong baseline would be meaningless, so the naive version is checked too
    rng = np.random.default_rng(0)
    x, dy = rng.standard_normal((6, 5)), rng.standard_normal((6, 5))
    size = x.shape[axis]
    shape = (size, 1) if axis == 0 else (size,)
    g, b = rng.standard_normal(shape), rng.standard_normal(shape)
    np.testing.assert_allclose(bench.naive_layer_norm(x, g, b, axis),
                               lnp.layer_norm(x, g, b, axis=axis, eps=bench.EPS), rtol=0, atol=1e-12)
    dx, dg, db = bench.naive_layer_norm_backward(dy, x, g, axis)
    ref_dx, ref_dg, ref_db = lnp.layer_norm_backward(dy, x, g, b, axis=axis, eps=bench.EPS)
    np.testing.assert_allclose(dx, ref_dx, rtol=0, atol=1e-12)
    np.testing.assert_allclose(dg.reshape(ref_dg.shape), ref_dg, rtol=0, atol=1e-12)
    np.testing.assert_allclose(db.reshape(ref_db.shape), ref_db, rtol=0, atol=1e-12)


def test_pass_profile_times_every_pass_without_overflow():
    params = {"repeats": 3, "min_seconds": 1e-4}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # repeated in-place passes must stay finite
        profile = bench.pass_profile((32, 100), params, np.random.default_rng(0))
    assert profile["shape"] == [32, 100]
    assert [len(profile[k]) for k in ("standardize", "affine", "gradient")] == [4, 2, 9]
    times = [p["seconds"] for k in ("standardize", "affine", "gradient") for p in profile[k]]
    assert all(math.isfinite(t) and t > 0 for t in times + [profile["copy_seconds"]])


def test_traffic_and_lookup_read_rows():
    row = {"shape": [4, 8], "norm": "layer norm", "direction": "backward", "impl": "x", "seconds": 2.0}
    assert bench.traffic_bytes(row) == 12 * 4 * 8
    assert bench.lookup([row], [4, 8], "layer norm", "backward", "x") == 2.0
    assert bench.lookup([row], [4, 8], "layer norm", "forward", "x") is None


def test_smoke_benchmark_writes_a_valid_record(tmp_path, monkeypatch):
    monkeypatch.setenv("LNLIB_RESULTS_DIR", str(tmp_path))
    record = experiments.run(bench, profile="smoke", seed=0, device="cpu", progress=False)
    loaded = results.load(results.result_path("bench", "smoke", 0))
    assert loaded["data"]["passes"]["shape"] == bench.PROFILES["smoke"]["shapes"][0]
    impls = {row["impl"] for row in record["data"]["rows"]}
    assert {"lnlib.numpy", "naive numpy", "torch F", "lnlib.torch", "np.copyto"} <= impls
    assert all(row["seconds"] > 0 for row in record["data"]["rows"])


def test_interleaved_timing_takes_turns_and_reports_per_call_medians():
    order = []
    medians = bench.interleaved_seconds([lambda: order.append("a"), lambda: order.append("b")], repeats=3, loop=2)
    # one warm-up each, then loops in turns: a b, b a, a b
    assert order == ["a", "b"] + ["a", "a", "b", "b"] + ["b", "b", "a", "a"] + ["a", "a", "b", "b"]
    assert len(medians) == 2 and all(m >= 0 for m in medians)
