# Two entry points for a fresh Debian machine with Python 3.11: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# Apache Airflow lives in its own venv: its pins are not ours (tests/test_airflow.py drives it)
AIRFLOW_VENV ?= .venv-airflow
DEMO   ?= demo/zen
PORT   ?= 8050
# two pytest workers (pytest-xdist): most tests wait on subprocesses and servers, so two halve the wall time even on
# two cores; each worker starts its own PostgreSQL, ClickHouse stand-in and Kafka broker
TEST_WORKERS ?= 2

.PHONY: demo test venv system-deps bench docs clean

$(BIN)/eventmart: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[test]"
	@touch $@

venv: $(BIN)/eventmart

# the package as a user installs it, without extras: a runtime dependency missing from pyproject.toml shows here
MIN_VENV ?= .venv-min
$(MIN_VENV)/bin/eventmart: pyproject.toml $(shell find src -name '*.py' -o -name '*.yml' -o -name '*.gz')
	$(PYTHON) -m venv $(MIN_VENV)
	$(MIN_VENV)/bin/pip install -q --upgrade pip
	$(MIN_VENV)/bin/pip install -q .
	@touch $@

# Apache Superset too (tests/test_superset.py drives it): pinned by a constraints file, with duckdb at the main
# venv's version (an older duckdb may not open a newer file); pip's cache makes a rebuild take about a minute
SUPERSET_VENV ?= .venv-superset
$(SUPERSET_VENV)/bin/superset: tests/superset/constraints.txt $(BIN)/eventmart
	$(PYTHON) -m venv $(SUPERSET_VENV)
	$(SUPERSET_VENV)/bin/pip install -q --upgrade pip
	$(SUPERSET_VENV)/bin/pip install -q -c tests/superset/constraints.txt apache-superset psycopg2-binary \
		duckdb-engine rich cachetools "duckdb==$$($(BIN)/python -c 'import duckdb; print(duckdb.__version__)')"
	@touch $@

$(AIRFLOW_VENV)/bin/airflow: pyproject.toml
	$(PYTHON) -m venv $(AIRFLOW_VENV)
	$(AIRFLOW_VENV)/bin/pip install -q --upgrade pip
	$(AIRFLOW_VENV)/bin/pip install -q -e ".[airflow]"
	@touch $@

demo: venv
	rm -rf $(DEMO)
	@echo "eventmart is installed in $(CURDIR)/$(BIN); to run it by name: export PATH=\"$(CURDIR)/$(BIN):\$$PATH\""
	$(BIN)/eventmart demo zen $(DEMO) --port $(PORT)

system-deps:
	bash scripts/system-deps.sh

test: system-deps venv $(AIRFLOW_VENV)/bin/airflow $(SUPERSET_VENV)/bin/superset $(MIN_VENV)/bin/eventmart
	$(BIN)/ruff check src tests benchmarks scripts
	$(BIN)/python scripts/docs.py --check
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet --site-dir build/site
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadgroup
	bash scripts/smoke-minimal.sh $(MIN_VENV)

bench: venv system-deps
	$(BIN)/pip install -q -e ".[test,bench]"
	$(BIN)/python benchmarks/zen_marts.py

# the docs site on http://127.0.0.1:8000/ (the references regenerated first)
docs: venv
	$(BIN)/python scripts/docs.py
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve

clean:
	rm -rf $(VENV) $(AIRFLOW_VENV) $(SUPERSET_VENV) $(MIN_VENV) demo build *.egg-info
