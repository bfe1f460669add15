#include "cli/output.h"

#include <unistd.h>

#include <cstdio>
#include <iostream>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/json.h"
#include "absl/time/time.h"

namespace cairn::cli {

bool StdoutIsTerminal() { return ::isatty(STDOUT_FILENO) == 1; }
bool StderrIsTerminal() { return ::isatty(STDERR_FILENO) == 1; }

std::string HumanTime(int64_t unix_ns) {
  if (unix_ns == 0) return "-";
  return absl::FormatTime("%Y-%m-%d %H:%M:%S", absl::FromUnixNanos(unix_ns), absl::UTCTimeZone());
}

std::string JsonString(const std::string& s) { return JsonQuote(s); }

std::string FormatTable(const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> widths;
  for (const auto& row : rows) {
    if (widths.size() < row.size()) widths.resize(row.size(), 0);
    for (size_t i = 0; i < row.size(); ++i) widths[i] = std::max(widths[i], row[i].size());
  }
  std::string out;
  for (const auto& row : rows) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size()) line += std::string(widths[i] - row[i].size() + 2, ' ');
    }
    out += line + "\n";
  }
  return out;
}

absl::Status Confirm(const std::string& question) {
  if (::isatty(STDIN_FILENO) != 1) {
    return absl::FailedPreconditionError(
        absl::StrCat(question, ": not confirmed (stdin is not a terminal); pass -y to confirm"));
  }
  std::fprintf(stderr, "%s [y/N] ", question.c_str());
  std::fflush(stderr);
  std::string answer;
  if (!std::getline(std::cin, answer)) answer.clear();
  std::string a = absl::AsciiStrToLower(absl::StripAsciiWhitespace(answer));
  if (a == "y" || a == "yes") return absl::OkStatus();
  return absl::CancelledError("aborted, nothing changed");
}

Progress::Progress(std::string label, uint64_t total_bytes)
    : label_(std::move(label)),
      total_(total_bytes),
      enabled_(StderrIsTerminal()),
      start_(std::chrono::steady_clock::now()) {
  if (!enabled_) return;
  thread_ = std::thread([this] {
    absl::MutexLock lock(&mu_);
    while (!mu_.AwaitWithTimeout(absl::Condition(&stop_), absl::Milliseconds(250))) {
      mu_.Unlock();
      Draw(false);
      mu_.Lock();
    }
  });
}

Progress::~Progress() { Finish(); }

void Progress::Finish() {
  if (!enabled_) return;
  {
    absl::MutexLock lock(&mu_);
    if (stop_) return;
    stop_ = true;
  }
  if (thread_.joinable()) thread_.join();
  Draw(true);
}

void Progress::Draw(bool final) {
  const uint64_t done = this->done();
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const double rate = secs > 0 ? done / secs : 0;
  std::string line = absl::StrCat("\r", label_, "  ", HumanBytes(done));
  if (total_ > 0) {
    absl::StrAppend(&line, " / ", HumanBytes(total_),
                    absl::StrFormat("  %3.0f%%", 100.0 * done / total_));
  }
  absl::StrAppend(&line, "  ", HumanBytes(static_cast<uint64_t>(rate)), "/s");
  if (!final && total_ > done && rate > 0) {
    const int eta = static_cast<int>((total_ - done) / rate);
    absl::StrAppend(&line, absl::StrFormat("  ETA %d:%02d", eta / 60, eta % 60));
  } else if (final) {
    absl::StrAppend(&line, absl::StrFormat("  in %.1fs", secs));
  }
  absl::StrAppend(&line, "\x1b[K", final ? "\n" : "");
  std::fputs(line.c_str(), stderr);
  std::fflush(stderr);
}

}  // namespace cairn::cli
