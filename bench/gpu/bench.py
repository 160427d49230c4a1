#!/usr/bin/env python3
"""The H200 benchmark, run on the GPU machine from the repository root with .device/bench carried
(bench/gpu/prepare_bench.py fills it). For every variant and shape it times attnc's bundle with
attnc-run (inputs drawn on the host, CUDA events, median) and every peer that can compute the
variant, on the same shapes in the same run: cuDNN and flash SDPA, FlexAttention (compiled),
the hand-written Triton kernel from ../shared/peers, and torch.compile of the eager form. Peers
are timed with triton.testing.do_bench (median). TFLOP/s counts useful work only (kept pairs).
Prints one table; JSON lines go to $OUT/bench.jsonl."""
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
from triton.testing import do_bench

ROOT = Path(__file__).resolve().parents[2]
DIR = ROOT / ".device" / "bench"
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(DIR))
from variants import HEAD_DIMS, SHAPES, VARIANTS, useful_flops  # noqa: E402

torch._dynamo.config.cache_size_limit = 256
try:
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention
    flex = torch.compile(flex_attention, dynamic=False)
except Exception as e:  # noqa: BLE001
    flex = None
    print("FlexAttention unavailable:", e)
try:
    import triton_elementwise
except Exception as e:  # noqa: BLE001
    triton_elementwise = None
    print("Triton peer unavailable:", e)


