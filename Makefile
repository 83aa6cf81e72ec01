# Sapphire: `make demo` and `make test` work from a clean clone (they create .venv).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_WORKERS ?= 2

.PHONY: demo test test-fast lint bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,ray,ml]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/sapphire demo

# The Ray tests run in a process of their own: Ray's in-process driver crashed a pytest
# worker that had run the live-trading tests before it (their event-loop threads).
RAY_TESTS := tests/integration/test_ray_executor.py

test: $(STAMP)
	$(PY) -m pytest -n $(PYTEST_WORKERS) --durations=15 --ignore=$(RAY_TESTS)
	$(PY) -m pytest $(RAY_TESTS)

test-fast: $(STAMP)
	$(PY) -m pytest -n $(PYTEST_WORKERS) -m "not slow and not browser"

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks
	$(VENV)/bin/mypy

bench: $(STAMP)
	$(PY) benchmarks/backtest_speed.py
	$(PY) benchmarks/startup_time.py
	$(PY) benchmarks/optimize_speed.py
	$(PY) benchmarks/event_speed.py
	$(PY) benchmarks/tick_to_order_latency.py
	$(PY) benchmarks/live_latency.py
	$(PY) benchmarks/ml_speed.py
	$(PY) benchmarks/api_load.py
	$(PY) benchmarks/portfolio_speed.py

clean:
	rm -rf $(VENV) build dist .pytest_cache .mypy_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
