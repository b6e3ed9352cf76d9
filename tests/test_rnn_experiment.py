"""The recurrent experiment (lnlib.experiments.rnn, chapter 8): data, model, measurements, verdicts,
the smoke record, determinism and resuming."""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest
import torch

from lnlib import claims, experiments, results
from lnlib.experiments import rnn, training
from lnlib.torch import recurrent as rt

#: a profile far below smoke, for the tests that train twice (both tasks, LN and BN cells, a few steps)
TINY = {
    "seeds": 1,
    "seqmnist": {"variants": ["ln_lstm", "bn_lstm"], "standardize": True, "hidden": 8, "batch_size": 8,
                 "steps": 5, "lr": 1e-3, "clip": 1.0, "eval_every": 2, "train_cases": 200, "valid_cases": 40,
                 "final_valid_cases": 40, "test_cases": 40, "norm_cases": 8},
    "adding": {"variants": ["lstm", "bn_lstm"], "length": 6, "hidden": 8, "batch_size": 8, "steps": 5,
               "lr": 1e-3, "clip": 1.0, "eval_every": 2, "valid_cases": 20, "test_cases": 20,
               "factors": [1, 2], "stat_cases": 20, "norm_cases": 8},
}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """The smoke profile, run once for the module, with results and checkpoints in a temporary folder."""
    folder = tmp_path_factory.mktemp("rnn-smoke")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LNLIB_RESULTS_DIR", str(folder / "results"))
        mp.setenv("LNLIB_CHECKPOINT_DIR", str(folder / "checkpoints"))
        record = experiments.run(rnn, profile="smoke", seed=0, device="cpu", progress=False)
        path = results.result_path("rnn", "smoke", 0)
        assert path.exists()
        loaded = results.load(path)
    return record, loaded, folder


# ---------------------------------------------------------------------------------------------------------
# data


def test_adding_batch_has_one_marker_in_each_half_and_the_sum_as_target():
    xs, ys = rnn.adding_batch(500, 10, np.random.default_rng(0))
    assert xs.shape == (10, 500, 2) and ys.shape == (500,) and xs.dtype == ys.dtype == np.float32
    values, markers = xs[..., 0], xs[..., 1]
    assert np.all((values >= 0) & (values < 1))
    assert np.array_equal(markers[:5].sum(0), np.ones(500)) and np.array_equal(markers[5:].sum(0), np.ones(500))
    np.testing.assert_allclose((values * markers).sum(0), ys, rtol=1e-6)
    assert set(np.unique(markers)) == {0.0, 1.0}
    # every position of each half is used
    assert set(np.argmax(markers[:5], axis=0)) == set(range(5))
    assert set(5 + np.argmax(markers[5:], axis=0)) == set(range(5, 10))
    again = rnn.adding_batch(500, 10, np.random.default_rng(0))
    assert np.array_equal(xs, again[0]) and np.array_equal(ys, again[1])


def test_adding_batch_trivial_error_is_one_sixth():
    _, ys = rnn.adding_batch(200_000, 4, np.random.default_rng(1))
    assert abs(float(np.mean((ys - 1.0) ** 2)) - rnn.ADDING_TRIVIAL_MSE) < 2e-3


@pytest.mark.parametrize("kwargs, match", [
    ({"n": 0}, "n must be a positive int"),
    ({"n": 2.0}, "n must be a positive int"),
    ({"length": 1}, "length must be an int >= 2"),
    ({"length": True}, "length must be an int >= 2"),
])
def test_adding_batch_rejects_bad_sizes(kwargs, match):
    args = {"n": 4, "length": 6, "rng": np.random.default_rng(0)} | kwargs
    with pytest.raises(ValueError, match=match):
        rnn.adding_batch(**args)


def test_adding_batch_needs_a_generator():
    with pytest.raises(TypeError, match="rng must be a numpy.random.Generator, got int"):
        rnn.adding_batch(4, 6, 0)


def test_mnist_rows_makes_row_t_the_input_at_step_t():
    images = torch.arange(3 * 784, dtype=torch.float32).reshape(3, 784)
    xs = rnn.mnist_rows(images)
    assert xs.shape == (28, 3, 28) and xs.is_contiguous()
    assert torch.equal(xs[5, 2], images[2].reshape(28, 28)[5])
    with pytest.raises(ValueError, match=r"images must have shape \(N, 784\), got \(3, 28, 28\)"):
        rnn.mnist_rows(images.reshape(3, 28, 28))


