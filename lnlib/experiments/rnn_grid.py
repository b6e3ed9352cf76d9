r"""Where layer normalization helps a recurrent network most (claim H10): the LN-LSTM's speed-up over the
LSTM on a grid of sequence lengths and batch sizes.

The paper's conclusion (§7) says recurrent networks benefit most "especially for long sequences and small
mini-batches", and §6.5 motivates its handwriting experiment (sequences of 500 steps, mini-batches of 8)
the same way. It shows no experiment that varies either. Here the adding problem (:mod:`.rnn`; any length
can be generated) is trained at every combination of ``lengths`` and ``batch_sizes``, by the LSTM (eqs.
17–19) and the LN-LSTM (eqs. 20–22), with the same weights, batches and optimizer as chapter 8's runs of
the adding task.

**The measurement.** For one seed and one cell :math:`(T, B)` of the grid, the *speed-up* at a threshold
:math:`m` of the validation squared error is

.. math:: S_m(T, B) = \log_2 \frac{\text{steps the LSTM needs to reach } m}{\text{steps the LN-LSTM needs}},

in octaves: :math:`S = 1` is twice as fast. The validation error is evaluated on a geometric grid of
``evals_per_octave`` points per doubling of the step count (:func:`lnlib.experiments.rnn.evaluation_steps`),
so every step count, small or large, is known to the same factor :math:`2^{1/n}`. A run that never reaches
``m`` counts as one grid point past its budget (a speed-up computed from it is a lower bound). Training
stops early at ``stop_below`` (below every threshold judged), which keeps the grid affordable: the LN-LSTM
reaches it in a few hundred steps where the LSTM needs thousands.

**Choices the paper leaves open, declared.** The same learning rate (Adam, 1e-3) and clipping at every
batch size, and the step budget counted in updates (the paper's Figure 5 axis), not in cases seen: a
smaller batch gets fewer cases in the same number of steps. Hidden size 64, both markers anywhere in their
half of the sequence (the memory the task needs grows with ``T``, as in the paper's long sequences).

**Controls.** A cell where the LSTM runs out of budget gets a longer one (``longer_budgets``), and the
LSTM with a forget-gate bias of 1 (:data:`CONTROL`) is trained in the corners of the grid, against the same
LN-LSTM runs: the baseline's initialization (the authors' code has no forget-gate bias) should not decide
the verdict.

``python -m lnlib.experiments.rnn_grid --profile cpu --worker 0 --workers 2`` trains every second run in one
process; :func:`run` then only assembles the finished runs (logs of finished runs committed under
``data/runs/`` are read, not retrained).
"""

from __future__ import annotations

from typing import Any

import torch

from . import rnn, training

NAME = "rnn_grid"
THREADS = rnn.THREADS
VARIANTS = ("lstm", "ln_lstm")
#: the control baseline: the LSTM with a forget-gate bias of 1 at initialization (the authors' code, and so
#: the grid's LSTM, has none; a referee asked whether the speed-up measures that handicap)
CONTROL = "lstm_fb1"


def _grid(lengths: tuple[int, ...], batch_sizes: tuple[int, ...], seeds: int, hidden: int, steps: int,
          first_eval: int, valid: int, thresholds: tuple[float, ...], judged: float,
          lr: float = 1e-3, longer_budgets: tuple[tuple[int, int, int], ...] = (),
          control_lengths: tuple[int, ...] = (), control_batch_sizes: tuple[int, ...] = ()) -> dict[str, Any]:
    return {"control_batch_sizes": list(control_batch_sizes), "control_lengths": list(control_lengths),
            "longer_budgets": [list(c) for c in longer_budgets], "seeds": seeds, "lengths": list(lengths),
            "batch_sizes": list(batch_sizes), "hidden": hidden, "steps": steps, "first_eval": first_eval, "evals_per_octave": 8, "valid_cases": valid,
            "lr": lr, "clip": 1.0, "thresholds": list(thresholds), "judged_threshold": judged,
            "stop_below": min(thresholds)}


