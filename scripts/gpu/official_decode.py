#!/usr/bin/env python3
"""Times the official Mamba implementation's decode on a GPU, for side-by-side ratios with
mamba-bench (scripts/gpu/decode_vs_official.sh runs both in one call).

What runs is state-spaces/mamba's own code: MambaLMHeadModel (Mamba-1 blocks, or Mamba-2 blocks
with ssm_cfg.layer = "Mamba2" and their Triton gated RMSNorm; Triton fused add+RMSNorm, Triton
selective_state_update) on random fp16 weights of mamba-serve's synthetic shapes, one decode
token per sequence per step through its CUDA-graph decode step
(utils/generation.py: update_graph_cache, the captured graph's replay) and its greedy sampler
(`sample`, top_k=1), with the same per-step Python work as its `decode` loop. The prompt is not
prefilled (that needs the package's compiled selective-scan extension, which the GPU host lacks);
decode cost does not depend on what the states hold. States are in the model's dtype (fp16), as
the official decode keeps them. Without the causal_conv1d extension (the GPU host has none) both
blocks' `step` update the conv state with their PyTorch fallback (roll + sum). falcon-mamba-7b
runs as the official Mamba-1 block at its shape (d_inner 8192, dt_rank 256): the package has no
FalconMamba variant, so it skips the dt/B/C norms that mamba-serve computes.

The package's Python sources come from a copy of the repository (never committed): pass the folder
that holds mamba_ssm/ with --official (or put it on PYTHONPATH). einops, triton and torch must be
importable.

Prints one JSON object per (model, batch) on stdout:
  {"impl": "official", "model": "130m", "batch": 64, "us_per_step": ..., "tok_per_s": ...}
"""
import argparse
import json
import statistics
import sys
import time

# mamba-serve's synthetic public shapes (engine/model/synthetic_model.cc):
# name -> (d_model, n_layer, vocab, ssm_cfg)
MAMBA2 = dict(layer="Mamba2", d_state=128, headdim=64, ngroups=1, chunk_size=256)
SHAPES = {
    "130m": (768, 24, 50280, {}),
    "370m": (1024, 48, 50280, {}),
    "790m": (1536, 48, 50280, {}),
    "1.4b": (2048, 48, 50280, {}),
    "2.8b": (2560, 64, 50280, {}),
    "falcon-mamba-7b": (4096, 64, 65024, dict(dt_rank=256)),
    "mamba2-130m": (768, 24, 50288, MAMBA2),
    "mamba2-370m": (1024, 48, 50288, MAMBA2),
    "mamba2-780m": (1536, 48, 50288, MAMBA2),
    "mamba2-1.3b": (2048, 48, 50288, MAMBA2),
    "mamba2-2.7b": (2560, 64, 50288, MAMBA2),
    "codestral-7b": (4096, 64, 32768, dict(MAMBA2, ngroups=8)),
}


# The shapes whose checkpoints keep lm_head apart from the embedding.
UNTIED = {"codestral-7b", "falcon-mamba-7b"}


def make_model(torch, MambaConfig, MambaLMHeadModel, name):
    """The official MambaLMHeadModel of synthetic shape `name` on random fp16 weights (seed 0),
    in eval mode; returns (model, vocabulary size). Shared with official_prefill.py."""
    d_model, n_layer, vocab, ssm_cfg = SHAPES[name]
    # The Mamba-2 block's fused in_proj -> scan path needs the causal_conv1d extension;
    # use_mem_eff_path=False keeps the block on the Triton scan and PyTorch's conv.
    if ssm_cfg.get("layer") == "Mamba2":
        ssm_cfg = dict(ssm_cfg, use_mem_eff_path=False)
    config = MambaConfig(d_model=d_model, n_layer=n_layer, vocab_size=vocab, ssm_cfg=dict(ssm_cfg),
                         rms_norm=True, residual_in_fp32=True, fused_add_norm=True,
                         pad_vocab_size_multiple=8, tie_embeddings=name not in UNTIED)
    torch.manual_seed(0)
    return MambaLMHeadModel(config, device="cuda", dtype=torch.float16).eval(), vocab


def time_decode(torch, MambaConfig, MambaLMHeadModel, update_graph_cache, sample, name, batch,
                steps, warmup, repeats):
    model, vocab = make_model(torch, MambaConfig, MambaLMHeadModel, name)
    max_length = warmup + steps + 4
    cache = update_graph_cache(model, None, batch, 1, max_length)
    params = cache.inference_params
    device = torch.device("cuda")

    def run(n):
        # The per-step work of utils/generation.py's decode loop with cg=True, greedy.
        params.reset(max_length, batch)
        params.seqlen_offset = 1
        tokens = torch.randint(0, vocab, (batch, 1), device=device)
        sequences = [tokens]
        for _ in range(n):
            position_ids = torch.full((batch, 1), params.seqlen_offset, dtype=torch.long,
                                      device=device)
            logits = cache.run(sequences[-1], position_ids, params.seqlen_offset).squeeze(dim=1)
            token = sample(logits, top_k=1)
            if params.seqlen_offset >= max_length - 1:  # the loop's stop check
                break
            params.seqlen_offset += sequences[-1].shape[1]
            sequences.append(token.unsqueeze(1))
        torch.cuda.synchronize()
        return len(sequences) - 1

    with torch.inference_mode():
        run(warmup)
        times = []
        for _ in range(repeats):
            torch.cuda.synchronize()
            start = time.perf_counter()
            done = run(steps)
            times.append((time.perf_counter() - start) / done)
    us = statistics.median(times) * 1e6
    del cache, model
    torch.cuda.empty_cache()
    return {"impl": "official", "model": name, "batch": batch, "us_per_step": round(us, 2),
            "tok_per_s": round(batch * 1e6 / us, 1)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--official", default="", help="folder holding mamba_ssm/")
    parser.add_argument("--models", default="130m,1.4b")
    parser.add_argument("--batch", default="1,16,64,256")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if args.official:
        sys.path.insert(0, args.official)
    import torch
    from mamba_ssm.models.config_mamba import MambaConfig
    from mamba_ssm.models.mixer_seq_simple import MambaLMHeadModel
    from mamba_ssm.utils.generation import sample, update_graph_cache
    for name in args.models.split(","):
        for batch in (int(b) for b in args.batch.split(",")):
            row = time_decode(torch, MambaConfig, MambaLMHeadModel, update_graph_cache, sample,
                              name, batch, args.steps, args.warmup, args.repeats)
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
