"""The training toolkit (lnlib.experiments.training): run keys, checked checkpoints, one trainer per run,
and a run environment that restores what it changes."""

from __future__ import annotations

import json
import multiprocessing
import os
import socket
import time
import warnings
from pathlib import Path

import pytest
import torch

from lnlib.experiments import training

SPEC = {"kind": "main", "variant": "layernorm", "batch_size": 4, "lr": 1e-3, "epochs": 2, "seed": 0, "hidden": 8}


def test_run_key_changes_with_every_field_and_names_the_run():
    key = training.run_key("main-ln", SPEC)
    assert key.startswith("main-ln-") and len(key) == len("main-ln-") + 12
    for name in SPEC:
        changed = dict(SPEC, **{name: "other"})
        assert training.run_key("main-ln", changed) != key, name
    assert training.run_key("main-ln", dict(reversed(list(SPEC.items())))) == key  # order does not matter


def test_run_folder_is_named_after_the_profile(tmp_path, monkeypatch):
    monkeypatch.setenv("LNLIB_CHECKPOINT_DIR", str(tmp_path))
    assert training.run_folder("fig6_mnist", "cpu", 2) == tmp_path / "fig6_mnist-cpu-seed2"
    with pytest.raises(ValueError, match="profile must be a non-empty name"):
        training.run_folder("fig6_mnist", "", 0)
    with pytest.raises(TypeError, match="seed must be an int"):
        training.run_folder("fig6_mnist", "cpu", "0")


def _state():
    return {"model": {"w": torch.arange(6.0).reshape(2, 3)}, "log": {"epoch": [1]}, "epoch": 1}


def test_a_checkpoint_round_trips_for_its_own_spec(tmp_path):
    path = training.save_checkpoint(tmp_path / "run.pt", SPEC, _state())
    state = training.load_checkpoint(path, SPEC)
    assert torch.equal(state["model"]["w"], _state()["model"]["w"]) and state["epoch"] == 1
    assert not list(tmp_path.glob(".*.tmp"))


def test_a_checkpoint_of_another_spec_is_refused_by_name(tmp_path):
    path = training.save_checkpoint(tmp_path / "run.pt", SPEC, _state())
    with pytest.raises(training.CheckpointError, match=r"run\.pt: checkpoint of another run .*\['hidden'\]"):
        training.load_checkpoint(path, dict(SPEC, hidden=16))


@pytest.mark.parametrize("where", ["payload", "header", "magic"])
def test_a_corrupted_checkpoint_is_refused(tmp_path, where):
    path = training.save_checkpoint(tmp_path / "run.pt", SPEC, _state())
    blob = bytearray(path.read_bytes())
    offset = {"payload": len(blob) - 40, "header": len(training.CHECKPOINT_MAGIC) + 3, "magic": 0}[where]
    blob[offset] ^= 0x01  # one flipped bit
    path.write_bytes(bytes(blob))
    with pytest.raises(training.CheckpointError, match=r"run\.pt: (damaged|not an lnlib|checkpoint of another)"):
        training.load_checkpoint(path, SPEC)


def test_resuming_from_a_rejected_checkpoint_warns_and_starts_from_scratch(tmp_path):
    path = training.save_checkpoint(tmp_path / "run.pt", dict(SPEC, lr=0.1), _state())
    with pytest.warns(RuntimeWarning, match="checkpoint of another run.*trained again from scratch"):
        assert training.resume_state(path, SPEC) is None
    assert not path.exists() and (tmp_path / "run.pt.rejected").exists()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert training.resume_state(path, SPEC) is None  # nothing there: no warning


def test_train_once_trains_stores_and_then_reads(tmp_path):
    calls = []

    def train(checkpoint: Path) -> dict:
        calls.append(checkpoint)
        training.save_checkpoint(checkpoint, SPEC, _state())
        return {"spec": SPEC, "loss": [1.0, float("nan")]}

    log = training.train_once(tmp_path, "k", SPEC, train)
    assert log == {"spec": SPEC, "loss": [1.0, None]} and len(calls) == 1
    assert not list(tmp_path.glob("*.pt")) and not list(tmp_path.glob("*.lock"))
    assert training.train_once(tmp_path, "k", SPEC, train) == log and len(calls) == 1  # read, not retrained


