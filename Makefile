# make run    the IdP on http://127.0.0.1:$(PORT) with the demo relying parties (clients/)
# make test   the test suite
# make serve  the production server (granian); needs IDP_ENV=production, IDP_SECRET_KEY (32+
#             characters), IDP_REDIS_URL and a migrated database (idp db upgrade)
# make bench  the benchmarks
PORT ?= 5000
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: run test serve bench clean

# The issuer names the port the IdP listens on.
ifneq ($(PORT),5000)
run: export IDP_ISSUER ?= http://127.0.0.1:$(PORT)
endif

$(VENV)/bin/python:
	python3 -m venv $(VENV)

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

bench: $(STAMP)
	@command -v wrk >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk)
	$(VENV)/bin/python bench/run.py

# Build and test leftovers only: instance/ (the demo database) and keys/ are kept.
clean:
	rm -rf $(VENV) .pytest_cache bench/out *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