def test_pixel_statistics():
    mean, std = rnn.pixel_statistics(np.array([[0.0, 1.0], [1.0, 0.0]], dtype=np.float32))
    assert (mean, std) == (0.5, 0.5)
    with pytest.raises(ValueError, match="images must not be empty"):
        rnn.pixel_statistics(np.zeros((0, 784)))


# ---------------------------------------------------------------------------------------------------------
# model and measurements


def test_variants_of_a_task_share_their_initial_weights():
    models = {v: rnn.SequenceModel(v, 5, 6, 3, max_steps=4, init_seed=7) for v in rnn.VARIANTS}
    for variant, model in models.items():  # the LSTMs share theirs, and so do the plain RNNs and the GRUs
        first = models[next((f for f in ("rnn", "gru") if f in variant), "lstm")]
        for name in ("W_x", "W_h"):
            assert torch.equal(getattr(model.cell, name), getattr(first.cell, name)), (variant, name)
        assert torch.equal(model.readout.weight, first.readout.weight)
    first = models["lstm"]
    assert torch.all(models["ln_rnn"].cell.gain == 1.0)
    assert models["ln_lstm_codebias"].cell.bias_in_input_ln and not models["ln_lstm"].cell.bias_in_input_ln
    assert torch.all(models["ln_lstm"].cell.gain_h == 1.0)
    assert torch.all(models["ln_lstm_gain0.1"].cell.gain_c == 0.1)
    assert torch.all(models["bn_lstm"].cell.gain_x == 0.1)
    assert torch.all(models["bn_lstm_gain1"].cell.gain_x == 1.0)
    assert isinstance(models["bn_lstm"].cell, rt.BNLSTMCell) and models["bn_lstm"].cell.max_steps == 4
    other = rnn.SequenceModel("lstm", 5, 6, 3, max_steps=4, init_seed=8)
    assert not torch.equal(other.cell.W_h, first.cell.W_h)
    with pytest.raises(ValueError, match="variant must be one of"):
        rnn.SequenceModel("peephole_lstm", 5, 6, 3, max_steps=4, init_seed=7)


def test_matched_statistics_are_the_statistics_of_the_given_batch():
    torch.manual_seed(0)
    model = rnn.SequenceModel("bn_lstm", 2, 4, 1, max_steps=3, init_seed=1)
    model.train()
    model(torch.rand(3, 16, 2))  # trained on 3 steps
    before = copy.deepcopy(model.state_dict())
    xs = torch.rand(7, 50, 2)
    matched = rnn.with_matched_statistics(model, xs)
    assert not matched.training and int(matched.cell.steps_tracked) == 7 and matched.cell.max_steps == 7
    ax = xs[6] @ model.cell.W_x
    torch.testing.assert_close(matched.cell.running_mean_x[6], ax.mean(0).detach())
    torch.testing.assert_close(matched.cell.running_var_x[6], ax.var(0, correction=1).detach())
    for key, value in model.state_dict().items():  # the model itself is untouched
        assert torch.equal(value, before[key]), key
    assert int(model.cell.steps_tracked) == 3
    with pytest.raises(ValueError, match="needs a BN-LSTM model"):
        rnn.with_matched_statistics(rnn.SequenceModel("ln_lstm", 2, 4, 1, max_steps=3, init_seed=1), xs)


def test_gradient_norms_match_autograd_and_leave_the_model_alone():
    model = rnn.SequenceModel("lstm", 3, 5, 2, max_steps=4, init_seed=3)
    xs, ys = torch.randn(4, 6, 3), torch.randn(6)

    def loss_fn(out, target):
        return ((out[:, 0] - target) ** 2).mean()

    norms = rnn.state_and_gradient_norms(model, xs, ys, loss_fn)
    assert all(p.grad is None for p in model.parameters())
    assert set(norms) == {"h", "c", "grad_h", "grad_c", "param_grad_norm"}
    assert all(len(norms[k]) == 4 for k in ("h", "c", "grad_h", "grad_c"))
    hs, _ = model.rnn(xs)
    h_last = hs[-1].detach().requires_grad_(True)
    loss_fn(model.readout(h_last), ys).backward()
    assert math.isclose(norms["grad_h"][-1], float(h_last.grad.norm(dim=-1).mean()), rel_tol=1e-5)
    assert math.isclose(norms["h"][0], float(hs[0].detach().norm(dim=-1).mean()), rel_tol=1e-6)
    params = list(model.parameters())
    grads = torch.autograd.grad(loss_fn(model(xs), ys), params)
    assert math.isclose(norms["param_grad_norm"], float(torch.cat([g.flatten() for g in grads]).norm()),
                        rel_tol=1e-5)


