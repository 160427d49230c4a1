#!/usr/bin/env python3
"""Prepares the H200 benchmark: the variants compiled here to bundles for cuda:sm_90a (one per
head dim; sequence lengths and batch are run-time arguments), the runtime-only attnc-run, and
the hand-written Triton peer copied from ../shared/peers. Writes .device/bench/ (git-ignored);
then on the GPU machine, with carry [".device/bench"]:

    python3 bench/gpu/bench.py            # one table: attnc and every peer, same inputs' shapes

    bench/gpu/prepare_bench.py [--attnc target/release/attnc] [--only softmax_causal,...]
"""
import argparse
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / ".device" / "bench"
sys.path.insert(0, str(Path(__file__).resolve().parent))
from variants import HEAD_DIMS, RECURRENT, RECURRENT_SHAPES, VARIANTS  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--attnc", default=str(ROOT / "target" / "debug" / "attnc"))
    ap.add_argument("--attnc-run", default=str(ROOT / "target" / "release" / "attnc-run"))
    ap.add_argument("--only", default="")
    ap.add_argument("--target", default="cuda:sm_90a",
                    help="the GPU target preset of the bundles (cuda:sm_90a-wgmma for the wgmma template)")
    ap.add_argument("--bundle-dir", default="bundles",
                    help="another folder than bundles keeps the rest of .device/bench (an A/B of two targets)")
    ap.add_argument("--scan", action="store_const", const=["--scan"], default=[],
                    help="build the recurrent variants as the scan (into another --bundle-dir)")
    args = ap.parse_args()
    only = set(filter(None, args.only.split(",")))
    if args.bundle_dir == "bundles" and OUT.exists():
        shutil.rmtree(OUT)
    (OUT / args.bundle_dir).mkdir(parents=True, exist_ok=True)
    for name, v in VARIANTS.items():
        if (only and name not in only) or args.scan:
            continue
        src = ROOT / "examples" / f"{v['example']}.attn"
        text = src.read_text().replace("f32[", "bf16[") if v.get("bf16") else src.read_text()
        path = OUT / f"{name}.attn"
        path.write_text(text)
        for d in HEAD_DIMS:
            heads = ",".join(f"{k}={d}" for k in v.get("head_dims", ["D"]))
            out = OUT / args.bundle_dir / f"{name}.D{d}.attnb"
            r = subprocess.run([args.attnc, "build", str(path), "--target", args.target,
                                "--shape", heads, "-o", str(out)], capture_output=True, text=True)
            if r.returncode != 0:
                sys.stderr.write(r.stderr)
                raise SystemExit(f"attnc build failed for {name} D={d}")
            print(f"{out.name:40} {out.stat().st_size:8} bytes")
    # The recurrent variants (bench_recurrent.py), bf16, at the head dims of RECURRENT_SHAPES.
    for name, v in RECURRENT.items():
        if only and name not in only:
            continue
        text = (ROOT / "examples" / f"{v['example']}.attn").read_text().replace("f32[B", "bf16[B")
        path = OUT / f"{name}.attn"
        path.write_text(text)
        for d in sorted({s[3] for s in RECURRENT_SHAPES}):
            heads = ",".join(f"{k}={d}" for k in v["head_dims"])
            out = OUT / args.bundle_dir / f"{name}.D{d}.attnb"
            r = subprocess.run([args.attnc, "build", str(path), "--target", args.target,
                                "--shape", heads, "-o", str(out), *args.scan],
                               capture_output=True, text=True)
            if r.returncode != 0:
                sys.stderr.write(r.stderr)
                raise SystemExit(f"attnc build failed for {name} D={d}")
            print(f"{out.name:40} {out.stat().st_size:8} bytes")
    shutil.copy(args.attnc_run, OUT / "attnc-run")
    peer = ROOT.parent / "shared" / "peers" / "triton_elementwise.py"
    if peer.exists():
        shutil.copy(peer, OUT / "triton_elementwise.py")
    else:
        print(f"note: {peer} not found; the bench runs without the hand-written Triton peer")


if __name__ == "__main__":
    main()
