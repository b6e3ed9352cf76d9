"""lnlib as a library: the wheel, installed in a clean virtualenv, gives every command line and runs an
experiment from a folder outside the repository, writing nothing into its own installation."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from lnlib import results

CLIS = ["lnlib.bench", "lnlib.gpu_check", "lnlib._book", "lnlib.experiments.fig6_mnist", "lnlib.experiments.rnn",
        "lnlib.experiments.batch_dependence", "lnlib.experiments.bn_batch_size",
        "lnlib.experiments.epsilon_numerics", "lnlib.experiments.geometry", "lnlib.experiments.invariance"]


def _run(args: list[str], cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    # without PYTHONPATH: the installed wheel must be what runs, not a checkout on the path
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    done = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    assert done.returncode == 0, f"{' '.join(args)}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
    return done


@pytest.mark.slow
def test_the_wheel_installs_and_runs_outside_the_repository(tmp_path):
    build = results.REPO_ROOT / "build"  # setuptools' scratch folder; removed again unless it was there
    existed = build.exists()
    try:
        _run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
              "--wheel-dir", str(tmp_path / "dist"), str(results.REPO_ROOT)], cwd=tmp_path)
    finally:
        if not existed:
            shutil.rmtree(build, ignore_errors=True)
    wheel = next((tmp_path / "dist").glob("lnlib-*.whl"))
    venv.create(tmp_path / "env", with_pip=True)
    python = str(tmp_path / "env" / "bin" / "python")
    # numpy, torch and tqdm from the package index (pinned like the book's environment, so nothing new)
    pins = [line for line in (results.REPO_ROOT / "requirements-lock.txt").read_text().splitlines()
            if line.split("==")[0].lower() in ("numpy", "torch", "tqdm")]
    _run([python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", str(wheel), *pins], cwd=tmp_path)
    work = tmp_path / "somewhere"
    work.mkdir()
    for cli in CLIS:
        out = _run([python, "-m", cli, "--help"], cwd=work, timeout=120)
        assert "usage:" in out.stdout, cli
    out = _run([python, "-m", "lnlib.experiments.invariance", "--profile", "smoke", "--device", "cpu"], cwd=work)
    assert (work / "data" / "results" / "invariance-smoke-seed0.json").exists(), out.stdout
    site = _run([python, "-c", "import lnlib, pathlib; print(pathlib.Path(lnlib.__file__).parent.parent)"],
                cwd=work).stdout.strip()
    assert not list(Path(site).glob("data")) and not list(Path(site).glob("_build")), "wrote into site-packages"
    claims = _run([python, "-c", "import sys, lnlib.claims; print('torch' in sys.modules)"], cwd=work)
    assert claims.stdout.strip() == "False"
