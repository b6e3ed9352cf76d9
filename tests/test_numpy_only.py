"""The NumPy-only selection (tests/numpy_only.txt): it runs, and passes, in a process where torch cannot be
imported. This keeps the list that ``make test-pythons`` runs on every supported Python (without torch)
honest inside ``make test``: a listed module that starts importing torch, or a NumPy test that starts
needing it without saying so (``needs_torch``), fails here."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LIST = ROOT / "tests" / "numpy_only.txt"


def numpy_only_modules() -> list[str]:
    return [ln.strip() for ln in LIST.read_text().splitlines() if ln.strip() and not ln.lstrip().startswith("#")]


def test_the_list_names_existing_test_modules_once():
    modules = numpy_only_modules()
    assert modules, f"{LIST} lists no test module"
    assert len(set(modules)) == len(modules), "a module is listed twice"
    for module in modules:
        assert re.fullmatch(r"tests/test_\w+\.py", module), module
        assert (ROOT / module).is_file(), f"{module} is listed in {LIST.name} but does not exist"


@pytest.mark.slow
def test_the_numpy_only_modules_pass_with_torch_blocked():
    # sys.modules["torch"] = None makes every `import torch` fail, as on a machine without torch
    code = "import sys; sys.modules['torch'] = None; import pytest; sys.exit(pytest.main(sys.argv[1:]))"
    proc = subprocess.run([sys.executable, "-c", code, "-q", "-p", "no:cacheprovider",
                           *numpy_only_modules()], cwd=ROOT, capture_output=True, text=True, timeout=900)
    summary = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    passed = re.search(r"(\d+) passed", summary)
    assert passed and int(passed.group(1)) >= 500, f"too few NumPy tests ran: {summary}"
    assert "error" not in summary, summary
