# make run    the IdP on http://127.0.0.1:$(PORT) with the demo relying parties (clients/)
# make test   the test suite
# make serve  the production server (granian); needs IDP_ENV=production, IDP_SECRET_KEY (32+
#             characters), IDP_REDIS_URL and IDP_DATABASE_URL (postgresql+psycopg://...,
#             migrated: idp db upgrade)
# make bench  the benchmarks (in .venv-bench on an optimized interpreter, with argon2-native)
# make argon2-native  argon2-cffi's C code built for this machine's CPU (faster sign-ins)
PORT ?= 5000
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: run test serve bench argon2-native clean

# The issuer names the port the IdP listens on.
ifneq ($(PORT),5000)
run: export IDP_ISSUER ?= http://127.0.0.1:$(PORT)
endif

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(VENV)/bin/python
	$(VENV)/bin/pip install -q -e '.[test]'
	touch $@

run: $(STAMP)
	$(VENV)/bin/idp demo
	@rps=; if [ -f clients/run.py ]; then $(VENV)/bin/python -m clients.run & rps=$$!; fi; \
	trap 'test -z "$$rps" || kill $$rps 2>/dev/null' EXIT INT TERM; \
	$(VENV)/bin/flask --app 'idp:create_server_app()' run --port $(PORT)

test: $(STAMP)
	bash tools/system-deps.sh
	$(VENV)/bin/python -m pytest -q

serve: $(STAMP)
	$(VENV)/bin/idp serve

# argon2-cffi's C code compiled for this CPU instead of the portable PyPI wheel: it verifies a
# password in about two thirds of libsodium's CPU time here, and each process uses whichever
# is faster (README, "Password hashing"). The build runs only on CPUs like the one it was made
# on: build it where it runs, or pass ARGON2_CFLAGS="-O3 -march=x86-64-v3" (any AVX2 CPU).
ARGON2_CFLAGS ?= -O3 -march=native
# One stamp per set of flags, so other flags build again.
ARGON2_NATIVE := $(VENV)/.argon2-native$(shell printf '%s' '$(ARGON2_CFLAGS)' | tr -c 'A-Za-z0-9=.-' '_')

argon2-native: $(ARGON2_NATIVE)

$(ARGON2_NATIVE): $(STAMP)
	rm -f $(VENV)/.argon2-native*
	CFLAGS="$(ARGON2_CFLAGS)" $(VENV)/bin/pip install -q --no-cache-dir --force-reinstall --no-deps \
	    --no-binary argon2-cffi-bindings "argon2-cffi-bindings==$$($(VENV)/bin/python -c \
	    'from importlib.metadata import version; print(version("argon2-cffi-bindings"))')"
	touch $@

# The benchmark runs our server on the interpreter production should run it on: a CPython built
# with PGO and LTO and linked statically, as the distributions' /usr/bin/python3.X and the python
# Docker images are. pyenv's default build (neither, and libpython shared) ran our workers 10-20%
# slower per request here (README, Production, "Interpreter"). Its own venv, so .venv stays as is.
BENCH_PYTHON ?= $(firstword $(wildcard /usr/bin/python3.11 /usr/bin/python3.12 /usr/bin/python3.13) python3)
BENCH_VENV := .venv-bench

bench:
	@command -v wrk >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk)
	@$(BENCH_PYTHON) -c 'import ensurepip' 2>/dev/null || (apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv)
	$(MAKE) argon2-native VENV=$(BENCH_VENV) PYTHON=$(BENCH_PYTHON)
	$(BENCH_VENV)/bin/python bench/run.py

# Build and test leftovers only: instance/ (the demo database) and keys/ are kept.
clean:
	rm -rf $(VENV) $(BENCH_VENV) .pytest_cache bench/out *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
