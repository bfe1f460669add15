#include "core/digest.h"

#include <string>

#include "absl/container/flat_hash_set.h"
#include "gtest/gtest.h"

namespace cairn {
namespace {

std::string Raw(uint8_t first) {
  std::string raw(Digest::kSize, '\0');
  for (size_t i = 0; i < raw.size(); ++i) raw[i] = static_cast<char>(first + i);
  return raw;
}

TEST(DigestTest, DefaultIsZero) {
  Digest d;
  EXPECT_TRUE(d.IsZero());
  EXPECT_EQ(d.ToHex(), std::string(64, '0'));
  EXPECT_EQ(d.raw().size(), Digest::kSize);
}

TEST(DigestTest, RawRoundTrip) {
  auto d = Digest::FromRaw(Raw(0xf0));
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_FALSE(d->IsZero());
  EXPECT_EQ(d->RawString(), Raw(0xf0));
  EXPECT_EQ(d->data()[0], 0xf0);
}

TEST(DigestTest, FromRawRejectsWrongSize) {
  EXPECT_EQ(Digest::FromRaw("short").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Digest::FromRaw(std::string(33, 'x')).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Digest::FromRaw("").status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(DigestTest, HexRoundTripIsLowercase) {
  auto d = Digest::FromRaw(Raw(0xa0));
  ASSERT_TRUE(d.ok());
  std::string hex = d->ToHex();
  ASSERT_EQ(hex.size(), 64u);
  EXPECT_EQ(hex.substr(0, 6), "a0a1a2");
  for (char c : hex) EXPECT_TRUE((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')) << hex;
  auto back = Digest::FromHex(hex);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(*back, *d);
}

TEST(DigestTest, FromHexAcceptsUppercase) {
  auto d = Digest::FromRaw(Raw(0xa0));
  ASSERT_TRUE(d.ok());
  std::string upper = d->ToHex();
  for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  auto back = Digest::FromHex(upper);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, *d);
}

TEST(DigestTest, FromHexRejectsBadInput) {
  EXPECT_FALSE(Digest::FromHex("").ok());
  EXPECT_FALSE(Digest::FromHex(std::string(63, 'a')).ok());
  EXPECT_FALSE(Digest::FromHex(std::string(65, 'a')).ok());
  std::string bad(64, 'a');
  bad[17] = 'g';
  EXPECT_EQ(Digest::FromHex(bad).status().code(), absl::StatusCode::kInvalidArgument);
  bad[17] = '\0';
  EXPECT_FALSE(Digest::FromHex(bad).ok());
  bad = std::string(62, 'a') + "/.";
  EXPECT_FALSE(Digest::FromHex(bad).ok());
}

TEST(DigestTest, FromArrayAndMutableData) {
  std::array<uint8_t, Digest::kSize> bytes{};
  bytes[31] = 7;
  Digest d = Digest::FromArray(bytes);
  EXPECT_FALSE(d.IsZero());
  EXPECT_EQ(d.ToHex().substr(62), "07");
  d.mutable_data()[31] = 0;
  EXPECT_TRUE(d.IsZero());
}

TEST(DigestTest, OrderingEqualityAndHash) {
  std::array<uint8_t, Digest::kSize> a{}, b{};
  a[0] = 1;
  b[0] = 2;
  Digest da = Digest::FromArray(a), db = Digest::FromArray(b);
  EXPECT_LT(da, db);
  EXPECT_NE(da, db);
  EXPECT_EQ(da, Digest::FromArray(a));
  absl::flat_hash_set<Digest> set = {da, db, Digest::FromArray(a)};
  EXPECT_EQ(set.size(), 2u);
  EXPECT_TRUE(set.contains(db));
}

}  // namespace
}  // namespace cairn
