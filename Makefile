# The two commands a new user runs:
#   make demo   - start the local stack and run the pipeline on its embedded defaults
#   make test   - start the local stack and run every test against it
SHELL := /bin/bash
.DEFAULT_GOAL := help
CARGO ?= cargo

.PHONY: help test test-cluster demo bench stack-up stack-up-secure old-stack registry-client stack-down stack-status lint validate-deploy build release

help:
	@echo "make demo            start Kafka, Cassandra, Postgres and run a bounded pipeline demo"
	@echo "make test            start the stack, run lint, unit, integration and end-to-end tests"
	@echo "make bench           end-to-end benchmark (RECORDS=N RATE=R), writes target/bench/e2e.json"
	@echo "make test-cluster    start the cluster stack (3 brokers, 3 Cassandra nodes), run its fault test"
	@echo "make stack-up|stack-down|stack-status"

stack-up:
	scripts/stack up

# The secured stack (SASL/TLS/passwords) for tests/it/secure.rs, beside the default one.
stack-up-secure:
	scripts/stack up --secure

# The old stack's producer (kafka-python in a venv) for tests/it/switchover.rs.
old-stack:
	scripts/old-stack setup

# Python's confluent-kafka with its schema registry deserializer for tests/it/registry.rs.
registry-client:
	scripts/registry-client setup

stack-down:
	scripts/stack down

stack-status:
	scripts/stack status

build:
	$(CARGO) build --all-targets

release:
	$(CARGO) build --release

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings

validate-deploy:
	scripts/validate-deploy

test: stack-up stack-up-secure old-stack registry-client lint
	# Two tests at a time (they share the stack); RUST_TEST_THREADS rather than
	# --test-threads because the criterion benches (run once in test mode) reject that flag.
	eval "$$(scripts/stack env)" && eval "$$(scripts/stack env --secure)" && \
	  RUST_TEST_THREADS=2 $(CARGO) test --all-targets
	$(MAKE) test-cluster
	$(MAKE) validate-deploy

# The fault test against real clusters (tests/it/cluster.rs): 3 brokers, 3 Cassandra nodes.
# It runs alone: the faults are timed, and the cluster takes the box's two cores.
test-cluster:
	scripts/stack up --cluster
	eval "$$(scripts/stack env --cluster)" && \
	  $(CARGO) test --test it cluster:: -- --ignored --nocapture

demo: stack-up release
	scripts/demo

bench: stack-up release
	scripts/bench $(if $(RECORDS),--records $(RECORDS)) $(if $(RATE),--rate $(RATE))
