#include "core/files.h"

#include <unistd.h>

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
  const std::vector<Extent> holes = Holes(file);
  for (uint64_t pos = offset; pos < end;) {
    uint64_t index = pos / kChunkSize;
    if (index >= static_cast<uint64_t>(file.chunks_size())) {
      return absl::DataLossError(
          absl::StrCat("file \"", file.name(), "\" has too few chunks for its size"));
    }
    uint64_t chunk_start = index * kChunkSize;
    uint64_t want_end = std::min(end, chunk_start + kChunkSize);
    if (InHole(holes, pos, want_end - pos)) {  // zeros, nothing fetched
      out.append(want_end - pos, '\0');
      pos = want_end;
      continue;
    }
    CAIRN_ASSIGN_OR_RETURN(Digest address, Digest::FromRaw(file.chunks(static_cast<int>(index))));
    CAIRN_ASSIGN_OR_RETURN(std::string chunk, objects.GetChunk(address));
    if (chunk_start + chunk.size() < want_end) {
      return absl::DataLossError(absl::StrCat("chunk ", address.ToHex(), " of file \"",
                                              file.name(), "\" is short"));
    }
    out.append(chunk, pos - chunk_start, want_end - pos);
    pos = want_end;
  }
  return out;
}

std::vector<Extent> Holes(const objects::Entry& file) {
  std::vector<Extent> out;
  out.reserve(file.holes_size() / 2);
  for (int i = 0; i + 1 < file.holes_size(); i += 2) {
    out.push_back({file.holes(i), file.holes(i + 1)});
  }
  return out;
}

std::vector<Extent> NormalizeHoles(std::vector<Extent> holes, uint64_t size) {
  if (size <= kInlineMax) return {};
  const uint64_t limit = (size + kHoleBlock - 1) / kHoleBlock * kHoleBlock;
  std::vector<Extent> shrunk;
  for (const Extent& h : holes) {
    uint64_t start = (h.offset + kHoleBlock - 1) / kHoleBlock * kHoleBlock;
    uint64_t end = h.end() >= size ? limit : h.end() / kHoleBlock * kHoleBlock;
    if (end > start) shrunk.push_back({start, end - start});
  }
  std::sort(shrunk.begin(), shrunk.end(),
            [](const Extent& a, const Extent& b) { return a.offset < b.offset; });
  std::vector<Extent> out;
  for (const Extent& h : shrunk) {
    if (!out.empty() && h.offset <= out.back().end()) {
      out.back().length = std::max(out.back().end(), h.end()) - out.back().offset;
    } else {
      out.push_back(h);
    }
  }
  return out;
}

void SetHoles(objects::Entry& file, const std::vector<Extent>& holes) {
  file.clear_holes();
  for (const Extent& h : holes) {
    file.add_holes(h.offset);
    file.add_holes(h.length);
  }
}

namespace {

// The first hole ending after `offset`, or holes.end().
std::vector<Extent>::const_iterator HoleAfter(const std::vector<Extent>& holes, uint64_t offset) {
  return std::upper_bound(holes.begin(), holes.end(), offset,
                          [](uint64_t off, const Extent& h) { return off < h.end(); });
}

}  // namespace

bool InHole(const std::vector<Extent>& holes, uint64_t offset, uint64_t length) {
  auto it = HoleAfter(holes, offset);
  return it != holes.end() && it->offset <= offset && offset + length <= it->end();
}

bool ChunkInHole(const std::vector<Extent>& holes, uint64_t size, uint64_t index) {
  const uint64_t start = index * kChunkSize;
  if (start >= size) return false;
  return InHole(holes, start, std::min(kChunkSize, size - start));
}

std::vector<Extent> DataRuns(const std::vector<Extent>& holes, uint64_t from, uint64_t to) {
  std::vector<Extent> out;
  uint64_t pos = from;
  for (auto it = HoleAfter(holes, from); pos < to && it != holes.end(); ++it) {
    if (it->offset > pos) out.push_back({pos, std::min(it->offset, to) - pos});
    pos = std::max(pos, it->end());
  }
  if (pos < to) out.push_back({pos, to - pos});
  return out;
}

