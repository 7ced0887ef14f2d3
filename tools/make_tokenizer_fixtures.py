#!/usr/bin/env python3
"""Makes the tokenizer fixtures in tests/data/tokenizer/ with Hugging Face `tokenizers`.

Trains two byte-level BPE tokenizers shaped like GPT-NeoX's (NFC normalizer, ByteLevel
pre-tokenizer with the GPT-2 regex and add_prefix_space false, ByteLevel decoder and
post-processor, specials "<|endoftext|>" and "<|padding|>") on a local English corpus:

  small/     vocabulary 1024
  neox50k/   vocabulary 50280: 50257 trained + 23 added runs of 2..24 spaces (normalized,
             not special), as GPT-NeoX-20B's tokenizer.json has

then derives variants of the small one that exercise the other supported components
(small_prefix_space, small_no_regex, small_split, small_pretok_mix, small_pretok_removed,
small_flags). For each tokenizer it writes tokenizer.json (gzipped when large) and cases.json:
for every case string the ids Hugging Face gives with and without add_special_tokens, and the
decoded text with and without skip_special_tokens; random strings the same way; and for the
~1 MiB input (large_input.txt.gz, shared) the id count and FNV-1a hashes.

It also looks for GPT-2/GPT-NeoX-family tokenizer.json files already in the local Hugging
Face cache (nothing is downloaded) and, when it finds any, adds fixtures for them as
cached_<name>/.

The SentencePiece-converted family (Llama-2 / Mistral / Mamba-Codestral: "\u2581" for spaces,
<0x00>..<0xFF> byte tokens at ids 3..258 after <unk> <s> </s>, byte_fallback) is trained the
same way on the text of large_input.txt.gz (already in the output folder, so no corpus is
needed), with a Metaspace pre-tokenizer splitting words for training only, and assembled like
the converted files:

  spm_small/            ~1000 tokens, Llama-2's layout: normalizer Prepend("\u2581") +
                        Replace(" ", "\u2581"), no pre-tokenizer, TemplateProcessing "<s> $A",
                        decoder Replace("\u2581", " "), ByteFallback, Fuse, Strip(" ", 1, 0)
  spm_small_metaspace/  the same model with Mistral v0.3's layout: Metaspace pre-tokenizer and
                        decoder (prepend_scheme "first", split false), merges as "a b" strings
  spm_small_split/      Metaspace (legacy add_prefix_space, "always", split true), NFKC and a
                        literal Regex Replace, ignore_merges, decoder ByteFallback then
                        Metaspace, Fuse, Strip(" ", 2, 0), template "<s> $A </s>", added tokens
  spm_small_unk/        byte tokens of 0xC3 and 0xF0..0xF4 missing (those characters fall back
                        to <unk>, fused), no Strip, a non-special added token
  spm_32k/              ~32000 tokens (as many as the text allows), Llama-2's layout

Their cases.json also has, for every id sequence of at most 64 ids, Hugging Face's decode of
each prefix (delta-encoded: [bytes of the previous decode kept, text appended]), with and without
skip_special_tokens, and `decode_cases`: id sequences chosen to decode awkwardly (lone and
partial <0xNN> runs, invalid UTF-8, byte runs across special tokens, leading "\u2581" tokens).

Run from the repository root on a machine with `tokenizers` installed (no network needed):

  python3 tools/make_tokenizer_fixtures.py --corpus DIR --out tests/data/tokenizer
  python3 tools/make_tokenizer_fixtures.py --families spm --out tests/data/tokenizer

where DIR is made by tools/build_tokenizer_corpus.sh; the first makes every fixture, the second
only the SentencePiece-converted ones, which need no corpus (always trained on
large_input.txt.gz alone). Without `tokenizers`:

  python3 tools/make_tokenizer_fixtures.py --print-cases   # the case strings as JSON
"""

import argparse
import glob
import gzip
import json
import os
import random
import struct
import sys
import time

GPT2_PATTERN = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
SPECIALS = ["<|endoftext|>", "<|padding|>"]
LARGE_INPUT = "large_input.txt.gz"
LARGE_INPUT_BYTES = 1 << 20
SEED = 20240601
NUM_RANDOM_CASES = 300

