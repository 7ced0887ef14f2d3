#include "engine/tokenizer/bpe_model.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "engine/tokenizer/byte_level_alphabet.h"
#include "engine/tokenizer/unicode_classes.h"

namespace mamba::tokenizer::internal {
namespace {

std::atomic<uint64_t> next_cache_owner{1};

// Words longer than this are encoded without the cache (long runs of one character would
// otherwise fill it with entries that never repeat).
constexpr size_t kMaxCachedWordBytes = 64;
// The cache is cleared when it holds this many words. Its table starts small and doubles, so a
// thread that encodes short prompts keeps a small one; at most it takes about 3 MB plus the
// words and their ids.
constexpr size_t kMaxCachedWords = size_t{1} << 16;
constexpr size_t kInitialCacheSlots = 1024;

// A short-string hash (multiply-xorshift over 8-byte loads); never 0, which marks empty slots.
// Words are a few bytes long, so the tail is read with two overlapping loads, not a loop.
inline uint64_t HashWord(std::string_view word) {
  const auto* p = reinterpret_cast<const unsigned char*>(word.data());
  size_t n = word.size();
  uint64_t h = 0x9e3779b97f4a7c15ull ^ (n * 0xff51afd7ed558ccdull);
  auto mix = [&h](uint64_t v) {
    h = (h ^ v) * 0xbf58476d1ce4e5b9ull;
    h ^= h >> 29;
  };
  for (; n > 8; n -= 8, p += 8) {
    uint64_t v;
    std::memcpy(&v, p, 8);
    mix(v);
  }
  uint64_t v;
  if (n >= 4) {
    uint32_t a, b;
    std::memcpy(&a, p, 4);
    std::memcpy(&b, p + n - 4, 4);
    v = (static_cast<uint64_t>(a) << 32) | b;
  } else if (n > 0) {
    v = p[0] | (static_cast<uint64_t>(p[n / 2]) << 8) | (static_cast<uint64_t>(p[n - 1]) << 16);
  } else {
    v = 0;
  }
  mix(v);
  h *= 0x94d049bb133111ebull;
  h ^= h >> 32;
  return h | 1;
}

// memcmp for short words, without the call.
inline bool SameBytes(const char* a, const char* b, size_t n) {
  for (; n >= 8; n -= 8, a += 8, b += 8) {
    uint64_t x, y;
    std::memcpy(&x, a, 8);
    std::memcpy(&y, b, 8);
    if (x != y) return false;
  }
  for (; n > 0; --n, ++a, ++b) {
    if (*a != *b) return false;
  }
  return true;
}

// Encoded words of the model last used on this thread, in an open-addressing table (linear
// probing) whose keys and values live in two arenas: one lookup costs a hash, a probe or two and
// a memcmp, with no allocation.
class WordCache {
 public:
  // The ids of `word` if cached, else nullptr; *count gets their number.
  const int32_t* Find(uint64_t owner, std::string_view word, uint64_t hash, size_t* count) const {
    if (owner != owner_ || slots_.empty()) return nullptr;
    const size_t mask = slots_.size() - 1;
    for (size_t i = hash & mask;; i = (i + 1) & mask) {
      const Slot& slot = slots_[i];
      if (slot.hash == 0) return nullptr;
      if (slot.hash == hash && slot.word_len == word.size() &&
          SameBytes(words_.data() + slot.word_offset, word.data(), word.size())) {
        *count = slot.num_ids;
        return ids_.data() + slot.ids_offset;
      }
    }
  }

  void Insert(uint64_t owner, std::string_view word, uint64_t hash, const int32_t* ids,
              size_t count) {
    if (owner != owner_ || size_ >= kMaxCachedWords) Reset(owner);
    if (2 * (size_ + 1) > slots_.size()) Grow();
    Place(Slot{hash, static_cast<uint32_t>(words_.size()), static_cast<uint32_t>(ids_.size()),
               static_cast<uint16_t>(word.size()), static_cast<uint16_t>(count)});
    words_.append(word);
    ids_.insert(ids_.end(), ids, ids + count);
    ++size_;
  }

 private:
  struct Slot {
    uint64_t hash;  // 0: empty
    uint32_t word_offset;
    uint32_t ids_offset;
    uint16_t word_len;
    uint16_t num_ids;
  };

  void Place(const Slot& slot) {
    const size_t mask = slots_.size() - 1;
    size_t i = slot.hash & mask;
    while (slots_[i].hash != 0) i = (i + 1) & mask;
    slots_[i] = slot;
  }

  void Grow() {
    std::vector<Slot> old;
    old.swap(slots_);
    slots_.assign(old.empty() ? kInitialCacheSlots : old.size() * 2, Slot{});
    for (const Slot& slot : old) {
      if (slot.hash != 0) Place(slot);
    }
  }

