# Set-up and everyday commands. Everything runs inside .venv, created on first use.
# Torch is pinned to 2.13.0 by constraints.txt (pyproject keeps a range).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed

.PHONY: setup setup-producers demo test test-slow test-all bench lint clean

$(STAMP): pyproject.toml setup.py constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip setuptools wheel
	$(PIP) install --quiet -c constraints.txt -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)  ## create .venv and install axtrain with its test dependencies

setup-producers: $(STAMP)  ## add the real quantizers (Brevitas, QONNX) the import tests use; torch stays pinned
	$(PIP) install --quiet -c constraints.txt -e '.[test,producers]'
	$(PY) -c "import torch, sys; sys.exit(0 if torch.__version__.split('+')[0] == '2.13.0' else 'producers extra changed torch: ' + torch.__version__)"

demo: $(STAMP)  ## the main job on a small default: breast-cancer end to end (README 'How long it takes')
	$(VENV)/bin/axtrain pipeline --app breast-cancer --method axtrain --multiplier K2 --sram-voltage 0.66 --out out/demo

test: $(STAMP)  ## the default test suite (fast tier, < 10 minutes on 2 cores)
	$(PY) -m pytest -q

test-slow: $(STAMP)  ## only the slow-marked tests
	$(PY) -m pytest -q -m slow

test-all: $(STAMP)  ## every test
	$(PY) -m pytest -q -m 'slow or not slow'

bench: $(STAMP)  ## performance ratios against baselines measured in the same run
	$(PY) -m benchmarks

lint: $(STAMP)  ## ruff (pyflakes, import order, bugbear) and mypy (strict on hwmodels, formats, compiler, runtime); config in pyproject.toml
	$(VENV)/bin/ruff check .
	$(PY) tools/lint_tree.py > /dev/null
	$(VENV)/bin/mypy

clean:  ## remove the virtual environment, build output and what the demo and the Tour write (out/, runs/)
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache .lint out runs
