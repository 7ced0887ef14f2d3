#!/usr/bin/env python3
"""Trains mamba-serve's embedded default model: a small byte-level Mamba-1 in the Hugging Face
layout, on the corpus that tools/build_default_corpus.sh builds.

    PYTHONUNBUFFERED=1 python3 tools/train_default_model.py \
        --corpus .gpufix/default_corpus --out models/default --minutes 8

Needs PyTorch, transformers (MambaForCausalLM), safetensors and, for the tokenizer check,
tokenizers; one CUDA GPU (an H100 trains the default size in about 8 minutes). Without a GPU,
`--self-test` checks the parts that need only PyTorch (the scan, the tokenizer file, the corpus
reader) and `--smoke` runs a few training steps on the CPU.

The model trains through transformers' pure-PyTorch path with `use_mambapy=True`. When the mambapy
package is missing (it usually is), this script provides the parallel scan that path calls,
`pscan(A, X)`, itself: a chunked scan with an explicit backward, checked against the sequential
definition before training starts.

Writes into --out (flat, at most 8 files): config.json, generation_config.json, model.safetensors
(fp16), tokenizer.json, tokenizer_config.json, training.json (figures the tests read) and
README.md (the model card).
"""

import argparse
import hashlib
import json
import math
import os
import platform
import sys
import time

# Deterministic cuBLAS needs this before CUDA initializes.
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EOT_TEXT = "<|endoftext|>"
EOT_ID = 256
VOCAB_SIZE = 257
LN2 = math.log(2.0)

# Fixed prompts for the model card's samples and the greedy check the C++ test repeats.
SAMPLE_PROMPTS = [
    "In the beginning",
    "Blessed is the man who",
    "LOVE, n.",
    "A hacker is",
]
GREEDY_PROMPT = "The "
SAMPLE_TEMPERATURE = 0.8
SAMPLE_TOP_K = 40
SAMPLE_NEW_BYTES = 300
GREEDY_NEW_BYTES = 120
# Prefix lengths (bytes) of the test text whose bits per byte training.json records.
TEST_PREFIXES = (1024, 2048, 4096, 8192, 16384)


def log(msg):
    print(msg, flush=True)


def fail(msg):
    print(f"train_default_model: error: {msg}", file=sys.stderr, flush=True)
    sys.exit(1)


# ------------------------------------------------------------------------------------------------
# Byte-level tokenizer file.

def byte_level_alphabet():
    """The byte -> character table of the ByteLevel pre-tokenizer (GPT-2's): printable Latin-1
    bytes stand for themselves, the other 68 bytes map to U+0100 onwards in byte order."""
    printable = (list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAC + 1)) +
                 list(range(0xAE, 0xFF + 1)))
    table, extra = {}, 0
    for b in range(256):
        if b in printable:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def tokenizer_json():
    """A Hugging Face tokenizers file whose ids are the UTF-8 bytes of the text (0..255) plus
    <|endoftext|> = 256: a BPE model without merges over the ByteLevel alphabet."""
    alphabet = byte_level_alphabet()
    vocab = {alphabet[b]: b for b in range(256)}
    vocab[EOT_TEXT] = EOT_ID
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False,
                  "use_regex": False}
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [{"id": EOT_ID, "content": EOT_TEXT, "single_word": False,
                          "lstrip": False, "rstrip": False, "normalized": False,
                          "special": True}],
        "normalizer": None,
        "pre_tokenizer": dict(byte_level),
        "post_processor": None,
        "decoder": dict(byte_level),
        "model": {"type": "BPE", "dropout": None, "unk_token": None,
                  "continuing_subword_prefix": None, "end_of_word_suffix": None,
                  "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": vocab, "merges": []},
    }


def tokenizer_config_json():
    return {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": EOT_TEXT,
        "eos_token": EOT_TEXT,
        "pad_token": EOT_TEXT,
        "add_prefix_space": False,
        "clean_up_tokenization_spaces": False,
        "model_max_length": 1 << 20,
    }


def write_json(path, obj):
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        json.dump(obj, f, ensure_ascii=False, indent=1)
        f.write("\n")


def check_tokenizer_file(path):
    """Loads `path` with Hugging Face tokenizers and checks it maps text to its UTF-8 bytes.
    Returns the tokenizers version, or None when the package is missing."""
    try:
        import tokenizers
    except ImportError:
        return None
    tok = tokenizers.Tokenizer.from_file(path)
    for text in ["Hello, world!\n", "caf\u00e9 \u2615", "  two  spaces\tand a tab\r\n",
                 "".join(chr(c) for c in range(1, 128))]:
        ids = tok.encode(text, add_special_tokens=False).ids
        want = list(text.encode("utf-8"))
        if ids != want:
            fail(f"tokenizer.json encodes {text!r} to {ids[:20]}..., want its UTF-8 bytes "
                 f"{want[:20]}...")
        back = tok.decode(ids, skip_special_tokens=False)
        if back != text:
            fail(f"tokenizer.json decodes {text!r} back to {back!r}")
    ids = tok.encode("a" + EOT_TEXT + "b", add_special_tokens=False).ids
    if ids != [ord("a"), EOT_ID, ord("b")]:
        fail(f"tokenizer.json encodes {EOT_TEXT} inside text to {ids}, want [97, 256, 98]")
    if tok.get_vocab_size(with_added_tokens=True) != VOCAB_SIZE:
        fail(f"tokenizer.json has {tok.get_vocab_size(with_added_tokens=True)} ids, want "
             f"{VOCAB_SIZE}")
    return tokenizers.__version__


# ------------------------------------------------------------------------------------------------
# Corpus.

