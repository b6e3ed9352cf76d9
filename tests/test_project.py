"""The project around the library: packaging files agree, chapters are committed executed, nbval bites."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from lnlib import _book

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "chapters").glob("[0-9]*.ipynb"))

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = None


def _name(requirement: str) -> str:
    """Distribution name of a requirement string, normalized (PEP 503)."""
    return re.sub(r"[-_.]+", "-", re.split(r"[<>=!~;\[ ]", requirement.strip(), maxsplit=1)[0]).lower()


@pytest.fixture(scope="module")
def pyproject() -> dict:
    if tomllib is None:
        pytest.skip("tomllib needs Python 3.11")
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_environment_yml_lists_the_same_packages_as_pyproject(pyproject):
    project = pyproject["project"]
    declared = {_name(r) for r in project["dependencies"]}
    for extra in project["optional-dependencies"].values():
        declared |= {_name(r) for r in extra}
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda_to_pypi = {"pytorch": "torch"}
    listed = set()
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            listed |= {_name(r) for r in dep["pip"]}
        else:
            name = _name(dep.split("=")[0])
            listed.add(conda_to_pypi.get(name, name))
    listed -= {"python", "pip"}
    assert listed == declared, f"only in environment.yml: {listed - declared}; only in pyproject: {declared - listed}"


def test_lock_file_pins_every_declared_package_and_the_cpu_torch(pyproject):
    lines = [ln for ln in (ROOT / "requirements-lock.txt").read_text().splitlines() if ln and not ln.startswith("#")]
    pins = {_name(ln): ln.split("==", 1)[1] for ln in lines}
    assert all("==" in ln for ln in lines), "every line of the lock file must be an exact pin"
    assert pins["torch"] == "2.13.0"
    project = pyproject["project"]
    declared = {_name(r) for r in project["dependencies"]}
    for extra in project["optional-dependencies"].values():
        declared |= {_name(r) for r in extra}
    assert declared <= set(pins), f"not pinned: {declared - set(pins)}"
    assert pins["jupyter-book"] == "1.0.4.post1" and pins["sphinx"].startswith("7.")


def test_ci_runs_make_test_and_nothing_else():
    commands = [ln for ln in (ROOT / ".ci" / "run").read_text().splitlines()
                if ln.strip() and not ln.startswith("#") and not ln.startswith(("set ", "cd "))]
    assert commands == ["exec make test"]


def test_toc_lists_exactly_the_chapters():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = {c["file"] for part in toc["parts"] for c in part["chapters"]}
    assert {f"chapters/{p.stem}" for p in CHAPTERS} <= files
    for entry in files:
        assert any((ROOT / f"{entry}{ext}").exists() for ext in (".ipynb", ".md")), f"{entry} listed but missing"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_chapter_is_committed_executed_with_parameters(path):
    nb = json.loads(path.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    params = [c for c in code if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(params) == 1, "exactly one cell tagged 'parameters'"
    source = "".join(params[0]["source"])
    for name in ("profile", "recompute", "device", "seed"):
        assert re.search(rf"^{name}\s*=", source, re.M), f"parameter {name!r} missing"
    assert all(c["execution_count"] is not None for c in code), "every code cell must be executed (make notebooks)"
    assert not any(o["output_type"] == "error" for c in code for o in c["outputs"]), "stored error output"
    assert nb["metadata"]["kernelspec"]["name"] == "python3"
    assert "papermill" not in nb["metadata"], "volatile papermill metadata must be stripped (make notebooks)"
    assert nb["cells"][0]["cell_type"] == "code" and "colab-setup" in nb["cells"][0]["metadata"]["tags"], \
        "first cell must be the Colab setup cell (make colab-cells)"
    assert "".join(nb["cells"][1]["source"]).startswith("# "), "second cell must be the '# Title' heading"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_colab_cell_matches_the_repository_setting(path):
    """The hidden first cell clones the repository named in _config.yml, and does nothing elsewhere."""
    cell = json.loads(path.read_text())["cells"][0]
    assert "".join(cell["source"]) == _book.colab_cell_source(ROOT / "_config.yml")
    assert set(_book.COLAB_TAGS) <= set(cell["metadata"]["tags"])
    assert cell["outputs"] == [], "the Colab cell must print nothing outside Colab"


def test_strip_volatile_metadata_keeps_tags(tmp_path):
    path = tmp_path / "nb.ipynb"
    path.write_text(json.dumps({"metadata": {"papermill": {"duration": 1.0}, "kernelspec": {"name": "python3"}},
                                "cells": [{"cell_type": "code", "metadata": {"tags": ["parameters"],
                                           "papermill": {"start_time": "x"}, "execution": {"a": 1}}}]}))
    _book.strip_volatile_metadata(path)
    nb = json.loads(path.read_text())
    assert nb["metadata"] == {"kernelspec": {"name": "python3"}}
    assert nb["cells"][0]["metadata"] == {"tags": ["parameters"]}


def test_split_stream_outputs_are_merged_so_reruns_store_the_same_file():
    outputs = [{"output_type": "stream", "name": "stdout", "text": ["a = 1\n"]},
               {"output_type": "stream", "name": "stdout", "text": ["\n", "b = 2\n"]},
               {"output_type": "stream", "name": "stderr", "text": ["warning\n"]},
               {"output_type": "display_data", "data": {}, "metadata": {}},
               {"output_type": "stream", "name": "stdout", "text": "c\n"}]
    merged = _book.coalesce_streams(outputs)
    assert [o.get("name") for o in merged] == ["stdout", "stderr", None, "stdout"]
    assert merged[0]["text"] == ["a = 1\n", "\n", "b = 2\n"]
    assert merged[3]["text"] == "c\n"
    assert outputs[0]["text"] == ["a = 1\n"], "the input list is left as it was"


@pytest.mark.parametrize("text,value", [("3", 3), ("0.5", 0.5), ("True", True), ("None", None), ("cpu", "cpu")])
def test_parameter_values_are_parsed_like_papermill(text, value):
    assert _book._parse_value(text) == value


@pytest.mark.slow
def test_nbval_fails_when_a_stored_number_is_altered(tmp_path):
    """The output check bites: change one printed digit in chapter 1 and exactly that cell fails."""
    pytest.importorskip("nbval", reason="nbval (the book extra) is not installed")
    source = ROOT / "chapters" / "01_batch_norm.ipynb"
    nb = json.loads(source.read_text())
    target = next(o for c in nb["cells"] if c["cell_type"] == "code" for o in c["outputs"]
                  if o.get("name") == "stdout" and "log-log slope" in "".join(o["text"]))
    text = "".join(target["text"])
    altered = re.sub(r"slope of the RMS deviation for N >= 16: (-?\d\.\d{3})",
                     lambda m: m.group(0).replace(m.group(1), f"{float(m.group(1)) + 0.001:.3f}"), text)
    assert altered != text
    target["text"] = altered
    copy = tmp_path / source.name
    copy.write_text(json.dumps(nb))
    shutil.copy(ROOT / "tests" / "nbval_sanitize.cfg", tmp_path)
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval",
                           "--nbval-current-env", "--nbval-sanitize-with", str(tmp_path / "nbval_sanitize.cfg"),
                           str(copy)], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    summary = proc.stdout.strip().splitlines()[-1]
    assert proc.returncode == 1, proc.stdout[-3000:]
    assert re.search(r"\b1 failed\b", summary) and "passed" in summary, summary


def test_citation_cff_validates_against_the_cff_1_2_0_schema():
    jsonschema = pytest.importorskip("jsonschema", reason="jsonschema (with the book extra) is not installed")

    schema = json.loads((ROOT / "tests" / "schemas" / "cff-1.2.0.schema.json").read_text())
    citation = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    errors = [e.message for e in jsonschema.Draft7Validator(schema).iter_errors(citation)]
    assert not errors, errors
    assert citation["cff-version"] == "1.2.0"
    assert any(ref.get("title") == "Layer Normalization" for ref in citation["references"])


def test_how_to_cite_page_agrees_with_citation_cff_and_the_configured_repository():
    citation = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    repository = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"]
    assert citation["repository-code"] == repository
    page = (ROOT / "citing.md").read_text()
    bibtex = re.search(r"@software\{[^`]*?\n\}", page).group(0)
    fields = dict(re.findall(r"^\s*(\w+)\s*=\s*\{(.*)\},?$", bibtex, re.M))
    assert fields["title"].replace("\\&", "&") == citation["title"]
    assert fields["version"] == citation["version"]
    assert fields["year"] == str(citation["date-released"])[:4]
    assert fields["url"] == repository
    assert "{cite}`ba2016layer`" in page


def test_every_python_file_compiles_without_warnings():
    """Python 3.12+ (Colab has 3.13) warns at import about invalid escapes such as ``\\log`` in a docstring that
    is not raw; compiled here with warnings as errors, so a reader never sees one."""
    import warnings

    files = subprocess.run(["git", "ls-files", "*.py"], cwd=ROOT, capture_output=True, text=True,
                           check=True).stdout.split()
    assert files
    for name in files:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            compile((ROOT / name).read_text(encoding="utf-8"), name, "exec")
