// Sealing and keys (DESIGN.md §2, C8).
//
// A DataKey is one volume's secret: 32 bytes for AES-256-GCM and 32 bytes for
// HMAC-SHA-256 addressing. A chunk's address is HMAC(mac key, plaintext), so
// identical content dedups inside a volume and nothing is comparable across
// volumes. Sealed form: 12-byte random nonce || ciphertext || 16-byte tag,
// with the address as additional authenticated data, so a blob stored under
// the wrong address fails to open.
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

inline constexpr size_t kSealOverhead = 12 + 16;
// Bytes of `plaintext_size` bytes once sealed (DataKey::Seal).
constexpr uint64_t SealedSize(uint64_t plaintext_size) { return plaintext_size + kSealOverhead; }

// Cryptographically random bytes (OpenSSL RAND_bytes); aborts on failure.
std::string RandomBytes(size_t n);

// Plain SHA-256.
Digest Sha256(std::string_view data);

class DataKey {
 public:
  static constexpr size_t kSize = 64;

  static DataKey Generate();
  [[nodiscard]] static absl::StatusOr<DataKey> FromBytes(std::string_view bytes);

  // The 64 key bytes, for wrapping or handing to an authenticated mounter.
  std::string_view bytes() const { return bytes_; }

  Digest Address(std::string_view plaintext) const;
  std::string Seal(const Digest& address, std::string_view plaintext) const;
  // DataLoss if the tag does not verify (corrupt, wrong key or wrong address);
  // InvalidArgument if `sealed` is shorter than kSealOverhead.
  [[nodiscard]] absl::StatusOr<std::string> Open(const Digest& address,
                                                 std::string_view sealed) const;

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
