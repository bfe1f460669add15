#include "mounter/staged_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <thread>

#include "absl/strings/str_cat.h"
#include "core/files.h"
#include "core/status.h"

namespace cairn::mounter {

namespace {

absl::Status PWriteAll(int fd, const char* data, size_t n, uint64_t off) {
  while (n > 0) {
    ssize_t w = ::pwrite(fd, data, n, off);
    if (w < 0) {
      if (errno == EINTR) continue;
      return ErrnoToStatus(errno, "write staging file");
    }
    data += w;
    n -= w;
    off += w;
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::shared_ptr<StagedFile>> StagedFile::Create(const std::filesystem::path& dir,
                                                               const objects::Entry& base,
                                                               ChunkReader* reader) {
  std::shared_ptr<StagedFile> file(new StagedFile(dir, base, reader));
  absl::MutexLock lock(&file->mu_);
  file->size_ = base.size();
  if (base.chunks_size() > 0) {
    CAIRN_RETURN_IF_ERROR(file->Promote());
    file->lazy_.assign(base.chunks_size(), true);
  } else {
    CAIRN_RETURN_IF_ERROR(
        file->BackWrite(base.inline_data().data(), base.inline_data().size(), 0));
  }
  CAIRN_RETURN_IF_ERROR(file->BackTruncate(base.size()));
  return file;
}

StagedFile::StagedFile(std::filesystem::path dir, objects::Entry base, ChunkReader* reader)
    : dir_(std::move(dir)), base_(std::move(base)), reader_(reader) {}

StagedFile::~StagedFile() {
  absl::MutexLock lock(&mu_);
  if (fd_ >= 0) ::close(fd_);
  if (!file_.empty()) ::unlink((dir_ / file_).c_str());
}

namespace {

std::string NewFileName() {
  static std::atomic<uint64_t> counter{0};
  return absl::StrCat("s-", ::getpid(), "-", counter.fetch_add(1));
}

}  // namespace

absl::Status StagedFile::Promote() {
  if (fd_ >= 0) return absl::OkStatus();
  std::string name = NewFileName();
  std::filesystem::path p = dir_ / name;
  int fd = ::open(p.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return ErrnoToStatus(errno, absl::StrCat("create staging file in ", dir_.string()));
  // Only the blocks written: the others stay holes in the backing file.
  absl::Status st;
  for (size_t b = 0; st.ok() && b < written_.size(); ++b) {
    uint64_t at = b * kHoleBlock;
    if (written_[b] && at < memory_.size()) {
      st = PWriteAll(fd, memory_.data() + at, std::min<uint64_t>(kHoleBlock, memory_.size() - at),
                     at);
    }
  }
  if (st.ok() && ::ftruncate(fd, memory_.size()) != 0) {
    st = ErrnoToStatus(errno, "truncate staging file");
  }
  if (!st.ok()) {
    ::close(fd);
    ::unlink(p.c_str());
    return st;
  }
  fd_ = fd;
  file_ = std::move(name);
  std::string().swap(memory_);
  std::vector<bool>().swap(written_);
  return absl::OkStatus();
}

StagedFile::State StagedFile::Snapshot() const {
  absl::ReaderMutexLock lock(&mu_);
  State state;
  state.base = base_;
  state.size = size_;
  state.lazy = lazy_;
  if (fd_ < 0) {
    state.memory = memory_;
  } else {
    state.file = file_;
  }
  return state;
}

absl::Status StagedFile::Sync() const {
  absl::ReaderMutexLock lock(&mu_);
  if (fd_ < 0) return absl::OkStatus();
  if (::fdatasync(fd_) != 0) return ErrnoToStatus(errno, "fdatasync staging file");
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<StagedFile>> StagedFile::Restore(const std::filesystem::path& dir,
                                                                const std::filesystem::path& from,
                                                                State state, ChunkReader* reader) {
  std::shared_ptr<StagedFile> file(new StagedFile(dir, std::move(state.base), reader));
  absl::MutexLock lock(&file->mu_);
  file->size_ = state.size;
  file->lazy_ = std::move(state.lazy);
  file->lazy_.resize(file->base_.chunks_size(), false);
  if (state.file.empty()) {
    file->memory_ = std::move(state.memory);
    file->written_.assign((file->memory_.size() + kHoleBlock - 1) / kHoleBlock, true);
    return file;
  }
  std::string name = NewFileName();
  std::filesystem::path to = dir / name;
  if (::rename((from / state.file).c_str(), to.c_str()) != 0) {
    return ErrnoToStatus(errno, absl::StrCat("recover staging file ", (from / state.file).string()));
  }
  file->file_ = name;
  file->fd_ = ::open(to.c_str(), O_RDWR | O_CLOEXEC);
  if (file->fd_ < 0) return ErrnoToStatus(errno, absl::StrCat("open ", to.string()));
  return file;
}

absl::Status StagedFile::BackWrite(const char* data, size_t n, uint64_t off) {
  if (fd_ < 0 && off + n > kMemoryMax) CAIRN_RETURN_IF_ERROR(Promote());
  if (fd_ >= 0) return PWriteAll(fd_, data, n, off);
  if (n == 0) return absl::OkStatus();
  if (memory_.size() < off + n) memory_.resize(off + n, '\0');
  std::memcpy(memory_.data() + off, data, n);
  const size_t last = (off + n - 1) / kHoleBlock;
  if (written_.size() <= last) written_.resize(last + 1, false);
  for (size_t b = off / kHoleBlock; b <= last; ++b) written_[b] = true;
  return absl::OkStatus();
}

absl::Status StagedFile::BackTruncate(uint64_t size) {
  if (fd_ < 0 && size > kMemoryMax) CAIRN_RETURN_IF_ERROR(Promote());
  if (fd_ >= 0) {
    if (::ftruncate(fd_, size) != 0) return ErrnoToStatus(errno, "truncate staging file");
    return absl::OkStatus();
  }
  memory_.resize(size, '\0');
  written_.resize((size + kHoleBlock - 1) / kHoleBlock, false);
  return absl::OkStatus();
}

void StagedFile::BackHoles(uint64_t from, uint64_t to, std::vector<Extent>& out) const {
  if (from >= to) return;
  if (fd_ < 0) {
    for (uint64_t b = from / kHoleBlock; b * kHoleBlock < to; ++b) {
      if (b < written_.size() && written_[b]) continue;
      out.push_back({std::max(from, b * kHoleBlock),
                     std::min(to, (b + 1) * kHoleBlock) - std::max(from, b * kHoleBlock)});
    }
    return;
  }
  // Where the node's file system cannot say, the content counts as data.
  absl::StatusOr<std::vector<Extent>> holes = FileHoles(fd_, from, to);
  if (holes.ok()) out.insert(out.end(), holes->begin(), holes->end());
}

std::vector<Extent> StagedFile::HolesLocked() const {
  std::vector<Extent> holes;
  if (size_ <= kInlineMax) return holes;  // committed inline: never sparse
  // Runs of chunks that are not lazy come from the backing store together.
  uint64_t back_from = 0;
  for (size_t i = 0; i < lazy_.size(); ++i) {
    if (!lazy_[i]) continue;
    const uint64_t cs = i * kChunkSize;
    BackHoles(back_from, cs, holes);
    for (const Extent& h : cairn::Holes(base_)) {
      uint64_t from = std::max(h.offset, cs);
      uint64_t to = std::min(h.end(), cs + BaseLen(i));
      if (to > from) holes.push_back({from, to - from});
    }
    back_from = cs + BaseLen(i);
  }
  BackHoles(back_from, size_, holes);
  return NormalizeHoles(std::move(holes), size_);
}

std::vector<Extent> StagedFile::Holes() const {
  absl::ReaderMutexLock lock(&mu_);
  return HolesLocked();
}

absl::StatusOr<uint64_t> StagedFile::Seek(uint64_t off, bool data) const {
  absl::ReaderMutexLock lock(&mu_);
  std::vector<Extent> holes = HolesLocked();
  return data ? SeekData(holes, size_, off) : SeekHole(holes, size_, off);
}

uint64_t StagedFile::AllocatedBytes() const {
  absl::ReaderMutexLock lock(&mu_);
  return cairn::AllocatedBytes(HolesLocked(), size_);
}

absl::Status StagedFile::BackRead(char* dst, size_t n, uint64_t off) const {
  if (fd_ < 0) {
    if (off < memory_.size()) {
      std::memcpy(dst, memory_.data() + off, std::min<uint64_t>(n, memory_.size() - off));
    }
    return absl::OkStatus();  // the rest stays zero
  }
  size_t done = 0;
  while (done < n) {
    ssize_t r = ::pread(fd_, dst + done, n - done, off + done);
    if (r < 0) {
      if (errno == EINTR) continue;
      return ErrnoToStatus(errno, "read staging file");
    }
    if (r == 0) break;  // past the end of the fd: zeros
    done += r;
  }
  return absl::OkStatus();
}

uint64_t StagedFile::size() const {
  absl::ReaderMutexLock lock(&mu_);
  return size_;
}

uint64_t StagedFile::BaseLen(size_t i) const {
  uint64_t start = i * kChunkSize;
  if (start >= base_.size()) return 0;
  return std::min<uint64_t>(kChunkSize, base_.size() - start);
}

absl::Status StagedFile::Materialize(size_t i) {
  lazy_[i] = false;
  if (base_.chunks(i).empty()) return absl::OkStatus();  // wholly a hole: stays one
  CAIRN_ASSIGN_OR_RETURN(Digest address, Digest::FromRaw(base_.chunks(i)));
  CAIRN_ASSIGN_OR_RETURN(ChunkData data, reader_->Get(address));
  // Only the data: the base's holes stay holes in the backing file.
  const uint64_t cs = i * kChunkSize;
  const uint64_t end = cs + std::min<size_t>(data->size(), BaseLen(i));
  for (const Extent& run : DataRuns(cairn::Holes(base_), cs, end)) {
    absl::Status st = BackWrite(data->data() + (run.offset - cs), run.length, run.offset);
    if (!st.ok()) {
      lazy_[i] = true;
      return st;
    }
  }
  return absl::OkStatus();
}

absl::Status StagedFile::ReadLocked(uint64_t off, uint64_t len, char* out) const {
  uint64_t end = off + len;
  uint64_t pos = off;
  while (pos < end) {
    size_t i = pos / kChunkSize;
    uint64_t chunk_start = i * kChunkSize;
    uint64_t stop = std::min(end, chunk_start + kChunkSize);
    char* dst = out + (pos - off);
    size_t n = stop - pos;
    if (i < lazy_.size() && lazy_[i]) {
      // Holes read as the zeros `out` holds, without fetching anything.
      if (base_.chunks(i).empty() || InHole(cairn::Holes(base_), pos, n)) {
        pos = stop;
        continue;
      }
      CAIRN_ASSIGN_OR_RETURN(Digest address, Digest::FromRaw(base_.chunks(i)));
      CAIRN_ASSIGN_OR_RETURN(ChunkData data, reader_->Get(address));
      uint64_t in_chunk = pos - chunk_start;
      if (in_chunk < data->size()) {
        size_t avail = std::min<size_t>(n, data->size() - in_chunk);
        std::memcpy(dst, data->data() + in_chunk, avail);
      }
    } else {
      CAIRN_RETURN_IF_ERROR(BackRead(dst, n, pos));
    }
    pos = stop;
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> StagedFile::Read(uint64_t off, uint64_t len) const {
  absl::ReaderMutexLock lock(&mu_);
  if (off >= size_) return std::string();
  len = std::min(len, size_ - off);
  std::string out(len, '\0');
  CAIRN_RETURN_IF_ERROR(ReadLocked(off, len, out.data()));
  return out;
}

absl::Status StagedFile::Write(uint64_t off, std::string_view data) {
  if (data.empty()) return absl::OkStatus();
  absl::MutexLock lock(&mu_);
  uint64_t end = off + data.size();
  for (size_t i = off / kChunkSize; i <= (end - 1) / kChunkSize && i < lazy_.size(); ++i) {
    if (!lazy_[i]) continue;
    uint64_t cs = i * kChunkSize;
    bool covers = off <= cs && end >= cs + BaseLen(i);
    if (covers) {
      lazy_[i] = false;
    } else {
      CAIRN_RETURN_IF_ERROR(Materialize(i));
    }
  }
  CAIRN_RETURN_IF_ERROR(BackWrite(data.data(), data.size(), off));
  size_ = std::max(size_, end);
  return absl::OkStatus();
}

absl::Status StagedFile::Truncate(uint64_t size) {
  absl::MutexLock lock(&mu_);
  if (size < size_) {
    for (size_t i = 0; i < lazy_.size(); ++i) {
      if (!lazy_[i]) continue;
      uint64_t cs = i * kChunkSize;
      if (cs >= size) {
        lazy_[i] = false;
      } else if (cs + BaseLen(i) > size) {
        CAIRN_RETURN_IF_ERROR(Materialize(i));
      }
    }
  }
  CAIRN_RETURN_IF_ERROR(BackTruncate(size));
  size_ = size;
  return absl::OkStatus();
}

absl::Status StagedFile::PunchHole(uint64_t off, uint64_t len) {
  absl::MutexLock lock(&mu_);
  if (off >= size_ || len == 0) return absl::OkStatus();
  uint64_t end = std::min(size_, off + len);
  for (size_t i = off / kChunkSize; i <= (end - 1) / kChunkSize && i < lazy_.size(); ++i) {
    if (!lazy_[i]) continue;
    uint64_t cs = i * kChunkSize;
    if (off <= cs && end >= cs + BaseLen(i)) {
      lazy_[i] = false;  // the backing file already has a hole there
    } else {
      CAIRN_RETURN_IF_ERROR(Materialize(i));
    }
  }
  CAIRN_RETURN_IF_ERROR(Promote());
  if (::fallocate(fd_, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(off),
                  static_cast<off_t>(end - off)) == 0) {
    return absl::OkStatus();
  }
  if (errno != EOPNOTSUPP) return ErrnoToStatus(errno, "punch a hole in the staging file");
  // The node's file system cannot punch: the range still reads as zeros.
  std::string zeros(std::min<uint64_t>(end - off, kChunkSize), '\0');
  for (uint64_t pos = off; pos < end; pos += zeros.size()) {
    const size_t n = std::min<uint64_t>(zeros.size(), end - pos);
    CAIRN_RETURN_IF_ERROR(PWriteAll(fd_, zeros.data(), n, pos));
  }
  return absl::OkStatus();
}

absl::StatusOr<objects::Entry> StagedFile::Store(ObjectStore& objects, uint32_t mode,
                                                 int64_t mtime_ns) const {
  uint64_t size;
  std::vector<bool> lazy;
  std::vector<Extent> holes;
  {
    absl::ReaderMutexLock lock(&mu_);
    size = size_;
    lazy = lazy_;
    holes = HolesLocked();
  }
  objects::Entry entry;
  entry.set_type(objects::FILE);
  entry.set_mode(mode & 07777);
  entry.set_mtime_ns(mtime_ns);
  entry.set_size(size);
  if (size <= kInlineMax) {
    CAIRN_ASSIGN_OR_RETURN(std::string content, Read(0, size));
    content.resize(size, '\0');
    entry.set_inline_data(std::move(content));
    return entry;
  }
  const size_t n = (size + kChunkSize - 1) / kChunkSize;
  std::vector<std::string> chunks(n);
  std::vector<size_t> changed;
  for (size_t i = 0; i < n; ++i) {
    uint64_t len = std::min<uint64_t>(kChunkSize, size - i * kChunkSize);
    if (ChunkInHole(holes, size, i)) continue;  // no address, nothing stored
    if (i < lazy.size() && lazy[i] && BaseLen(i) == len) {
      chunks[i] = base_.chunks(i);
    } else {
      changed.push_back(i);
    }
  }
  // Changed chunks are read, addressed and sealed on a few threads, each
  // uploading runs of kChunksPerBatch through one batch (one durability
  // point on the control plane per run, D7) while the others seal.
  const size_t runs = (changed.size() + kChunksPerBatch - 1) / kChunksPerBatch;
  std::atomic<size_t> next{0};
  absl::Mutex err_mu;
  absl::Status first_error;
  auto work = [&] {
    for (;;) {
      {
        absl::MutexLock lock(&err_mu);
        if (!first_error.ok()) return;
      }
      const size_t run = next.fetch_add(1);
      if (run >= runs) return;
      absl::Status st = [&]() -> absl::Status {
        std::unique_ptr<BlobStore::Batch> batch = objects.blobs()->NewBatch(objects.volume_id());
        const size_t end = std::min(changed.size(), (run + 1) * kChunksPerBatch);
        for (size_t k = run * kChunksPerBatch; k < end; ++k) {
          const size_t i = changed[k];
          const uint64_t len = std::min<uint64_t>(kChunkSize, size - i * kChunkSize);
          CAIRN_ASSIGN_OR_RETURN(std::string content, Read(i * kChunkSize, len));
          content.resize(len, '\0');  // a concurrent truncate must not shorten a middle chunk
          ZeroHoles(holes, i * kChunkSize, content);  // the holes as recorded above
          CAIRN_ASSIGN_OR_RETURN(Digest address, objects.PutChunk(content, *batch));
          chunks[i] = address.RawString();
        }
        return batch->Finish();
      }();
      if (!st.ok()) {
        absl::MutexLock lock(&err_mu);
        if (first_error.ok()) first_error = st;
      }
    }
  };
  std::vector<std::thread> threads;
  for (size_t t = 1; t < std::min(kUploadThreads, runs); ++t) threads.emplace_back(work);
  work();
  for (auto& t : threads) t.join();
  CAIRN_RETURN_IF_ERROR(first_error);
  for (std::string& c : chunks) entry.add_chunks(std::move(c));
  SetHoles(entry, holes);
  return entry;
}

}  // namespace cairn::mounter