void ZeroHoles(const std::vector<Extent>& holes, uint64_t at, std::string& content) {
  const uint64_t end = at + content.size();
  for (auto it = HoleAfter(holes, at); it != holes.end() && it->offset < end; ++it) {
    uint64_t from = std::max(it->offset, at);
    uint64_t to = std::min(it->end(), end);
    std::fill(content.begin() + (from - at), content.begin() + (to - at), '\0');
  }
}

uint64_t AllocatedBytes(const std::vector<Extent>& holes, uint64_t size) {
  uint64_t blocks = (size + kHoleBlock - 1) / kHoleBlock * kHoleBlock;
  for (const Extent& h : holes) blocks -= std::min(h.length, blocks);
  return blocks;
}

absl::StatusOr<uint64_t> SeekData(const std::vector<Extent>& holes, uint64_t size,
                                  uint64_t offset) {
  if (offset < size) {
    auto it = HoleAfter(holes, offset);
    uint64_t at = it != holes.end() && it->offset <= offset ? it->end() : offset;
    if (at < size) return at;
  }
  return WithErrno(absl::OutOfRangeError("no data at or after this offset"), ENXIO);
}

absl::StatusOr<uint64_t> SeekHole(const std::vector<Extent>& holes, uint64_t size,
                                  uint64_t offset) {
  if (offset >= size) {
    return WithErrno(absl::OutOfRangeError("offset at or past the end of the file"), ENXIO);
  }
  auto it = HoleAfter(holes, offset);
  if (it == holes.end()) return size;
  return std::min(std::max(it->offset, offset), size);
}

absl::StatusOr<std::vector<Extent>> FileHoles(int fd, uint64_t from, uint64_t to) {
  std::vector<Extent> holes;
  uint64_t pos = from;
  while (pos < to) {
    off_t data = ::lseek(fd, static_cast<off_t>(pos), SEEK_DATA);
    if (data < 0 && errno == ENXIO) {  // no data up to the end of the file
      holes.push_back({pos, to - pos});
      break;
    }
    if (data < 0 && errno == EINVAL) return std::vector<Extent>();
    if (data < 0) return ErrnoToStatus(errno, "seek data");
    if (static_cast<uint64_t>(data) > pos) {
      holes.push_back({pos, std::min<uint64_t>(data, to) - pos});
    }
    if (static_cast<uint64_t>(data) >= to) break;
    off_t hole = ::lseek(fd, data, SEEK_HOLE);
    if (hole < 0) return ErrnoToStatus(errno, "seek hole");
    pos = static_cast<uint64_t>(hole);
  }
  return holes;
}

absl::Status CheckFileLayout(const objects::Entry& e, std::string_view path) {
  auto bad = [&](const std::string& what) {
    return absl::InvalidArgumentError(absl::StrCat("\"", std::string(path), "\": ", what));
  };
  if (e.chunks_size() == 0) {
    if (e.inline_data().size() != e.size()) return bad("inline data does not match the file size");
    // Inline content lives in the directory object: bounded (files.h).
    if (e.size() > kInlineMax) {
      return bad(absl::StrCat("a file of ", e.size(), " bytes must be chunked, not inline"));
    }
    if (e.holes_size() != 0) return bad("an inline file has holes");
    return absl::OkStatus();
  }
  uint64_t want = (e.size() + kChunkSize - 1) / kChunkSize;
  if (!e.inline_data().empty() || static_cast<uint64_t>(e.chunks_size()) != want) {
    return bad("chunk list does not match the file size");
  }
  if (e.holes_size() % 2 != 0) return bad("hole list has an odd length");
  std::vector<Extent> holes = Holes(e);
  if (NormalizeHoles(holes, e.size()) != holes) {
    return bad(absl::StrCat("hole list is not sorted, apart, ", kHoleBlock,
                            "-byte aligned and within the size"));
  }
  for (uint64_t i = 0; i < want; ++i) {
    const std::string& c = e.chunks(static_cast<int>(i));
    if (ChunkInHole(holes, e.size(), i) ? !c.empty() : c.size() != Digest::kSize) {
      return bad(absl::StrCat("malformed address for chunk ", i));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<Digest>> StoredChunks(const objects::Entry& file) {
  std::vector<Digest> out;
  out.reserve(file.chunks_size());
  for (const std::string& raw : file.chunks()) {
    if (raw.empty()) continue;  // a hole
    CAIRN_ASSIGN_OR_RETURN(Digest d, Digest::FromRaw(raw));
    out.push_back(d);
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
