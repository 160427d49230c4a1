#!/usr/bin/env python3
"""The H200 benchmark of the recurrent variants, run on the GPU machine from the repository root
with .device/bench carried (bench/gpu/prepare_bench.py fills it) and fla-core's wheel installed
(its PYTHONPATH set). For each variant and shape it times attnc's bundle with attnc-run (bf16
inputs drawn on the host, CUDA events, median), the same variant from the folders ALSO names
(e.g. the scan form), fla-core 0.6's chunked Triton kernel on inputs of the same shapes in its
[B, S, H, D] layout, and, for retention, PyTorch's eager parallel form. Milliseconds, and the
ratio peer / attnc (above 1: attnc is faster). Prints one table; JSON lines go to
$OUT/bench_recurrent.jsonl."""
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from triton.testing import do_bench

ROOT = Path(__file__).resolve().parents[2]
DIR = ROOT / ".device" / "bench"
sys.path.insert(0, str(Path(__file__).resolve().parent))
from variants import RECURRENT, RECURRENT_SHAPES  # noqa: E402

try:
    import fla.ops as fla_ops
    from fla.ops.gated_delta_rule import chunk_gated_delta_rule
    from fla.ops.gla import chunk_gla
    from fla.ops.retention import chunk_retention
    from fla.ops.simple_gla import chunk_simple_gla
except Exception as e:  # noqa: BLE001
    fla_ops = None
    print("fla-core unavailable:", e)


def attnc_ms(name, b, h, s, d, folder):
    dims = {"B": b, "H": h, "S": s, **{k: d for k in RECURRENT[name]["head_dims"]}}
    shape = ",".join(f"{k}={x}" for k, x in dims.items())
    cmd = [str(DIR / "attnc-run"), str(DIR / folder / f"{name}.D{d}.attnb"), "--random", "1",
           "--shape", shape, "--time", "20", "--warmup", "3", "--format", "json"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    try:
        out = json.loads(r.stdout)
    except json.JSONDecodeError:
        raise RuntimeError((r.stderr or r.stdout)[-300:]) from None
    if not out.get("ok"):
        raise RuntimeError("; ".join(out.get("errors", []))[:300])
    return out["time"]["median_ms"]


def fla_peer(name, b, h, s, d):
    """fla-core's chunked kernel for the variant, with data-dependent gates as in ANCHORS.md
    (log-sigmoid of a normal per head and step; L2-normalised keys for the delta rule)."""
    g = torch.Generator(device="cuda").manual_seed(0)
    r = lambda *shape: torch.randn(*shape, device="cuda", dtype=torch.bfloat16, generator=g)  # noqa: E731
    q, k, v = r(b, s, h, d), r(b, s, h, d), r(b, s, h, d)
    if name == "retention":
        return lambda: chunk_retention(q, k, v)
    if name == "mamba2":
        gate = F.logsigmoid(r(b, s, h).float())
        return lambda: chunk_simple_gla(q, k, v, gate)
    if name == "gated_linear_attention":
        gate = F.logsigmoid(r(b, s, h, d).float()) / 16
        return lambda: chunk_gla(q, k, v, gate)
    if name == "gated_deltanet":
        kn = F.normalize(k.float(), dim=-1).to(k.dtype)
        gate = F.logsigmoid(r(b, s, h).float())
        beta = torch.sigmoid(r(b, s, h).float()).to(k.dtype)
        return lambda: chunk_gated_delta_rule(q, kn, v, gate, beta)
    raise ValueError(name)


def eager_retention(b, h, s, d):
    """Retention's parallel form in eager PyTorch: (q k^T / sqrt(D) * decay mask) v."""
    g = torch.Generator(device="cuda").manual_seed(0)
    q, k, v = (torch.randn(b, h, s, d, device="cuda", dtype=torch.bfloat16, generator=g) for _ in range(3))
    gamma = 1 - torch.pow(2.0, -5.0 - torch.arange(h, device="cuda", dtype=torch.float32))
    i = torch.arange(s, device="cuda")
    dist = (i[:, None] - i[None, :]).float()
    mask = torch.where(dist >= 0, gamma[:, None, None] ** dist.clamp(min=0), 0.0).to(torch.bfloat16)

    def f():
        return ((q @ k.transpose(-1, -2)) / math.sqrt(d) * mask) @ v
    return f


def main():
    log = open(Path(os.environ.get("OUT", "/tmp")) / "bench_recurrent.jsonl", "w")
    also = [f for f in os.environ.get("ALSO", "").split(",") if f]
    print(torch.__version__, torch.cuda.get_device_name(), time.strftime("%Y-%m-%d"), flush=True)
    print(f"{'variant':24} {'B,H,S,D':16} {'attnc ms':>9}  others (ms, other/attnc)", flush=True)
    for (b, h, s, d) in RECURRENT_SHAPES:
        for name, v in RECURRENT.items():
            row = {"variant": name, "B": b, "H": h, "S": s, "D": d}
            try:
                ms = attnc_ms(name, b, h, s, d, "bundles")
                row["attnc_ms"] = ms
            except Exception as e:  # noqa: BLE001
                ms, row["attnc_error"] = None, str(e)
            cells = []
            for folder in also:
                try:
                    oms = attnc_ms(name, b, h, s, d, folder)
                    row[f"attnc_ms@{folder}"] = oms
                    cells.append(f"@{folder} {oms:.3f} ({oms / ms:.2f}x)" if ms else f"@{folder} {oms:.3f}")
                except Exception as e:  # noqa: BLE001
                    cells.append(f"@{folder} err:{str(e)[:60]}")
            peers = [("fla", lambda: fla_peer(name, b, h, s, d))] if fla_ops else []
            if name == "retention":
                peers.append(("eager", lambda: eager_retention(b, h, s, d)))
            for peer, make in peers:
                try:
                    f = make()
                    f()
                    torch.cuda.synchronize()
                    pms = do_bench(f, warmup=10, rep=50)
                    row[peer] = pms
                    cells.append(f"{peer} {pms:.3f} ({pms / ms:.2f}x)" if ms else f"{peer} {pms:.3f}")
                except Exception as e:  # noqa: BLE001
                    cells.append(f"{peer} err:{type(e).__name__}: {str(e)[:80]}")
                torch.cuda.empty_cache()
            mstxt = f"{ms:9.3f}" if ms else "      err"
            print(f"{name:24} {f'{b},{h},{s},{d}':16} {mstxt}  " + "; ".join(cells), flush=True)
            if ms is None:
                print("   attnc:", row["attnc_error"][:200], flush=True)
            log.write(json.dumps(row) + "\n")
            log.flush()


if __name__ == "__main__":
    main()
