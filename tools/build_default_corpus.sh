#!/usr/bin/env bash
# Builds the English training corpus of the embedded default model from public-domain and freely
# licensed text that Debian packages ship, installing those packages when they are missing.
#
#   tools/build_default_corpus.sh [OUT_DIR]      (default: .gpufix/default_corpus)
#
# Writes into OUT_DIR:
#   train.txt            training documents
#   heldout.txt          held-out documents (whole documents: Bible chapters, dictionary entries,
#                        commentary sections, fortunes; never seen in training)
#   heldout_sample.txt   about 24 KB of held-out text from the public-domain sources only; the
#                        committed copy is tests/data/default_model/heldout.txt
#   SOURCES.md           each source: Debian package, version, licence, what was taken, sizes
#   corpus.json          the same, machine-readable (the training script records it)
# Documents in train.txt / heldout.txt end with a newline and are separated by a line holding only
# "<|endoftext|>" (the trainer turns it into token 256). Text is UTF-8 with "\n" line endings.
# The output depends only on the package versions: rerunning gives the same bytes.
set -euo pipefail
cd "$(dirname "$0")/.."

OUT_DIR="${1:-.gpufix/default_corpus}"

# Debian package -> what it provides. sword-text-kjv is the King James Version as a SWORD module
# (the same text as bible-kjv-text, but with paragraph markup); libsword-utils has mod2imp, which
# dumps a SWORD module's raw entries.
PACKAGES=(sword-text-web sword-text-kjv sword-comm-tdavid libsword-utils dict-devil jargon-text
  fortunes python3)

command -v dpkg-query >/dev/null || {
  echo "corpus: needs a Debian-based system (the texts come from Debian packages)" >&2; exit 1; }
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "corpus: installing ${missing[*]}"
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then
    if ! command -v sudo >/dev/null; then
      echo "corpus: need root or sudo to install ${missing[*]}" >&2
      exit 1
    fi
    SUDO="sudo"
  fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

versions="$WORK/versions.tsv"
for p in "${PACKAGES[@]}"; do
  printf '%s\t%s\n' "$p" "$(dpkg-query -W -f='${Version}' "$p")" >>"$versions"
done

for m in engWEB2015eb engKJV2006eb TDavid; do
  mod2imp "$m" >"$WORK/$m.imp" 2>"$WORK/$m.err" || {
    echo "corpus: mod2imp $m failed:" >&2; cat "$WORK/$m.err" >&2; exit 1; }
  [ -s "$WORK/$m.imp" ] || { echo "corpus: mod2imp $m wrote nothing" >&2; exit 1; }
done
zcat /usr/share/dictd/devil.dict.dz >"$WORK/devil.txt"
zcat /usr/share/doc/jargon-text/jargon.txt.gz >"$WORK/jargon.txt"

mkdir -p "$OUT_DIR"
python3 - "$WORK" "$OUT_DIR" "$versions" <<'PYTHON'
import hashlib
import html
import json
import os
import re
import sys

work, out_dir, versions_path = sys.argv[1:4]
versions = dict(line.rstrip("\n").split("\t") for line in open(versions_path, encoding="utf-8"))

EOT = "<|endoftext|>"
HELDOUT_FRACTION = 0.02     # of document keys
SAMPLE_TARGET_BYTES = 24000  # the committed held-out sample the C++ test scores
SAMPLE_DOC_MAX = 5000        # no single document dominates the sample
FORTUNES_DIR = "/usr/share/games/fortunes"
# Fortune files taken. Debian ships them under the BSD licence of fortune-mod (see SOURCES.md);
# left out: files made mostly of song lyrics, TV scripts, comic strips or a published book
# (songs-poems, startrek, zippy, tao, pratchett, humorists, art), chat logs (knghtbrd, linux,
# linuxcookie, debian, perl), ASCII art, untranslated quotes, and ethnic jokes.
FORTUNE_FILES = [
    "computers", "cookie", "definitions", "drugs", "education", "food", "fortunes", "goedel",
    "kids", "law", "literature", "love", "magic", "medicine", "men-women", "miscellaneous", "news",
    "people", "pets", "platitudes", "politics", "riddles", "science", "sports", "wisdom", "work",
]

