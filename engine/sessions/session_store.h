// The session store: ids, owners, TTLs and limits of the sessions (session.h). It hands out and
// finds sessions; where their states live is StatePlacement's job (state_placement.h), and only
// the scheduler thread changes it.
//
// Thread-safety: every method may be called from any thread. Session fields are guarded by the
// store's mutex; hold a SessionStore::Lock while reading or changing them.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "engine/api/session_info.h"
#include "engine/sessions/session.h"

namespace mamba::sessions {

class SessionStore {
 public:
  explicit SessionStore(const SessionOptions& options);
  SessionStore(const SessionStore&) = delete;
  SessionStore& operator=(const SessionStore&) = delete;

  using Lock = std::unique_lock<std::mutex>;
  Lock Acquire() const { return Lock(mu_); }

  // Creates an empty (zero-state) session owned by `tenant`, marked busy when `busy`, with id
  // `requested_id` when given (INVALID_ARGUMENT if malformed, ALREADY_EXISTS if taken), else
  // `id_prefix` (16 hex digits, may be empty) followed by fresh random digits.
  // RESOURCE_EXHAUSTED past the server's or the tenant's limit.
  absl::StatusOr<std::shared_ptr<Session>> Create(const std::string& tenant, absl::Duration ttl,
                                                  bool busy, const std::string& requested_id = "",
                                                  const std::string& id_prefix = "");
  // Finds `id` for `tenant` and marks it busy. NOT_FOUND when unknown, expired, evicted or owned by
  // another tenant (the message never says which); FAILED_PRECONDITION when already busy or
  // broken (the message says why).
  absl::StatusOr<std::shared_ptr<Session>> Reserve(const std::string& tenant,
                                                   const std::string& id);
  // Finds `id` for `tenant` without reserving it (same errors as Reserve, minus busy).
  absl::StatusOr<std::shared_ptr<Session>> Find(const std::string& tenant, const std::string& id);
  // Clears busy and refreshes last_used.
  void Release(const std::shared_ptr<Session>& session);
  // Removes a session; `evicted` remembers its id so that its next use says it was evicted.
  void Remove(const std::string& id, bool evicted);

  SessionInfo Info(const Session& s) const;  // caller holds the lock
  absl::StatusOr<SessionInfo> Get(const std::string& tenant, const std::string& id);
  absl::StatusOr<SessionPage> List(const std::string& tenant, int32_t page_size,
                                   const std::string& page_token);

  // Calls fn for every session, with the lock held.
  void ForEachLocked(const std::function<void(Session&)>& fn);
  // For the scheduler, which holds the lock (from Acquire) across several steps.
  using SessionMap = std::map<std::string, std::shared_ptr<Session>>;
  const SessionMap& sessions(const Lock& held) const {
    (void)held;
    return sessions_;
  }
  void RemoveLocked(const Lock& held, const std::string& id, bool evicted);
  int64_t size() const;
  absl::Duration ClampTtl(absl::Duration ttl) const;

  // A new unguessable id: 128 bits from the OS's random source, 32 lowercase hex digits.
  static std::string NewId();
  static bool IsWellFormedId(const std::string& id);

 private:
  absl::Status NotFound(const std::string& id) const;  // caller holds the lock

  const int32_t max_sessions_;
  const int32_t tenant_max_sessions_;
  const absl::Duration default_ttl_;
  mutable std::mutex mu_;
  std::map<std::string, std::shared_ptr<Session>> sessions_;
  std::map<std::string, int64_t> per_tenant_;
  // Recently evicted ids (bounded), so that their next use gets a precise message.
  std::map<std::string, absl::Time> evicted_;
};

}  // namespace mamba::sessions
