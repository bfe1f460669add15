// Digest: a 32-byte address (HMAC-SHA-256 of a chunk or object, or SHA-256).
// A small value type: copyable, comparable, hashable with absl.
#pragma once

#include <array>
#include <compare>
#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace cairn {

class Digest {
 public:
  static constexpr size_t kSize = 32;

  Digest() = default;  // all zero; IsZero() is true

  // `raw` must be exactly kSize bytes.
  [[nodiscard]] static absl::StatusOr<Digest> FromRaw(std::string_view raw);
  // 64 lowercase or uppercase hex characters.
  [[nodiscard]] static absl::StatusOr<Digest> FromHex(std::string_view hex);
  static Digest FromArray(const std::array<uint8_t, kSize>& bytes);

  std::string ToHex() const;
  std::string_view raw() const {
    return {reinterpret_cast<const char*>(bytes_.data()), bytes_.size()};
  }
  std::string RawString() const { return std::string(raw()); }
  const uint8_t* data() const { return bytes_.data(); }
  uint8_t* mutable_data() { return bytes_.data(); }
  bool IsZero() const;

  friend auto operator<=>(const Digest&, const Digest&) = default;
  friend bool operator==(const Digest&, const Digest&) = default;

  template <typename H>
  friend H AbslHashValue(H h, const Digest& d) {
    return H::combine_contiguous(std::move(h), d.bytes_.data(), d.bytes_.size());
  }

 private:
  std::array<uint8_t, kSize> bytes_{};
};

}  // namespace cairn
