#!/usr/bin/env python3
"""Makes the golden Mamba checkpoints under tests/data/golden/ with HF transformers.

Each case is a small MambaForCausalLM, Mamba2ForCausalLM or FalconMambaForCausalLM built from its
transformers config class, initialized by transformers, then perturbed (every parameter: norms, D,
A_log, biases, conv, matrices) so that loading any tensor wrongly changes the logits, cast to the
case's dtype and written with save_pretrained (safetensors); one Mamba-2 case is rewritten in the
original state-spaces format (mamba_ssm's config.json and tensor names). The expected outputs are
computed in float64 from the *saved* files by an independent reference written here from each
family's equations (transformers' own forward casts the residual, the norms and A to float32 even
in a double model), and cross-checked against transformers' forward in float64 before anything is
written: the script fails instead of writing fixtures the two disagree on.

Mamba-2's gated RMSNorm is computed per group of d_ssm / n_groups channels, as mamba_ssm's
RMSNormGated does (the official kernels, and the checkpoints' training). transformers 5 normalizes
over all of d_inner, which agrees only when n_groups = 1; for n_groups > 1 the cross-check runs
transformers with its norms replaced by the grouped one, so that everything else is still checked
against it.

  python3 tools/make_golden_checkpoints.py               # make the fixtures (needs torch, transformers)
  python3 tools/make_golden_checkpoints.py --self-test   # check this script's own logic (no torch)
  python3 tools/make_golden_checkpoints.py --reference DIR --ids 1,2,3
                                                          # float64 logits for any checkpoint folder

Output per case, tests/data/golden/<case>/: config.json, model.safetensors (or shards and
model.safetensors.index.json), expected.json:
  {"case", "dtype": "float32|float16|bfloat16", "config": {...as transformers saw it...},
   "prompts": [{"ids": [...], "last_logits": [vocab floats], "greedy": [24 ids],
                "min_greedy_margin": float}], ...}
plus tests/data/golden/README.md. Runs on CPU; about a minute.
"""

import argparse
import json
import math
import operator
import os
import random
import shutil
import struct
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT_DIR = os.path.join(REPO, "tests", "data", "golden")
GREEDY_TOKENS = 24
PROMPT_LENGTHS = (1, 10, 70)
# A greedy step whose top two logits are closer than this is ambiguous for an fp32 engine; such
# prompts are redrawn.
MIN_MARGIN = 1e-3
# Max |reference - transformers| / max |logit| allowed before the script refuses to write.
HF_TOLERANCE = 1e-4

CASES = [
    # (a) f32, tied, state_size 16, time_step_rank auto, no bias; sharded to cover the index file.
    dict(name="a_f32_tied", family="mamba", dtype="float32", seed=11, vocab_size=512,
         hidden_size=64, num_hidden_layers=2, state_size=16, expand=2, conv_kernel=4,
         time_step_rank="auto", use_bias=False, use_conv_bias=True, tie_word_embeddings=True,
         max_shard_size="150KB"),
    # (b) f16, untied (lm_head.weight stored), state_size 8, explicit time_step_rank, biases.
    dict(name="b_f16_untied_bias", family="mamba", dtype="float16", seed=22, vocab_size=384,
         hidden_size=96, num_hidden_layers=3, state_size=8, expand=2, conv_kernel=4,
         time_step_rank=5, use_bias=True, use_conv_bias=True, tie_word_embeddings=False),
    # (c) bf16, tied, state_size 4, intermediate_size given (not expand * hidden), conv_kernel 3,
    #     no conv bias.
    dict(name="c_bf16_inner_k3", family="mamba", dtype="bfloat16", seed=33, vocab_size=320,
         hidden_size=128, num_hidden_layers=2, state_size=4, expand=2, intermediate_size=192,
         conv_kernel=3, time_step_rank="auto", use_bias=False, use_conv_bias=False,
         tie_word_embeddings=True),
    # (d) Mamba-2, f32, tied, one group, chunk_size 16 (every prompt but the shortest crosses a
    #     chunk), a 600-token prompt (past the CPU backend's 512-token pass).
    dict(name="d_mamba2_f32_tied", family="mamba2", dtype="float32", seed=44, vocab_size=320,
         hidden_size=64, num_hidden_layers=2, state_size=16, expand=2, head_dim=16,
         n_groups=1, conv_kernel=4, chunk_size=16, use_bias=False, use_conv_bias=True,
         tie_word_embeddings=True, long_prompt=600),
    # (e) Mamba-2, bf16, untied, two groups (the grouped gated norm), biases, no conv bias,
    #     conv_kernel 3, a time_step_limit, layer_norm_epsilon 1e-6 (also the gated norm's).
    dict(name="e_mamba2_bf16_groups", family="mamba2", dtype="bfloat16", seed=55,
         vocab_size=288, hidden_size=64, num_hidden_layers=2, state_size=8, expand=2,
         head_dim=16, n_groups=2, conv_kernel=3, chunk_size=32, use_bias=True,
         use_conv_bias=False, tie_word_embeddings=False, time_step_limit=(0.0, 0.5),
         layer_norm_epsilon=1e-6),
    # (f) Mamba-2 in the original state-spaces format (mamba_ssm's config.json, ssm_cfg.layer
    #     "Mamba2", backbone.embedding.weight), f16, four groups of one head each.
    dict(name="f_mamba2_f16_state_spaces", family="mamba2", dtype="float16", seed=66,
         vocab_size=300, hidden_size=64, num_hidden_layers=2, state_size=16, expand=2,
         head_dim=32, n_groups=4, conv_kernel=4, chunk_size=256, use_bias=False,
         use_conv_bias=True, tie_word_embeddings=True, state_spaces=True),
    # (g) FalconMamba, f32, untied, an expand (16) that disagrees with intermediate_size (128),
    #     as tiiuae's configs have; mixer_rms_eps 1e-3 so that the epsilon matters.
    dict(name="g_falcon_f32", family="falcon_mamba", dtype="float32", seed=77, vocab_size=320,
         hidden_size=64, num_hidden_layers=2, state_size=16, expand=16, intermediate_size=128,
         conv_kernel=4, time_step_rank=8, use_bias=False, use_conv_bias=True,
         tie_word_embeddings=False, mixer_rms_eps=1e-3, long_prompt=600),
    # (h) FalconMamba, bf16, tied, biases, state_size 8.
    dict(name="h_falcon_bf16_bias", family="falcon_mamba", dtype="bfloat16", seed=88,
         vocab_size=256, hidden_size=96, num_hidden_layers=2, state_size=8, expand=2,
         conv_kernel=4, time_step_rank="auto", use_bias=True, use_conv_bias=True,
         tie_word_embeddings=True, mixer_rms_eps=1e-6),
]
# Keys of a case that are not config fields.
CASE_KEYS = ("name", "family", "dtype", "seed", "max_shard_size", "long_prompt", "state_spaces")


