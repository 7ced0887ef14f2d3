#include "engine/sessions/session_store.h"

#include <set>

#include "gtest/gtest.h"

namespace mamba {
namespace {

sessions::SessionOptions Options(int32_t max_sessions, int32_t tenant_max_sessions) {
  sessions::SessionOptions o;
  o.max_sessions = max_sessions;
  o.tenant_max_sessions = tenant_max_sessions;
  o.default_ttl = absl::Minutes(1);
  return o;
}

TEST(SessionStoreTest, IdsAreUnguessableHex) {
  std::set<std::string> ids;
  for (int i = 0; i < 1000; ++i) {
    const std::string id = sessions::SessionStore::NewId();
    EXPECT_TRUE(sessions::SessionStore::IsWellFormedId(id)) << id;
    ids.insert(id);
  }
  EXPECT_EQ(ids.size(), 1000u);
  EXPECT_FALSE(sessions::SessionStore::IsWellFormedId("ABCDEF"));
  EXPECT_FALSE(sessions::SessionStore::IsWellFormedId(std::string(32, 'g')));
}

TEST(SessionStoreTest, LimitsBusyAndTenants) {
  sessions::SessionStore store(Options(/*max_sessions=*/3, /*tenant_max_sessions=*/2));
  auto a = store.Create("t1", absl::ZeroDuration(), false);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ((*a)->ttl, absl::Minutes(1));
  auto b = store.Create("t1", absl::Seconds(5), false);
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(store.Create("t1", absl::ZeroDuration(), false).status().code(),
            absl::StatusCode::kResourceExhausted);  // tenant limit
  ASSERT_TRUE(store.Create("t2", absl::ZeroDuration(), false).ok());
  EXPECT_EQ(store.Create("t3", absl::ZeroDuration(), false).status().code(),
            absl::StatusCode::kResourceExhausted);  // server limit

  const std::string id = (*a)->id;
  // Another tenant sees nothing, not even that it exists.
  EXPECT_EQ(store.Reserve("t2", id).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store.Get("t2", id).status().code(), absl::StatusCode::kNotFound);
  auto r = store.Reserve("t1", id);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(store.Reserve("t1", id).status().code(), absl::StatusCode::kFailedPrecondition);
  store.Release(*r);
  EXPECT_TRUE(store.Reserve("t1", id).ok());

  store.Remove((*b)->id, /*evicted=*/true);
  absl::Status evicted = store.Get("t1", (*b)->id).status();
  EXPECT_EQ(evicted.code(), absl::StatusCode::kNotFound);
  EXPECT_NE(std::string(evicted.message()).find("evicted"), std::string::npos);
}

TEST(SessionStoreTest, RequestedIdsAndForkPrefixes) {
  sessions::SessionStore store(Options(0, 0));
  const std::string id = sessions::SessionStore::NewId();
  auto a = store.Create("", absl::ZeroDuration(), false, id);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ((*a)->id, id);
  EXPECT_EQ(store.Create("", absl::ZeroDuration(), false, id).status().code(),
            absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(store.Create("", absl::ZeroDuration(), false, "XYZ").status().code(),
            absl::StatusCode::kInvalidArgument);
  auto child = store.Create("", absl::ZeroDuration(), false, "", id);
  ASSERT_TRUE(child.ok());
  EXPECT_EQ((*child)->id.substr(0, 16), id.substr(0, 16));
  EXPECT_NE((*child)->id, id);
  EXPECT_TRUE(sessions::SessionStore::IsWellFormedId((*child)->id));
}

TEST(SessionStoreTest, ListsPagesOfOneTenant) {
  sessions::SessionStore store(Options(0, 0));
  for (int i = 0; i < 25; ++i) ASSERT_TRUE(store.Create("a", absl::ZeroDuration(), false).ok());
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(store.Create("b", absl::ZeroDuration(), false).ok());
  std::set<std::string> seen;
  std::string token;
  int pages = 0;
  do {
    auto page = store.List("a", 10, token);
    ASSERT_TRUE(page.ok());
    EXPECT_EQ(page->total, 25);
    for (const auto& s : page->sessions) {
      EXPECT_EQ(s.tenant, "a");
      seen.insert(s.session_id);
    }
    token = page->next_page_token;
    ++pages;
  } while (!token.empty());
  EXPECT_EQ(seen.size(), 25u);
  EXPECT_EQ(pages, 3);
  EXPECT_EQ(store.List("a", 1001, "").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store.List("a", 10, "nonsense").status().code(), absl::StatusCode::kInvalidArgument);
}

// Regression, found by the TSan run of scheduler_test: removing a session by a reference to its
// own id read the id after erasing the store's (last) reference had freed it. Sanitizer builds
// report the use-after-free; every build checks that the eviction is remembered under its id.
TEST(SessionStoreTest, RemoveByTheSessionsOwnIdRemembersTheEviction) {
  sessions::SessionStore store(Options(/*max_sessions=*/4, /*tenant_max_sessions=*/4));
  sessions::Session* session = nullptr;
  {
    auto created = store.Create("t", absl::ZeroDuration(), false);
    ASSERT_TRUE(created.ok());
    session = created->get();
  }  // now the store holds the only reference
  const std::string id = session->id;
  {
    sessions::SessionStore::Lock lock = store.Acquire();
    store.RemoveLocked(lock, session->id, /*evicted=*/true);
  }
  const absl::Status status = store.Find("t", id).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound);
  EXPECT_NE(std::string(status.message()).find("was evicted"), std::string::npos) << status;
  EXPECT_EQ(store.size(), 0);
}

}  // namespace
}  // namespace mamba
