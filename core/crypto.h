// Sealing and keys (DESIGN.md §2, C8).
//
// A DataKey is one volume's secret: 32 bytes for AES-256-GCM and 32 bytes for
// HMAC-SHA-256 addressing. A chunk's address is HMAC(mac key, plaintext), so
// identical content dedups inside a volume and nothing is comparable across
// volumes.
//
// Sealed forms (docs/decisions.md D2 and D27; the format is per object):
// - version 1, "single": 12-byte random nonce || ciphertext || 16-byte tag,
//   with the address as additional authenticated data. Still read; no longer
//   written.
// - version 2, "blocked": a 32-byte header (magic "CRN" 0x02, block shift,
//   3 zero bytes, plaintext size as u64 little-endian, 16-byte random salt)
//   followed by the plaintext in blocks of 2^shift bytes (16 KiB when
//   written now; 64 KiB by the first writers of this form), each
//   sealed on its own as ciphertext || 16-byte tag under a key derived from
//   the data key, the address and the salt. Each block's nonce is its index;
//   its AAD is the header, the address and its index, so a block cannot be
//   moved, swapped, dropped or taken from another object, and the header
//   (sizes) cannot be changed without every block failing. An empty
//   plaintext has one empty block, so even it is authenticated. A range
//   read opens only the blocks it touches (SealedLayout, OpenBlocks).
// A blob stored under the wrong address fails to open in either form.
//
// The MasterKey wraps data keys for storage in the metadata store; the
// volume ID is bound as AAD so a wrapped key cannot be moved to another
// volume. All functions are thread-safe (OpenSSL EVP contexts are per call).
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "core/digest.h"

namespace cairn {

// The smallest sealed object of either form is longer than this: Open
// answers InvalidArgument for anything shorter.
inline constexpr size_t kSealOverhead = 12 + 16;

// Version 2 (blocked) constants.
inline constexpr size_t kSealHeaderSize = 32;
inline constexpr size_t kSealTagSize = 16;
// The block size written now: 16 KiB (D27, D31). Readers accept every
// shift in [kSealMinBlockShift, kSealMaxBlockShift].
inline constexpr uint32_t kSealBlockShift = 14;
inline constexpr uint64_t kSealBlockSize = uint64_t{1} << kSealBlockShift;
inline constexpr uint32_t kSealMinBlockShift = 12;
inline constexpr uint32_t kSealMaxBlockShift = 24;

// Where the blocks of a sealed object lie, read from its first
// kSealHeaderSize bytes and its total size. A value type; cheap to copy.
class SealedLayout {
 public:
  // `head` is the object's first min(total_size, kSealHeaderSize) bytes (or
  // more). An object that is not a well-formed version 2 object with
  // exactly the size its header implies is version 1 (blocked() false):
  // it can only be opened whole. InvalidArgument if total_size is shorter
  // than kSealOverhead.
  [[nodiscard]] static absl::StatusOr<SealedLayout> Parse(std::string_view head,
                                                          uint64_t total_size);

  bool blocked() const { return blocked_; }
  uint64_t sealed_size() const { return sealed_size_; }
  // The rest is meaningful only when blocked().
  uint64_t plaintext_size() const { return plaintext_size_; }
  uint64_t block_size() const { return uint64_t{1} << shift_; }
  uint64_t block_count() const { return block_count_; }
  // Plaintext bytes in block `i` (the last may be short).
  uint64_t PlainBlockSize(uint64_t i) const;
  // Offset in the sealed object where block `i` starts; SealedOffset(count)
  // is the end of the object.
  uint64_t SealedOffset(uint64_t i) const;
  // The blocks [first, last) holding plaintext bytes [offset, offset+length)
  // (clipped to the plaintext); first == last when nothing is left.
  std::pair<uint64_t, uint64_t> BlocksFor(uint64_t offset, uint64_t length) const;
  std::string_view header() const { return {header_, kSealHeaderSize}; }

