# Two entry points for a fresh Debian machine with Python 3.11: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
DEMO   ?= demo/zen

.PHONY: demo test venv system-deps bench clean

$(BIN)/eventmart: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[test]"
	@touch $@

venv: $(BIN)/eventmart

demo: venv
	rm -rf $(DEMO)
	$(BIN)/eventmart demo zen $(DEMO)

system-deps:
	bash scripts/system-deps.sh

test: system-deps venv
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/python -m pytest -q

bench: venv system-deps
	$(BIN)/pip install -q -e ".[test,bench]"
	$(BIN)/python benchmarks/zen_marts.py

clean:
	rm -rf $(VENV) demo build *.egg-info