def read_documents(path):
    """Documents of a corpus file: separated by a line holding only <|endoftext|>."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    docs = [d for d in text.split(EOT_TEXT + "\n") if d]
    if not docs:
        fail(f"{path} holds no documents")
    return docs


def encode_documents(docs):
    """The token stream the model trains on: <|endoftext|> before every document, then its bytes.
    Returns a bytearray of bytes and the positions that hold <|endoftext|>."""
    buf, eot_positions = bytearray(), []
    for doc in docs:
        eot_positions.append(len(buf))
        buf.append(0)
        buf.extend(doc.encode("utf-8"))
    return buf, eot_positions


def to_token_tensor(torch, buf, eot_positions):
    t = torch.frombuffer(buf, dtype=torch.uint8).to(torch.int16)
    t[torch.tensor(eot_positions, dtype=torch.long)] = EOT_ID
    return t


# ------------------------------------------------------------------------------------------------
# The parallel scan for transformers' use_mambapy path.
#
# transformers calls pscan(A, X) with A = exp(dt * A) and X = dt * B * x, both (B, L, D, N), and
# uses the returned H (B, L, D, N) with H_t = A_t * H_{t-1} + X_t, H_{-1} = 0. We split L into
# chunks of T steps: (1) each chunk's end state from zero and the product of its A's, stepping all
# chunks at once; (2) the state entering each chunk, stepping across chunks; (3) every H_t, again
# stepping all chunks at once from their entering states. That is about 2T + 2L/T kernel launches
# and five passes over the (B, L, D, N) tensors, all in fp32, with only products and sums of
# factors in [0, 1] (no division or logarithms, so no overflow however fast a channel decays).
# The backward pass is the same scan run in reverse: with G = dLoss/dH and
# Q_t = G_t + A_{t+1} Q_{t+1}, dLoss/dX_t = Q_t and dLoss/dA_t = Q_t * H_{t-1}.

def make_chunked_pscan(torch, chunk):
    def scan(a, x, reverse):
        bsz, length = a.shape[0], a.shape[1]
        rest = tuple(a.shape[2:])
        t_len = max(1, min(chunk, length))
        n_chunks = -(-length // t_len)
        pad = n_chunks * t_len - length
        if pad:
            # Padding at the end with X = 0 leaves every real state unchanged in both
            # directions (a reverse scan starts in the padding with a zero state).
            widths = [0, 0] * len(rest) + [0, pad]
            a = torch.nn.functional.pad(a, widths, value=1.0)
            x = torch.nn.functional.pad(x, widths, value=0.0)
        ac = a.reshape((bsz, n_chunks, t_len) + rest)
        xc = x.reshape((bsz, n_chunks, t_len) + rest)
        steps = range(t_len - 1, -1, -1) if reverse else range(t_len)
        # (1) Each chunk's end state from a zero start, and its total decay.
        h = torch.zeros((bsz, n_chunks) + rest, dtype=a.dtype, device=a.device)
        for t in steps:
            h = torch.addcmul(xc[:, :, t], ac[:, :, t], h)
        decay = ac.prod(dim=2)
        # (2) The state entering each chunk.
        entering = torch.empty_like(h)
        carry = torch.zeros((bsz,) + rest, dtype=a.dtype, device=a.device)
        for k in (range(n_chunks - 1, -1, -1) if reverse else range(n_chunks)):
            entering[:, k] = carry
            carry = torch.addcmul(h[:, k], decay[:, k], carry)
        # (3) Every state.
        out = torch.empty((bsz, n_chunks, t_len) + rest, dtype=a.dtype, device=a.device)
        prev = entering
        for t in steps:
            torch.addcmul(xc[:, :, t], ac[:, :, t], prev, out=out[:, :, t])
            prev = out[:, :, t]
        out = out.reshape((bsz, n_chunks * t_len) + rest)
        return out[:, :length] if pad else out

    class ChunkedScan(torch.autograd.Function):
        @staticmethod
        def forward(ctx, a, x):
            a32, x32 = a.float(), x.float()
            h = scan(a32, x32, reverse=False)
            ctx.save_for_backward(a32, h)
            ctx.x_dtype, ctx.a_dtype = x.dtype, a.dtype
            return h.to(x.dtype)

        @staticmethod
        def backward(ctx, grad_h):
            a, h = ctx.saved_tensors
            a_next = torch.zeros_like(a)
            a_next[:, :-1] = a[:, 1:]
            q = scan(a_next, grad_h.float(), reverse=True)
            grad_a = torch.zeros_like(a)
            grad_a[:, 1:] = q[:, 1:] * h[:, :-1]
            return grad_a.to(ctx.a_dtype), q.to(ctx.x_dtype)

    def pscan(a, x):
        return ChunkedScan.apply(a, x)

    return pscan


def sequential_scan(torch, a, x):
    h = torch.zeros_like(x[:, 0])
    out = []
    for t in range(x.shape[1]):
        h = a[:, t] * h + x[:, t]
        out.append(h)
    return torch.stack(out, dim=1)


def validate_scan(torch, pscan, device):
    """Compares `pscan` with the sequential definition, values and gradients, on small random
    inputs laid out as transformers passes them (transposed views). Returns the worst relative
    error."""
    gen = torch.Generator(device="cpu").manual_seed(0)
    worst = 0.0
    for (b, length, d, n) in [(2, 100, 6, 5), (1, 7, 3, 4), (3, 64, 8, 16), (1, 257, 4, 2)]:
        # Decays as the model makes them, exp(dt * A) with A < 0: mostly close to 1, some tiny.
        dt_a = -torch.rand(b, d, length, n, generator=gen) ** 3 * 8.0
        a_bdln = torch.exp(dt_a).to(device)
        x_bdln = torch.randn(b, d, length, n, generator=gen).to(device)
        w = torch.randn(b, length, d, n, generator=gen).to(device)
        results = []
        for fn in (pscan, lambda a, x: sequential_scan(torch, a, x)):
            a_leaf = a_bdln.clone().requires_grad_(True)
            x_leaf = x_bdln.clone().requires_grad_(True)
            h = fn(a_leaf.transpose(1, 2), x_leaf.transpose(1, 2))
            (h * w).sum().backward()
            results.append((h.detach(), a_leaf.grad, x_leaf.grad))
        for got, want in zip(results[0], results[1]):
            err = ((got - want).abs().max() / want.abs().max().clamp_min(1e-6)).item()
            worst = max(worst, err)
    return worst


# ------------------------------------------------------------------------------------------------
# transformers glue.


def install_scan(torch, device, chunk):
    """Makes MambaForCausalLM's use_mambapy path run on this machine: mambapy's pscan when it is
    installed and passes the check, else ours. The fused CUDA kernels are kept out so that every
    run trains the same pure-PyTorch math. Returns (modeling module, description)."""
    from transformers.models.mamba import modeling_mamba as mm

    candidates = []
    try:
        from mambapy.pscan import pscan as mambapy_pscan
        candidates.append(("mambapy", mambapy_pscan))
    except Exception:  # not installed, or broken: ours is the fallback either way
        pass
    candidates.append((f"chunked scan (T={chunk}) from tools/train_default_model.py",
                       make_chunked_pscan(torch, chunk)))
    chosen = None
    for name, fn in candidates:
        try:
            err = validate_scan(torch, fn, device)
        except Exception as e:  # e.g. a length mambapy does not support
            log(f"scan: {name} failed its check ({type(e).__name__}: {e}); trying the next")
            continue
        log(f"scan: {name}: max relative error vs sequential {err:.2e} (values and gradients)")
        if err < 1e-4:
            chosen = (name, fn)
            break
        log(f"scan: {name} is off by {err:.2e}; trying the next")
    if chosen is None:
        fail("no parallel scan matches the sequential definition; not training")

    calls = {"n": 0}
    scan_fn = chosen[1]

    def counted_pscan(a, x):
        calls["n"] += 1
        return scan_fn(a, x)

    mm.pscan = counted_pscan
    mm.is_mambapy_available = lambda: True
    # transformers 5.x imports `from mambapy.pscan import pscan` inside its scan function; when the
    # mambapy package is absent, serve that import from a module holding our scan.
    import sys
    import types
    if chosen[0] != "mambapy":
        package = types.ModuleType("mambapy")
        module = types.ModuleType("mambapy.pscan")
        module.pscan = counted_pscan
        package.pscan = module
        sys.modules["mambapy"] = package
        sys.modules["mambapy.pscan"] = module
    # Newer transformers route training through a lazily loaded fused kernel (mamba_inner_fn)
    # and fall through to the PyTorch path when it yields None; with no kernel installed the name
    # may be None itself, which would be called. Make it decline instead.
    if getattr(mm, "mamba_inner_fn", 0) is None:
        mm.mamba_inner_fn = lambda *args, **kwargs: None
    if hasattr(mm, "is_fast_path_available"):
        mm.is_fast_path_available = False
    mm._mamba_serve_scan_calls = calls
    return mm, chosen[0]


def check_scan_is_used(torch, mm, model, device):
    """Runs one training-mode forward and backward and checks that the use_mambapy path (our
    pscan) did the scan; otherwise prints the mixer's source so the next run can be fixed."""
    calls = mm._mamba_serve_scan_calls
    before = calls["n"]
    model.train()
    ids = torch.randint(0, 256, (2, 16), device=device)
    out = model(input_ids=ids, use_cache=False).logits
    out.float().sum().backward()
    model.zero_grad(set_to_none=True)
    if calls["n"] == before:
        import inspect
        src = inspect.getsource(mm.MambaMixer)
        log("check: the parallel scan was NOT used; MambaMixer source follows")
        print(src[:12000])
        fail("transformers did not take the use_mambapy path")
    log(f"check: training forward uses the parallel scan ({calls['n'] - before} calls)")