# ---- safetensors, in pure Python ----------------------------------------------------------------

def _decode(dtype, raw):
    n = len(raw) // (4 if dtype == "F32" else 2)
    if dtype == "F32":
        return list(struct.unpack("<%df" % n, raw))
    if dtype == "F16":
        return list(struct.unpack("<%de" % n, raw))
    if dtype == "BF16":
        halves = struct.unpack("<%dH" % n, raw)
        return list(struct.unpack("<%df" % n, struct.pack("<%dI" % n, *[h << 16 for h in halves])))
    raise ValueError("unsupported dtype %r" % dtype)


def _encode(dtype, values):
    if dtype == "F32":
        return struct.pack("<%df" % len(values), *values)
    if dtype == "F16":
        return struct.pack("<%de" % len(values), *values)
    if dtype == "BF16":
        bits = struct.unpack("<%dI" % len(values), struct.pack("<%df" % len(values), *values))
        return struct.pack("<%dH" % len(values),
                           *[((b + 0x7FFF + ((b >> 16) & 1)) >> 16) & 0xFFFF for b in bits])
    raise ValueError("unsupported dtype %r" % dtype)


def read_safetensors(path):
    """{name: (dtype, shape, [floats])} of one file, with the same checks as the C++ reader."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 8:
        raise ValueError("%s: too short" % path)
    (n,) = struct.unpack("<Q", data[:8])
    if n > len(data) - 8:
        raise ValueError("%s: header length past the end" % path)
    header = json.loads(data[8:8 + n])
    body = data[8 + n:]
    out, covered = {}, []
    for name, e in header.items():
        if name == "__metadata__":
            continue
        begin, end = e["data_offsets"]
        numel = 1
        for d in e["shape"]:
            numel *= d
        size = 4 if e["dtype"] == "F32" else 2
        if end - begin != numel * size or end > len(body):
            raise ValueError("%s: tensor %s: bad data_offsets" % (path, name))
        out[name] = (e["dtype"], list(e["shape"]), _decode(e["dtype"], body[begin:end]))
        covered.append((begin, end))
    pos = 0
    for begin, end in sorted(covered):
        if begin != pos:
            raise ValueError("%s: data section has holes or overlaps" % path)
        pos = end
    if pos != len(body):
        raise ValueError("%s: trailing bytes" % path)
    return out


def write_safetensors(path, tensors):
    """tensors: [(name, dtype, shape, [floats])]."""
    header, blobs, offset = {"__metadata__": {"format": "pt"}}, [], 0
    for name, dtype, shape, values in tensors:
        blob = _encode(dtype, values)
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - (8 + len(text)) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def read_checkpoint_tensors(folder):
    """All tensors of a checkpoint folder (single file or sharded), as read_safetensors."""
    single = os.path.join(folder, "model.safetensors")
    if os.path.exists(single):
        return read_safetensors(single)
    with open(os.path.join(folder, "model.safetensors.index.json")) as f:
        weight_map = json.load(f)["weight_map"]
    tensors = {}
    for shard in sorted(set(weight_map.values())):
        for name, t in read_safetensors(os.path.join(folder, shard)).items():
            if name in tensors:
                raise ValueError("tensor %s stored twice" % name)
            tensors[name] = t
    missing = [n for n, s in weight_map.items() if n not in tensors]
    if missing:
        raise ValueError("index lists tensors no shard holds: %s" % missing[:3])
    return tensors


# ---- the float64 reference ----------------------------------------------------------------------

def config_values(cfg):
    """The fields the engine reads, from a config.json dict (HF or state-spaces format), with the
    defaults and derivations of the family's transformers or mamba_ssm config class."""
    if "d_model" in cfg and "hidden_size" not in cfg:
        return _state_spaces_values(cfg)
    family = cfg.get("model_type", "mamba")
    mamba2 = family == "mamba2"
    hidden = cfg.get("hidden_size", 4096 if mamba2 else 768)
    expand = cfg.get("expand", 2)
    rank = cfg.get("time_step_rank", "auto")
    eps = cfg.get("layer_norm_epsilon", 1e-5)
    c = dict(
        family=family, vocab_size=cfg.get("vocab_size", 32768 if mamba2 else 50280),
        hidden_size=hidden, num_hidden_layers=cfg.get("num_hidden_layers", 64 if mamba2 else 32),
        state_size=cfg.get("state_size", 128 if mamba2 else 16), expand=expand,
        intermediate_size=(int(expand * hidden) if mamba2
                           else cfg.get("intermediate_size", int(expand * hidden))),
        conv_kernel=cfg.get("conv_kernel", 4),
        time_step_rank=math.ceil(hidden / 16) if rank in ("auto", None) else int(rank),
        use_bias=cfg.get("use_bias", False), use_conv_bias=cfg.get("use_conv_bias", True),
        tie_word_embeddings=cfg.get("tie_word_embeddings", not mamba2),
        layer_norm_epsilon=eps, residual_in_fp32=cfg.get("residual_in_fp32", True))
    if family == "falcon_mamba":
        c["mixer_rms_eps"] = cfg.get("mixer_rms_eps", 1e-6)
    if mamba2:
        limit = cfg.get("time_step_limit", [0.0, float("inf")])
        c.update(num_heads=cfg.get("num_heads", 128), head_dim=cfg.get("head_dim", 64),
                 n_groups=cfg.get("n_groups", 8), chunk_size=cfg.get("chunk_size", 256),
                 time_step_limit=[_number(limit[0]), _number(limit[1])],
                 gated_norm_epsilon=eps, d_ssm=None, d_has_hdim=False,
                 gated_norm=cfg.get("rms_norm", True))
        c["d_ssm"] = c["num_heads"] * c["head_dim"]
    return c


def _number(v):
    """A config number, including transformers 5's {"__float__": "Infinity"}."""
    if isinstance(v, dict):
        return float(v["__float__"].replace("Infinity", "inf"))
    return float(v)


