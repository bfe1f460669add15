#include "core/transfer.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <filesystem>
#include <functional>
#include <future>
#include <optional>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "core/crypto.h"
#include "core/digest.h"
#include "core/fd.h"
#include "core/files.h"
#include "core/object_store.h"
#include "core/path.h"
#include "core/remote_blob_store.h"
#include "core/status.h"
#include "core/tree.h"

namespace cairn {
namespace {

namespace fs = std::filesystem;

// Chunks per GetObjects call: big enough to amortise the call, small
// enough that several are in flight on every worker.
constexpr size_t kChunksPerUnit = 2;
// Chunks per PutObjects stream (one durability point on the server: its
// blobs are flushed together when the stream ends), checked with
// MissingObjects and held in memory kChunksPerCheck at a time.
constexpr size_t kChunksPerPutUnit = 16;
constexpr size_t kChunksPerCheck = 2;
// Inline-sized files handled per work unit.
constexpr size_t kSmallFilesPerUnit = 64;

// Workers overlap hashing/sealing (CPU) with the server's blob writes and
// fsyncs (I/O), so more of them than cores pays off. CAIRN_TRANSFER_THREADS
// overrides (benchmarks, slow links).
size_t WorkerCount() { return TransferWorkerCount(); }

// The observer's calls, each made once.
class Progress {
 public:
  Progress(TransferObserver* observer, std::string_view label, uint64_t total)
      : observer_(observer) {
    if (observer_ != nullptr) observer_->Begin(label, total);
  }
  ~Progress() { Finish(); }
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;
  void Add(uint64_t bytes) {
    if (observer_ != nullptr) observer_->Add(bytes);
  }
  void Finish() {
    if (observer_ != nullptr && !finished_) observer_->End();
    finished_ = true;
  }

 private:
  TransferObserver* const observer_;
  bool finished_ = false;
};

// A unit of upload work is redone from the local file when the server went
// away mid-stream (UNAVAILABLE); MissingObjects skips what already landed.
// Each call inside already waited up to retry_for for the server.
absl::Status RetryUnavailable(const std::function<absl::Status()>& unit) {
  absl::Status s;
  for (int attempt = 0; attempt < 3; ++attempt) {
    s = unit();
    if (!absl::IsUnavailable(s)) return s;
  }
  return s;
}

}  // namespace

size_t TransferWorkerCount() {
  static const size_t count = [] {
    if (const char* env = std::getenv("CAIRN_TRANSFER_THREADS"); env != nullptr) {
      int n = std::atoi(env);
      if (n > 0) return static_cast<size_t>(n);
    }
    return std::max<size_t>(8, std::thread::hardware_concurrency() * 4);
  }();
  return count;
}

namespace {

std::string S(std::string_view v) { return std::string(v); }

int64_t MtimeNs(const struct stat& st) {
  return static_cast<int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec;
}

// Runs `work(i)` for i in [0, n) on a pool of threads; stops handing out
// work after the first error, which it returns.
absl::Status ParallelFor(size_t n, const std::function<absl::Status(size_t)>& work) {
  std::atomic<size_t> next{0};
  std::atomic<bool> failed{false};
  absl::Mutex mu;
  absl::Status first;
  auto run = [&] {
    while (!failed.load()) {
      size_t i = next.fetch_add(1);
      if (i >= n) return;
      absl::Status s = work(i);
      if (!s.ok()) {
        absl::MutexLock lock(&mu);
        if (first.ok()) first = s;
        failed = true;
      }
    }
  };
  std::vector<std::thread> threads;
  const size_t count = std::min(WorkerCount(), n);
  for (size_t t = 1; t < count; ++t) threads.emplace_back(run);
  run();
  for (auto& t : threads) t.join();
  return first;
}

absl::Status PreadFull(int fd, char* buf, size_t n, uint64_t offset, const fs::path& path) {
  size_t got = 0;
  while (got < n) {
    ssize_t r = ::pread(fd, buf + got, n - got, static_cast<off_t>(offset + got));
    if (r < 0) {
      if (errno == EINTR) continue;
      return ErrnoToStatus(errno, absl::StrCat("read ", path.string()));
    }
    if (r == 0) {
      return absl::AbortedError(
          absl::StrCat(path.string(), " shrank while it was being uploaded; nothing was committed"));
    }
    got += static_cast<size_t>(r);
  }
  return absl::OkStatus();
}

absl::Status PwriteFull(int fd, std::string_view data, uint64_t offset, const fs::path& path) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t w = ::pwrite(fd, data.data() + done, data.size() - done,
                         static_cast<off_t>(offset + done));
    if (w < 0) {
      if (errno == EINTR) continue;
      return ErrnoToStatus(errno, absl::StrCat("write ", path.string()));
    }
    done += static_cast<size_t>(w);
  }
  return absl::OkStatus();
}

