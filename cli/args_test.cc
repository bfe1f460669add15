#include "cli/args.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace cairn::cli {
namespace {

using ::testing::ElementsAre;

const std::vector<FlagSpec> kSpecs = {
    {"--force", "-f", false}, {"--version", "", true}, {"--recursive", "-r", false}};

TEST(ArgsTest, FlagsAnywhereAndPositionalsInOrder) {
  auto a = Args::Parse({"v", "-f", "local", "--version", "1", "remote/"}, kSpecs);
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_TRUE(a->Has("--force"));
  EXPECT_EQ(a->Get("--version"), "1");
  EXPECT_FALSE(a->Has("--recursive"));
  EXPECT_THAT(a->positional(), ElementsAre("v", "local", "remote/"));
}

TEST(ArgsTest, InlineValuesDashAndDoubleDash) {
  auto a = Args::Parse({"--version=2", "-", "--", "-f", "--x"}, kSpecs);
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->Get("--version"), "2");
  EXPECT_FALSE(a->Has("--force"));
  EXPECT_THAT(a->positional(), ElementsAre("-", "-f", "--x"));
}

TEST(ArgsTest, UsageErrors) {
  for (const std::vector<std::string>& bad : std::vector<std::vector<std::string>>{
           {"--nope"}, {"-x"}, {"--version"}, {"--force=yes"}}) {
    auto a = Args::Parse(bad, kSpecs);
    ASSERT_FALSE(a.ok()) << bad[0];
    EXPECT_TRUE(IsUsageError(a.status())) << a.status();
  }
  EXPECT_FALSE(IsUsageError(absl::InvalidArgumentError("not usage")));
}

TEST(ArgsTest, Help) {
  auto a = Args::Parse({"x", "--help"}, kSpecs);
  ASSERT_TRUE(a.ok());
  EXPECT_TRUE(a->help());
  EXPECT_TRUE(Args::Parse({"-h"}, kSpecs)->help());
}

}  // namespace
}  // namespace cairn::cli