def test_layer_norm_of_zero_rows_makes_the_first_gradient_overflow():
    """The reason sequential MNIST is standardized: blank rows are zeros, and LN of a zero vector has
    derivative gain/sqrt(eps); several such steps in a row overflow float32."""
    torch.manual_seed(0)
    xs = torch.cat([torch.zeros(8, 16, 28), torch.rand(4, 16, 28)])
    ys = torch.randint(0, 10, (16,))
    ln = rnn.SequenceModel("ln_lstm", 28, 32, 10, max_steps=12, init_seed=0)
    lstm = rnn.SequenceModel("lstm", 28, 32, 10, max_steps=12, init_seed=0)
    raw_ln = rnn.state_and_gradient_norms(ln, xs, ys, torch.nn.functional.cross_entropy)
    raw_lstm = rnn.state_and_gradient_norms(lstm, xs, ys, torch.nn.functional.cross_entropy)
    assert not math.isfinite(raw_ln["param_grad_norm"]) and math.isfinite(raw_lstm["param_grad_norm"])
    assert raw_ln["h"][:8] == [0.0] * 8  # the state stays exactly zero through the blank steps
    shifted = rnn.state_and_gradient_norms(ln, xs - 0.4, ys, torch.nn.functional.cross_entropy)
    assert math.isfinite(shifted["param_grad_norm"]) and shifted["param_grad_norm"] < 1e3


def test_evaluate_computes_error_and_squared_error():
    model = rnn.SequenceModel("lstm", 2, 4, 1, max_steps=3, init_seed=0)
    xs, ys = torch.rand(3, 10, 2), torch.rand(10)
    with torch.no_grad():
        expected = float(((model(xs)[:, 0] - ys) ** 2).mean())
    assert math.isclose(rnn.evaluate(model, "adding", xs, ys, batch=3)["mse"], expected, rel_tol=1e-6)
    clf = rnn.SequenceModel("lstm", 2, 4, 3, max_steps=3, init_seed=0)
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2, 0])
    with torch.no_grad():
        wrong = int((clf(xs).argmax(1) != labels).sum()) / 10
    assert math.isclose(rnn.evaluate(clf, "seqmnist", xs, labels, batch=4)["error"], wrong)
    with pytest.raises(ValueError, match="task must be one of"):
        rnn.evaluate(clf, "mnist", xs, labels)


# ---------------------------------------------------------------------------------------------------------
# helpers of the verdicts


def test_decades_steps_to_reach_and_median():
    assert claims.decades([1.0, 10.0, 1000.0]) == pytest.approx(3.0)
    assert claims.decades([0.0, 1.0]) == math.inf and claims.decades([1.0, None]) == math.inf
    assert claims.decades([1.0, float("nan")]) == math.inf
    with pytest.raises(ValueError, match="at least one value"):
        claims.decades([])
    with pytest.raises(ValueError, match="non-negative"):
        claims.decades([-1.0, 1.0])
    log = {"step": [10, 20, 30], "valid": [0.5, 0.2, 0.1]}
    assert claims.steps_to_reach(log, 0.2) == 20 and claims.steps_to_reach(log, 0.05) is None
    assert claims.median_or_none([10, None, 30]) == 30 and claims.median_or_none([None, None, 10]) is None


def test_plan_assigns_every_run_once_and_keys_follow_the_parameters():
    all_specs = rnn.specs(rnn.PROFILES["cpu"], 0)
    assert len(all_specs) == 5 * (10 + 5 + 3)  # five seeds of every comparison
    shares = rnn.assign(all_specs, 2)
    keys = sorted(rnn.run_key(s) for share in shares for s in share)
    assert keys == sorted(rnn.run_key(s) for s in all_specs) and len(set(keys)) == len(all_specs)
    changed = dict(all_specs[0], lr=3e-3)
    assert rnn.run_key(changed) != rnn.run_key(all_specs[0])
    assert rnn.task_seed("adding", 0) != rnn.task_seed("seqmnist", 0) != rnn.task_seed("adding", 1)
    with pytest.raises(ValueError, match="task must be one of"):
        rnn.make_spec("copying", "lstm", 0, {})
    bad = copy.deepcopy(TINY)
    bad["adding"]["variants"] = ["lstm", "peephole_lstm"]
    with pytest.raises(ValueError, match="variant must be one of"):
        rnn._check_params(bad)


