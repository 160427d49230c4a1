#!/usr/bin/env bash
# The CUDA runtime's tests on the GPU machine, which has no Rust: build here, run there.
#
#   scripts/gpu/cuda-tests.sh build   # development machine: fills .device/cuda/ (git-ignored)
#   scripts/gpu/cuda-tests.sh run     # GPU machine, repository root, with .device/cuda carried
#
# `build` puts the release attnc-run and the test executables of attnc-cuda and attnc-run,
# stripped, under .device/cuda/ (about 9 MB in all). `run` runs them with ATTNC_REQUIRE_GPU=1,
# so a test that would skip for want of a driver fails instead, and with ptxas from the CUDA
# toolkit when it is on PATH. Every test prints what it did (--nocapture). .device/ is
# git-ignored, so the device run must carry it: carry [".device/cuda"].
set -euo pipefail
cd "$(dirname "$0")/../.."
out=.device/cuda

case "${1:-}" in
build)
    mkdir -p "$out"
    cargo build --release -p attnc-run
    cp target/release/attnc-run "$out/attnc-run"
    # One line of JSON per artifact; keep the test executables and name them by crate/target.
    cargo test -p attnc-cuda -p attnc-run --no-run --message-format=json |
        python3 -c '
import json, shutil, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") != "compiler-artifact" or not m.get("executable") or not m["profile"]["test"]:
        continue
    path, _, fragment = m["package_id"].partition("#")
    package = fragment.split("@")[0] if "@" in fragment else path.rsplit("/", 1)[-1]
    name = package + "-" + m["target"]["name"]
    shutil.copy(m["executable"], sys.argv[1] + "/test-" + name)
    print("test-" + name)
' "$out"
    strip "$out"/attnc-run "$out"/test-*
    ls -l "$out"
    ;;
run)
    export ATTNC_REQUIRE_GPU=1 ATTNC_RUN="$PWD/$out/attnc-run"
    if command -v ptxas >/dev/null; then export PTXAS="$(command -v ptxas)"; fi
    nvidia-smi --query-gpu=name,driver_version,compute_cap --format=csv || true
    status=0
    for t in "$out"/test-*; do
        echo "== $t"
        "$t" --nocapture --test-threads 1 || status=1
    done
    exit $status
    ;;
*)
    echo "usage: $0 build|run" >&2
    exit 2
    ;;
esac
