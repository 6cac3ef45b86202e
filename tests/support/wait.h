// Bounded waits for tests: a child process, a condition, or a blocking call, each with a deadline
// and a message, so that a broken behaviour fails the test instead of running into ctest's timeout.
#pragma once

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

namespace elektronn::testing {

// Waits up to `timeout` for child `pid` to end and returns its wait status; on timeout it kills
// the child (SIGKILL), reaps it and returns nullopt.
inline std::optional<int> WaitPidFor(pid_t pid, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  int status = 0;
  while (true) {
    const pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) return status;
    if (r < 0) return std::nullopt;  // not our child, or already reaped
    if (std::chrono::steady_clock::now() >= deadline) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  kill(pid, SIGKILL);
  waitpid(pid, &status, 0);
  return std::nullopt;
}

// Calls `done` every `every` until it returns true (then true) or `timeout` passed (then false).
inline bool PollUntil(const std::function<bool()>& done, std::chrono::milliseconds timeout,
                      std::chrono::milliseconds every = std::chrono::milliseconds(50)) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!done()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(every);
  }
  return true;
}

// For calls that block without a timeout of their own (joining a thread, a command that waits for
// the training loop): if still alive after `timeout`, prints `what` and ends the process with a
// failure, long before ctest's timeout would.
//
//   Watchdog dog(std::chrono::seconds(60), "the training loop did not stop");
//   loop.join();
class Watchdog {
 public:
  Watchdog(std::chrono::milliseconds timeout, std::string what)
      : what_(std::move(what)), thread_([this, timeout] {
          std::unique_lock<std::mutex> lock(mu_);
          if (!cv_.wait_for(lock, timeout, [this] { return done_; })) {
            std::fprintf(stderr, "FAILED (watchdog, %lld ms): %s\n",
                         static_cast<long long>(timeout.count()), what_.c_str());
            std::fflush(stderr);
            std::_Exit(1);
          }
        }) {}
  ~Watchdog() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      done_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  std::string what_;
  std::thread thread_;
};

}  // namespace elektronn::testing