# (name, text). Each covers a behaviour the tokenizer must reproduce exactly.
CASES = [
    ("empty", ""),
    ("ascii_words", "Hello world"),
    ("ascii_sentence", "Hello, world! How are you doing today?"),
    ("leading_space", " Hello"),
    ("trailing_space", "Hello "),
    ("spaces_both_ends", "  padded on both sides  "),
    ("only_spaces", "     "),
    ("single_space", " "),
    ("space_runs", "a  b   c    d     e      f"),
    ("long_space_run", " " * 100 + "x"),
    ("tabs", "col1\tcol2\t\tcol3\t"),
    ("newlines", "line one\nline two\n\nline four\n"),
    ("only_newlines", "\n\n\n"),
    ("crlf", "windows\r\nline endings\r\n\r\nend"),
    ("mixed_whitespace", " \t\n \r\n\t  x \n\t y"),
    ("spaces_and_newlines", "  \n  \n"),
    ("contractions", "I'm sure you'll see it's what we've done; they're right, he'd know, don't"),
    ("contractions_upper", "IT'S WE'LL I'M DON'T THEY'RE"),
    ("apostrophes", "' 's ''s 's' 'x x's rock'n'roll '''"),
    ("digits", "1234567890 3.14159 1,000,000 2024-01-01 007"),
    ("letters_digits", "abc123def 42nd 7th v2.0.1"),
    ("punctuation", "Hello!!! ...what??? (yes) [no] {maybe} <tag/> @#$%^&* -- ;:"),
    ("accents_composed", "caf\u00e9 na\u00efve r\u00e9sum\u00e9 Z\u00fcrich \u00c5ngstr\u00f6m"),
    ("accents_decomposed", "cafe\u0301 nai\u0308ve re\u0301sume\u0301 Zu\u0308rich A\u030angstro\u0308m"),
    ("accents_mixed_forms", "e\u0301 vs \u00e9 and \u00e9\u0301"),
    ("lone_combining_mark", "\u0301"),
    ("combining_after_space", " \u0301x \u0308"),
    ("stacked_combining", "a\u0301\u0302\u0303 q\u0323\u0307"),
    ("hangul_jamo", "\u1100\u1161\u11a8 \u1112\u1161\u11ab"),
    ("cjk", "\u4f60\u597d\uff0c\u4e16\u754c\uff01\u8fd9\u662f\u4e00\u4e2a\u6d4b\u8bd5\u3002"),
    ("japanese", "\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8\u3068\u30ab\u30bf\u30ab\u30ca\u3001\u3072\u3089\u304c\u306a\u3002"),
    ("korean", "\uc548\ub155\ud558\uc138\uc694 \uc138\uacc4"),
    ("emoji", "I love \U0001f355 and \U0001f389!"),
    ("emoji_zwj", "family: \U0001f468\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466 ok"),
    ("emoji_flags_skin", "\U0001f1fa\U0001f1f8\U0001f1eb\U0001f1f7 \U0001f44d\U0001f3fd \u2764\ufe0f"),
    ("rtl_scripts", "\u0645\u0631\u062d\u0628\u0627 \u0628\u0627\u0644\u0639\u0627\u0644\u0645 \u05e9\u05dc\u05d5\u05dd \u05e2\u05d5\u05dc\u05dd"),
    ("cyrillic_greek", "\u041f\u0440\u0438\u0432\u0435\u0442 \u043c\u0438\u0440 \u0393\u03b5\u03b9\u03ac \u03c3\u03bf\u03c5"),
    ("special_inside_text", "Hello<|endoftext|>World"),
    ("special_between_sentences", "end of doc. <|endoftext|> Start of next"),
    ("special_only", "<|endoftext|>"),
    ("specials_adjacent", "<|endoftext|><|padding|><|endoftext|>"),
    ("special_partial", "<|endoftext| and <|endo <|padding"),
    ("special_after_whitespace", "a \t<|endoftext|>\n b"),
    ("nel_u0085", "a\u0085b \u0085 c"),
    ("nbsp_u00a0", "a\u00a0b \u00a0c\u00a0"),
    ("line_para_separators", "line\u2028sep\u2029para \u2028"),
    ("ideographic_space", "a\u3000b\u3000\u3000c"),
    ("zero_width", "zero\u200bwidth\u200djoiner\ufeffbom"),
    ("number_forms", "x\u00b2 + y\u00b3 = z\u00b9 \u00bd \u00bc \u216b \u2460"),
    ("other_digits", "\u0663\u0664\u0665 \u06f1\u06f2 \u0967\u0968\u0969"),
    ("ligatures_titlecase", "\u01c5 \ufb01 \ufb00 \u2126"),
    ("math_alphanumerics", "\U0001d400\U0001d401\U0001d402 \U0001d54f"),
    ("code", "def f(x):\n    return x ** 2  # square\n\n\tprint(f(3))\n"),
    ("json", '{"key": "value", "n": [1, 2, 3], "ok": true}'),
    ("url", "https://example.com/path/to?q=1&r=two#frag"),
    ("long_word", "supercalifragilisticexpialidocious" * 3),
    ("repeated_letter", "a" * 200),
    ("control_chars", "\x00\x01\x1f\x7f tab\x0bvt\x0cff"),
    ("bom_start", "\ufeffStart of file"),
    ("private_use_unassigned", "\ue000\U000f0000 \u0378 \U0010fffd"),
    ("mixed_scripts", "Tokyo\u6771\u4eacParis\ud30c\ub9acBerlin"),
    ("byte_level_alphabet_chars", "\u0120\u010a \u0120hello \u00a1\u00ac\u00ae"),
    ("flag_tokens", "<mask> [word] x[word] [word]y cafe\u0301 caf\u00e9 <rs>   z \u03a9 the theory"
                    "  the  \u00e9 a<lr>  b"),
    ("mask_lstrip", "Fill   <mask> in"),
    # Letters and digits of Unicode 15.1/16.0 (CJK Ext-I, Egyptian Hieroglyphs Ext-A, Garay
    # digits) and a Unicode 10+ combining mark next to an old one (normalization tables).
    ("newer_unicode", "\U0002ebf0's \U00013460'm \U00010d40\U00010d41x a\u0301\u1ac7\u0316"),
    ("single_word_edges", "[word][word] ([word]) _[word] [word]2"),
]