# ---------------------------------------------------------------------------------------------------------
# the smoke record


def test_smoke_run_writes_a_valid_record(smoke):
    record, loaded, _ = smoke
    assert loaded["experiment"] == "rnn" and loaded["profile"] == "smoke"
    assert results.without_volatile(loaded) == results.without_volatile(json.loads(json.dumps(record)))
    runs = loaded["data"]["runs"]
    params = rnn.PROFILES["smoke"]
    assert len(runs) == sum(len(params[task]["variants"]) for task in rnn.TASKS)
    for log in runs.values():
        task = log["spec"]["task"]
        p = params[task]
        assert log["step"] == list(range(p["eval_every"], p["steps"] + 1, p["eval_every"]))
        assert len(log["train_loss"]) == len(log["valid"]) == len(log["grad_norm"]) == len(log["step"])
        assert not log["diverged"]
        length = 28 if task == "seqmnist" else p["length"]
        for which in ("norms_init", "norms_trained"):
            assert len(log[which]["grad_h"]) == length
            assert ("grad_c" in log[which]) == ("lstm" in log["spec"]["variant"])  # only LSTMs have a cell state
        if task == "seqmnist":
            assert 0.0 <= log["test"]["error"] <= 1.0 and "norms_init_raw_pixels" in log
            assert abs(log["pixel_mean"] - 0.13) < 0.01
        else:
            assert log["lengths"] == [f * p["length"] for f in p["factors"]]
            assert len(log["test_mse"]) == len(p["factors"])
            assert len(log["long_norms"]["h"]) == p["length"] * p["factors"][-1]
            is_bn = log["spec"]["variant"] == "bn_lstm"
            assert bool(log["test_mse_matched"]) == is_bn and ("long_norms_matched" in log) == is_bn
    for name in ("H8", "H9", "H11", "H12", "H13a", "H13b"):
        verdict = claims.CHECKS[name](loaded)
        assert verdict.status in claims.STATUSES and verdict.evidence
        assert verdict.status != "reproduced"  # one seed


def test_rerunning_assembles_the_finished_runs_without_training(smoke, monkeypatch):
    record, _, folder = smoke
    monkeypatch.setenv("LNLIB_CHECKPOINT_DIR", str(folder / "checkpoints"))

    def no_training(*args, **kwargs):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(rnn, "SequenceModel", no_training)
    again = rnn.run(rnn.PROFILES["smoke"], profile="smoke", seed=0, device="cpu", progress=False)
    assert (results.without_volatile(json.loads(json.dumps(again)))
            == results.without_volatile(json.loads(json.dumps(record["data"]))))


def test_same_seed_same_data_and_another_seed_other_data(tmp_path, monkeypatch):
    data = []
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        monkeypatch.setenv("LNLIB_CHECKPOINT_DIR", str(tmp_path / name))
        with training.run_environment("cpu", seed=seed, threads=1):
            data.append(rnn.run(copy.deepcopy(TINY), profile="tiny", seed=seed, device="cpu", progress=False))
    assert results.without_volatile(data[0]) == results.without_volatile(data[1])
    first = [log["valid"] for log in data[0]["runs"].values()]
    other = [log["valid"] for log in data[2]["runs"].values()]
    assert first != other


def test_an_interrupted_run_resumes_and_ends_identical(tmp_path, monkeypatch):
    from lnlib.data import mnist

    spec = rnn.make_spec("seqmnist", "bn_lstm", 0, TINY["seqmnist"])
    data = mnist.load()
    reference = rnn.train_run(spec, data, tmp_path / "uninterrupted", progress=False)

    saved = training.save_checkpoint
    calls = []

    class Killed(Exception):
        pass

    def save_then_die(path, spec, state):
        saved(path, spec, state)
        calls.append(state["step"])
        if len(calls) == 1:
            raise Killed

    monkeypatch.setattr(training, "save_checkpoint", save_then_die)
    folder = tmp_path / "interrupted"
    with pytest.raises(Killed):
        rnn.train_run(spec, data, folder, progress=False)
    assert list(folder.glob("*.pt")) and not list(folder.glob("*.json")) and not list(folder.glob("*.lock"))
    resumed = rnn.train_run(spec, data, folder, progress=False)
    assert calls[0] == 2 and calls[1] == 4  # the second process started from the checkpoint of step 2
    assert not list(folder.glob("*.pt")) and not list(folder.glob("*.tmp"))
    assert results.without_volatile(resumed) == results.without_volatile(reference)


