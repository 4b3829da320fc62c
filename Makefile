# relaybench — every target creates .venv/ on demand and reuses it afterwards.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

DURATION ?= 30
USERS ?= 50
SCENARIO ?= peak
BENCH_ARGS ?=
SEARCH_ARGS ?=
# e.g. BENCH_RELAY_ARGS=--scrape-compare: every run again with scraping on, in turn; both printed
BENCH_RELAY_ARGS ?=
BENCH_TRACE_ARGS ?=

.PHONY: help setup test lint format bench bench-mock bench-relay bench-report bench-repro bench-search bench-trace calibrate clean

help:
	@echo "make bench   - set up, run the default benchmark (~2 min), write runs/<timestamp>/"
	@echo "make test    - set up, run the whole test suite"
	@echo "make lint    - ruff format check + lint"
	@echo "make bench-search - capacity search on the embedded mock + relay (<= 3 min), ends with the plan"
	@echo "make bench-trace - replay 10 min of the shipped trace at 10x on the mock (~1.5 min)"
	@echo "make bench-mock | bench-relay | bench-report | bench-repro | calibrate"

setup: $(STAMP)

$(STAMP): pyproject.toml
	@echo "set-up: creating $(VENV)/ (once; about a minute) ..."
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "set-up: installing relaybench and its dependencies from pyproject.toml ..."
	@$(BIN)/python -m pip install -q --upgrade pip
	@$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $(STAMP)
	@echo "set-up: $(VENV)/ ready"

test: $(STAMP)
	$(BIN)/python -m tools.ensure_binaries
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# exit 1 of relaybench run (an SLO verdict failed) is a result of the bench, not a failure of it
bench: $(STAMP)
	$(BIN)/relaybench run --scenario $(SCENARIO) --users $(USERS) --duration $(DURATION) $(BENCH_ARGS) \
	    || [ $$? -eq 1 ]

bench-mock: $(STAMP)
	$(BIN)/python -m mock_upstream.bench

bench-relay: $(STAMP)
	$(BIN)/python -m tools.ensure_binaries
	$(BIN)/python -m relaybench.run.bench_relay $(BENCH_RELAY_ARGS)

bench-report: $(STAMP)
	$(BIN)/python -m reports.bench

bench-repro: $(STAMP)
	$(BIN)/python -m relaybench.run.bench_repro

# the bundled relay on the embedded mock's load model: 40-60 token answers (~2 s each), 8 s probes
# exit 1 (no capacity found: below --start, harness- or mock-bound) is a result of the bench, as for bench
bench-search: $(STAMP)
	$(BIN)/relaybench search --out runs/search-$$(date +%Y%m%d-%H%M%S) \
	    --slo-ttft-p95-ms 1000 --slo-error-rate 0.01 --max-tokens 40-60 \
	    --start 4 --probe-s 8 --precision 0.15 --max-probes 7 $(SEARCH_ARGS) \
	    || [ $$? -eq 1 ]

# asked vs achieved arrivals, schedule lag and load-generator CPU; e.g. BENCH_TRACE_ARGS=--processes 2
bench-trace: $(STAMP)
	$(BIN)/python -m relaybench.traffic.bench $(BENCH_TRACE_ARGS)

calibrate: $(STAMP)
	$(BIN)/relaybench calibrate --out runs/calibration.json

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