absl::Status WriteAll(int fd, std::string_view data, std::string_view what) {
  while (!data.empty()) {
    ssize_t w = ::write(fd, data.data(), data.size());
    if (w < 0) {
      if (errno == EINTR) continue;
      return ErrnoToStatus(errno, absl::StrCat("write ", S(what)));
    }
    data.remove_prefix(static_cast<size_t>(w));
  }
  return absl::OkStatus();
}

// The volume opened for client-side sealing.
struct OpenedVolume {
  api::OpenVolumeResponse info;
  VolumeApiClient* client = nullptr;
  std::unique_ptr<RemoteBlobStore> blobs;
  std::unique_ptr<ObjectStore> objects;
  const std::string& id() const { return info.volume().id(); }
  const DataKey& key() const { return objects->key(); }
};

absl::StatusOr<OpenedVolume> OpenForTransfer(VolumeApiClient& client, const std::string& volume) {
  CAIRN_RETURN_IF_ERROR(ValidateVolumeName(volume));
  OpenedVolume out;
  out.client = &client;
  CAIRN_ASSIGN_OR_RETURN(out.info, client.OpenVolume(client.Ref(volume)));
  CAIRN_ASSIGN_OR_RETURN(DataKey key, DataKey::FromBytes(out.info.data_key()));
  out.blobs = std::make_unique<RemoteBlobStore>(&client);
  out.objects = std::make_unique<ObjectStore>(out.blobs.get(), out.info.volume().id(), key);
  return out;
}

std::string LocalBaseName(const std::string& local) {
  fs::path p = fs::path(local).lexically_normal();
  std::string name = p.filename().string();
  if (name.empty() || name == "." || name == "..") {
    std::error_code ec;
    fs::path abs = fs::absolute(p, ec).lexically_normal();
    if (!abs.has_filename() && abs.has_parent_path()) abs = abs.parent_path();
    name = abs.filename().string();
  }
  return name;
}

std::string RemoteDisplay(const std::string& volume, std::string_view path) {
  return absl::StrCat(volume, ":/", S(path));
}

// ---- put -------------------------------------------------------------------

struct UploadItem {
  enum Kind { kDirectory, kFile, kSymlink } kind = kFile;
  fs::path local;
  std::string remote;  // normalised volume path
  uint64_t size = 0;
  uint32_t mode = 0;
  int64_t mtime_ns = 0;
  std::string link_target;
  std::vector<std::string> chunks;  // raw addresses, by index ("" in a hole)
  std::vector<Extent> holes;        // large files: the local file's holes
  objects::Entry entry;             // small files: filled by StoreBytes
};

absl::StatusOr<UploadItem> ScanOne(const fs::path& local, const std::string& remote) {
  struct stat st;
  if (::lstat(local.c_str(), &st) != 0) {
    return ErrnoToStatus(errno, absl::StrCat("cannot read ", local.string()));
  }
  UploadItem item;
  item.local = local;
  item.remote = remote;
  item.mode = st.st_mode & 07777;
  item.mtime_ns = MtimeNs(st);
  if (S_ISDIR(st.st_mode)) {
    item.kind = UploadItem::kDirectory;
  } else if (S_ISREG(st.st_mode)) {
    item.kind = UploadItem::kFile;
    item.size = static_cast<uint64_t>(st.st_size);
    // Sparse files stay sparse (D28); st_blocks says whether to look.
    if (item.size > kInlineMax && static_cast<uint64_t>(st.st_blocks) * 512 < item.size) {
      ScopedFd fd(::open(local.c_str(), O_RDONLY | O_CLOEXEC));
      if (!fd.valid()) return ErrnoToStatus(errno, absl::StrCat("open ", local.string()));
      absl::StatusOr<std::vector<Extent>> holes = FileHoles(fd.get(), 0, item.size);
      if (!holes.ok()) {
        return absl::Status(holes.status().code(),
                            absl::StrCat(local.string(), ": ", holes.status().message()));
      }
      item.holes = NormalizeHoles(std::move(*holes), item.size);
    }
  } else if (S_ISLNK(st.st_mode)) {
    item.kind = UploadItem::kSymlink;
    std::error_code ec;
    item.link_target = fs::read_symlink(local, ec).string();
    if (ec) return ErrnoToStatus(ec.value(), absl::StrCat("readlink ", local.string()));
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat(local.string(), " is not a regular file, directory or symlink"));
  }
  return item;
}

absl::StatusOr<std::vector<UploadItem>> ScanLocal(const fs::path& local,
                                                  const std::string& target,
                                                  TransferObserver* observer) {
  std::vector<UploadItem> items;
  CAIRN_ASSIGN_OR_RETURN(UploadItem top, ScanOne(local, target));
  const bool is_dir = top.kind == UploadItem::kDirectory;
  items.push_back(std::move(top));
  if (!is_dir) return items;
  std::error_code ec;
  fs::recursive_directory_iterator it(local, fs::directory_options::none, ec);
  if (ec) return ErrnoToStatus(ec.value(), absl::StrCat("cannot list ", local.string()));
  for (; it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (ec) return ErrnoToStatus(ec.value(), absl::StrCat("cannot list ", local.string()));
    const fs::path& p = it->path();
    std::string rel = p.lexically_relative(local).generic_string();
    CAIRN_ASSIGN_OR_RETURN(std::string remote, NormalizePath(JoinPath(target, rel)));
    absl::StatusOr<UploadItem> item = ScanOne(p, remote);
    if (absl::IsInvalidArgument(item.status())) {
      if (observer != nullptr) observer->Skipped(p.string(), item.status());
      continue;
    }
    if (!item.ok()) return item.status();
    items.push_back(std::move(*item));
  }
  if (ec) return ErrnoToStatus(ec.value(), absl::StrCat("cannot list ", local.string()));
  return items;
}