def test_temporaries_of_a_killed_writer_are_removed(tmp_path):
    stale = [tmp_path / ".k.pt.abc123.tmp", tmp_path / ".k.json.def456.tmp"]
    for path in stale:
        path.write_bytes(b"half")
    other = tmp_path / ".kk.pt.xyz.tmp"  # another run's: left alone
    other.write_bytes(b"half")
    training.train_once(tmp_path, "k", SPEC, lambda checkpoint: {"spec": SPEC})
    assert not any(path.exists() for path in stale) and other.exists()


def test_a_finished_log_of_another_spec_is_not_reused(tmp_path):
    (tmp_path / "k.json").write_text(json.dumps({"spec": dict(SPEC, hidden=1000), "loss": [0.1]}))
    with pytest.warns(RuntimeWarning, match="another spec"):
        log = training.train_once(tmp_path, "k", SPEC, lambda checkpoint: {"spec": SPEC, "loss": [0.5]})
    assert log["loss"] == [0.5] and (tmp_path / "k.json.rejected").exists()


def test_a_stale_lock_of_a_dead_process_is_broken(tmp_path):
    dead = multiprocessing.get_context("spawn").Process(target=os.getpid)
    dead.start()
    dead.join()
    (tmp_path / "k.lock").write_text(f"{dead.pid}@{socket.gethostname()}\n")
    log = training.train_once(tmp_path, "k", SPEC, lambda checkpoint: {"spec": SPEC}, poll=0.01)
    assert log == {"spec": SPEC} and not (tmp_path / "k.lock").exists()


def _slow_trainer(folder: str, name: str, queue) -> None:
    """Train run ``k`` in another process, holding it until the file ``release`` appears; report the pid,
    the log and what it announced (an announcement also leaves the file ``waiting``)."""
    def train(checkpoint: Path) -> dict:
        (Path(folder) / f"started-{name}").write_text("training")
        deadline = time.monotonic() + 60
        while not (Path(folder) / "release").exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        return {"spec": SPEC, "trained_by": name}

    messages: list[str] = []

    def announce(message: str) -> None:
        messages.append(message)
        (Path(folder) / "waiting").write_text(message)

    log = training.train_once(Path(folder), "k", SPEC, train, poll=0.05, announce=announce)
    queue.put((name, log, messages))


def _wait_for(path: Path) -> None:
    deadline = time.monotonic() + 60
    while not path.exists():
        assert time.monotonic() < deadline, f"{path.name} never appeared"
        time.sleep(0.02)


@pytest.mark.slow
def test_two_trainers_of_the_same_run_train_it_once(tmp_path):
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    first = context.Process(target=_slow_trainer, args=(str(tmp_path), "first", queue))
    first.start()
    _wait_for(tmp_path / "started-first")
    second = context.Process(target=_slow_trainer, args=(str(tmp_path), "second", queue))
    second.start()
    _wait_for(tmp_path / "waiting")  # the second found the lock and waits
    (tmp_path / "release").write_text("go")
    reports = dict((name, (log, said)) for name, log, said in (queue.get(timeout=60) for _ in range(2)))
    first.join(10), second.join(10)
    assert first.exitcode == 0 and second.exitcode == 0
    (log_a, said_a), (log_b, said_b) = reports["first"], reports["second"]
    assert log_a == log_b and log_a["trained_by"] == "first"  # one training, read by the second
    assert not (tmp_path / "started-second").exists() and not (tmp_path / "k.lock").exists()
    assert said_a == [] and len(said_b) == 1 and "another process" in said_b[0] and "k.lock" in said_b[0]


