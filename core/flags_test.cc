#include "core/flags.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace cairn {
namespace {

using ::testing::HasSubstr;

std::string Message(const absl::Status& status) { return std::string(status.message()); }

TEST(FlagCursorTest, SeparateAndInlineValues) {
  std::vector<std::string> args = {"--data", "/d", "--listen=a=b", "pos", "--x="};
  FlagCursor flags(args);
  ASSERT_TRUE(flags.Next());
  EXPECT_TRUE(flags.Is("--data"));
  EXPECT_EQ(flags.Value().value(), "/d");
  ASSERT_TRUE(flags.Next());
  EXPECT_EQ(flags.flag(), "--listen");
  EXPECT_EQ(flags.arg(), "--listen=a=b");
  EXPECT_EQ(flags.Value().value(), "a=b");  // split at the first '='
  ASSERT_TRUE(flags.Next());
  EXPECT_FALSE(flags.IsFlag());
  EXPECT_EQ(flags.arg(), "pos");
  ASSERT_TRUE(flags.Next());
  EXPECT_EQ(flags.Value().value(), "");  // "--x=" is an empty value
  EXPECT_FALSE(flags.Next());
}

TEST(FlagCursorTest, MissingValueNamesTheFlag) {
  std::vector<std::string> args = {"--gc-grace"};
  FlagCursor flags(args);
  ASSERT_TRUE(flags.Next());
  absl::StatusOr<std::string> v = flags.Value();
  EXPECT_EQ(v.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Message(v.status()), "--gc-grace needs a value");
  EXPECT_FALSE(flags.Next());
}

TEST(FlagCursorTest, SwitchWithValueIsRefused) {
  std::vector<std::string> args = {"--metrics-public=yes", "--debug"};
  FlagCursor flags(args);
  ASSERT_TRUE(flags.Next());
  EXPECT_EQ(Message(flags.NoValue()), "--metrics-public takes no value");
  ASSERT_TRUE(flags.Next());
  EXPECT_TRUE(flags.NoValue().ok());
}

TEST(FlagCursorTest, IntegersAreCheckedAndBounded) {
  std::vector<std::string> args = {"--uid", "12", "--uid=x", "--uid", "-3", "--n", "7",
                                   "--m",   "99999999999999999999"};
  FlagCursor flags(args);
  ASSERT_TRUE(flags.Next());
  EXPECT_EQ(flags.Integer(0, 100).value(), 12);
  ASSERT_TRUE(flags.Next());
  EXPECT_EQ(Message(flags.Integer().status()), "--uid: 'x' is not an integer");
  ASSERT_TRUE(flags.Next());
  EXPECT_EQ(Message(flags.Integer(0).status()), "--uid: -3 is not at least 0");
  ASSERT_TRUE(flags.Next());
  EXPECT_EQ(Message(flags.Integer(1, 5).status()), "--n: 7 is not from 1 to 5");
  ASSERT_TRUE(flags.Next());
  EXPECT_THAT(Message(flags.Integer().status()), HasSubstr("is not an integer"));  // overflow
  EXPECT_FALSE(flags.Next());
}

TEST(FlagCursorTest, SecondsAreCheckedAndBounded) {
  std::vector<std::string> args = {"--t=1.5", "--t=0", "--t=0", "--t=-1",
                                   "--t=soon", "--t=inf", "--t=90000"};
  FlagCursor flags(args);
  ASSERT_TRUE(flags.Next());
  EXPECT_EQ(flags.Seconds().value(), absl::Milliseconds(1500));
  ASSERT_TRUE(flags.Next());
  EXPECT_EQ(Message(flags.Seconds().status()), "--t: '0' is not a positive number of seconds");
  ASSERT_TRUE(flags.Next());
  EXPECT_EQ(flags.Seconds(/*allow_zero=*/true).value(), absl::ZeroDuration());
  ASSERT_TRUE(flags.Next());
  EXPECT_EQ(Message(flags.Seconds(true).status()),
            "--t: '-1' is not a non-negative number of seconds");
  ASSERT_TRUE(flags.Next());
  EXPECT_EQ(Message(flags.Seconds().status()), "--t: 'soon' is not a number of seconds");
  ASSERT_TRUE(flags.Next());
  EXPECT_EQ(Message(flags.Seconds().status()), "--t: 'inf' is not a number of seconds");
  ASSERT_TRUE(flags.Next());
  EXPECT_EQ(Message(flags.Seconds(false, absl::Hours(24)).status()),
            "--t: '90000' is more than 24h");
}

TEST(FlagCursorTest, UnknownNamesTheArgument) {
  std::vector<std::string> args = {"--bogus=1", "stray", "-"};
  FlagCursor flags(args);
  ASSERT_TRUE(flags.Next());
  EXPECT_EQ(Message(flags.Unknown()), "unknown flag '--bogus'");
  ASSERT_TRUE(flags.Next());
  EXPECT_EQ(Message(flags.Unknown()), "unexpected argument 'stray'");
  ASSERT_TRUE(flags.Next());
  EXPECT_FALSE(flags.IsFlag());  // "-" is stdin, not a flag
}

TEST(FlagCursorTest, HelpIsRecognised) {
  std::vector<std::string> args = {"-h", "--help", "--helpme"};
  FlagCursor flags(args);
  ASSERT_TRUE(flags.Next());
  EXPECT_TRUE(flags.IsHelp());
  ASSERT_TRUE(flags.Next());
  EXPECT_TRUE(flags.IsHelp());
  ASSERT_TRUE(flags.Next());
  EXPECT_FALSE(flags.IsHelp());
  EXPECT_TRUE(IsHelpRequested(HelpRequested()));
  EXPECT_FALSE(IsHelpRequested(absl::InvalidArgumentError("unknown flag '--help'")));
  EXPECT_FALSE(IsHelpRequested(absl::OkStatus()));
}

TEST(FlagCursorTest, EmptyArguments) {
  std::vector<std::string> args;
  FlagCursor flags(args);
  EXPECT_FALSE(flags.Next());
  EXPECT_FALSE(flags.Next());
}

}  // namespace
}  // namespace cairn