# Code points the random cases draw from: every class the pre-tokenizer distinguishes, the
# white space that differs between regex engines, combining marks, specials and flag tokens.
RANDOM_POOL = (
    list("abcxyzABCXYZ0123456789") + list(" " * 8) + ["\t", "\n", "\r", "\r\n", "'", "'s", "'ll",
    "'S", ".", ",", "!", "?", "-", "_", "#", "\u00e9", "e\u0301", "\u0301", "\u0308", "\u00fc",
    "\u4e16", "\u754c", "\u3002", "\uc548", "\U0001f355", "\U0001f468\u200d\U0001f469",
    "\u200d", "\u0085", "\u00a0", "\u2028", "\u3000", "\u00b2", "\u216b", "\u0663", "\ufb01",
    "\u0120", "<|endoftext|>", "<|padding|>", "<mask>", "[word]", "<rs>", "<lr>", "\u03a9",
    "the", "  ", "\U0001d400", "\x00", "\x7f"])


def random_cases(rng, count, pool=RANDOM_POOL):
    cases = []
    for i in range(count):
        n = rng.randint(0, 24)
        cases.append((f"random_{i}", "".join(rng.choice(pool) for _ in range(n))))
    return cases


# The SentencePiece-converted family.
SPM_SPECIALS = ["<unk>", "<s>", "</s>"]
SPM_SEED = 20261207
META = "\u2581"  # SentencePiece's space

# Cases for the things that family does differently; the byte-level CASES run on it too.
SPM_CASES = [
    ("spm_bos_eos_literal", "<s>Hello</s> world"),
    ("spm_eos_middle", "end</s>start"),
    ("spm_specials_spaced", " <s> a </s> "),
    ("spm_specials_only", "<s></s><s>"),
    ("spm_unk_literal", "<unk> and <unk>"),
    ("spm_byte_token_literal", "<0x41><0xE4> x <0x0A>"),
    ("spm_metaspace_char", META + "hello " + META + META + " world" + META),
    ("spm_metaspace_only", META),
    ("spm_leading_spaces", "   three leading"),
    ("spm_trailing_spaces", "trailing three   "),
    ("spm_inner_spaces", "a  b   c\u3000d"),
    ("spm_newline_runs", "a\n\nb\n \n c\n"),
    ("spm_tabs_indent", "\tdef f():\n\t\treturn 1\n"),
    ("spm_code_indent", "if x:\n    y = 1\n        z = 2\n"),
    ("spm_emoji_run", "\U0001f600\U0001f603\U0001f604 \U0001f389\U0001f389"),
    ("spm_cjk_sentence", "\u6211\u4eec\u7684\u4e16\u754c\u5f88\u5927\u3002"),
    ("spm_rare_scripts", "\u16a0\u16a2\u16a6 \ua9b2\ua98f \U00013000"),
    ("spm_mixed_fallback", "na\u00efve caf\u00e9 \u6771\u4eac \U0001f355!"),
    ("spm_accent_then_emoji", "\u00e9\U0001f600\u4e16x"),
    ("spm_control", "\x00\x01\x7f\x1b[0m"),
    ("spm_ellipsis_tab", "wait... what?\tyes..."),
    ("spm_long_word", "antidisestablishmentarianism" * 4),
]

SPM_POOL = RANDOM_POOL + ["<s>", "</s>", "<unk>", META, META + META, "<0x41>", " ", "  ",
                          "\t", "...", "\U0001f600", "\u6771", "caf\u00e9", "\u00e9"]


def spm_lines(large_text):
    return [line for line in large_text.split("\n") if line.strip()]


