#include "mounter/journal.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <algorithm>
#include <cstring>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "core/crypto.h"
#include "core/log.h"
#include "core/status.h"

namespace cairn::mounter {
namespace fs = std::filesystem;

namespace {

constexpr char kJournalFile[] = "journal";
constexpr size_t kSumSize = 8;
constexpr uint32_t kMaxRecord = 64 << 20;

enum RecordType : char { kChange = 1, kContent = 2, kDone = 3, kSent = 4 };

void PutU64(std::string& out, uint64_t v) {
  char b[8];
  for (int i = 0; i < 8; ++i) b[i] = static_cast<char>(v >> (8 * i));
  out.append(b, 8);
}
void PutBytes(std::string& out, std::string_view s) {
  PutU64(out, s.size());
  out.append(s);
}

// Reads fields back; any overrun marks the record bad.
struct Reader {
  std::string_view in;
  bool ok = true;
  uint64_t U64() {
    if (in.size() < 8) {
      ok = false;
      return 0;
    }
    uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v |= uint64_t{static_cast<unsigned char>(in[i])} << (8 * i);
    in.remove_prefix(8);
    return v;
  }
  std::string Bytes() {
    uint64_t n = U64();
    if (!ok || n > in.size()) {
      ok = false;
      return "";
    }
    std::string s(in.substr(0, n));
    in.remove_prefix(n);
    return s;
  }
};

std::string Sum(std::string_view payload) { return Sha256(payload).RawString().substr(0, kSumSize); }

absl::Status WriteAll(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t w = ::write(fd, data.data(), data.size());
    if (w < 0) {
      if (errno == EINTR) continue;
      return ErrnoToStatus(errno, "write journal");
    }
    data.remove_prefix(w);
  }
  return absl::OkStatus();
}

absl::Status FsyncDir(const fs::path& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return ErrnoToStatus(errno, absl::StrCat("open ", dir.string()));
  int rc = ::fsync(fd);
  int err = errno;
  ::close(fd);
  if (rc != 0) return ErrnoToStatus(err, absl::StrCat("fsync ", dir.string()));
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<Journal>> Journal::Create(const fs::path& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return ErrnoToStatus(ec.value(), absl::StrCat("create ", dir.string()));
  fs::path path = dir / kJournalFile;
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600);
  if (fd < 0) return ErrnoToStatus(errno, absl::StrCat("create ", path.string()));
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    int err = errno;
    ::close(fd);
    return ErrnoToStatus(err, absl::StrCat("lock ", path.string()));
  }
  // The directory entries (ours and the volume's) must survive a power cut
  // for the journal to be found again.
  CAIRN_RETURN_IF_ERROR(FsyncDir(dir));
  CAIRN_RETURN_IF_ERROR(FsyncDir(dir.parent_path()));
  return std::unique_ptr<Journal>(new Journal(dir, fd));
}

Journal::~Journal() {
  absl::MutexLock lock(&mu_);
  if (remove_) {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  ::close(fd_);
}

namespace {

std::string Frame(std::string_view payload) {
  std::string record;
  record.reserve(4 + kSumSize + payload.size());
  uint32_t n = payload.size();
  for (int i = 0; i < 4; ++i) record.push_back(static_cast<char>(n >> (8 * i)));
  record += Sum(payload);
  record += payload;
  return record;
}

}  // namespace

absl::Status Journal::Append(std::string payload) {
  std::string record = Frame(payload);
  absl::MutexLock lock(&mu_);
  if (failed_) return absl::DataLossError("journal: an earlier append failed");
  absl::Status st = WriteAll(fd_, record);
  if (!st.ok()) {
    failed_ = true;
    return st;
  }
  size_ += record.size();
  return absl::OkStatus();
}

uint64_t Journal::size() {
  absl::MutexLock lock(&mu_);
  return size_;
}

absl::Status Journal::Rewrite(const std::vector<std::string>& records) {
  fs::path tmp = dir_ / (std::string(kJournalFile) + ".new");
  int fd = ::open(tmp.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600);
  if (fd < 0) return ErrnoToStatus(errno, absl::StrCat("create ", tmp.string()));
  // Locked before it takes the name, so no other mounter ever sees the
  // name on an unlocked journal.
  absl::Status st;
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) st = ErrnoToStatus(errno, "lock new journal");
  uint64_t written = 0;
  for (size_t i = 0; st.ok() && i < records.size(); ++i) {
    std::string record = Frame(records[i]);
    st = WriteAll(fd, record);
    written += record.size();
  }
  if (st.ok() && ::fdatasync(fd) != 0) st = ErrnoToStatus(errno, "fdatasync new journal");
  if (st.ok() && ::rename(tmp.c_str(), (dir_ / kJournalFile).c_str()) != 0) {
    st = ErrnoToStatus(errno, "rename new journal");
  }
  if (st.ok()) st = FsyncDir(dir_);
  if (!st.ok()) {
    ::close(fd);
    ::unlink(tmp.c_str());
    return st;
  }
  absl::MutexLock lock(&mu_);
  ::close(fd_);
  fd_ = fd;
  size_ = written;
  failed_ = false;
  return absl::OkStatus();
}

