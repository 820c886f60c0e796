# Everything installs into .venv under the repo; the stamp makes re-runs instant.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install dev test lint bench clean

$(STAMP): pyproject.toml
	@echo "==> [1/3] creating virtualenv in $(VENV)"
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "==> [2/3] upgrading pip"
	@$(BIN)/python -m pip install --progress-bar on -q --upgrade pip
	@echo "==> [3/3] installing livelambda and its test tools (pip shows progress)"
	@$(BIN)/python -m pip install --progress-bar on -e '.[test]'
	@touch $(STAMP)
	@echo "==> installed"

install: $(STAMP)

dev: install
	$(BIN)/livelambda dev examples/hello --cloud

lint: install
	$(BIN)/ruff check .

test: install lint
	$(BIN)/python -m pytest

bench: install
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis test-output
