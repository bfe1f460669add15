// Test helpers for mounter hand-over (docs/decisions.md D16): a reader that
// holds one descriptor open on a mounted file and reads it in a loop, as a
// pod would, recording every error and the longest pause; and the process
// lookups the tests need to kill a mount's mounter or holder. Test-only.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"

namespace cairn::e2e {

// Direct children of `pid` (/proc/PID/task/PID/children).
inline std::vector<pid_t> ChildrenOf(pid_t pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/task/", pid, "/children"));
  std::vector<pid_t> out;
  pid_t child;
  while (in >> child) out.push_back(child);
  return out;
}

// Waits up to `timeout` for `pid` to have exactly one child other than
// `not_this`; returns it, or 0.
inline pid_t WaitForNewChild(pid_t pid, pid_t not_this, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    for (pid_t c : ChildrenOf(pid)) {
      if (c != not_this) return c;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return 0;
}

// Aborts the FUSE connection mounted at `mountpoint` (through
// /sys/fs/fuse/connections), which ends every request waiting on it: the
// way out for a test that found a read hanging.
inline void AbortFuseConnection(const std::filesystem::path& mountpoint) {
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  std::string needle = " " + mountpoint.string() + " ";
  while (std::getline(in, line)) {
    if (line.find(needle) == std::string::npos) continue;
    std::istringstream fields(line);
    std::string id, parent, dev;
    fields >> id >> parent >> dev;
    std::string minor = dev.substr(dev.find(':') + 1);
    std::ofstream abort_file("/sys/fs/fuse/connections/" + minor + "/abort");
    abort_file << "1";
  }
}

// Reads `expected` back from `file` through one descriptor opened with
// O_DIRECT (so every read reaches the mounter, not the page cache), 64 KiB
// at a time, round and round, every 20 ms, on its own thread.
class ReadLoop {
 public:
  ReadLoop(const std::filesystem::path& file, std::string expected)
      : expected_(std::move(expected)) {
    fd_ = ::open(file.c_str(), O_RDONLY | O_DIRECT | O_CLOEXEC);
    open_errno_ = fd_ < 0 ? errno : 0;
    if (fd_ >= 0) thread_ = std::thread([this] { Loop(); });
  }
  ~ReadLoop() {
    Stop();
    if (fd_ >= 0) ::close(fd_);
  }
  ReadLoop(const ReadLoop&) = delete;
  ReadLoop& operator=(const ReadLoop&) = delete;

  int open_errno() const { return open_errno_; }
  int fd() const { return fd_; }
  // Stops the loop. False if a read was still hanging after `grace` (then
  // `mountpoint`'s connection is aborted so that the thread can end).
  bool Stop(std::chrono::seconds grace = std::chrono::seconds(15),
            const std::filesystem::path& mountpoint = {}) {
    if (!thread_.joinable()) return !hung_;
    stop_.store(true);
    auto deadline = std::chrono::steady_clock::now() + grace;
    while (!finished_.load() && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    if (!finished_.load()) {
      hung_ = true;
      if (!mountpoint.empty()) AbortFuseConnection(mountpoint);
    }
    thread_.join();
    return !hung_;
  }
  // Successful reads so far.
  int reads() const { return reads_.load(); }
  // Waits until `n` more reads succeeded than now, up to `timeout`.
  bool WaitForReads(int n, std::chrono::milliseconds timeout) {
    int target = reads() + n;
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (reads() < target) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return true;
  }
  // errno → count of failed reads.
  std::map<int, int> errors() {
    absl::MutexLock lock(&mu_);
    return errors_;
  }
  int mismatches() const { return mismatches_.load(); }
  // The longest time between two successful reads (or from the last one to
  // Stop()).
  std::chrono::milliseconds longest_gap() {
    absl::MutexLock lock(&mu_);
    return longest_gap_;
  }
  std::string Describe() {
    absl::MutexLock lock(&mu_);
    std::vector<std::string> errs;
    for (const auto& [e, n] : errors_) errs.push_back(absl::StrCat(std::strerror(e), " x", n));
    return absl::StrCat(reads_.load(), " reads, ", mismatches_.load(), " mismatches, errors: [",
                        absl::StrJoin(errs, ", "), "], longest gap ", longest_gap_.count(), " ms",
                        hung_ ? ", a read HUNG" : "");
  }

 private:
  void Loop() {
    constexpr size_t kPiece = 64 << 10;
    void* raw = std::aligned_alloc(4096, kPiece);
    char* buf = static_cast<char*>(raw);
    size_t off = 0;
    auto last_ok = std::chrono::steady_clock::now();
    while (!stop_.load()) {
      if (off >= expected_.size()) off = 0;
      ssize_t n = ::pread(fd_, buf, kPiece, static_cast<off_t>(off));
      int err = errno;
      auto now = std::chrono::steady_clock::now();
      if (n < 0) {
        absl::MutexLock lock(&mu_);
        ++errors_[err];
      } else {
        size_t want = std::min(kPiece, expected_.size() - off);
        if (static_cast<size_t>(n) != want ||
            std::memcmp(buf, expected_.data() + off, want) != 0) {
          mismatches_.fetch_add(1);
        }
        {
          absl::MutexLock lock(&mu_);
          longest_gap_ = std::max(longest_gap_, std::chrono::duration_cast<std::chrono::milliseconds>(
                                                    now - last_ok));
        }
        last_ok = now;
        reads_.fetch_add(1);
        off += kPiece;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    {
      absl::MutexLock lock(&mu_);
      longest_gap_ = std::max(longest_gap_, std::chrono::duration_cast<std::chrono::milliseconds>(
                                                std::chrono::steady_clock::now() - last_ok));
    }
    std::free(raw);
    finished_.store(true);
  }

  const std::string expected_;
  int fd_ = -1;
  int open_errno_ = 0;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> finished_{false};
  bool hung_ = false;
  std::atomic<int> reads_{0};
  std::atomic<int> mismatches_{0};
  absl::Mutex mu_;
  std::map<int, int> errors_ ABSL_GUARDED_BY(mu_);
  std::chrono::milliseconds longest_gap_ ABSL_GUARDED_BY(mu_){0};
};

}  // namespace cairn::e2e
