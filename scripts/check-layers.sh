#!/usr/bin/env bash
# Checks the layering rules of ARCHITECTURE.md on the dependency graph cargo resolves:
# - nothing under ir/, passes/ or backends/ depends on the parser (attnc-frontend);
# - nothing under runtime/ (nor the runtime-only tools) links LLVM or MLIR.
set -euo pipefail
cd "$(dirname "$0")/.."

fail=0
crates_in() {
    # Package names of the workspace members under the given folders.
    for dir in "$@"; do
        for toml in $(find "$dir" -name Cargo.toml -not -path '*/target/*' 2>/dev/null); do
            sed -n 's/^name = "\(.*\)"/\1/p' "$toml" | head -1
        done
    done
}
forbid() {
    local crate=$1; shift
    local tree
    tree=$(cargo tree -p "$crate" -e normal,build --prefix none --offline 2>/dev/null || cargo tree -p "$crate" -e normal,build --prefix none)
    for bad in "$@"; do
        if grep -q "^$bad v" <<<"$tree"; then
            echo "layering: $crate depends on $bad" >&2
            fail=1
        fi
    done
}
for c in $(crates_in ir passes backends); do
    forbid "$c" attnc-frontend
done
for c in $(crates_in runtime) $(crates_in tools/attnc-run 2>/dev/null); do
    forbid "$c" attnc-mlir melior mlir-sys inkwell llvm-sys
done
if [ "$fail" != 0 ]; then
    exit 1
fi
echo "layering: ok (ir, passes and backends do not use the parser; runtime crates link no LLVM or MLIR)"
