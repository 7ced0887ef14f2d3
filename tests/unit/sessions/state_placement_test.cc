// StatePlacement on its own, over the real CPU backend (synthetic:tiny, a handful of slots): each
// invariant of state_placement.h, checked after every operation by CheckInvariants.
#include "engine/sessions/state_placement.h"

#include <cstring>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "engine/cpu/cpu_backend.h"
#include "engine/model/model_loader.h"
#include "gtest/gtest.h"

namespace mamba::sessions {
namespace {

class StatePlacementTest : public ::testing::Test {
 protected:
  // `slots` device slots; the host budget holds `host_states` states.
  void Init(int32_t slots, double host_states) {
    absl::StatusOr<model::LoadedModel> m = model::LoadModel("synthetic:tiny");
    ASSERT_TRUE(m.ok()) << m.status();
    backend::BackendOptions bo;
    bo.kind = "cpu";
    bo.num_slots = slots;
    bo.cpu_threads = 1;
    absl::StatusOr<std::unique_ptr<backend::Backend>> b = cpu::CreateCpuBackend(bo, *m);
    ASSERT_TRUE(b.ok()) << b.status();
    backend_ = *std::move(b);
    state_bytes_ = static_cast<int64_t>(backend_->state_bytes());
    SessionOptions so;
    so.default_ttl = absl::Minutes(10);
    so.host_state_memory_gb =
        host_states * static_cast<double>(state_bytes_) / (1024.0 * 1024.0 * 1024.0);
    store_ = std::make_unique<SessionStore>(so);
    placement_ = std::make_unique<StatePlacement>(backend_.get(), store_.get(), so, nullptr);
  }

  // A whole state whose every float is `fill` (f32 states on the CPU backend).
  std::string Payload(float fill) const {
    std::string p(static_cast<size_t>(state_bytes_), '\0');
    for (size_t i = 0; i < p.size(); i += sizeof(float)) std::memcpy(&p[i], &fill, sizeof(float));
    return p;
  }

  // A new idle session holding Payload(fill), used at `last_used`.
  std::shared_ptr<Session> NewSession(float fill, absl::Time last_used) {
    absl::StatusOr<std::shared_ptr<Session>> s = store_->Create("", absl::ZeroDuration(), true);
    EXPECT_TRUE(s.ok()) << s.status();
    EXPECT_TRUE(placement_->PlaceBytes(**s, Payload(fill)).ok());
    auto lock = store_->Acquire();
    (*s)->busy = false;
    (*s)->last_used = last_used;
    return *s;
  }

  std::string Bytes(const Session& s) {
    absl::StatusOr<std::string> b = placement_->CopyOut(s);
    EXPECT_TRUE(b.ok()) << b.status();
    return b.ok() ? *b : std::string();
  }

  // Invariants 1 and 2 of state_placement.h. `lent` are the slots handed out by
  // AcquireZeroedSlot and not yet released.
  void CheckInvariants(const std::set<int32_t>& lent) {
    std::set<int32_t> held = lent;
    int64_t device_sessions = 0, host_bytes = 0;
    auto lock = store_->Acquire();
    for (const auto& [id, s] : store_->sessions(lock)) {
      if (s->where == Session::Where::kDevice) {
        ++device_sessions;
        EXPECT_GE(s->slot, 0);
        EXPECT_LT(s->slot, backend_->num_slots());
        EXPECT_TRUE(held.insert(s->slot).second) << "slot " << s->slot << " has two owners";
        EXPECT_EQ(s->host, nullptr);
      } else if (s->where == Session::Where::kHost) {
        ASSERT_NE(s->host, nullptr);
        EXPECT_EQ(s->slot, -1);
        host_bytes += static_cast<int64_t>(s->host->size());
      } else {
        EXPECT_EQ(s->slot, -1);
        EXPECT_EQ(s->host, nullptr);
      }
    }
    const PlacementStats stats = placement_->Stats();
    EXPECT_EQ(stats.slots_used, device_sessions + static_cast<int64_t>(lent.size()));
    EXPECT_EQ(stats.host_bytes, host_bytes);
    EXPECT_LE(host_bytes, placement_->host_budget_bytes());
  }

  absl::Time t0_ = absl::Now();
  std::unique_ptr<backend::Backend> backend_;
  int64_t state_bytes_ = 0;
  std::unique_ptr<SessionStore> store_;
  std::unique_ptr<StatePlacement> placement_;
};

TEST_F(StatePlacementTest, LendsZeroedSlotsUntilNoneIsLeft) {
  Init(/*slots=*/3, /*host_states=*/0);
  std::set<int32_t> lent;
  for (int i = 0; i < 3; ++i) {
    absl::StatusOr<std::optional<int32_t>> slot = placement_->AcquireZeroedSlot();
    ASSERT_TRUE(slot.ok() && slot->has_value());
    EXPECT_TRUE(lent.insert(**slot).second);
    CheckInvariants(lent);
  }
  absl::StatusOr<std::optional<int32_t>> none = placement_->AcquireZeroedSlot();
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value());  // every slot is busy: no slot now, nothing else changed
  CheckInvariants(lent);

