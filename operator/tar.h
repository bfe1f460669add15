// Tar archive framing (POSIX pax/ustar) for streaming a directory: the
// caller writes each member's header, then its content, then the padding,
// and the end marker last. Nothing here buffers content, so an archive of
// any size streams in constant memory.
//
// Names longer than ustar's fields, names that are not ASCII, link targets
// over 100 bytes and sizes of 8 GiB or more get a pax extended header
// before the ustar one, which GNU tar, bsdtar and Python's tarfile read.
// Pure functions; thread-safe.
#pragma once

#include <cstdint>
#include <string>

namespace cairn::operator_ {

enum class TarType : char { kFile = '0', kSymlink = '2', kDirectory = '5' };

struct TarMember {
  std::string path;  // relative, '/'-separated; a directory's without a trailing '/'
  TarType type = TarType::kFile;
  uint32_t mode = 0644;  // permission bits (07777)
  uint64_t size = 0;     // kFile only
  int64_t mtime_s = 0;
  std::string link_target;  // kSymlink only
};

// The header block(s) of one member: a multiple of 512 bytes.
std::string TarHeader(const TarMember& member);
// Zero bytes that pad `size` bytes of content to a 512-byte boundary.
std::string TarPadding(uint64_t size);
// The end-of-archive marker: two zero blocks.
std::string TarEnd();

}  // namespace cairn::operator_
