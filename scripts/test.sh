#!/usr/bin/env bash
# The full test suite: formatting, lints, the Python interop check, then every Rust test.
# Run scripts/setup.sh once first.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
./scripts/check-layers.sh
cargo build -p attnc
if [ -f examples/python/check_with_numpy.py ]; then
    ATTNC=target/debug/attnc .venv/bin/python examples/python/check_with_numpy.py
fi
cargo test --workspace
