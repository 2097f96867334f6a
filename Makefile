# Everything runs from a local virtual environment built from this project's own files.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The modules setup.py compiles with mypyc (the handshake codec, the session; listed in
# amqpprox/_build.py), and the stamp of their build.
NATIVE := $(shell $(PYTHON) amqpprox/_build.py)
COMPILED := $(VENV)/.compiled

.PHONY: venv run test unit lint bench soak sanitize audit clean

venv: $(STAMP) $(COMPILED)

# The editable install also compiles the relay's C frame walk (amqpprox/amqp/_framescan.c)
# and, with mypyc, the handshake codec and the session (setup.py), in place beside their
# sources.
$(STAMP): pyproject.toml setup.py amqpprox/amqp/_framescan.c
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP) $(COMPILED)

# A compiled module shadows its .py: after an edit, compile again before anything runs.
# The build keeps the library's old date when the generated code did not change (a
# source touched, not edited): touch it, so that the tests' staleness check agrees.
$(COMPILED): $(STAMP) $(NATIVE)
	$(PY) setup.py --quiet build_ext --inplace
	touch "$$($(PY) amqpprox/_build.py --library)" $(COMPILED)

# Simple mode, as the original's getting-started: every vhost on :5673 goes to the local broker.
run: venv
	$(PY) -m amqpprox --listenPort 5673 --destinationDNS localhost --destinationPort 5672 \
		--adminHost 127.0.0.1 --adminPort 15673 --consoleVerbosity 3

# The whole suite against the compiled modules, then the unit tests and the proxy's
# integration tests against their source.
test: venv lint
	$(PY) -m pytest
	AMQPPROX_PURE_PYTHON=1 $(PY) -m pytest -q tests/unit tests/integration

unit: venv
	$(PY) -m pytest tests/unit

# Long forms of the reliability tests (RELIABILITY.md): 5,000 silent connections, 200
# no-loss clients, 1,000 control clients, hypothesis at 20,000 examples (against the
# compiled modules), atheris (against the source: coverage guidance needs Python bytecode).
SOAK_RUNS ?= 500000
soak: venv
	$(PY) -m pip install --quiet -e '.[test,soak]'
	$(PY) -m pytest -m soak --timeout 1800 tests
	AMQPPROX_FUZZ_EXAMPLES=20000 $(PY) -m pytest --timeout 1800 tests/unit/test_fuzz_parsers.py
	for target in frames table proxy handshake; do \
		AMQPPROX_PURE_PYTHON=1 $(PY) -m tests.atheris_fuzz $$target -runs=$(SOAK_RUNS) -print_final_stats=1 || exit 1; \
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

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .ruff_cache