# ---------------------------------------------------------------------------------------------------------
# verdicts change with the numbers, under the one rule (claims.compare): paired seeds, ties, >= 3 seeds


def _record(smoke, seeds=3):
    """The smoke record with every run copied to ``seeds`` seeds (the same numbers in each seed)."""
    record = copy.deepcopy(smoke[1])
    runs = {}
    for key, log in record["data"]["runs"].items():
        for seed in range(seeds):
            copied = copy.deepcopy(log)
            copied["spec"]["seed"] = seed
            runs[f"{key}-{seed}"] = copied
    record["data"]["runs"] = runs
    return record


def _logs(record, task, variant):
    return claims.select_rnn(record["data"], task, variant)


def test_h8_follows_the_learning_curves(smoke):
    record = _record(smoke)
    for task in rnn.TASKS:
        for variant in rnn.PROFILES["smoke"][task]["variants"]:
            for log in _logs(record, task, variant):
                fast = variant.startswith(("ln_lstm", "ln_gru"))
                log["valid"] = [0.0 if fast else 1.0] * len(log["valid"])
    assert claims.h8_faster_recurrent_training(record).status == "reproduced"
    one_seed = _record(smoke, seeds=1)
    for task in rnn.TASKS:
        for variant in rnn.PROFILES["smoke"][task]["variants"]:
            for log in _logs(one_seed, task, variant):
                log["valid"] = [0.0 if variant.startswith(("ln_lstm", "ln_gru")) else 1.0] * len(log["valid"])
    verdict = claims.h8_faster_recurrent_training(one_seed)
    assert verdict.status == "partly reproduced" and verdict.evidence.startswith("1 seed;")
    for log in _logs(record, "adding", "lstm"):
        log["valid"] = [0.0] * len(log["valid"])  # both there at the first evaluation: no comparison on adding
    verdict = claims.h8_faster_recurrent_training(record)
    assert verdict.status == "reproduced" and "adding" not in verdict.details.split("beside the claim")[0]
    for log in _logs(record, "adding", "lstm") + _logs(record, "adding", "ln_lstm"):
        log["valid"] = [1.0] + [0.0] * (len(log["valid"]) - 1)  # both there at the second: a tie on adding
    assert claims.h8_faster_recurrent_training(record).status == "partly reproduced"
    for task in rnn.TASKS:
        for log in _logs(record, task, "ln_lstm") + _logs(record, task, "ln_gru"):
            log["valid"] = [1.0] * len(log["valid"])
        for log in _logs(record, task, "lstm") + _logs(record, task, "bn_lstm") + _logs(record, task, "gru"):
            log["valid"] = [0.0] * len(log["valid"])
    verdict = claims.h8_faster_recurrent_training(record)
    assert verdict.status == "not reproduced" and "3 seeds; 0 reproduced, 0 partly" in verdict.evidence
    for task in rnn.TASKS:
        for variant in rnn.VARIANTS:
            for log in _logs(record, task, variant):
                log["valid"] = [1.0] * len(log["valid"])
    assert claims.h8_faster_recurrent_training(record).status == "not tested at this profile"


def test_h8_one_seed_against_makes_it_partly(smoke):
    record = _record(smoke)
    for task in rnn.TASKS:
        for variant in rnn.PROFILES["smoke"][task]["variants"]:
            for log in _logs(record, task, variant):
                log["valid"] = [0.0 if variant.startswith(("ln_lstm", "ln_gru")) else 1.0] * len(log["valid"])
    for variant in ("lstm", "ln_lstm"):  # seed 1: both get there at the second evaluation, a tie
        log = _logs(record, "adding", variant)[1]
        log["valid"] = [1.0] + [0.0] * (len(log["valid"]) - 1)
    verdict = claims.h8_faster_recurrent_training(record)
    assert verdict.status == "partly reproduced" and "2 of 3 seeds in the claimed direction" in verdict.details
    _logs(record, "adding", "ln_lstm")[1]["valid"][0] = 0.0  # LN there at the first: a lower bound of one step
    verdict = claims.h8_faster_recurrent_training(record)  # below the resolution: that seed gives no comparison
    assert "2 of 2 seeds in the claimed direction, 1 without a comparison" in verdict.details


