# Two entry points on a fresh machine:
#   make demo   simulate a cohort, fit the default model, write the report (demo/results)
#   make test   run the test suite (one worker process per core: pytest-xdist)
#   make test-fast  run the tests that fit no model and run no sampler (not marked slow)
# Both create the virtual environment in .venv and install magbayes into it, with the versions
# pinned in constraints.txt (the ones the tests passed with).
#   make lock   resolve the dependencies again (newest within pyproject.toml's bounds) into
#               constraints.txt

VENV    := .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
SEED    ?= 2020
LOCK    := constraints.txt
LOCKENV := .lock-venv

.PHONY: demo test test-fast lint format clean venv lock

venv: $(STAMP)

$(STAMP): pyproject.toml $(LOCK)
	@PY312=$$(.ci/find-python) && "$$PY312" -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c $(LOCK) -e '.[test]'
	@touch $(STAMP)

lock:
	rm -rf $(LOCKENV)
	@PY312=$$(.ci/find-python) && "$$PY312" -m venv $(LOCKENV)
	$(LOCKENV)/bin/python -m pip install --quiet --upgrade pip
	$(LOCKENV)/bin/python -m pip install --quiet -e '.[test]'
	@{ sed -n '1,2p' $(LOCK); $(LOCKENV)/bin/python -m pip freeze --exclude-editable; } > $(LOCK).new
	mv $(LOCK).new $(LOCK)
	rm -rf $(LOCKENV)

demo: $(STAMP)
	$(VENV)/bin/magbayes simulate --out demo/cohort --seed $(SEED) --force
	$(VENV)/bin/magbayes validate demo/cohort
	$(VENV)/bin/magbayes fit progression --data demo/cohort --out demo/results --seed $(SEED)
	@echo "Report: demo/results/report.html"

test: $(STAMP)
	$(VENV)/bin/python -m pytest -q -n auto --dist loadscope

test-fast: $(STAMP)
	$(VENV)/bin/python -m pytest -q -m "not slow"

lint: $(STAMP)
	$(VENV)/bin/ruff check magbayes tests scripts benchmarks
	$(VENV)/bin/ruff format --check magbayes tests scripts benchmarks

format: $(STAMP)
	$(VENV)/bin/ruff format magbayes tests scripts benchmarks
	$(VENV)/bin/ruff check --fix magbayes tests scripts benchmarks

clean:
	rm -rf $(VENV) $(LOCKENV) demo