def _state_spaces_values(cfg):
    ssm = cfg.get("ssm_cfg") or {}
    if ssm.get("layer", "Mamba1") != "Mamba2":
        raise ValueError("this script makes state-spaces configs for Mamba-2 only")
    hidden = cfg.get("d_model", 2560)
    expand = ssm.get("expand", 2)
    pad = cfg.get("pad_vocab_size_multiple", 8)
    vocab = -(-cfg.get("vocab_size", 50277) // pad) * pad
    d_inner = expand * hidden
    d_ssm = ssm.get("d_ssm") or d_inner
    head_dim = ssm.get("headdim", 64)
    limit = ssm.get("dt_limit", [0.0, float("inf")])
    return dict(
        family="mamba2", vocab_size=vocab, hidden_size=hidden,
        num_hidden_layers=cfg.get("n_layer", 64), state_size=ssm.get("d_state", 128),
        expand=expand, intermediate_size=d_inner, conv_kernel=ssm.get("d_conv", 4),
        time_step_rank=math.ceil(hidden / 16), use_bias=ssm.get("bias", False),
        use_conv_bias=ssm.get("conv_bias", True),
        tie_word_embeddings=cfg.get("tie_embeddings", True),
        layer_norm_epsilon=cfg.get("norm_epsilon", 1e-5),
        residual_in_fp32=cfg.get("residual_in_fp32", True), num_heads=d_ssm // head_dim,
        head_dim=head_dim, n_groups=ssm.get("ngroups", 1), chunk_size=ssm.get("chunk_size", 256),
        time_step_limit=[_number(limit[0]), _number(limit[1])], gated_norm_epsilon=1e-5,
        d_ssm=d_ssm, d_has_hdim=ssm.get("D_has_hdim", False), gated_norm=ssm.get("rmsnorm", True),
        state_spaces=True)


def expected_tensor_shapes(c):
    """Name -> shape of every tensor a checkpoint of config values `c` holds."""
    D, E, N = c["hidden_size"], c["intermediate_size"], c["state_size"]
    R, K, V = c["time_step_rank"], c["conv_kernel"], c["vocab_size"]
    embedding = ("backbone.embedding.weight" if c.get("state_spaces")
                 else "backbone.embeddings.weight")
    shapes = {embedding: [V, D], "backbone.norm_f.weight": [D]}
    for i in range(c["num_hidden_layers"]):
        p = "backbone.layers.%d." % i
        m = p + "mixer."
        shapes[p + "norm.weight"] = [D]
        shapes[m + "out_proj.weight"] = [D, E]
        if c["family"] == "mamba2":
            H, G, S = c["num_heads"], c["n_groups"], c["d_ssm"]
            conv = S + 2 * G * N
            width = 2 * E + 2 * G * N + H
            shapes.update({
                m + "in_proj.weight": [width, D], m + "conv1d.weight": [conv, 1, K],
                m + "dt_bias": [H], m + "A_log": [H], m + "D": [S if c["d_has_hdim"] else H]})
            if c["gated_norm"]:
                shapes[m + "norm.weight"] = [S]
            if c["use_bias"]:
                shapes[m + "in_proj.bias"] = [width]
            if c["use_conv_bias"]:
                shapes[m + "conv1d.bias"] = [conv]
        else:
            shapes.update({
                m + "in_proj.weight": [2 * E, D], m + "conv1d.weight": [E, 1, K],
                m + "x_proj.weight": [R + 2 * N, E], m + "dt_proj.weight": [E, R],
                m + "dt_proj.bias": [E], m + "A_log": [E, N], m + "D": [E]})
            if c["use_bias"]:
                shapes[m + "in_proj.bias"] = [2 * E]
            if c["use_conv_bias"]:
                shapes[m + "conv1d.bias"] = [E]
        if c["use_bias"]:
            shapes[m + "out_proj.bias"] = [D]
    if not c["tie_word_embeddings"]:
        shapes["lm_head.weight"] = [V, D]
    return shapes


def _rows(values, n_rows):
    n_cols = len(values) // n_rows
    return [values[r * n_cols:(r + 1) * n_cols] for r in range(n_rows)]


def _matvec(rows, x):
    return [sum(map(operator.mul, row, x)) for row in rows]


def _silu(v):
    return v / (1.0 + math.exp(-v)) if v >= 0 else v * math.exp(v) / (1.0 + math.exp(v))


def _softplus(v):  # torch's softplus: beta 1, threshold 20
    return v if v > 20 else math.log1p(math.exp(v))


def _rms_norm(x, w, eps):
    scale = 1.0 / math.sqrt(sum(v * v for v in x) / len(x) + eps)
    return [v * scale * g for v, g in zip(x, w)]


def _normalize(x, eps):
    """x / sqrt(mean(x^2) + eps): FalconMamba's weightless RMSNorm."""
    scale = 1.0 / math.sqrt(sum(v * v for v in x) / len(x) + eps)
    return [v * scale for v in x]


class Reference:
    """Every family in float64, one token at a time, from a checkpoint's tensors: Mamba-1 and
    FalconMamba from DESIGN.md's equations (FalconMamba: RMSNorm of dt_low, B and C without a
    weight after x_proj), Mamba-2 from mamba_ssm's Mamba2.step with the gated norm per group."""

    def __init__(self, c, tensors):
        self.c = c
        shapes = expected_tensor_shapes(c)
        tensors = dict(tensors)
        embedding_name = ("backbone.embedding.weight" if c.get("state_spaces")
                          else "backbone.embeddings.weight")
        head = tensors.get("lm_head.weight")
        if c["tie_word_embeddings"] and head is not None:
            if head != tensors.get(embedding_name):
                raise ValueError("tied config but a different lm_head.weight is stored")
            del tensors["lm_head.weight"]  # a stored copy of the tied embedding
        names = set(tensors)
        if set(shapes) != names:
            raise ValueError("checkpoint tensors differ from what the config implies: missing %s, "
                             "unexpected %s" % (sorted(set(shapes) - names)[:4],
                                                sorted(names - set(shapes))[:4]))
        for name, shape in shapes.items():
            if tensors[name][1] != shape:
                raise ValueError("%s has shape %s, expected %s" % (name, tensors[name][1], shape))
        t = {name: v[2] for name, v in tensors.items()}
        self.embedding = _rows(t[embedding_name], c["vocab_size"])
        self.lm_head = (self.embedding if c["tie_word_embeddings"]
                        else _rows(t["lm_head.weight"], c["vocab_size"]))
        self.norm_f = t["backbone.norm_f.weight"]
        self.layers = []
        for i in range(c["num_hidden_layers"]):
            m = "backbone.layers.%d.mixer." % i
            L = dict(norm=t["backbone.layers.%d.norm.weight" % i],
                     in_proj=_rows(t[m + "in_proj.weight"], shapes[m + "in_proj.weight"][0]),
                     in_bias=t.get(m + "in_proj.bias"),
                     out_proj=_rows(t[m + "out_proj.weight"], c["hidden_size"]),
                     out_bias=t.get(m + "out_proj.bias"))
            conv_channels = shapes[m + "conv1d.weight"][0]
            L["conv"] = _rows(t[m + "conv1d.weight"], conv_channels)
            L["conv_bias"] = t.get(m + "conv1d.bias") or [0.0] * conv_channels
            if c["family"] == "mamba2":
                L.update(dt_bias=t[m + "dt_bias"], A=[-math.exp(a) for a in t[m + "A_log"]],
                         D=t[m + "D"], gated_norm=t.get(m + "norm.weight"))
            else:
                E, N = c["intermediate_size"], c["state_size"]
                L.update(x_proj=_rows(t[m + "x_proj.weight"], c["time_step_rank"] + 2 * N),
                         dt_proj=_rows(t[m + "dt_proj.weight"], E),
                         dt_bias=t[m + "dt_proj.bias"],
                         A=[[-math.exp(a) for a in row] for row in _rows(t[m + "A_log"], E)],
                         D=t[m + "D"])
            self.layers.append(L)
        self.K = c["conv_kernel"]

    def new_state(self):
        c = self.c
        N = c["state_size"]
        if c["family"] == "mamba2":
            conv, rows = c["d_ssm"] + 2 * c["n_groups"] * N, c["d_ssm"]
        else:
            conv = rows = c["intermediate_size"]
        return [dict(conv=[[0.0] * (self.K - 1) for _ in range(conv)],
                     ssm=[[0.0] * N for _ in range(rows)]) for _ in self.layers]

    def _conv(self, L, S, xs):
        u = []
        for ch, x in enumerate(xs):
            window = S["conv"][ch] + [x]  # oldest input first, the current one last
            u.append(_silu(sum(map(operator.mul, L["conv"][ch], window)) + L["conv_bias"][ch]))
            S["conv"][ch] = window[1:]
        return u

    def _mamba1_mixer(self, L, S, x):
        c = self.c
        E, N, R = c["intermediate_size"], c["state_size"], c["time_step_rank"]
        xz = _matvec(L["in_proj"], x)
        if L["in_bias"] is not None:
            xz = [a + b for a, b in zip(xz, L["in_bias"])]
        u = self._conv(L, S, xz[:E])
        z = xz[E:]
        dbl = _matvec(L["x_proj"], u)
        dt_low, B, C = dbl[:R], dbl[R:R + N], dbl[R + N:]
        if c["family"] == "falcon_mamba":
            eps = c["mixer_rms_eps"]
            dt_low, B, C = _normalize(dt_low, eps), _normalize(B, eps), _normalize(C, eps)
        dt = [_softplus(v + b) for v, b in zip(_matvec(L["dt_proj"], dt_low), L["dt_bias"])]
        y = []
        for ch in range(E):
            h, a, d, uc = S["ssm"][ch], L["A"][ch], dt[ch], u[ch]
            acc = 0.0
            for n in range(N):
                h[n] = math.exp(d * a[n]) * h[n] + d * B[n] * uc
                acc += h[n] * C[n]
            y.append((acc + L["D"][ch] * uc) * _silu(z[ch]))
        return y

    def _mamba2_mixer(self, L, S, x):
        c = self.c
        E, N, H, P, G, Sd = (c["intermediate_size"], c["state_size"], c["num_heads"],
                             c["head_dim"], c["n_groups"], c["d_ssm"])
        mlp = E - Sd
        p = _matvec(L["in_proj"], x)
        if L["in_bias"] is not None:
            p = [a + b for a, b in zip(p, L["in_bias"])]
        z0, x0, z = p[:mlp], p[mlp:2 * mlp], p[2 * mlp:2 * mlp + Sd]
        xbc = self._conv(L, S, p[2 * mlp + Sd:2 * mlp + Sd + Sd + 2 * G * N])
        dt_in = p[2 * mlp + 2 * Sd + 2 * G * N:]
        xs, B, C = xbc[:Sd], xbc[Sd:Sd + G * N], xbc[Sd + G * N:]
        lo, hi = c["time_step_limit"]
        y = [0.0] * Sd
        for h in range(H):
            dt = min(max(_softplus(dt_in[h] + L["dt_bias"][h]), lo), hi)
            decay = math.exp(dt * L["A"][h])
            g = h // (H // G)
            Bg, Cg = B[g * N:(g + 1) * N], C[g * N:(g + 1) * N]
            for q in range(P):
                ch = h * P + q
                st = S["ssm"][ch]
                acc = 0.0
                for n in range(N):
                    st[n] = decay * st[n] + dt * Bg[n] * xs[ch]
                    acc += st[n] * Cg[n]
                y[ch] = acc + (L["D"][ch] if c["d_has_hdim"] else L["D"][h]) * xs[ch]
        gated = [y[i] * _silu(z[i]) for i in range(Sd)]
        if L["gated_norm"] is not None:
            gs = Sd // G
            for g in range(G):
                part = _rms_norm(gated[g * gs:(g + 1) * gs], L["gated_norm"][g * gs:(g + 1) * gs],
                                 c["gated_norm_epsilon"])
                gated[g * gs:(g + 1) * gs] = part
        return [_silu(a) * b for a, b in zip(z0, x0)] + gated

    def step(self, token, state, want_logits=True):
        c = self.c
        eps = c["layer_norm_epsilon"]
        hidden = list(self.embedding[token])
        for L, S in zip(self.layers, state):
            x = _rms_norm(hidden, L["norm"], eps)
            y = (self._mamba2_mixer(L, S, x) if c["family"] == "mamba2"
                 else self._mamba1_mixer(L, S, x))
            out = _matvec(L["out_proj"], y)
            if L["out_bias"] is not None:
                out = [a + b for a, b in zip(out, L["out_bias"])]
            hidden = [a + b for a, b in zip(hidden, out)]
        if not want_logits:
            return None
        return _matvec(self.lm_head, _rms_norm(hidden, self.norm_f, eps))

    def run(self, ids, greedy_tokens):
        """(last-position logits of `ids`, greedy continuation, smallest top-2 gap on the way)."""
        state = self.new_state()
        for tok in ids[:-1]:
            self.step(tok, state, want_logits=False)
        logits = self.step(ids[-1], state)
        last, greedy, margin = logits, [], float("inf")
        for _ in range(greedy_tokens):
            best = max(range(len(logits)), key=logits.__getitem__)
            second = max(v for i, v in enumerate(logits) if i != best)
            margin = min(margin, logits[best] - second)
            greedy.append(best)
            logits = self.step(best, state)
        return last, greedy, margin


def reference_for_folder(folder):
    with open(os.path.join(folder, "config.json")) as f:
        c = config_values(json.load(f))
    return Reference(c, read_checkpoint_tensors(folder))


# ---- making the cases with transformers ---------------------------------------------------------

def perturb(model, seed, torch):
    """Moves every parameter away from its HF initialization (ones, zeros, log(1..N), ...)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():  # tied parameters appear once
            noise = torch.randn(p.shape, generator=gen, dtype=torch.float32)
            if name.endswith("norm.weight") or name.endswith("norm_f.weight"):
                p.copy_(1.0 + 0.2 * noise)
            elif name.endswith(".D"):
                p.copy_(1.0 + 0.5 * noise)
            elif name.endswith("A_log"):
                p.add_(0.3 * noise)
            elif name.endswith("dt_proj.bias") or name.endswith("dt_bias"):
                p.add_(0.5 * noise)
            elif "conv1d" in name:
                p.add_(0.1 * noise)
            elif name.endswith(".bias"):
                p.copy_(0.05 * noise)
            else:
                p.add_(0.02 * noise)


# The config fields each family's transformers config takes from a case.
HF_KEYS = {
    "mamba": ("vocab_size", "hidden_size", "num_hidden_layers", "state_size", "expand",
              "conv_kernel", "time_step_rank", "use_bias", "use_conv_bias", "tie_word_embeddings"),
    "falcon_mamba": ("vocab_size", "hidden_size", "num_hidden_layers", "state_size", "expand",
                     "conv_kernel", "time_step_rank", "use_bias", "use_conv_bias",
                     "tie_word_embeddings", "mixer_rms_eps"),
    "mamba2": ("vocab_size", "hidden_size", "num_hidden_layers", "state_size", "expand",
               "conv_kernel", "use_bias", "use_conv_bias", "tie_word_embeddings", "head_dim",
               "n_groups", "chunk_size"),
}
HF_CLASSES = {"mamba": ("MambaConfig", "MambaForCausalLM"),
              "falcon_mamba": ("FalconMambaConfig", "FalconMambaForCausalLM"),
              "mamba2": ("Mamba2Config", "Mamba2ForCausalLM")}


def hf_config_kwargs(case):
    kwargs = {k: case[k] for k in HF_KEYS[case["family"]]}
    kwargs.update(pad_token_id=0, bos_token_id=0, eos_token_id=0)
    if "layer_norm_epsilon" in case:
        kwargs["layer_norm_epsilon"] = case["layer_norm_epsilon"]
    if case["family"] == "mamba2":
        kwargs["num_heads"] = case["expand"] * case["hidden_size"] // case["head_dim"]
        kwargs["time_step_limit"] = tuple(case.get("time_step_limit", (0.0, float("inf"))))
        kwargs["rms_norm"] = True
    if case["family"] == "falcon_mamba" and "intermediate_size" in case:
        kwargs["intermediate_size"] = case["intermediate_size"]
    return kwargs


def state_spaces_config(case):
    """mamba_ssm's config.json for a Mamba-2 case (vocabulary 2 below the tensors' rows, padded
    back up by pad_vocab_size_multiple)."""
    ssm = dict(layer="Mamba2", d_state=case["state_size"], d_conv=case["conv_kernel"],
               expand=case["expand"], headdim=case["head_dim"], ngroups=case["n_groups"],
               chunk_size=case["chunk_size"])
    if case["use_bias"]:
        ssm["bias"] = True
    if not case["use_conv_bias"]:
        ssm["conv_bias"] = False
    return dict(d_model=case["hidden_size"], d_intermediate=0, n_layer=case["num_hidden_layers"],
                vocab_size=case["vocab_size"] - 2, ssm_cfg=ssm, attn_layer_idx=[], attn_cfg={},
                rms_norm=True, residual_in_fp32=True, fused_add_norm=True,
                pad_vocab_size_multiple=4, tie_embeddings=case["tie_word_embeddings"])


def build_case(case, out_dir, torch, transformers):
    dtype = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[
        case["dtype"]]
    family = case["family"]
    config_class, model_class = (getattr(transformers, n) for n in HF_CLASSES[family])
    config = config_class(**hf_config_kwargs(case))
    if family == "mamba" and "intermediate_size" in case:
        config.intermediate_size = case["intermediate_size"]  # stored in config.json as given
    torch.manual_seed(case["seed"])
    model = model_class(config).eval()
    mixer = model.backbone.layers[0].mixer
    if family != "mamba2":
        E = mixer.in_proj.weight.shape[0] // 2
        if E != case.get("intermediate_size", case["expand"] * case["hidden_size"]):
            raise RuntimeError("%s: transformers built intermediate size %d, not %s"
                               % (case["name"], E, case.get("intermediate_size")))
    tied = model.lm_head.weight.data_ptr() == model.backbone.embeddings.weight.data_ptr()
    if tied != case["tie_word_embeddings"]:
        raise RuntimeError("%s: lm_head tied=%s, wanted %s" % (case["name"], tied,
                                                                case["tie_word_embeddings"]))
    perturb(model, case["seed"] + 1000, torch)
    model = model.to(dtype)
    save_kwargs = {}
    if case.get("max_shard_size"):
        save_kwargs["max_shard_size"] = case["max_shard_size"]
    try:
        model.save_pretrained(out_dir, safe_serialization=True, **save_kwargs)
    except TypeError:  # transformers versions where safetensors is the only format
        model.save_pretrained(out_dir, **save_kwargs)
    for extra in ("generation_config.json",):
        if os.path.exists(os.path.join(out_dir, extra)):
            os.remove(os.path.join(out_dir, extra))

    # config.json must say everything explicitly: transformers' defaults differ between versions.
    path = os.path.join(out_dir, "config.json")
    with open(path) as f:
        saved = json.load(f)
    added = []
    explicit = HF_KEYS[family] + ("layer_norm_epsilon", "residual_in_fp32")
    if family == "mamba2":
        explicit += ("num_heads", "time_step_limit", "rms_norm")
    else:
        explicit += ("intermediate_size",)
    for k in explicit:
        if k not in saved:
            value = getattr(config, k)
            saved[k] = list(value) if isinstance(value, tuple) else value
            added.append(k)
    if saved.get("time_step_rank") == "auto":
        saved["time_step_rank"] = config.time_step_rank
        added.append("time_step_rank")
    if added:
        with open(path, "w") as f:
            # Python writes inf as a bare Infinity, as transformers 4 did; the engine reads both.
            json.dump(saved, f, indent=2, sort_keys=True)
            f.write("\n")
    return config, added


def to_state_spaces(case, hf_folder, out_dir):
    """Rewrites an HF Mamba-2 checkpoint in mamba_ssm's format: its config.json and the
    embedding's original name."""
    tensors = read_checkpoint_tensors(hf_folder)
    os.makedirs(out_dir, exist_ok=True)
    rows = []
    for name in sorted(tensors):
        dtype, shape, values = tensors[name]
        if name == "lm_head.weight" and case["tie_word_embeddings"]:
            continue
        if name == "backbone.embeddings.weight":
            name = "backbone.embedding.weight"
        rows.append((name, dtype, shape, values))
    write_safetensors(os.path.join(out_dir, "model.safetensors"), rows)
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(state_spaces_config(case), f, indent=2, sort_keys=True)
        f.write("\n")


