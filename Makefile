# Two commands for a fresh machine (Python >= 3.10 with venv):
#   make demo   set up .venv and run `mcgenref demo` on the bundled sample
#   make test   set up .venv with the test tools and run the test suite
# torch is installed first and pinned (a CPU wheel here; pip picks the build for your platform).

PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin

.PHONY: demo test lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.core-installed: $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.test-installed: $(VENV)/.core-installed
	$(BIN)/python -m pip install --quiet -e ".[all,test]"
	touch $@

demo: $(VENV)/.core-installed
	$(BIN)/mcgenref demo --out demo-output

lint: $(VENV)/.test-installed
	$(BIN)/ruff check src tests benchmarks examples

test: $(VENV)/.test-installed
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) demo-output build dist