def make_config(args):
    from transformers import MambaConfig
    return MambaConfig(
        vocab_size=VOCAB_SIZE, hidden_size=args.hidden, state_size=args.state,
        num_hidden_layers=args.layers, expand=args.expand, conv_kernel=args.conv,
        time_step_rank="auto", use_bias=False, use_conv_bias=True, layer_norm_epsilon=1e-5,
        residual_in_fp32=True, tie_word_embeddings=True, initializer_range=0.02,
        rescale_prenorm_residual=True, bos_token_id=EOT_ID, eos_token_id=EOT_ID,
        pad_token_id=EOT_ID, use_mambapy=True, use_cache=False)


def no_fast_kernels(mm):
    # Constructors may have looked the kernels up again: a fused training kernel that is missing
    # must decline (return None) so that transformers falls through to its PyTorch path.
    if getattr(mm, "mamba_inner_fn", 0) is None:
        mm.mamba_inner_fn = lambda *args, **kwargs: None


def logits_of(model, ids):
    """Logits for every position; train mode keeps transformers on the use_mambapy parallel path
    (Mamba has no dropout, so train and eval mode compute the same function)."""
    model.train()
    return model(input_ids=ids, use_cache=False).logits


def sum_nll(torch, model, ids, max_len=131072):
    """Sum of next-token negative log-likelihoods (nats, fp32) of ids[1:] given the prefix, over a
    1-D token tensor, and the number of predictions. Sequences longer than max_len are cut into
    independent windows (none of the default corpus's documents is)."""
    total, count = 0.0, 0
    for start in range(0, ids.numel() - 1, max_len):
        piece = ids[start:start + max_len + 1].long()
        if piece.numel() < 2:
            break
        with torch.no_grad():
            logits = logits_of(model, piece[None, :-1]).float()[0]
            nll = torch.nn.functional.cross_entropy(logits, piece[1:], reduction="sum")
        total += nll.item()
        count += piece.numel() - 1
    return total, count