  // A released slot comes back zeroed, whatever was in it.
  const int32_t slot = *lent.begin();
  backend::HeapHostState junk(backend_->state_dtype(), backend_->state_bytes());
  std::memset(junk.data(), 0x7f, junk.size());
  ASSERT_TRUE(backend_->LoadSlot(slot, junk).ok());
  placement_->ReleaseSlot(slot);
  lent.erase(slot);
  CheckInvariants(lent);
  absl::StatusOr<std::optional<int32_t>> again = placement_->AcquireZeroedSlot();
  ASSERT_TRUE(again.ok() && again->has_value());
  EXPECT_EQ(**again, slot);
  lent.insert(slot);
  backend::HeapHostState out(backend_->state_dtype(), backend_->state_bytes());
  ASSERT_TRUE(backend_->SaveSlot(slot, &out).ok());
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(out.data()), out.size()),
            std::string(out.size(), '\0'));
  CheckInvariants(lent);
}

TEST_F(StatePlacementTest, EvictsTheLeastRecentlyUsedIdleSessionToHostAndBack) {
  Init(/*slots=*/2, /*host_states=*/4);
  std::shared_ptr<Session> older = NewSession(1.5f, t0_);
  std::shared_ptr<Session> newer = NewSession(2.5f, t0_ + absl::Seconds(1));
  CheckInvariants({});
  const int32_t older_slot = older->slot;

  // No slot is free: the older idle session moves to host memory, bytes unchanged.
  absl::StatusOr<std::optional<int32_t>> slot = placement_->AcquireZeroedSlot();
  ASSERT_TRUE(slot.ok() && slot->has_value());
  EXPECT_EQ(**slot, older_slot);
  EXPECT_EQ(older->where, Session::Where::kHost);
  EXPECT_EQ(newer->where, Session::Where::kDevice);
  EXPECT_EQ(placement_->Stats().evictions_to_host, 1);
  EXPECT_EQ(Bytes(*older), Payload(1.5f));
  CheckInvariants({**slot});

  // Its next turn brings it back into a slot (the lent one returned first), bytes unchanged.
  placement_->ReleaseSlot(**slot);
  absl::StatusOr<std::optional<int32_t>> bound = placement_->BindToSlot(*older);
  ASSERT_TRUE(bound.ok() && bound->has_value());
  EXPECT_EQ(older->where, Session::Where::kDevice);
  EXPECT_EQ(older->slot, **bound);
  EXPECT_EQ(placement_->Stats().restores_from_host, 1);
  EXPECT_EQ(Bytes(*older), Payload(1.5f));
  EXPECT_EQ(Bytes(*newer), Payload(2.5f));
  CheckInvariants({});
  // Binding a session already in a slot keeps it there.
  absl::StatusOr<std::optional<int32_t>> same = placement_->BindToSlot(*older);
  ASSERT_TRUE(same.ok() && same->has_value());
  EXPECT_EQ(**same, **bound);
}

TEST_F(StatePlacementTest, NeverMovesABusySession) {
  Init(/*slots=*/2, /*host_states=*/4);
  std::shared_ptr<Session> a = NewSession(1.0f, t0_);
  std::shared_ptr<Session> b = NewSession(2.0f, t0_);
  ASSERT_TRUE(store_->Reserve("", a->id).ok());
  ASSERT_TRUE(store_->Reserve("", b->id).ok());
  absl::StatusOr<std::optional<int32_t>> slot = placement_->AcquireZeroedSlot();
  ASSERT_TRUE(slot.ok());
  EXPECT_FALSE(slot->has_value());
  EXPECT_EQ(a->where, Session::Where::kDevice);
  EXPECT_EQ(b->where, Session::Where::kDevice);
  EXPECT_EQ(placement_->Stats().evictions_to_host + placement_->Stats().evictions_dropped, 0);
  placement_->ExpireIdle(t0_ + absl::Hours(1));  // past their TTL, but busy
  EXPECT_FALSE(a->closed);
  EXPECT_FALSE(b->closed);
  CheckInvariants({});
}

TEST_F(StatePlacementTest, PastTheHostBudgetTheOldestIdleHostSessionIsDropped) {
  Init(/*slots=*/1, /*host_states=*/1);
  std::shared_ptr<Session> first = NewSession(1.0f, t0_);
  std::shared_ptr<Session> second = NewSession(2.0f, t0_ + absl::Seconds(1));  // evicts `first`
  EXPECT_EQ(first->where, Session::Where::kHost);
  CheckInvariants({});
  {
    auto lock = store_->Acquire();
    second->last_used = t0_ + absl::Seconds(2);
  }
  std::shared_ptr<Session> third = NewSession(3.0f, t0_ + absl::Seconds(3));
  // `second` needed the host budget `first` held: `first` (the oldest idle host session) was
  // dropped, and its id now reads as evicted.
  EXPECT_TRUE(first->closed);
  EXPECT_EQ(second->where, Session::Where::kHost);
  EXPECT_EQ(third->where, Session::Where::kDevice);
  EXPECT_EQ(placement_->Stats().evictions_dropped, 1);
  absl::Status gone = store_->Get("", first->id).status();
  EXPECT_EQ(gone.code(), absl::StatusCode::kNotFound);
  EXPECT_NE(std::string(gone.message()).find("evicted"), std::string::npos) << gone;
  EXPECT_EQ(Bytes(*second), Payload(2.0f));
  CheckInvariants({});
}