def _set_norms(record, variant, grad, h):
    for task in rnn.TASKS:
        for log in _logs(record, task, variant):
            for which in ("norms_init", "norms_trained"):
                n = len(log[which]["h"])
                log[which]["grad_h"] = [grad(t, n) for t in range(n)]
                log[which]["h"] = [h(t, n) for t in range(n)]


def test_h9_follows_the_norms(smoke):
    record = _record(smoke)
    flat = lambda t, n: 1.0  # noqa: E731
    vanishing = lambda t, n: 10.0 ** (t - n)  # noqa: E731
    _set_norms(record, "ln_rnn", flat, flat)  # the paper's case: plain tanh RNN against eq. 4's LN-RNN
    _set_norms(record, "rnn", vanishing, vanishing)
    _set_norms(record, "ln_lstm", vanishing, vanishing)  # the LSTMs are reported beside it, not judged
    _set_norms(record, "lstm", flat, flat)
    verdict = claims.h9_stable_dynamics(record)
    assert verdict.status == "reproduced" and "LSTM minus LN-LSTM: [not reproduced]" in verdict.details
    _set_norms(record, "rnn", vanishing, flat)  # |h| now ties
    assert claims.h9_stable_dynamics(record).status == "partly reproduced"
    _set_norms(record, "ln_rnn", vanishing, vanishing)
    _set_norms(record, "rnn", flat, flat)
    verdict = claims.h9_stable_dynamics(record)
    assert verdict.status == "not reproduced" and "0 reproduced, 0 partly, 8 not (8 the other way), of 8" in verdict.evidence
    for key in [k for k, log in record["data"]["runs"].items() if log["spec"]["variant"] == "ln_rnn"]:
        del record["data"]["runs"][key]
    assert claims.h9_stable_dynamics(record).status == "not tested at this profile"


def test_h9_all_nan_norms_cannot_be_judged(smoke):
    record = _record(smoke)
    for variant in ("ln_rnn", "rnn"):
        _set_norms(record, variant, lambda t, n: None, lambda t, n: None)  # JSON null: non-finite everywhere
    verdict = claims.h9_stable_dynamics(record)
    assert verdict.status == "could not be judged" and "no seed gave a comparison" in verdict.details


def _final(record, variant, error):
    for log in _logs(record, "seqmnist", variant):
        log["final_valid"]["error"] = error


def test_h12_follows_the_final_errors_of_the_gain_variants(smoke):
    record = _record(smoke)
    _final(record, "ln_lstm", 0.10), _final(record, "ln_lstm_gain0.1", 0.11)
    _final(record, "bn_lstm", 0.10), _final(record, "bn_lstm_gain1", 0.30)
    assert claims.h12_gain_insensitivity(record).status == "reproduced"
    _final(record, "bn_lstm_gain1", 0.105)  # BN now less sensitive than LN
    assert claims.h12_gain_insensitivity(record).status == "partly reproduced"
    _final(record, "ln_lstm", 0.20)  # and LN's gain 1.0 now worse than 0.1
    verdict = claims.h12_gain_insensitivity(record)
    assert verdict.status == "not reproduced" and "LN g1 20.00" in verdict.evidence
    _final(record, "ln_lstm", 0.11)  # a tie between LN's gains: no effect
    assert "[not reproduced] (a)" in claims.h12_gain_insensitivity(record).details
    for log in _logs(record, "seqmnist", "bn_lstm_gain1"):
        del record["data"]["runs"][next(k for k, v in record["data"]["runs"].items() if v is log)]
    assert claims.h12_gain_insensitivity(record).status == "not tested at this profile"


def test_h12_a_diverged_bn_run_counts_as_infinitely_sensitive(smoke):
    record = _record(smoke)
    _final(record, "ln_lstm", 0.10), _final(record, "ln_lstm_gain0.1", 0.11), _final(record, "bn_lstm", 0.10)
    for log in _logs(record, "seqmnist", "bn_lstm_gain1"):
        log["diverged"] = True
        del log["final_valid"]
    verdict = claims.h12_gain_insensitivity(record)
    assert verdict.status == "reproduced" and "+inf" in verdict.details


