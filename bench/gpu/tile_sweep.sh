#!/usr/bin/env bash
# Times every (query tile, key tile) candidate of a few variants on the GPU, beside the cost
# model's own choice, to see how far the model's first choice is from the measured best, and the
# model's choice on the wgmma template (`@wgmma`, built for cuda:sm_90a-wgmma) beside it.
#
#   bench/gpu/tile_sweep.sh prepare   # here: bundles into .device/bench/tiles/ (git-ignored)
#   bench/gpu/tile_sweep.sh run       # GPU machine, with .device/bench carried
set -euo pipefail
cd "$(dirname "$0")/../.."
dir=.device/bench/tiles
variants="softmax_full softmax_causal relu_attention"
case "${1:-}" in
prepare)
    mkdir -p "$dir"
    for v in $variants; do
        src=examples/$v.attn
        sed 's/f32\[/bf16[/g' "$src" > "$dir/$v.attn"
        target/debug/attnc build "$dir/$v.attn" --target cuda:sm_90a --shape D=128 -o "$dir/$v@model.attnb"
        # The same kernel with its products on wgmma, for the A/B in one call.
        target/debug/attnc build "$dir/$v.attn" --target cuda:sm_90a-wgmma --shape D=128 -o "$dir/$v@wgmma.attnb"
        for t in 64x32 64x64 64x128 128x32 128x64 128x128; do
            target/debug/attnc build "$dir/$v.attn" --target cuda:sm_90a --shape D=128 --tile $t \
                -o "$dir/$v@$t.attnb" 2>/dev/null || echo "$v $t: does not fit"
        done
    done
    ls "$dir" | wc -l
    ;;
run)
    run=.device/bench/attnc-run
    printf '%-16s %-8s %10s %8s  %s\n' variant tiles "ms" "TFLOP/s" tiling
    for b in "$dir"/*.attnb; do
        name=$(basename "$b" .attnb)
        v=${name%@*}
        t=${name#*@}
        flops=$((4 * 4 * 16 * 4096 * 4096 * 128))
        case $v in *causal*) flops=$((flops / 2)) ;; esac
        ms=$("$run" "$b" --random 1 --shape B=4,H=16,S=4096,D=128 --time 20 --warmup 3 --format json |
            python3 -c 'import json,sys; print(json.load(sys.stdin)["time"]["median_ms"])')
        tiling=$("$run" "$b" --info | grep -m1 -i "query tile" || true)
        printf '%-16s %-8s %10.3f %8.1f  %s\n' "$v" "$t" "$ms" "$(python3 -c "print($flops/$ms/1e9)")" "${tiling:0:90}"
    done
    ;;
*)
    echo "usage: $0 prepare|run" >&2
    exit 2
    ;;
esac
