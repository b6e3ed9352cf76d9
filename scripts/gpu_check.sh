#!/usr/bin/env bash
# The GPU check of issue 19, in one call: lnlib.torch on CUDA, every experiment with device="auto", and the
# benchmark on the GPU. Run from anywhere on a machine with a CUDA GPU and torch (no network, no install):
#
#   bash scripts/gpu_check.sh               # or: make gpu-check
#   bash scripts/gpu_check.sh --allow-cpu   # dry run without CUDA: the same steps, small (tests of the GPU
#                                           # path only, experiments at smoke, the smoke benchmark)
#
# Steps (each runs even if an earlier one failed; the exit status is nonzero if any failed):
#   1. pytest tests/ with CUDA present (browser tests excluded), LNLIB_CUDA_ERRORS_JSON recording the errors of
#      tests/test_cuda_dtypes.py; pytest-xdist spreads the tests over the cores where it is installed
#   2. python -m lnlib.gpu_check experiments: every experiment at smoke (the quick ones at cpu too) on CUDA
#   3. python -m lnlib.bench --profile gpu: lnlib against F.layer_norm and a device copy, the Figure 6 step
#   4. python -m lnlib.gpu_check summary: summary.txt
# Everything goes to $OUT (default _build/gpu), at most 8 files: gpu_check.log, pytest-junit.xml,
# cuda_errors.json, gpu_experiments.json, bench-gpu-seed0.json, summary.txt.
# Environment: OUT, PYTHON (default .venv/bin/python if present, else python3), GPU_CHECK_WORKERS (pytest-xdist
# workers, default half the cores, at most 8), GPU_CHECK_TEST_TIMEOUT (seconds for step 1, default 240).
# Each step has a time limit (240 + 150 + 150 + 30 s at most), so the whole check ends within 10 minutes;
# on an H200 it takes about 4. A step stopped at its limit gets SIGINT (pytest still writes its report).
# Wheels of missing packages, if any: in .whl/ (carried to the GPU machine; list /.whl/ in .git/info/exclude),
# installed into a temporary folder at the start. None are needed on the H200 machine of this project.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

ALLOW_CPU=0
for arg in "$@"; do
    case "$arg" in
        --allow-cpu) ALLOW_CPU=1 ;;
        -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
        *) echo "gpu_check.sh: unknown argument '$arg' (expected --allow-cpu or --help)" >&2; exit 2 ;;
    esac
done

OUT="${OUT:-_build/gpu}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 CUBLAS_WORKSPACE_CONFIG="${CUBLAS_WORKSPACE_CONFIG:-:4096:8}"
export PYTHONPATH=".${PYTHONPATH:+:$PYTHONPATH}" MPLBACKEND=Agg
if [ -z "${PYTHON:-}" ]; then
    if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi

step() {  # step NAME TIMEOUT_SECONDS COMMAND...: run, report the time and exit status, never stop the script
    local name=$1 limit=$2 began=$SECONDS status
    shift 2
    echo
    echo "=== $name: $* (limit ${limit} s)"
    timeout -k 20 -s INT "$limit" "$@"
    status=$?
    echo "=== $name: exit $status after $((SECONDS - began)) s"
    STATUS[$name]=$status
}

main() {
    declare -gA STATUS=()
    echo "lnlib GPU check, $(date -u '+%Y-%m-%d %H:%M:%S UTC'), in $(pwd), writing to $OUT"
    if [ -d .whl ] && compgen -G ".whl/*.whl" >/dev/null; then
        local site="${TMPDIR:-/tmp}/lnlib-gpu-site"
        "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" \
            .whl/*.whl && export PYTHONPATH="$PYTHONPATH:$site"
    fi
    "$PYTHON" - <<'EOF'
import platform, torch
print(f"python {platform.python_version()} ({platform.machine()}), torch {torch.__version__}, "
      f"CUDA {torch.version.cuda}, available: {torch.cuda.is_available()}")
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print(f"device 0: {p.name}, compute capability {p.major}.{p.minor}, {p.total_memory / 2**30:.0f} GiB")
EOF
    if ! "$PYTHON" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
        if [ "$ALLOW_CPU" = 0 ]; then
            echo "gpu_check.sh: CUDA is not available; this check needs a GPU (--allow-cpu: a CPU dry run)"
            return 2
        fi
        echo "CPU dry run (--allow-cpu): tests of the GPU path only, experiments at smoke, the smoke benchmark"
    else
        ALLOW_CPU=0  # with CUDA present the check is always the full one
    fi

    rm -f "$OUT/pytest-junit.xml" "$OUT/cuda_errors.json" "$OUT/gpu_experiments.json" "$OUT"/bench-*-seed0.json \
        "$OUT/summary.txt"
    local tests=(tests) parallel=()
    if [ "$ALLOW_CPU" = 1 ]; then
        tests=(tests/test_cuda_dtypes.py tests/test_bench.py tests/test_gpu_check.py)
    elif "$PYTHON" -c 'import xdist' 2>/dev/null; then
        local cores
        cores=$(nproc 2>/dev/null || echo 2)
        parallel=(-n "${GPU_CHECK_WORKERS:-$(( cores / 2 > 8 ? 8 : (cores / 2 > 1 ? cores / 2 : 1) ))}")
    fi
    LNLIB_CUDA_ERRORS_JSON="$OUT/cuda_errors.json" step tests "${GPU_CHECK_TEST_TIMEOUT:-240}" \
        "$PYTHON" -m pytest -q -p no:cacheprovider -m "not browser" -rs --durations=15 "${parallel[@]}" \
        --junitxml="$OUT/pytest-junit.xml" "${tests[@]}"

    local cpu_flag=()
    [ "$ALLOW_CPU" = 1 ] && cpu_flag=(--allow-cpu)
    step experiments 150 "$PYTHON" -m lnlib.gpu_check experiments --out "$OUT" "${cpu_flag[@]}"

    local bench=(--profile gpu --device auto)
    [ "$ALLOW_CPU" = 1 ] && bench=(--profile smoke --device cpu)
    LNLIB_RESULTS_DIR="$OUT" step bench 150 "$PYTHON" -m lnlib.bench "${bench[@]}"

    step summary 30 "$PYTHON" -m lnlib.gpu_check summary --out "$OUT" \
        --step "tests=${STATUS[tests]}" --step "experiments=${STATUS[experiments]}" --step "bench=${STATUS[bench]}"

    local worst=0 name
    for name in tests experiments bench summary; do
        [ "${STATUS[$name]}" -ne 0 ] && worst=1
    done
    echo
    echo "gpu_check.sh: $( [ "$worst" = 0 ] && echo PASS || echo FAIL ) (tests ${STATUS[tests]}, experiments" \
        "${STATUS[experiments]}, bench ${STATUS[bench]}, summary ${STATUS[summary]}); files in $OUT"
    return "$worst"
}

main 2>&1 | tee "$OUT/gpu_check.log"
exit "${PIPESTATUS[0]}"