# Typographic punctuation folded to ASCII, so the model sees one spelling of each mark.
TYPOGRAPHY = str.maketrans({
    "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u2032": "'",
    "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u201f": '"', "\u2033": '"',
    "\u2013": "-", "\u2010": "-", "\u2011": "-", "\u2212": "-", "\u2014": "--", "\u2015": "--",
    "\u2026": "...", "\u00a0": " ", "\u2002": " ", "\u2003": " ", "\u2009": " ", "\u200a": " ",
    "\u202f": " ", "\u00b4": "'", "\u00b6": "", "\u00b7": "", "\u200b": "", "\ufeff": "",
})


def tidy(text):
    """Normalizes whitespace and punctuation; keeps paragraph breaks ("\n\n")."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").translate(TYPOGRAPHY)
    text = re.sub(r".\x08", "", text)  # overstrike pairs in old fortunes
    text = text.replace("\t", " ")
    text = re.sub(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]", "", text)
    text = re.sub(r"[ ]+", " ", text)
    text = re.sub(r" *\n *", "\n", text)
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text.strip()


def reflow(lines):
    """Joins hard-wrapped prose lines; keeps short or indented lines (verse, lists) as they are."""
    out = []
    for line in lines:
        line = line.rstrip()
        if (out and out[-1] and line and not line[0].isspace() and len(out[-1]) >= 45
                and not out[-1][0].isspace()):
            out[-1] = out[-1] + " " + line
        else:
            out.append(line)
    return [l.strip() for l in out]


def is_english(text):
    non_ascii = sum(1 for c in text if ord(c) > 127)
    return non_ascii <= 0.01 * max(1, len(text)) and "\ufffd" not in text


# ---------------------------------------------------------------------------------------------
# SWORD modules (raw OSIS entries from mod2imp).

def read_imp(path):
    """Yields (key, markup) for every entry of a mod2imp dump."""
    key, buf = None, []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.startswith("$$$"):
                if key is not None:
                    yield key, "".join(buf)
                key, buf = line[3:].strip(), []
            else:
                buf.append(line)
    if key is not None:
        yield key, "".join(buf)


def osis_to_text(markup):
    s = re.sub(r"<note\b[^>]*/>", "", markup)
    # Footnotes and cross references go; a marker keeps the words on either side apart when the
    # module glued them together around the note ("God<note/>created").
    s = re.sub(r"<note\b.*?</note>", "\x00", s, flags=re.S)
    s = re.sub(r"<title\b[^>]*>", "\n\n", s)
    s = s.replace("</title>", "\n\n")
    s = re.sub(r'<div\b[^>]*subType="x-preverse"[^>]*/>', "", s)
    s = re.sub(r"<(?:div|chapter|lg|list|p)\b[^>]*/?>", "\n\n", s)
    s = re.sub(r"</(?:div|lg|list|p)>", "\n\n", s)
    # A poetry line (<l sID/> ... <l eID/>, or <l>...</l>) starts on a new line.
    s = re.sub(r"<l\b[^>]*\beID=[^>]*/>", "", s)
    s = re.sub(r"<(?:l|lb|item|row|br)\b[^>]*/?>", "\n", s)
    s = re.sub(r"</(?:l|item|row)>", "", s)
    s = re.sub(r"<cell\b[^>]*>", " ", s)
    s = re.sub(r"<[^>]*>", "", s)
    s = html.unescape(s)
    s = re.sub(r"(\w)\x00(\w)", r"\1 \2", s)
    return tidy(s.replace("\x00", ""))


VERSE_KEY = re.compile(r"^(.+) (\d+):(\d+)$")


def bible_chapters(imp_path):
    """(book, chapter) -> text, in canonical order; verse-0 entries (introductions) are left out."""
    chapters = {}
    for key, markup in read_imp(imp_path):
        m = VERSE_KEY.match(key)
        if not m or int(m.group(3)) == 0 or not markup.strip():
            continue
        chapters.setdefault((m.group(1), int(m.group(2))), []).append(markup.strip())
    return {k: osis_to_text(" ".join(v)) for k, v in chapters.items()}


def bible_docs(source, imp_name):
    docs = []
    for (book, chapter), text in bible_chapters(os.path.join(work, imp_name)).items():
        if text:
            docs.append((f"bible:{book}:{chapter}", f"{book} {chapter}\n\n{text}"))
    return docs


TDAVID_SKIP = re.compile(r"HINTS TO|WORKS UPON", re.I)


def tdavid_docs():
    """One document per section (overview, exposition, notes) of each psalm; sermon hints and
    bibliographies are left out."""
    docs = []
    for key, markup in read_imp(os.path.join(work, "TDavid.imp")):
        m = VERSE_KEY.match(key)
        if not m or not markup.strip():
            continue
        parts = re.split(r'<title type="x-s">(.*?)</title>', markup)
        for i in range(1, len(parts) - 1, 2):
            title = tidy(re.sub(r"<[^>]*>", "", parts[i])).rstrip(".")
            if TDAVID_SKIP.search(title):
                continue
            body = osis_to_text(parts[i + 1])
            # Psalm 119's parts carry their sermon hints inline, after a "Psalms 119:N*" marker.
            kept = []
            for para in body.split("\n\n"):
                if re.match(r"HINTS TO", para, re.I):
                    break
                if not re.fullmatch(r"Psalms \d+:\d+\*?", para):
                    kept.append(para)
            body = "\n\n".join(kept)
            if len(body) < 200:
                continue
            heading = title if title.upper().startswith("PSALM") else f"Psalm {m.group(2)}: {title}"
            docs.append((f"tdavid:{m.group(2)}:{i // 2}", f"{heading}\n\n{body}"))
    return docs


# ---------------------------------------------------------------------------------------------
# Plain-text sources.

def paragraphs(lines):
    """Splits lines into blank-line separated paragraphs (lists of lines)."""
    paras, cur = [], []
    for line in lines:
        if line.strip():
            cur.append(line)
        elif cur:
            paras.append(cur)
            cur = []
    if cur:
        paras.append(cur)
    return paras


def render(paras):
    return tidy("\n\n".join("\n".join(reflow(p)) for p in paras))


DEVIL_ENTRY = re.compile(r"^[A-Z][A-Z'\-]+(?: [A-Z][A-Z'\-]+)*[,.]")


def devil_docs():
    lines = open(os.path.join(work, "devil.txt"), encoding="utf-8", errors="replace").read()
    lines = lines.split("\n")
    start = next(i for i, l in enumerate(lines) if l.strip() == "PREFACE")
    end = max(i for i, l in enumerate(lines) if l.strip().startswith("ZOOLOGY, n."))
    # The entry ZOOLOGY runs to the alphabet line dictfmt appends.
    while end < len(lines) and lines[end].strip() != "abcdefghijklmnopqrstuvwxyz":
        end += 1
    body = lines[start:end]
    docs, cur, name = [], [], "preface"
    for i, line in enumerate(body):
        if DEVIL_ENTRY.match(line) and (i == 0 or not body[i - 1].strip()):
            if cur:
                docs.append((f"devil:{name}", render(paragraphs(cur))))
            cur, name = [], re.split(r"[,.]", line, maxsplit=1)[0]
        cur.append(line)
    if cur:
        docs.append((f"devil:{name}", render(paragraphs(cur))))
    return docs


def jargon_docs():
    lines = open(os.path.join(work, "jargon.txt"), encoding="utf-8").read().split("\n")
    start = next(i for i, l in enumerate(lines) if l.startswith("   :"))
    end = next(i for i, l in enumerate(lines)
               if re.sub(r"\s+", " ", l).strip() == "Part III. Appendices")
    docs, cur, name = [], [], None
    for line in lines[start:end]:
        line = line[3:] if line.startswith("   ") else line.lstrip()
        m = re.match(r"^:(.+?):", line)
        if m:
            if cur:
                docs.append((f"jargon:{name}", cur))
            cur, name = [], m.group(1)
        cur.append(line)
    if cur:
        docs.append((f"jargon:{name}", cur))
    out = []
    for key, doc_lines in docs:
        # Drop the lists of entry names that separate letters of the lexicon: one short line
        # with no sentence punctuation.
        paras = [p for p in paragraphs(doc_lines)
                 if not (len(p) == 1 and len(p[0]) <= 40 and not re.search(r"[.?!:;,\"]", p[0]))]
        text = render(paras)
        text = re.sub(r"\{([^{}]*)\}", r"\1", text)  # {cross references}
        out.append((key, text))
    return out


def fortune_docs():
    docs, seen = [], set()
    for name in FORTUNE_FILES:
        raw = open(os.path.join(FORTUNES_DIR, name), "rb").read().decode("utf-8", errors="replace")
        for i, cookie in enumerate(re.split(r"\n%\n", raw.replace("\r\n", "\n"))):
            cookie = cookie.strip("%\n")
            text = render(paragraphs(cookie.split("\n")))
            norm = re.sub(r"\W+", " ", text).lower().strip()
            if len(text) < 10 or norm in seen:
                continue
            seen.add(norm)
            docs.append((f"fortunes:{name}:{i}", text))
    return docs


# ---------------------------------------------------------------------------------------------

SOURCES = [
    dict(id="web", title="World English Bible (with deuterocanon), SWORD module engWEB2015eb",
         package="sword-text-web", license="Public domain",
         license_note="\"The World English Bible is in the Public Domain\" "
                      "(/usr/share/doc/sword-text-web/copyright); the name is a trademark.",
         what="Every chapter as one document: paragraphs and poetry lines kept, verse numbers, "
              "footnotes and introductions left out.",
         docs=lambda: bible_docs("web", "engWEB2015eb.imp"), sample=True),
    dict(id="kjv", title="King James Version (1769 text), SWORD module engKJV2006eb",
         package="sword-text-kjv", license="Public domain",
         license_note="Module conf: \"DistributionLicense=Public Domain\"; the 1611 translation's "
                      "copyright has long expired.",
         what="Every chapter as one document, as for the WEB.",
         docs=lambda: bible_docs("kjv", "engKJV2006eb.imp"), sample=True),
    dict(id="tdavid",
         title="C. H. Spurgeon, The Treasury of David (1869-1885), SWORD module TDavid",
         package="sword-comm-tdavid", license="Public domain",
         license_note="\"This work's final volume was released in 1885. It is now in the public "
                      "domain.\" (/usr/share/doc/sword-comm-tdavid/copyright)",
         what="Overview, exposition and explanatory notes of each psalm, one document per section; "
              "the sermon outlines and bibliographies are left out.",
         docs=tdavid_docs, sample=True),
    dict(id="jargon", title="The Jargon File 4.4.7 (the lexicon)",
         package="jargon-text", license="Public domain",
         license_note="\"This document (the Jargon File) is in the public domain, to be freely "
                      "used, shared, and modified.\" (/usr/share/doc/jargon-text/copyright)",
         what="Every lexicon entry as one document, lines unwrapped, {cross-reference} braces "
              "removed; the front matter and appendices are left out.",
         docs=jargon_docs, sample=True),
    dict(id="devil", title="Ambrose Bierce, The Devil's Dictionary (1911)",
         package="dict-devil", license="Public domain",
         license_note="\"The Devil's Dictionary is in the public domain, its copyright has "
                      "expired.\" (/usr/share/doc/dict-devil/copyright)",
         what="The preface and every entry as one document, prose lines unwrapped, verse kept.",
         docs=devil_docs, sample=True),
    dict(id="fortunes", title="fortune-mod data files (selected)",
         package="fortunes", license="BSD-3-Clause (as distributed by Debian)",
         license_note="Debian's copyright file gives the BSD licence of fortune-mod for the "
                      "package and no other terms for the data files. They are collections of "
                      "short quotations whose authors keep their rights; we take only the files "
                      "listed here and leave out those made mostly of song lyrics, TV scripts, "
                      "comic strips, a published book or chat logs. These are used for training "
                      "only and are never committed (the held-out sample excludes them).",
         what="Files: " + ", ".join(FORTUNE_FILES) + ". One document per fortune, duplicates "
              "removed.",
         docs=fortune_docs, sample=False),
]


def key_hash(key):
    return int(hashlib.sha256(key.encode("utf-8")).hexdigest()[:12], 16) / float(16 ** 12)


def doc_group(key):
    # Both Bible translations share chapter keys, so a held-out chapter is held out in both.
    return key


train, heldout, per_source = [], [], []
sample_candidates = []
for src in SOURCES:
    docs = src["docs"]()
    kept = [(k, t) for k, t in docs if t and is_english(t)]
    for k, t in kept:
        if EOT in t:
            raise SystemExit(f"corpus: document {k} contains {EOT}")
    ho = [(k, t) for k, t in kept if key_hash(doc_group(k)) < HELDOUT_FRACTION]
    tr = [(k, t) for k, t in kept if key_hash(doc_group(k)) >= HELDOUT_FRACTION]
    if not tr or not ho:
        raise SystemExit(f"corpus: source {src['id']} gave {len(tr)} training and {len(ho)} "
                         "held-out documents; expected both to be non-empty")
    train.extend(tr)
    heldout.extend(ho)
    if src["sample"]:
        sample_candidates.append(
            sorted(ho, key=lambda d: key_hash(f"sample:{src['id']}:{d[0]}")))
    per_source.append(dict(
        id=src["id"], title=src["title"], package=src["package"],
        version=versions[src["package"]], license=src["license"],
        license_note=src["license_note"], what=src["what"],
        documents=len(kept), dropped_non_english=len(docs) - len(kept),
        train_documents=len(tr), heldout_documents=len(ho),
        train_bytes=sum(len(t.encode("utf-8")) + 1 for _, t in tr),
        heldout_bytes=sum(len(t.encode("utf-8")) + 1 for _, t in ho)))


def write_docs(path, docs):
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for i, (_, text) in enumerate(docs):
            if i:
                f.write(EOT + "\n")
            f.write(text + "\n")


def cut(text, limit):
    """The longest prefix of whole paragraphs within `limit` bytes (at least one paragraph)."""
    out = ""
    for para in text.split("\n\n"):
        candidate = para if not out else out + "\n\n" + para
        if out and len(candidate.encode("utf-8")) > limit:
            break
        out = candidate
    return out


# The held-out sample: documents from each public-domain source in turn.
sample, size, round_ = [], 0, 0
while size < SAMPLE_TARGET_BYTES and any(round_ < len(c) for c in sample_candidates):
    for cands in sample_candidates:
        if round_ < len(cands) and size < SAMPLE_TARGET_BYTES:
            piece = cut(cands[round_][1], SAMPLE_DOC_MAX)
            sample.append(piece)
            size += len(piece.encode("utf-8")) + 2
    round_ += 1

write_docs(os.path.join(out_dir, "train.txt"), train)
write_docs(os.path.join(out_dir, "heldout.txt"), heldout)
with open(os.path.join(out_dir, "heldout_sample.txt"), "w", encoding="utf-8", newline="\n") as f:
    f.write("\n\n".join(sample) + "\n")


def sha256(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


files = {name: dict(bytes=os.path.getsize(os.path.join(out_dir, name)),
                    sha256=sha256(os.path.join(out_dir, name)))
         for name in ("train.txt", "heldout.txt", "heldout_sample.txt")}
manifest = dict(format="documents separated by a line holding only <|endoftext|>",
                heldout_fraction_of_keys=HELDOUT_FRACTION, files=files, sources=per_source)
with open(os.path.join(out_dir, "corpus.json"), "w", encoding="utf-8") as f:
    json.dump(manifest, f, indent=1)
    f.write("\n")

md = ["# Sources of the default model's corpus", "",
      "Built by `tools/build_default_corpus.sh` from Debian packages. All text is English. "
      "Held-out documents are chosen by a hash of their key (a Bible chapter is held out in both "
      f"translations), {HELDOUT_FRACTION:.0%} of keys.", "",
      "| source | Debian package | version | licence | train | held out |",
      "|---|---|---|---|---|---|"]
for s in per_source:
    md.append(f"| {s['title']} | {s['package']} | {s['version']} | {s['license']} | "
              f"{s['train_documents']} docs, {s['train_bytes'] / 1e6:.2f} MB | "
              f"{s['heldout_documents']} docs, {s['heldout_bytes'] / 1e3:.0f} KB |")
md.append("")
for s in per_source:
    md += [f"## {s['title']}", "", f"- Package: `{s['package']}` {s['version']}",
           f"- Licence: {s['license']}. {s['license_note']}", f"- Taken: {s['what']}",
           f"- Documents dropped as not English: {s['dropped_non_english']}", ""]
md += ["## Files", ""]
for name, info in files.items():
    md.append(f"- `{name}`: {info['bytes']} bytes, sha256 `{info['sha256']}`")
md.append("")
with open(os.path.join(out_dir, "SOURCES.md"), "w", encoding="utf-8") as f:
    f.write("\n".join(md))

total = files["train.txt"]["bytes"] + files["heldout.txt"]["bytes"]
print(f"corpus: {out_dir}: train {files['train.txt']['bytes'] / 1e6:.2f} MB "
      f"({len(train)} docs), held out {files['heldout.txt']['bytes'] / 1e3:.0f} KB "
      f"({len(heldout)} docs), sample {files['heldout_sample.txt']['bytes']} bytes")
for s in per_source:
    print(f"  {s['id']:9s} {s['package']:18s} {s['version']:14s} "
          f"train {s['train_bytes'] / 1e6:6.2f} MB  held out {s['heldout_bytes'] / 1e3:6.0f} KB")
if not 5e6 <= total <= 30e6:
    raise SystemExit(f"corpus: {total / 1e6:.1f} MB is outside the intended 5-30 MB")
PYTHON
