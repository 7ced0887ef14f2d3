#include "engine/sessions/session_store.h"

#include <sys/random.h>

#include <algorithm>
#include <cerrno>

#include "absl/strings/str_cat.h"

namespace mamba::sessions {
namespace {
constexpr size_t kMaxRememberedEvictions = 100000;
}  // namespace

SessionStore::SessionStore(const SessionOptions& options)
    : max_sessions_(options.max_sessions),
      tenant_max_sessions_(options.tenant_max_sessions),
      default_ttl_(options.default_ttl) {}

std::string SessionStore::NewId() {
  uint8_t bytes[16];
  size_t got = 0;
  while (got < sizeof bytes) {
    const ssize_t n = getrandom(bytes + got, sizeof bytes - got, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      std::abort();  // the kernel's random source is gone: nothing safe to hand out
    }
    got += static_cast<size_t>(n);
  }
  static const char kHex[] = "0123456789abcdef";
  std::string id(32, '0');
  for (int i = 0; i < 16; ++i) {
    id[2 * i] = kHex[bytes[i] >> 4];
    id[2 * i + 1] = kHex[bytes[i] & 15];
  }
  return id;
}

bool SessionStore::IsWellFormedId(const std::string& id) {
  if (id.size() != 32) return false;
  return std::all_of(id.begin(), id.end(),
                     [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

absl::Duration SessionStore::ClampTtl(absl::Duration ttl) const {
  return ttl <= absl::ZeroDuration() ? default_ttl_ : ttl;
}

absl::StatusOr<std::shared_ptr<Session>> SessionStore::Create(const std::string& tenant,
                                                              absl::Duration ttl, bool busy,
                                                              const std::string& requested_id,
                                                              const std::string& id_prefix) {
  if (!requested_id.empty() && !IsWellFormedId(requested_id)) {
    return absl::InvalidArgumentError(
        absl::StrCat("requested session id '", requested_id.substr(0, 64),
                     "' is malformed; allowed: 32 lowercase hex digits (128 random bits)"));
  }
  Lock lock(mu_);
  if (!requested_id.empty() && sessions_.count(requested_id) > 0) {
    return absl::AlreadyExistsError(
        absl::StrCat("session ", requested_id, " already exists; choose another id"));
  }
  if (max_sessions_ > 0 && static_cast<int64_t>(sessions_.size()) >= max_sessions_) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "the server holds its maximum of ", max_sessions_,
        " sessions (--max_sessions); close sessions you no longer need or retry later"));
  }
  if (tenant_max_sessions_ > 0 && per_tenant_[tenant] >= tenant_max_sessions_) {
    return absl::ResourceExhaustedError(
        absl::StrCat("this tenant holds its maximum of ", tenant_max_sessions_,
                     " sessions (--tenant_max_sessions); close sessions you no longer need"));
  }
  auto s = std::make_shared<Session>();
  if (!requested_id.empty()) {
    s->id = requested_id;
  } else {
    const size_t keep = std::min<size_t>(id_prefix.size(), 16);
    do {
      s->id = id_prefix.substr(0, keep) + NewId().substr(keep);
    } while (sessions_.count(s->id) > 0);
  }
  s->tenant = tenant;
  s->created = s->last_used = absl::Now();
  s->ttl = ClampTtl(ttl);
  s->busy = busy;
  sessions_[s->id] = s;
  ++per_tenant_[tenant];
  return s;
}

absl::Status SessionStore::NotFound(const std::string& id) const {
  if (evicted_.count(id) > 0) {
    return absl::NotFoundError(absl::StrCat(
        "session ", id,
        " was evicted: the server ran short of state memory and dropped it while it was idle; "
        "start a new session"));
  }
  return absl::NotFoundError(absl::StrCat("session ", id, " not found (unknown or expired)"));
}

absl::StatusOr<std::shared_ptr<Session>> SessionStore::Find(const std::string& tenant,
                                                            const std::string& id) {
  Lock lock(mu_);
  auto it = sessions_.find(id);
  if (it == sessions_.end() || it->second->tenant != tenant) {
    // Another tenant's session reads as unknown, never as "exists but not yours".
    if (it != sessions_.end()) {
      return absl::NotFoundError(absl::StrCat("session ", id, " not found (unknown or expired)"));
    }
    return NotFound(id);
  }
  return it->second;
}

absl::StatusOr<std::shared_ptr<Session>> SessionStore::Reserve(const std::string& tenant,
                                                               const std::string& id) {
  Lock lock(mu_);
  auto it = sessions_.find(id);
  if (it == sessions_.end()) return NotFound(id);
  if (it->second->tenant != tenant) {
    return absl::NotFoundError(absl::StrCat("session ", id, " not found (unknown or expired)"));
  }
  Session& s = *it->second;
  if (!s.broken_reason.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("session ", id, " can no longer be used: ", s.broken_reason,
                     "; close it and start a new session (or import an earlier export)"));
  }
  if (s.busy) {
    return absl::FailedPreconditionError(absl::StrCat(
        "session ", id,
        " is busy with another request; wait for it to finish (or cancel it) and retry"));
  }
  s.busy = true;
  return it->second;
}

