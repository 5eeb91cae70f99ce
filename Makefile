# Odins Ravne: `make demo` (set up + run the sample cameras), `make test` (`make test-fast`: not the slow
# ones), `make dev` (Dagster UI),
# `make bench` (benchmarks). Everything installs into .venv on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
SAMPLES ?= sample_data
OUT ?= demo_output
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home

.PHONY: install demo test test-fast dev bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	$(PY) -m pip install --quiet --no-deps megadetector==10.0.28  # test-only: see the dev extra in pyproject.toml
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(VENV)/bin/odins-ravne demo --samples $(SAMPLES) --out $(OUT)

test: install
	$(PY) -m pytest -q

# The inner loop: everything but the tests marked slow (whole pipelines, subprocesses, the UI).
test-fast: install
	$(PY) -m pytest -q -m 'not slow'

# dg finds the code location in pyproject's [tool.dg]; VIRTUAL_ENV tells it .venv is the one to use.
dev: install
	test -d $(SAMPLES) || $(PY) -m odins_ravne_assets.sample_data $(SAMPLES)
	mkdir -p $(DAGSTER_HOME) && cp -n dagster.yaml $(DAGSTER_HOME)/dagster.yaml || true
	ODINS_RAVNE_INPUT=$(abspath $(SAMPLES)) ODINS_RAVNE_OUTPUT=$(abspath $(OUT)) VIRTUAL_ENV=$(abspath $(VENV)) \
		$(VENV)/bin/dg dev --host 127.0.0.1 --port 3000

bench: install
	$(PY) -m bench.stage1
	$(PY) -m bench.megadetector
	$(PY) -m bench.bursts_semireal --out $(CURDIR)/bench/data/semireal
	$(PY) -m bench.bursts_cost --width 2048
	$(PY) -m bench.hugin_query
	$(PY) -m bench.background_cost
	$(PY) -m bench.second_look_cost

clean:
	rm -rf $(OUT) $(SAMPLES) $(DAGSTER_HOME)