def train_spm(lines, vocab_size, limit_alphabet, min_frequency=2):
    """A BPE model trained on words that start with META, as SentencePiece's are."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend(META),
                                           normalizers.Replace(" ", META)])
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement=META, prepend_scheme="never",
                                                 split=True)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                  show_progress=False, special_tokens=SPM_SPECIALS,
                                  limit_alphabet=limit_alphabet)
    tok.train_from_iterator(lines, trainer=trainer)
    return json.loads(tok.to_str())


def with_byte_tokens(trained, missing_bytes=()):
    """The trained document renumbered as converted files are: <unk> <s> </s>, then <0x00>..
    <0xFF> (less `missing_bytes`), then the trained tokens in their order."""
    import copy
    doc = copy.deepcopy(trained)
    old = sorted(doc["model"]["vocab"].items(), key=lambda kv: kv[1])
    vocab = {}
    for token in SPM_SPECIALS:
        vocab[token] = len(vocab)
    for b in range(256):
        if b not in missing_bytes:
            vocab.setdefault(f"<0x{b:02X}>", len(vocab))
    for token, _ in old:
        vocab.setdefault(token, len(vocab))
    doc["model"]["vocab"] = vocab
    for token in doc["added_tokens"]:
        token["id"] = vocab[token["content"]]
    doc["model"].update(dropout=None, unk_token="<unk>", continuing_subword_prefix=None,
                        end_of_word_suffix=None, fuse_unk=True, byte_fallback=True,
                        ignore_merges=False)
    return doc


def template(doc, single, pair):
    vocab = doc["model"]["vocab"]

    def pieces(items, type_ids):
        out = []
        for item, type_id in zip(items, type_ids):
            if item in ("$A", "$B"):
                out.append({"Sequence": {"id": item[1], "type_id": type_id}})
            else:
                out.append({"SpecialToken": {"id": item, "type_id": type_id}})
        return out

    names = sorted({x for x in single + pair if not x.startswith("$")})
    pair_types = [0 if i < pair.index("$A") + 1 else 1 for i in range(len(pair))]
    return {"type": "TemplateProcessing",
            "single": pieces(single, [0] * len(single)),
            "pair": pieces(pair, pair_types),
            "special_tokens": {n: {"id": n, "ids": [vocab[n]], "tokens": [n]} for n in names}}


def metaspace(prepend_scheme, split, **legacy):
    d = {"type": "Metaspace", "replacement": META, "prepend_scheme": prepend_scheme,
         "split": split}
    d.update(legacy)
    return d


LLAMA_NORMALIZER = {"type": "Sequence", "normalizers": [
    {"type": "Prepend", "prepend": META},
    {"type": "Replace", "pattern": {"String": " "}, "content": META}]}
LLAMA_DECODER = {"type": "Sequence", "decoders": [
    {"type": "Replace", "pattern": {"String": META}, "content": " "},
    {"type": "ByteFallback"}, {"type": "Fuse"},
    {"type": "Strip", "content": " ", "start": 1, "stop": 0}]}


def llama_layout(doc):
    import copy
    d = copy.deepcopy(doc)
    d["normalizer"] = copy.deepcopy(LLAMA_NORMALIZER)
    d["pre_tokenizer"] = None
    d["post_processor"] = template(d, ["<s>", "$A"], ["<s>", "$A", "<s>", "$B"])
    d["decoder"] = copy.deepcopy(LLAMA_DECODER)
    return d


def spm_variants(trained):
    """The SentencePiece-converted fixtures made from one trained model."""
    import copy
    base = with_byte_tokens(trained)
    v = {"spm_small": llama_layout(base)}

    d = copy.deepcopy(base)
    d["normalizer"] = None
    d["pre_tokenizer"] = metaspace("first", False)
    d["post_processor"] = template(d, ["<s>", "$A"], ["<s>", "$A", "<s>", "$B"])
    d["decoder"] = metaspace("first", False)
    d["model"]["merges"] = [" ".join(m) if isinstance(m, list) else m
                            for m in d["model"]["merges"]]
    v["spm_small_metaspace"] = d

    d = copy.deepcopy(base)
    d["normalizer"] = {"type": "Sequence", "normalizers": [
        {"type": "NFKC"},
        {"type": "Replace", "pattern": {"Regex": "\\.\\.\\."}, "content": "\u2026"}]}
    d["pre_tokenizer"] = metaspace("always", True, add_prefix_space=True)
    d["model"]["ignore_merges"] = True
    d["decoder"] = {"type": "Sequence", "decoders": [
        {"type": "ByteFallback"}, metaspace("always", True), {"type": "Fuse"},
        {"type": "Strip", "content": " ", "start": 2, "stop": 0}]}
    with_added_tokens(d, [added("<pad>", True), added("<tab>", False, normalized=True),
                          added("    ", False, normalized=True)])
    d["post_processor"] = template(d, ["<s>", "$A", "</s>"], ["<s>", "$A", "</s>", "$B", "</s>"])
    v["spm_small_split"] = d

    d = llama_layout(with_byte_tokens(trained, missing_bytes={0xC3, 0xF0, 0xF1, 0xF2, 0xF3,
                                                              0xF4}))
    d["decoder"]["decoders"] = d["decoder"]["decoders"][:3]
    with_added_tokens(d, [added("[TAB]", False, normalized=False)])
    v["spm_small_unk"] = d
    return v


def delta_decodes(tok, ids, skip):
    """Hugging Face's decode of ids[:1], ids[:2], ...: [UTF-8 bytes of the previous kept, text
    appended]."""
    out, prev = [], ""
    for k in range(1, len(ids) + 1):
        cur = tok.decode(ids[:k], skip_special_tokens=skip)
        i = 0
        while i < min(len(prev), len(cur)) and prev[i] == cur[i]:
            i += 1
        out.append([len(prev[:i].encode("utf-8")), cur[i:]])
        prev = cur
    return out


MAX_PREFIX_DECODE_IDS = 64


def spm_decode_cases(doc, rng, count):
    """Id sequences that decode awkwardly, plus `count` random ones."""
    vocab = doc["model"]["vocab"]
    b = lambda x: vocab.get(f"<0x{x:02X}>")  # noqa: E731  (None: not in this vocabulary)
    words = [t for t in vocab if t.startswith(META) and len(t) > 2][:40]
    plain = [t for t in vocab if not t.startswith("<") and not t.startswith(META)][:40]
    w, w2, w3 = (vocab[t] for t in words[:3])
    s, e, u = vocab["<s>"], vocab["</s>"], vocab["<unk>"]
    meta = vocab.get(META)
    cases = [
        ("empty", []),
        ("lone_lead_byte", [b(0xE4)]),
        ("partial_2_of_3", [b(0xE4), b(0xB8)]),
        ("whole_character", [b(0xE4), b(0xB8), b(0x96)]),
        ("whole_character_then_word", [b(0xE4), b(0xB8), b(0x96), w]),
        ("partial_then_word", [b(0xE4), b(0xB8), w]),
        ("ascii_byte", [b(0x41)]),
        ("ascii_byte_then_invalid", [b(0x41), b(0xFF)]),
        ("valid_then_invalid_then_word", [b(0xC3), b(0xA9), b(0xFF), w]),
        ("lone_continuations", [b(0x80), w, b(0x80), b(0xBF)]),
        ("space_byte_first", [b(0x20), w]),
        ("two_space_bytes_first", [b(0x20), b(0x20), w]),
        ("newline_byte_between", [w, b(0x0A), w2]),
        ("emoji_bytes_between", [w, b(0xF0), b(0x9F), b(0x98), b(0x80), w2]),
        ("emoji_bytes_first", [b(0xF0), b(0x9F), b(0x98), b(0x80), w]),
        ("run_across_eos", [b(0xE4), e, b(0xB8), b(0x96)]),
        ("run_across_bos_start", [s, b(0xE4), b(0xB8), b(0x96), w]),
        ("bos_word", [s, w, w2]),
        ("bos_only", [s]),
        ("eos_only", [e]),
        ("unk_word", [u, w]),
        ("word_bos_word", [w, s, w2]),
        ("words", [w, w2, w3]),
        ("plain_first", [vocab[plain[0]], w]),
        ("metaspace_token_first", [meta, w]),
        ("two_metaspace_tokens_first", [meta, meta, w]),
        ("metaspace_token_after_bos", [s, meta, w]),
        ("byte_token_of_metaspace", [b(0xE2), b(0x96), b(0x81), w]),
    ]
    cases = [(name, ids) for name, ids in cases if None not in ids]
    pool = ([b(x) for x in (0x20, 0x41, 0x0A, 0xC3, 0xA9, 0xE4, 0xB8, 0x96, 0xF0, 0x9F, 0x98,
                            0x80, 0xFF, 0xE2, 0x96, 0x81)] +
            [s, e, u, meta] + [vocab[t] for t in words + plain])
    pool = [i for i in pool if i is not None]
    for i in range(count):
        cases.append((f"random_ids_{i}", [rng.choice(pool) for _ in range(rng.randint(1, 20))]))
    return cases


def fnv1a64(data):
    h = 0xCBF29CE484222325
    for b in data:
        h ^= b
        h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


def ids_bytes(ids):
    return struct.pack(f"<{len(ids)}I", *ids)


def corpus_files(corpus):
    files = sorted(glob.glob(os.path.join(corpus, "*.txt")))
    if not files:
        sys.exit(f"no *.txt files in {corpus}; run tools/build_tokenizer_corpus.sh first")
    return files


def make_large_input(files, out_dir):
    """About 1 MiB of corpus paragraphs in a seeded order, so every source is represented."""
    paragraphs = []
    for path in files:
        with open(path, encoding="utf-8") as f:
            paragraphs += [p for p in f.read().split("\n\n") if p.strip()]
    rng = random.Random(SEED)
    rng.shuffle(paragraphs)
    text, size = [], 0
    for p in paragraphs:
        if size >= LARGE_INPUT_BYTES:
            break
        text.append(p)
        size += len(p.encode("utf-8")) + 2
    text = "\n\n".join(text)
    with gzip.GzipFile(os.path.join(out_dir, LARGE_INPUT), "wb", mtime=0) as f:
        f.write(text.encode("utf-8"))
    return text


def train(files, vocab_size):
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from tokenizers import trainers
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True,
                                                 use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=True)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2, show_progress=False,
                                  special_tokens=SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train(files, trainer)
    return tok


def added(content, special, **flags):
    token = {"content": content, "single_word": False, "lstrip": False, "rstrip": False,
             "normalized": not special, "special": special}
    token.update(flags)
    return token


def with_added_tokens(doc, extra):
    """Appends added tokens with the ids `tokenizers` will assign them (next free ids)."""
    next_id = 1 + max(max(doc["model"]["vocab"].values()),
                      max((t["id"] for t in doc["added_tokens"]), default=-1))
    for token in extra:
        if token["content"] in doc["model"]["vocab"]:
            token_id = doc["model"]["vocab"][token["content"]]
        else:
            token_id, next_id = next_id, next_id + 1
        doc["added_tokens"].append(dict(id=token_id, **token))
    return doc


def byte_level(add_prefix_space=False, use_regex=True):
    return {"type": "ByteLevel", "add_prefix_space": add_prefix_space, "trim_offsets": True,
            "use_regex": use_regex}


def small_variants(small_doc):
    """tokenizer.json documents derived from the small tokenizer, one per component family."""
    import copy
    v = {}
    d = copy.deepcopy(small_doc)
    d["pre_tokenizer"] = byte_level(add_prefix_space=True)
    v["small_prefix_space"] = d
    d = copy.deepcopy(small_doc)
    d["normalizer"] = None
    d["pre_tokenizer"] = byte_level(use_regex=False)
    v["small_no_regex"] = d
    d = copy.deepcopy(small_doc)  # the Llama-3 layout with GPT-2's regex, and "a b" merges
    d["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": GPT2_PATTERN}, "behavior": "Isolated",
         "invert": False}, byte_level(use_regex=False)]}
    d["model"]["merges"] = [" ".join(m) if isinstance(m, list) else m
                            for m in d["model"]["merges"]]
    v["small_split"] = d
    d = copy.deepcopy(small_doc)
    d["normalizer"] = {"type": "Sequence", "normalizers": [{"type": "NFKC"}]}
    d["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"String": " "}, "behavior": "MergedWithNext",
         "invert": False},
        {"type": "Digits", "individual_digits": True},
        {"type": "Split", "pattern": {"String": "e"}, "behavior": "MergedWithPrevious",
         "invert": False},
        {"type": "Split", "pattern": {"String": "a"}, "behavior": "Contiguous", "invert": True},
        byte_level(add_prefix_space=True)]}
    v["small_pretok_mix"] = d
    d = copy.deepcopy(small_doc)
    d["normalizer"] = {"type": "Sequence", "normalizers": [{"type": "NFD"}, {"type": "NFC"}]}
    d["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": GPT2_PATTERN}, "behavior": "Removed",
         "invert": True},
        {"type": "Digits", "individual_digits": False},
        {"type": "Split", "pattern": {"String": "o"}, "behavior": "Removed", "invert": False},
        byte_level(use_regex=False)]}
    v["small_pretok_removed"] = d
    d = copy.deepcopy(small_doc)
    with_added_tokens(d, [
        added("<mask>", True, lstrip=True),
        added("[word]", False, single_word=True),
        added("cafe\u0301", False, normalized=True),
        added("<rs>", True, rstrip=True),
        added("\u03a9", False, normalized=False),
        added("the", False, single_word=True, lstrip=True, rstrip=True),
        added("\u00e9", True, normalized=False),
        added("  ", False, normalized=True),
        added("<lr>", False, normalized=False, lstrip=True, rstrip=True),
    ])
    vocab = d["model"]["vocab"]
    d["post_processor"] = {"type": "Sequence", "processors": [
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
        {"type": "TemplateProcessing",
         "single": [{"SpecialToken": {"id": "<|endoftext|>", "type_id": 0}},
                    {"Sequence": {"id": "A", "type_id": 0}},
                    {"SpecialToken": {"id": "<|padding|>", "type_id": 0}}],
         "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
         "special_tokens": {
             name: {"id": name, "ids": [vocab[name]], "tokens": [name]} for name in SPECIALS}}]}
    v["small_flags"] = d
    return v


def cached_tokenizers():
    """GPT-2/NeoX-family tokenizer.json files already in the Hugging Face cache."""
    roots = [os.environ.get("HF_HUB_CACHE"), os.environ.get("HUGGINGFACE_HUB_CACHE"),
             os.path.join(os.environ.get("HF_HOME", os.path.expanduser("~/.cache/huggingface")),
                          "hub")]
    found = {}
    for root in filter(None, roots):
        for path in sorted(glob.glob(os.path.join(root, "models--*", "snapshots", "*",
                                                  "tokenizer.json"))):
            repo = path.split(os.sep + "models--", 1)[1].split(os.sep, 1)[0]
            try:
                with open(path, encoding="utf-8") as f:
                    doc = json.load(f)
            except (OSError, ValueError):
                continue
            model = doc.get("model") or {}
            pre = json.dumps(doc.get("pre_tokenizer"))
            if model.get("type") == "BPE" and "ByteLevel" in pre and repo not in found:
                found[repo] = path
    return found


def write_fixture(tok, doc, name, out_dir, cases, large_text, decode_cases=None):
    import tokenizers
    from tokenizers import Tokenizer
    folder = os.path.join(out_dir, name)
    os.makedirs(folder, exist_ok=True)
    text = json.dumps(doc, ensure_ascii=False, indent=None, separators=(",", ":"))
    if tok is None:
        tok = Tokenizer.from_str(text)  # the variants: check that `tokenizers` accepts them
    if len(text) > (256 << 10):
        tok_file = "tokenizer.json.gz"
        with gzip.GzipFile(os.path.join(folder, tok_file), "wb", mtime=0) as f:
            f.write(text.encode("utf-8"))
    else:
        tok_file = "tokenizer.json"
        with open(os.path.join(folder, tok_file), "w", encoding="utf-8") as f:
            f.write(text)
    records = []
    for case_name, case_text in cases:
        ids = tok.encode(case_text, add_special_tokens=False).ids
        records.append({
            "name": case_name,
            "text": case_text,
            "ids": ids,
            "ids_with_special": tok.encode(case_text, add_special_tokens=True).ids,
            "decoded": tok.decode(ids, skip_special_tokens=False),
            "decoded_skip_special": tok.decode(ids, skip_special_tokens=True),
        })
        if decode_cases is not None and len(ids) <= MAX_PREFIX_DECODE_IDS:
            with_special = delta_decodes(tok, ids, False)
            skipped = delta_decodes(tok, ids, True)
            records[-1]["prefix_decodes"] = with_special
            if skipped != with_special:  # absent: the same
                records[-1]["prefix_decodes_skip_special"] = skipped
    decode_records = []
    for case_name, ids in decode_cases or []:
        decode_records.append({
            "name": case_name,
            "ids": ids,
            "decoded": tok.decode(ids, skip_special_tokens=False),
            "decoded_skip_special": tok.decode(ids, skip_special_tokens=True),
            "prefix_decodes": delta_decodes(tok, ids, False),
            "prefix_decodes_skip_special": delta_decodes(tok, ids, True),
        })
    large_ids = tok.encode(large_text, add_special_tokens=False).ids
    large_decoded = tok.decode(large_ids, skip_special_tokens=False)
    fixture = {
        "tokenizer": tok_file,
        "generator": f"tokenizers {tokenizers.__version__} (Python), "
                     f"tools/make_tokenizer_fixtures.py, {time.strftime('%Y-%m-%d')}",
        "vocab_size": tok.get_vocab_size(with_added_tokens=True),
        "cases": records,
        "decode_cases": decode_records,
        "large": [{
            "name": "large_input",
            "text_file": "../" + LARGE_INPUT,
            "bytes": len(large_text.encode("utf-8")),
            "num_ids": len(large_ids),
            "ids_fnv1a64": fnv1a64(ids_bytes(large_ids)),
            "decoded_fnv1a64": fnv1a64(large_decoded.encode("utf-8")),
            "first_ids": large_ids[:64],
        }],
    }
    cases_text = json.dumps(fixture, ensure_ascii=True, indent=None, separators=(",", ":")) + "\n"
    for stale in ("cases.json", "cases.json.gz"):
        if os.path.exists(os.path.join(folder, stale)):
            os.remove(os.path.join(folder, stale))
    if len(cases_text) > (256 << 10):
        with gzip.GzipFile(os.path.join(folder, "cases.json.gz"), "wb", mtime=0) as f:
            f.write(cases_text.encode("utf-8"))
    else:
        with open(os.path.join(folder, "cases.json"), "w", encoding="utf-8") as f:
            f.write(cases_text)
    print(f"{name}: {tok_file}, vocab {fixture['vocab_size']}, {len(records)} cases, "
          f"{len(decode_records)} decode cases, large input -> {len(large_ids)} ids",
          flush=True)


def make_spm_fixtures(out_dir, large_text):
    """The SentencePiece-converted fixtures, trained on large_input.txt.gz's text alone (so
    that they do not depend on which corpus the byte-level ones were made from)."""
    from tokenizers import Tokenizer
    lines = spm_lines(large_text)
    cases = CASES + SPM_CASES + random_cases(random.Random(SPM_SEED), NUM_RANDOM_CASES, SPM_POOL)
    start = time.time()
    trained = train_spm(lines, 1000 - 256, limit_alphabet=120)
    print(f"trained spm_small in {time.time() - start:.0f} s", flush=True)
    for name, doc in spm_variants(trained).items():
        tok = Tokenizer.from_str(json.dumps(doc, ensure_ascii=False))
        decode_cases = spm_decode_cases(doc, random.Random(SPM_SEED + 1), 60)
        write_fixture(tok, doc, name, out_dir, cases, large_text, decode_cases)
    start = time.time()
    # 1 MiB of text has too few pairs seen twice for 32000 tokens; pairs seen once fill it up.
    trained = train_spm(lines, 32000 - 256, limit_alphabet=1000, min_frequency=1)
    print(f"trained spm_32k in {time.time() - start:.0f} s", flush=True)
    doc = llama_layout(with_byte_tokens(trained))
    tok = Tokenizer.from_str(json.dumps(doc, ensure_ascii=False))
    write_fixture(tok, doc, "spm_32k", out_dir, cases, large_text,
                  spm_decode_cases(doc, random.Random(SPM_SEED + 2), 60))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", help="folder of *.txt files (tools/build_tokenizer_corpus.sh)")
    parser.add_argument("--out", default="tests/data/tokenizer")
    parser.add_argument("--families", default="all", choices=["all", "bytelevel", "spm"],
                        help="which fixtures to make: spm needs no --corpus (it trains on the "
                             "output folder's large_input.txt.gz, which it leaves as it is)")
    parser.add_argument("--print-cases", action="store_true",
                        help="print the case strings (fixed and random) as JSON and exit")
    args = parser.parse_args()
    cases = CASES + random_cases(random.Random(SEED), NUM_RANDOM_CASES)
    if args.print_cases:
        json.dump([{"name": n, "text": t} for n, t in cases], sys.stdout, ensure_ascii=True)
        print()
        return
    if args.families != "spm" and not args.corpus:
        parser.error("--corpus is required (except with --families spm)")
    os.makedirs(args.out, exist_ok=True)
    if args.families == "spm":
        with gzip.open(os.path.join(args.out, LARGE_INPUT), "rt", encoding="utf-8") as f:
            large_text = f.read()
        make_spm_fixtures(args.out, large_text)
        return
    make_bytelevel_fixtures(args, cases)
    if args.families == "all":
        with gzip.open(os.path.join(args.out, LARGE_INPUT), "rt", encoding="utf-8") as f:
            large_text = f.read()
        make_spm_fixtures(args.out, large_text)


def make_bytelevel_fixtures(args, cases):
    from tokenizers import Tokenizer
    from tokenizers import AddedToken
    files = corpus_files(args.corpus)
    large_text = make_large_input(files, args.out)

    start = time.time()
    small = train(files, 1024)
    print(f"trained small in {time.time() - start:.0f} s", flush=True)
    small_doc = json.loads(small.to_str())
    write_fixture(small, small_doc, "small", args.out, cases, large_text)
    for name, doc in small_variants(small_doc).items():
        write_fixture(None, doc, name, args.out, cases, large_text)

    start = time.time()
    large = train(files, 50280 - 23)
    large.add_tokens([AddedToken(" " * n, normalized=True, special=False)
                      for n in range(24, 1, -1)])
    print(f"trained neox50k in {time.time() - start:.0f} s", flush=True)
    write_fixture(large, json.loads(large.to_str()), "neox50k", args.out, cases, large_text)

    found = cached_tokenizers()
    if not found:
        print("no GPT-2/NeoX-family tokenizer.json in the Hugging Face cache; skipped")
    for repo, path in list(found.items())[:3]:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
        name = "cached_" + repo.replace("--", "_").replace(".", "_").replace("-", "_").lower()
        try:
            write_fixture(Tokenizer.from_file(path), doc, name, args.out, cases, large_text)
        except Exception as e:  # a cached file this version cannot load is not our fixture
            print(f"{repo}: skipped ({e})")


if __name__ == "__main__":
    main()