def test_run_environment_sets_and_restores(monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    before = torch.get_num_threads()
    torch.use_deterministic_algorithms(False)
    rng = torch.get_rng_state()
    with training.run_environment("auto", seed=3, threads=1) as device:
        assert device.type in ("cpu", "cuda")
        assert torch.get_num_threads() == 1 and torch.are_deterministic_algorithms_enabled()
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
        drawn = torch.rand(1)
    assert torch.equal(drawn, torch.rand(1, generator=torch.Generator().manual_seed(3)))
    assert torch.get_num_threads() == before and not torch.are_deterministic_algorithms_enabled()
    assert "CUBLAS_WORKSPACE_CONFIG" not in os.environ and torch.equal(torch.get_rng_state(), rng)


def test_run_environment_restores_after_an_error():
    before = torch.get_num_threads()
    torch.use_deterministic_algorithms(False)
    with pytest.raises(RuntimeError, match="boom"):
        with training.run_environment("cpu", threads=1):
            raise RuntimeError("boom")
    assert torch.get_num_threads() == before and not torch.are_deterministic_algorithms_enabled()


@pytest.mark.parametrize("kwargs,error", [({"threads": 0}, ValueError), ({"threads": True}, ValueError),
                                          ({"seed": "1"}, TypeError)])
def test_run_environment_rejects_bad_arguments(kwargs, error):
    with pytest.raises(error):
        with training.run_environment("cpu", **kwargs):
            pass


def test_balance_splits_deterministically():
    specs = [{"n": n} for n in (5, 3, 3, 1)]
    shares = training.balance(specs, 2, lambda s: s["n"], lambda s: str(s["n"]))
    assert [[s["n"] for s in share] for share in shares] == [[5, 1], [3, 3]]
    with pytest.raises(ValueError, match="workers must be a positive int"):
        training.balance(specs, 0, lambda s: 1.0, str)


def test_a_superseded_log_is_kept_beside_its_run_folder_and_read_back_with_kept_second_trainings(tmp_path,
                                                                                                 monkeypatch):
    monkeypatch.setattr(training, "COMMITTED_RUNS", tmp_path)
    committed = tmp_path / "exp-cpu-seed0" / "k.json"
    committed.parent.mkdir()
    committed.write_text(json.dumps({"spec": SPEC, "loss": [0.5]}))
    assert training.other_trainings("exp-cpu-seed0") == {}
    kept = training.supersede(committed, {"spec": SPEC, "loss": [0.4]})
    assert kept == tmp_path.resolve() / "superseded" / "exp-cpu-seed0" / "k.json"
    with pytest.raises(ValueError, match="kind must be one of"):
        training.other_training_path(committed, "first")
    assert json.loads(committed.read_text())["loss"] == [0.4]
    assert training.other_trainings("exp-cpu-seed0") == {"k": {"spec": SPEC, "loss": [0.5]}}
    second = tmp_path / "retrained" / "exp-cpu-seed0" / "j.json"  # a second training kept, not used
    second.parent.mkdir(parents=True)
    second.write_text(json.dumps({"spec": SPEC, "loss": [0.7]}))
    assert set(training.other_trainings("exp-cpu-seed0")) == {"j", "k"}
    second.with_name("k.json").write_text(json.dumps({"spec": SPEC, "loss": [0.6]}))
    with pytest.raises(ValueError, match="both superseded and retrained"):
        training.other_trainings("exp-cpu-seed0")
    with pytest.raises(ValueError, match="superseded before"):  # the first training is never overwritten
        training.supersede(committed, {"spec": SPEC, "loss": [0.3]})
    committed.write_text(json.dumps({"spec": SPEC, "loss": [0.5]}))  # as if interrupted before the replace
    training.supersede(committed, {"spec": SPEC, "loss": [0.4]})  # finishes the job
    assert json.loads(committed.read_text())["loss"] == [0.4]
    with pytest.raises(ValueError, match="spec differs"):
        training.supersede(committed, {"spec": dict(SPEC, hidden=1000), "loss": [0.3]})
    assert json.loads(committed.read_text())["loss"] == [0.4]