  void Reset(uint64_t owner) {
    owner_ = owner;
    slots_.clear();
    words_.clear();
    ids_.clear();
    size_ = 0;
  }

  uint64_t owner_ = 0;
  std::vector<Slot> slots_;  // size: 0 or a power of two
  std::string words_;
  std::vector<int32_t> ids_;
  size_t size_ = 0;
};

struct Symbol {
  int32_t id;
  int32_t prev;  // index of the previous live symbol, -1 at the start
  int32_t next;  // index of the next live symbol, -1 at the end
  int32_t len;   // bytes covered; 0 marks a symbol merged into its left neighbour
};

struct MergeCandidate {
  uint32_t rank;
  uint32_t pos;  // index of the left symbol
  int32_t new_id;
};

// Orders a std:: heap so that the top is the lowest rank, then the leftmost position.
struct LaterCandidate {
  bool operator()(const MergeCandidate& a, const MergeCandidate& b) const {
    return a.rank != b.rank ? a.rank > b.rank : a.pos > b.pos;
  }
};

struct MergeScratch {
  std::vector<Symbol> symbols;
  std::vector<MergeCandidate> heap;
};

thread_local WordCache word_cache;
thread_local MergeScratch merge_scratch;

inline uint64_t PairKey(int32_t left, int32_t right) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right);
}

inline uint64_t CharacterPairKey(char32_t left, char32_t right) {
  return (static_cast<uint64_t>(left) << 32) | static_cast<uint64_t>(right);
}

inline void AddSymbol(std::vector<Symbol>* symbols, int32_t id, int32_t len) {
  const auto index = static_cast<int32_t>(symbols->size());
  if (index > 0) symbols->back().next = index;
  symbols->push_back(Symbol{id, index - 1, -1, len});
}

// The spelling of byte-fallback tokens: "<0x" + two upper-case hex digits + ">".
std::string ByteTokenName(int b) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  return std::string{'<', '0', 'x', kHex[b >> 4], kHex[b & 15], '>'};
}

}  // namespace

absl::StatusOr<BpeModel> BpeModel::Create(
    const absl::flat_hash_map<std::string, int32_t>& vocab,
    const std::vector<std::pair<std::string, std::string>>& merges, BpeOptions options) {
  BpeModel model;
  model.cache_owner_ = next_cache_owner.fetch_add(1);
  model.options_ = options;
  std::fill(std::begin(model.byte_ids_), std::end(model.byte_ids_), -1);
  std::fill(std::begin(model.ascii_ids_), std::end(model.ascii_ids_), -1);
  std::fill(std::begin(model.fallback_ids_), std::end(model.fallback_ids_), -1);
  if (options.byte_level) {
    for (int b = 0; b < 256; ++b) {
      std::string token;
      AppendUtf8(ByteToCodePoint(static_cast<uint8_t>(b)), &token);
      const auto it = vocab.find(token);
      model.byte_ids_[b] = it == vocab.end() ? -1 : it->second;
    }
  } else {
    for (const auto& [token, id] : vocab) {
      if (token.empty()) continue;
      size_t next;
      const char32_t c = DecodeCodePoint(token, 0, &next);
      if (next != token.size()) continue;
      if (c < 0x80) {
        model.ascii_ids_[c] = id;
      } else {
        model.char_ids_[c] = id;
      }
    }
    if (options.byte_fallback) {
      for (int b = 0; b < 256; ++b) {
        const auto it = vocab.find(ByteTokenName(b));
        if (it != vocab.end()) model.fallback_ids_[b] = it->second;
      }
    }
  }
  model.merges_.reserve(merges.size());
  std::string merged;
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const auto& [left, right] = merges[rank];
    const auto left_it = vocab.find(left);
    if (left_it == vocab.end()) {
      return absl::InvalidArgumentError(absl::StrCat("merge ", rank, " (\"", left, " ", right,
                                                     "\") uses \"", left,
                                                     "\", which is not in the vocabulary"));
    }
    const auto right_it = vocab.find(right);
    if (right_it == vocab.end()) {
      return absl::InvalidArgumentError(absl::StrCat("merge ", rank, " (\"", left, " ", right,
                                                     "\") uses \"", right,
                                                     "\", which is not in the vocabulary"));
    }
    merged.assign(left);
    merged.append(right);
    const auto merged_it = vocab.find(merged);
    if (merged_it == vocab.end()) {
      return absl::InvalidArgumentError(absl::StrCat("merge ", rank, " (\"", left, " ", right,
                                                     "\") makes \"", merged,
                                                     "\", which is not in the vocabulary"));
    }
    model.merges_.insert_or_assign(
        PairKey(left_it->second, right_it->second),
        (static_cast<uint64_t>(rank) << 32) | static_cast<uint32_t>(merged_it->second));
    // An empty side never stands for a symbol, so such a merge never applies.
    if (!options.byte_level && !left.empty() && !right.empty()) {
      size_t next;
      const char32_t last = DecodeCodePoint(left, PreviousCodePointStart(left, left.size()), &next);
      const char32_t first = DecodeCodePoint(right, 0, &next);
      model.junctions_.insert(CharacterPairKey(last, first));
    }
  }
  if (options.ignore_merges) {
    if (options.byte_level) {
      std::string bytes;
      for (const auto& [token, id] : vocab) {
        if (AlphabetToBytes(token, &bytes)) model.raw_vocab_.insert_or_assign(bytes, id);
      }
    } else {
      model.raw_vocab_.insert(vocab.begin(), vocab.end());
    }
  }
  return model;
}

