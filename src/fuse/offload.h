// SPDX-License-Identifier: Apache-2.0
#pragma once
// Requests that may take long, answered off the thread they arrived on. Private to src/fuse.
//
// Through FUSE over io_uring (-o io_uring=1) each CPU's requests are answered in order by one
// thread pinned to that CPU: that is what makes a request cheap (no wake-up on another CPU),
// but a request that takes long -- a copy-up of a big file, an fsync, an rmdir emptying
// thousands of whiteouts -- would hold up every later request of that CPU (measured: a `cat`
// and an `ls` waited 444 ms behind a 1 GiB copy-up, 25 ms through /dev/fuse). Such requests
// are posted here and answered by a small pool (libfuse lets any thread answer a ring's
// request). Through /dev/fuse the daemon's threads already serve requests side by side, and
// they run where they arrive.

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace lamina::fuse {

class Offload {
 public:
  Offload() = default;
  Offload(const Offload&) = delete;
  Offload& operator=(const Offload&) = delete;
  ~Offload() { stop(); }

  // Starts `threads` threads (once; later calls do nothing).
  void start(int threads) {
    std::lock_guard lock(mu_);
    if (!workers_.empty() || stopping_) return;
    for (int i = 0; i < threads; ++i) workers_.emplace_back([this] { work(); });
    active_ = true;
  }
  // Runs `task` on the pool; false once stopping, and then `task` is left as it was.
  bool post(std::function<void()>&& task) {
    {
      std::lock_guard lock(mu_);
      if (!active_) return false;
      tasks_.push_back(std::move(task));
    }
    cv_.notify_one();
    return true;
  }
  // Runs what is queued, then ends the threads. Before the FUSE session goes: a task answers
  // its request through the session.
  void stop() {
    std::vector<std::thread> workers;
    {
      std::lock_guard lock(mu_);
      stopping_ = true;
      active_ = false;
      workers.swap(workers_);
    }
    cv_.notify_all();
    for (auto& t : workers) t.join();
  }

 private:
  void work() {
    for (;;) {
      std::function<void()> task;
      {
        std::unique_lock lock(mu_);
        cv_.wait(lock, [this] { return stopping_ || !tasks_.empty(); });
        if (tasks_.empty()) return;  // stopping, nothing left
        task = std::move(tasks_.front());
        tasks_.pop_front();
      }
      task();
    }
  }

  std::mutex mu_;  // guards everything below (leaf)
  std::condition_variable cv_;
  std::deque<std::function<void()>> tasks_;
  std::vector<std::thread> workers_;
  bool active_ = false;
  bool stopping_ = false;
};

}  // namespace lamina::fuse