class HfLoadError(RuntimeError):
    """transformers could not load back what it saved."""


def _group_norm_forward(module, n_groups, torch):
    """mamba_ssm's RMSNormGated (norm after the gate, per group) for a transformers norm module."""
    def forward(hidden_states, gate=None):
        x = hidden_states.double()
        if gate is not None:
            x = x * torch.nn.functional.silu(gate.double())
        shape = x.shape
        x = x.reshape(*shape[:-1], n_groups, shape[-1] // n_groups)
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + module.variance_epsilon)
        return module.weight.double() * x.reshape(shape)
    return forward


def hf_check(case, folder, prompts, torch, transformers):
    """transformers' own float64 forward on the saved files: (max rel. diff, greedy equal)."""
    model_class = getattr(transformers, HF_CLASSES[case["family"]][1])
    try:
        loaded = model_class.from_pretrained(folder, output_loading_info=True)
    except Exception as e:  # noqa: BLE001 - any failure to load back is reported the same way
        raise HfLoadError("%s: from_pretrained failed: %s" % (folder, e)) from e
    model, info = loaded if isinstance(loaded, tuple) else (loaded, {})
    for key in ("missing_keys", "unexpected_keys", "mismatched_keys"):
        if info.get(key):
            raise HfLoadError("%s: transformers reports %s: %s" % (folder, key, info[key]))
    model = model.double().eval()
    if case["family"] == "mamba2" and case["n_groups"] > 1:
        for layer in model.backbone.layers:
            norm = layer.mixer.norm
            norm.forward = _group_norm_forward(norm, case["n_groups"], torch)
    worst, greedy_equal = 0.0, True
    with torch.no_grad():
        for p in prompts:
            ids = list(p["ids"])
            logits = model(torch.tensor([ids]), use_cache=False).logits[0, -1].double().tolist()
            scale = max(abs(v) for v in p["last_logits"])
            worst = max(worst, max(abs(a - b) for a, b in zip(logits, p["last_logits"])) / scale)
            for tok in p["greedy"]:
                out = model(torch.tensor([ids]), use_cache=False).logits[0, -1]
                greedy_equal &= int(out.argmax()) == tok
                ids.append(tok)
    return worst, greedy_equal


