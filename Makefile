# Layer Normalization, reproduced. Two commands do everything (see README.md):
#   make book   -> .venv, install, execute every chapter in place, build the HTML book in _build/html
#   make test   -> .venv, install, unit tests, papermill smoke runs, nbval on every chapter, -W book build
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
CHAPTERS := $(sort $(wildcard chapters/[0-9]*.ipynb))
PROFILE ?= cpu
NBVAL_FLAGS := --nbval --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg --nbval-cell-timeout 900

.PHONY: help book test notebooks reproduce clean distclean venv unit smoke nbval html colab-cells \
	browser-deps rendered bench gpu-check test-pythons

help:
	@echo "make book       build the book (executes chapters, writes _build/html/index.html)"
	@echo "make test       unit tests, smoke runs, nbval and a warnings-as-errors book build"
	@echo "make notebooks  re-execute every chapter in place with default parameters"
	@echo "make reproduce PROFILE=cpu|paper|smoke   rerun the experiments (recompute=True)"
	@echo "make bench      benchmark lnlib against torch and a memory copy (~2 min)"
	@echo "make gpu-check  on a CUDA machine: tests, experiments and benchmark on the GPU (OUT=_build/gpu)"
	@echo "make test-pythons  pip install . and the NumPy tests on Python 3.11, 3.12, 3.13 (needs PyPI, no torch)"
	@echo "make clean / distclean   remove _build / also remove .venv"

# The environment: a virtualenv with the pinned lock file, then lnlib itself (editable, no new deps).
# TORCH_CPU=1 installs the CPU-only torch wheel from PyTorch's own index first (on Linux, PyPI's torch is the
# CUDA build with its nvidia-* libraries, several GB); the pinned version then counts as installed.
TORCH_CPU ?=
TORCH_VERSION := $(shell sed -n 's/^torch==//p' requirements-lock.txt)
TORCH_CPU_INDEX := https://download.pytorch.org/whl/cpu

$(STAMP): requirements-lock.txt pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python >= 3.11 is required (the pinned environment needs it), found " + sys.version'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(if $(TORCH_CPU),$(PY) -m pip install --quiet --disable-pip-version-check --index-url $(TORCH_CPU_INDEX) torch==$(TORCH_VERSION))
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-lock.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $@

venv: $(STAMP)

colab-cells: $(STAMP)
	$(PY) -m lnlib._book colab-cells $(CHAPTERS)

notebooks: colab-cells
	$(PY) -m lnlib._book execute $(CHAPTERS)

html: $(STAMP)
	$(VENV)/bin/jupyter-book build . -W -n --keep-going

book: notebooks html
	@echo "The book is in _build/html/index.html"

unit: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider -m "not browser" tests

# Every chapter at the smoke profile, recomputing; results go to _build so data/results stays as committed.
smoke: $(STAMP)
	rm -rf _build/smoke
	LNLIB_RESULTS_DIR=_build/smoke/results LNLIB_CHECKPOINT_DIR=_build/smoke/checkpoints \
		$(PY) -m lnlib._book run --out _build/smoke \
		-p profile smoke -p recompute True $(CHAPTERS)

nbval: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider $(NBVAL_FLAGS) $(CHAPTERS)

# Headless Chromium for the rendered-book checks: installed from Debian where we may (root, apt-get);
# elsewhere the checks skip with a message.
browser-deps:
	@if command -v chromium >/dev/null 2>&1; then echo "chromium: $$(chromium --version 2>/dev/null)"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver >/dev/null \
		|| echo "could not install chromium; the rendered-book checks will skip"; \
	else echo "chromium not installed and no root apt-get; the rendered-book checks will skip"; fi

# The built book opened in Chromium with no network: equations typeset, images and links resolve.
rendered: browser-deps
	$(PY) -m pytest -q -p no:cacheprovider -m browser tests/test_rendered_book.py

test: unit smoke nbval html rendered
	@echo "make test: all checks passed"

bench: $(STAMP)
	$(PY) -m lnlib.bench --profile cpu

# The GPU check (scripts/gpu_check.sh): unit tests with CUDA, every experiment with device="auto", the GPU
# benchmark; everything under $OUT (default _build/gpu). No venv: it runs the python whose torch has CUDA
# (PYTHON=...; .venv/bin/python if it exists). GPU_CHECK_FLAGS=--allow-cpu makes it a CPU dry run.
gpu-check:
	bash scripts/gpu_check.sh $(GPU_CHECK_FLAGS)

# Not part of `make test`: on each Python the project claims (PYTHONS="3.11 3.12 3.13"), a throwaway venv in
# _build/pyvers/<version>, `pip install --no-deps .`, numpy/pytest/hypothesis from PyPI, and the NumPy-only
# tests of tests/numpy_only.txt (torch is not installed there). One PASS/FAIL line per version.
test-pythons:
	bash scripts/test_python_versions.sh

reproduce: $(STAMP)
	$(PY) -m lnlib._book run --out _build/reproduce/$(PROFILE) -p profile $(PROFILE) -p recompute True $(CHAPTERS)
	@echo "Results written to data/results; run 'make notebooks' to show them in the chapters."

clean:
	rm -rf _build .pytest_cache .hypothesis
	find . -name __pycache__ -type d -prune -not -path './.venv/*' -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV) *.egg-info
