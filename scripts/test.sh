#!/usr/bin/env bash
# The full test suite: formatting, lints, the layering check, then every Rust test (the Python
# interop check among them).
# Run scripts/setup.sh once first.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
./scripts/check-layers.sh
# One build for everything: `cargo test` builds the attnc binary too, and its integration tests run
# the Python interop check (examples/python/check_with_numpy.py) against it. A separate
# `cargo build -p attnc` would resolve a different feature set and build every dependency twice.
cargo test --workspace