std::string Journal::ChangeRecord(uint64_t seq, uint64_t node, const objects::Change& change) {
  std::string p(1, kChange);
  PutU64(p, seq);
  PutU64(p, node);
  PutBytes(p, change.SerializeAsString());
  return p;
}

std::string Journal::ContentRecord(uint64_t node, const JournalContent& content) {
  std::string p(1, kContent);
  PutU64(p, node);
  PutBytes(p, content.entry.SerializeAsString());
  PutU64(p, content.staged ? 1 : 0);
  if (content.staged) {
    const StagedFile::State& s = *content.staged;
    PutBytes(p, s.base.SerializeAsString());
    PutU64(p, s.size);
    std::string lazy;
    for (bool b : s.lazy) lazy.push_back(b ? '1' : '0');
    PutBytes(p, lazy);
    PutBytes(p, s.memory);
    PutBytes(p, s.file);
  }
  return p;
}

std::string Journal::DoneRecord(uint64_t seq) {
  std::string p(1, kDone);
  PutU64(p, seq);
  return p;
}

std::string Journal::SentRecord(uint64_t first_seq, uint64_t last_seq, std::string_view key,
                                const objects::ChangeSet& changes) {
  std::string p(1, kSent);
  PutU64(p, first_seq);
  PutU64(p, last_seq);
  PutBytes(p, key);
  PutBytes(p, changes.SerializeAsString());
  return p;
}

absl::Status Journal::Sync() {
  {
    absl::MutexLock lock(&mu_);
    if (::fdatasync(fd_) != 0) return ErrnoToStatus(errno, "fdatasync journal");
  }
  return FsyncDir(dir_);
}

absl::Status Journal::Reset() {
  absl::MutexLock lock(&mu_);
  if (::ftruncate(fd_, 0) != 0) return ErrnoToStatus(errno, "truncate journal");
  size_ = 0;
  failed_ = false;
  return absl::OkStatus();
}

