#!/usr/bin/env bash
# Combines the per-chunk summaries of a generator campaign: scripts/generator-summary.sh OUT [SECONDS]
set -euo pipefail
OUT=$1
awk -v elapsed="${2:-}" '
  /^programs:/ { programs += $2 }
  /^agree:/ { agree += $2 }
  /^ill-conditioned:/ { ill += $2 }
  /^failures:/ { failures += $2 }
  /^  seed [0-9]+:/ { fail_lines = fail_lines $0 "\n" }
  /^wall time:/ { cpu += $3 }
  /^rejected:/ { inrej = 1; rejected += $2; next }
  inrej && /^ +[0-9]+  / { n = $1; $1 = ""; reasons[substr($0, 2)] += n; next }
  { inrej = 0 }
  END {
    printf "programs: %d\nagree: %d\nrejected: %d\n", programs, agree, rejected
    for (r in reasons) printf "  %6d  %s\n", reasons[r], r
    printf "ill-conditioned: %d\nfailures: %d\n%s", ill, failures, fail_lines
    printf "sum of the chunks'"'"' wall times: %.0f s\n", cpu
    if (elapsed != "") printf "campaign wall time: %d s\n", elapsed
  }' "$OUT"/logs/chunk-*.txt
