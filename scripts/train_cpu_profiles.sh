#!/usr/bin/env bash
# Train the cpu profiles of the experiments that train networks, in priority order, as one of two workers
# that share each experiment's queue (run it twice, one per core):
#
#     nohup scripts/train_cpu_profiles.sh 0 > train-0.log 2>&1 &
#     nohup scripts/train_cpu_profiles.sh 1 > train-1.log 2>&1 &
#
# Every run checkpoints each epoch and resumes where it stopped; finished runs are read, not retrained.
# Commit finished logs as they come: .venv/bin/python scripts/commit_finished_logs.py, then git add data/runs.
set -euo pipefail
worker=${1:?usage: scripts/train_cpu_profiles.sh WORKER (0 or 1)}
cd "$(dirname "$0")/.."
for experiment in ${EXPERIMENTS:-fig6_mnist convnet outliers draw}; do
    .venv/bin/python -m "lnlib.experiments.$experiment" --profile cpu --worker "$worker" --workers 2
done
