// Test helpers for the HTTP endpoints: a raw blocking TCP client on 127.0.0.1 (to hold idle
// connections, trickle slow requests and read what a server sends), and a polling wait.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>
#include <memory>
#include <thread>
#include <vector>

namespace mamba::testing {

// A blocking TCP client on 127.0.0.1; the socket closes with it.
class RawClient {
 public:
  explicit RawClient(int port) {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  }
  ~RawClient() {
    if (fd_ >= 0) close(fd_);
  }
  RawClient(const RawClient&) = delete;
  RawClient& operator=(const RawClient&) = delete;

  bool connected() const { return connected_; }
  bool Send(const std::string& bytes) {
    return send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL) ==
           static_cast<ssize_t>(bytes.size());
  }
  // Reads until the peer closes or `timeout` passes; returns what came.
  std::string ReadUntilClosed(std::chrono::milliseconds timeout, bool* closed) {
    std::string out;
    *closed = false;
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      pollfd p{fd_, POLLIN, 0};
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (poll(&p, 1, static_cast<int>(std::max<int64_t>(1, left.count()))) <= 0) continue;
      char buf[4096];
      const ssize_t n = recv(fd_, buf, sizeof(buf), 0);
      if (n <= 0) {
        *closed = true;
        break;
      }
      out.append(buf, static_cast<size_t>(n));
    }
    return out;
  }
  // Reads one response whose body is Content-Length bytes (or up to `timeout`).
  std::string ReadResponse(std::chrono::milliseconds timeout) {
    std::string out;
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      const size_t end = out.find("\r\n\r\n");
      if (end != std::string::npos) {
        const size_t cl = out.find("Content-Length: ");
        if (cl != std::string::npos && cl < end) {
          const size_t length = std::stoul(out.substr(cl + 16));
          if (out.size() >= end + 4 + length) return out;
        }
      }
      pollfd p{fd_, POLLIN, 0};
      if (poll(&p, 1, 10) <= 0) continue;
      char buf[4096];
      const ssize_t n = recv(fd_, buf, sizeof(buf), 0);
      if (n <= 0) break;
      out.append(buf, static_cast<size_t>(n));
    }
    return out;
  }

 private:
  int fd_ = -1;
  bool connected_ = false;
};

// Waits until `pred` holds or `timeout` passes.
template <typename Pred>
inline bool WaitFor(Pred pred, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return true;
}

// `idle` connections that never send, and `slow` ones that send a request line and then one
// header every 20 ms, never finishing it: the clients that used to take every thread of a
// thread-per-connection server. Closed when this goes away.
class IdleAndSlowClients {
 public:
  IdleAndSlowClients(int port, int idle, int slow, const std::string& request_line) {
    for (int i = 0; i < idle; ++i) idle_.push_back(std::make_unique<RawClient>(port));
    for (int i = 0; i < slow; ++i) {
      slow_.push_back(std::make_unique<RawClient>(port));
      slow_.back()->Send(request_line + "\r\nHost: x\r\n");
    }
    trickle_ = std::thread([this] {
      while (!stop_.load()) {
        for (auto& c : slow_) c->Send("X-Slow: y\r\n");
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
    });
  }
  ~IdleAndSlowClients() {
    stop_ = true;
    trickle_.join();
  }
  IdleAndSlowClients(const IdleAndSlowClients&) = delete;
  IdleAndSlowClients& operator=(const IdleAndSlowClients&) = delete;

 private:
  std::vector<std::unique_ptr<RawClient>> idle_;
  std::vector<std::unique_ptr<RawClient>> slow_;
  std::atomic<bool> stop_{false};
  std::thread trickle_;
};

}  // namespace mamba::testing
