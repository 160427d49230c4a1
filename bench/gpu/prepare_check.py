#!/usr/bin/env python3
"""Prepares the GPU correctness check: every example (and dtype variants) compiled to a bundle for
cuda:sm_90a, and cases of fresh random inputs with the f64 reference interpreter's outputs, all
computed here (the GPU machine has no compiler). Writes .device/check/ (git-ignored):

    bundles/NAME.attnb    one per (variant, head dims): the same bundle serves every sequence length
    cases/K.in.safetensors, cases/K.ref.safetensors
    generated/gen_SEED.attn  the recurrences among attnc-gen's programs of the first --generated
                          seeds that the CPU back end runs within the generator's tolerance, one
                          case each at its own shape (selected with the name `generated` in --only)
    cases.tsv             case, bundle, inputs, reference, tolerance, dtype, shape
    attnc-run             the runtime-only binary (release build)

Then run bench/gpu/check.sh on the GPU machine with carry [".device/check"].

    bench/gpu/prepare_check.py [--attnc target/debug/attnc] [--quick] [--only NAME,...] [--generated N]
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / ".device" / "check"

# Relative L2 tolerances: 16-bit storage and operands; f32 inputs run their products as tf32.
TOLERANCE = {"bf16": 1e-2, "f16": 1e-2, "f32": 3e-3}

# Head dims (compiled into the bundle) and run-time shapes per example family. Sequence lengths
# 1, 77 and 1000 are not multiples of the tiles; one bundle serves all of them.
SELF = [
    ({"D": 64}, [{"B": 1, "H": 2, "S": 1}, {"B": 1, "H": 2, "S": 77}, {"B": 1, "H": 1, "S": 1000}]),
    ({"D": 128}, [{"B": 2, "H": 1, "S": 77}, {"B": 1, "H": 1, "S": 300}]),
]
SHAPES = {
    "gqa_causal": [
        ({"D": 64}, [{"B": 1, "H": 4, "Hkv": 2, "S": 77}, {"B": 1, "H": 4, "Hkv": 1, "S": 1000}]),
        ({"D": 128}, [{"B": 1, "H": 4, "Hkv": 2, "S": 300}]),
    ],
    "cross_attention": [
        ({"Dqk": 192, "Dv": 128}, [{"B": 1, "H": 2, "Sq": 77, "Sk": 130}, {"B": 1, "H": 1, "Sq": 300, "Sk": 1000}]),
        ({"Dqk": 64, "Dv": 64}, [{"B": 1, "H": 2, "Sq": 1, "Sk": 77}, {"B": 2, "H": 1, "Sq": 500, "Sk": 33}]),
    ],
    "differential_causal": [
        ({"D": 64, "Dv": 64}, [{"B": 1, "H": 2, "S": 77}, {"B": 1, "H": 1, "S": 1000}]),
        ({"D": 128, "Dv": 128}, [{"B": 1, "H": 1, "S": 300}]),
    ],
    "block_sparse": [
        ({"D": 64}, [{"B": 1, "H": 2, "S": 77, "NB": 2}, {"B": 1, "H": 1, "S": 1000, "NB": 16}]),
        ({"D": 128}, [{"B": 1, "H": 1, "S": 300, "NB": 5}]),
    ],
}
# Recurrences: S = 1, 77, 600 and 1000 (none a multiple of a chunk of 16 or 64 steps), head dims of
# 64 and 128, and 256 value columns (more than one block's threads: two column slices per (b, h)).
# The longest cases at D = 128 take one head, to keep the inputs small enough to carry.
RECURRENT_RUNS = [{"B": 1, "H": 2, "S": 1}, {"B": 2, "H": 2, "S": 77}, {"B": 1, "H": 2, "S": 1000}]


def recurrent_families(text):
    key = "Dk" if re.search(r"\bdim\b[^;]*\bDk\b", text) else "D"
    if not re.search(r"\bdim\b[^;]*\bDv\b", text):
        return [({key: 64}, RECURRENT_RUNS), ({key: 128}, [{"B": 1, "H": 1, "S": 600}])]
    return [
        ({key: 64, "Dv": 64}, RECURRENT_RUNS),
        ({key: 128, "Dv": 128}, [{"B": 1, "H": 1, "S": 600}]),
        ({key: 64, "Dv": 256}, [{"B": 1, "H": 2, "S": 77}]),
    ]


# Dtype variants beyond bf16 (the examples' own dtype always runs too).
EXTRA_DTYPES = {"softmax_causal": ["f16", "f32"], "gqa_causal": ["f32"], "alibi_causal": ["f16"],
                "gated_deltanet": ["f16"], "retention": ["f16"]}


def run(cmd, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if r.returncode != 0:
        sys.stderr.write(f"$ {' '.join(map(str, cmd))}\n{r.stdout}{r.stderr}")
        raise SystemExit(f"failed: {cmd[:3]}")
    return r


def main_dtype(text):
    m = re.search(r"input q\w*(?:, \w+)*: (\w+)\[", text) or re.search(r": (bf16|f16|f32)\[", text)
    return m.group(1)


def with_dtype(text, dtype):
    return re.sub(r"\b(bf16|f16|f32)\[", dtype + "[", text)


def shape_arg(d):
    return ",".join(f"{k}={v}" for k, v in d.items())


def generated_recurrences(args):
    """attnc-gen's programs of the first --generated seeds that are recurrences and agree with
    the reference on the CPU (so that a GPU failure is the GPU's): (path, text, shape, seed)."""
    folder = OUT / "generated"
    folder.mkdir()
    run([args.attnc_gen, "--count", str(args.generated), "--write-only", str(folder)])
    paths = []
    for path in sorted(folder.glob("gen_*.attn"), key=lambda p: int(p.stem[4:])):
        if "recurrence t" in path.read_text():
            paths.append(path)
        else:
            path.unlink()
    if not paths:
        return []
    verdict = subprocess.run([args.attnc_gen, "--file", *map(str, paths)], capture_output=True, text=True).stdout
    out = []
    for path in paths:
        if f"{path}: agrees" not in verdict:
            print(f"{path.stem}: left out ({next((l for l in verdict.splitlines() if l.startswith(str(path))), 'no verdict')})")
            path.unlink()
            continue
        text = path.read_text()
        shape = re.search(r"^# shape: (\S+)", text, re.M).group(1)
        seed = int(re.search(r"^# seed: (\d+)", text, re.M).group(1))
        out.append((path, text, shape, seed))
    return out


def rebuild_bundles(args):
    """The compiler changed, the language's semantics did not: new bundles, same references
    (into another folder with --bundle-dir, to check two compiler variants in one call)."""
    cases = [l.rstrip("\n").split("\t") for l in open(OUT / "cases.tsv")]
    (OUT / args.bundle_dir).mkdir(exist_ok=True)
    for bundle in sorted({c[1] for c in cases}):
        variant, head = bundle[: -len(".attnb")].rsplit(".", 1)
        head_args = ",".join(f"{m[0]}={m[1]}" for m in re.findall(r"([A-Za-z]+?)(\d+)(?:_|$)", head))
        src = OUT / "sources" / f"{variant}.attn"
        run([args.attnc, "build", str(src), "--target", args.target, "--shape", head_args,
             "-o", str(OUT / args.bundle_dir / bundle), *args.scan])
        print(f"rebuilt {bundle} ({head_args})", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--attnc", default=str(ROOT / "target" / "debug" / "attnc"))
    ap.add_argument("--attnc-run", default=str(ROOT / "target" / "release" / "attnc-run"))
    ap.add_argument("--attnc-gen", default=str(ROOT / "target" / "debug" / "attnc-gen"))
    ap.add_argument("--generated", type=int, default=300,
                    help="how many of attnc-gen's seeds to scan for recurrences (0: none)")
    ap.add_argument("--quick", action="store_true", help="one shape per example")
    ap.add_argument("--only", default="", help="comma-separated example names")
    ap.add_argument("--bundles-only", action="store_true",
                    help="rebuild the bundles of the cases in cases.tsv, keeping their inputs and references")
    ap.add_argument("--target", default="cuda:sm_90a",
                    help="the GPU target preset of the bundles (cuda:sm_90a-wgmma for the wgmma template)")
    ap.add_argument("--scan", action="store_const", const=["--scan"], default=[],
                    help="build recurrences as the scan even where they run chunked (with --bundles-only "
                         "--bundle-dir bundles-scan, BUNDLES=bundles-scan check.sh checks the scan)")
    ap.add_argument("--bundle-dir", default="bundles",
                    help="with --bundles-only: the folder of .device/check to write them to")
    args = ap.parse_args()
    if args.bundles_only:
        return rebuild_bundles(args)
    if OUT.exists():
        shutil.rmtree(OUT)
    (OUT / "bundles").mkdir(parents=True)
    (OUT / "cases").mkdir()
    (OUT / "sources").mkdir()
    rows = []
    only = set(filter(None, args.only.split(",")))
    for path in sorted((ROOT / "examples").glob("*.attn")):
        name = path.stem
        text = path.read_text()
        if only and name not in only:
            continue
        own = main_dtype(text)
        dtypes = ["bf16"] + ([own] if own != "bf16" else []) + EXTRA_DTYPES.get(name, [])
        for dtype in dtypes:
            variant = f"{name}.{dtype}"
            src = OUT / "sources" / f"{variant}.attn"
            src.write_text(with_dtype(text, dtype))
            families = recurrent_families(text) if "recurrence t" in text else SHAPES.get(name, SELF)
            for head, shapes in families:
                if args.quick:
                    shapes = shapes[-1:]
                bundle = OUT / "bundles" / f"{variant}.{shape_arg(head).replace(',', '_').replace('=', '')}.attnb"
                run([args.attnc, "build", str(src), "--target", args.target, "--shape", shape_arg(head), "-o", str(bundle), *args.scan])
                for k, shape in enumerate(shapes):
                    case = f"{bundle.stem}.{k}"
                    full = dict(head, **shape)
                    seed = 1000 + len(rows)
                    inp = OUT / "cases" / f"{case}.in.safetensors"
                    ref = OUT / "cases" / f"{case}.ref.safetensors"
                    run([args.attnc, "run", str(src), "--device", "reference", "--shape", shape_arg(full),
                         "--seed", str(seed), "--save-inputs", str(inp), "--output", str(ref)])
                    rows.append((case, bundle.name, inp.name, ref.name, TOLERANCE[dtype], dtype, shape_arg(full)))
                    print(f"{case:60} {dtype:5} {shape_arg(full)}", flush=True)
    if args.generated and (not only or "generated" in only):
        for path, text, shape, seed in generated_recurrences(args):
            dtype = main_dtype(text)
            variant = f"{path.stem}.{dtype}"
            src = OUT / "sources" / f"{variant}.attn"
            src.write_text(text)
            dims = dict(kv.split("=") for kv in shape.split(","))
            head = "_".join(f"{k}{v}" for k, v in dims.items() if k not in ("B", "H", "S")) or "none"
            bundle = OUT / "bundles" / f"{variant}.{head}.attnb"
            run([args.attnc, "build", str(src), "--target", "cuda:sm_90a", "--shape", shape, "-o", str(bundle), *args.scan])
            case = f"{bundle.stem}.0"
            inp = OUT / "cases" / f"{case}.in.safetensors"
            ref = OUT / "cases" / f"{case}.ref.safetensors"
            run([args.attnc, "run", str(src), "--device", "reference", "--shape", shape,
                 "--seed", str(seed), "--save-inputs", str(inp), "--output", str(ref)])
            rows.append((case, bundle.name, inp.name, ref.name, TOLERANCE[dtype], dtype, shape))
            print(f"{case:60} {dtype:5} {shape}", flush=True)
    with open(OUT / "cases.tsv", "w") as f:
        for r in rows:
            f.write("\t".join(map(str, r)) + "\n")
    shutil.copy(args.attnc_run, OUT / "attnc-run")
    size = sum(p.stat().st_size for p in OUT.rglob("*") if p.is_file())
    print(f"{len(rows)} cases, {size / 2**20:.1f} MiB in {OUT}")
    if size > 60 * 2**20:
        print("note: over 60 MiB unpacked; bench/gpu/pack.sh compresses it (PTX about sixfold) for the 64 MiB a call carries")


if __name__ == "__main__":
    main()