absl::StatusOr<RecoveredJournal> Journal::Read(const fs::path& dir) {
  RecoveredJournal out;
  out.dir = dir;
  fs::path path = dir / kJournalFile;
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoToStatus(errno, absl::StrCat("open ", path.string()));
  std::string data;
  char buf[1 << 16];
  for (;;) {
    ssize_t r = ::read(fd, buf, sizeof buf);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    data.append(buf, r);
  }
  ::close(fd);

  uint64_t done = 0;
  struct Logged {
    uint64_t seq, node;
    objects::Change change;
  };
  std::vector<Logged> logged;
  std::vector<RecoveredSent> sent;
  absl::flat_hash_map<uint64_t, JournalContent> contents;
  std::string_view rest = data;
  size_t records = 0;
  while (rest.size() >= 4 + kSumSize) {
    uint32_t n = 0;
    for (int i = 0; i < 4; ++i) n |= uint32_t{static_cast<unsigned char>(rest[i])} << (8 * i);
    if (n == 0 || n > kMaxRecord || rest.size() < 4 + kSumSize + n) break;
    std::string_view sum = rest.substr(4, kSumSize);
    std::string_view payload = rest.substr(4 + kSumSize, n);
    if (Sum(payload) != sum) break;
    rest.remove_prefix(4 + kSumSize + n);
    Reader r{payload.substr(1)};
    switch (payload[0]) {
      case kChange: {
        Logged l;
        l.seq = r.U64();
        l.node = r.U64();
        std::string bytes = r.Bytes();
        if (r.ok && l.change.ParseFromString(bytes)) logged.push_back(std::move(l));
        break;
      }
      case kContent: {
        uint64_t node = r.U64();
        JournalContent c;
        bool parsed = c.entry.ParseFromString(r.Bytes());
        if (r.U64() != 0) {
          StagedFile::State s;
          parsed = parsed && s.base.ParseFromString(r.Bytes());
          s.size = r.U64();
          for (char b : r.Bytes()) s.lazy.push_back(b == '1');
          s.memory = r.Bytes();
          s.file = r.Bytes();
          c.staged = std::move(s);
        }
        if (r.ok && parsed) contents[node] = std::move(c);
        break;
      }
      case kDone:
        done = std::max(done, r.U64());
        break;
      case kSent: {
        RecoveredSent s;
        s.first_seq = r.U64();
        s.last_seq = r.U64();
        s.key = r.Bytes();
        bool parsed = s.changes.ParseFromString(r.Bytes());
        if (!r.ok || !parsed || s.first_seq > s.last_seq) break;
        // The newest send of any of these changes replaces older ones.
        std::erase_if(sent, [&](const RecoveredSent& o) {
          return o.first_seq <= s.last_seq && s.first_seq <= o.last_seq;
        });
        sent.push_back(std::move(s));
        break;
      }
      default:
        break;  // a kind from a newer version: nothing to replay
    }
    ++records;
  }
  if (!rest.empty()) {
    CAIRN_LOG_WARNING("journal %s: ignoring a torn tail of %d bytes after %d records",
                      path.string(), rest.size(), records);
  }
  for (RecoveredSent& s : sent) {
    if (s.first_seq > done) out.sent.push_back(std::move(s));
  }
  std::sort(out.sent.begin(), out.sent.end(),
            [](const RecoveredSent& a, const RecoveredSent& b) { return a.first_seq < b.first_seq; });
  for (Logged& l : logged) {
    if (l.seq <= done) continue;
    RecoveredChange rc;
    rc.change = std::move(l.change);
    rc.seq = l.seq;
    rc.node = l.node;
    if (rc.change.kind() == objects::Change::PUT) {
      auto it = contents.find(l.node);
      if (it == contents.end()) {
        ++out.dropped_puts;
        continue;
      }
      rc.content = it->second;
    }
    out.changes.push_back(std::move(rc));
  }
  return out;
}

Journal::Leftover::~Leftover() {
  if (fd_ >= 0) ::close(fd_);
}

void Journal::Leftover::Discard() {
  std::error_code ec;
  fs::remove_all(journal_.dir, ec);
  if (ec) CAIRN_LOG_WARNING("cannot remove %s: %s", journal_.dir.string(), ec.message());
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

absl::StatusOr<std::vector<Journal::Leftover>> Journal::FindLeftovers(const fs::path& volume_dir) {
  std::vector<Leftover> out;
  std::error_code ec;
  if (!fs::is_directory(volume_dir, ec)) return out;
  for (const auto& e : fs::directory_iterator(volume_dir, ec)) {
    if (!e.is_directory()) continue;
    fs::path path = e.path() / kJournalFile;
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      // No journal: a directory a mounter died creating. Nothing in it.
      if (errno == ENOENT) fs::remove_all(e.path(), ec);
      continue;
    }
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
      ::close(fd);  // a live mount's
      continue;
    }
    Leftover left;
    left.fd_ = fd;
    auto read = Read(e.path());
    if (!read.ok()) {
      CAIRN_LOG_WARNING("cannot read leftover journal %s: %s", e.path().string(),
                        read.status().ToString());
      continue;
    }
    left.journal_ = std::move(*read);
    if (left.journal_.changes.empty() && left.journal_.sent.empty()) {
      left.Discard();
      continue;
    }
    out.push_back(std::move(left));
  }
  return out;
}

}  // namespace cairn::mounter