// One unit of upload work: a run of chunks of one large file, or a batch of
// small files.
struct UploadUnit {
  size_t item = 0;
  size_t first_chunk = 0;
  size_t chunk_count = 0;
  std::vector<size_t> small_items;
};

absl::Status UploadChunks(OpenedVolume& vol, UploadItem& item, const UploadUnit& unit,
                          Progress& progress) {
  ScopedFd fd(::open(item.local.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return ErrnoToStatus(errno, absl::StrCat("open ", item.local.string()));
  // One PutObjects stream for the whole unit: the server makes its blobs
  // durable together when the stream ends (one flush, not one per chunk).
  // Chunks are read, addressed, checked and sealed kChunksPerCheck at a time,
  // so a worker holds only that many in memory.
  std::unique_ptr<VolumeApiClient::PutStream> stream;
  std::string plain[kChunksPerCheck];
  Digest addresses[kChunksPerCheck];
  uint64_t bytes = 0;
  for (size_t g = 0; g < unit.chunk_count; g += kChunksPerCheck) {
    const size_t count = std::min(kChunksPerCheck, unit.chunk_count - g);
    std::vector<Digest> group;
    for (size_t k = 0; k < count; ++k) {
      const size_t index = unit.first_chunk + g + k;
      const uint64_t offset = index * kChunkSize;
      const size_t n = static_cast<size_t>(std::min<uint64_t>(kChunkSize, item.size - offset));
      if (ChunkInHole(item.holes, item.size, index)) {  // nothing to store
        item.chunks[index].clear();
        plain[k].clear();
        continue;
      }
      plain[k].resize(n);
      CAIRN_RETURN_IF_ERROR(PreadFull(fd.get(), plain[k].data(), n, offset, item.local));
      ZeroHoles(item.holes, offset, plain[k]);  // the holes as scanned, whatever changed since
      addresses[k] = vol.key().Address(plain[k]);
      item.chunks[unit.first_chunk + g + k] = addresses[k].RawString();
      group.push_back(addresses[k]);
      bytes += n;
    }
    // Chunks the server already has (an earlier, interrupted put, or the
    // same content elsewhere in the volume) are not sent again.
    CAIRN_ASSIGN_OR_RETURN(std::vector<Digest> missing, vol.client->MissingObjects(vol.id(), group));
    for (size_t k = 0; k < count; ++k) {
      if (plain[k].empty()) continue;  // a hole (a chunk is never empty)
      if (std::find(missing.begin(), missing.end(), addresses[k]) == missing.end()) continue;
      if (stream == nullptr) {
        CAIRN_ASSIGN_OR_RETURN(stream, vol.client->OpenPutStream(vol.id()));
      }
      CAIRN_RETURN_IF_ERROR(stream->Write(addresses[k], vol.key().Seal(addresses[k], plain[k])));
    }
  }
  if (stream != nullptr) CAIRN_RETURN_IF_ERROR(stream->Finish());
  progress.Add(bytes);
  return absl::OkStatus();
}

absl::Status UploadSmall(OpenedVolume& vol, UploadItem& item, Progress& progress) {
  ScopedFd fd(::open(item.local.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return ErrnoToStatus(errno, absl::StrCat("open ", item.local.string()));
  std::string content(item.size, '\0');
  CAIRN_RETURN_IF_ERROR(PreadFull(fd.get(), content.data(), content.size(), 0, item.local));
  CAIRN_ASSIGN_OR_RETURN(item.entry, StoreBytes(*vol.objects, content, item.mode, item.mtime_ns));
  progress.Add(item.size);
  return absl::OkStatus();
}

objects::Entry EntryFor(const UploadItem& item) {
  objects::Entry e;
  switch (item.kind) {
    case UploadItem::kDirectory:
      e.set_type(objects::DIRECTORY);
      break;
    case UploadItem::kSymlink:
      e.set_type(objects::SYMLINK);
      e.set_symlink_target(item.link_target);
      break;
    case UploadItem::kFile:
      if (item.size <= kInlineMax) return item.entry;
      e.set_type(objects::FILE);
      e.set_size(item.size);
      for (const std::string& c : item.chunks) e.add_chunks(c);
      SetHoles(e, item.holes);
      break;
  }
  e.set_mode(item.mode);
  e.set_mtime_ns(item.mtime_ns);
  return e;
}

absl::Status AddForceHint(absl::Status s) {
  if (absl::IsAlreadyExists(s) && !absl::StrContains(s.message(), "--force")) {
    return absl::AlreadyExistsError(absl::StrCat(s.message(), " (use --force to overwrite)"));
  }
  return s;
}

// ---- get -------------------------------------------------------------------

struct DownloadItem {
  objects::Entry entry;
  fs::path local;
};

// A temporary beside `local`, renamed over it when complete.
struct PendingFile {
  fs::path local;
  fs::path tmp;
  ScopedFd fd;
  // Large files: a second descriptor with O_DIRECT for whole-block chunk
  // writes (see WriteChunk); invalid if unused or unsupported.
  ScopedFd direct;
  std::atomic<size_t> remaining{0};
};

// Files at least this large are written with O_DIRECT: a big download
// streams through once, and copying it into fresh page-cache pages was most
// of get's CPU (perf: 69% in copy_folio_from_iter_atomic, where the VM's
// host also faults the pages back in). Smaller files stay in the page cache.
constexpr uint64_t kDirectWriteMin = 64 << 20;
constexpr size_t kDirectAlign = 4096;

// Writes one chunk at `offset` (a multiple of kChunkSize). Through the
// O_DIRECT descriptor when there is one: the chunk is copied into an aligned
// per-thread buffer and zero-padded to the block size (the file is cut back
// to its size by FinishPending); on EINVAL it falls back to a buffered write.
absl::Status WriteChunk(PendingFile& p, std::string_view chunk, uint64_t offset) {
  if (p.direct.valid() && offset % kDirectAlign == 0) {
    struct FreeDeleter {
      void operator()(char* b) const { std::free(b); }
    };
    thread_local std::unique_ptr<char, FreeDeleter> buffer;
    thread_local size_t capacity = 0;
    const size_t padded = (chunk.size() + kDirectAlign - 1) / kDirectAlign * kDirectAlign;
    if (capacity < padded) {
      void* mem = nullptr;
      if (::posix_memalign(&mem, kDirectAlign, padded) != 0) {
        return PwriteFull(p.fd.get(), chunk, offset, p.tmp);
      }
      buffer.reset(static_cast<char*>(mem));
      capacity = padded;
    }
    std::memcpy(buffer.get(), chunk.data(), chunk.size());
    std::memset(buffer.get() + chunk.size(), 0, padded - chunk.size());
    size_t done = 0;
    while (done < padded) {
      ssize_t w = ::pwrite(p.direct.get(), buffer.get() + done, padded - done,
                           static_cast<off_t>(offset + done));
      if (w < 0 && errno == EINTR) continue;
      if (w < 0 && errno != EINVAL) return ErrnoToStatus(errno, absl::StrCat("write ", p.tmp.string()));
      if (w <= 0 || static_cast<size_t>(w) % kDirectAlign != 0) break;  // buffered below
      done += static_cast<size_t>(w);
    }
    if (done == padded) return absl::OkStatus();
    return PwriteFull(p.fd.get(), chunk.substr(std::min(done, chunk.size())),
                      offset + std::min(done, chunk.size()), p.tmp);
  }
  return PwriteFull(p.fd.get(), chunk, offset, p.tmp);
}

absl::StatusOr<std::unique_ptr<PendingFile>> CreatePending(const fs::path& local, uint64_t size) {
  auto p = std::make_unique<PendingFile>();
  p->local = local;
  std::string base = local.filename().string();
  p->tmp = local.parent_path() /
           absl::StrCat(".", base.substr(0, 200), ".cairn-", ::getpid(), "-",
                        Sha256(RandomBytes(8)).ToHex().substr(0, 8), ".tmp");
  p->fd.reset(::open(p->tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  if (!p->fd.valid()) return ErrnoToStatus(errno, absl::StrCat("create ", p->tmp.string()));
  if (size > 0 && ::ftruncate(p->fd.get(), static_cast<off_t>(size)) != 0) {
    absl::Status s = ErrnoToStatus(errno, absl::StrCat("allocate ", p->tmp.string()));
    ::unlink(p->tmp.c_str());
    return s;
  }
  return p;
}

absl::Status FinishPending(PendingFile& p, const objects::Entry& entry) {
  if (p.direct.valid()) {
    // The last O_DIRECT write was padded to the block size.
    p.direct.reset();
    if (::ftruncate(p.fd.get(), static_cast<off_t>(entry.size())) != 0) {
      return ErrnoToStatus(errno, absl::StrCat("truncate ", p.tmp.string()));
    }
  }
  ::fchmod(p.fd.get(), entry.mode() & 07777);
  struct timespec times[2];
  times[0].tv_sec = 0;
  times[0].tv_nsec = UTIME_OMIT;
  times[1].tv_sec = entry.mtime_ns() / 1'000'000'000;
  times[1].tv_nsec = entry.mtime_ns() % 1'000'000'000;
  ::futimens(p.fd.get(), times);
  if (::close(p.fd.release()) != 0) {
    return ErrnoToStatus(errno, absl::StrCat("close ", p.tmp.string()));
  }
  if (p.tmp != p.local && ::rename(p.tmp.c_str(), p.local.c_str()) != 0) {
    return ErrnoToStatus(errno, absl::StrCat("rename to ", p.local.string()));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::string>> FetchChunks(OpenedVolume& vol,
                                                     const objects::Entry& entry, size_t first,
                                                     size_t count) {
  // Chunks wholly in holes have no address and come back empty.
  std::vector<Digest> addresses;
  std::vector<size_t> stored;
  for (size_t k = first; k < first + count; ++k) {
    const std::string& raw = entry.chunks(static_cast<int>(k));
    if (raw.empty()) continue;
    CAIRN_ASSIGN_OR_RETURN(Digest d, Digest::FromRaw(raw));
    addresses.push_back(d);
    stored.push_back(k - first);
  }
  std::vector<std::string> plain(count);
  if (addresses.empty()) return plain;
  CAIRN_ASSIGN_OR_RETURN(std::vector<std::string> sealed,
                         vol.client->GetObjects(vol.id(), addresses));
  for (size_t j = 0; j < addresses.size(); ++j) {
    CAIRN_ASSIGN_OR_RETURN(plain[stored[j]], vol.key().Open(addresses[j], sealed[j]));
  }
  return plain;
}

size_t ChunkCount(const objects::Entry& e) { return static_cast<size_t>(e.chunks_size()); }

absl::Status StreamToStdout(OpenedVolume& vol, const objects::Entry& file) {
  if (ChunkCount(file) == 0) return WriteAll(STDOUT_FILENO, file.inline_data(), "stdout");
  const size_t n = ChunkCount(file);
  // Batches fetched ahead in parallel, written in order.
  std::deque<std::future<absl::StatusOr<std::vector<std::string>>>> window;
  size_t next = 0;
  const size_t depth = WorkerCount();
  auto launch = [&] {
    const size_t count = std::min(kChunksPerUnit, n - next);
    window.push_back(std::async(std::launch::async, [&vol, &file, first = next, count] {
      return FetchChunks(vol, file, first, count);
    }));
    next += count;
  };
  absl::Status status;
  uint64_t written = 0;
  while (next < n && window.size() < depth) launch();
  while (!window.empty()) {
    absl::StatusOr<std::vector<std::string>> batch = window.front().get();
    window.pop_front();
    if (status.ok() && !batch.ok()) status = batch.status();
    if (status.ok()) {
      for (const std::string& chunk : *batch) {
        // A chunk wholly in a hole comes back empty: its zeros (every
        // chunk is kChunkSize long but the last).
        const uint64_t n = std::min<uint64_t>(kChunkSize, file.size() - written);
        const std::string zeros(chunk.empty() ? n : 0, '\0');
        status = WriteAll(STDOUT_FILENO, chunk.empty() ? zeros : chunk, "stdout");
        written += n;
        if (!status.ok()) break;
      }
    }
    if (status.ok() && next < n) launch();
  }
  return status;
}

}  // namespace

absl::StatusOr<TransferStats> Put(VolumeApiClient& client, const PutRequest& request,
                                  std::string* landed) {
  std::string remote_raw = request.remote.empty() ? "/" : request.remote;
  CAIRN_ASSIGN_OR_RETURN(std::string remote, NormalizePath(remote_raw));
  if (absl::EndsWith(remote_raw, "/")) {
    CAIRN_ASSIGN_OR_RETURN(remote, NormalizePath(JoinPath(remote, LocalBaseName(request.local))));
  }
  struct stat st;
  if (::lstat(request.local.c_str(), &st) != 0) {
    return ErrnoToStatus(errno, absl::StrCat("cannot read ", request.local));
  }
  if (remote.empty() && !S_ISDIR(st.st_mode)) {
    return absl::InvalidArgumentError("a file cannot replace the volume root; give a path");
  }
  CAIRN_ASSIGN_OR_RETURN(OpenedVolume vol, OpenForTransfer(client, request.volume));

  {
    // Checked before uploading anything, so a refused put is cheap; the
    // commit checks again atomically.
    api::StatRequest stat_request;
    *stat_request.mutable_volume() = client.Ref(request.volume);
    stat_request.set_path(remote);
    absl::StatusOr<api::FileEntry> stat = client.Stat(stat_request);
    const absl::Status& s = stat.status();
    const api::FileEntry existing = stat.ok() ? *stat : api::FileEntry();
    // A file on the way to REMOTE: the commit would replace it with a
    // directory, so it is an existing file like any other.
    if (absl::IsFailedPrecondition(s) && !request.force) {
      return absl::AlreadyExistsError(absl::StrCat(RemoteDisplay(request.volume, remote), ": ",
                                                   s.message(), " (use --force to replace it)"));
    }
    if (S_ISDIR(st.st_mode)) {
      if (s.ok() && existing.type() != objects::DIRECTORY && !request.force) {
        return absl::AlreadyExistsError(
            absl::StrCat(RemoteDisplay(request.volume, remote),
                         " already exists and is not a directory (use --force to replace it)"));
      }
    } else if (s.ok() && existing.type() == objects::DIRECTORY) {
      return absl::FailedPreconditionError(absl::StrCat(
          RemoteDisplay(request.volume, remote),
          " is a directory; end REMOTE with '/' to put the file inside it"));
    } else if (s.ok() && !request.force) {
      return absl::AlreadyExistsError(absl::StrCat(RemoteDisplay(request.volume, remote),
                                                   " already exists (use --force to overwrite)"));
    }
    if (!s.ok() && !absl::IsNotFound(s) && !absl::IsFailedPrecondition(s)) return s;
  }

  CAIRN_ASSIGN_OR_RETURN(std::vector<UploadItem> items, ScanLocal(request.local, remote, request.observer));
  if (S_ISDIR(st.st_mode) && !request.force) {
    // A directory of the tree landing on a file: the commit would replace
    // the file with the directory, so it is refused like an existing file.
    CAIRN_ASSIGN_OR_RETURN(Digest head_root, Digest::FromRaw(vol.info.head().root()));
    for (const UploadItem& item : items) {
      if (item.kind != UploadItem::kDirectory || item.remote.empty()) continue;
      absl::StatusOr<objects::Entry> at = LookupPath(*vol.objects, head_root, item.remote);
      if (absl::IsNotFound(at.status()) || (at.ok() && at->type() == objects::DIRECTORY)) continue;
      if (!at.ok() && !absl::IsFailedPrecondition(at.status())) return at.status();
      return absl::AlreadyExistsError(
          absl::StrCat(RemoteDisplay(request.volume, item.remote),
                       " already exists and is not a directory (use --force to replace it)"));
    }
  }
  uint64_t total = 0;
  std::vector<UploadUnit> units;
  UploadUnit small;
  for (size_t i = 0; i < items.size(); ++i) {
    UploadItem& item = items[i];
    if (item.kind != UploadItem::kFile) continue;
    total += item.size;
    if (item.size <= kInlineMax) {
      small.small_items.push_back(i);
      if (small.small_items.size() == kSmallFilesPerUnit) {
        units.push_back(std::move(small));
        small = UploadUnit();
      }
      continue;
    }
    const size_t n = static_cast<size_t>((item.size + kChunkSize - 1) / kChunkSize);
    item.chunks.resize(n);
    // Long streams for big files; a smaller file still spreads over every
    // worker.
    const size_t per_unit = std::clamp<size_t>((n + WorkerCount() - 1) / WorkerCount(),
                                               kChunksPerCheck, kChunksPerPutUnit);
    for (size_t c = 0; c < n; c += per_unit) {
      units.push_back(UploadUnit{.item = i, .first_chunk = c,
                                 .chunk_count = std::min(per_unit, n - c)});
    }
  }
  if (!small.small_items.empty()) units.push_back(std::move(small));

  Progress progress(request.observer, absl::StrCat("put ", RemoteDisplay(request.volume, remote)),
                    total);
  CAIRN_RETURN_IF_ERROR(ParallelFor(units.size(), [&](size_t u) -> absl::Status {
    const UploadUnit& unit = units[u];
    if (unit.chunk_count > 0) {
      return RetryUnavailable([&] { return UploadChunks(vol, items[unit.item], unit, progress); });
    }
    for (size_t i : unit.small_items) CAIRN_RETURN_IF_ERROR(UploadSmall(vol, items[i], progress));
    return absl::OkStatus();
  }));
  progress.Finish();

  api::CommitRequest commit;
  commit.set_volume_id(vol.id());
  commit.set_base_seq(vol.info.head().seq());
  for (const UploadItem& item : items) {
    objects::Change* c = commit.mutable_changes()->add_changes();
    c->set_path(item.remote);
    *c->mutable_entry() = EntryFor(item);
    if (item.kind == UploadItem::kDirectory) {
      if (item.remote.empty()) {
        commit.mutable_changes()->mutable_changes()->RemoveLast();
        continue;
      }
      c->set_kind(objects::Change::MKDIR);
    } else {
      c->set_kind(objects::Change::PUT);
      c->set_no_replace(!request.force);
      c->set_keep_directories(true);
    }
  }
  // One key per put: a commit whose reply was lost is answered with the
  // snapshot it made when resent, not applied twice.
  commit.set_idempotency_key(Sha256(RandomBytes(16)).ToHex());
  CAIRN_RETURN_IF_ERROR(AddForceHint(client.Commit(commit).status()));
  TransferStats stats;
  for (const UploadItem& item : items) stats.files += item.kind != UploadItem::kDirectory;
  stats.bytes = total;
  if (landed != nullptr) *landed = RemoteDisplay(request.volume, remote);
  return stats;
}

absl::StatusOr<TransferStats> Get(VolumeApiClient& client, const GetRequest& request) {
  CAIRN_ASSIGN_OR_RETURN(std::string remote, NormalizePath(request.remote));
  CAIRN_ASSIGN_OR_RETURN(OpenedVolume vol, OpenForTransfer(client, request.volume));
  CAIRN_ASSIGN_OR_RETURN(Digest root, Digest::FromRaw(vol.info.head().root()));
  absl::StatusOr<objects::Entry> top = LookupPath(*vol.objects, root, remote);
  if (absl::IsNotFound(top.status())) {
    return absl::NotFoundError(
        absl::StrCat("no such file or directory: ", RemoteDisplay(request.volume, remote)));
  }
  if (!top.ok()) return top.status();

  if (request.dest == "-") {
    if (top->type() != objects::FILE) {
      return absl::FailedPreconditionError(absl::StrCat(
          RemoteDisplay(request.volume, remote), " is not a file; only a file can go to stdout"));
    }
    CAIRN_RETURN_IF_ERROR(StreamToStdout(vol, *top));
    return TransferStats{.files = 1, .bytes = top->size()};
  }

  const std::string dest_raw = request.dest.empty() ? "." : request.dest;
  const fs::path dest(dest_raw);
  std::error_code ec;
  const bool dest_is_dir = fs::is_directory(dest, ec);
  const std::string base = remote.empty() ? "" : std::string(SplitParent(remote).second);

  std::vector<DownloadItem> items;
  std::vector<fs::path> dirs;
  if (top->type() == objects::DIRECTORY) {
    fs::path local_root = dest;
    if (dest_is_dir && !base.empty()) local_root = dest / base;
    if (!dest_is_dir && fs::exists(fs::symlink_status(dest, ec))) {
      return absl::FailedPreconditionError(
          absl::StrCat(dest_raw, " exists and is not a directory"));
    }
    dirs.push_back(local_root);
    const std::string prefix = remote.empty() ? "" : remote + "/";
    absl::Status bad;
    CAIRN_RETURN_IF_ERROR(WalkTree(
        *vol.objects, root, remote, [&](const std::string& path, const objects::Entry& e) {
          std::string rel = path.substr(std::min(prefix.size(), path.size()));
          // Names come from the server; never let one climb out of dest.
          absl::StatusOr<std::string> norm = NormalizePath(rel);
          if (!norm.ok() || *norm != rel || rel.empty()) {
            bad = absl::DataLossError(absl::StrCat("refusing unsafe path '", path, "'"));
            return false;
          }
          if (e.type() == objects::DIRECTORY) {
            dirs.push_back(local_root / rel);
          } else if (e.type() == objects::FILE || e.type() == objects::SYMLINK) {
            items.push_back(DownloadItem{e, local_root / rel});
          }
          // FIFOs, sockets and device nodes have no content to copy; get
          // leaves them out (docs/cli.md).
          return true;
        }));
    CAIRN_RETURN_IF_ERROR(bad);
  } else {
    if (top->type() != objects::FILE && top->type() != objects::SYMLINK) {
      return absl::FailedPreconditionError(
          absl::StrCat(RemoteDisplay(request.volume, remote),
                       " is a special file (FIFO, socket or device node); it has no content"));
    }
    fs::path local = dest;
    if (dest_is_dir || absl::EndsWith(dest_raw, "/")) local = dest / base;
    items.push_back(DownloadItem{*top, local});
  }

  // Refuse before writing anything.
  for (const fs::path& d : dirs) {
    auto st = fs::symlink_status(d, ec);
    if (fs::exists(st) && !fs::is_directory(st)) {
      return absl::FailedPreconditionError(
          absl::StrCat(d.string(), " exists and is not a directory"));
    }
  }
  for (const DownloadItem& item : items) {
    auto st = fs::symlink_status(item.local, ec);
    if (!fs::exists(st)) continue;
    if (fs::is_directory(st)) {
      return absl::FailedPreconditionError(
          absl::StrCat(item.local.string(), " is a directory; not replacing it"));
    }
    if (!request.force) {
      return absl::AlreadyExistsError(
          absl::StrCat(item.local.string(), " already exists (use --force to overwrite)"));
    }
  }
  for (const fs::path& d : dirs) {
    fs::create_directories(d, ec);
    if (ec) return ErrnoToStatus(ec.value(), absl::StrCat("mkdir ", d.string()));
  }
  if (!items.empty() && top->type() != objects::DIRECTORY) {
    fs::path parent = items.front().local.parent_path();
    if (!parent.empty() && !fs::is_directory(parent, ec)) {
      return absl::NotFoundError(absl::StrCat("no such local directory: ", parent.string()));
    }
  }

  // Work units: runs of chunks of one file, or a batch of inline files and
  // symlinks.
  struct Unit {
    size_t item = 0;
    size_t first = 0;
    size_t count = 0;
    std::vector<size_t> small;
  };
  std::vector<Unit> units;
  std::vector<std::unique_ptr<PendingFile>> pending(items.size());
  absl::Mutex pending_mu;  // guards creating pending[i]
  uint64_t total = 0;
  Unit small;
  for (size_t i = 0; i < items.size(); ++i) {
    const objects::Entry& e = items[i].entry;
    if (e.type() == objects::FILE) total += e.size();
    const size_t n = e.type() == objects::FILE ? ChunkCount(e) : 0;
    if (n == 0) {
      small.small.push_back(i);
      if (small.small.size() == kSmallFilesPerUnit) {
        units.push_back(std::move(small));
        small = Unit();
      }
      continue;
    }
    for (size_t c = 0; c < n; c += kChunksPerUnit) {
      units.push_back(Unit{.item = i, .first = c, .count = std::min(kChunksPerUnit, n - c)});
    }
  }
  if (!small.small.empty()) units.push_back(std::move(small));

  Progress progress(request.observer, absl::StrCat("get ", RemoteDisplay(request.volume, remote)),
                    total);
  auto write_small = [&](const DownloadItem& item) -> absl::Status {
    const objects::Entry& e = item.entry;
    if (e.type() == objects::SYMLINK) {
      ::unlink(item.local.c_str());
      if (::symlink(e.symlink_target().c_str(), item.local.c_str()) != 0) {
        return ErrnoToStatus(errno, absl::StrCat("symlink ", item.local.string()));
      }
      return absl::OkStatus();
    }
    // A new inline-sized file is one write(2), so it is created in place
    // (O_EXCL: never over something that appeared meanwhile) and removed if
    // that write fails; replacing an existing file goes through a temporary.
    ScopedFd direct(::open(item.local.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
    if (direct.valid()) {
      auto p = std::make_unique<PendingFile>();
      p->local = item.local;
      p->tmp = item.local;
      p->fd = std::move(direct);
      absl::Status s = PwriteFull(p->fd.get(), e.inline_data(), 0, p->tmp);
      if (s.ok()) s = FinishPending(*p, e);
      if (!s.ok()) ::unlink(item.local.c_str());
      progress.Add(e.size());
      return s;
    }
    if (errno != EEXIST) return ErrnoToStatus(errno, absl::StrCat("create ", item.local.string()));
    CAIRN_ASSIGN_OR_RETURN(std::unique_ptr<PendingFile> p, CreatePending(item.local, 0));
    absl::Status s = PwriteFull(p->fd.get(), e.inline_data(), 0, p->tmp);
    if (s.ok()) s = FinishPending(*p, e);
    if (!s.ok()) ::unlink(p->tmp.c_str());
    progress.Add(e.size());
    return s;
  };
  absl::Status status = ParallelFor(units.size(), [&](size_t u) -> absl::Status {
    const Unit& unit = units[u];
    if (unit.count == 0) {
      for (size_t i : unit.small) CAIRN_RETURN_IF_ERROR(write_small(items[i]));
      return absl::OkStatus();
    }
    const DownloadItem& item = items[unit.item];
    PendingFile* p = nullptr;
    {
      absl::MutexLock lock(&pending_mu);
      if (pending[unit.item] == nullptr) {
        CAIRN_ASSIGN_OR_RETURN(pending[unit.item], CreatePending(item.local, item.entry.size()));
        pending[unit.item]->remaining = ChunkCount(item.entry);
        if (item.entry.size() >= kDirectWriteMin && item.entry.holes_size() == 0) {
          // Invalid (buffered writes only) where O_DIRECT is unsupported.
          pending[unit.item]->direct.reset(
              ::open(pending[unit.item]->tmp.c_str(), O_WRONLY | O_DIRECT | O_CLOEXEC));
        }
      }
      p = pending[unit.item].get();
    }
    CAIRN_ASSIGN_OR_RETURN(std::vector<std::string> chunks,
                           FetchChunks(vol, item.entry, unit.first, unit.count));
    const std::vector<Extent> holes = Holes(item.entry);
    for (size_t k = 0; k < chunks.size(); ++k) {
      const uint64_t at = (unit.first + k) * kChunkSize;
      if (holes.empty()) {
        CAIRN_RETURN_IF_ERROR(WriteChunk(*p, chunks[k], at));
      } else {
        // Sparse: only the data is written; the file was created at its
        // size, so the holes stay holes (D28).
        for (const Extent& run : DataRuns(holes, at, at + chunks[k].size())) {
          CAIRN_RETURN_IF_ERROR(PwriteFull(
              p->fd.get(), std::string_view(chunks[k]).substr(run.offset - at, run.length),
              run.offset, p->tmp));
        }
      }
      progress.Add(std::min<uint64_t>(kChunkSize, item.entry.size() - at));
    }
    if (p->remaining.fetch_sub(unit.count) == unit.count) {
      return FinishPending(*p, item.entry);
    }
    return absl::OkStatus();
  });
  progress.Finish();
  if (!status.ok()) {
    // Nothing half-written stays behind under a temporary name.
    for (auto& p : pending) {
      if (p != nullptr && p->fd.valid()) ::unlink(p->tmp.c_str());
    }
  }
  CAIRN_RETURN_IF_ERROR(status);
  return TransferStats{.files = items.size(), .bytes = total};
}

}  // namespace cairn
