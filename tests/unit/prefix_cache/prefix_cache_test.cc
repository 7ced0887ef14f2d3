// The prefix cache over a real CPU backend and state placement: hits restore exactly the state
// after the prefix, the tiers keep to their budgets (least recently used out first, device
// entries to host before they are dropped), pinned entries are never moved, tenants never share
// entries, and placement takes the cache's slots back before anything of a session's.
#include "engine/prefix_cache/prefix_cache.h"

#include <memory>
#include <string>
#include <vector>

#include "engine/cpu/cpu_backend.h"
#include "engine/model/model_loader.h"
#include "engine/sessions/session_store.h"
#include "gtest/gtest.h"

namespace mamba::prefix_cache {
namespace {

using Tokens = std::vector<int32_t>;

// Forwards to a real backend, counting host-state allocations (pinned memory on CUDA, where each
// allocation and free costs milliseconds and synchronizes the device).
class CountingBackend final : public backend::Backend {
 public:
  explicit CountingBackend(std::unique_ptr<backend::Backend> inner) : inner_(std::move(inner)) {}
  const model::ModelConfig& config() const override { return inner_->config(); }
  std::string name() const override { return inner_->name(); }
  std::string device() const override { return inner_->device(); }
  model::DType weight_dtype() const override { return inner_->weight_dtype(); }
  model::DType state_dtype() const override { return inner_->state_dtype(); }
  size_t weight_bytes() const override { return inner_->weight_bytes(); }
  size_t state_bytes() const override { return inner_->state_bytes(); }
  int32_t num_slots() const override { return inner_->num_slots(); }
  absl::Status Step(absl::Span<const backend::SeqWork> work,
                    absl::Span<backend::SeqResult> results) override {
    return inner_->Step(work, results);
  }
  absl::Status ResetSlot(int32_t slot) override { return inner_->ResetSlot(slot); }
  absl::Status CopySlot(int32_t from, int32_t to) override { return inner_->CopySlot(from, to); }
  std::unique_ptr<backend::HostState> AllocateHostState() override {
    ++host_allocations;
    return inner_->AllocateHostState();
  }
  absl::Status SaveSlot(int32_t slot, backend::HostState* out) override {
    return inner_->SaveSlot(slot, out);
  }
  absl::Status LoadSlot(int32_t slot, const backend::HostState& in) override {
    return inner_->LoadSlot(slot, in);
  }
  int host_allocations = 0;

 private:
  std::unique_ptr<backend::Backend> inner_;
};

class PrefixCacheTest : public ::testing::Test {
 protected:
  // A cache holding at most `device` entries in slots and `host` in host memory.
  void Make(int device, int host, int slots = 6) {
    model::LoadedModel m = model::LoadModel("synthetic:tiny").value();
    backend::BackendOptions o;
    o.kind = "cpu";
    o.num_slots = slots;
    o.cpu_threads = 1;
    auto counting = std::make_unique<CountingBackend>(cpu::CreateCpuBackend(o, m).value());
    counting_ = counting.get();
    backend_ = std::move(counting);
    store_ = std::make_unique<sessions::SessionStore>(sessions::SessionOptions{});
    placement_ = std::make_unique<sessions::StatePlacement>(backend_.get(), store_.get(),
                                                            sessions::SessionOptions{}, nullptr);
    const double gib = static_cast<double>(backend_->state_bytes()) / (1 << 30);
    PrefixCacheOptions c;
    c.device_gb = device * gib * 1.0001;
    c.host_gb = host * gib * 1.0001;
    cache_ = std::make_unique<PrefixCache>(backend_.get(), placement_.get(), c);
  }

  void TearDown() override {
    cache_.reset();
    placement_.reset();
  }

  // A zeroed slot fed `tokens`.
  int32_t Fed(const Tokens& tokens) {
    const int32_t slot = placement_->AcquireZeroedSlot().value().value();
    Feed(slot, tokens);
    return slot;
  }
  void Feed(int32_t slot, const Tokens& tokens) {
    backend::SeqWork w;
    w.slot = slot;
    w.tokens = tokens;
    backend::SeqResult r;
    ASSERT_TRUE(backend_->Step(absl::MakeConstSpan(&w, 1), absl::MakeSpan(&r, 1)).ok());
  }
  std::vector<uint8_t> Bytes(int32_t slot) {
    std::unique_ptr<backend::HostState> h = backend_->AllocateHostState();
    EXPECT_TRUE(backend_->SaveSlot(slot, h.get()).ok());
    return std::vector<uint8_t>(h->data(), h->data() + h->size());
  }
  // The bytes of the state after `tokens`, computed afresh.
  std::vector<uint8_t> Expected(const Tokens& tokens) {
    const int32_t slot = Fed(tokens);
    std::vector<uint8_t> b = Bytes(slot);
    placement_->ReleaseSlot(slot);
    return b;
  }
  // Restores the longest cached prefix of `tokens` into a fresh slot; its length, and the bytes.
  int64_t RestoreInto(const std::string& tenant, const Tokens& tokens,
                      std::vector<uint8_t>* bytes = nullptr) {
    std::optional<PrefixCache::Hit> hit =
        cache_->Lookup(tenant, tokens, static_cast<int64_t>(tokens.size()));
    if (!hit) return 0;
    const int32_t slot = placement_->AcquireSlot().value();
    EXPECT_TRUE(cache_->Restore(*hit, slot).ok());
    if (bytes != nullptr) *bytes = Bytes(slot);
    placement_->ReleaseSlot(slot);
    return hit->length;
  }

