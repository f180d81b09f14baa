# The two commands a newcomer needs: `make demo` and `make test`.
CARGO ?= cargo

.PHONY: deps test lint bench fmt release cni-plugins

## Install what `make demo` and `make test` need and this machine lacks (root,
## Debian or Ubuntu): the one list is deploy/deps/. Safe to run again.
deps:
	deploy/deps/install.sh

## Run every test: unit, property, real etcd, and root network-namespace tests.
test: deps
	$(CARGO) test --workspace --all-features --no-fail-fast

## fmt, clippy and rustdoc, as the review expects them.
lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --all-features -- -D warnings
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --workspace --no-deps

## The criterion benchmarks of the pure core (see docs/benchmarks.md).
bench:
	$(CARGO) bench -p railyard-benches --bench core

fmt:
	$(CARGO) fmt --all

## Release binaries, with the CNI plugins linked statically (see cni-plugins).
release:
	$(CARGO) build --release --bins
	$(MAKE) cni-plugins

## railyard-ipam and railyard-cni as static binaries. The DaemonSet copies them
## onto hosts whose C library we do not know (as Go-built CNI plugins are static
## for the same reason), and a runtime starts one process per call: a static
## binary skips the dynamic loader, about 0.3 ms of a 1.5 ms IPAM ADD here.
## Cargo has no per-package rustflags, hence `cargo rustc` per binary; run it
## after any `cargo build --release --bins`, which relinks them dynamically.
cni-plugins:
	for b in railyard-ipam railyard-cni; do \
		$(CARGO) rustc --release -p railyard-ipam-plugin --bin $$b -- -C target-feature=+crt-static || exit 1; \
	done

.PHONY: demo demo-down

# The local cluster's state (etcd data, logs, allocation logs) and its flags,
# e.g. `make demo DEMO_FLAGS="--hosts 6 --dual-stack"` (see deploy/local/README.md).
DEMO_STATE ?= /var/lib/railyard-local
DEMO_FLAGS ?=
TARGET_DIR ?= $(or $(CARGO_TARGET_DIR),target)

## A 4-host x 2-rail x 3-pod rail cluster in network namespaces (needs root):
## etcd, the planner, a route-daemon per host, pods attached through railyard-cni,
## then `railyard check`'s connection table. `make demo-down` removes it.
demo: deps release
	$(TARGET_DIR)/release/railyard-local up --state $(DEMO_STATE) $(DEMO_FLAGS)

demo-down:
	@if [ -x $(TARGET_DIR)/release/railyard-local ]; then \
		$(TARGET_DIR)/release/railyard-local down --state $(DEMO_STATE); \
	else \
		echo "no $(TARGET_DIR)/release/railyard-local: nothing was started by make demo"; \
	fi

.PHONY: demo-k8s demo-k8s-down

# The Kubernetes demo's state (the cluster, the control plane) and its flags,
# e.g. `make demo-k8s DEMO_K8S_FLAGS="--pods 8"` (see docs/kubernetes.md).
DEMO_K8S_STATE ?= /var/lib/railyard-k8s-demo
DEMO_K8S_FLAGS ?=

## The demo as a Kubernetes user sees it (needs root): the local cluster plus a
## local control plane, a MultiNicNetwork applied with kubectl, the controller's
## NAD, Pods attached by the real Multus calling railyard-cni, then
## `railyard check --kubernetes`. `make demo-k8s-down` removes it.
demo-k8s: deps release
	$(TARGET_DIR)/release/railyard-k8s-demo up --state $(DEMO_K8S_STATE) $(DEMO_K8S_FLAGS)

demo-k8s-down:
	@if [ -x $(TARGET_DIR)/release/railyard-k8s-demo ]; then \
		$(TARGET_DIR)/release/railyard-k8s-demo down --state $(DEMO_K8S_STATE); \
	else \
		echo "no $(TARGET_DIR)/release/railyard-k8s-demo: nothing was started by make demo-k8s"; \
	fi
