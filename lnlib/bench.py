"""``python -m lnlib.bench``: run the benchmark suite and print its table (chapter 16 shows it).

Options: ``--profile`` (``cpu`` by default: the four shapes of the book, about 3 minutes; ``smoke``: seconds;
``gpu``: the GPU rows only, about a minute, CUDA needed), ``--device`` (``auto``: the CPU rows always, plus
the GPU rows when CUDA is present; ``cpu``: the CPU rows only), ``--no-save`` (print only; by default the
result is written to ``data/results/bench-<profile>-seed0.json``, or under ``$LNLIB_RESULTS_DIR``, with
provenance). With GPU rows, the summary adds the GPU's bandwidth table and the Figure 6 projection.
"""

from __future__ import annotations

import argparse

from . import experiments, report
from .experiments import bench


def summary(record: dict) -> str:
    """One line per shape and row: median time, effective GB/s, ratio to torch and to the copy (the copy of
    the same device); with GPU rows, then :func:`gpu_summary`."""
    rows = record["data"]["rows"]
    lines = []
    for row in rows:
        if row["norm"] == "copy":
            continue
        tag = bench.TAG if row["impl"].endswith(bench.TAG) else ""
        ref_impl = "torch F" if row["direction"] != "training step" else "torch.nn.LayerNorm"
        reference = bench.lookup(rows, row["shape"], row["norm"], row["direction"], ref_impl + tag)
        if row["direction"] == "backward" and reference is None:
            reference = bench.lookup(rows, row["shape"], row["norm"], "backward", "torch native backward" + tag)
        copy_direction = "backward" if row["direction"] == "backward" else "forward"
        copy_impl = bench.COPY_IMPLS["device" if tag else "host"][copy_direction] + tag
        copy = bench.lookup(rows, row["shape"], "copy", copy_direction, copy_impl)
        traffic = bench.traffic_bytes(row)
        gbs = traffic / row["seconds"] / 1e9 if traffic else None
        lines.append((f"{row['shape'][0]}x{row['shape'][1]}", row["norm"], row["direction"], row["impl"],
                      f"{1e3 * row['seconds']:.3f}", "-" if gbs is None else f"{gbs:.2f}",
                      "-" if reference is None else f"{row['seconds'] / reference:.2f}",
                      "-" if copy is None or row["direction"] == "forward+backward" or not traffic
                      else f"{copy / row['seconds']:.2f}"))
    text = report.table(["shape", "norm", "direction", "implementation", "ms", "GB/s", "x torch",
                         "of copy BW"], lines)
    if "gpu" in record["data"]:
        text += "\n\n" + gpu_summary(record)
    return text


def gpu_summary(record: dict) -> str:
    """The GPU, its bandwidth at each shape (device copy and layer norm forward+backward, lnlib and
    ``F.layer_norm``, against the peak), and Figure 6's time per epoch and projected ``paper`` time."""
    gpu, rows, tag = record["data"]["gpu"], record["data"]["rows"], bench.TAG
    peak = gpu["peak_bandwidth_gbs"]
    peak_text = "unknown" if peak is None else f"{peak:.0f} GB/s ({gpu['peak_bandwidth_source']})"
    lines = [f"GPU: {gpu['name']} (compute capability {gpu['capability']}, {gpu['multiprocessors']} "
             f"multiprocessors, {gpu['memory_gib']} GiB); torch {gpu['torch']}, CUDA {gpu['cuda']}; "
             f"peak memory bandwidth {peak_text}"]

    def bandwidth(row: dict) -> tuple[str, str]:
        gbs = bench.traffic_bytes(row) / row["seconds"] / 1e9
        return f"{gbs:.0f}", "-" if peak is None else f"{100 * gbs / peak:.1f}%"

    table = []
    shapes = [tuple(r["shape"]) for r in rows if r["impl"].endswith(tag) and r["norm"] == "copy"]
    for shape in dict.fromkeys(shapes):  # in the profile's order, once each
        found = {impl: next((r for r in rows if tuple(r["shape"]) == shape and r["norm"] == norm
                             and r["direction"] == direction and r["impl"] == impl + tag), None)
                 for impl, norm, direction in (("torch copy_", "copy", "forward"),
                                               ("lnlib.torch", "layer norm", "forward+backward"),
                                               ("torch F", "layer norm", "forward+backward"))}
        if None in found.values():
            continue
        copy, ours, ref = found["torch copy_"], found["lnlib.torch"], found["torch F"]
        table.append((f"{shape[0]}x{shape[1]}", *bandwidth(copy), f"{1e3 * ours['seconds']:.3f}",
                      f"{1e3 * ref['seconds']:.3f}", f"{ours['seconds'] / ref['seconds']:.2f}", *bandwidth(ours)))
    lines += ["", "Layer norm forward+backward on the GPU (20MN bytes) next to a device copy (8MN bytes):",
              report.table(["shape", "copy GB/s", "of peak", "lnlib ms", "torch F ms", "x torch", "lnlib GB/s",
                            "of peak"], table)]
    fig6 = gpu["fig6"]
    lines.append("")
    for bs in ("128", "4"):
        step, epoch = fig6["per_batch_size"][bs]["seconds_per_step"], fig6["per_batch_size"][bs]["seconds_per_epoch"]
        ours, ref = step["lnlib.torch.LayerNorm"], step["torch.nn.LayerNorm"]
        lines.append(f"Figure 6 MLP training step, batch {bs}: lnlib {1e3 * ours:.3f} ms, nn.LayerNorm "
                     f"{1e3 * ref:.3f} ms (x{ours / ref:.2f}); an epoch of {fig6['cases_per_epoch']:,} cases "
                     f"{epoch['lnlib.torch.LayerNorm']:.1f} s (nn.LayerNorm {epoch['torch.nn.LayerNorm']:.1f} s)")
    paper = fig6["paper"]
    counts = ", ".join(f"{e} at batch {bs}" for bs, e in paper["epochs_by_batch_size"].items())
    lines.append(f"Figure 6 paper profile on this GPU, projected: {paper['epochs']} epochs ({counts}), "
                 f"{paper['training_hours']:.1f} h of training steps (evaluation not included)")
    return "\n".join(lines)


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
