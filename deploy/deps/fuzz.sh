#!/usr/bin/env bash
# The fuzzing tools (`make fuzz-smoke`, tests/fuzz, docs/fuzzing.md): a nightly
# Rust toolchain (cargo fuzz needs -Z flags) and cargo-fuzz at a pinned
# version. Installed only when missing, so a second run costs two version
# checks. libFuzzer itself is C++ that libfuzzer-sys compiles: g++ is in
# debian.list.
set -euo pipefail

CARGO_FUZZ_VERSION=0.13.2

command -v rustup >/dev/null || { echo "make deps: rustup is needed for the nightly toolchain (cargo fuzz)" >&2; exit 1; }
if ! rustup run nightly rustc --version >/dev/null 2>&1; then
  echo "make deps: installing the nightly Rust toolchain (for cargo fuzz)"
  rustup toolchain install nightly --profile minimal
fi
if [[ "$(cargo fuzz --version 2>/dev/null)" != "cargo-fuzz $CARGO_FUZZ_VERSION" ]]; then
  echo "make deps: installing cargo-fuzz $CARGO_FUZZ_VERSION"
  cargo install cargo-fuzz --locked --version "$CARGO_FUZZ_VERSION"
else
  echo "make deps: cargo-fuzz $CARGO_FUZZ_VERSION present"
fi
