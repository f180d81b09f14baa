# The two commands a newcomer needs: `make demo` and `make test`.
CARGO ?= cargo

.PHONY: deps test lint bench fmt release cni-plugins

## Install what `make demo` and `make test` need and this machine lacks (root,
## Debian or Ubuntu): the one list is deploy/deps/. Safe to run again.
deps:
	deploy/deps/install.sh

## Run every test: unit, property, real etcd, and root network-namespace tests
## (the etcd fault tier, tests/tests/etcd_faults.rs, among them).
test: deps
	$(CARGO) test --workspace --all-features --no-fail-fast

## The etcd fault tier alone (`test` runs it too): a local cluster on a
## three-member etcd whose members are killed, restarted on their data and cut
## off from their peers, and the store's failover tests on a loopback cluster.
## Prints what each fault cost (docs/design/etcd-faults.md, docs/benchmarks.md).
.PHONY: test-etcd-faults
test-etcd-faults: deps
	$(CARGO) build --workspace --bins
	$(CARGO) test -p railyard-store --test etcd_cluster
	$(CARGO) test -p railyard-e2e --test etcd_faults -- --nocapture

## The rolling-upgrade tier, opt-in: a cluster of UPGRADE_BASE's binaries (the
## previous release, built once into target/upgrade-base/ by
## tests/upgrade-base.sh, about 4 minutes on 2 cores: over CI's budget, hence
## not in `test`), then this build's planner and daemons beside and over them.
## `make test` runs its cheap equivalents (docs/etcd-keys.md, "Format versions").
UPGRADE_BASE ?= 6b103d5
.PHONY: test-upgrade
test-upgrade: deps
	$(CARGO) build --workspace --bins
	RAILYARD_UPGRADE_FROM=$$(tests/upgrade-base.sh $(UPGRADE_BASE)) \
		$(CARGO) test -p railyard-e2e --test e2e upgrade:: -- --include-ignored

## The long soak, a benchmark (docs/benchmarks.md, "Soak"): SOAK_CYCLES pod
## ADD+DEL cycles through railyard-cni on a 3-host cluster with a three-member
## etcd while daemons, etcd members and NICs fail; the invariants are checked
## throughout. `make test` runs a 500-cycle version.
SOAK_CYCLES ?= 3000
.PHONY: soak
soak: deps
	$(CARGO) build --workspace --bins
	RAILYARD_SOAK_CYCLES=$(SOAK_CYCLES) $(CARGO) test -p railyard-e2e --test soak -- \
		--ignored --nocapture soak_benchmark

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

.PHONY: fuzz-build fuzz-smoke fuzz

# Coverage-guided fuzzing (cargo fuzz, libFuzzer, nightly): the targets and
# their committed seed corpora are in tests/fuzz/ (see docs/fuzzing.md).
FUZZ_TARGETS ?= cni_config cni_invocation network_spec alloc_log ipam_protocol plan_keys
# Seconds per target for fuzz-smoke; `make fuzz FUZZ_TARGET=alloc_log FUZZ_TIME=3600` for a long run.
FUZZ_TIME ?= 60
FUZZ_TARGET ?= cni_config
# No sanitizer: our code is safe Rust (unsafe_code = forbid), so ASan only
# slows it; libFuzzer still gets its coverage. FUZZ_SANITIZER=address to use it.
FUZZ_SANITIZER ?= none
FUZZ = cargo +nightly fuzz
FUZZ_FLAGS = --fuzz-dir tests/fuzz -s $(FUZZ_SANITIZER)
# New inputs go to a scratch dir, so a run never dirties the committed corpus.
FUZZ_WORK ?= tests/fuzz/target/work

fuzz-build: deps
	$(FUZZ) build $(FUZZ_FLAGS)

## Each target for FUZZ_TIME seconds from its committed corpus; fails on any
## crash, leaving the input in tests/fuzz/artifacts/<target>/.
fuzz-smoke: fuzz-build
	@failed=""; for t in $(FUZZ_TARGETS); do \
		mkdir -p $(FUZZ_WORK)/$$t; \
		echo "fuzz-smoke: $$t for $(FUZZ_TIME)s"; \
		$(FUZZ) run $(FUZZ_FLAGS) $$t $(FUZZ_WORK)/$$t tests/fuzz/corpus/$$t -- \
			-max_total_time=$(FUZZ_TIME) -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
			>$(FUZZ_WORK)/$$t.log 2>&1 \
			|| { failed="$$failed $$t"; grep -h -A8 'panicked at' $(FUZZ_WORK)/$$t.log; \
			     grep -hE 'ERROR: libFuzzer|Test unit written' $(FUZZ_WORK)/$$t.log; }; \
		grep -hE '^stat::number_of_executed_units|^Done' $(FUZZ_WORK)/$$t.log | tail -1; \
	done; \
	if [ -n "$$failed" ]; then echo "fuzz-smoke: FAILED:$$failed (inputs in tests/fuzz/artifacts/)"; exit 1; fi; \
	echo "fuzz-smoke: no crash in $(words $(FUZZ_TARGETS)) targets"

## One target, until stopped or FUZZ_TIME runs out.
fuzz: fuzz-build
	mkdir -p $(FUZZ_WORK)/$(FUZZ_TARGET)
	$(FUZZ) run $(FUZZ_FLAGS) $(FUZZ_TARGET) $(FUZZ_WORK)/$(FUZZ_TARGET) tests/fuzz/corpus/$(FUZZ_TARGET) -- -max_total_time=$(FUZZ_TIME)
