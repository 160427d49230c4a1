#!/usr/bin/env bash
# A long generator campaign: N random programs (default 20000) on the reference and every device,
# in chunks run by JOBS workers at low priority, so that a crash loses one chunk and names its
# seed. Prints the combined figures; failing programs (and their reduced forms) land in
# $OUT/failures/.
#
#   scripts/generator-campaign.sh [N] [FIRST_SEED] [CHUNK]
#   OUT=target/campaign JOBS=2 scripts/generator-campaign.sh 20000
set -euo pipefail
N=${1:-20000}
FIRST=${2:-1000000}
CHUNK=${3:-500}
OUT=${OUT:-target/generator-campaign}
JOBS=${JOBS:-$(nproc)}
cd "$(dirname "$0")/.."
nice -n 15 cargo build --release -p attnc-gen
mkdir -p "$OUT/failures" "$OUT/logs"
# A copy, so a rebuild during the campaign does not change the generator halfway.
cp target/release/attnc-gen "$OUT/attnc-gen"
BIN=$OUT/attnc-gen
start=$(date +%s)

# Runs the chunk starting at $1 of $2 programs; after a crash, goes on after the seed that
# crashed (the last one the process announced).
chunk() {
  local seed=$1 end=$(($1 + $2))
  while [ "$seed" -lt "$end" ]; do
    local log="$OUT/logs/chunk-$seed.txt"
    if nice -n 15 "$BIN" --count $((end - seed)) --seed "$seed" --reduce \
        --save "$OUT/failures" --trace >"$log" 2>"$log.seeds" || grep -q '^wall time' "$log"; then
      return
    fi
    local crashed
    crashed=$(tail -1 "$log.seeds" | awk '{print $2}')
    echo "crash at seed $crashed" >>"$OUT/crashes.txt"
    seed=$((crashed + 1))
  done
}

# Worker w takes chunks w, w + JOBS, w + 2 JOBS, ...
worker() {
  local k=$1
  while :; do
    local seed=$((FIRST + k * CHUNK))
    [ "$seed" -lt $((FIRST + N)) ] || return 0
    local count=$((FIRST + N - seed < CHUNK ? FIRST + N - seed : CHUNK))
    chunk "$seed" "$count"
    k=$((k + JOBS))
  done
}
for w in $(seq 0 $((JOBS - 1))); do worker "$w" & done
wait
elapsed=$(($(date +%s) - start))
scripts/generator-summary.sh "$OUT" "$elapsed" | tee "$OUT/summary.txt"
if [ -s "$OUT/crashes.txt" ]; then echo "crashes:"; cat "$OUT/crashes.txt"; fi
