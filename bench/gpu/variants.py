"""The benchmarked variants: which example each compiles, the mask it applies (for counting the
useful work: kept (i, j) pairs only), and which peers can compute it. Shared by
prepare_bench.py (here, no torch) and bench.py (the GPU machine)."""

# Head dims compiled; shapes (B, H, S) per head dim are in SHAPES.
HEAD_DIMS = [128, 64]
SHAPES = {128: [(4, 16, 4096), (16, 16, 1024)], 64: [(8, 32, 2048)]}

VARIANTS = {
    # name: example file, mask kind, peers (see bench.py), extra
    "softmax_full": {"example": "softmax_full", "mask": "full", "bf16": True,
                     "peers": ["cudnn", "flash", "flex", "compile"]},
    "softmax_causal": {"example": "softmax_causal", "mask": "causal",
                       "peers": ["cudnn", "flash", "flex", "compile"]},
    "gqa_causal": {"example": "gqa_causal", "mask": "causal", "kv_groups": 4,
                   "peers": ["cudnn", "flash", "flex"]},
    "alibi_causal": {"example": "alibi_causal", "mask": "causal", "peers": ["flex", "compile"]},
    "softcap_causal": {"example": "softcap_causal", "mask": "causal", "peers": ["flex", "compile"]},
    "sliding_window": {"example": "sliding_window", "mask": "window256", "peers": ["flex"]},
    "sigmoid_bias": {"example": "sigmoid_bias", "mask": "full", "peers": ["triton", "compile"]},
    "relu_attention": {"example": "relu_attention", "mask": "full", "peers": ["triton", "compile"]},
    "differential_causal": {"example": "differential_causal", "mask": "causal", "maps": 2,
                            "head_dims": ["D", "Dv"], "peers": ["cudnn2"]},
}


def kept_pairs(mask, s):
    """The (i, j) pairs a mask keeps at sequence length s."""
    if mask == "full":
        return s * s
    if mask == "causal":
        return s * (s + 1) // 2
    if mask.startswith("window"):
        w = int(mask[len("window"):])
        return sum(min(i + 1, w) for i in range(s))
    raise ValueError(mask)


def useful_flops(v, b, h, s, d):
    """4 * B * H * kept pairs * D (two products), times the number of score maps."""
    return 4 * b * h * kept_pairs(v["mask"], s) * d * v.get("maps", 1)


# The recurrent variants: the example, its head dims (all set to the bench's D), and the
# fla-core 0.6 chunked kernel that computes the same recurrence (bench_recurrent.py).
RECURRENT = {
    "retention": {"example": "retention", "head_dims": ["D"], "fla": "chunk_retention"},
    "mamba2": {"example": "mamba2", "head_dims": ["D", "Dv"], "fla": "chunk_simple_gla"},
    "gated_linear_attention": {"example": "gated_linear_attention", "head_dims": ["Dk", "Dv"],
                               "fla": "chunk_gla"},
    "gated_deltanet": {"example": "gated_deltanet", "head_dims": ["D", "Dv"],
                       "fla": "chunk_gated_delta_rule"},
}
RECURRENT_SHAPES = [(4, 16, 4096, 128), (16, 16, 1024, 128)]
