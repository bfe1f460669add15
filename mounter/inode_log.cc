#include "mounter/inode_log.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <functional>
#include <iterator>
#include <optional>

#include "absl/strings/str_cat.h"
#include "core/log.h"
#include "core/status.h"

namespace cairn::mounter {
namespace fs = std::filesystem;
namespace {

constexpr size_t kFixed = 8 + 8 + 4;
// A name is at most 255 bytes (kMaxComponentLength); anything longer is not a record.
constexpr size_t kMaxPayload = kFixed + 4096;

std::string Encode(const InodeLog::Record& r) {
  std::string out;
  uint32_t len = static_cast<uint32_t>(kFixed + r.name.size());
  out.append(reinterpret_cast<const char*>(&len), 4);
  out.append(reinterpret_cast<const char*>(&r.ino), 8);
  out.append(reinterpret_cast<const char*>(&r.parent), 8);
  out.append(reinterpret_cast<const char*>(&r.type), 4);
  out += r.name;
  return out;
}

}  // namespace

InodeLog::InodeLog(fs::path file, ScopedFd fd) : file_(std::move(file)), fd_(std::move(fd)) {}

absl::StatusOr<std::unique_ptr<InodeLog>> InodeLog::Create(const fs::path& file,
                                                           const std::vector<Record>& inherited) {
  ScopedFd fd(::open(file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600));
  if (!fd.valid()) return ErrnoToStatus(errno, absl::StrCat("create ", file.string()));
  std::unique_ptr<InodeLog> log(new InodeLog(file, std::move(fd)));
  absl::MutexLock lock(&log->mu_);
  std::string all;
  for (const Record& r : inherited) {
    all += Encode(r);
    log->PlaceLocked(r.ino, Place{r.parent, NameHash(r.name), r.type});
  }
  if (!all.empty()) {
    for (size_t done = 0; done < all.size();) {
      ssize_t n = ::write(log->fd_.get(), all.data() + done, all.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return ErrnoToStatus(errno, absl::StrCat("write ", file.string()));
      done += static_cast<size_t>(n);
    }
  }
  return log;
}

void InodeLog::AppendLocked(const Record& r) {
  if (!status_.ok()) return;
  std::string rec = Encode(r);
  // O_APPEND and one write per record: a record is whole or absent.
  ssize_t n;
  do {
    n = ::write(fd_.get(), rec.data(), rec.size());
  } while (n < 0 && errno == EINTR);
  if (n != static_cast<ssize_t>(rec.size())) {
    status_ = n < 0 ? ErrnoToStatus(errno, absl::StrCat("write ", file_.string()))
                    : absl::DataLossError(absl::StrCat("short write to ", file_.string()));
    CAIRN_LOG_ERROR("inode log: %s; a mounter taking over this mount would not find every "
                    "file the kernel knows",
                    status_.ToString());
  }
}

uint64_t InodeLog::NameHash(std::string_view name) { return std::hash<std::string_view>{}(name); }

void InodeLog::PlaceLocked(uint64_t ino, const Place& place) {
  place_[ino] = place;
  at_[{place.parent, place.name}] = ino;
}

void InodeLog::Named(uint64_t ino, uint64_t parent, std::string_view name, uint32_t type) {
  Place place{parent, NameHash(name), type};
  absl::MutexLock lock(&mu_);
  auto it = place_.find(ino);
  if (it != place_.end() && it->second.parent == parent && it->second.name == place.name &&
      it->second.type == type) {
    return;
  }
  AppendLocked(Record{ino, parent, type, std::string(name)});
  PlaceLocked(ino, place);
}

void InodeLog::Renamed(uint64_t parent, std::string_view name, uint64_t new_parent,
                       std::string_view new_name) {
  uint64_t hash = NameHash(name);
  absl::MutexLock lock(&mu_);
  auto it = at_.find(std::make_pair(parent, hash));
  if (it == at_.end()) return;
  uint64_t ino = it->second;
  at_.erase(it);
  auto place = place_.find(ino);
  if (place == place_.end() || place->second.parent != parent || place->second.name != hash) {
    return;  // the kernel knows that inode under another name by now
  }
  uint32_t type = place->second.type;
  AppendLocked(Record{ino, new_parent, type, std::string(new_name)});
  PlaceLocked(ino, Place{new_parent, NameHash(new_name), type});
}

absl::Status InodeLog::status() {
  absl::MutexLock lock(&mu_);
  return status_;
}

absl::StatusOr<std::vector<InodeLog::Record>> InodeLog::Read(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) {
    std::error_code ec;
    if (!fs::exists(file, ec)) return absl::NotFoundError(absl::StrCat(file.string(), " missing"));
    return absl::UnavailableError(absl::StrCat("cannot read ", file.string()));
  }
  std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  // Newest record per inode, keeping the order of those newest records.
  std::vector<Record> all;
  absl::flat_hash_map<uint64_t, size_t> newest;
  size_t at = 0;
  while (data.size() - at >= 4) {
    uint32_t len;
    std::memcpy(&len, data.data() + at, 4);
    if (len < kFixed || len > kMaxPayload || data.size() - at - 4 < len) break;  // torn tail
    const char* p = data.data() + at + 4;
    Record r;
    std::memcpy(&r.ino, p, 8);
    std::memcpy(&r.parent, p + 8, 8);
    std::memcpy(&r.type, p + 16, 4);
    r.name.assign(p + kFixed, len - kFixed);
    at += 4 + len;
    newest[r.ino] = all.size();
    all.push_back(std::move(r));
  }
  std::vector<Record> out;
  for (size_t i = 0; i < all.size(); ++i) {
    if (newest[all[i].ino] == i) out.push_back(std::move(all[i]));
  }
  return out;
}

std::vector<InodeLog::Resolved> InodeLog::Resolve(const std::vector<Record>& records) {
  absl::flat_hash_map<uint64_t, size_t> by_ino;
  for (size_t i = 0; i < records.size(); ++i) by_ino[records[i].ino] = i;
  // Path of each record, memoised (failures too: a broken chain or a cycle).
  std::vector<std::optional<std::string>> path(records.size());
  std::vector<bool> failed(records.size(), false);
  auto resolve = [&](size_t i) -> std::optional<std::string> {
    std::vector<size_t> chain;  // from i up to (not including) a known path
    size_t cur = i;
    std::string base;  // the path above the chain's top; "" is the root
    for (;;) {
      if (failed[cur]) break;
      if (path[cur]) {
        base = *path[cur];
        break;
      }
      chain.push_back(cur);
      uint64_t parent = records[cur].parent;
      if (parent == 1) break;
      auto it = by_ino.find(parent);
      if (it == by_ino.end() || chain.size() > records.size()) {
        failed[cur] = true;
        break;
      }
      cur = it->second;
    }
    if (failed[cur]) {
      for (size_t c : chain) failed[c] = true;
      return std::nullopt;
    }
    for (auto it = chain.rbegin(); it != chain.rend(); ++it) {
      std::string p = base.empty() ? records[*it].name : base + "/" + records[*it].name;
      path[*it] = p;
      base = std::move(p);
    }
    return path[i];
  };
  // Newest claim per path wins: records are oldest first.
  absl::flat_hash_map<std::string, size_t> owner;
  std::vector<std::optional<std::string>> resolved(records.size());
  for (size_t i = 0; i < records.size(); ++i) {
    if (records[i].ino == 1 || records[i].name.empty()) continue;
    resolved[i] = resolve(i);
    if (resolved[i]) owner[*resolved[i]] = i;
  }
  std::vector<Resolved> out;
  for (size_t i = 0; i < records.size(); ++i) {
    if (!resolved[i] || owner[*resolved[i]] != i) continue;
    out.push_back({*resolved[i], records[i].ino, records[i].type});
  }
  return out;
}

}  // namespace cairn::mounter
