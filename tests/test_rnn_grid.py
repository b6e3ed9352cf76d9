"""The H10 grid (lnlib.experiments.rnn_grid, chapter 9): its evaluation grid, early stopping, the plan,
and a smoke record the verdict can read."""

from __future__ import annotations

import math

import pytest
import torch

from lnlib import claims, experiments, results
from lnlib.experiments import rnn, rnn_grid

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = dict(rnn_grid.PROFILES["smoke"], lengths=[4, 8], batch_sizes=[2, 4], steps=20)


def test_the_geometric_grid_knows_every_step_count_to_the_same_factor():
    spec = {"steps": 12_000, "eval_every": 10, "evals_per_octave": 8}
    steps = rnn.evaluation_steps(spec)
    assert steps[0] == 10 and steps[-1] == 12_000 and steps == sorted(set(steps))
    ratios = [b / a for a, b in zip(steps[20:-1], steps[21:-1])]  # past the rounding of the first points
    assert all(abs(math.log2(r) - 1 / 8) < 0.02 for r in ratios)
    assert {20, 40, 80, 160, 320, 640, 1280, 2560, 5120, 10240} <= set(steps)  # exact at every doubling
    assert rnn.evaluation_steps({"steps": 7, "eval_every": 3}) == [3, 6, 7]  # the linear grid, as before


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "8"])
def test_a_bad_number_of_evaluations_per_octave_is_refused(bad):
    with pytest.raises(ValueError, match="evals_per_octave"):
        rnn.evaluation_steps({"steps": 100, "eval_every": 10, "evals_per_octave": bad})


def test_the_evaluation_grid_does_not_change_training(tmp_path):
    """The same run evaluated on the linear and on the geometric grid: equal validation errors wherever both
    evaluate (evaluation is a side effect-free forward pass), and the same largest gradient norm."""
    base = rnn_grid.make_spec("ln_lstm", 6, 4, 0, dict(TINY, stop_below=0.0))
    linear = {k: v for k, v in base.items() if k != "evals_per_octave"}
    linear["eval_every"] = 2
    a = rnn.train_run(base, None, tmp_path / "geometric", progress=False)
    b = rnn.train_run(linear, None, tmp_path / "linear", progress=False)
    common = sorted(set(a["step"]) & set(b["step"]))
    assert len(common) >= 3
    assert [a["valid"][a["step"].index(s)] for s in common] == [b["valid"][b["step"].index(s)] for s in common]
    assert max(a["grad_norm_max"]) == max(b["grad_norm_max"]) > 0
    assert "norms_init" not in a and "test_mse" not in a  # curve_only: the learning curve and nothing else


def test_a_run_stops_at_the_first_evaluation_below_stop_below(tmp_path):
    spec = rnn_grid.make_spec("ln_lstm", 4, 4, 0, dict(TINY, steps=200, stop_below=0.15))
    log = rnn.train_run(spec, None, tmp_path, progress=False)
    assert log["stopped_at"] == log["step"][-1] < 200
    assert log["valid"][-1] <= 0.15 and all(v > 0.15 for v in log["valid"][:-1])
    assert not list(tmp_path.glob("*.pt"))  # finished: the checkpoint is gone, the log is there
    assert rnn.train_run(spec, None, tmp_path, progress=False) == log  # read back, not trained again


def test_every_cell_and_seed_is_planned_once_with_paired_variants():
    params = rnn_grid.PROFILES["cpu"]
    specs = rnn_grid.specs(params, 0)
    controls = [s for s in specs if s["variant"] == rnn_grid.CONTROL]
    assert len(specs) - len(controls) == len(params["lengths"]) * len(params["batch_sizes"]) * params["seeds"] * 2
    assert len(controls) == len(params["control_lengths"]) * len(params["control_batch_sizes"]) * params["seeds"]
    specs = [s for s in specs if s["variant"] != rnn_grid.CONTROL]
    assert len({rnn.run_key(s) for s in specs}) == len(specs)
    assert max(params["lengths"]) >= 4 * min(params["lengths"]) and params["seeds"] >= 3
    assert min(params["batch_sizes"]) <= 4 and max(params["batch_sizes"]) >= 64
    lstm = [s for s in specs if s["variant"] == "lstm"]
    ln = [s for s in specs if s["variant"] == "ln_lstm"]
    assert [dict(s, variant=None) for s in lstm] == [dict(s, variant=None) for s in ln]


@pytest.mark.parametrize("length, batch_size", [(1, 4), (8, 0), (8.0, 4), (True, 4)])
def test_make_spec_refuses_bad_cells(length, batch_size):
    with pytest.raises(ValueError, match="length|batch_size"):
        rnn_grid.make_spec("lstm", length, batch_size, 0, TINY)


def test_smoke_record_is_valid_and_judged(tmp_path, monkeypatch):
    monkeypatch.setenv("LNLIB_RESULTS_DIR", str(tmp_path / "results"))
    monkeypatch.setenv("LNLIB_CHECKPOINT_DIR", str(tmp_path / "checkpoints"))
    record = experiments.run(rnn_grid, profile="smoke", seed=0, device="cpu", progress=False)
    loaded = results.load(results.result_path("rnn_grid", "smoke", 0))
    assert len(loaded["data"]["runs"]) == 18 + 4  # and the forget-bias control in the four corners
    speedups = claims.grid_speedups(loaded, 0.15)
    assert set(speedups) == {(t, b) for t in (4, 8, 16) for b in (2, 4, 8)}
    assert claims.h10_long_sequences_small_batches(record).status in claims.STATUSES
    control = claims.grid_speedups(loaded, 0.15, baseline=rnn_grid.CONTROL)
    assert set(control) <= {(4, 2), (4, 8), (16, 2), (16, 8)}
    assert claims.h10_long_sequences_small_batches(record, baseline=rnn_grid.CONTROL).status in claims.STATUSES


def test_the_forget_bias_control_changes_only_the_forget_gate_bias():
    control = rnn.SequenceModel(rnn_grid.CONTROL, 2, 8, 1, max_steps=5, init_seed=3)
    plain = rnn.SequenceModel("lstm", 2, 8, 1, max_steps=5, init_seed=3)
    bias, plain_bias = control.cell.params()["b"].detach(), plain.cell.params()["b"].detach()
    assert (bias[:8] == 1).all() and (bias[8:] == plain_bias[8:]).all()  # gates (f, i, o, g): f first
    assert all(torch.equal(a, b) for (n, a), (_, b) in zip(control.named_parameters(), plain.named_parameters())
               if n != "cell.b")
