// Terminal-facing helpers for the CLI: sizes and times for people, JSON
// string escaping, tables, confirmation prompts and a progress bar. Only
// what goes to a terminal is decorated; pipes get plain data.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "core/size.h"

namespace cairn::cli {

bool StdoutIsTerminal();
bool StderrIsTerminal();

using ::cairn::HumanBytes;                  // "1.5 GiB" (core/size.h)
std::string HumanTime(int64_t unix_ns);     // "2026-11-26 05:40:12" (UTC)
std::string JsonString(const std::string& s);

// Left-aligned columns separated by two spaces; the first row is the header.
std::string FormatTable(const std::vector<std::vector<std::string>>& rows);

// Asks "QUESTION [y/N] " on stderr when stdin is a terminal. OK only on
// "y"/"yes". FailedPrecondition telling the user to pass -y when stdin is
// not a terminal; Cancelled when they answer no.
[[nodiscard]] absl::Status Confirm(const std::string& question);

// A one-line progress display on stderr (bytes, percent, rate, ETA),
// redrawn a few times a second by its own thread; only when stderr is a
// terminal, otherwise it does nothing. Add() is thread-safe.
class Progress {
 public:
  Progress(std::string label, uint64_t total_bytes);
  ~Progress();
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  void Add(uint64_t bytes) { done_.fetch_add(bytes, std::memory_order_relaxed); }
  uint64_t done() const { return done_.load(std::memory_order_relaxed); }
  // Draws the final state and ends the line.
  void Finish();

 private:
  void Draw(bool final);

  const std::string label_;
  const uint64_t total_;
  const bool enabled_;
  const std::chrono::steady_clock::time_point start_;
  std::atomic<uint64_t> done_{0};
  absl::Mutex mu_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace cairn::cli