  std::unique_ptr<backend::Backend> backend_;
  CountingBackend* counting_ = nullptr;
  std::unique_ptr<sessions::SessionStore> store_;
  std::unique_ptr<sessions::StatePlacement> placement_;
  std::unique_ptr<PrefixCache> cache_;
};

TEST_F(PrefixCacheTest, AHitRestoresExactlyTheStateAfterThePrefix) {
  Make(/*device=*/4, /*host=*/4);
  const Tokens a = {10, 20, 30, 40, 50};
  const int32_t slot = Fed({10, 20, 30});
  cache_->Snapshot("", {10, 20, 30}, slot);  // a copy: the slot is still the request's
  Feed(slot, {40, 50});
  EXPECT_TRUE(cache_->Adopt("", a, slot));  // the slot itself becomes an entry
  std::vector<uint8_t> got;
  EXPECT_EQ(RestoreInto("", {10, 20, 30, 40, 50, 60}, &got), 5);
  EXPECT_EQ(got, Expected(a));
  EXPECT_EQ(RestoreInto("", {10, 20, 30, 99}, &got), 3);
  EXPECT_EQ(got, Expected({10, 20, 30}));
  EXPECT_EQ(RestoreInto("", {10, 20}), 0);
  const PrefixCacheStats s = cache_->Stats();
  EXPECT_EQ(s.device_entries, 2);
  EXPECT_EQ(s.hits, 2);
  EXPECT_EQ(s.hit_tokens, 8);
  EXPECT_EQ(s.insertions, 2);
}

TEST_F(PrefixCacheTest, TenantsNeverShareEntries) {
  Make(4, 4);
  const int32_t slot = Fed({1, 2, 3});
  cache_->Snapshot("alice", {1, 2, 3}, slot);
  placement_->ReleaseSlot(slot);
  EXPECT_EQ(RestoreInto("bob", {1, 2, 3, 4}), 0);
  EXPECT_EQ(RestoreInto("", {1, 2, 3, 4}), 0);
  EXPECT_EQ(RestoreInto("alice", {1, 2, 3, 4}), 3);
  EXPECT_FALSE(cache_->Contains("bob", {1, 2, 3}));
}

TEST_F(PrefixCacheTest, TiersKeepTheirBudgetsLeastRecentlyUsedFirst) {
  Make(/*device=*/2, /*host=*/2, /*slots=*/8);
  std::vector<Tokens> seqs;
  for (int i = 0; i < 6; ++i) seqs.push_back({100 + i, 7, 7});
  for (int i = 0; i < 6; ++i) {
    const int32_t slot = Fed(seqs[i]);
    cache_->Snapshot("", seqs[i], slot);
    placement_->ReleaseSlot(slot);
    if (i == 1) {
      EXPECT_EQ(RestoreInto("", seqs[0]), 3);  // seqs[0] used again: not the oldest
    }
  }
  PrefixCacheStats s = cache_->Stats();
  EXPECT_EQ(s.device_entries, 2);
  EXPECT_EQ(s.host_entries, 2);
  EXPECT_GE(s.evictions_to_host, 4);
  EXPECT_GE(s.evictions_dropped, 2);
  // The newest two are on the device, the two before them in host memory, the rest gone; each
  // restores exactly.
  for (int i = 0; i < 6; ++i) {
    std::vector<uint8_t> got;
    const int64_t n = RestoreInto("", seqs[i], &got);
    if (i >= 2) {
      EXPECT_EQ(n, 3) << i;
      EXPECT_EQ(got, Expected(seqs[i])) << i;
    } else {
      EXPECT_EQ(n, 0) << i;
    }
  }
}

TEST_F(PrefixCacheTest, PlacementTakesTheCachesSlotsBeforeAnySessionsAndSparesPinnedOnes) {
  Make(/*device=*/8, /*host=*/8, /*slots=*/4);
  for (int i = 0; i < 3; ++i) {
    const int32_t slot = Fed({i, i});
    cache_->Snapshot("", {i, i}, slot);  // takes a free slot while there is one
    placement_->ReleaseSlot(slot);
  }
  EXPECT_EQ(cache_->Stats().device_entries, 3);  // every slot but the one feeding used
  // A pinned entry is not given back.
  std::optional<PrefixCache::Hit> pinned = cache_->Lookup("", {0, 0, 5}, 3);
  ASSERT_TRUE(pinned.has_value());
  std::vector<int32_t> taken;
  for (int i = 0; i < 4; ++i) {
    std::optional<int32_t> slot = placement_->AcquireSlot();
    if (slot) taken.push_back(*slot);
  }
  EXPECT_EQ(taken.size(), 3u);  // the free one and two reclaimed; the pinned entry's stays
  EXPECT_EQ(cache_->Stats().device_entries, 1);
  EXPECT_EQ(cache_->Stats().host_entries, 2);  // moved, not dropped
  const int32_t target = taken.back();
  EXPECT_TRUE(cache_->Restore(*pinned, target).ok());
  EXPECT_EQ(Bytes(target), Expected({0, 0}));
  for (int32_t s : taken) placement_->ReleaseSlot(s);
  // Entries moved to host memory still restore exactly.
  std::vector<uint8_t> got;
  EXPECT_EQ(RestoreInto("", {1, 1, 9}, &got), 2);
  EXPECT_EQ(got, Expected({1, 1}));
}

TEST_F(PrefixCacheTest, DisabledOrZeroBudgetsKeepNothing) {
  Make(/*device=*/0, /*host=*/0);
  const int32_t slot = Fed({1, 2});
  cache_->Snapshot("", {1, 2}, slot);
  EXPECT_FALSE(cache_->Adopt("", {1, 2}, slot));
  placement_->ReleaseSlot(slot);
  EXPECT_EQ(RestoreInto("", {1, 2, 3}), 0);
  EXPECT_EQ(cache_->Stats().insertions, 0);
}

TEST_F(PrefixCacheTest, HostOnlyBudgetStillCaches) {
  Make(/*device=*/0, /*host=*/3);
  const int32_t slot = Fed({4, 5, 6});
  EXPECT_FALSE(cache_->Adopt("", {4, 5, 6}, slot));  // kept as a host copy; the slot stays ours
  placement_->ReleaseSlot(slot);
  std::vector<uint8_t> got;
  EXPECT_EQ(RestoreInto("", {4, 5, 6, 7}, &got), 3);
  EXPECT_EQ(got, Expected({4, 5, 6}));
  EXPECT_EQ(cache_->Stats().host_entries, 1);
}

TEST_F(PrefixCacheTest, ClearGivesEverySlotBack) {
  Make(4, 4, /*slots=*/4);
  for (int i = 0; i < 3; ++i) {
    const int32_t slot = Fed({i});
    EXPECT_TRUE(cache_->Adopt("", {i}, slot));
  }
  EXPECT_EQ(placement_->Stats().slots_used, 3);
  cache_->Clear();
  EXPECT_EQ(placement_->Stats().slots_used, 0);
  EXPECT_EQ(cache_->Stats().device_entries, 0);
}

// A full host tier reuses the host states of the entries it evicts instead of allocating new
// ones: on CUDA each allocation is pinned memory, and allocating and freeing it per entry cut
// 256-stream throughput 3x on an H100 once the cache was full.
TEST_F(PrefixCacheTest, AFullHostTierReusesItsHostStates) {
  Make(/*device=*/1, /*host=*/2);
  for (int i = 0; i < 12; ++i) {
    const Tokens t = {static_cast<int32_t>(10 + i), 20, 30};
    const int32_t slot = Fed(t);
    cache_->Snapshot("", t, slot);
    placement_->ReleaseSlot(slot);
  }
  const PrefixCacheStats s = cache_->Stats();
  EXPECT_EQ(s.device_entries, 1);
  EXPECT_EQ(s.host_entries, 2);
  EXPECT_GT(s.evictions_dropped, 0);
  // At most one host state per host entry ever allocated, whatever the churn (Bytes() above
  // allocates none here).
  EXPECT_LE(counting_->host_allocations, 2);
  // The newest entries are still exact.
  const Tokens last = {21, 20, 30};
  std::vector<uint8_t> bytes;
  EXPECT_EQ(RestoreInto("", Tokens{21, 20, 30, 1}, &bytes), 3);
  EXPECT_EQ(bytes, Expected(last));
}

}  // namespace
}  // namespace mamba::prefix_cache
