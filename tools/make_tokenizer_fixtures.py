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

Run from the repository root on a machine with `tokenizers` installed:

  python3 tools/make_tokenizer_fixtures.py --corpus DIR --out tests/data/tokenizer

where DIR is made by tools/build_tokenizer_corpus.sh. Without `tokenizers`:

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


def random_cases(rng, count):
    cases = []
    for i in range(count):
        n = rng.randint(0, 24)
        cases.append((f"random_{i}", "".join(rng.choice(RANDOM_POOL) for _ in range(n))))
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


def write_fixture(tok, doc, name, out_dir, cases, large_text):
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
    large_ids = tok.encode(large_text, add_special_tokens=False).ids
    large_decoded = tok.decode(large_ids, skip_special_tokens=False)
    fixture = {
        "tokenizer": tok_file,
        "generator": f"tokenizers {tokenizers.__version__} (Python), "
                     f"tools/make_tokenizer_fixtures.py, {time.strftime('%Y-%m-%d')}",
        "vocab_size": tok.get_vocab_size(with_added_tokens=True),
        "cases": records,
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
    with open(os.path.join(folder, "cases.json"), "w", encoding="utf-8") as f:
        json.dump(fixture, f, ensure_ascii=True, indent=None, separators=(",", ":"))
        f.write("\n")
    print(f"{name}: {tok_file}, vocab {fixture['vocab_size']}, {len(records)} cases, "
          f"large input -> {len(large_ids)} ids", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", help="folder of *.txt files (tools/build_tokenizer_corpus.sh)")
    parser.add_argument("--out", default="tests/data/tokenizer")
    parser.add_argument("--print-cases", action="store_true",
                        help="print the case strings (fixed and random) as JSON and exit")
    args = parser.parse_args()
    cases = CASES + random_cases(random.Random(SEED), NUM_RANDOM_CASES)
    if args.print_cases:
        json.dump([{"name": n, "text": t} for n, t in cases], sys.stdout, ensure_ascii=True)
        print()
        return
    if not args.corpus:
        parser.error("--corpus is required")
    from tokenizers import Tokenizer
    from tokenizers import AddedToken
    os.makedirs(args.out, exist_ok=True)
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
