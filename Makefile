# The two commands of the README. Everything else is set up by them.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint debian-tools clean

demo: $(STAMP)
	$(BIN)/nextaction demo

# One pytest process: under two xdist workers (`pytest -n 2`, faster for a developer) the
# chaos test's consumer group stopped committing in 2 of 3 runs, an open question.
test: $(STAMP) lint debian-tools
	$(BIN)/pytest --durations=40

# Tools the tests run that Python does not carry, from Debian, in one `apt-get update`:
# - promtool and prometheus (package `prometheus`) check the alert rules and scrape the worker in
#   the observability test. The package's service must not start: a Prometheus left on 9090 (and
#   the node exporter on 9100) would outlive the tests, so a policy-rc.d forbids it for the
#   install, unless the machine already has one.
# - kcat is one of the clients tests/integration/test_clients.py runs against the pipeline (the
#   test loads the newer librdkafka of the confluent-kafka wheel into it, since Debian's 2.0.2
#   fails Tansu's ApiVersions handshake).
debian-tools:
	@missing=; \
	command -v promtool >/dev/null && command -v prometheus >/dev/null || missing=" prometheus"; \
	command -v kcat >/dev/null || missing="$$missing kcat"; \
	[ -z "$$missing" ] || { \
		command -v apt-get >/dev/null || { echo "missing:$$missing and apt-get is not here: install Prometheus 2.x (promtool, prometheus) and kcat so they are on PATH"; exit 1; }; \
		echo "installing Debian's$$missing for the tests ..."; \
		policy=/usr/sbin/policy-rc.d; added=; \
		if [ ! -e $$policy ]; then printf '#!/bin/sh\nexit 101\n' > $$policy && chmod +x $$policy && added=1; fi; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
		status=$$?; [ -z "$$added" ] || rm -f $$policy; exit $$status; }

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy contract.py stream serving tools cli benchmarks

# torch goes first, pinned: the CPU wheel of exactly this version is what these machines
# hold; letting a dependency resolve "torch" pulls the multi-GB CUDA build instead.
$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' || \
		{ echo "Python 3.11 is required (run: make PYTHON=/path/to/python3.11 ...)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

clean:
	rm -rf $(VENV) .nextaction .pytest_cache .mypy_cache .ruff_cache