void SessionStore::Release(const std::shared_ptr<Session>& session) {
  Lock lock(mu_);
  session->busy = false;
  session->last_used = absl::Now();
}

void SessionStore::Remove(const std::string& id, bool evicted) {
  Lock lock(mu_);
  RemoveLocked(lock, id, evicted);
}

void SessionStore::RemoveLocked(const Lock& held, const std::string& id, bool evicted) {
  (void)held;
  auto it = sessions_.find(id);
  if (it == sessions_.end()) return;
  auto pt = per_tenant_.find(it->second->tenant);
  if (pt != per_tenant_.end() && --pt->second <= 0) per_tenant_.erase(pt);
  if (evicted) {
    if (evicted_.size() >= kMaxRememberedEvictions) {
      // Forget the oldest evictions first.
      auto oldest =
          std::min_element(evicted_.begin(), evicted_.end(),
                           [](const auto& a, const auto& b) { return a.second < b.second; });
      evicted_.erase(oldest);
    }
    evicted_[id] = absl::Now();
  }
  // Last: `id` may be the session's own (the scheduler passes s.id), and the erase can destroy it.
  sessions_.erase(it);
}

SessionInfo SessionStore::Info(const Session& s) const {
  SessionInfo info;
  info.session_id = s.id;
  info.tenant = s.tenant;
  info.tokens = s.tokens;
  info.created = s.created;
  info.last_used = s.last_used;
  info.ttl = s.ttl;
  info.expires = s.last_used + s.ttl;
  info.tier = s.where == Session::Where::kHost ? StateTier::kHost : StateTier::kDevice;
  info.busy = s.busy;
  info.broken_reason = s.broken_reason;
  info.last_generated_tokens = s.last_generated;
  return info;
}

absl::StatusOr<SessionInfo> SessionStore::Get(const std::string& tenant, const std::string& id) {
  Lock lock(mu_);
  auto it = sessions_.find(id);
  if (it == sessions_.end()) return NotFound(id);
  if (it->second->tenant != tenant) {
    return absl::NotFoundError(absl::StrCat("session ", id, " not found (unknown or expired)"));
  }
  return Info(*it->second);
}

absl::StatusOr<SessionPage> SessionStore::List(const std::string& tenant, int32_t page_size,
                                               const std::string& page_token) {
  if (page_size < 0 || page_size > 1000) {
    return absl::InvalidArgumentError(absl::StrCat(
        "page_size ", page_size, " is out of range; allowed: 0 (default 100) to 1000"));
  }
  if (page_size == 0) page_size = 100;
  if (!page_token.empty() && !IsWellFormedId(page_token)) {
    return absl::InvalidArgumentError(
        "page_token is not one this server returned; pass next_page_token from the previous page");
  }
  Lock lock(mu_);
  SessionPage page;
  auto it = page_token.empty() ? sessions_.begin() : sessions_.upper_bound(page_token);
  for (; it != sessions_.end(); ++it) {
    if (it->second->tenant != tenant) continue;
    if (static_cast<int32_t>(page.sessions.size()) == page_size) {
      page.next_page_token = page.sessions.back().session_id;
      break;
    }
    page.sessions.push_back(Info(*it->second));
  }
  auto pt = per_tenant_.find(tenant);
  page.total = pt == per_tenant_.end() ? 0 : pt->second;
  return page;
}

void SessionStore::ForEachLocked(const std::function<void(Session&)>& fn) {
  Lock lock(mu_);
  for (auto& [id, s] : sessions_) fn(*s);
}

int64_t SessionStore::size() const {
  Lock lock(mu_);
  return static_cast<int64_t>(sessions_.size());
}

}  // namespace mamba::sessions