def document_bpb(torch, model, docs, device):
    """Bits per byte over held-out documents, each scored from a fresh state after
    <|endoftext|> (the byte predictions only)."""
    total, count = 0.0, 0
    for doc in docs:
        data = doc.encode("utf-8")
        ids = torch.tensor([EOT_ID] + list(data), dtype=torch.long, device=device)
        nll, n = sum_nll(torch, model, ids)
        total += nll
        count += n
    return total / count / LN2, count


def generate(torch, model, prompt, new_bytes, device, temperature=0.0, top_k=0, seed=0):
    """Continues <|endoftext|> + prompt byte by byte (recomputing the sequence each step: short
    texts only). Greedy when temperature is 0. Stops at <|endoftext|>."""
    gen = torch.Generator(device="cpu").manual_seed(seed)
    ids = [EOT_ID] + list(prompt.encode("utf-8"))
    out = []
    with torch.no_grad():
        for _ in range(new_bytes):
            x = torch.tensor([ids], dtype=torch.long, device=device)
            logits = logits_of(model, x)[0, -1].float().cpu()
            if temperature <= 0:
                nxt = int(torch.argmax(logits))
            else:
                logits = logits / temperature
                if top_k > 0:
                    kth = torch.topk(logits, top_k).values[-1]
                    logits = torch.where(logits < kth, torch.full_like(logits, -math.inf), logits)
                probs = torch.softmax(logits, dim=-1)
                nxt = int(torch.multinomial(probs, 1, generator=gen))
            if nxt == EOT_ID:
                break
            ids.append(nxt)
            out.append(nxt)
    return bytes(out).decode("utf-8", errors="replace")


# ------------------------------------------------------------------------------------------------
# Training.

def lr_at(step, total, args):
    if step < args.warmup_steps:
        return args.lr * (step + 1) / args.warmup_steps
    if total is None:
        return args.lr
    progress = min(1.0, (step - args.warmup_steps) / max(1, total - args.warmup_steps))
    floor = args.lr * args.min_lr_ratio
    return floor + (args.lr - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def param_groups(model, weight_decay):
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        # Norm gains, biases, A_log and D keep their scale (as in the Mamba reference code).
        if p.ndim < 2 or name.endswith("A_log") or name.endswith(".D") or "norm" in name:
            no_decay.append(p)
        else:
            decay.append(p)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def package_version(name):
    try:
        module = __import__(name)
        return getattr(module, "__version__", "unknown")
    except ImportError:
        return None


def repo_relative(path):
    """`path` relative to the repository when inside it, else its base name (records never name
    the machine's folders)."""
    rel = os.path.relpath(os.path.abspath(path), REPO_ROOT)
    return os.path.basename(path) if rel.startswith("..") else rel


def retrain_command(args, steps):
    """The command that repeats this run: same hyper-parameters, the step count it reached."""
    defaults = parse_args([])
    flags = []
    for name in ("hidden", "layers", "state", "expand", "conv", "seq_len", "batch", "lr",
                 "min_lr_ratio", "warmup_steps", "weight_decay", "clip", "scan_chunk"):
        if getattr(args, name) != getattr(defaults, name):
            flags.append(f"--{name.replace('_', '-')} {getattr(args, name)}")
    flags += [f"--steps {steps}", f"--seed {args.seed}"]
    return ("PYTHONUNBUFFERED=1 python3 tools/train_default_model.py "
            "--corpus .gpufix/default_corpus --out models/default " + " ".join(flags))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--corpus", default=os.path.join(REPO_ROOT, ".gpufix", "default_corpus"),
                   help="folder with train.txt, heldout.txt (and corpus.json)")
    p.add_argument("--out", default=os.path.join(REPO_ROOT, "models", "default"))
    p.add_argument("--test-text", default=os.path.join(REPO_ROOT, "tests", "data",
                                                       "default_model", "heldout.txt"),
                   help="the committed held-out text the C++ test scores; its bits per byte go "
                        "into training.json")
    p.add_argument("--minutes", type=float, default=8.0,
                   help="wall-clock budget of the training loop (the step count is fixed from "
                        "the measured speed after the first steps)")
    p.add_argument("--steps", type=int, default=0,
                   help="train exactly this many steps instead of filling --minutes (reruns)")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--layers", type=int, default=8)
    p.add_argument("--state", type=int, default=16)
    p.add_argument("--expand", type=int, default=2)
    p.add_argument("--conv", type=int, default=4)
    p.add_argument("--seq-len", type=int, default=512)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--min-lr-ratio", type=float, default=0.1)
    p.add_argument("--warmup-steps", type=int, default=200)
    p.add_argument("--weight-decay", type=float, default=0.1)
    p.add_argument("--clip", type=float, default=1.0)
    p.add_argument("--scan-chunk", type=int, default=32)
    p.add_argument("--log-every", type=int, default=50)
    p.add_argument("--max-file-mb", type=float, default=10.0,
                   help="refuse a model.safetensors larger than this")
    p.add_argument("--device", default="cuda", help="cuda or cpu (cpu: --smoke only)")
    p.add_argument("--smoke", action="store_true",
                   help="a tiny model for a few steps: checks the whole pipeline quickly")
    p.add_argument("--self-test", action="store_true",
                   help="check the scan, tokenizer file and corpus reader without transformers, "
                        "then exit")
    args = p.parse_args(argv)
    if args.smoke:
        args.hidden, args.layers, args.seq_len, args.batch = 64, 2, 128, 4
        args.warmup_steps = 5
        args.steps = args.steps or 20
        args.log_every = 5
    return args