def make_case(case, folder, torch, transformers):
    """Builds and saves one case; returns (reference, prompts, max rel. diff, greedy equal)."""
    hf_folder = folder + ".hf" if case.get("state_spaces") else folder
    _, added = build_case(case, hf_folder, torch, transformers)
    if added:
        print("  config.json: made explicit: %s" % ", ".join(added))
    if case.get("state_spaces"):
        to_state_spaces(case, hf_folder, folder)
    ref = reference_for_folder(folder)
    prompts = make_prompts(ref, ref.c["vocab_size"], case["seed"], case.get("long_prompt"))
    worst, greedy_equal = hf_check(case, hf_folder, prompts, torch, transformers)
    if hf_folder != folder:
        shutil.rmtree(hf_folder, ignore_errors=True)
    return ref, prompts, worst, greedy_equal


def make_prompts(ref, vocab, seed, long_prompt=None):
    rng = random.Random(seed)
    prompts = []
    for length in PROMPT_LENGTHS + ((long_prompt,) if long_prompt else ()):
        for attempt in range(20):
            ids = [rng.randrange(vocab) for _ in range(length)]
            last, greedy, margin = ref.run(ids, GREEDY_TOKENS)
            if margin >= MIN_MARGIN:
                break
            print("  prompt of %d tokens: greedy margin %.2e too small, redrawing" % (length, margin))
        prompts.append(dict(ids=ids, last_logits=[float("%.9g" % v) for v in last], greedy=greedy,
                            min_greedy_margin=float("%.3g" % margin)))
    return prompts


