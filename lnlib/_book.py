"""Executing the chapters: the engine behind ``make notebooks``, ``make test`` and ``make reproduce``.

``python -m lnlib._book execute chapters/*.ipynb``
    Run each chapter in place with its default parameters (papermill, kernel ``python3``, working
    directory ``chapters/``) and drop the metadata that changes on every run (timestamps, durations,
    paths), so re-running an unchanged chapter leaves the committed file unchanged.
``python -m lnlib._book run --out DIR -p profile smoke -p recompute True chapters/*.ipynb``
    Run each chapter with the given parameters into ``DIR`` (the committed chapters are untouched),
    printing the wall time of each.

Chapters run one after the other (torch notebooks side by side on 2 cores only slow each other down).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

_VOLATILE_CELL_KEYS = ("papermill", "execution")


def strip_volatile_metadata(path: Path) -> None:
    """Remove papermill's and Jupyter's per-run metadata from a notebook file (tags are kept)."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    nb.get("metadata", {}).pop("papermill", None)
    for cell in nb.get("cells", []):
        for key in _VOLATILE_CELL_KEYS:
            cell.get("metadata", {}).pop(key, None)
    path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def execute(notebook: Path, output: Path, parameters: dict[str, Any] | None = None, *,
            timeout: int | None = None) -> float:
    """Execute ``notebook`` into ``output`` with papermill; returns the wall time in seconds."""
    import papermill

    start = time.perf_counter()
    papermill.execute_notebook(
        str(notebook), str(output), parameters=parameters or {}, kernel_name="python3",
        cwd=str(notebook.parent), progress_bar=False, execution_timeout=timeout,
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
    args = parser.parse_args(argv)

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
