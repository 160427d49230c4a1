#!/usr/bin/env bash
# Packs .device/check and .device/bench (filled by prepare_check.py, prepare_bench.py and
# tile_sweep.sh prepare) into .device/pack/all.tar.xz for bench/gpu/device_run.sh: bundles are
# PTX text and compress about sixfold, which keeps one call under the 64 MiB it may carry.
set -euo pipefail
cd "$(dirname "$0")/../../.device"
mkdir -p pack
rm -f pack/all.tar.xz
tar -cJf pack/all.tar.xz check bench
ls -la pack/all.tar.xz
