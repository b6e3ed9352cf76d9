"""``python -m lnlib.bench``: run the benchmark suite and print its table (chapter 13 shows it).

Options: ``--profile`` (``cpu`` by default: the four shapes of the book, about 3 minutes; ``smoke``: seconds),
``--device`` (``auto``: the CPU rows always, plus the GPU rows when CUDA is present), ``--no-save`` (print
only; by default the result is written to ``data/results/bench-<profile>-seed0.json`` with provenance).
"""

from __future__ import annotations

import argparse

from . import experiments, report
from .experiments import bench


def summary(record: dict) -> str:
    """One line per shape and row: median time, effective GB/s, ratio to torch and to the copy."""
    rows = record["data"]["rows"]
    lines = []
    for row in rows:
        if row["norm"] == "copy":
            continue
        ref_impl = "torch F" if row["direction"] != "training step" else "torch.nn.LayerNorm"
        if row["impl"].endswith("(GPU)"):
            ref_impl += " (GPU)"
        reference = bench.lookup(rows, row["shape"], row["norm"], row["direction"], ref_impl)
        if row["direction"] == "backward" and reference is None:
            reference = bench.lookup(rows, row["shape"], row["norm"], "backward", "torch native backward")
        copy = bench.lookup(rows, row["shape"], "copy", "backward" if row["direction"] == "backward" else "forward",
                            "np.add 2R1W" if row["direction"] == "backward" else "np.copyto")
        traffic = bench.traffic_bytes(row)
        gbs = traffic / row["seconds"] / 1e9 if traffic else None
        lines.append((f"{row['shape'][0]}x{row['shape'][1]}", row["norm"], row["direction"], row["impl"],
                      f"{1e3 * row['seconds']:.3f}", "-" if gbs is None else f"{gbs:.2f}",
                      "-" if reference is None else f"{row['seconds'] / reference:.2f}",
                      "-" if copy is None or row["direction"] == "forward+backward" or not traffic
                      else f"{copy / row['seconds']:.2f}"))
    return report.table(["shape", "norm", "direction", "implementation", "ms", "GB/s", "x torch",
                         "of copy BW"], lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m lnlib.bench", description=__doc__)
    parser.add_argument("--profile", choices=sorted(bench.PROFILES), default="cpu")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--no-save", action="store_true")
    args = parser.parse_args(argv)
    record = experiments.run(bench, profile=args.profile, device=args.device, save=not args.no_save)
    print(summary(record))


if __name__ == "__main__":
    main()
