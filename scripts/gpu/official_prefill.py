#!/usr/bin/env python3
"""Times the official Mamba-2 implementation's prefill (one forward over a prompt) on a GPU, for
side-by-side ratios with mamba-bench's prefill rows (scripts/gpu/prefill_vs_official.sh runs both
in one call).

What runs is state-spaces/mamba's own code: MambaLMHeadModel with ssm_cfg.layer = "Mamba2" on
random fp16 weights of mamba-serve's synthetic shapes (official_decode.py's SHAPES), one sequence
of N tokens, `model(input_ids, num_last_tokens=1)` (the logits of the last position only, as
mamba-serve computes them). Per layer that is in_proj, the depthwise conv (PyTorch's conv1d: the
GPU host has no causal_conv1d extension), the chunked SSD scan (the Triton
mamba_chunk_scan_combined), the Triton gated RMSNorm and out_proj. The Mamba-1 block's prefill
needs the package's compiled selective-scan extension, which the host lacks: Mamba-1 shapes are
refused.

Prints one JSON object per (model, tokens) on stdout:
  {"impl": "official", "model": "mamba2-2.7b", "tokens": 2048, "ms": ..., "tokens_per_s": ...}
"""
import argparse
import json
import statistics
import sys
import time

import official_decode  # SHAPES, make_model (this script's folder is on sys.path when run as a file)


def time_prefill(torch, MambaConfig, MambaLMHeadModel, name, tokens, repeats):
    if official_decode.SHAPES[name][3].get("layer") != "Mamba2":
        raise SystemExit(f"{name}: only Mamba-2 shapes (the Mamba-1 prefill needs the compiled "
                         "selective-scan extension)")
    model, vocab = official_decode.make_model(torch, MambaConfig, MambaLMHeadModel, name)
    ids = torch.randint(0, vocab, (1, tokens), device="cuda")
    with torch.inference_mode():
        for _ in range(2):  # Triton compiles and autotunes on the first calls
            model(ids, num_last_tokens=1)
        times = []
        for _ in range(repeats):
            torch.cuda.synchronize()
            start = time.perf_counter()
            model(ids, num_last_tokens=1)
            torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
    ms = statistics.median(times) * 1e3
    del model
    torch.cuda.empty_cache()
    return {"impl": "official", "model": name, "tokens": tokens, "ms": round(ms, 3),
            "tokens_per_s": round(tokens * 1e3 / ms, 1)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--official", default="", help="folder holding mamba_ssm/")
    parser.add_argument("--models", default="mamba2-2.7b,codestral-7b")
    parser.add_argument("--tokens", default="2048,8192")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    if args.official:
        sys.path.insert(0, args.official)
    import torch
    from mamba_ssm.models.config_mamba import MambaConfig
    from mamba_ssm.models.mixer_seq_simple import MambaLMHeadModel
    for name in args.models.split(","):
        for tokens in (int(t) for t in args.tokens.split(",")):
            row = time_prefill(torch, MambaConfig, MambaLMHeadModel, name, tokens, args.repeats)
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
