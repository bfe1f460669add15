// `cairn mount`'s flags (ParseMountArgs): values, and refusals that name the
// flag.
#include <string>
#include <vector>

#include "core/flags.h"
#include "gtest/gtest.h"
#include "mounter/mounter.h"

namespace cairn::mounter {
namespace {

std::string Refusal(const std::vector<std::string>& args) {
  auto o = ParseMountArgs(args, ClientOptions{});
  EXPECT_EQ(o.status().code(), absl::StatusCode::kInvalidArgument);
  return std::string(o.status().message());
}

TEST(MountArgsTest, Parses) {
  auto o = ParseMountArgs({"vol", "/mnt", "-r", "--uid=7", "--gid", "8", "--commit-interval",
                           "2.5", "--final-commit-timeout=0", "--sub-path", "a//b/"},
                          ClientOptions{});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->volume, "vol");
  EXPECT_TRUE(o->read_only);
  EXPECT_EQ(o->uid, 7);
  EXPECT_EQ(o->gid, 8);
  EXPECT_EQ(o->commit_interval, absl::Milliseconds(2500));
  EXPECT_EQ(o->final_commit_timeout, absl::ZeroDuration());
  EXPECT_EQ(o->sub_path, "a/b");
}

TEST(MountArgsTest, RefusalsNameTheFlag) {
  EXPECT_EQ(Refusal({"vol", "/mnt", "--bogus"}), "unknown flag '--bogus'");
  EXPECT_EQ(Refusal({"vol", "/mnt", "--uid", "root"}), "--uid: 'root' is not an integer");
  EXPECT_EQ(Refusal({"vol", "/mnt", "--uid=-1"}), "--uid: -1 is not from 0 to 2147483647");
  EXPECT_EQ(Refusal({"vol", "/mnt", "--commit-interval", "0"}),
            "--commit-interval: '0' is not a positive number of seconds");
  EXPECT_EQ(Refusal({"vol", "/mnt", "--cache-dir"}), "--cache-dir needs a value");
  EXPECT_EQ(Refusal({"vol", "/mnt", "--read-only=no"}), "--read-only takes no value");
  EXPECT_EQ(Refusal({"vol"}), "expected VOLUME and MOUNTPOINT");
  EXPECT_TRUE(IsHelpRequested(ParseMountArgs({"-h"}, ClientOptions{}).status()));
}

}  // namespace
}  // namespace cairn::mounter