def inputs(name, b, h, s, d):
    g = torch.Generator(device="cuda").manual_seed(0)
    r = lambda *shape: torch.randn(*shape, device="cuda", dtype=torch.bfloat16, generator=g)  # noqa: E731
    v = VARIANTS[name]
    if name == "gqa_causal":
        return r(b, h, s, d), r(b, h // v["kv_groups"], s, d), r(b, h // v["kv_groups"], s, d)
    if name == "differential_causal":
        return r(b, h, s, d), r(b, h, s, d), r(b, h, s, d), r(b, h, s, d), r(b, h, s, d)
    return r(b, h, s, d), r(b, h, s, d), r(b, h, s, d)


def sdpa(backend, causal, gqa=False):
    def f(q, k, v):
        with sdpa_kernel(backend):
            return F.scaled_dot_product_attention(q, k, v, is_causal=causal, enable_gqa=gqa)
    return f


def eager(name):
    """The variant as unfused PyTorch (for torch.compile)."""
    def f(q, k, v):
        s_len, d = q.shape[-2], q.shape[-1]
        s = (q @ k.transpose(-1, -2)).float() / math.sqrt(d)
        i = torch.arange(s_len, device=q.device)
        causal = i[None, :] <= i[:, None]
        if name == "alibi_causal":
            hh = torch.arange(q.shape[1], device=q.device)
            slope = torch.pow(2.0, -8.0 * (hh + 1) / q.shape[1])[:, None, None]
            s = s - slope * (i[:, None] - i[None, :])
        if name == "softcap_causal":
            s = 30.0 * torch.tanh(s / 30.0)
        if name == "sigmoid_bias":
            return (torch.sigmoid(s - math.log(s_len)).to(v.dtype)) @ v
        if name == "relu_attention":
            return (torch.relu(s) / s_len).to(v.dtype) @ v
        if VARIANTS[name]["mask"] == "causal":
            s = s.masked_fill(~causal, float("-inf"))
        return torch.softmax(s, -1).to(v.dtype) @ v
    return torch.compile(f)


def flex_peer(name, b, h, s):
    if flex is None:
        raise RuntimeError("no FlexAttention")
    mask = VARIANTS[name]["mask"]
    score_mod, mask_mod = None, None
    if mask == "causal":
        mask_mod = lambda b_, h_, i, j: j <= i  # noqa: E731
    if mask.startswith("window"):
        w = int(mask[len("window"):])
        mask_mod = lambda b_, h_, i, j: (j <= i) & (i - j < w)  # noqa: E731
    if name == "alibi_causal":
        def score_mod(x, b_, hh, i, j):
            slope = torch.exp2(-8.0 * (hh + 1) / h)
            return x - slope * (i - j)
    if name == "softcap_causal":
        def score_mod(x, b_, hh, i, j):
            return 30.0 * torch.tanh(x / 30.0)
    block = create_block_mask(mask_mod, None, None, s, s, device="cuda") if mask_mod else None
    gqa = name == "gqa_causal"
    return lambda q, k, v: flex(q, k, v, score_mod=score_mod, block_mask=block, enable_gqa=gqa)


def differential_cudnn(q1, q2, k1, k2, v):
    with sdpa_kernel(SDPBackend.CUDNN_ATTENTION):
        a = F.scaled_dot_product_attention(q1, k1, v, is_causal=True)
        b = F.scaled_dot_product_attention(q2, k2, v, is_causal=True)
    lam = 0.5
    a = a - lam * b
    return a * torch.rsqrt((a.float() * a.float()).mean(-1, keepdim=True) + 1e-5).to(a.dtype) * 0.2


def peer_fn(peer, name, b, h, s):
    causal = VARIANTS[name]["mask"] == "causal"
    gqa = name == "gqa_causal"
    if peer == "cudnn":
        return sdpa(SDPBackend.CUDNN_ATTENTION, causal, gqa)
    if peer == "flash":
        return sdpa(SDPBackend.FLASH_ATTENTION, causal, gqa)
    if peer == "flex":
        return flex_peer(name, b, h, s)
    if peer == "compile":
        return eager(name)
    if peer == "triton":
        if triton_elementwise is None:
            raise RuntimeError("no Triton peer")
        kind = 0 if name == "sigmoid_bias" else 1
        return lambda q, k, v: triton_elementwise.triton_attn(q, k, v, kind)
    if peer == "cudnn2":
        return differential_cudnn
    raise ValueError(peer)


def attnc_time(name, b, h, s, d, folder="bundles"):
    v = VARIANTS[name]
    dims = {"B": b, "H": h, "S": s}
    for k in v.get("head_dims", ["D"]):
        dims[k] = d
    if "kv_groups" in v:
        dims["Hkv"] = h // v["kv_groups"]
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


def main():
    log = open(Path(os.environ.get("OUT", "/tmp")) / "bench.jsonl", "w")
    only = set(filter(None, os.environ.get("ONLY", "").split(",")))
    print(torch.__version__, torch.cuda.get_device_name(), time.strftime("%Y-%m-%d"), flush=True)
    head = f"{'variant':20} {'B,H,S,D':16} {'attnc ms':>9} {'TFLOP/s':>8}  peers (TFLOP/s, attnc/peer)"
    print(head, flush=True)
    shapes = [(b, h, s, d) for d in HEAD_DIMS for (b, h, s) in SHAPES[d]]
    if os.environ.get("SHAPES"):  # e.g. SHAPES="4,16,4096,128;8,32,2048,64"
        shapes = [tuple(int(x) for x in t.split(",")) for t in os.environ["SHAPES"].split(";")]
    for (b, h, s, d) in shapes:
        for name, v in VARIANTS.items():
            if only and name not in only:
                continue
            flops = useful_flops(v, b, h, s, d)
            row = {"variant": name, "B": b, "H": h, "S": s, "D": d, "flops": flops, "peers": {}}
            try:
                ms = attnc_time(name, b, h, s, d)
                row["attnc_ms"] = ms
            except Exception as e:  # noqa: BLE001
                ms = None
                row["attnc_error"] = str(e)
            cells = []
            # ALSO=wg: the same variant from another folder of bundles (another target preset),
            # timed in the same run; its ratio is to the main bundles.
            for folder in filter(None, os.environ.get("ALSO", "").split(",")):
                try:
                    oms = attnc_time(name, b, h, s, d, folder)
                    row[f"attnc_ms@{folder}"] = oms
                    ratio = f"{ms / oms:.2f}x" if ms else "-"
                    cells.append(f"@{folder} {flops / oms / 1e9:.1f} ({ratio})")
                except Exception as e:  # noqa: BLE001
                    cells.append(f"@{folder} err:{str(e)[:80]}")
            args = inputs(name, b, h, s, d)
            # PEERS=none times attnc's bundles only (an A/B of two templates when device time is
            # short); the recorded tables always come from runs with the peers.
            for peer in ([] if os.environ.get("PEERS") == "none" else v["peers"]):
                try:
                    f = peer_fn(peer, name, b, h, s)
                    f(*args)
                    torch.cuda.synchronize()
                    pms = do_bench(lambda: f(*args), warmup=10, rep=50)
                    row["peers"][peer] = pms
                    ratio = f"{pms / ms:.2f}x" if ms else "-"
                    cells.append(f"{peer} {flops / pms / 1e9:.0f} ({ratio})")
                except Exception as e:  # noqa: BLE001
                    row["peers"][peer] = None
                    cells.append(f"{peer} err:{type(e).__name__}")
            tf = f"{flops / ms / 1e9:8.1f}" if ms else "     err"
            mstxt = f"{ms:9.3f}" if ms else "      err"
            print(f"{name:20} {f'{b},{h},{s},{d}':16} {mstxt} {tf}  " + "; ".join(cells), flush=True)
            if ms is None:
                print("   attnc:", row["attnc_error"][:200], flush=True)
            log.write(json.dumps(row) + "\n")
            log.flush()


if __name__ == "__main__":
    main()