TEST_F(StatePlacementTest, WithoutHostMemoryAnEvictedSessionIsDropped) {
  Init(/*slots=*/1, /*host_states=*/0);
  std::shared_ptr<Session> a = NewSession(1.0f, t0_);
  absl::StatusOr<std::optional<int32_t>> slot = placement_->AcquireZeroedSlot();
  ASSERT_TRUE(slot.ok() && slot->has_value());
  EXPECT_TRUE(a->closed);
  EXPECT_EQ(placement_->Stats().evictions_dropped, 1);
  CheckInvariants({**slot});
}

TEST_F(StatePlacementTest, ForkCopiesFromEveryPlaceOrRefusesCleanly) {
  Init(/*slots=*/2, /*host_states=*/1);
  std::shared_ptr<Session> parent = NewSession(4.0f, t0_);
  auto child = [&]() {
    absl::StatusOr<std::shared_ptr<Session>> c = store_->Create("", absl::ZeroDuration(), true);
    EXPECT_TRUE(c.ok());
    return *c;
  };
  ASSERT_TRUE(store_->Reserve("", parent->id).ok());
  // From a slot into a free slot.
  std::shared_ptr<Session> c1 = child();
  ASSERT_TRUE(placement_->PlaceCopy(*parent, *c1).ok());
  EXPECT_EQ(c1->where, Session::Where::kDevice);
  EXPECT_EQ(Bytes(*c1), Payload(4.0f));
  CheckInvariants({});
  // No slot free (both held by busy sessions): into host memory.
  std::shared_ptr<Session> c2 = child();
  ASSERT_TRUE(placement_->PlaceCopy(*parent, *c2).ok());
  EXPECT_EQ(c2->where, Session::Where::kHost);
  EXPECT_EQ(Bytes(*c2), Payload(4.0f));
  CheckInvariants({});
  // Neither a slot nor host room: RESOURCE_EXHAUSTED, and nothing placed.
  std::shared_ptr<Session> c3 = child();
  absl::Status full = placement_->PlaceCopy(*parent, *c3);
  EXPECT_EQ(full.code(), absl::StatusCode::kResourceExhausted) << full;
  EXPECT_EQ(c3->where, Session::Where::kZero);
  CheckInvariants({});
  // From host memory into a slot another session frees.
  placement_->Drop(*c1, /*evicted=*/false);
  std::shared_ptr<Session> c4 = child();
  ASSERT_TRUE(placement_->PlaceCopy(*c2, *c4).ok());
  EXPECT_EQ(c4->where, Session::Where::kDevice);
  EXPECT_EQ(Bytes(*c4), Payload(4.0f));
  // A session that has seen no token forks into another that has seen none.
  std::shared_ptr<Session> fresh = child();
  std::shared_ptr<Session> c5 = child();
  ASSERT_TRUE(placement_->PlaceCopy(*fresh, *c5).ok());
  EXPECT_EQ(c5->where, Session::Where::kZero);
  EXPECT_EQ(Bytes(*c5), std::string(static_cast<size_t>(state_bytes_), '\0'));
  CheckInvariants({});
}

TEST_F(StatePlacementTest, RefusesAStateOfAnotherSize) {
  Init(/*slots=*/1, /*host_states=*/1);
  absl::StatusOr<std::shared_ptr<Session>> s = store_->Create("", absl::ZeroDuration(), true);
  ASSERT_TRUE(s.ok());
  absl::Status st = placement_->PlaceBytes(**s, std::string(16, '\0'));
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ((*s)->where, Session::Where::kZero);
  CheckInvariants({});
}

TEST_F(StatePlacementTest, ExpiresIdleSessionsAndFreesTheirStates) {
  Init(/*slots=*/2, /*host_states=*/2);
  std::shared_ptr<Session> device = NewSession(1.0f, t0_);
  std::shared_ptr<Session> other = NewSession(2.0f, t0_);
  std::shared_ptr<Session> host = NewSession(3.0f, t0_ + absl::Minutes(5));  // evicts one
  CheckInvariants({});
  EXPECT_EQ(placement_->Stats().host_bytes, state_bytes_);
  placement_->ExpireIdle(t0_ + absl::Minutes(11));  // the first two are past their 10 min TTL
  EXPECT_TRUE(device->closed);
  EXPECT_TRUE(other->closed);
  EXPECT_FALSE(host->closed);
  EXPECT_EQ(placement_->Stats().host_bytes, 0);
  CheckInvariants({});
}

}  // namespace
}  // namespace mamba::sessions
