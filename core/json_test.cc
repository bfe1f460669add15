#include "core/json.h"

#include "gtest/gtest.h"

namespace cairn {
namespace {

TEST(JsonTest, QuotesEscapesAndControlCharacters) {
  EXPECT_EQ(JsonQuote("a\"b\\c\n\x01"), "\"a\\\"b\\\\c\\n\\u0001\"");
  // Not UTF-8: replaced, not thrown.
  EXPECT_EQ(JsonQuote(std::string("x\xff", 2)), "\"x\xef\xbf\xbd\"");
}

TEST(JsonTest, ParsesAndReportsBadInputAsInvalidArgument) {
  absl::StatusOr<nlohmann::json> ok = ParseJson(R"({"last_commit_error":"path \"a\" is\nbad","n":3})");
  ASSERT_TRUE(ok.ok()) << ok.status();
  // Escapes are decoded (the hand-written reader kept "\n" as 'n').
  EXPECT_EQ(JsonStringField(*ok, "last_commit_error"), "path \"a\" is\nbad");
  EXPECT_EQ(JsonStringField(*ok, "n"), "");
  EXPECT_EQ(JsonStringField(*ok, "missing"), "");
  absl::StatusOr<nlohmann::json> bad = ParseJson("{\"a\":");
  EXPECT_TRUE(absl::IsInvalidArgument(bad.status())) << bad.status();
  EXPECT_NE(bad.status().message().find("not JSON"), std::string::npos);
}

}  // namespace
}  // namespace cairn