void BpeModel::EncodeWord(std::string_view word, std::vector<int32_t>* out) const {
  if (!options_.byte_level) {
    EncodeCharacterWord(word, out);
    return;
  }
  if (word.size() == 1) {
    const int32_t id = byte_ids_[static_cast<uint8_t>(word[0])];
    if (id >= 0) {
      out->push_back(id);
      return;
    }
  }
  if (options_.ignore_merges) {
    const absl::string_view key(word.data(), word.size());
    const auto it = raw_vocab_.find(key);
    if (it != raw_vocab_.end()) {
      out->push_back(it->second);
      return;
    }
  }
  if (word.size() > kMaxCachedWordBytes) {
    MergeWord(word, out);
    return;
  }
  WordCache& cache = word_cache;
  const uint64_t hash = HashWord(word);
  size_t count = 0;
  if (const int32_t* ids = cache.Find(cache_owner_, word, hash, &count); ids != nullptr) {
    for (size_t i = 0; i < count; ++i) out->push_back(ids[i]);
    return;
  }
  const size_t first = out->size();
  MergeWord(word, out);
  cache.Insert(cache_owner_, word, hash, out->data() + first, out->size() - first);
}

void BpeModel::MergeWord(std::string_view word, std::vector<int32_t>* out) const {
  std::vector<Symbol>& symbols = merge_scratch.symbols;
  symbols.clear();
  // Unknown bytes: pending unk symbol (fused over a run when fuse_unk), as merge_word does.
  int32_t pending_unk_len = 0;
  for (char c : word) {
    const int32_t id = byte_ids_[static_cast<uint8_t>(c)];
    if (id >= 0) {
      if (pending_unk_len > 0) {
        AddSymbol(&symbols, *options_.unk_id, pending_unk_len);
        pending_unk_len = 0;
      }
      AddSymbol(&symbols, id, 1);
    } else if (options_.unk_id.has_value()) {
      if (pending_unk_len > 0 && !options_.fuse_unk) {
        AddSymbol(&symbols, *options_.unk_id, pending_unk_len);
        pending_unk_len = 0;
      }
      pending_unk_len += 1;
    }
  }
  if (pending_unk_len > 0) AddSymbol(&symbols, *options_.unk_id, pending_unk_len);
  MergeSymbols(out);
}

void BpeModel::EncodeCharacterWord(std::string_view word, std::vector<int32_t>* out) const {
  if (options_.ignore_merges) {
    const auto it = raw_vocab_.find(absl::string_view(word.data(), word.size()));
    if (it != raw_vocab_.end()) {
      out->push_back(it->second);
      return;
    }
  }
  if (word.size() <= kMaxCachedWordBytes) {
    EncodeCharacterPart(word, out);
    return;
  }
  // A long word (a whole piece of text, without a pre-tokenizer): cut it where no merge can
  // join the characters on both sides, so that its parts are merged alone and cached.
  size_t part_start = 0;
  char32_t previous = 0;
  bool previous_known = false;
  for (size_t i = 0; i < word.size();) {
    size_t next;
    const char32_t c = DecodeCodePoint(word, i, &next);
    const bool known = CharacterId(c) >= 0;
    if (i > part_start && previous_known && known &&
        !junctions_.contains(CharacterPairKey(previous, c))) {
      EncodeCharacterPart(word.substr(part_start, i - part_start), out);
      part_start = i;
    }
    previous = c;
    previous_known = known;
    i = next;
  }
  EncodeCharacterPart(word.substr(part_start), out);
}

