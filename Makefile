# Everything installs into .venv under the repo; the stamps make re-runs instant. `make dev` installs
# what running livelambda needs; `make test`, `lint` and `bench` add the test tools and the wheels the
# tests install offline into functions' venvs (devserver/runtime/app_env.py).
PYTHON     ?= python3
VENV       := .venv
BIN        := $(VENV)/bin
STAMP      := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test
WHEELHOUSE := $(VENV)/wheelhouse
# A function's venv: Lambda's runtime packages (app_env.RUNTIME_PACKAGES), and a small package the
# tests declare in a requirements.txt.
TEST_WHEELS := awslambdaric boto3 pip iniconfig
# More arguments for `livelambda dev`, e.g. other ports: make dev ARGS="--port 8801 --cloud-port 8800"
ARGS ?=

.PHONY: install install-test dev test chaos lint bench clean

$(STAMP): pyproject.toml
	@echo "==> [1/3] creating virtualenv in $(VENV)"
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "==> [2/3] upgrading pip"
	@$(BIN)/python -m pip install --progress-bar on -q --upgrade pip
	@echo "==> [3/3] installing livelambda (pip shows progress)"
	@$(BIN)/python -m pip install --progress-bar on -e .
	@touch $(STAMP)
	@echo "==> installed"

$(TEST_STAMP): $(STAMP) pyproject.toml
	@echo "==> [1/2] installing the test tools (pip shows progress)"
	@$(BIN)/python -m pip install --progress-bar on -e '.[test]'
	@echo "==> [2/2] downloading the wheels the tests install offline, into $(WHEELHOUSE)"
	@$(BIN)/python -m pip download --progress-bar on -d $(WHEELHOUSE) $(TEST_WHEELS)
	@touch $(TEST_STAMP)
	@echo "==> test tools installed"

install: $(STAMP)

install-test: $(TEST_STAMP)

dev: install
	@echo '==> $(BIN)/livelambda dev examples/hello --cloud $(ARGS)   (other ports: make dev ARGS="--port 8801 --cloud-port 8800")'
	@$(BIN)/livelambda dev examples/hello --cloud $(ARGS)

lint: install-test
	$(BIN)/ruff check .
	$(BIN)/mypy

test: install-test lint
	$(BIN)/python -m pytest

# The long chaos scenarios (minutes each; tests/test_chaos.py), printing their figures.
chaos: install-test
	$(BIN)/python -m pytest -m chaos -s tests/test_chaos.py

bench: install-test
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis test-output
