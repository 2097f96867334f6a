# Everything runs from a local virtual environment built from this project's own files.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: venv run test unit lint bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# Simple mode, as the original's getting-started: every vhost on :5673 goes to the local broker.
run: venv
	$(PY) -m amqpprox --listenPort 5673 --destinationDNS localhost --destinationPort 5672 \
		--adminHost 127.0.0.1 --adminPort 15673 --consoleVerbosity 3

test: venv lint
	$(PY) -m pytest

unit: venv
	$(PY) -m pytest tests/unit

lint: venv
	$(VENV)/bin/ruff check amqpprox tests bench
	$(VENV)/bin/mypy

bench: venv
	$(PY) -m bench

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .ruff_cache
