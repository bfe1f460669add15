#include "core/files.h"

#include <algorithm>
#include <cerrno>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "core/status.h"

namespace cairn {
namespace {

// Fills `buf` with up to `n` bytes, calling `read` until it is full or the
// input ends; chunk boundaries must not depend on how the source splits its
// reads, or equal files would not dedup.
absl::StatusOr<size_t> ReadFull(const ReadFn& read, char* buf, size_t n) {
  size_t got = 0;
  while (got < n) {
    CAIRN_ASSIGN_OR_RETURN(size_t r, read(buf + got, n - got));
    if (r == 0) break;
    if (r > n - got) return absl::InternalError("read callback returned more than asked");
    got += r;
  }
  return got;
}

objects::Entry NewFileEntry(uint32_t mode, int64_t mtime_ns) {
  objects::Entry entry;
  entry.set_type(objects::FILE);
  entry.set_mode(mode & 07777);
  entry.set_mtime_ns(mtime_ns);
  return entry;
}

}  // namespace

absl::StatusOr<objects::Entry> StoreFile(ObjectStore& objects, const ReadFn& read, uint32_t mode,
                                         int64_t mtime_ns) {
  objects::Entry entry = NewFileEntry(mode, mtime_ns);
  // Most files are small: read one byte past the inline limit before
  // committing to a chunk-sized buffer.
  std::string buf(kInlineMax + 1, '\0');
  CAIRN_ASSIGN_OR_RETURN(size_t n, ReadFull(read, buf.data(), buf.size()));
  if (n <= kInlineMax) {
    // ReadFull stops short only at the end of input: this is the whole file.
    entry.set_inline_data(buf.data(), n);
    entry.set_size(n);
    return entry;
  }
  buf.resize(kChunkSize);
  uint64_t total = 0;
  while (true) {
    CAIRN_ASSIGN_OR_RETURN(size_t more, ReadFull(read, buf.data() + n, buf.size() - n));
    n += more;
    if (n == 0) break;
    CAIRN_ASSIGN_OR_RETURN(Digest address, objects.PutChunk(std::string_view(buf.data(), n)));
    entry.add_chunks(address.RawString());
    total += n;
    if (n < buf.size()) break;
    n = 0;
  }
  entry.set_size(total);
  return entry;
}

absl::StatusOr<objects::Entry> StoreBytes(ObjectStore& objects, std::string_view content,
                                          uint32_t mode, int64_t mtime_ns) {
  // Same result as StoreFile, without copying through a buffer.
  objects::Entry entry = NewFileEntry(mode, mtime_ns);
  entry.set_size(content.size());
  if (content.size() <= kInlineMax) {
    entry.set_inline_data(content.data(), content.size());
    return entry;
  }
  for (size_t pos = 0; pos < content.size(); pos += kChunkSize) {
    CAIRN_ASSIGN_OR_RETURN(Digest address, objects.PutChunk(content.substr(pos, kChunkSize)));
    entry.add_chunks(address.RawString());
  }
  return entry;
}

absl::StatusOr<std::string> ReadFileRange(ObjectStore& objects, const objects::Entry& file,
                                          uint64_t offset, uint64_t length) {
  if (file.type() != objects::FILE) {
    return WithErrno(absl::FailedPreconditionError(
                         absl::StrCat("\"", file.name(), "\" is not a regular file")),
                     EISDIR);
  }
  if (offset >= file.size()) return std::string();
  uint64_t end = offset + std::min(length, file.size() - offset);
  if (file.chunks_size() == 0) {
    if (file.inline_data().size() != file.size()) {
      return absl::DataLossError(absl::StrCat("inline file \"", file.name(), "\" has ",
                                              file.inline_data().size(), " bytes, size says ",
                                              file.size()));
    }
    return file.inline_data().substr(offset, end - offset);
  }
  std::string out;
  out.reserve(end - offset);
  for (uint64_t pos = offset; pos < end;) {
    uint64_t index = pos / kChunkSize;
    if (index >= static_cast<uint64_t>(file.chunks_size())) {
      return absl::DataLossError(
          absl::StrCat("file \"", file.name(), "\" has too few chunks for its size"));
    }
    CAIRN_ASSIGN_OR_RETURN(Digest address, Digest::FromRaw(file.chunks(static_cast<int>(index))));
    CAIRN_ASSIGN_OR_RETURN(std::string chunk, objects.GetChunk(address));
    uint64_t chunk_start = index * kChunkSize;
    uint64_t want_end = std::min(end, chunk_start + kChunkSize);
    if (chunk_start + chunk.size() < want_end) {
      return absl::DataLossError(absl::StrCat("chunk ", address.ToHex(), " of file \"",
                                              file.name(), "\" is short"));
    }
    out.append(chunk, pos - chunk_start, want_end - pos);
    pos = want_end;
  }
  return out;
}

std::vector<Digest> ReferencedAddresses(const objects::Entry& entry) {
  std::vector<Digest> out;
  for (const std::string& raw : entry.chunks()) {
    if (auto d = Digest::FromRaw(raw); d.ok()) out.push_back(*d);
  }
  if (entry.type() == objects::DIRECTORY && !entry.tree().empty()) {
    if (auto d = Digest::FromRaw(entry.tree()); d.ok()) out.push_back(*d);
  }
  return out;
}

}  // namespace cairn