def _errors(record, task, variant, values, key="test_mse"):
    for log in _logs(record, task, variant):
        log[key] = list(values)


def test_h13b_follows_the_length_errors_of_the_variable_length_runs(smoke):
    record = _record(smoke)
    _errors(record, "adding_var", "ln_lstm", [0.01, 0.02, 0.03, 0.04])
    _errors(record, "adding_var", "bn_lstm", [0.01, 0.1, 0.2, 0.3])
    _errors(record, "adding", "ln_lstm", [0.5, 0.5, 0.5, 0.5])  # the fixed-length task plays no part
    assert claims.h13b_longer_sequences(record).status == "reproduced"
    _errors(record, "adding_var", "ln_lstm", [0.01, 0.02, 0.09, 0.5])  # fails both checks at 4T and 8T
    assert claims.h13b_longer_sequences(record).status == "partly reproduced"
    _errors(record, "adding_var", "ln_lstm", [0.01, 0.2, 0.3, 0.4])
    verdict = claims.h13b_longer_sequences(record)
    assert verdict.status == "not reproduced" and "median MSE LN 0.400, BN 0.300" in verdict.evidence
    assert "LSTM median MSE" in verdict.details


def test_h13a_compares_reused_with_matched_statistics(smoke):
    record = _record(smoke)
    _errors(record, "adding", "bn_lstm", [0.01, 0.1, 0.2, 0.3])
    _errors(record, "adding", "bn_lstm", [0.01, 0.01, 0.02, 0.03], "test_mse_matched")
    assert claims.h13a_missing_statistics(record).status == "reproduced"
    _errors(record, "adding", "bn_lstm", [0.01, 0.01, 0.2, 0.3])  # a tie at 2T
    assert claims.h13a_missing_statistics(record).status == "partly reproduced"
    _errors(record, "adding", "bn_lstm", [0.01, 0.01, 0.02, 0.03])
    verdict = claims.h13a_missing_statistics(record)
    assert verdict.status == "not reproduced" and "reused statistics 0.030, matched 0.030" in verdict.evidence


def test_h11_proxy_compares_final_test_metrics(smoke):
    record = _record(smoke)
    for task in ("seqmnist", "adding", "adding_var"):
        for ln, base in (("ln_lstm", "lstm"), ("ln_rnn", "rnn"), ("ln_gru", "gru")):
            for variant, value in ((ln, 0.1), (base, 0.2)):
                for log in _logs(record, task, variant):
                    if task == "seqmnist":
                        log["test"]["error"] = value
                    else:
                        log["test_mse"][0] = value
    verdict = claims.h11_generalization_proxy(record)
    assert verdict.status == "reproduced" and "proxy" in verdict.evidence
    assert verdict.details.count("[reproduced]") == 6  # no RNNs on adding_var, GRUs on sequential MNIST only
    for log in _logs(record, "seqmnist", "lstm"):
        log["diverged"] = True  # a failed baseline is as bad as can be: still in LN's favour
    assert claims.h11_generalization_proxy(record).status == "reproduced"
    for log in _logs(record, "adding", "ln_rnn"):
        log["test_mse"][0] = 0.3
    assert claims.h11_generalization_proxy(record).status == "partly reproduced"


def test_a_replay_is_the_logged_run_and_compares_float32_with_float64_gradients(tmp_path):
    spec = rnn.make_spec("adding", "bn_lstm", 0, TINY["adding"])
    log = rnn.train_run(spec, None, tmp_path, progress=False)
    replay = rnn.replay_gradient_precision(spec, None, until=4, above=0.0, progress=False)
    assert replay["window_mean_grad_norm"] == log["grad_norm"][:2]  # the same run, bit for bit
    assert [s["step"] for s in replay["steps"]] == [1, 2, 3, 4]  # every step is above a threshold of 0
    assert all(s["relative_difference"] < 1e-3 and abs(s["float32"] / s["float64"] - 1) < 1e-3 for s in replay["steps"])
    assert max(log["grad_norm_max"]) >= max(log["grad_norm"]) > 0  # the largest step is at least the mean
    assert rnn.replay_gradient_precision(spec, None, until=4, above=1e9, progress=False)["steps"] == []
