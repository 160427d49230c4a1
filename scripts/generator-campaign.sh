#!/usr/bin/env bash
# A long generator campaign: N random programs (default 20000) on the reference and every device,
# in chunks so that a crash loses one chunk and names its seed, at low priority. Prints the
# combined figures; failing programs (and their reduced forms) land in $OUT/failures/.
#
#   scripts/generator-campaign.sh [N] [FIRST_SEED] [CHUNK]
#   OUT=bench/results/campaign scripts/generator-campaign.sh 20000
set -euo pipefail
N=${1:-20000}
FIRST=${2:-1000000}
CHUNK=${3:-500}
OUT=${OUT:-target/generator-campaign}
cd "$(dirname "$0")/.."
nice -n 15 cargo build --release -p attnc-gen
mkdir -p "$OUT/failures" "$OUT/logs"
# A copy, so a rebuild during the campaign does not change the generator halfway.
cp target/release/attnc-gen "$OUT/attnc-gen"
BIN=$OUT/attnc-gen
start=$(date +%s)
seed=$FIRST
end=$((FIRST + N))
while [ "$seed" -lt "$end" ]; do
  count=$((end - seed < CHUNK ? end - seed : CHUNK))
  log="$OUT/logs/chunk-$seed.txt"
  if ! nice -n 15 "$BIN" --count "$count" --seed "$seed" --reduce --save "$OUT/failures" --trace \
      >"$log" 2>"$log.seeds"; then
    if ! grep -q '^wall time' "$log"; then
      # The process died: the last seed it started crashed it. Record it and go on after it.
      crashed=$(tail -1 "$log.seeds" | awk '{print $2}')
      echo "crash at seed $crashed" | tee -a "$OUT/crashes.txt"
      seed=$((crashed + 1))
      continue
    fi
  fi
  seed=$((seed + count))
done
elapsed=$(($(date +%s) - start))
# Combined figures over every chunk's summary.
awk -v elapsed="$elapsed" '
  /^programs:/ { programs += $2 }
  /^agree:/ { agree += $2 }
  /^ill-conditioned:/ { ill += $2 }
  /^failures:/ { failures += $2 }
  /^  seed [0-9]+:/ { fail_lines = fail_lines $0 "\n" }
  /^rejected:/ { inrej = 1; rejected += $2; next }
  inrej && /^ +[0-9]+  / { n = $1; $1 = ""; reasons[substr($0, 2)] += n; next }
  { inrej = 0 }
  END {
    printf "programs: %d\nagree: %d\nrejected: %d\n", programs, agree, rejected
    for (r in reasons) printf "  %6d  %s\n", reasons[r], r
    printf "ill-conditioned: %d\nfailures: %d\n%s", ill, failures, fail_lines
    printf "wall time: %d s\n", elapsed
  }' "$OUT"/logs/chunk-*.txt | tee "$OUT/summary.txt"
if [ -s "$OUT/crashes.txt" ]; then echo "crashes:"; cat "$OUT/crashes.txt"; fi
