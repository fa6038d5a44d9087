# freshet: two commands on a fresh Debian machine with only the Rust toolchain.
#   make run   builds and starts the server on 127.0.0.1:6543 (psql -h 127.0.0.1 -p 6543 freshet),
#              with an embedded Kafka-protocol broker on 127.0.0.1:9092 streaming demo tweets
#   make test  installs what is missing, then runs every test
SHELL := /bin/bash
.DEFAULT_GOAL := help

export CARGO_TARGET_DIR ?= $(HOME)/.cache/freshet/target
CACHE   := $(HOME)/.cache/freshet
VENV    := $(CACHE)/venv
NODE    := $(CACHE)/node
SUPERSET := $(CACHE)/superset
BIN     := $(CARGO_TARGET_DIR)/debug/freshet
SLT     := $(CARGO_TARGET_DIR)/debug/freshet-slt
DEB_PKGS := clang libclang-dev postgresql postgresql-client openssl libpostgresql-jdbc-java \
            openjdk-17-jre-headless nodejs python3-venv pgcli
SUDO    := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: help deps venv node superset build run test test-layout test-rust test-slt test-e2e bench bench-tweets bench-tpcb bench-auth bench-reads bench-sinks bench-latency bench-nexmark bench-tpch

help:
	@echo "make run   - build and start freshet on 127.0.0.1:6543"
	@echo "make test  - install missing dependencies, then run every test"

deps:
	@missing=""; for p in $(DEB_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi

$(VENV)/.ok: tests/requirements.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q -r tests/requirements.txt
	touch $@

venv: $(VENV)/.ok

# node-postgres and postgres.js for the client tests (NODE_PATH=$(NODE)/node_modules).
NODE_PKGS := pg@8 postgres@3
NODE_OK := $(NODE)/.ok-$(subst @,,$(subst $(eval) ,-,$(NODE_PKGS)))
$(NODE_OK):
	@command -v npm >/dev/null || { $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq npm; }
	mkdir -p $(NODE) && npm install -s --prefix $(NODE) $(NODE_PKGS)
	touch $@

node: $(NODE_OK)

# Apache Superset in a virtualenv of its own (it pins SQLAlchemy 1.4): `superset test-db`.
$(SUPERSET)/.ok: tests/superset-requirements.txt
	python3 -m venv $(SUPERSET)/venv
	$(SUPERSET)/venv/bin/pip install -q -r tests/superset-requirements.txt
	touch $@

superset: $(SUPERSET)/.ok

build: deps
	cargo build --workspace

# The virtualenv too: the walkthrough reads the Parquet sink's files back with its pyarrow.
run: build venv
	bash scripts/run.sh $(CARGO_TARGET_DIR)/debug

test: deps venv node superset build test-layout test-rust test-slt test-e2e

# Module layering and sizes (docs/architecture.md): no import cycle, no oversized file or function.
test-layout:
	python3 scripts/import_cycles.py
	python3 scripts/sizes.py

test-rust:
	cargo test --workspace

test-slt:
	$(SLT) --freshet-bin $(BIN) sqllogictest

test-e2e:
	FRESHET_BIN=$(BIN) SUPERSET_BIN=$(SUPERSET)/venv/bin/superset $(VENV)/bin/python -m pytest -q tests

# Release build + the view-maintenance benchmark (not part of `make test`; see docs/benchmarks.md).
bench: deps
	cargo build --release -p freshet-server -p freshet-bench
	$(CARGO_TARGET_DIR)/release/freshet-bench views --freshet-bin $(CARGO_TARGET_DIR)/release/freshet $(BENCH_ARGS)

# Release build + the Kafka tweets benchmark (mock broker in the bench process).
bench-tweets: deps
	cargo build --release -p freshet-server -p freshet-bench
	$(CARGO_TARGET_DIR)/release/freshet-bench tweets --freshet-bin $(CARGO_TARGET_DIR)/release/freshet $(BENCH_ARGS)

# Release build + pgbench's TPC-B-like transactions, freshet next to PostgreSQL (fsync on both).
bench-tpcb: deps
	cargo build --release -p freshet-server -p freshet-bench
	$(CARGO_TARGET_DIR)/release/freshet-bench tpcb --freshet-bin $(CARGO_TARGET_DIR)/release/freshet $(BENCH_ARGS)

# Release build + what logins cost: connection set-up and point reads, trust vs SCRAM, next to PostgreSQL.
bench-auth: deps
	cargo build --release -p freshet-server -p freshet-bench
	$(CARGO_TARGET_DIR)/release/freshet-bench auth --freshet-bin $(CARGO_TARGET_DIR)/release/freshet $(BENCH_ARGS)

# Release build + point reads by key on a table and a view (pgbench), next to PostgreSQL.
bench-reads: deps
	cargo build --release -p freshet-server -p freshet-bench
	$(CARGO_TARGET_DIR)/release/freshet-bench reads --freshet-bin $(CARGO_TARGET_DIR)/release/freshet $(BENCH_ARGS)

# Release build + what sinks cost per row (Parquet, Kafka) and insert → Kafka sink latency.
bench-sinks: deps
	cargo build --release -p freshet-server -p freshet-bench
	$(CARGO_TARGET_DIR)/release/freshet-bench sinks --freshet-bin $(CARGO_TARGET_DIR)/release/freshet $(BENCH_ARGS)

# Release build + end-to-end freshness from a Kafka source: subscriber, polling SELECT, Kafka sink.
bench-latency: deps
	cargo build --release -p freshet-server -p freshet-bench
	$(CARGO_TARGET_DIR)/release/freshet-bench latency --freshet-bin $(CARGO_TARGET_DIR)/release/freshet $(BENCH_ARGS)

bench-nexmark: deps
	cargo build --release -p freshet-server -p freshet-bench
	$(CARGO_TARGET_DIR)/release/freshet-bench nexmark --freshet-bin $(CARGO_TARGET_DIR)/release/freshet $(BENCH_ARGS)

# Release build + the 22 TPC-H queries as views: load, backfill, refresh batches, next to
# PostgreSQL's DML + REFRESH, every view compared (BENCH_ARGS="--sf 1" for the reported figure).
bench-tpch: deps
	cargo build --release -p freshet-server -p freshet-bench
	$(CARGO_TARGET_DIR)/release/freshet-bench tpch --freshet-bin $(CARGO_TARGET_DIR)/release/freshet $(BENCH_ARGS)
