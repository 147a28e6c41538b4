# The README's two commands live here: `make run` (the main job on embedded defaults) and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint bench plan ci-local report-screenshot image image-check clean

# The venv is rebuilt whenever the dependency declarations change.
$(STAMP): pyproject.toml $(wildcard model_code/requirements.txt)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]' $(if $(wildcard model_code/requirements.txt),-r model_code/requirements.txt)
	touch $(STAMP)

# DVC (data versions) in a venv of its own: requirements-dvc.txt says why.
DVC := .venv-dvc/.installed
$(DVC): requirements-dvc.txt
	$(PYTHON) -m venv .venv-dvc
	.venv-dvc/bin/pip install --quiet -r requirements-dvc.txt
	touch $(DVC)

run: $(STAMP)
	$(BIN)/mlops demo

# The demo's report rendered by headless Chromium (installed from Debian's packages if missing).
report-screenshot: $(STAMP)
	command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null)
	$(BIN)/python scripts/screenshot_report.py

test: $(STAMP) $(DVC)
	# --dist loadfile: a module's tests share one worker, so a module fixture (the demo run of
	# tests/local/test_demo.py) is built once, not once per worker.
	$(BIN)/python -m pytest -q -n 2 --dist loadfile --durations=25

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/pyright

# Evidently, the drift benchmark's peer, needs pandas < 3: it gets a venv of its own.
EVIDENTLY := .venv-evidently/.installed
$(EVIDENTLY):
	$(PYTHON) -m venv .venv-evidently
	.venv-evidently/bin/pip install --quiet evidently==0.7.23 "pandas<3"
	touch $(EVIDENTLY)

# wrk (Debian's package) is the serving benchmark's load generator: independent of the servers it measures.
bench: $(STAMP) $(EVIDENTLY)
	command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk >/dev/null)
	$(BIN)/python bench/serving.py
	$(BIN)/python bench/drift.py
	$(BIN)/python bench/pipeline.py

# The lint and unit-test jobs of .gitlab-ci.yml under gitlab-ci-local's shell executor.
ci-local: $(STAMP)
	bash scripts/ci_local.sh lint unit-tests

# The model image (model_code/Dockerfile) with docker or podman, tagged by model_code/'s content hash;
# the last word printed is the image reference. Installs podman where no engine exists (as root).
image:
	bash scripts/image.sh

# The image's Python contents in a fresh venv: requirements install, every entrypoint resolves.
image-check:
	bash scripts/image_check.sh

plan: $(STAMP)
	$(BIN)/mlops infra plan --stack dev

clean:
	rm -rf $(VENV) .venv-evidently .mlops .pytest_cache .ruff_cache build
