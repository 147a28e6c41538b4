# The README's two commands live here: `make run` (the main job on embedded defaults) and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint bench plan clean

# The venv is rebuilt whenever the dependency declarations change.
$(STAMP): pyproject.toml $(wildcard model_code/requirements.txt)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]' $(if $(wildcard model_code/requirements.txt),-r model_code/requirements.txt)
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/mlops infra plan --all

test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/pyright

bench: $(STAMP)
	@ls bench/*.py >/dev/null 2>&1 && for b in bench/*.py; do $(BIN)/python $$b || exit 1; done || echo "no benchmarks yet"

plan: $(STAMP)
	$(BIN)/mlops infra plan --stack dev

clean:
	rm -rf $(VENV) .mlops .pytest_cache .ruff_cache
