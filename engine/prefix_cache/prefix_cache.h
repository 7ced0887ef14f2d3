// The prefix state cache: states after known token sequences, kept so that a stateless request
// whose input starts with one of them resumes from a copy of that state and prefills only the
// rest. An entry is a snapshot of the state after exactly its tokens, owned by the tenant that made
// it (no other tenant ever hits it: the time saved would tell it what others sent). Entries live
// in spare device slots and in host memory, each tier under its budget, least recently used out
// first; a cached entry is never modified (a hit copies it), so outputs with the cache equal
// outputs without it wherever the backend's prefill is chunk-invariant (bitwise on the CPU and in
// the CUDA backend's deterministic mode).
//
// Slots: the cache holds only slots that StatePlacement had free (TakeFreeSlot); when placement
// needs a slot for a session or a request and none is free, it asks the cache first
// (SlotReclaimer), which moves its least recently used device entry to host memory (or drops it)
// and hands the slot over. An entry pinned by a lookup is never moved or dropped until it has
// been restored or unpinned.
//
// Thread-safety: everything runs on the scheduler thread, except Stats() (any thread).
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/types/span.h"
#include "engine/backend/backend.h"
#include "engine/prefix_cache/prefix_cache_options.h"
#include "engine/prefix_cache/prefix_tree.h"
#include "engine/sessions/state_placement.h"

namespace mamba::prefix_cache {

struct PrefixCacheStats {
  int64_t lookups = 0;      // stateless requests that looked
  int64_t hits = 0;         // ... and found a prefix
  int64_t hit_tokens = 0;   // tokens not prefilled thanks to hits
  int64_t insertions = 0;   // entries made
  int64_t evictions_to_host = 0;  // device entries moved to host memory
  int64_t evictions_dropped = 0;  // entries dropped (either tier)
  int64_t device_entries = 0;
  int64_t device_bytes = 0;
  int64_t host_entries = 0;
  int64_t host_bytes = 0;
};

class PrefixCache final : public sessions::SlotReclaimer {
 public:
  // Registers itself as `placement`'s reclaimer. Neither pointer is owned; both must outlive it.
  PrefixCache(backend::Backend* backend, sessions::StatePlacement* placement,
              const PrefixCacheOptions& options);
  ~PrefixCache() override;
  PrefixCache(const PrefixCache&) = delete;
  PrefixCache& operator=(const PrefixCache&) = delete;

  bool enabled() const { return enabled_; }
  int32_t interval() const { return interval_; }

  // A pinned entry found by Lookup.
  struct Hit {
    uint64_t entry = 0;
    int64_t length = 0;  // tokens of `tokens` it covers
  };
  // The longest cached prefix of `tokens` of at most `max_length` tokens of `tenant`'s entries,
  // pinned until Restore (which counts the hit) or Unpin.
  std::optional<Hit> Lookup(const std::string& tenant, absl::Span<const int32_t> tokens,
                            int64_t max_length);
  // Copies the hit's state into `slot` and unpins it.
  absl::Status Restore(const Hit& hit, int32_t slot);
  void Unpin(const Hit& hit);
  // Counts a stateless request that looked (once, when it got its slot, hit or not).
  void CountLookup() { lookups_.fetch_add(1, std::memory_order_relaxed); }

  // Whether `tenant` has an entry of exactly `tokens`.
  bool Contains(const std::string& tenant, absl::Span<const int32_t> tokens) const;

  // Keeps a copy of `slot`'s state, which holds exactly `tokens`: in a free device slot when the
  // device budget allows (moving the least recently used device entry to host to make room),
  // else in host memory, else not at all. A no-op when the entry exists (it is marked used).
  void Snapshot(const std::string& tenant, absl::Span<const int32_t> tokens, int32_t slot);
  // Takes `slot` itself (a finished request's, holding exactly `tokens`) as a device entry: true
  // when it did (the slot is the cache's now), false when the caller keeps it (the entry exists,
  // or the device budget is 0; then a host copy may still be kept).
  bool Adopt(const std::string& tenant, absl::Span<const int32_t> tokens, int32_t slot);

  // SlotReclaimer: frees the least recently used unpinned device entry's slot (the entry moves to
  // host memory, or is dropped when that is full) and returns it.
  std::optional<int32_t> ReclaimSlot() override;

  // Drops every entry (the engine's shutdown; tests).
  void Clear();

  PrefixCacheStats Stats() const;

 private:
  struct Entry {
    std::string tenant;
    std::vector<int32_t> tokens;
    int32_t slot = -1;                         // device tier
    std::unique_ptr<backend::HostState> host;  // host tier
    uint64_t last_used = 0;
    int32_t pins = 0;
  };

  PrefixTree& TreeOf(const std::string& tenant);
  const PrefixTree* FindTree(const std::string& tenant) const;
  // Adds an entry for (tenant, tokens) held by `slot` or `host`.
  void AddEntry(const std::string& tenant, absl::Span<const int32_t> tokens, int32_t slot,
                std::unique_ptr<backend::HostState> host);
  // Removes entry `id` from its tier and the tree (its slot, if any, back to placement unless
  // `keep_slot`; then returned).
  int32_t RemoveEntry(uint64_t id, bool keep_slot);
  // The least recently used unpinned entry of a tier (device: slot >= 0), or 0.
  uint64_t LeastRecentlyUsed(bool device) const;
  // Moves device entry `id` to host memory (dropping it when the host tier cannot take it) and
  // returns its slot, which the caller now owns.
  int32_t Demote(uint64_t id);
  // A host state for a new host entry, evicting the least recently used host entries as needed;
  // null when the host tier has no room at all.
  std::unique_ptr<backend::HostState> HostRoom();
  void PublishStats();

  backend::Backend* const backend_;
  sessions::StatePlacement* const placement_;
  const bool enabled_;
  const int32_t interval_;
  const int64_t state_bytes_;
  const int64_t device_capacity_;  // entries
  const int64_t host_capacity_;    // entries

  absl::flat_hash_map<std::string, std::unique_ptr<PrefixTree>> trees_;
  std::map<uint64_t, Entry> entries_;
  uint64_t next_id_ = 1;
  uint64_t clock_ = 0;
  int64_t device_entries_ = 0;
  int64_t host_entries_ = 0;
  // Host states of removed host entries, reused by the next ones (at most the host tier's
  // capacity, entries included).
  std::vector<std::unique_ptr<backend::HostState>> spare_host_;

  std::atomic<int64_t> lookups_{0}, hits_{0}, hit_tokens_{0}, insertions_{0};
  std::atomic<int64_t> evictions_to_host_{0}, evictions_dropped_{0};
  std::atomic<int64_t> device_entries_stat_{0}, host_entries_stat_{0};
};

}  // namespace mamba::prefix_cache
