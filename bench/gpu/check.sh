#!/usr/bin/env bash
# The GPU correctness check, on the GPU machine, from the repository root, with .device/check
# carried (bench/gpu/prepare_check.py fills it here). Runs every case with attnc-run against the
# reference interpreter's outputs (NaN-poisoned outputs, relative L2 tolerance per dtype) and
# prints one table; the JSON of every run goes to $OUT/check.jsonl when $OUT is set.
set -uo pipefail
cd "$(dirname "$0")/../.."
dir=.device/check
log=${OUT:-/tmp}/check.jsonl
: > "$log"
nvidia-smi --query-gpu=name,driver_version,compute_cap --format=csv,noheader || true
while IFS=$'\t' read -r case bundle inputs ref tol dtype shape; do
    "$dir/attnc-run" "$dir/bundles/$bundle" --inputs "$dir/cases/$inputs" --check "$dir/cases/$ref" \
        --tolerance "$tol" --format json >> "$log" 2> "${OUT:-/tmp}/$case.stderr"
    echo "{\"case\": \"$case\", \"dtype\": \"$dtype\", \"shape\": \"$shape\", \"exit\": $?}" >> "$log"
done < "$dir/cases.tsv"
python3 - "$log" <<'EOF'
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
runs, meta = lines[0::2], lines[1::2]
ok = 0
print(f"{'case':58} {'dtype':5} {'shape':34} {'rel L2':>9} result")
for r, m in zip(runs, meta):
    errs = [o["rel_l2"] for o in (r.get("check") or {}).get("outputs", [])]
    err = max(errs) if errs else float("nan")
    good = r.get("ok") and m["exit"] == 0
    ok += good
    why = "ok" if good else ("FAIL " + "; ".join(r.get("errors", []))[:120])
    print(f"{m['case']:58} {m['dtype']:5} {m['shape']:34} {err:9.2e} {why}")
print(f"{ok} of {len(runs)} cases within tolerance")
EOF
