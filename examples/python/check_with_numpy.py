#!/usr/bin/env python3
"""Runs attnc on tensors made by NumPy and checks its outputs against NumPy's own formulas.

Two kernels, each with seeded inputs built here, saved to an .npz file, run with
`attnc run FILE --inputs in.npz --output out...`, and read back:

- examples/gqa_causal.attn: causal softmax attention with grouped-query heads, in bf16.
  NumPy has no bf16, so the inputs go in as the bf16 bit patterns in uint16 arrays ('<u2'),
  which attnc accepts for inputs the program declares bf16 (no ml_dtypes needed, and the bits
  are exactly what attnc computes on). The output comes back as a .npy of dtype '|V2' (raw
  bf16), turned into float32 by shifting its bits into the high half of a uint32.
- examples/retention.attn: RetNet's retention in its recurrent form, in f32, checked here
  against the parallel (closed) form: o_t = sum_{s<=t} gamma_h^(t-s) (q_t . k_s / sqrt(D)) v_s.

The reference is computed in float64 from exactly the values attnc read (the bf16-rounded
inputs for GQA). attnc computes in f64 too and rounds each output once to its dtype, so the
relative error ||attnc - numpy|| / ||numpy|| is bounded by that rounding: 2^-8 for bf16 (8
significant bits) and 2^-24 for f32. The tolerances leave a factor 2 and 16 above those:
2^-7 for bf16 and 2^-20 for f32. A wrong head mapping, mask or decay gives errors near 1.

The attnc binary is $ATTNC, else target/release/attnc, else target/debug/attnc. Exits 1 if an
error is above its tolerance, 2 if attnc cannot be found or fails.
"""

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
SEED = 20240611
BF16_TOLERANCE = 2.0**-7
F32_TOLERANCE = 2.0**-20


def attnc_binary():
    if os.environ.get("ATTNC"):
        return Path(os.environ["ATTNC"]).resolve()
    for profile in ("release", "debug"):
        path = ROOT / "target" / profile / "attnc"
        if path.exists():
            return path
    sys.exit("attnc not found: build it (cargo build -p attnc) or set ATTNC to its path")


def run_attnc(*args):
    command = [str(attnc_binary()), "run", *map(str, args)]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if result.returncode != 0:
        print(f"$ {' '.join(command)}\n{result.stderr}", file=sys.stderr)
        sys.exit(2)
    return result.stdout


def to_bf16_bits(x):
    """float32 -> bf16 bit patterns (uint16), rounding to nearest, ties to even (finite x)."""
    bits = np.asarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
    return rounded.astype(np.uint16)


def bf16_bits_to_float32(u):
    """bf16 bit patterns (uint16, or the raw '|V2' array attnc writes) -> exact float32."""
    return (np.asarray(u).view(np.uint16).astype(np.uint32) << 16).view(np.float32)


def softmax(s):
    e = np.exp(s - s.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def gqa_causal_numpy(q, k, v):
    """Query head h reads key/value head h // (H // Hkv); query i sees keys j <= i."""
    _, H, S, D = q.shape
    kv_head = np.arange(H) // (H // k.shape[1])
    k, v = k[:, kv_head], v[:, kv_head]
    s = q @ k.transpose(0, 1, 3, 2) / np.sqrt(D)
    s = np.where(np.tril(np.ones((S, S), dtype=bool)), s, -np.inf)
    return softmax(s) @ v


def retention_numpy(q, k, v):
    """o_t = sum_{s<=t} gamma_h^(t-s) (q_t . k_s / sqrt(D)) v_s, gamma_h = 1 - 2^(-5-h)."""
    _, H, S, D = q.shape
    gamma = 1.0 - 2.0 ** (-5.0 - np.arange(H))
    t, s = np.arange(S)[:, None], np.arange(S)[None, :]
    decay = np.where(t >= s, gamma[:, None, None] ** np.maximum(t - s, 0), 0.0)
    return (q @ k.transpose(0, 1, 3, 2) / np.sqrt(D) * decay) @ v


def relative_error(got, want):
    return float(np.linalg.norm(got - want) / np.linalg.norm(want))


def check_gqa(rng, folder):
    B, H, Hkv, S, D = 2, 8, 2, 32, 16
    shapes = {"q": (B, H, S, D), "k": (B, Hkv, S, D), "v": (B, Hkv, S, D)}
    bits = {n: to_bf16_bits(rng.standard_normal(shape)) for n, shape in shapes.items()}
    inputs, output = folder / "gqa_in.npz", folder / "gqa_out.npy"
    np.savez(inputs, **bits)  # uint16 arrays: '<u2', read by attnc as bf16
    run_attnc("examples/gqa_causal.attn", "--inputs", inputs, "--output", output)
    raw = np.load(output)
    assert raw.dtype == np.dtype("V2") and raw.shape == shapes["q"], (raw.dtype, raw.shape)
    got = bf16_bits_to_float32(raw).astype(np.float64)
    q, k, v = (bf16_bits_to_float32(bits[n]).astype(np.float64) for n in "qkv")
    want = gqa_causal_numpy(q, k, v)
    return f"bf16, B={B} H={H} Hkv={Hkv} S={S} D={D}", relative_error(got, want), BF16_TOLERANCE


def check_retention(rng, folder):
    B, H, S, D = 2, 4, 24, 8
    q, k, v = (rng.standard_normal((B, H, S, D)).astype(np.float32) for _ in range(3))
    inputs, output = folder / "retention_in.npz", folder / "retention_out.npz"
    np.savez(inputs, q=q, k=k, v=v)
    run_attnc("examples/retention.attn", "--inputs", inputs, "--output", output)
    with np.load(output) as out:
        got = out["o"]
    assert got.dtype == np.float32 and got.shape == q.shape, (got.dtype, got.shape)
    want = retention_numpy(*(x.astype(np.float64) for x in (q, k, v)))
    return f"f32, B={B} H={H} S={S} D={D}", relative_error(got.astype(np.float64), want), F32_TOLERANCE


def main():
    rng = np.random.default_rng(SEED)
    failed = False
    with tempfile.TemporaryDirectory(prefix="attnc-numpy-") as tmp:
        for name, check in (("gqa_causal", check_gqa), ("retention", check_retention)):
            what, error, tolerance = check(rng, Path(tmp))
            verdict = "ok" if error <= tolerance else "FAILED"
            failed |= error > tolerance
            print(f"{name:<11} ({what}): relative error {error:.3e}, tolerance {tolerance:.3e}: {verdict}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
