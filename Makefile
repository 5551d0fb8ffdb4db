# xcr: the two commands a new user runs are `make demo` and `make test`.
# Everything else they need (a Python virtualenv with the emulators and clients, Rust crates)
# is installed by these targets into the project: nothing is assumed but Rust and Python 3.

SHELL        := /bin/bash
.SHELLFLAGS  := -eu -o pipefail -c
PYTHON       ?= python3
VENV         := .venv
PY           := $(VENV)/bin/python
STACK_DIR    ?= .xcr
DEMO_DIR     := .xcr/demo
CARGO        ?= cargo
# The GCS emulator local-up and demo start: gcp-storage-emulator (default) or fake-gcs-server.
GCS          ?= gcp-storage-emulator

# deploy-local, deploy, deploy-plan, infra-check, cfn-guard
include infra/infra.mk

.DEFAULT_GOAL := help
.PHONY: help venv fetch build release local-up local-down local-status demo check test docs-test soak lint fmt bench bench-quick clean

help: ## List the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-13s %s\n", $$1, $$2}'

# The virtualenv is rebuilt whenever requirements.txt changes.
$(VENV)/.installed: requirements.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	@touch $@

venv: $(VENV)/.installed ## Create .venv with the emulators and clients (pinned in requirements.txt)

fetch: ## Download the Rust dependencies (cargo fetch)
	$(CARGO) fetch --locked

build: fetch ## Debug build of the workspace
	$(CARGO) build --workspace --locked

release: fetch ## Release build of the workspace
	$(CARGO) build --workspace --release --locked

local-up: venv ## Start the local stack (moto + GCS emulator; GCS=fake-gcs-server for the stricter one) and write .xcr/local.env (STACK_DIR=... elsewhere)
	$(PY) scripts/stack.py up --dir $(STACK_DIR) --gcs $(GCS)

local-down: ## Stop exactly the processes local-up started
	@if [ -x $(PY) ]; then $(PY) scripts/stack.py down --dir $(STACK_DIR); else python3 scripts/stack.py down --dir $(STACK_DIR); fi

local-status: ## Show whether the local stack is running
	$(PY) scripts/stack.py status --dir $(STACK_DIR)

demo: venv release ## Replicate sample objects end to end on a private local stack and verify them
	@$(PY) scripts/stack.py down --dir $(DEMO_DIR) >/dev/null 2>&1 || true
	$(PY) scripts/stack.py up --dir $(DEMO_DIR) --gcs $(GCS)
	@rc=0; $(PY) scripts/demo.py --env $(DEMO_DIR)/local.env --xcr target/release/xcr || rc=$$?; \
	  $(PY) scripts/stack.py down --dir $(DEMO_DIR) >/dev/null || true; \
	  exit $$rc

fmt: ## Format the Rust code
	$(CARGO) fmt --all

lint: venv fetch ## cargo fmt --check, clippy -D warnings, cfn-lint
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings
	$(VENV)/bin/cfn-lint infra/template.yaml

# The fast tier: what needs no emulator, no .venv and no network (well under a minute after a
# build). The library's and binaries' unit tests, the property tests of event decoding and of
# the API's request bodies (in process, against documented naming rules), the port conformance
# suites against the in-memory adapters, and the replicate use case and job driver on them.
FAST_TESTS := --test props_api --test props_events --test conformance_memory --test replicate_memory --test migrate_memory

check: fetch ## Fast tier, no emulators: fmt --check, clippy -D warnings, unit, property and in-memory tests
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings
	$(CARGO) test --workspace --locked --lib --bins
	$(CARGO) test --locked $(FAST_TESTS)

test: lint ## Everything: lints, unit and integration tests against the emulators, infra checks, bench smoke, docs test
	$(CARGO) test --workspace --locked --no-fail-fast
	@# After cargo test, so that the end-to-end infra test finds target/debug/xcr.
	$(MAKE) --no-print-directory infra-check
	$(CARGO) build --workspace --locked --quiet && $(PY) scripts/bench.py --quick --profile debug --target-dir "$${CARGO_TARGET_DIR:-target}"  # bench smoke check (~1 min): it runs, not how fast
	$(MAKE) --no-print-directory docs-test

docs-test: venv ## Run the runnable shell blocks of README.md and docs/ on private local stacks (under 2 min after a debug build)
	$(CARGO) build --locked --quiet --bin xcr
	$(PY) tests/docs_test.py --target-dir "$${CARGO_TARGET_DIR:-target}"

soak: venv fetch ## The race and timing tests 20 runs in a row with the other core busy (SOAK_RUNS, SOAK_LOAD, SOAK_ONLY; ~1 h)
	$(PY) tests/soak.py

bench: venv release ## P1-P5 on a private stack: 1 GiB copy, 1,000 small objects vs rclone, RSS/CPU, requests per object, footprint
	$(PY) scripts/bench.py --target-dir "$${CARGO_TARGET_DIR:-target}" $(BENCH_ARGS)

bench-quick: venv release ## The same scenarios with 8 MiB and 50 objects (checks that it runs, < 1 min)
	$(PY) scripts/bench.py --target-dir "$${CARGO_TARGET_DIR:-target}" --quick $(BENCH_ARGS)

clean: local-down ## Remove build output, the virtualenv and local state
	$(CARGO) clean
	rm -rf $(VENV) .xcr
