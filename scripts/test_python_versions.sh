#!/usr/bin/env bash
# `pip install .` then the NumPy tests, on every Python version the README and pyproject claim (>= 3.11):
#
#   bash scripts/test_python_versions.sh          # or: make test-pythons   (not part of make test)
#   PYTHONS="3.12" bash scripts/test_python_versions.sh
#
# For each version in $PYTHONS (default "3.11 3.12 3.13") it finds an interpreter (pyenv's versions first,
# then python3.X on PATH), makes a throwaway venv in _build/pyvers/<version>, installs lnlib there with
# `pip install --no-deps .` (a real, non-editable install: the tests import lnlib from site-packages), then
# numpy, pytest and hypothesis from the package index, and runs the NumPy-only tests (tests/numpy_only.txt)
# against that install.
#
# torch is NOT installed in these venvs: PyPI's Linux torch is the multi-GB CUDA build, and this project pins
# only the CPU wheel for the Python of `make test`. The run is therefore the NumPy-only one by design:
# lnlib.numpy needs no torch, and the tests marked needs_torch (comparisons with torch, the torch twin) are
# skipped. lnlib.torch and the experiments are tested by `make test` (Python 3.11, the pinned torch).
#
# Prints one PASS/FAIL/MISSING line per version (counts, times, numpy version) and exits nonzero if any
# version failed or had no interpreter. Logs: _build/pyvers/<version>/{install,pytest}.log. Needs the package index.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

case "${1:-}" in
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
esac

VERSIONS=${PYTHONS:-"3.11 3.12 3.13"}
OUT=_build/pyvers
mapfile -t TESTS < <(grep -v '^[[:space:]]*#' tests/numpy_only.txt | sed '/^[[:space:]]*$/d')
PIP=(--disable-pip-version-check --quiet)
mkdir -p "$OUT"

# The interpreter for version $1: pyenv's newest patch release of it, else python$1 on PATH.
find_python() {
    local ver=$1 cand
    local pyenv_root
    pyenv_root=$( (command -v pyenv >/dev/null 2>&1 && pyenv root) || echo "${PYENV_ROOT:-$HOME/.pyenv}")
    local candidates=()
    while IFS= read -r dir; do candidates+=("$dir/bin/python$ver"); done \
        < <(ls -d "$pyenv_root/versions/$ver".* 2>/dev/null | grep -E "/$ver\.[0-9]+$" | sort -V -r)
    cand=$(command -v "python$ver" 2>/dev/null) && candidates+=("$cand")
    for cand in "${candidates[@]}"; do
        if [ -x "$cand" ] && [ "$("$cand" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)" = "$ver" ]
        then echo "$cand"; return 0; fi
    done
    return 1
}

echo "NumPy-only tests (${#TESTS[@]} modules of tests/numpy_only.txt) after 'pip install --no-deps .', per Python."
echo "torch: not installed in these venvs (PyPI's torch is the multi-GB CUDA build); the tests marked"
echo "needs_torch are skipped here and run in 'make test' (Python 3.11 with the pinned CPU torch)."
status=0
results=()
all_start=$SECONDS
for ver in $VERSIONS; do
    if ! python=$(find_python "$ver"); then
        results+=("MISSING $ver  no python$ver found (pyenv versions or PATH)")
        status=1
        continue
    fi
    venv=$OUT/$ver
    log=$venv/pytest.log
    start=$SECONDS
    rm -rf "$venv" && mkdir -p "$venv"
    echo "== Python $ver: $python -> $venv"
    ok=1
    {
        "$python" -m venv "$venv" &&
        "$venv/bin/python" -m pip install "${PIP[@]}" --no-deps . &&
        "$venv/bin/python" -m pip install "${PIP[@]}" numpy pytest hypothesis
    } >"$venv/install.log" 2>&1 || ok=0
    if [ $ok = 0 ]; then
        tail -n 20 "$venv/install.log"
        results+=("FAIL    $ver  install failed (see $venv/install.log); needs the package index")
        status=1
        continue
    fi
    # lnlib must come from the venv's site-packages, and torch must be absent (so the run is what it says)
    where=$(cd "$venv" && bin/python -c 'import importlib.util as u, lnlib, numpy
print(lnlib.__file__, numpy.__version__, u.find_spec("torch") is not None)')
    read -r lnlib_file numpy_version has_torch <<<"$where"
    echo "   lnlib from $lnlib_file; numpy $numpy_version; torch installed: $has_torch"
    case "$lnlib_file" in "$PWD/$venv"/*) ;; *)
        results+=("FAIL    $ver  lnlib was imported from $lnlib_file, not from the venv")
        status=1; continue ;;
    esac
    test_start=$SECONDS
    # the venv's pytest script: the checkout is not on sys.path, so lnlib is the installed one
    "$venv/bin/pytest" -q -p no:cacheprovider "${TESTS[@]}" >"$log" 2>&1
    rc=$?
    summary=$(grep -E '^[=[:space:]]*[0-9]+ (passed|failed|error)' "$log" | tail -n 1 | sed 's/=//g; s/^ *//; s/ *$//')
    times="tests $((SECONDS - test_start)) s, total $((SECONDS - start)) s"
    line="$ver  $("$venv/bin/python" -c 'import platform; print(platform.python_version())')  ${summary:-no summary}  ($times; numpy $numpy_version, no torch)"
    if [ $rc = 0 ]; then
        results+=("PASS    $line")
    else
        tail -n 30 "$log"
        results+=("FAIL    $line  log: $log")
        status=1
    fi
done

echo
printf '%s\n' "${results[@]}"
echo "($((SECONDS - all_start)) s in all)"
exit $status
