#!/usr/bin/env bash
# The GPU correctness check, on the GPU machine, from the repository root, with .device/check
# carried (bench/gpu/prepare_check.py fills it here). Runs every case with attnc-run against the
# reference interpreter's outputs (NaN-poisoned outputs, relative L2 tolerance per dtype) and
# prints one table; the JSON of every run goes to $OUT/check.jsonl when $OUT is set.
set -uo pipefail
cd "$(dirname "$0")/../.."
dir=.device/check
# BUNDLES: another folder of .device/check with the same bundle names (one compiler variant
# against the same cases).
bundles=${BUNDLES:-bundles}
# CASES: an extended regular expression; only the cases whose line of cases.tsv matches run.
log=${OUT:-/tmp}/check.jsonl
: > "$log"
nvidia-smi --query-gpu=name,driver_version,compute_cap --format=csv,noheader || true
run=$dir/attnc-run
[ -x "$run" ] || run=.device/cuda/attnc-run
[ -x "$run" ] || run=.device/bench/attnc-run
while IFS=$'\t' read -r case bundle inputs ref tol dtype shape; do
    res=$(timeout 60 "$run" "$dir/$bundles/$bundle" --inputs "$dir/cases/$inputs" --check "$dir/cases/$ref" \
        --tolerance "$tol" --format json 2> /tmp/attnc-check.stderr; echo " $?")
    code=${res##* }
    res=$(printf '%s' "${res% *}" | tr '\n' ' ')
    [ -n "${res// /}" ] || res='{}'
    if [ "$code" != 0 ]; then { echo "== $case"; cat /tmp/attnc-check.stderr; } >> "${OUT:-/tmp}/check-stderr.log"; fi
    echo "{\"case\": \"$case\", \"dtype\": \"$dtype\", \"shape\": \"$shape\", \"exit\": $code, \"run\": $res}" >> "$log"
done < <(grep -E "${CASES:-.}" "$dir/cases.tsv")
python3 - "$log" "${OUT:-/tmp}/check.txt" <<'EOF'
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
runs, meta = [l["run"] for l in lines], lines
table = open(sys.argv[2], "w")
ok = 0
head = f"{'case':58} {'dtype':5} {'shape':34} {'rel L2':>9} result"
print(head, file=table)
print("failing cases (every case is in check.txt):")
for r, m in zip(runs, meta):
    errs = [float("inf") if o.get("rel_l2") is None else o["rel_l2"] for o in (r.get("check") or {}).get("outputs", [])]
    err = max(errs) if errs else float("nan")
    good = r.get("ok") and m["exit"] == 0
    ok += good
    why = "ok" if good else (f"FAIL exit {m['exit']} " + "; ".join(r.get("errors", []))[:150])
    line = f"{m['case']:58} {m['dtype']:5} {m['shape']:34} {err:9.2e} {why}"
    print(line, file=table)
    if not good:
        print(line[:200])
worst = max((max([float("inf") if o.get("rel_l2") is None else o["rel_l2"] for o in (r.get("check") or {}).get("outputs", [])] or [0]) for r in runs), default=0)
print(f"{ok} of {len(runs)} cases within tolerance; largest relative L2 error {worst:.2e}")
print(f"{ok} of {len(runs)} cases within tolerance", file=table)
EOF