def self_test(args):
    import torch
    log(f"self-test: torch {torch.__version__}")
    pscan = make_chunked_pscan(torch, args.scan_chunk)
    for chunk in (args.scan_chunk, 5, 1):
        err = validate_scan(torch, make_chunked_pscan(torch, chunk), "cpu")
        log(f"self-test: chunked scan T={chunk}: max relative error {err:.2e}")
        if err >= 1e-4:
            fail(f"chunked scan T={chunk} is off by {err:.2e}")
    del pscan
    alphabet = byte_level_alphabet()
    if len(set(alphabet.values())) != 256:
        fail("byte-level alphabet is not a bijection")
    if alphabet[ord(" ")] != "\u0120" or alphabet[ord("\n")] != "\u010a":
        fail("byte-level alphabet differs from GPT-2's (space should be U+0120, newline U+010A)")
    tj = tokenizer_json()
    if sorted(tj["model"]["vocab"].values()) != list(range(VOCAB_SIZE)):
        fail("tokenizer vocab ids are not 0..256")
    log("self-test: tokenizer vocabulary maps the 256 bytes and <|endoftext|> to 0..256")
    for name in ("train.txt", "heldout.txt"):
        path = os.path.join(args.corpus, name)
        if os.path.exists(path):
            docs = read_documents(path)
            buf, eots = encode_documents(docs)
            tokens = to_token_tensor(torch, buf, eots)
            if int((tokens == EOT_ID).sum()) != len(docs) or int(tokens.max()) != EOT_ID:
                fail(f"{path}: token stream has the wrong number of <|endoftext|>")
            log(f"self-test: {name}: {len(docs)} documents, {tokens.numel()} tokens")
    log("self-test: ok")


