# Each target sets up what it needs itself (apt packages, the virtualenv), then runs.
.PHONY: demo test bench setup setup-tests clean

VENV := .venv
PY := $(VENV)/bin/python

setup:
	@scripts/setup.sh

setup-tests:
	@scripts/setup.sh --tests

demo: setup
	$(VENV)/bin/tenpo demo

test: setup-tests
	$(PY) -m pytest -q

bench: setup-tests
	$(PY) -m bench

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
