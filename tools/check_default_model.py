#!/usr/bin/env python3
"""Re-scores models/default with Hugging Face transformers' own Mamba forward, using the training
script's evaluation functions: held-out bits per byte (with --corpus; slow without the
fused kernels), the test text and its prefixes, the card's samples (with --samples) and the greedy continuation that tests/unit/default_model repeats.
Prints them as JSON; with --update, also writes them into the model folder's training.json.

    python3 tools/check_default_model.py [--model models/default] [--corpus DIR] [--update]

The checkpoint's config.json must have "rescale_prenorm_residual": false: transformers applies
that initialisation rescale (out_proj / sqrt(num_hidden_layers)) to weights it loads, which
would score a different model from the one that was trained and saved.
"""
import argparse
import json
import os
import sys

import torch
from transformers import MambaForCausalLM

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import train_default_model as t  # noqa: E402


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="models/default")
    p.add_argument("--test_text", default="tests/data/default_model/heldout.txt")
    p.add_argument("--corpus", default="", help="corpus folder with heldout.txt (optional)")
    p.add_argument("--seed", type=int, default=1234, help="the training run's --seed")
    p.add_argument("--samples", action="store_true",
                   help="also redraw the card's samples (slow without the fused kernels: minutes)")
    p.add_argument("--update", action="store_true", help="write the figures into training.json")
    args = p.parse_args()
    with open(os.path.join(args.model, "config.json")) as f:
        if json.load(f).get("rescale_prenorm_residual", False):
            sys.exit("config.json has rescale_prenorm_residual=true; transformers would rescale "
                     "the loaded out_proj weights (see this script's docstring)")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    model = MambaForCausalLM.from_pretrained(args.model).float().to(device).eval()

    with open(args.test_text, "rb") as f:
        test_bytes = f.read()
    ids = torch.tensor([t.EOT_ID] + list(test_bytes), dtype=torch.long, device=device)
    with torch.no_grad():
        logits = t.logits_of(model, ids[None, :-1]).float()[0]
        losses = torch.nn.functional.cross_entropy(logits, ids[1:], reduction="none").double().cpu()
    cumulative = losses.cumsum(0)
    n = losses.numel()
    out = {"test_text": {"bytes": n, "bpb": round(float(cumulative[-1]) / n / t.LN2, 5),
                         "prefix_bpb": {str(k): round(float(cumulative[k - 1]) / k / t.LN2, 5)
                                        for k in t.TEST_PREFIXES if k < n}}}
    if args.corpus:
        docs = t.read_documents(os.path.join(args.corpus, "heldout.txt"))
        bpb, count = t.document_bpb(torch, model, docs, device)
        out["heldout_bpb"], out["heldout_bytes"] = round(bpb, 5), count
    out["samples"] = []
    for i, prompt in enumerate(t.SAMPLE_PROMPTS if args.samples else []):
        text = t.generate(torch, model, prompt, t.SAMPLE_NEW_BYTES, device,
                          temperature=t.SAMPLE_TEMPERATURE, top_k=t.SAMPLE_TOP_K, seed=args.seed + i)
        out["samples"].append({"prompt": prompt, "temperature": t.SAMPLE_TEMPERATURE,
                               "top_k": t.SAMPLE_TOP_K, "seed": args.seed + i,
                               "max_new_bytes": t.SAMPLE_NEW_BYTES, "continuation": text})
    out["greedy"] = {"prompt": t.GREEDY_PROMPT, "max_new_bytes": t.GREEDY_NEW_BYTES,
                     "continuation": t.generate(torch, model, t.GREEDY_PROMPT,
                                                t.GREEDY_NEW_BYTES, device)}
    print(json.dumps(out, indent=1, ensure_ascii=False))
    if args.update:
        path = os.path.join(args.model, "training.json")
        with open(path) as f:
            training = json.load(f)
        ev = training["eval"]
        ev["test_text"].update(out["test_text"])
        if "heldout_bpb" in out:
            ev["heldout_bpb"], ev["heldout_bytes"] = out["heldout_bpb"], out["heldout_bytes"]
        ev["method"] = (ev.get("method", "") + "; re-scored by tools/check_default_model.py "
                        "with rescale_prenorm_residual=false")
        if out["samples"]:
            training["samples"] = out["samples"]
        training["greedy"] = out["greedy"]
        with open(path, "w") as f:
            json.dump(training, f, indent=1, ensure_ascii=False)
            f.write("\n")


if __name__ == "__main__":
    main()
