#include "engine/sessions/state_placement.h"

#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"

namespace mamba::sessions {
namespace {

// GB (2^30 bytes) to bytes, saturating: a budget past what any machine has is "no limit", never
// an overflow into a negative budget.
int64_t BudgetBytes(double gb) {
  if (!(gb > 0.0)) return 0;
  const double bytes = gb * 1024.0 * 1024.0 * 1024.0;
  constexpr double kMax = static_cast<double>(std::numeric_limits<int64_t>::max() / 2);
  return bytes >= kMax ? static_cast<int64_t>(kMax) : static_cast<int64_t>(bytes);
}

// A HostState whose bytes are a std::string, so an export copies a slot straight into the bytes
// it hands over.
class StringHostState final : public backend::HostState {
 public:
  StringHostState(model::DType dtype, size_t size) : dtype_(dtype), bytes_(size, '\0') {}
  model::DType dtype() const override { return dtype_; }
  uint8_t* data() override { return reinterpret_cast<uint8_t*>(bytes_.data()); }
  const uint8_t* data() const override { return reinterpret_cast<const uint8_t*>(bytes_.data()); }
  size_t size() const override { return bytes_.size(); }
  std::string Release() { return std::move(bytes_); }

 private:
  model::DType dtype_;
  std::string bytes_;
};

absl::Status NoRoom(const char* what) {
  return absl::ResourceExhaustedError(absl::StrCat("no state slot or host memory is free for ",
                                                   what,
                                                   "; retry when sessions are closed or expire"));
}

}  // namespace

StatePlacement::StatePlacement(backend::Backend* backend, SessionStore* store,
                               const SessionOptions& options, EngineObserver* observer)
    : backend_(backend),
      store_(store),
      observer_(observer),
      state_bytes_(static_cast<int64_t>(backend->state_bytes())),
      host_budget_bytes_(BudgetBytes(options.host_state_memory_gb)) {
  for (int32_t s = backend->num_slots() - 1; s >= 0; --s) free_slots_.push_back(s);
}

std::optional<int32_t> StatePlacement::TakeFreeSlot() {
  if (free_slots_.empty()) return std::nullopt;
  const int32_t slot = free_slots_.back();
  free_slots_.pop_back();
  slots_used_.fetch_add(1, std::memory_order_relaxed);
  return slot;
}

std::optional<int32_t> StatePlacement::AcquireSlot() {
  if (std::optional<int32_t> slot = TakeFreeSlot()) return slot;
  // Every slot is held: cached prefixes give theirs back first (sessions and requests come
  // first), ...
  if (reclaimer_ != nullptr) {
    if (std::optional<int32_t> slot = reclaimer_->ReclaimSlot()) return slot;  // changes owner
  }
  // ... then the least recently used idle session's state moves off the device.
  auto lock = store_->Acquire();
  Session* victim = nullptr;
  for (const auto& [id, s] : store_->sessions(lock)) {
    if (s->busy || s->where != Session::Where::kDevice) continue;
    if (victim == nullptr || s->last_used < victim->last_used) victim = s.get();
  }
  if (victim == nullptr) return std::nullopt;
  const int32_t slot = victim->slot;
  bool moved = false;
  if (ReserveHostBytesLocked(lock, state_bytes_, victim)) {
    std::unique_ptr<backend::HostState> host = backend_->AllocateHostState();
    if (host != nullptr && backend_->SaveSlot(slot, host.get()).ok()) {
      victim->host = std::move(host);
      victim->where = Session::Where::kHost;
      victim->slot = -1;
      moved = true;
      evictions_to_host_.fetch_add(1, std::memory_order_relaxed);
      if (observer_ != nullptr) observer_->OnSessionEviction(/*to_host=*/true);
    } else {
      ReleaseHostBytes(state_bytes_);
    }
  }
  if (!moved) {
    victim->where = Session::Where::kZero;  // the slot goes to the caller, not the free list
    victim->slot = -1;
    DropLocked(lock, *victim, /*evicted=*/true);
  }
  return slot;  // stays counted as used: it changes owner
}

void StatePlacement::ReleaseSlot(int32_t slot) {
  free_slots_.push_back(slot);
  slots_used_.fetch_sub(1, std::memory_order_relaxed);
}

absl::StatusOr<std::optional<int32_t>> StatePlacement::AcquireZeroedSlot() {
  std::optional<int32_t> slot = AcquireSlot();
  if (!slot) return std::nullopt;
  absl::Status st = backend_->ResetSlot(*slot);
  if (!st.ok()) {
    ReleaseSlot(*slot);
    return st;
  }
  return slot;
}

absl::StatusOr<std::optional<int32_t>> StatePlacement::BindToSlot(Session& s) {
  Session::Where where;
  {
    auto lock = store_->Acquire();
    where = s.where;
    if (where == Session::Where::kDevice) return std::optional<int32_t>(s.slot);
  }
  std::optional<int32_t> slot = AcquireSlot();
  if (!slot) return std::nullopt;
  absl::Status st;
  if (where == Session::Where::kZero) {
    st = backend_->ResetSlot(*slot);
  } else {
    st = backend_->LoadSlot(*slot, *s.host);
    if (st.ok()) restores_.fetch_add(1, std::memory_order_relaxed);
  }
  auto lock = store_->Acquire();
  if (where == Session::Where::kHost) {
    ReleaseHostBytes(static_cast<int64_t>(s.host->size()));
    s.host.reset();
  }
  // The session owns the slot either way, so that dropping it frees the slot.
  s.where = Session::Where::kDevice;
  s.slot = *slot;
  if (!st.ok()) return st;
  return slot;
}

absl::Status StatePlacement::PlaceCopy(const Session& from, Session& to) {
  Session::Where where;
  int32_t from_slot;
  {
    auto lock = store_->Acquire();
    where = from.where;
    from_slot = from.slot;
  }
  if (where == Session::Where::kZero) return absl::OkStatus();  // a zero state needs no copy
  absl::Status st;
  if (std::optional<int32_t> slot = AcquireSlot()) {
    st = where == Session::Where::kDevice ? backend_->CopySlot(from_slot, *slot)
                                          : backend_->LoadSlot(*slot, *from.host);
    auto lock = store_->Acquire();
    to.where = Session::Where::kDevice;
    to.slot = *slot;
    return st;
  }
  auto lock = store_->Acquire();
  if (!ReserveHostBytesLocked(lock, state_bytes_, &from)) return NoRoom("the fork");
  std::unique_ptr<backend::HostState> host = backend_->AllocateHostState();
  if (where == Session::Where::kDevice) {
    st = backend_->SaveSlot(from_slot, host.get());
  } else {
    std::memcpy(host->data(), from.host->data(), host->size());
  }
  to.where = Session::Where::kHost;
  to.host = std::move(host);
  return st;
}

absl::Status StatePlacement::PlaceBytes(Session& s, std::string_view payload) {
  if (static_cast<int64_t>(payload.size()) != state_bytes_) {
    return absl::FailedPreconditionError(absl::StrCat(
        "session state has ", payload.size(), " bytes; this server's states have ", state_bytes_));
  }
  std::unique_ptr<backend::HostState> host = backend_->AllocateHostState();
  std::memcpy(host->data(), payload.data(), payload.size());
  if (std::optional<int32_t> slot = AcquireSlot()) {
    absl::Status st = backend_->LoadSlot(*slot, *host);
    auto lock = store_->Acquire();
    s.where = Session::Where::kDevice;
    s.slot = *slot;
    return st;
  }
  auto lock = store_->Acquire();
  if (!ReserveHostBytesLocked(lock, state_bytes_, &s)) return NoRoom("the imported session");
  s.where = Session::Where::kHost;
  s.host = std::move(host);
  return absl::OkStatus();
}

absl::StatusOr<std::string> StatePlacement::CopyOut(const Session& s) {
  Session::Where where;
  int32_t slot;
  {
    auto lock = store_->Acquire();
    where = s.where;
    slot = s.slot;
  }
  StringHostState out(backend_->state_dtype(), static_cast<size_t>(state_bytes_));
  if (where == Session::Where::kDevice) {
    absl::Status st = backend_->SaveSlot(slot, &out);
    if (!st.ok()) return st;
  } else if (where == Session::Where::kHost) {
    std::memcpy(out.data(), s.host->data(), out.size());
  }
  return out.Release();
}

bool StatePlacement::ReserveHostBytesLocked(const SessionStore::Lock& held, int64_t bytes,
                                            const Session* keep) {
  if (bytes > host_budget_bytes_) return false;
  while (host_bytes_ + bytes > host_budget_bytes_) {
    Session* oldest = nullptr;
    for (const auto& [id, s] : store_->sessions(held)) {
      if (s->busy || s->where != Session::Where::kHost || s.get() == keep) continue;
      if (oldest == nullptr || s->last_used < oldest->last_used) oldest = s.get();
    }
    if (oldest == nullptr) return false;
    DropLocked(held, *oldest, /*evicted=*/true);
  }
  host_bytes_ += bytes;
  host_bytes_stat_.store(host_bytes_, std::memory_order_relaxed);
  return true;
}

void StatePlacement::ReleaseHostBytes(int64_t bytes) {
  host_bytes_ -= bytes;
  host_bytes_stat_.store(host_bytes_, std::memory_order_relaxed);
}

void StatePlacement::DropLocked(const SessionStore::Lock& held, Session& s, bool evicted) {
  if (s.where == Session::Where::kDevice) ReleaseSlot(s.slot);
  if (s.where == Session::Where::kHost && s.host != nullptr) {
    ReleaseHostBytes(static_cast<int64_t>(s.host->size()));
  }
  s.where = Session::Where::kZero;
  s.slot = -1;
  s.host.reset();
  s.closed = true;
  if (evicted) {
    evictions_dropped_.fetch_add(1, std::memory_order_relaxed);
    if (observer_ != nullptr) observer_->OnSessionEviction(/*to_host=*/false);
  }
  store_->RemoveLocked(held, s.id, evicted);  // may destroy `s`: keep last
}

void StatePlacement::Drop(Session& s, bool evicted) {
  auto lock = store_->Acquire();
  if (!s.closed) DropLocked(lock, s, evicted);
}

void StatePlacement::Break(Session& s, const std::string& reason) {
  auto lock = store_->Acquire();
  if (s.closed) return;
  if (s.where == Session::Where::kDevice) ReleaseSlot(s.slot);
  if (s.where == Session::Where::kHost && s.host != nullptr) {
    ReleaseHostBytes(static_cast<int64_t>(s.host->size()));
  }
  s.where = Session::Where::kZero;
  s.slot = -1;
  s.host.reset();
  s.pending.clear();
  s.broken_reason = reason;
}

void StatePlacement::ExpireIdle(absl::Time now) {
  auto lock = store_->Acquire();
  std::vector<Session*> expired;
  for (const auto& [id, s] : store_->sessions(lock)) {
    if (!s->busy && s->last_used + s->ttl <= now) expired.push_back(s.get());
  }
  for (Session* s : expired) DropLocked(lock, *s, /*evicted=*/false);
}

PlacementStats StatePlacement::Stats() const {
  PlacementStats p;
  p.slots_total = backend_->num_slots();
  p.slots_used = slots_used_.load(std::memory_order_relaxed);
  p.host_bytes = host_bytes_stat_.load(std::memory_order_relaxed);
  p.evictions_to_host = evictions_to_host_.load(std::memory_order_relaxed);
  p.evictions_dropped = evictions_dropped_.load(std::memory_order_relaxed);
  p.restores_from_host = restores_.load(std::memory_order_relaxed);
  return p;
}

}  // namespace mamba::sessions
