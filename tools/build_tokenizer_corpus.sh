#!/usr/bin/env bash
# Builds the English text corpus that tools/make_tokenizer_fixtures.py trains its tokenizers on,
# from Debian packages (sources and licences: tests/data/tokenizer/README.md). About 22 MB of
# UTF-8 text in a few *.txt files, plus SOURCES naming the package versions used.
#
#   tools/build_tokenizer_corpus.sh OUT_DIR
#
# Installs the packages it needs when run as root (apt-get); otherwise says which are missing.
# They are only needed to build the corpus, not to build or test mamba-serve. The
# SentencePiece-converted fixtures (make_tokenizer_fixtures.py --families spm) need no corpus:
# they train on tests/data/tokenizer/large_input.txt.gz.
set -euo pipefail

out=${1:?usage: tools/build_tokenizer_corpus.sh OUT_DIR}
packages=(bible-kjv bible-kjv-text fortunes fortunes-min jargon-text python3-doc gnu-standards)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing packages: ${missing[*]} (run as root, or apt-get install them)" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

mkdir -p "$out"
rm -f "$out"/*.txt

# King James Bible (public domain): one verse per line; drop the "Ge1:1 " references.
bible -f "gen1:1-rev22:21" | sed -E 's/^[0-9A-Za-z]+[0-9]+:[0-9]+ //' >"$out/kjv.txt"

# Fortune cookie databases (BSD), UTF-8 versions; "%" lines separate the entries.
for f in /usr/share/games/fortunes/*.u8; do
  sed -e 's/^%$//' "$f"
  echo
done >"$out/fortunes.txt"

# The Jargon File (public domain).
zcat /usr/share/doc/jargon-text/jargon.txt.gz >"$out/jargon.txt"

# Python's documentation sources (PSF licence): English prose with code.
py_sources=$(find /usr/share/doc/python3*/html/_sources -maxdepth 0 -type d 2>/dev/null | head -n1 || true)
if [ -z "$py_sources" ]; then
  py_sources=$(dpkg -L python3-doc | grep -m1 '/_sources$' || true)
fi
find -L "$py_sources" -name '*.txt' | LC_ALL=C sort | while read -r f; do
  cat "$f"
  printf '\n\n'
done >"$out/python_docs.txt"

# GNU Coding Standards and Information for Maintainers of GNU Software (GFDL).
zcat /usr/share/doc/gnu-standards/standards.text.gz /usr/share/doc/gnu-standards/maintain.text.gz \
  >"$out/gnu_standards.txt"

# Free-software licence texts shipped with every Debian system.
for f in GPL-3 LGPL-3 Apache-2.0 MPL-2.0 Artistic GFDL-1.3; do
  [ -f "/usr/share/common-licenses/$f" ] && cat "/usr/share/common-licenses/$f" && printf '\n\n'
done >"$out/licenses.txt"

# Keep only valid UTF-8 (a few fortunes are Latin-1 in places).
for f in "$out"/*.txt; do
  iconv -f UTF-8 -t UTF-8 -c "$f" >"$f.tmp" && mv "$f.tmp" "$f"
done

{
  echo "Built by tools/build_tokenizer_corpus.sh on $(date -u +%Y-%m-%d) from:"
  dpkg-query -W -f='  ${Package} ${Version}\n' "${packages[@]}"
  echo
  wc -c "$out"/*.txt
} >"$out/SOURCES"
cat "$out/SOURCES"
