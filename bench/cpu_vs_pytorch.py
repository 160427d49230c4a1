#!/usr/bin/env python3
"""attnc's compiled CPU kernels against PyTorch's CPU SDPA (the fused flash-style CPU kernel
people use today), a textbook unfused loop and attnc's reference interpreter, on the same
inputs and the same thread count. Prints a table and writes it to bench/results/.

Needs PyTorch (a bench-only venv: python3 -m venv .bench-venv && .bench-venv/bin/pip install
torch==2.11.0 numpy) and a release build (cargo build --release -p attnc). Never run in CI.
FLOPs count the two contractions on the pairs kept: 4*B*H*S*S*D, halved for causal masks.

To time AVX2 code on an AVX-512 machine: TARGET=x86-avx2 (attnc bench --target: AVX2 and FMA
code with 8-lane tiles) and ATEN_CPU_CAPABILITY=avx2 (PyTorch's AVX2 kernels); RESULT names the
file written under bench/results/ (default cpu-DATE.md).
"""
import datetime
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

ROOT = pathlib.Path(__file__).resolve().parent.parent
ATTNC = os.environ.get("ATTNC", str(ROOT / "target" / "release" / "attnc"))
THREADS = int(os.environ.get("THREADS", "2"))
REPEAT = int(os.environ.get("REPEAT", "5"))
TARGET = os.environ.get("TARGET", "host")

# (label, kernel, B, H, S, D, causal, dtype, also time the reference)
CASES = [
    ("S1024 D64 causal f32", "bench/kernels/causal_f32.attn", 1, 16, 1024, 64, True, "f32", True),
    ("S4096 D64 causal f32", "bench/kernels/causal_f32.attn", 1, 16, 4096, 64, True, "f32", False),
    ("S1024 D128 full f32", "bench/kernels/full_f32.attn", 1, 16, 1024, 128, False, "f32", False),
    ("S1024 D64 causal bf16", "examples/softmax_causal.attn", 1, 16, 1024, 64, True, "bf16", False),
]


def cpu_name():
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"


def attnc_bench(kernel, path, dims, causal, reference, out):
    cmd = [ATTNC, "bench", kernel, "--inputs", path, "--threads", str(THREADS), "--repeat", str(REPEAT),
           "--target", TARGET,
           "--json", "--output", out, "--unfused", "causal" if causal else "full"]
    if reference:
        cmd.append("--reference")
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"attnc bench failed:\n{result.stderr}")
    return json.loads(result.stdout)


def torch_sdpa(q, k, v, causal):
    f = torch.nn.functional.scaled_dot_product_attention
    for _ in range(2):
        f(q, k, v, is_causal=causal)
    times = []
    for _ in range(REPEAT):
        start = time.perf_counter()
        o = f(q, k, v, is_causal=causal)
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2], o


def main():
    torch.set_num_threads(THREADS)
    rng = np.random.default_rng(2026)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, kernel, b, h, s, d, causal, dtype, reference in CASES:
            q, k, v = (torch.from_numpy(rng.standard_normal((b, h, s, d), dtype=np.float32)) for _ in range(3))
            if dtype == "bf16":
                q, k, v = q.bfloat16(), k.bfloat16(), v.bfloat16()
                arrays = {n: t.view(torch.int16).numpy().view(np.uint16) for n, t in zip("qkv", (q, k, v))}
            else:
                arrays = {n: t.numpy() for n, t in zip("qkv", (q, k, v))}
            path = os.path.join(tmp, "in.npz")
            out = os.path.join(tmp, "out.npz")
            np.savez(path, **arrays)
            ours = attnc_bench(kernel, path, f"B={b},H={h},S={s},D={d}", causal, reference, out)
            t_torch, o_torch = torch_sdpa(q, k, v, causal)
            o_ours = np.load(out)["o"]
            if dtype == "bf16":
                o_ours = (o_ours.view(np.uint16).astype(np.uint32) << 16).view(np.float32)
            err = float(np.abs(o_ours - o_torch.float().numpy()).max())
            useful = ours["useful_flops"]
            timings = {t["name"]: t["ms"] / 1e3 for t in ours["timings"]}
            kernel_s = timings["attnc cpu"]
            rows.append({
                "case": label,
                "attnc": useful / kernel_s / 1e9,
                "torch": useful / t_torch / 1e9,
                "vs_torch": t_torch / kernel_s,
                "unfused": useful / timings["unfused loop"] / 1e9,
                "vs_unfused": timings["unfused loop"] / kernel_s,
                "reference": useful / timings["reference"] / 1e9 if "reference" in timings else None,
                "compile_ms": ours["compile_ms"],
                "rss_mb": ours["peak_rss_mb"],
                "max_abs_diff": err,
            })
            print(rows[-1], flush=True)
        # Memory that does not grow with S^2: the kernel's peak resident memory at S=1024 and 8192.
        rss = {}
        for s in (1024, 8192):
            arrays = {n: rng.standard_normal((1, 16, s, 64), dtype=np.float32) for n in "qkv"}
            path = os.path.join(tmp, "mem.npz")
            np.savez(path, **arrays)
            cmd = [ATTNC, "bench", "bench/kernels/causal_f32.attn", "--inputs", path, "--threads", str(THREADS),
                   "--repeat", "1", "--json", "--target", TARGET]
            result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=True)
            rss[s] = json.loads(result.stdout)["peak_rss_mb"]
    date = datetime.date.today().isoformat()
    lines = [
        f"# CPU: attnc against PyTorch {torch.__version__} CPU SDPA ({date})",
        "",
        f"{cpu_name()}, {THREADS} threads, B=1, H=16. GFLOP/s count 4*B*H*S^2*D (halved for causal). Median of {REPEAT} runs.",
        f"attnc --target {TARGET}; PyTorch CPU capability {torch.backends.cpu.get_cpu_capability()}"
        f" (ATEN_CPU_CAPABILITY={os.environ.get('ATEN_CPU_CAPABILITY', 'unset')}).",
        "Inputs are the same tensors for every implementation (written once as .npz).",
        "",
        "| case | attnc | PyTorch SDPA | attnc / SDPA | unfused loop | attnc / unfused | reference | compile | max abs diff vs SDPA |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        ref = f"{r['reference']:.2f}" if r["reference"] is not None else "-"
        lines.append(
            f"| {r['case']} | {r['attnc']:.1f} | {r['torch']:.1f} | {r['vs_torch']:.2f}x | {r['unfused']:.2f} | "
            f"{r['vs_unfused']:.1f}x | {ref} | {r['compile_ms']:.0f} ms | {r['max_abs_diff']:.1e} |"
        )
    lines += ["", f"Peak resident memory of `attnc bench` (causal f32, D=64, H=16): S=1024 {rss[1024]:.0f} MB, "
              f"S=8192 {rss[8192]:.0f} MB (inputs and outputs are {4 * 16 * 64 * 4 * 1024 / 2**20:.0f} MB and "
              f"{4 * 16 * 64 * 4 * 8192 / 2**20:.0f} MB; an S x S score matrix per head would be "
              f"{16 * 8192 * 8192 * 4 / 2**30:.0f} GiB at S=8192).", ""]
    text = "\n".join(lines)
    print(text)
    out = ROOT / "bench" / "results" / os.environ.get("RESULT", f"cpu-{date}.md")
    out.write_text(text)
    print(f"written to {out}")


if __name__ == "__main__":
    main()
