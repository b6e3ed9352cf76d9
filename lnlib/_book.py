"""Executing the chapters: the engine behind ``make notebooks``, ``make test`` and ``make reproduce``.

``python -m lnlib._book execute chapters/*.ipynb``
    Run each chapter in place with its default parameters (papermill, kernel ``python3``, working
    directory ``chapters/``) and drop the metadata that changes on every run (timestamps, durations,
    paths), so re-running an unchanged chapter leaves the committed file unchanged.
``python -m lnlib._book run --out DIR -p profile smoke -p recompute True chapters/*.ipynb``
    Run each chapter with the given parameters into ``DIR`` (the committed chapters are untouched),
    printing the wall time of each.
``python -m lnlib._book colab-cells chapters/*.ipynb``
    Write (or update) the hidden first cell of every chapter that, on Google Colab only, clones the
    repository named in ``_config.yml`` and installs lnlib from it; locally it does nothing.

Chapters run one after the other (torch notebooks side by side on 2 cores only slow each other down).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from . import results

_VOLATILE_CELL_KEYS = ("papermill", "execution")
COLAB_TAGS = ["colab-setup", "remove-cell"]
COLAB_TEMPLATE = """\
# Colab only: fetch the book (code and data) and install lnlib; elsewhere this cell does nothing.
import sys

if "google.colab" in sys.modules:
    import os
    import subprocess

    if not os.path.isdir("/content/lnbook"):
        subprocess.run(["git", "clone", "--depth", "1", "--branch", "{branch}",
                        "{url}", "/content/lnbook"], check=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                    "-e", "/content/lnbook"], check=True)
    sys.path.insert(0, "/content/lnbook")
    os.chdir("/content/lnbook/chapters")"""


def repository(config: Path) -> tuple[str, str]:
    """``(url, branch)`` of the ``repository`` setting in ``_config.yml``."""
    import yaml

    repo = yaml.safe_load(config.read_text(encoding="utf-8")).get("repository", {})
    if not repo.get("url"):
        raise ValueError(f"{config}: repository.url is not set; the Colab cells need it")
    return repo["url"], repo.get("branch", "main")


def colab_cell_source(config: Path) -> str:
    url, branch = repository(config)
    return COLAB_TEMPLATE.format(url=url, branch=branch)


def write_colab_cell(path: Path, source: str) -> bool:
    """Insert or update the Colab cell at the top of a notebook; returns whether the file changed."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    cells = nb["cells"]
    cell = {"cell_type": "code", "execution_count": None, "id": "colab-setup",
            "metadata": {"tags": list(COLAB_TAGS)}, "outputs": [], "source": source.splitlines(keepends=True)}
    if cells and "colab-setup" in cells[0].get("metadata", {}).get("tags", []):
        if "".join(cells[0]["source"]) == source:
            return False
        cells[0] = cell
    else:
        cells.insert(0, cell)
    path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return True


def coalesce_streams(outputs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Merge consecutive stream outputs of the same stream into one.

    How a cell's prints are cut into stream messages depends on when the kernel flushed, so the same
    output can be stored as one message on one run and two on the next; merged, the file is the same.
    """
    merged: list[dict[str, Any]] = []
    for out in outputs:
        previous = merged[-1] if merged else None
        if (previous is not None and out.get("output_type") == "stream"
                and previous.get("output_type") == "stream" and previous.get("name") == out.get("name")):
            text = "".join(previous["text"]) + "".join(out["text"])
            previous["text"] = text.splitlines(keepends=True)
        else:
            merged.append(dict(out))  # a copy: merging later must not change the caller's outputs
    return merged


def strip_volatile_metadata(path: Path) -> None:
    """Remove papermill's and Jupyter's per-run metadata from a notebook file (tags are kept), merge split
    stream outputs, and replace the file atomically."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    nb.get("metadata", {}).pop("papermill", None)
    for cell in nb.get("cells", []):
        for key in _VOLATILE_CELL_KEYS:
            cell.get("metadata", {}).pop(key, None)
        if "outputs" in cell:
            cell["outputs"] = coalesce_streams(cell["outputs"])
    results.write_json_atomic(path, nb, ensure_ascii=False)


def execute(notebook: Path, output: Path, parameters: dict[str, Any] | None = None, *,
            timeout: int | None = None) -> float:
    """Execute ``notebook`` into ``output`` with papermill; returns the wall time in seconds."""
    import papermill

    start = time.perf_counter()
    papermill.execute_notebook(
        str(notebook), str(output), parameters=parameters or {}, kernel_name="python3",
        cwd=str(notebook.parent), progress_bar=False, execution_timeout=timeout,
        # the kernel listens on localhost only; its warning about unencrypted TCP, printed once per
        # chapter, says nothing about the chapter (errors are still printed)
        extra_arguments=["--IPKernelApp.log_level=ERROR"],
    )
    return time.perf_counter() - start


def _parse_value(text: str) -> Any:
    """papermill's CLI convention: ints, floats, True/False/None, else the string itself."""
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    return {"True": True, "False": False, "None": None}.get(text, text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lnlib._book", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    ex = sub.add_parser("execute", help="run chapters in place with default parameters")
    ex.add_argument("notebooks", nargs="+", type=Path)
    ex.add_argument("--timeout", type=int, default=1800, help="per-cell timeout in seconds")
    rn = sub.add_parser("run", help="run chapters with parameters into another folder")
    rn.add_argument("notebooks", nargs="+", type=Path)
    rn.add_argument("--out", type=Path, required=True)
    rn.add_argument("-p", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"))
    rn.add_argument("--timeout", type=int, default=1800, help="per-cell timeout in seconds")
    cc = sub.add_parser("colab-cells", help="write the Colab setup cell into chapters")
    cc.add_argument("notebooks", nargs="+", type=Path)
    cc.add_argument("--config", type=Path, default=Path("_config.yml"))
    args = parser.parse_args(argv)

    if args.command == "colab-cells":
        source = colab_cell_source(args.config)
        for notebook in args.notebooks:
            changed = write_colab_cell(notebook, source)
            print(f"{notebook}: {'updated' if changed else 'up to date'}")
        return 0

    for notebook in args.notebooks:
        if args.command == "execute":
            seconds = execute(notebook, notebook, timeout=args.timeout)
            strip_volatile_metadata(notebook)
        else:
            args.out.mkdir(parents=True, exist_ok=True)
            parameters = {name: _parse_value(value) for name, value in args.p}
            seconds = execute(notebook, args.out / notebook.name, parameters, timeout=args.timeout)
        print(f"{notebook}: {seconds:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
