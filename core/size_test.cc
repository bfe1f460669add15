#include "core/size.h"

#include "gtest/gtest.h"

namespace cairn {
namespace {

TEST(ParseSizeTest, AcceptsBytesAndBinarySuffixes) {
  EXPECT_EQ(ParseSize("0").value(), 0u);
  EXPECT_EQ(ParseSize("4096").value(), 4096u);
  EXPECT_EQ(ParseSize("64K").value(), 64u << 10);
  EXPECT_EQ(ParseSize("1m").value(), 1u << 20);
  EXPECT_EQ(ParseSize("10GiB").value(), 10ull << 30);
  EXPECT_EQ(ParseSize("1TB").value(), 1ull << 40);
}

TEST(ParseSizeTest, RefusesGarbageAndOverflow) {
  for (const char* text : {"", "K", "-1", "1.5G", "12X", "99999999999999999999", "20000000T"}) {
    auto size = ParseSize(text);
    ASSERT_FALSE(size.ok()) << text;
    EXPECT_EQ(size.status().code(), absl::StatusCode::kInvalidArgument) << text;
  }
}

}  // namespace
}  // namespace cairn