 private:
  bool blocked_ = false;
  uint64_t sealed_size_ = 0;
  uint64_t plaintext_size_ = 0;
  uint32_t shift_ = kSealBlockShift;
  uint64_t block_count_ = 0;
  char header_[kSealHeaderSize] = {};
};

// Bytes of a plaintext of `n` bytes once sealed in blocks of 2^shift
// (DataKey::Seal, current version): the header, the plaintext, and one tag
// per block (an empty plaintext still has one empty block, so its header is
// bound).
constexpr uint64_t SealedSize(uint64_t n, uint32_t shift = kSealBlockShift) {
  const uint64_t blocks = n == 0 ? 1 : ((n - 1) >> shift) + 1;
  return kSealHeaderSize + n + blocks * kSealTagSize;
}

// Cryptographically random bytes (OpenSSL RAND_bytes); aborts on failure.
std::string RandomBytes(size_t n);

// Plain SHA-256.
Digest Sha256(std::string_view data);

// Equality of two secrets (tokens, MACs) in time that depends only on
// their lengths.
bool SameSecret(std::string_view a, std::string_view b);

class DataKey {
 public:
  static constexpr size_t kSize = 64;

  static DataKey Generate();
  [[nodiscard]] static absl::StatusOr<DataKey> FromBytes(std::string_view bytes);

  // The 64 key bytes, for wrapping or handing to an authenticated mounter.
  std::string_view bytes() const { return bytes_; }

  Digest Address(std::string_view plaintext) const;
  // Seals in the current form (version 2, blocked) with blocks of
  // 2^block_shift bytes; shifts other than kSealBlockShift are for tests and
  // fuzzers that make the objects of other writers. `block_shift` must lie
  // in [kSealMinBlockShift, kSealMaxBlockShift].
  std::string Seal(const Digest& address, std::string_view plaintext,
                   uint32_t block_shift = kSealBlockShift) const;
  // The version 1 form, which older releases wrote: kept so that tests and
  // fuzzers can make the objects old volumes hold.
  std::string SealSingle(const Digest& address, std::string_view plaintext) const;
  // Opens either form whole. DataLoss if any tag does not verify (corrupt,
  // truncated, extended, wrong key or wrong address); InvalidArgument if
  // `sealed` is shorter than kSealOverhead.
  [[nodiscard]] absl::StatusOr<std::string> Open(const Digest& address,
                                                 std::string_view sealed) const;
  // Opens blocks [first, first + n) of a blocked object, given as
  // `sealed_blocks`: the object's bytes from layout.SealedOffset(first) to
  // layout.SealedOffset(first + n), for n >= 1. Returns their plaintext,
  // every block authenticated (against the header in `layout`, which every
  // block's AAD binds, so a forged header fails here). InvalidArgument if
  // the layout is not blocked or the blocks are out of range; DataLoss if
  // `sealed_blocks` is not exactly those blocks or a tag does not verify.
  [[nodiscard]] absl::StatusOr<std::string> OpenBlocks(const Digest& address,
                                                       const SealedLayout& layout,
                                                       uint64_t first,
                                                       std::string_view sealed_blocks) const;

 private:
  explicit DataKey(std::string bytes) : bytes_(std::move(bytes)) {}
  std::string bytes_;
};

class MasterKey {
 public:
  static constexpr size_t kSize = 32;

  // Reads the key at `path`, or creates it (mode 0600, written atomically)
  // if the file does not exist. FailedPrecondition if the file exists with a
  // wrong size or is readable by group/others.
  [[nodiscard]] static absl::StatusOr<MasterKey> LoadOrCreate(const std::filesystem::path& path);
  [[nodiscard]] static absl::StatusOr<MasterKey> FromBytes(std::string_view bytes);

  std::string Wrap(std::string_view volume_id, const DataKey& key) const;
  // DataLoss if `wrapped` was not made by this master key for `volume_id`.
  [[nodiscard]] absl::StatusOr<DataKey> Unwrap(std::string_view volume_id,
                                               std::string_view wrapped) const;

 private:
  explicit MasterKey(std::string bytes) : bytes_(std::move(bytes)) {}
  std::string bytes_;
};

}  // namespace cairn
