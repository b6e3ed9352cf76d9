"""The benchmark experiment: its naive reference is correct, its pass profile is sound, its record is valid."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

import lnlib.numpy as lnp
from lnlib import bench as bench_cli
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


# --- the GPU path (run here on the CPU: the code is the same, only the device and the synchronization differ)

TINY = {"shapes": [[8, 16]], "repeats": 1, "min_seconds": 1e-4, "train_steps": 1}


@pytest.fixture(scope="module")
def device_rows():
    return bench.gpu_rows(TINY, torch.device("cpu"), np.random.default_rng(0))


def test_gpu_rows_time_a_device_copy_the_torch_rows_and_the_training_step(device_rows):
    impls = {(row["norm"], row["direction"], row["impl"]) for row in device_rows}
    assert {("copy", "forward", "torch copy_ (GPU)"), ("copy", "backward", "torch.add 2R1W (GPU)"),
            ("layer norm", "forward+backward", "lnlib.torch (GPU)"), ("layer norm", "forward+backward", "torch F (GPU)"),
            ("batch norm", "forward+backward", "lnlib.torch native=False (GPU)")} <= impls
    steps = {(tuple(row["shape"]), row["impl"]) for row in device_rows if row["direction"] == "training step"}
    assert steps == {((bs, 1000), impl + " (GPU)") for bs in (4, 128)
                     for impl in ("lnlib.torch.LayerNorm", "torch.nn.LayerNorm")}
    assert all(row["seconds"] > 0 and row["impl"].endswith(" (GPU)") for row in device_rows)


def test_the_gpu_profile_refuses_to_run_without_cuda():
    with pytest.raises(ValueError, match="needs a CUDA device"):
        bench.run(bench.PROFILES["gpu"], seed=0, device="cpu", progress=False)


def test_figure6_epochs_follow_the_plan_of_the_paper_profile():
    paper = {"sweep_lrs": [3e-4, 1e-3, 3e-3], "sweep_activations": ["relu", "tanh"], "sweep_epochs": 3,
             "main_batch_sizes": {"128": 60, "4": 60}, "seeds": 3, "sweep_batch_sizes": [1, 2, 4, 8, 32, 128, 256],
             "batch_sweep_epochs": 10}
    # sweep 3 variants x 2 x 3 x 3 epochs at 128; main 3 seeds x 3 variants x 60 at 128 and 4; batch sweep
    # 2 variants x 10 epochs at each size, batch norm skipping size 1
    assert bench.fig6_epochs(paper) == {128: 54 + 540 + 20, 4: 540 + 20, 1: 10, 2: 20, 8: 20, 32: 20, 256: 20}
    with pytest.raises(TypeError):
        bench.fig6_epochs([paper])


def test_figure6_projection_prices_each_epoch_at_the_interpolated_step(device_rows):
    from lnlib.experiments import fig6_mnist

    projection = bench.fig6_projection(device_rows)
    per = projection["per_batch_size"]
    t4, t128 = (per[bs]["seconds_per_step"]["lnlib.torch.LayerNorm"] for bs in ("4", "128"))
    assert per["4"]["seconds_per_epoch"]["lnlib.torch.LayerNorm"] == pytest.approx(t4 * (55_000 // 4))
    paper = fig6_mnist.PROFILES["paper"]

    def step(bs):
        return t4 + (t128 - t4) * (max(bs, 4) - 4) / 124

    expected = sum(e * (paper["train_cases"] // bs) * step(bs) for bs, e in bench.fig6_epochs(paper).items())
    assert projection["paper"]["training_seconds"] == pytest.approx(expected)
    with pytest.raises(ValueError, match="no training-step rows"):
        bench.fig6_projection([row for row in device_rows if row["direction"] != "training step"])


def test_peak_bandwidth_from_the_datasheet_or_the_memory_clock():
    assert bench.peak_bandwidth("NVIDIA H200") == (4800.0, "datasheet")
    assert bench.peak_bandwidth("NVIDIA H100 PCIe") == (2000.0, "datasheet")  # not the SXM part's 3350
    assert bench.peak_bandwidth("Tesla T4") == (320.0, "datasheet")
    gbs, source = bench.peak_bandwidth("Some GPU", memory_clock_khz=1_000_000, bus_width_bits=1024)
    assert (gbs, source) == (256.0, "device properties")  # 2 transfers x 1 GHz x 128 bytes
    assert bench.peak_bandwidth("Some GPU") == (None, "unknown")
    with pytest.raises(TypeError):
        bench.peak_bandwidth(None)


def test_summary_of_a_gpu_record_uses_the_device_copy_and_reports_the_projection(device_rows):
    gpu = {"name": "NVIDIA H200", "capability": "9.0", "multiprocessors": 132, "memory_gib": 139.8,
           "torch": "2.11.0", "cuda": "13.0", "cudnn": 91000, "peak_bandwidth_gbs": 4800.0,
           "peak_bandwidth_source": "datasheet", "fig6": bench.fig6_projection(device_rows)}
    text = bench_cli.summary({"data": {"rows": device_rows, "gpu": gpu}})
    assert "GPU: NVIDIA H200" in text and "peak memory bandwidth 4800 GB/s (datasheet)" in text
    assert "Figure 6 MLP training step, batch 4" in text and "Figure 6 paper profile on this GPU, projected" in text
    copy = bench.lookup(device_rows, [8, 16], "copy", "forward", "torch copy_ (GPU)")
    ours = next(r for r in device_rows if r["impl"] == "lnlib.torch (GPU)" and r["direction"] == "forward"
                and r["norm"] == "layer norm")
    line = next(ln for ln in text.splitlines() if ln.startswith("8x16") and "lnlib.torch (GPU)" in ln
                and " forward " in ln and "layer norm" in ln)
    assert line.split()[-1] == f"{copy / ours['seconds']:.2f}"  # of copy BW: the GPU copy, not np.copyto
