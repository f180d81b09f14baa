# The two commands a newcomer needs: `make demo` and `make test`.
CARGO ?= cargo

.PHONY: test lint bench fmt

## Run every test: unit, property, real etcd, and root network-namespace tests.
test:
	$(CARGO) test --workspace --all-features --no-fail-fast

## fmt and clippy, as the review expects them.
lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --all-features -- -D warnings

## The criterion benchmarks of the pure core (see docs/benchmarks.md).
bench:
	$(CARGO) bench -p railyard-benches --bench core

fmt:
	$(CARGO) fmt --all
