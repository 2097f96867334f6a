# Everything runs from a local virtual environment built from this project's own files.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# What running needs, without the test toolchain (make run installs only this).
RUNTIME := $(VENV)/.runtime
# The relay's C frame scanner, built in place beside amqpprox/amqp/scanner.py; with
# AMQPPROX_NO_EXTENSIONS set, setup.py builds nothing and the scanner runs in Python.
FRAMESCAN := $(VENV)/.framescan

.PHONY: venv run test unit lint bench soak sanitize audit clean

venv: $(STAMP) $(FRAMESCAN)

$(RUNTIME): pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip setuptools
	$(PY) -m pip install --quiet -e .
	touch $(RUNTIME)

$(STAMP): $(RUNTIME)
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# Built afresh: no extension stays from an earlier build with the switch off, nor from a
# mypyc build (before its removal), which Python would load instead of the .py files.
$(FRAMESCAN): $(RUNTIME) amqpprox/amqp/_framescan.c
	rm -f amqpprox_native__mypyc*.so && find amqpprox -name '*.so' -delete
	$(PY) setup.py --quiet build_ext --inplace
	touch $(FRAMESCAN)

# Simple mode, as the original's getting-started: every vhost on :5673 goes to the local broker.
# Loopback only: on every interface the broker would be reachable from the network, and
# would see each connection come from loopback (where RabbitMQ lets "guest" in).
run: $(RUNTIME) $(FRAMESCAN)
	$(PY) -m amqpprox --listenPort 5673 --listenHost 127.0.0.1 \
		--destinationDNS localhost --destinationPort 5672 \
		--adminHost 127.0.0.1 --adminPort 15673 --consoleVerbosity 3

# One run over the sources (the scanner tests cover both the C and the Python walk).
test: venv lint
	$(PY) -m pytest

unit: venv
	$(PY) -m pytest tests/unit

# Long forms of the reliability tests (RELIABILITY.md): 5,000 silent connections, 200
# no-loss clients, 1,000 control clients, hypothesis at 20,000 examples, atheris.
SOAK_RUNS ?= 500000
soak: venv
	$(PY) -m pip install --quiet -e '.[test,soak]'
	$(PY) -m pytest -m soak --timeout 1800 tests
	AMQPPROX_FUZZ_EXAMPLES=20000 $(PY) -m pytest --timeout 1800 tests/unit/test_fuzz_parsers.py
	for target in frames table proxy handshake; do \
		$(PY) -m tests.atheris_fuzz $$target -runs=$(SOAK_RUNS) -print_final_stats=1 || exit 1; \
	done
	$(MAKE) sanitize SANITIZE_EXAMPLES=10000

# The C extension built with AddressSanitizer and UBSan (any finding aborts), under the
# scanner properties; in a copy of the tree (build/sanitize), so the normal build stays.
# PYTHONMALLOC=malloc puts every bytes object under ASan's eye; -s lets a report through.
SANITIZE_EXAMPLES ?= 3000
SANITIZE_RUNTIME = $(shell gcc -print-file-name=libasan.so) $(shell gcc -print-file-name=libubsan.so)
sanitize: venv
	rm -rf build/sanitize && mkdir -p build/sanitize
	git ls-files -z | xargs -0 cp --parents -t build/sanitize
	cd build/sanitize && gcc -shared -fPIC -O1 -g -fno-omit-frame-pointer \
		-fsanitize=address,undefined -fno-sanitize-recover=undefined \
		-I"$$(../../$(PY) -c 'import sysconfig; print(sysconfig.get_paths()["include"])')" \
		-o "amqpprox/amqp/_framescan$$(../../$(PY) -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')" \
		amqpprox/amqp/_framescan.c
	cd build/sanitize && export ASAN_OPTIONS=detect_leaks=0 PYTHONMALLOC=malloc \
		LD_PRELOAD="$(SANITIZE_RUNTIME)" && \
		../../$(PY) -c 'import os, amqpprox.amqp._framescan as m; assert m.__file__.startswith(os.getcwd()), m.__file__' && \
		AMQPPROX_FUZZ_EXAMPLES=$(SANITIZE_EXAMPLES) ../../$(PY) -m pytest -s -p no:cacheprovider -q --timeout 1800 \
			tests/unit/test_fuzz_parsers.py -k "scanner or walk"

# Known vulnerabilities in the installed dependencies (needs pip-audit and the network).
audit: venv
	$(PY) -m pip install --quiet -e '.[test,soak]'
	$(VENV)/bin/pip-audit --progress-spinner off

lint: venv
	$(VENV)/bin/ruff check amqpprox tests bench
	$(VENV)/bin/mypy

bench: venv
	$(PY) -m bench --also-coalescing
	$(PY) -m bench.figures
	$(PY) -m bench.scrape
	$(PY) -m bench.streams

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .ruff_cache
	rm -f amqpprox_native__mypyc*.so && find amqpprox -name '*.so' -delete
