"""Every experiment module answers ``python -m lnlib.experiments.<name> --help``, and bad options end in a
usage message that names them, never in a traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest

from lnlib import experiments

QUICK = ["batch_dependence", "bn_batch_size", "epsilon_numerics", "geometry", "invariance"]


@pytest.mark.parametrize("name", QUICK)
def test_quick_experiments_have_a_help(name, capsys):
    with pytest.raises(SystemExit) as exit_info:
        experiments.cli(name, ["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert f"python -m lnlib.experiments.{name}" in out and "--profile" in out and "--device" in out


@pytest.mark.parametrize("argv,message", [(["--device", "tpu"], "--device: device must be"),
                                          (["--seed", "-3"], "--seed must be a non-negative int"),
                                          (["--profile", "huge"], "invalid choice: 'huge'")])
def test_bad_options_are_named(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        experiments.cli("invariance", argv)
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_a_quick_experiment_runs_from_its_command_line(capsys):
    record = experiments.cli("invariance", ["--profile", "smoke", "--device", "cpu", "--no-save"])
    assert record["experiment"] == "invariance" and "not saved" in capsys.readouterr().out


@pytest.mark.slow
@pytest.mark.parametrize("name", QUICK + ["fig6_mnist", "rnn"])
def test_python_dash_m_help_prints_a_usage(name):
    out = subprocess.run([sys.executable, "-m", f"lnlib.experiments.{name}", "--help"], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0 and "usage:" in out.stdout and "--profile" in out.stdout, out.stderr
