#include "core/digest.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace cairn {
namespace {

constexpr char kHexDigits[] = "0123456789abcdef";

// -1 for a character that is not a hex digit.
int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

absl::StatusOr<Digest> Digest::FromRaw(std::string_view raw) {
  if (raw.size() != kSize) {
    return absl::InvalidArgumentError(
        absl::StrCat("digest must be ", kSize, " bytes, got ", raw.size()));
  }
  Digest d;
  std::copy(raw.begin(), raw.end(), reinterpret_cast<char*>(d.bytes_.data()));
  return d;
}

absl::StatusOr<Digest> Digest::FromHex(std::string_view hex) {
  if (hex.size() != 2 * kSize) {
    return absl::InvalidArgumentError(
        absl::StrCat("hex digest must be ", 2 * kSize, " characters, got ", hex.size()));
  }
  Digest d;
  for (size_t i = 0; i < kSize; ++i) {
    int hi = HexValue(hex[2 * i]);
    int lo = HexValue(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("hex digest has a non-hex character at offset ", hi < 0 ? 2 * i : 2 * i + 1));
    }
    d.bytes_[i] = static_cast<uint8_t>(hi << 4 | lo);
  }
  return d;
}

Digest Digest::FromArray(const std::array<uint8_t, kSize>& bytes) {
  Digest d;
  d.bytes_ = bytes;
  return d;
}

std::string Digest::ToHex() const {
  std::string out(2 * kSize, '0');
  for (size_t i = 0; i < kSize; ++i) {
    out[2 * i] = kHexDigits[bytes_[i] >> 4];
    out[2 * i + 1] = kHexDigits[bytes_[i] & 0xf];
  }
  return out;
}

bool Digest::IsZero() const {
  return std::all_of(bytes_.begin(), bytes_.end(), [](uint8_t b) { return b == 0; });
}

}  // namespace cairn