def main(argv=None):
    args = parse_args(argv)
    if args.self_test:
        self_test(args)
        return

    t_start = time.time()
    import torch
    try:
        import transformers
        from transformers import MambaForCausalLM
    except ImportError as e:
        fail(f"needs transformers with MambaForCausalLM ({e})")
    import safetensors
    from safetensors import safe_open

    if args.device == "cuda" and not torch.cuda.is_available():
        fail("no CUDA device; training the default model needs a GPU (--smoke --device cpu "
             "runs the pipeline on the CPU)")
    device = torch.device(args.device)
    torch.manual_seed(args.seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    if device.type == "cuda":
        device_name = torch.cuda.get_device_name(device)
    else:
        device_name = platform.processor() or "cpu"
    log(f"torch {torch.__version__}, transformers {transformers.__version__}, device {device_name}")

    # Inputs first, so a missing file fails before any GPU work.
    train_path = os.path.join(args.corpus, "train.txt")
    heldout_path = os.path.join(args.corpus, "heldout.txt")
    for path in (train_path, heldout_path, args.test_text):
        if not os.path.exists(path):
            fail(f"{path} does not exist (build the corpus with tools/build_default_corpus.sh)")
    corpus_meta = {}
    if os.path.exists(os.path.join(args.corpus, "corpus.json")):
        with open(os.path.join(args.corpus, "corpus.json"), encoding="utf-8") as f:
            corpus_meta = json.load(f)
    train_docs = read_documents(train_path)
    heldout_docs = read_documents(heldout_path)
    with open(args.test_text, "rb") as f:
        test_bytes = f.read()
    buf, eots = encode_documents(train_docs)
    train_tokens = to_token_tensor(torch, buf, eots).to(device)
    n_train = train_tokens.numel()
    log(f"corpus: {len(train_docs)} training documents, {n_train / 1e6:.2f} M tokens; "
        f"{len(heldout_docs)} held-out documents; test text {len(test_bytes)} bytes")
    if n_train < args.seq_len + 2:
        fail(f"training corpus has {n_train} tokens, fewer than one sequence")

    # The tokenizer file, checked before any training.
    os.makedirs(args.out, exist_ok=True)
    tok_path = os.path.join(args.out, "tokenizer.json")
    write_json(tok_path, tokenizer_json())
    write_json(os.path.join(args.out, "tokenizer_config.json"), tokenizer_config_json())
    tokenizers_version = check_tokenizer_file(tok_path)
    log("tokenizer: " + ("tokenizers " + tokenizers_version + " maps text to its UTF-8 bytes"
                         if tokenizers_version else "tokenizers is not installed; not checked"))

    mm, scan_name = install_scan(torch, device, args.scan_chunk)
    config = make_config(args)
    model = MambaForCausalLM(config)
    no_fast_kernels(mm)
    model.to(device)
    check_scan_is_used(torch, mm, model, device)
    n_params = sum(p.numel() for p in model.parameters())
    log(f"model: {args.layers} layers x {args.hidden}, d_state {args.state}, expand "
        f"{args.expand}, {n_params / 1e6:.2f} M parameters ({2 * n_params / 1e6:.1f} MB fp16)")
    if 2 * n_params > args.max_file_mb * 1e6:
        fail(f"{n_params} parameters make a {2 * n_params / 1e6:.1f} MB fp16 file, over "
             f"--max-file-mb {args.max_file_mb}")

    optimizer = torch.optim.AdamW(param_groups(model, args.weight_decay), lr=args.lr,
                                  betas=(0.9, 0.95), eps=1e-8)
    # Window starts come from a generator on the training device, so drawing them never waits
    # for the GPU.
    data_gen = torch.Generator(device=device).manual_seed(args.seed)
    offsets_range = n_train - args.seq_len - 1
    window = torch.arange(args.seq_len + 1, device=device)

    total_steps = args.steps if args.steps > 0 else None
    budget_s = args.minutes * 60.0
    # Steps [calib_from, calib_to) time the loop; they lie within the warm-up, so the schedule
    # (and a rerun with --steps) does not depend on when the step count was fixed.
    calib_to = max(2, min(30, args.warmup_steps))
    calib_from = min(5, calib_to - 1)
    step, tokens_seen, recent = 0, 0, []
    losses_tail = []
    log(f"training: batch {args.batch} x {args.seq_len} bytes, lr {args.lr} (warmup "
        f"{args.warmup_steps}, cosine to {args.min_lr_ratio:g}x), weight decay "
        f"{args.weight_decay}, clip {args.clip}, seed {args.seed}, " +
        (f"{total_steps} steps" if total_steps else f"{args.minutes:g} minutes"))
    if device.type == "cuda":
        torch.cuda.synchronize()
    t_train = time.time()
    t_calib = None
    model.train()
    while total_steps is None or step < total_steps:
        lr = lr_at(step, total_steps, args)
        for group in optimizer.param_groups:
            group["lr"] = lr
        starts = torch.randint(0, offsets_range, (args.batch,), generator=data_gen, device=device)
        seqs = train_tokens[starts[:, None] + window[None, :]].long()
        logits = model(input_ids=seqs[:, :-1], use_cache=False).logits
        loss = torch.nn.functional.cross_entropy(logits.float().reshape(-1, VOCAB_SIZE),
                                                 seqs[:, 1:].reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
        optimizer.step()
        step += 1
        tokens_seen += args.batch * args.seq_len

        if step == calib_from or step == calib_to or step % args.log_every == 0 or \
                step == total_steps:
            loss_v = loss.item()  # synchronizes
            if not math.isfinite(loss_v):
                fail(f"loss became {loss_v} at step {step}; lower --lr")
            recent.append(loss_v)
            now = time.time()
            if step == calib_from:
                t_calib = now
            if step == calib_to and total_steps is None:
                per_step = (now - t_calib) / (calib_to - calib_from)
                left = budget_s - (now - t_train)
                total_steps = max(calib_to + 1, calib_to + int(0.98 * left / per_step))
                tok_s = args.batch * args.seq_len / per_step
                log(f"speed: {per_step * 1e3:.1f} ms/step, {tok_s / 1e3:.0f}k tokens/s: "
                    f"{total_steps} steps fill {args.minutes:g} minutes")
            if step % args.log_every == 0 or step == total_steps:
                elapsed = now - t_train
                log(f"step {step}/{total_steps or '?'}  loss {loss_v:.4f} ({loss_v / LN2:.3f} "
                    f"bpb)  lr {lr:.2e}  |g| {float(grad_norm):.2f}  "
                    f"{tokens_seen / elapsed / 1e3:.0f}k tok/s  {elapsed / 60:.1f} min")
        if total_steps is not None and step > total_steps - 50:
            losses_tail.append(loss.detach())
    if device.type == "cuda":
        torch.cuda.synchronize()
    train_minutes = (time.time() - t_train) / 60.0
    final_loss = float(torch.stack(losses_tail).mean().item())
    log(f"trained {step} steps, {tokens_seen / 1e6:.1f} M tokens in {train_minutes:.2f} min; "
        f"loss over the last {len(losses_tail)} steps {final_loss:.4f} "
        f"({final_loss / LN2:.3f} bpb)")

    # Save in fp16 with HF names; the saved config must load without mambapy.
    model.config.use_mambapy = False
    model.config.use_cache = True
    # rescale_prenorm_residual is an initialisation rule, but transformers also applies it
    # (out_proj / sqrt(num_hidden_layers)) to the weights from_pretrained loads: saved with it
    # on, the checkpoint would load as a different model from the one trained.
    model.config.rescale_prenorm_residual = False
    model.half()
    try:
        model.save_pretrained(args.out, safe_serialization=True)
    except TypeError:  # versions where safetensors is the only format
        model.save_pretrained(args.out)
    st_path = os.path.join(args.out, "model.safetensors")
    if not os.path.exists(st_path):
        fail(f"save_pretrained wrote no {st_path}")
    file_mb = os.path.getsize(st_path) / 1e6
    with safe_open(st_path, framework="pt") as f:
        names = list(f.keys())
        dtypes = {str(f.get_slice(n).get_dtype()) for n in names}
    log(f"saved {st_path}: {len(names)} tensors, {file_mb:.2f} MB, dtypes {sorted(dtypes)}")
    if dtypes != {"F16"}:
        fail(f"model.safetensors has dtypes {sorted(dtypes)}, want F16 only")
    if file_mb > args.max_file_mb:
        fail(f"model.safetensors is {file_mb:.1f} MB, over {args.max_file_mb} MB")
    del model, optimizer
    if device.type == "cuda":
        torch.cuda.empty_cache()

    # Everything below uses the saved fp16 weights, widened to fp32 (no TF32): what the engine
    # sees.
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    model = MambaForCausalLM.from_pretrained(args.out, use_mambapy=True)
    no_fast_kernels(mm)
    model = model.float().to(device)

    # The parallel path we trained must agree with transformers' own sequential loop.
    probe = torch.tensor([[EOT_ID] + list(test_bytes[:96])], dtype=torch.long, device=device)
    with torch.no_grad():
        par = logits_of(model, probe).float()
        model.eval()  # transformers' sequential loop
        seq = model(input_ids=probe, use_cache=False).logits.float()
    path_diff = (par - seq).abs().max().item()
    log(f"check: parallel vs sequential logits max |diff| {path_diff:.2e}")
    if path_diff > 1e-3:
        fail(f"parallel and sequential logits differ by {path_diff:.2e}")

    heldout_bpb, heldout_n = document_bpb(torch, model, heldout_docs, device)
    test_ids = torch.tensor([EOT_ID] + list(test_bytes), dtype=torch.long, device=device)
    # Per-byte losses of the test text in one pass, so that prefixes have figures too: the C++
    # test scores a prefix by default (the CPU backend feeds one byte a step).
    with torch.no_grad():
        test_logits = logits_of(model, test_ids[None, :-1]).float()[0]
        test_losses = torch.nn.functional.cross_entropy(test_logits, test_ids[1:],
                                                        reduction="none").double().cpu()
    del test_logits
    test_n = test_losses.numel()
    test_bpb = float(test_losses.sum()) / test_n / LN2
    cumulative = test_losses.cumsum(0)
    prefix_bpb = {str(n): round(float(cumulative[n - 1]) / n / LN2, 5)
                  for n in TEST_PREFIXES if n < test_n}
    log(f"eval: held-out {heldout_bpb:.4f} bits/byte over {heldout_n} bytes; test text "
        f"{test_bpb:.4f} bits/byte over {test_n} bytes")

    samples = []
    for i, prompt in enumerate(SAMPLE_PROMPTS):
        text = generate(torch, model, prompt, SAMPLE_NEW_BYTES, device,
                        temperature=SAMPLE_TEMPERATURE, top_k=SAMPLE_TOP_K, seed=args.seed + i)
        samples.append({"prompt": prompt, "temperature": SAMPLE_TEMPERATURE,
                        "top_k": SAMPLE_TOP_K, "seed": args.seed + i,
                        "max_new_bytes": SAMPLE_NEW_BYTES, "continuation": text})
        log(f"sample {i + 1}: {prompt!r} -> {text[:160]!r}...")
    greedy = generate(torch, model, GREEDY_PROMPT, GREEDY_NEW_BYTES, device)
    log(f"greedy: {GREEDY_PROMPT!r} -> {greedy!r}")

    # HF users load the folder with AutoTokenizer; check that path too (not fatal).
    auto_tok_ok = None
    try:
        from transformers import AutoTokenizer
        at = AutoTokenizer.from_pretrained(args.out)
        auto_tok_ok = at("caf\u00e9 \u2615", add_special_tokens=False)["input_ids"] == \
            list("caf\u00e9 \u2615".encode("utf-8"))
    except Exception as e:
        log(f"note: AutoTokenizer could not load {args.out}: {type(e).__name__}: {e}")
        auto_tok_ok = False
    log(f"check: AutoTokenizer maps text to bytes: {auto_tok_ok}")

    cfg = model.config
    training = {
        "model": {
            "architecture": "MambaForCausalLM (Mamba-1), byte-level",
            "hidden_size": cfg.hidden_size, "num_hidden_layers": cfg.num_hidden_layers,
            "state_size": cfg.state_size, "expand": cfg.expand,
            "intermediate_size": cfg.intermediate_size, "conv_kernel": cfg.conv_kernel,
            "time_step_rank": cfg.time_step_rank, "vocab_size": cfg.vocab_size,
            "parameters": n_params, "safetensors_bytes": os.path.getsize(st_path),
            "safetensors_sha256": sha256_file(st_path), "dtype": "float16",
        },
        "training": {
            "seed": args.seed, "steps": step, "batch_size": args.batch, "seq_len": args.seq_len,
            "tokens_seen": tokens_seen, "minutes": round(train_minutes, 3),
            "epochs": round(tokens_seen / n_train, 3), "lr": args.lr,
            "min_lr": round(args.lr * args.min_lr_ratio, 8), "warmup_steps": args.warmup_steps,
            "schedule": "linear warmup, cosine decay", "optimizer": "AdamW (0.9, 0.95)",
            "weight_decay": args.weight_decay, "grad_clip": args.clip,
            "precision": "fp32 weights and scan, TF32 matmuls",
            "scan": scan_name, "final_train_loss_nats": round(final_loss, 5),
            "final_train_bpb": round(final_loss / LN2, 5), "device": device_name,
        },
        "eval": {
            "method": "fp16 model.safetensors loaded back and run in fp32; bits per byte = mean "
                      "next-byte cross-entropy (nats) / ln 2; each text starts from a zero state "
                      "with <|endoftext|> (id 256) before its first byte",
            "heldout_bpb": round(heldout_bpb, 5), "heldout_bytes": heldout_n,
            "test_text": {"path": repo_relative(args.test_text),
                          "bytes": len(test_bytes),
                          "sha256": hashlib.sha256(test_bytes).hexdigest(),
                          "bpb": round(test_bpb, 5),
                          "prefix_bpb": prefix_bpb},
            "parallel_vs_sequential_max_abs_logit_diff": path_diff,
        },
        "samples": samples,
        "greedy": {"prompt": GREEDY_PROMPT, "max_new_bytes": GREEDY_NEW_BYTES,
                   "continuation": greedy},
        "corpus": {
            "train_documents": len(train_docs), "train_tokens": n_train,
            "heldout_documents": len(heldout_docs),
            "files": corpus_meta.get("files", {}),
            "sources": [{k: s.get(k) for k in ("id", "title", "package", "version", "license",
                                               "train_bytes", "heldout_bytes")}
                        for s in corpus_meta.get("sources", [])],
        },
        "versions": {
            "python": platform.python_version(), "torch": torch.__version__,
            "cuda": torch.version.cuda, "transformers": transformers.__version__,
            "tokenizers": tokenizers_version, "safetensors": safetensors.__version__,
        },
        "checks": {"tokenizer_json": bool(tokenizers_version),
                   "auto_tokenizer": auto_tok_ok},
        "retrain_command": retrain_command(args, step),
        "total_minutes": None,
    }
    training["total_minutes"] = round((time.time() - t_start) / 60.0, 3)
    write_json(os.path.join(args.out, "training.json"), training)
    with open(os.path.join(args.out, "README.md"), "w", encoding="utf-8", newline="\n") as f:
        f.write(model_card(training, args))
    files = sorted(os.listdir(args.out))
    log(f"wrote {args.out}: {', '.join(files)} ({training['total_minutes']:.1f} min in all)")
    if len(files) > 8:
        log(f"note: {len(files)} files in {args.out}; only 8 come back from a GPU run")


def model_card(t, args):
    m, tr, ev = t["model"], t["training"], t["eval"]
    src_rows = "\n".join(
        f"| {s['title']} | `{s['package']}` {s['version']} | {s['license']} | "
        f"{(s['train_bytes'] or 0) / 1e6:.2f} MB |" for s in t["corpus"]["sources"])
    if not src_rows:
        src_rows = "| (corpus.json was missing; see the corpus folder's SOURCES.md) | | | |"

    def fence(text):
        text = "".join(c if c in "\n\t" or (ord(c) >= 32 and ord(c) != 127) else "\ufffd"
                       for c in text)
        return "```text\n" + text.replace("```", "'''") + "\n```"

    sample_md = "\n\n".join(
        f"**{s['prompt']!r}** (temperature {s['temperature']}, top-k {s['top_k']}, seed "
        f"{s['seed']}, up to {s['max_new_bytes']} bytes):\n\n" +
        fence(s["prompt"] + s["continuation"]) for s in t["samples"])
    g = t["greedy"]
    return f"""# mamba-serve default model

A small byte-level [Mamba-1](https://arxiv.org/abs/2312.00752) language model that mamba-serve
serves when it is started without `--model`, so that the first command of the README shows real
text. It was trained by this project, from scratch, on public-domain and freely licensed English
text that Debian packages ship. It writes English that reads like its sources (Bible
translations, a Victorian commentary on the Psalms, the Jargon File, The Devil's Dictionary,
fortune cookies); it knows no facts and follows no instructions.

| | |
|---|---|
| architecture | `MambaForCausalLM` (Mamba-1), Hugging Face layout |
| size | {m['num_hidden_layers']} layers x {m['hidden_size']}, d_state {m['state_size']}, expand {m['expand']} (d_inner {m['intermediate_size']}), conv {m['conv_kernel']}, dt rank {m['time_step_rank']} |
| parameters | {m['parameters'] / 1e6:.2f} M (embedding tied to the output head) |
| vocabulary | 257: the 256 byte values, then `<|endoftext|>` = 256 (also bos, eos and pad) |
| weights | `model.safetensors`, float16, {m['safetensors_bytes'] / 1e6:.2f} MB |
| held-out bits per byte | **{ev['heldout_bpb']:.3f}** over {ev['heldout_bytes']} bytes of held-out documents |
| test text bits per byte | **{ev['test_text']['bpb']:.3f}** over `{ev['test_text']['path']}` ({ev['test_text']['bytes']} bytes) |

Bits per byte are computed with the fp16 weights loaded back and run in fp32, each text starting
from a zero state after `<|endoftext|>`. `tests/unit/default_model` repeats the test-text figure
(for its first 8 KB by default) with mamba-serve's CPU backend.

## Tokenizer

`tokenizer.json` is a Hugging Face `tokenizers` file whose ids are the UTF-8 bytes of the text: a
BPE model without merges over the byte-level alphabet, with `<|endoftext|>` as an added special
token. "café ☕" encodes to its 9 UTF-8 bytes.

## Data and licences

| source | Debian package | licence | training text |
|---|---|---|---|
{src_rows}

Documents are held out whole (Bible chapters in both translations, commentary sections, dictionary
entries, fortunes). `tools/build_default_corpus.sh` records each source, its package version and
licence in the corpus folder's `SOURCES.md`.

## Training

- {tr['steps']} steps of {tr['batch_size']} x {tr['seq_len']} bytes: {tr['tokens_seen'] / 1e6:.1f} M bytes, {tr['epochs']:.1f} passes over the training text, in {tr['minutes']:.1f} minutes on one {tr['device']}.
- {tr['optimizer']}; learning rate {tr['lr']:g}, {tr['warmup_steps']} warm-up steps, cosine decay to {tr['min_lr']:g}; weight decay {tr['weight_decay']}; gradient clipping {tr['grad_clip']}; seed {tr['seed']}.
- {tr['precision']}; transformers' pure-PyTorch path (`use_mambapy=True`) with the scan: {tr['scan']}.
- Final training loss {tr['final_train_loss_nats']:.4f} nats ({tr['final_train_bpb']:.3f} bits) per byte.
- torch {t['versions']['torch']}, transformers {t['versions']['transformers']}, CUDA {t['versions']['cuda']}. Every figure is in `training.json`.

To retrain (one GPU; Debian for the corpus):

```sh
tools/build_default_corpus.sh .gpufix/default_corpus
{t['retrain_command']}
```

(`--minutes {args.minutes:g}` instead of `--steps` fills a time budget on another GPU.)

## Samples

Drawn by the training script with PyTorch after `<|endoftext|>` and the prompt (the prompt is
shown first):

{sample_md}

Greedy, {g['max_new_bytes']} bytes at most:

{fence(g['prompt'] + g['continuation'])}
"""


if __name__ == "__main__":
    main()