def folder_files(folder):
    return sorted(f for f in os.listdir(folder) if not f.startswith("."))


def write_readme(out_dir, summary):
    lines = [
        "# Golden Mamba checkpoints",
        "",
        "Made by `tools/make_golden_checkpoints.py` (run from the repository root with",
        "`python3 tools/make_golden_checkpoints.py` on a host with torch and transformers; CPU is",
        "enough). Do not edit by hand: change the script and run it again; it is deterministic",
        "(fixed seeds).",
        "",
        "Each case is a small `MambaForCausalLM`, `Mamba2ForCausalLM` or `FalconMambaForCausalLM`",
        "built from its transformers config class, initialized by transformers, then perturbed",
        "(every parameter, so that loading any tensor wrongly changes the logits), cast to the",
        "case's dtype and written with `save_pretrained` (safetensors); the state-spaces case is",
        "then rewritten in mamba_ssm's format. `expected.json` holds, for prompts of 1, 10 and 70",
        "random token ids (and 600 for some cases), the last-position logits and 24 greedy tokens",
        "computed in float64 from the saved files by the script's reference implementation,",
        "checked against transformers' float64 forward before writing. Mamba-2's gated norm is",
        "per group (mamba_ssm); for n_groups > 1 transformers is checked with its norm replaced by",
        "the grouped one, since transformers 5 normalizes over all of d_inner.",
        "",
        "These checkpoints have no tokenizer.json: prompts are token ids.",
        "",
        "| case | family | format | dtype | layers x width | d_inner | d_state | heads x dim, groups "
        "| dt_rank | d_conv | bias | conv bias | lm_head | longest prompt | files "
        "| max rel. diff vs transformers |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in summary:
        c = s["config"]
        mamba2 = c["family"] == "mamba2"
        lines.append("| %s | %s | %s | %s | %d x %d | %d | %d | %s | %s | %d | %s | %s | %s | %d "
                     "| %d | %.1e |" % (
                         s["case"], c["family"], "state-spaces" if c.get("state_spaces") else "HF",
                         s["dtype"], c["num_hidden_layers"], c["hidden_size"],
                         c["intermediate_size"], c["state_size"],
                         "%d x %d, %d" % (c["num_heads"], c["head_dim"], c["n_groups"])
                         if mamba2 else "-",
                         "-" if mamba2 else str(c["time_step_rank"]), c["conv_kernel"],
                         "yes" if c["use_bias"] else "no",
                         "yes" if c["use_conv_bias"] else "no",
                         "tied" if c["tie_word_embeddings"] else "untied",
                         max(len(p["ids"]) for p in s["prompts"]), len(s["files"]),
                         s["hf_check"]["max_rel_logit_diff"]))
    lines += ["", "Versions: %s." % summary[0]["versions"], ""]
    with open(os.path.join(out_dir, "README.md"), "w") as f:
        f.write("\n".join(lines))


# The config values expected.json echoes (what the C++ loader must read), per family.
_COMMON_ECHO = ("family", "vocab_size", "hidden_size", "num_hidden_layers", "state_size", "expand",
                "intermediate_size", "conv_kernel", "use_bias", "use_conv_bias",
                "tie_word_embeddings", "layer_norm_epsilon", "state_spaces")
CONFIG_ECHO = {
    "mamba": _COMMON_ECHO + ("time_step_rank",),
    "falcon_mamba": _COMMON_ECHO + ("time_step_rank", "mixer_rms_eps"),
    "mamba2": _COMMON_ECHO + ("num_heads", "head_dim", "n_groups", "chunk_size", "d_ssm",
                              "time_step_limit", "gated_norm_epsilon"),
}


def _json_safe(value):
    """Infinite floats as "Infinity" strings, so that expected.json is standard JSON."""
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return value


def case_config_json(case):
    """The config.json a case's checkpoint would have, without transformers (for the self-test)."""
    if case.get("state_spaces"):
        return state_spaces_config(case)
    cfg = {k: v for k, v in case.items() if k not in CASE_KEYS}
    cfg["model_type"] = case["family"]
    if case["family"] == "mamba2":
        cfg["num_heads"] = case["expand"] * case["hidden_size"] // case["head_dim"]
        cfg["time_step_limit"] = list(case.get("time_step_limit", (0.0, float("inf"))))
    return cfg


def make_all(only):
    try:
        import torch
        import transformers
    except ImportError as e:
        sys.exit("make_golden_checkpoints: needs torch and transformers (%s); "
                 "--self-test runs without them" % e)
    torch.set_grad_enabled(False)
    versions = "python %s, torch %s, transformers %s" % (
        sys.version.split()[0], torch.__version__, transformers.__version__)
    print("make_golden_checkpoints:", versions)
    staging = tempfile.mkdtemp(prefix="golden_")
    summary = []
    try:
        for case in CASES:
            if only and case["name"] not in only:
                continue
            print("%s:" % case["name"])
            folder = os.path.join(staging, case["name"])
            try:
                ref, prompts, worst, greedy_equal = make_case(case, folder, torch, transformers)
            except HfLoadError as e:
                derived = case["expand"] * case["hidden_size"]
                if case.get("intermediate_size", derived) == derived or case["family"] != "mamba":
                    raise
                # Some transformers versions recompute intermediate_size from expand on load.
                print("  warning: %s\n  retrying with intermediate_size = expand * hidden_size "
                      "(%d), still written explicitly" % (e, derived))
                shutil.rmtree(folder, ignore_errors=True)
                case = dict(case, intermediate_size=derived)
                ref, prompts, worst, greedy_equal = make_case(case, folder, torch, transformers)
            print("  transformers float64 vs reference: max rel. logit diff %.2e, greedy %s"
                  % (worst, "identical" if greedy_equal else "DIFFERENT"))
            if worst > HF_TOLERANCE:
                raise RuntimeError("%s: reference and transformers disagree (%.2e > %.0e); "
                                   "not writing fixtures" % (case["name"], worst, HF_TOLERANCE))
            if not greedy_equal:
                print("  warning: transformers' greedy tokens differ (its float32 casts) at a "
                      "near-tie; expected.json keeps the float64 reference")
            files = folder_files(folder)
            expected = dict(
                case=case["name"], dtype=case["dtype"],
                config=_json_safe({k: ref.c[k] for k in CONFIG_ECHO[case["family"]]
                                   if k in ref.c}),
                files=files, sharded="model.safetensors.index.json" in files,
                hf_check=dict(max_rel_logit_diff=float("%.3g" % worst),
                              greedy_identical=greedy_equal),
                versions=versions, prompts=prompts)
            with open(os.path.join(folder, "expected.json"), "w") as f:
                json.dump(expected, f, separators=(",", ":"))
                f.write("\n")
            size = sum(os.path.getsize(os.path.join(folder, x)) for x in os.listdir(folder))
            print("  %d files, %.0f KB; greedy margins %s" % (
                len(files) + 1, size / 1024, [p["min_greedy_margin"] for p in prompts]))
            summary.append(expected)
        if not summary:
            sys.exit("make_golden_checkpoints: no case matched %s" % only)
        os.makedirs(OUT_DIR, exist_ok=True)
        for s in summary:
            target = os.path.join(OUT_DIR, s["case"])
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(os.path.join(staging, s["case"]), target)
        write_readme(OUT_DIR, summary)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    total = sum(os.path.getsize(os.path.join(dp, f))
                for dp, _, fs in os.walk(OUT_DIR) for f in fs)
    print("wrote %d cases to %s (%.2f MB in all)" % (len(summary), OUT_DIR, total / 2**20))
    if total > 4 * 2**20:
        sys.exit("make_golden_checkpoints: fixtures exceed 4 MB")


# ---- self-test (no torch) -----------------------------------------------------------------------

def _random_checkpoint(folder, c, dtype, seed):
    rng = random.Random(seed)
    tensors = []
    for name, shape in sorted(expected_tensor_shapes(c).items()):
        n = 1
        for d in shape:
            n *= d
        if name.endswith("A_log"):
            values = [math.log(1 + i % c["state_size"]) + rng.gauss(0, 0.3) for i in range(n)]
        elif name.endswith("norm.weight") or name.endswith(".D") or name.endswith("norm_f.weight"):
            values = [1 + rng.gauss(0, 0.3) for _ in range(n)]
        else:
            values = [rng.gauss(0, 0.3) for _ in range(n)]
        tensors.append((name, dtype, shape, values))
    os.makedirs(folder, exist_ok=True)
    write_safetensors(os.path.join(folder, "model.safetensors"), tensors)
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(c, f)
    return tensors


def _sequence_forward(ref, ids):
    """The same model as Reference.step, organized like transformers' slow_forward (whole
    sequence per layer, conv by zero padding): catches state-handling mistakes in either."""
    c = ref.c
    E, N, R, K = c["intermediate_size"], c["state_size"], c["time_step_rank"], ref.K
    hidden = [list(ref.embedding[t]) for t in ids]
    for L in ref.layers:
        xs_all, z_all = [], []
        for h in hidden:
            xz = _matvec(L["in_proj"], _rms_norm(h, L["norm"], c["layer_norm_epsilon"]))
            if L["in_bias"] is not None:
                xz = [a + b for a, b in zip(xz, L["in_bias"])]
            xs_all.append(xz[:E])
            z_all.append(xz[E:])
        padded = [[0.0] * E] * (K - 1) + xs_all
        u_all = [[_silu(sum(L["conv"][ch][k] * padded[t + k][ch] for k in range(K)) +
                        L["conv_bias"][ch]) for ch in range(E)] for t in range(len(ids))]
        state = [[0.0] * N for _ in range(E)]
        for t, u in enumerate(u_all):
            dbl = _matvec(L["x_proj"], u)
            B, C = dbl[R:R + N], dbl[R + N:]
            dt = [_softplus(v + b) for v, b in zip(_matvec(L["dt_proj"], dbl[:R]), L["dt_bias"])]
            # Discretize for the whole step first, then update and contract, as slow_forward does.
            dA = [[math.exp(dt[ch] * a) for a in L["A"][ch]] for ch in range(E)]
            dBu = [[dt[ch] * b * u[ch] for b in B] for ch in range(E)]
            state = [[dA[ch][n] * state[ch][n] + dBu[ch][n] for n in range(N)] for ch in range(E)]
            y = [(sum(state[ch][n] * C[n] for n in range(N)) + L["D"][ch] * u[ch]) *
                 _silu(z_all[t][ch]) for ch in range(E)]
            out = _matvec(L["out_proj"], y)
            if L["out_bias"] is not None:
                out = [a + b for a, b in zip(out, L["out_bias"])]
            hidden[t] = [a + b for a, b in zip(hidden[t], out)]
    return _matvec(ref.lm_head, _rms_norm(hidden[-1], ref.norm_f, c["layer_norm_epsilon"]))


def self_test():
    failures = []

    def check(ok, what):
        print("  %s %s" % ("ok  " if ok else "FAIL", what))
        if not ok:
            failures.append(what)

    print("self-test (no torch):")
    for dtype, tol in (("F32", 1e-7), ("F16", 1e-3), ("BF16", 1e-2)):
        values = [0.0, 1.0, -2.5, 0.1, 3.14159, -1e-3]
        back = _decode(dtype, _encode(dtype, values))
        check(all(abs(a - b) <= tol * max(1, abs(a)) for a, b in zip(values, back)),
              "%s encode/decode round trip" % dtype)
    check(_decode("BF16", _encode("BF16", [1.00390625]))[0] == 1.0, "BF16 rounds to nearest even")
    check(abs(_softplus(0.0) - math.log(2)) < 1e-15 and _softplus(30.0) == 30.0, "softplus")
    check(abs(_silu(-800.0)) < 1e-300 and _silu(800.0) == 800.0, "silu does not overflow")

    tmp = tempfile.mkdtemp(prefix="golden_selftest_")
    try:
        for case in CASES:
            small = dict(case, vocab_size=40)  # keep the pure-Python runs short
            if small.get("state_spaces"):
                small["vocab_size"] = 42  # 40 padded to a multiple of 4: 42 - 2 = 40 -> 40
            c = config_values(case_config_json(small))
            st_dtype = {"float32": "F32", "float16": "F16", "bfloat16": "BF16"}[case["dtype"]]
            folder = os.path.join(tmp, case["name"])
            written = _random_checkpoint(folder, c, st_dtype, case["seed"])
            with open(os.path.join(folder, "config.json"), "w") as f:
                json.dump(case_config_json(small), f)
            read = read_checkpoint_tensors(folder)
            check(all(read[n][2] == _decode(d, _encode(d, v)) for n, d, _, v in written),
                  "%s: safetensors written and read back" % case["name"])
            ref = reference_for_folder(folder)
            if case["family"] != "mamba2":
                check(ref.c["intermediate_size"] == case.get(
                    "intermediate_size", case["expand"] * case["hidden_size"]),
                    "%s: intermediate_size derived as transformers does" % case["name"])
            ids = [3, 17, 5, 39, 0, 22, 8]
            state = ref.new_state()
            for t in ids[:-1]:
                ref.step(t, state, want_logits=False)
            stepwise = ref.step(ids[-1], state)
            if case["family"] == "mamba":
                seq = _sequence_forward(ref, ids)
                diff = max(abs(a - b) for a, b in zip(stepwise, seq))
                check(diff < 1e-10, "%s: recurrent and whole-sequence forms agree (%.1e)"
                      % (case["name"], diff))
            last, greedy, margin = ref.run(ids, 5)
            check(last == stepwise and len(greedy) == 5 and margin >= 0,
                  "%s: greedy run (margin %.2e)" % (case["name"], margin))
            # Every tensor matters: damaging any one changes the logits.
            untouched = []
            for name in sorted(read):
                damaged = dict(read)
                d, shape, values = damaged[name]
                damaged[name] = (d, shape, [v * 1.5 + 0.01 for v in values])
                r = Reference(ref.c, damaged)
                st = r.new_state()
                for t in ids[:-1]:
                    r.step(t, st, want_logits=False)
                if max(abs(a - b) for a, b in zip(r.step(ids[-1], st), stepwise)) < 1e-9:
                    untouched.append(name)
            check(not untouched, "%s: every tensor affects the logits %s"
                  % (case["name"], untouched[:3] if untouched else ""))
        bad = dict(read)
        del bad["backbone.norm_f.weight"]
        try:
            Reference(ref.c, bad)
            check(False, "a missing tensor is rejected")
        except ValueError as e:
            check("backbone.norm_f.weight" in str(e), "a missing tensor is rejected")
        total = 0
        for case in CASES:  # the real cases' sizes, from their shapes
            size = 4 if case["dtype"] == "float32" else 2
            c = config_values(case_config_json(case))
            for shape in expected_tensor_shapes(c).values():
                n = 1
                for d in shape:
                    n *= d
                total += n * size
        check(total < 3.5 * 2**20, "fixtures' tensors total %.2f MB (< 4 MB with expected.json)"
              % (total / 2**20))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("self-test: %s" % ("passed" if not failures else "%d FAILED" % len(failures)))
    return 1 if failures else 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--self-test", action="store_true",
                        help="check the reference and file handling without torch")
    parser.add_argument("--reference", metavar="DIR",
                        help="print float64 reference logits for checkpoint folder DIR")
    parser.add_argument("--ids", default="0", help="comma-separated token ids for --reference")
    parser.add_argument("--greedy", type=int, default=0, help="greedy tokens for --reference")
    parser.add_argument("--case", action="append", help="make only this case (repeatable)")
    args = parser.parse_args()
    if args.self_test:
        sys.exit(self_test())
    if args.reference:
        ref = reference_for_folder(args.reference)
        ids = [int(x) for x in args.ids.split(",")]
        last, greedy, margin = ref.run(ids, args.greedy)
        json.dump(dict(ids=ids, last_logits=last, greedy=greedy,
                       min_greedy_margin=margin if greedy else None),
                  sys.stdout)
        print()
        return
    make_all(args.case)


if __name__ == "__main__":
    main()
