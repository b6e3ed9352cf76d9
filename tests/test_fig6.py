"""The Figure 6 experiment: model structure, population statistics, planning, and resuming after SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import lnlib.torch as lnt
from lnlib import claims
from lnlib.experiments import fig6_mnist as fig6
from lnlib.experiments import training

VOLATILE = ("train_seconds", "epoch_seconds")  # wall times differ between any two runs


def test_models_normalize_where_the_paper_says():
    kinds = {v: [type(m).__name__ for m in fig6.make_mlp(v, "relu", 32)] for v in fig6.VARIANTS}
    assert kinds["baseline"] == ["Linear", "ReLU", "Linear", "ReLU", "Linear"]
    assert kinds["batchnorm"].count("BatchNorm") == 3 and kinds["batchnorm"][-1] == "BatchNorm"  # all layers
    assert kinds["layernorm"].count("LayerNorm") == 2 and kinds["layernorm"][-1] == "Linear"  # not the logits
    with pytest.raises(ValueError, match="variant must be one of"):
        fig6.make_mlp("groupnorm", "relu", 8)
    with pytest.raises(ValueError, match="activation must be one of"):
        fig6.make_mlp("baseline", "gelu", 8)


def test_the_placement_control_puts_batch_norm_where_layer_norm_is():
    kinds = [type(m).__name__ for m in fig6.make_mlp("batchnorm_hidden", "relu", 32)]
    assert kinds == ["Linear", "BatchNorm", "ReLU", "Linear", "BatchNorm", "ReLU", "Linear"]
    assert "batchnorm_hidden" not in fig6.VARIANTS  # a control: not in the learning-rate sweep


def test_training_mode_nll_uses_batch_statistics_and_leaves_the_model_alone():
    torch.manual_seed(0)
    images, labels = torch.randn(40, 784), torch.randint(0, 10, (40,))
    bn = fig6.make_mlp("batchnorm", "relu", 16)
    fig6.population_statistics(bn, images)
    before = {k: v.clone() for k, v in bn.state_dict().items()}
    at_4, at_20 = fig6.training_mode_nll(bn, images, labels, 4), fig6.training_mode_nll(bn, images, labels, 20)
    assert at_4 != at_20  # batch statistics depend on the batch size
    assert all(torch.equal(before[k], v) for k, v in bn.state_dict().items())  # running statistics frozen
    # by hand: batches of 4 in training mode
    bn.train()
    with torch.no_grad():
        by_hand = sum(float(torch.nn.functional.cross_entropy(bn(images[i:i + 4]), labels[i:i + 4], reduction="sum"))
                      for i in range(0, 40, 4)) / 40
    assert abs(at_4 - by_hand) < 1e-6
    ln = fig6.make_mlp("layernorm", "relu", 16)  # no batch statistics: the same at any batch size
    assert abs(fig6.training_mode_nll(ln, images, labels, 4) - fig6.evaluate(ln, images, labels)[0]) < 1e-5


def test_workers_train_the_cheap_wide_runs_first():
    params = dict(fig6.PROFILES["cpu"])
    chosen = {"activation": "relu", "lr": 1e-3}
    specs = fig6.main_specs(params, 0, chosen) + fig6.batch_sweep_specs(params, 0, chosen)
    ordered = fig6.in_priority_order(specs)
    assert sorted(map(fig6.run_key, ordered)) == sorted(map(fig6.run_key, specs))
    mains = [s for s in ordered if s["kind"] == "main"]
    assert all(s["kind"] == "main" for s in ordered[:len(mains)])  # the judged curves before the sweep
    assert {s["seed"] for s in ordered if s["kind"] == "bsweep"} == {0, 1, 2}  # the sweep has every seed too
    assert [s["batch_size"] for s in mains] == sorted((s["batch_size"] for s in mains), reverse=True)
    first_seed = [s["variant"] for s in mains if s["batch_size"] == 128 and s["seed"] == 0]
    assert first_seed[-1] == "batchnorm_hidden" and len(first_seed) == 4  # the paper's three, then the control


def test_the_small_batch_learning_rate_control_adds_the_other_rates_only():
    params = fig6.PROFILES["cpu"]
    specs = fig6.small_batch_lr_specs(params, 0, {"activation": "relu", "lr": 1e-3})
    assert {(s["variant"], s["lr"], s["seed"]) for s in specs} == {
        (v, lr, seed) for v in fig6.VARIANTS for lr in (1e-4, 3e-4) for seed in range(3)}
    assert {(s["batch_size"], s["epochs"], s["kind"]) for s in specs} == {(4, 15, "lr_small")}
    stages = fig6.plan(params, 0, training.run_folder("fig6_mnist", "cpu", 0))  # the committed sweep decides
    assert len(stages) == 2 and sum(s["kind"] == "lr_small" for s in stages[1]) == 18


def test_committed_logs_are_read_not_retrained(tmp_path, monkeypatch):
    spec = fig6._spec("main", "layernorm", 4, "relu", 1e-3, 1, 0, fig6.PROFILES["smoke"])
    folder = tmp_path / "fig6_mnist-x-seed0"
    monkeypatch.setattr(training, "COMMITTED_RUNS", tmp_path / "runs")
    log = {"spec": spec, "epoch": [1], "train_nll": [0.5]}
    (tmp_path / "runs" / folder.name).mkdir(parents=True)
    (tmp_path / "runs" / folder.name / f"{fig6.run_key(spec)}.json").write_text(json.dumps(log))
    assert fig6.train_run(spec, None, folder, progress=False) == log  # no data needed: nothing is trained
    other = dict(spec, lr=3e-3)  # another spec under the same file name is not taken for this run
    assert training.committed_log(folder, fig6.run_key(spec), other) is None
    (folder).mkdir()
    (folder / "a.json").write_text(json.dumps({"spec": spec}))
    new = training.commit_finished_logs(folder)
    assert [p.name for p in new] == ["a.json"] and training.commit_finished_logs(folder) == []
    unfinished = dict(spec, seed=1)
    (folder / f"{fig6.run_key(unfinished)}.json").write_text(json.dumps({"spec": unfinished, "epoch_seconds": [7200]}))
    seconds = lambda log: sum(log.get("epoch_seconds", [3600]))  # noqa: E731
    local = training.progress(folder, [spec, unfinished], fig6.run_key, seconds)
    committed = training.progress(folder, [spec, unfinished], fig6.run_key, seconds, committed_only=True)
    assert (local["planned"], local["finished"], local["core_hours"]) == (2, 2, 3.0)
    assert (committed["finished"], committed["core_hours"]) == (1, 1.0)  # the local run folder is not counted
    # the same run planned by another profile of the same experiment and seed is read from this one's folder
    assert training.committed_log(tmp_path / "fig6_mnist-paper-seed0", fig6.run_key(spec), spec) == log
    assert training.committed_log(tmp_path / "fig6_mnist-paper-seed1", fig6.run_key(spec), spec) is None
    assert training.committed_log(tmp_path / "rnn-x-seed0", fig6.run_key(spec), spec) is None


def test_small_batches_use_the_unbiased_variance():
    model = fig6.make_mlp("batchnorm", "relu", 8)
    fig6.set_batch_norm_ddof(model, 4)
    assert {m.ddof for m in model.modules() if isinstance(m, lnt.BatchNorm)} == {1}
    fig6.set_batch_norm_ddof(model, 128)
    assert {m.ddof for m in model.modules() if isinstance(m, lnt.BatchNorm)} == {0}


def test_population_statistics_are_averages_over_the_data():
    torch.manual_seed(0)
    model = fig6.make_mlp("batchnorm", "relu", 8)
    images = torch.rand(3000, 784)
    fig6.population_statistics(model, images, batch=1000)
    first = model[1]
    with torch.no_grad():
        summed = model[0](images)
    torch.testing.assert_close(first.running_mean, summed.mean(0), rtol=1e-5, atol=1e-6)
    # the average of the three batch variances (unbiased), as Ioffe & Szegedy's inference statistics
    batch_vars = torch.stack([summed[i:i + 1000].var(0, correction=1) for i in range(0, 3000, 1000)])
    torch.testing.assert_close(first.running_var, batch_vars.mean(0), rtol=1e-5, atol=1e-6)
    assert first.momentum == 0.0  # restored: training keeps the statistics frozen


def test_run_keys_hash_every_parameter():
    params = fig6.PROFILES["cpu"]
    spec = fig6.main_specs(params, 0, {"activation": "relu", "lr": 1e-3})[0]
    for name, other in (("hidden", 64), ("train_cases", 2000), ("eval_cases", 1000), ("online_check", True)):
        changed = dict(spec, **{name: other})
        assert changed != spec and fig6.run_key(changed) != fig6.run_key(spec), name
    assert fig6.run_seed(dict(spec, hidden=64)) == fig6.run_seed(spec)  # the seed stays the committed runs' one


def test_workers_share_one_queue_and_skip_what_is_finished_or_in_training(tmp_path, monkeypatch):
    monkeypatch.setattr(training, "COMMITTED_RUNS", tmp_path / "runs")
    params = fig6.PROFILES["cpu"]
    specs = fig6.main_specs(params, 0, {"activation": "relu", "lr": 1e-3})
    specs += fig6.batch_sweep_specs(params, 0, {"activation": "relu", "lr": 1e-3})
    folder = tmp_path / "fig6_mnist-cpu-seed0"
    folder.mkdir()
    first, second, third = fig6.in_priority_order(specs)[:3]
    (folder / f"{fig6.run_key(first)}.json").write_text(json.dumps({"spec": first}))  # finished
    (folder / f"{fig6.run_key(second)}.lock").write_text(f"{os.getpid()}@{training.socket.gethostname()}\n")
    queue = fig6.next_runs(specs, folder)
    assert fig6.run_key(next(queue)) == fig6.run_key(third)  # the live lock's run is another worker's
    (folder / f"{fig6.run_key(second)}.lock").write_text("999999999@" + training.socket.gethostname() + "\n")
    assert fig6.run_key(next(fig6.next_runs(specs, folder))) == fig6.run_key(second)  # its owner is gone
    assert len(list(fig6.next_runs(specs, folder))) == len(specs) - 1
    assert not any(s["variant"] == "batchnorm" and s["batch_size"] == 1 for s in specs)


def test_epochs_to_reach_and_race_name_who_gets_there_first():
    log = {"epoch": [1, 2, 3], "train_nll": [0.5, None, 0.05]}
    assert claims.epochs_to_reach(log, "train_nll", 0.1) == 3 and claims.epochs_to_reach(log, "train_nll", 0.01) is None
    assert claims.race(2, 5) == "earlier" and claims.race(5, 2) == "later" and claims.race(4, 4) == "tie"
    assert claims.race(7, None) == "earlier" and claims.race(None, 7) == "later" and claims.race(None, None) is None
    assert claims.race_effect(2, 5, 11) == 3 and claims.race_effect(7, None, 11) == 4
    assert claims.race_effect(None, None, 11) is None


def test_worker_command_line_checks_the_worker_index(capsys):
    args = training.parse_worker_args("d", fig6.PROFILES, ["--profile", "smoke", "--worker", "1", "--workers", "2"])
    assert (args.profile, args.seed, args.device, args.worker, args.workers) == ("smoke", 0, "auto", 1, 2)
    for argv, message in ((["--worker", "2", "--workers", "2"], "--worker must be in [0, 1] for --workers 2"),
                          (["--workers", "0"], "--workers must be a positive number"),
                          (["--seed", "-1"], "--seed must be a non-negative int"),
                          (["--device", "tpu"], "--device: device must be 'auto', 'cpu', 'cuda'")):
        with pytest.raises(SystemExit):
            training.parse_worker_args("d", fig6.PROFILES, ["--profile", "smoke", *argv])
        assert message in capsys.readouterr().err
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit):
            training.parse_worker_args("d", fig6.PROFILES, ["--profile", "smoke", "--device", "cuda"])
        assert "CUDA is not available here" in capsys.readouterr().err


def test_choice_takes_the_lowest_mean_validation_error():
    params = {"sweep_activations": ["relu", "tanh"], "sweep_lrs": [1e-3, 3e-3]}

    def log(a, lr, err):
        return {"spec": {"activation": a, "lr": lr}, "valid_error": [0.5, err], "diverged": False}

    sweep = [log("relu", 1e-3, 0.03), log("relu", 3e-3, 0.02), log("tanh", 1e-3, 0.025), log("tanh", 3e-3, 0.04)]
    assert fig6.choose(sweep, params)["activation"] == "relu" and fig6.choose(sweep, params)["lr"] == 3e-3


def _cli(folder: Path) -> subprocess.Popen:
    env = {**os.environ, "LNLIB_CHECKPOINT_DIR": str(folder)}
    return subprocess.Popen([sys.executable, "-m", "lnlib.experiments.fig6_mnist", "--profile", "smoke"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _logs(folder: Path) -> dict[str, dict]:
    logs = {}
    for path in sorted((folder / "fig6_mnist-smoke-seed0").glob("*.json")):
        log = json.loads(path.read_text())
        for key in VOLATILE + ("git_commit", "code_modified", "resumed"):
            log.pop(key, None)
        logs[path.name] = log
    return logs


@pytest.mark.slow
def test_a_run_killed_mid_training_resumes_and_ends_identical(tmp_path):
    """SIGKILL the smoke profile once a checkpoint exists, restart it, and compare with an uninterrupted run."""
    reference = _cli(tmp_path / "uninterrupted")
    assert reference.wait(timeout=600) == 0

    killed = _cli(tmp_path / "interrupted")
    folder = tmp_path / "interrupted" / "fig6_mnist-smoke-seed0"
    deadline = time.monotonic() + 600
    while not list(folder.glob("main-*-e2-*.pt")):  # a two-epoch run has saved its first epoch
        assert killed.poll() is None and time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.05)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert list(folder.glob("*.pt")), "the kill left no checkpoint to resume from"
    resumed = _cli(tmp_path / "interrupted")
    assert resumed.wait(timeout=600) == 0
    assert not list(folder.glob("*.pt")) and not list(folder.glob("*.tmp")) and not list(folder.glob(".*.tmp"))
    assert _logs(tmp_path / "interrupted") == _logs(tmp_path / "uninterrupted")
    resumed = [json.loads(p.read_text()) for p in (tmp_path / "interrupted" / "fig6_mnist-smoke-seed0").glob("*.json")]
    resumed = [log["resumed"] for log in resumed if "resumed" in log]  # the run the kill interrupted
    assert len(resumed) == 1 and resumed[0][0]["epoch"] >= 1 and "git_commit" in resumed[0][0]


def test_a_committed_run_retrains_to_the_same_log_and_gains_the_new_fields(tmp_path):
    """scripts/retrain_committed_run.py on a Figure 6 run: deterministic training reproduces every measured
    field; --replace then writes the new log, which has batch norm's training-mode NLL."""
    params = fig6.PROFILES["smoke"]
    spec = dict(fig6.main_specs(params, 0, {"activation": "relu", "lr": 1e-3})[1], epochs=1)
    assert spec["variant"] == "batchnorm"
    folder = tmp_path / "fig6_mnist-smoke-seed0"
    folder.mkdir()
    with training.run_environment("cpu", threads=fig6.THREADS) as device:  # as the workers train
        log = fig6.train_run(spec, fig6.mnist.load(), folder, device=device, progress=False)
    path = folder / f"{fig6.run_key(spec)}.json"
    old = dict(log)
    del old["train_nll_batch_statistics"]  # as if committed before the field was logged
    path.write_text(json.dumps(old))
    script = [sys.executable, str(Path(__file__).parents[1] / "scripts" / "retrain_committed_run.py"), str(path)]
    env = dict(os.environ, LNLIB_CHECKPOINT_DIR=str(tmp_path / "checkpoints"))
    done = subprocess.run(script + ["--replace"], capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "identical (new fields: train_nll_batch_statistics)" in done.stdout
    assert json.loads(path.read_text())["train_nll_batch_statistics"] == log["train_nll_batch_statistics"]
    kept = tmp_path / "checkpoints" / "retrained" / folder.name / path.name  # the new log is kept there
    assert json.loads(kept.read_text())["test_error"] == log["test_error"]
    old["test_error"] = [log["test_error"][0] + 0.25]  # a log the retraining cannot reproduce: reported, kept
    path.write_text(json.dumps(old))
    done = subprocess.run(script + ["--replace"], capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "differs: .test_error: from index 0 of 1; largest difference 0.25" in done.stdout
    assert json.loads(path.read_text())["test_error"] == old["test_error"]
    done = subprocess.run(script + ["--keep"], capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 1 and json.loads(path.read_text())["test_error"] == old["test_error"]
    second = tmp_path / "retrained" / folder.name / path.name  # committed beside the run folder as evidence
    assert json.loads(second.read_text())["test_error"] == log["test_error"]
    second.unlink()
    done = subprocess.run(script + ["--supersede"], capture_output=True, text=True, timeout=300, env=env)
    if json.loads(kept.read_text())["code_modified"] is not False:  # this checkout has local changes to lnlib
        assert done.returncode == 1 and "not superseded" in done.stdout, done.stdout + done.stderr
        assert json.loads(path.read_text())["test_error"] == old["test_error"]
    else:  # the differing log moves beside the run folder, the second training takes its place
        assert done.returncode == 0, done.stdout + done.stderr
        assert json.loads(path.read_text())["test_error"] == log["test_error"]
        first = tmp_path / "superseded" / folder.name / path.name
        assert json.loads(first.read_text())["test_error"] == old["test_error"]


def test_assembling_without_training_shows_the_finished_runs_and_names_the_missing(tmp_path, monkeypatch):
    monkeypatch.setenv("LNLIB_CHECKPOINT_DIR", str(tmp_path / "checkpoints"))
    monkeypatch.setattr(training, "COMMITTED_RUNS", tmp_path / "runs")
    params = dict(fig6.PROFILES["smoke"], timing_steps=2)
    with pytest.raises(ValueError, match="needs the finished learning-rate sweep"):
        fig6.run(params, profile="partial", seed=0, device="cpu", progress=False, train=False)
    folder = training.run_folder(fig6.NAME, "partial", 0)
    data = fig6.mnist.load()
    sweep = fig6.sweep_specs(params, 0)
    for spec in sweep:
        fig6.train_run(spec, data, folder, progress=False)
    main = fig6.main_specs(params, 0, {"activation": "relu", "lr": 1e-3})[0]
    fig6.train_run(main, data, folder, progress=False)
    d = fig6.run(params, profile="partial", seed=0, device="cpu", progress=False, train=False)
    planned = [s for stage in fig6.plan(params, 0, folder) for s in stage]
    assert not d["complete"] and len(d["runs"]) == len(sweep) + 1
    assert len(d["missing"]) == len(planned) - len(sweep) - 1 and fig6._label(main) not in d["missing"]
    assert "timing" in d and d["chosen"]["lr"] == 1e-3


def test_the_table_of_runs_trained_twice_names_commits_missing_fields_and_differences():
    sys.path.insert(0, str(Path(__file__).parents[1] / "scripts"))
    try:
        import trained_twice_table
    finally:
        sys.path.pop(0)
    first = {"git_commit": "a" * 40, "code_modified": True, "epoch": [1, 2, 3], "train_nll": [0.2, 0.05, 0.02],
             "test_error": [0.03, 0.028, 0.025]}
    second = dict(first, git_commit="b" * 40, code_modified=False, train_nll=[0.08, 0.009, 0.0009],
                  test_error=[0.03, 0.025, 0.02], train_nll_batch_statistics=[0.3])
    line = trained_twice_table.row("f", "k", first, second)
    assert line.startswith("| `f/k` | aaaaaaa with local changes; lacks `train_nll_batch_statistics` | bbbbbbb, clean |")
    assert "last epoch 2.00 % against 2.50 % test error" in line
    assert "0.1, 0.01, 0.001: 1, 2, 3 against 2, -, - |" in line