PROFILES: dict[str, dict[str, Any]] = {
    # seconds: a larger learning rate, so that most runs reach the thresholds and every code path runs
    "smoke": _grid((4, 8, 16), (2, 4, 8), 1, 8, 60, 4, 32, (0.15, 0.1), 0.15, lr=1e-2, control_lengths=(4, 16),
                   control_batch_sizes=(2, 8)),
    # 4 lengths spanning 8x, batch sizes 4 to 64. With 12,000 steps the LSTM at T=80, B=4 did not reach 0.05
    # in 3 of 5 seeds, so that cell gets 48,000. Control: the LSTM with a forget-gate bias of 1 in the four
    # corners of the grid (chapter 9).
    "cpu": _grid((10, 20, 40, 80), (4, 16, 64), 5, 64, 12_000, 10, 500, (0.1, 0.05, 0.02), 0.05,
                 longer_budgets=((80, 4, 48_000),), control_lengths=(10, 80), control_batch_sizes=(4, 64)),
    "paper": _grid((25, 50, 100, 200, 500), (4, 8, 16, 64), 5, 128, 40_000, 10, 1000, (0.1, 0.05, 0.02), 0.05,
                   control_lengths=(25, 500), control_batch_sizes=(4, 64)),
}


def make_spec(variant: str, length: int, batch_size: int, seed: int, params: dict[str, Any]) -> dict[str, Any]:
    """One run of the grid: an adding-task run of :mod:`.rnn` with a geometric evaluation grid, only the
    learning curve measured, and training stopped once the validation error is below ``stop_below``. The step
    budget is ``steps``, or the one ``longer_budgets`` lists for the cell ``(length, batch_size, steps)``."""
    for name, value in (("length", length), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < (2 if name == "length" else 1):
            raise ValueError(f"{name} must be an int >= {2 if name == 'length' else 1}, got {value!r}")
    steps = {(t, b): n for t, b, n in params.get("longer_budgets", [])}.get((length, batch_size), params["steps"])
    task_params = rnn._adding([variant], length, params["hidden"], steps, params["first_eval"],
                              params["valid_cases"], 1, 1, batch_size=batch_size)
    task_params.update({"lr": params["lr"], "clip": params["clip"], "evals_per_octave": params["evals_per_octave"],
                        "stop_below": params["stop_below"], "curve_only": True})
    return rnn.make_spec("adding", variant, seed, task_params)


def specs(params: dict[str, Any], seed: int) -> list[dict[str, Any]]:
    """Every run of a profile, for seeds ``seed .. seed + params["seeds"] - 1``: both variants in every cell,
    and the control baseline :data:`CONTROL` in the cells ``control_lengths`` x ``control_batch_sizes``."""
    grid = [make_spec(variant, length, batch_size, seed + s, params) for s in range(params["seeds"])
            for length in params["lengths"] for batch_size in params["batch_sizes"] for variant in VARIANTS]
    controls = [make_spec(CONTROL, length, batch_size, seed + s, params) for s in range(params["seeds"])
                for length in params.get("control_lengths", []) for batch_size in params.get("control_batch_sizes", [])]
    return grid + controls


def estimated_cost(spec: dict[str, Any]) -> float:
    """Rough single-core seconds: the LSTM runs to most of its budget at long lengths and small batches, the
    LN-LSTM stops after a few hundred steps (only used to balance the workers)."""
    steps = min(spec["steps"], 40 * spec["length"] * 64 / spec["batch_size"] ** 0.5)
    if spec["variant"] == "ln_lstm":
        steps = min(steps, 1000)
    return steps * spec["length"] * (2e-4 + 2.5e-6 * spec["batch_size"])


def run(params: dict[str, Any], *, profile: str, seed: int, device: str, progress: bool = True) -> dict[str, Any]:
    """Train every run of the grid that is not finished yet (resuming interrupted ones), then assemble."""
    folder = training.run_folder(NAME, profile, seed)
    dev = torch.device(device)
    logs = {rnn.run_key(s): rnn.train_run(s, None, folder, device=dev, progress=progress)
            for s in specs(params, seed)}
    return {"runs": logs, "trivial_adding_mse": rnn.ADDING_TRIVIAL_MSE,
            "training_seconds": float(sum(sum(log["timing"].values()) for log in logs.values()))}


def main(argv: list[str] | None = None) -> None:
    args = training.parse_worker_args("Train this worker's share of the H10 grid of a profile.", PROFILES, argv)
    params = PROFILES[args.profile]
    folder = training.run_folder(NAME, args.profile, args.seed)
    # seed by seed, so that an interrupted profile has whole seeds finished
    mine = sorted(training.balance(specs(params, args.seed), args.workers, estimated_cost, rnn.run_key)[args.worker],
                  key=lambda spec: (spec["seed"], -estimated_cost(spec), rnn.run_key(spec)))
    with training.run_environment(args.device, threads=THREADS) as dev:
        for spec in mine:
            rnn.train_run(spec, None, folder, device=dev)
    print(f"worker {args.worker} of {args.workers}: my runs of profile {args.profile} are finished")


if __name__ == "__main__":
    main()
