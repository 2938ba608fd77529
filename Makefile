# ML Model Development Workspace — two commands: `make run` and `make test`.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
WORKERS ?= 2
HOST ?= 127.0.0.1
PORT ?= 8000

# Django 6 needs Python >= 3.12: take the first such interpreter found on PATH or in pyenv.
PYTHON ?= $(shell for c in python3.14 python3.13 python3.12 $$(ls -d $$(pyenv root 2>/dev/null)/versions/3.1[2-9]*/bin/python3 2>/dev/null | sort -rV) python3; do \
	if command -v $$c >/dev/null 2>&1 && $$c -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' 2>/dev/null; then echo $$c; break; fi; done)

.PHONY: run dev seed-tip test install install-dev install-lstm migrate lint fmt check-python browsers bench clean demo

check-python:
	@if [ -z "$(PYTHON)" ]; then \
		echo "No Python >= 3.12 found. Install one (e.g. 'apt install python3.13' or 'pyenv install 3.13') and re-run, or pass PYTHON=/path/to/python3.12."; \
		exit 1; fi

$(VENV)/.installed: requirements.txt | check-python
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	@touch $@

$(VENV)/.installed-dev: requirements-dev.txt requirements-lstm.txt $(VENV)/.installed
	$(PY) -m pip install --quiet -r requirements-dev.txt
	@touch $@

$(VENV)/.installed-lstm: requirements-lstm.txt $(VENV)/.installed
	$(PY) -m pip install --quiet -r requirements-lstm.txt
	@touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev
# The forecasting LSTM's framework (Keras 3 on JAX, ~620 MB): an optional extra.
install-lstm: $(VENV)/.installed-lstm

migrate: install
	$(PY) manage.py migrate --noinput
	$(PY) manage.py loaddata baseline_recipes
	$(PY) manage.py setup_workspace

# Serve the workspace on http://$(HOST):$(PORT) with $(WORKERS) background workers.
# `make run` is production-shaped: gunicorn ($(WEB_CONCURRENCY) processes, mlworkspace/gunicorn.conf.py),
# static files collected (hashed, compressed) and served by WhiteNoise, DEBUG off, the secret key
# generated once into $(DATA)/secret_key. `make dev` is for working on the code: runserver with
# autoreload and DEBUG on.
# Ctrl-C stops the web server at once; each worker finishes the run it is executing (a second
# Ctrl-C stops it now; the reaper then fails that run) and make exits quietly.
# The workers get their own process group (set -m), so the terminal's Ctrl-C reaches them only
# through this shell's trap: one SIGTERM per Ctrl-C. (The former `trap 'kill 0'` also signalled
# make and this shell itself, whose TERM trap then re-ran `kill 0` until bash overflowed its
# stack: "make: *** [run] Segmentation fault".)
DATA := $(or $(DATA_DIR),data)
WEB_CONCURRENCY ?= 2
# prometheus-client's multiprocess mode: the gunicorn processes and the workers write their
# request and check metrics here; /metrics sums them (mlworkspace/metrics.py). Emptied at start.
PROM_DIR := $(DATA)/prometheus
# E-mail notifications print in the workers' output unless EMAIL_BACKEND says otherwise (the
# settings' default is SMTP, for deployments).
EMAIL_BACKEND ?= django.core.mail.backends.console.EmailBackend
PROD_ENV := DEBUG=0 PROMETHEUS_MULTIPROC_DIR=$(PROM_DIR) EMAIL_BACKEND=$(EMAIL_BACKEND)

# $(call serve,ENVIRONMENT,WEB SERVER COMMAND): the workers and the web server, stopped together.
define serve
	@set -m; workers=""; \
	for i in $$(seq 1 $(WORKERS)); do $(1) $(PY) manage.py worker & workers="$$workers $$!"; done; \
	set +m; \
	stopping=""; stop_workers() { stopping=1; [ -z "$$workers" ] || kill -TERM $$workers 2>/dev/null; }; \
	trap stop_workers INT TERM HUP; \
	$(1) $(2); status=$$?; \
	[ -n "$$stopping" ] || stop_workers; \
	for w in $$workers; do while kill -0 $$w 2>/dev/null; do wait $$w; done; done; \
	case $$status in 130|143) exit 0;; *) exit $$status;; esac
endef

seed-tip:
	@if [ "$(DEMO)" = "1" ]; then $(PY) manage.py seed_demo; \
	elif ! $(PY) manage.py seed_demo --check >/dev/null 2>&1; then \
		echo "Tip: 'make run DEMO=1' (or 'make demo') fills a realistic demo workspace first."; fi

run: migrate seed-tip
	@$(PROD_ENV) $(PY) manage.py collectstatic --noinput --verbosity 0
	@rm -rf $(PROM_DIR) && mkdir -p $(PROM_DIR)
	@echo "Starting $(WORKERS) worker(s) and gunicorn on http://$(HOST):$(PORT)/model-development/ (Ctrl-C stops them)"
	$(call serve,$(PROD_ENV),HOST=$(HOST) PORT=$(PORT) WEB_CONCURRENCY=$(WEB_CONCURRENCY) $(VENV)/bin/gunicorn -c mlworkspace/gunicorn.conf.py mlworkspace.wsgi)

dev: migrate seed-tip
	@echo "Starting $(WORKERS) worker(s) and runserver (DEBUG, autoreload) on http://$(HOST):$(PORT)/model-development/ (Ctrl-C stops them)"
	$(call serve,DEBUG=1 EMAIL_BACKEND=$(EMAIL_BACKEND),$(PY) manage.py runserver $(HOST):$(PORT))

demo: migrate
	$(PY) manage.py seed_demo

lint: install-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports --no-cache

fmt: install-dev
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# Chromium for the browser tests comes from Debian's packages (Playwright cannot download one here).
browsers:
	@command -v chromium >/dev/null 2>&1 || { echo "Installing Debian's chromium for the browser tests"; \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver) >/dev/null || \
		echo "WARNING: could not install chromium; browser tests will be skipped"; }

# The whole suite: lint, the architecture contracts (import-linter, pyproject.toml), migrations
# up to date, an OpenAPI schema without warnings (and valid), unit + API + worker + browser tests.
# pytest runs twice: the tests that start worker processes or a browser (marked slow or browser:
# timing-sensitive, and busy on a second core themselves) one at a time, then the rest on
# TEST_WORKERS processes (pytest-xdist, a test file per process at a time, each process with its
# own test database). TEST_MARKS narrows both, e.g. TEST_MARKS='not once' (CI's SQLite pass);
# PYTEST_ARGS goes to both (a pass that selects nothing is not a failure).
TEST_WORKERS ?= 2
TEST_MARKS ?=
SERIAL_MARKS := slow or browser
and_marks = $(if $(strip $(TEST_MARKS)), and ($(TEST_MARKS)))
test: install-dev browsers
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports --no-cache
	$(PY) manage.py makemigrations --check --dry-run
	$(PY) manage.py spectacular --fail-on-warn --validate --file /dev/null
	$(PY) -m pytest -m "($(SERIAL_MARKS))$(and_marks)" $(PYTEST_ARGS) || [ $$? -eq 5 ]
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile -m "not ($(SERIAL_MARKS))$(and_marks)" $(PYTEST_ARGS) || [ $$? -eq 5 ]

bench: install-dev
	$(PY) bench/bench_api.py
	$(PY) bench/bench_runs.py
	$(PY) bench/bench_merge.py

clean:
	rm -rf $(VENV) data staticfiles