void BpeModel::EncodeCharacterPart(std::string_view part, std::vector<int32_t>* out) const {
  if (part.size() == 1 && static_cast<uint8_t>(part[0]) < 0x80) {
    const int32_t id = ascii_ids_[static_cast<uint8_t>(part[0])];
    if (id >= 0) {
      out->push_back(id);
      return;
    }
  }
  if (part.size() > kMaxCachedWordBytes) {
    MergeCharacters(part, out);
    return;
  }
  WordCache& cache = word_cache;
  const uint64_t hash = HashWord(part);
  size_t count = 0;
  if (const int32_t* ids = cache.Find(cache_owner_, part, hash, &count); ids != nullptr) {
    for (size_t i = 0; i < count; ++i) out->push_back(ids[i]);
    return;
  }
  const size_t first = out->size();
  MergeCharacters(part, out);
  cache.Insert(cache_owner_, part, hash, out->data() + first, out->size() - first);
}

void BpeModel::MergeCharacters(std::string_view word, std::vector<int32_t>* out) const {
  std::vector<Symbol>& symbols = merge_scratch.symbols;
  symbols.clear();
  int32_t pending_unk_len = 0;
  for (size_t i = 0; i < word.size();) {
    size_t next;
    const char32_t c = DecodeCodePoint(word, i, &next);
    const auto len = static_cast<int32_t>(next - i);
    const int32_t id = CharacterId(c);
    if (id >= 0) {
      if (pending_unk_len > 0) {
        AddSymbol(&symbols, *options_.unk_id, pending_unk_len);
        pending_unk_len = 0;
      }
      AddSymbol(&symbols, id, len);
      i = next;
      continue;
    }
    bool all_bytes = options_.byte_fallback;
    for (size_t k = i; all_bytes && k < next; ++k) {
      all_bytes = fallback_ids_[static_cast<uint8_t>(word[k])] >= 0;
    }
    if (all_bytes) {
      // The reference adds the byte tokens without first adding an unk still pending for the
      // characters before (it comes after them); reproduced.
      for (size_t k = i; k < next; ++k) {
        AddSymbol(&symbols, fallback_ids_[static_cast<uint8_t>(word[k])], 1);
      }
    } else if (options_.unk_id.has_value()) {
      if (pending_unk_len > 0 && !options_.fuse_unk) {
        AddSymbol(&symbols, *options_.unk_id, pending_unk_len);
        pending_unk_len = 0;
      }
      pending_unk_len += len;
    }
    i = next;
  }
  if (pending_unk_len > 0) AddSymbol(&symbols, *options_.unk_id, pending_unk_len);
  MergeSymbols(out);
}

void BpeModel::MergeSymbols(std::vector<int32_t>* out) const {
  MergeScratch& scratch = merge_scratch;
  std::vector<Symbol>& symbols = scratch.symbols;
  std::vector<MergeCandidate>& heap = scratch.heap;
  heap.clear();
  for (size_t i = 0; i + 1 < symbols.size(); ++i) {
    const auto it = merges_.find(PairKey(symbols[i].id, symbols[i + 1].id));
    if (it != merges_.end()) {
      heap.push_back({static_cast<uint32_t>(it->second >> 32), static_cast<uint32_t>(i),
                      static_cast<int32_t>(it->second & 0xffffffffu)});
    }
  }
  std::make_heap(heap.begin(), heap.end(), LaterCandidate());
  auto push = [&heap](uint64_t merge, int32_t pos) {
    heap.push_back({static_cast<uint32_t>(merge >> 32), static_cast<uint32_t>(pos),
                    static_cast<int32_t>(merge & 0xffffffffu)});
    std::push_heap(heap.begin(), heap.end(), LaterCandidate());
  };
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), LaterCandidate());
    const MergeCandidate top = heap.back();
    heap.pop_back();
    Symbol& left = symbols[top.pos];
    if (left.len == 0 || left.next == -1) continue;
    const int32_t right_pos = left.next;
    const Symbol right = symbols[right_pos];
    // Skip candidates made stale by earlier merges: the pair there must still merge into the
    // same token (the reference compares the merged id, not the rank).
    const auto it = merges_.find(PairKey(left.id, right.id));
    if (it == merges_.end() || static_cast<int32_t>(it->second & 0xffffffffu) != top.new_id) {
      continue;
    }
    left.id = top.new_id;
    left.len += right.len;
    left.next = right.next;
    symbols[right_pos].len = 0;
    if (right.next >= 0) symbols[right.next].prev = static_cast<int32_t>(top.pos);
    const Symbol current = symbols[top.pos];
    if (current.prev >= 0) {
      const auto prev_it = merges_.find(PairKey(symbols[current.prev].id, current.id));
      if (prev_it != merges_.end()) push(prev_it->second, current.prev);
    }
    if (current.next >= 0) {
      const auto next_it = merges_.find(PairKey(current.id, symbols[current.next].id));
      if (next_it != merges_.end()) push(next_it->second, static_cast<int32_t>(top.pos));
    }
  }
  for (const Symbol& symbol : symbols) {
    if (symbol.len != 0) out->push_back(symbol.id);
  }
}

}  // namespace mamba::tokenizer::internal
