#!/usr/bin/env bash
# One call on the GPU machine, from the repository root, with .device/pack carried (the check
# and bench folders packed by bench/gpu/pack.sh, since PTX compresses ~6x and a call carries at
# most 64 MiB): the correctness table, the tile sweep, then the benchmark. What each step
# prints goes to $OUT too.
#   bench/gpu/device_run.sh [check] [check:FOLDER] [tiles] [bench] [recurrent]   (default: check tiles bench)
# check:FOLDER runs the check with the bundles of .device/check/FOLDER (a compiler variant), on
# the cases CASES selects (all by default). recurrent runs bench_recurrent.py, with fla-core
# installed from the wheels in .whl/ when that folder is carried too.
set -uo pipefail
cd "$(dirname "$0")/../.."
steps=${*:-check tiles bench}
tar -xJf .device/pack/all.tar.xz -C .device
out=${OUT:-/tmp}
for s in $steps; do
    echo "=== $s $(date +%T)"
    case $s in
    check) CASES=. timeout 240 bash bench/gpu/check.sh 2>&1 | tail -30 ;;
    check:*) BUNDLES=${s#check:} CASES=${CASES:-.} timeout 240 bash bench/gpu/check.sh 2>&1 | tail -12
        cp "$out/check.txt" "$out/check-${s#check:}.txt" ;;
    tiles) timeout 150 bash bench/gpu/tile_sweep.sh run 2>&1 | tee "$out/tiles.txt" ;;
    bench) SHAPES=${SHAPES:-4,16,4096,128} ALSO=${ALSO:-} PEERS=${PEERS:-} timeout ${BENCH_S:-280} python3 bench/gpu/bench.py 2>&1 | tee "$out/bench.txt" | tail -40 ;;
    recurrent)
        if ls .whl/*.whl >/dev/null 2>&1; then
            python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
                && export PYTHONPATH=/tmp/site
        fi
        ALSO=${ALSO_RECURRENT:-} timeout ${BENCH_S:-280} python3 bench/gpu/bench_recurrent.py 2>&1 | tee "$out/bench_recurrent.txt" | tail -20 ;;
    esac
done
echo "=== end $(date +%T)"
