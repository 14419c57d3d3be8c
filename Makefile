# fundwatch: every set-up step lives here, so a fresh clone needs only `make demo` or `make test`.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
KAFKA := ops/kafka.sh
PG := ops/postgres.sh
PORT ?= 8000
DEMO_DIR ?= var/demo-world
DEMO_PLATFORMS ?= 120
DEMO_DAYS ?= 120

.PHONY: install browser test test-unit kafka-up kafka-down pg-up pg-down demo stop stop-service bench bench-kafka clean lint

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

# The desk's browser test drives Debian's Chromium; a Chinese font makes its screenshots readable.
# Installed here (as root, or through sudo) when missing: nothing is downloaded at test time.
CHROMIUM_PKGS := chromium chromium-driver fonts-wqy-microhei
browser:
	@if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ] || [ ! -e /usr/share/fonts/truetype/wqy/wqy-microhei.ttc ]; then \
	  echo "installing $(CHROMIUM_PKGS) for the desk's browser test"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get install -y -q $(CHROMIUM_PKGS) >/dev/null || { $$SUDO apt-get update -q >/dev/null && \
	    $$SUDO apt-get install -y -q $(CHROMIUM_PKGS) >/dev/null; } || \
	    { echo "could not install $(CHROMIUM_PKGS); the browser test will fail" >&2; }; \
	fi

kafka-up:
	@$(KAFKA) start

kafka-down:
	@$(KAFKA) stop

pg-up:
	@$(PG) start

pg-down:
	@$(PG) stop

# Starts the project's own broker and PostgreSQL, runs every test against them (the desk's in Chromium), and
# stops both again even when tests fail.
test: install browser
	@set -o pipefail; trap '$(PG) stop; $(KAFKA) stop' EXIT; \
	  bootstrap=$$($(KAFKA) start) || exit 1; pgdsn=$$($(PG) start) || exit 1; \
	  FUNDWATCH_TEST_BOOTSTRAP=$$bootstrap FUNDWATCH_TEST_PG_DSN=$$pgdsn $(BIN)/python -m pytest $(PYTEST_ARGS)

test-unit: install browser
	$(BIN)/python -m pytest -m "not kafka and not postgres" $(PYTEST_ARGS)

lint: install
	$(BIN)/python -m mypy ingest graph detectors service schemas

# Simulate a world, publish it to the local broker, run the service on it, print the ten riskiest,
# then how to use the API, and last the desk's address with one API key per role.
# DEMO_WORKERS=2 (or more) runs that many workers in one consumer group, on ports PORT, PORT+1, ..., sharing
# a PostgreSQL store (the project's own server, schema `demo`, recreated) instead of var/demo.db.
DEMO_WORKERS ?= 1
demo: install
	@set -e; bootstrap=$$($(KAFKA) start); mkdir -p var; \
	  $(MAKE) --no-print-directory stop-service; \
	  rm -rf $(DEMO_DIR) var/demo.db var/demo.db-wal var/demo.db-shm var/demo-keys.txt var/checkpoints/demo-*; \
	  if [ "$(DEMO_WORKERS)" -gt 1 ]; then pg=$$($(PG) start); db="--db-dsn $$($(BIN)/python ops/pg_schema.py $$pg demo)"; \
	  else db="--db var/demo.db"; fi; \
	  $(BIN)/fundwatch simulate --platforms $(DEMO_PLATFORMS) --days $(DEMO_DAYS) --seed 7 --out $(DEMO_DIR); \
	  prefix=demo$$(date +%s).; \
	  $(BIN)/fundwatch --bootstrap $$bootstrap --topic-prefix $$prefix produce $(DEMO_DIR); \
	  $(BIN)/fundwatch keys $$db demo --world $(DEMO_DIR) > var/demo-keys.txt; \
	  pboc=$$(awk '$$1=="pboc"{print $$2}' var/demo-keys.txt); \
	  district=$$(awk '$$1=="district"{print $$2}' var/demo-keys.txt); \
	  for i in $$(seq 1 $(DEMO_WORKERS)); do \
	    port=$$(( $(PORT) + i - 1 )); log=var/service.log; [ $$i -gt 1 ] && log=var/service-$$i.log; \
	    nohup $(BIN)/fundwatch --bootstrap $$bootstrap --topic-prefix $$prefix run --port $$port \
	      --group-id fundwatch-demo $$db --checkpoint-dir var/checkpoints/demo-$$i > $$log 2>&1 & echo $$! >> var/service.pid; \
	  done; \
	  $(BIN)/fundwatch top --api http://127.0.0.1:$(PORT) -n 10 --wait 600 --key $$pboc || { tail -20 var/service.log; exit 1; }; \
	  echo; echo "Try the API:"; \
	  echo "  curl -s -H 'Authorization: Bearer $$district' 'http://127.0.0.1:$(PORT)/v1/platforms?limit=5'"; \
	  echo "  curl -sN -H 'Authorization: Bearer $$pboc' -H 'Last-Event-ID: 0' http://127.0.0.1:$(PORT)/v1/alerts/stream"; \
	  echo "  API reference: http://127.0.0.1:$(PORT)/docs"; \
	  echo "$(DEMO_WORKERS) worker(s) keep running (pids $$(tr '\n' ' ' < var/service.pid), logs var/service*.log); 'make stop' ends them and the broker."; \
	  echo; echo "The desk (监管工作台): http://127.0.0.1:$(PORT)/desk/"; \
	  echo "Sign in with one key per role (also in var/demo-keys.txt; shown once, stored hashed in the store):"; \
	  sed 's/^/  /' var/demo-keys.txt

stop-service:
	@if [ -f var/service.pid ]; then kill $$(cat var/service.pid) 2>/dev/null || true; rm -f var/service.pid; fi

stop: stop-service
	@$(KAFKA) stop
	@$(PG) stop

# Each benchmark prints figures with the baseline measured in the same run; see each file's docstring.
bench: install
	$(BIN)/python benchmarks/throughput.py
	$(BIN)/python benchmarks/rescoring.py --platforms 2000 --repeat 1
	$(BIN)/python benchmarks/memory.py --platforms 1000

bench-kafka: install
	@set -o pipefail; trap '$(KAFKA) stop' EXIT; b=$$($(KAFKA) start) || exit 1; \
	  $(BIN)/python benchmarks/workers.py --bootstrap $$b && $(BIN)/python benchmarks/latency.py --bootstrap $$b

clean: stop
	rm -rf $(VENV) var .kafka .pytest_cache *.egg-info
