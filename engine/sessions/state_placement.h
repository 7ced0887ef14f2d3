// State placement: the one owner of where every recurrent state lives. A state is in a device
// slot, in host memory (an idle session moved off the device), or nowhere yet (a session that has
// seen no token: all zeros). Admission, fork, import, export, expiry and eviction all go through
// this class; nothing else changes a session's `where`, `slot` or `host`, or the free slots.
//
// Invariants (tests/unit/sessions/state_placement_test.cc checks each):
//  1. Every slot is in exactly one place: the free list, the device state of one live session
//     (where == kDevice, slot == s), or lent to one caller of AcquireZeroedSlot, AcquireSlot or
//     TakeFreeSlot (the prefix cache) until ReleaseSlot.
//  2. host_bytes() is the sum of the sizes of the live sessions' host states, and never exceeds
//     the host budget (SessionOptions::host_state_memory_gb).
//  3. A busy session is never moved or dropped by placement's own decisions (eviction, expiry);
//     only an explicit Drop removes one.
//  4. A state moves between a slot and host memory with its bytes unchanged.
//  5. When a slot is needed and none is free, the reclaimer (the prefix cache) gives one back if it
//     holds any; else the least recently used idle device session moves to host memory; when the host budget cannot take it even after dropping the oldest idle host
//     sessions, it is dropped (evicted: its id then reads as evicted, not unknown).
//  6. A request for room that cannot be met fails cleanly (no slot now / RESOURCE_EXHAUSTED) and
//     changes nothing but the evictions it made.
//
// Thread-safety: every method runs on the scheduler thread (the one that owns the backend), except
// the counters (any thread). Methods take the store's lock themselves unless they say otherwise.
#pragma once

#include <atomic>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "engine/api/engine_observer.h"
#include "engine/backend/backend.h"
#include "engine/sessions/session.h"
#include "engine/sessions/session_store.h"

namespace mamba::sessions {

// Placement's counters; any thread.
struct PlacementStats {
  int64_t slots_total = 0;
  int64_t slots_used = 0;
  int64_t host_bytes = 0;
  int64_t evictions_to_host = 0;
  int64_t evictions_dropped = 0;
  int64_t restores_from_host = 0;
};

// Something besides sessions and requests that holds slots it can give back on demand (the prefix
// cache): placement asks it before moving a session off the device.
class SlotReclaimer {
 public:
  virtual ~SlotReclaimer() = default;
  // Frees one slot it holds and returns it (now the caller's), or nullopt when it holds none.
  virtual std::optional<int32_t> ReclaimSlot() = 0;
};

class StatePlacement {
 public:
  // Every slot of `backend` starts free. `observer` (may be null) hears of evictions. None of
  // the pointers is owned; all must outlive this object.
  StatePlacement(backend::Backend* backend, SessionStore* store, const SessionOptions& options,
                 EngineObserver* observer);
  StatePlacement(const StatePlacement&) = delete;
  StatePlacement& operator=(const StatePlacement&) = delete;

  // A slot holding a zero state, for a request without a session; give it back with
  // ReleaseSlot. nullopt when every slot is held by busy work (retry after a step); an error
  // when the slot could not be zeroed (the slot is free again).
  absl::StatusOr<std::optional<int32_t>> AcquireZeroedSlot();
  // A slot for a request whose state the caller writes itself (a prefix cache hit copied in): its
  // contents are whatever it held. nullopt as for AcquireZeroedSlot.
  std::optional<int32_t> AcquireSlot();
  // A free slot, without reclaiming or evicting anything (the prefix cache's snapshots take only
  // what nobody needs); nullopt when none is free.
  std::optional<int32_t> TakeFreeSlot();
  void ReleaseSlot(int32_t slot);
  // Registers (or, with null, removes) the holder of reclaimable slots. Not owned.
  void SetReclaimer(SlotReclaimer* reclaimer) { reclaimer_ = reclaimer; }

  // Puts the state of `s` (reserved by the caller) into a slot: the one it is in, a zeroed one
  // (kZero), or a slot its host state is loaded into. nullopt when no slot can be had now. An
  // error means the state could not be placed and is lost: the caller must Drop the session.
  absl::StatusOr<std::optional<int32_t>> BindToSlot(Session& s);

  // Places a copy of `from`'s state for the new session `to` (reserved, nowhere yet): in a slot,
  // else in host memory, else RESOURCE_EXHAUSTED. `from` must be reserved too.
  absl::Status PlaceCopy(const Session& from, Session& to);
  // Places `payload` (a whole state in the backend's state dtype and size) for the new session
  // `s` (reserved, nowhere yet): in a slot, else in host memory, else RESOURCE_EXHAUSTED.
  absl::Status PlaceBytes(Session& s, std::string_view payload);
  // The bytes of `s`'s state (reserved by the caller), wherever it is: one copy, made here.
  absl::StatusOr<std::string> CopyOut(const Session& s);

  // Removes `s` from the store and frees what its state held. `evicted` remembers the id so its
  // next use says it was evicted. The caller holds the store's lock; `s` may be destroyed.
  void DropLocked(const SessionStore::Lock& held, Session& s, bool evicted);
  // Drop() taking the lock itself; a no-op for a session already closed.
  void Drop(Session& s, bool evicted);
  // Frees what `s`'s state held and marks it broken with `reason` (its state was lost in a failed
  // step): it stays in the store, refuses new work, and expires or is closed as any other.
  void Break(Session& s, const std::string& reason);
  // Drops every idle session whose TTL has run out by `now`.
  void ExpireIdle(absl::Time now);

  int64_t host_budget_bytes() const { return host_budget_bytes_; }
  PlacementStats Stats() const;

 private:
  // Room for `bytes` more of host state, dropping the oldest idle host sessions other than
  // `keep` if needed; false when the budget cannot hold them even then. Caller holds the lock.
  bool ReserveHostBytesLocked(const SessionStore::Lock& held, int64_t bytes, const Session* keep);
  void ReleaseHostBytes(int64_t bytes);

  backend::Backend* const backend_;
  SessionStore* const store_;
  EngineObserver* const observer_;
  SlotReclaimer* reclaimer_ = nullptr;
  const int64_t state_bytes_;
  const int64_t host_budget_bytes_;

  std::vector<int32_t> free_slots_;  // scheduler thread only
  int64_t host_bytes_ = 0;           // scheduler thread only

  std::atomic<int64_t> slots_used_{0};
  std::atomic<int64_t> host_bytes_stat_{0};
  std::atomic<int64_t> evictions_to_host_{0};
  std::atomic<int64_t> evictions_dropped_{0};
  std::atomic<int64_t> restores_{0};
};

}  // namespace mamba::sessions
