# kubealias — the two commands for a fresh machine are `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test test-unit lint bench conformance deps venv clean

demo: $(STAMP)
	$(VENV)/bin/kubealias demo

test: $(STAMP) deps lint
	$(PY) -m pytest $(PYTEST_ARGS)

test-unit: $(STAMP)
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check kubealias tests integrations bench examples conformance
	$(VENV)/bin/ruff format --check kubealias tests integrations bench examples conformance
	$(VENV)/bin/mypy

bench: $(STAMP) deps
	$(PY) -m bench $(BENCH_ARGS)

# The test suites of requests, urllib3 and httpx (their sdists, at the versions of $(VENV)), run
# plainly and with kubealias swapped in; fails unless they differ exactly as
# conformance/expected.txt says. A few minutes, so not part of `make test`. Builds its
# own venv, .venv-conformance; CONFORMANCE_SUITES="requests httpx" runs some of them.
conformance: $(STAMP)
	$(PYTHON) conformance/run.py $(CONFORMANCE_SUITES)

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[all,test]'
	touch $(STAMP)

# The real servers of the end-to-end tests (docs/design.md, "Test environment"). Installed only when
# missing, and only where we may (root, or passwordless sudo).
DEB_PACKAGES := bind9 bind9-dnsutils nginx-light iproute2 mariadb-server
deps:
	@missing=""; \
	command -v named    >/dev/null 2>&1 || [ -x /usr/sbin/named ] || missing="$$missing bind9"; \
	command -v nsupdate >/dev/null 2>&1 || missing="$$missing bind9-dnsutils"; \
	command -v nginx    >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing="$$missing nginx-light"; \
	command -v ip       >/dev/null 2>&1 || [ -x /usr/sbin/ip ] || missing="$$missing iproute2"; \
	command -v mariadbd >/dev/null 2>&1 || [ -x /usr/sbin/mariadbd ] || missing="$$missing mariadb-server"; \
	if [ -n "$$missing" ]; then \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO="sudo -n"; \
	  echo "installing Debian packages:$$missing"; \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing; \
	fi

clean:
	rm -rf $(VENV) .venv-conformance conformance/.sources conformance/.results .pytest_cache .mypy_cache .ruff_cache build *.egg-info
