#include "core/path.h"

#include <cerrno>
#include <string>

#include "core/status.h"
#include "gtest/gtest.h"

namespace cairn {
namespace {

std::string Norm(std::string_view p) {
  auto r = NormalizePath(p);
  EXPECT_TRUE(r.ok()) << "'" << p << "': " << r.status();
  return r.ok() ? *r : "<error>";
}

TEST(NormalizePathTest, Normalises) {
  EXPECT_EQ(Norm(""), "");
  EXPECT_EQ(Norm("/"), "");
  EXPECT_EQ(Norm("///"), "");
  EXPECT_EQ(Norm("."), "");
  EXPECT_EQ(Norm("./."), "");
  EXPECT_EQ(Norm("a"), "a");
  EXPECT_EQ(Norm("/a/b/c"), "a/b/c");
  EXPECT_EQ(Norm("a/b/c/"), "a/b/c");
  EXPECT_EQ(Norm("//a//b///c//"), "a/b/c");
  EXPECT_EQ(Norm("./a/./b/."), "a/b");
  EXPECT_EQ(Norm("a/.hidden/..dots/..."), "a/.hidden/..dots/...");
  EXPECT_EQ(Norm("with space/ü"), "with space/ü");
}

TEST(NormalizePathTest, RefusesEveryDotDot) {
  for (std::string_view p : {"..", "../x", "/../x", "a/../../b", "a/../b", "a/..", "./..",
                             "a/b/../c", "a//..//b"}) {
    auto r = NormalizePath(p);
    ASSERT_FALSE(r.ok()) << p << " -> " << *r;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << p;
    EXPECT_NE(r.status().message().find(".."), std::string::npos) << r.status();
  }
}

TEST(NormalizePathTest, RefusesNul) {
  std::string p("a/b\0c", 5);
  auto r = NormalizePath(p);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(StatusToErrno(r.status()), EINVAL);
}

TEST(NormalizePathTest, ComponentLength) {
  std::string ok(kMaxComponentLength, 'x');
  EXPECT_EQ(Norm("d/" + ok), "d/" + ok);
  auto r = NormalizePath("d/" + ok + "y/e");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(StatusToErrno(r.status()), ENAMETOOLONG);
}

TEST(NormalizePathTest, PathLength) {
  std::string p;
  while (p.size() + 4 <= kMaxPathLength) p += "abc/";
  p.resize(kMaxPathLength, 'z');
  EXPECT_TRUE(NormalizePath(p).ok());
  auto r = NormalizePath(p + "z");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(StatusToErrno(r.status()), ENAMETOOLONG);
}

TEST(SplitPathTest, Splits) {
  EXPECT_TRUE(SplitPath("").empty());
  EXPECT_EQ(SplitPath("a"), (std::vector<std::string_view>{"a"}));
  EXPECT_EQ(SplitPath("a/bb/c"), (std::vector<std::string_view>{"a", "bb", "c"}));
}

TEST(SplitParentTest, Splits) {
  EXPECT_EQ(SplitParent("a/b/c"), (std::pair<std::string_view, std::string_view>{"a/b", "c"}));
  EXPECT_EQ(SplitParent("c"), (std::pair<std::string_view, std::string_view>{"", "c"}));
  EXPECT_EQ(SplitParent(""), (std::pair<std::string_view, std::string_view>{"", ""}));
}

TEST(JoinPathTest, Joins) {
  EXPECT_EQ(JoinPath("", "c"), "c");
  EXPECT_EQ(JoinPath("a/b", "c"), "a/b/c");
  EXPECT_EQ(JoinPath("a", ""), "a");
  auto [dir, name] = SplitParent("x/y/z");
  EXPECT_EQ(JoinPath(dir, name), "x/y/z");
}

TEST(VolumeNameTest, Accepts) {
  for (std::string_view n : {"a", "my-volume", "Model_Weights.v2", "0", "...", "a..b",
                             "-leading-dash"}) {
    EXPECT_TRUE(ValidateVolumeName(n).ok()) << n;
  }
  EXPECT_TRUE(ValidateVolumeName(std::string(kMaxNameLength, 'n')).ok());
}

TEST(VolumeNameTest, Refuses) {
  for (std::string_view n : {"", ".", "..", "a/b", "../x", "a b", "ü", "a\n", "a:b", "*"}) {
    absl::Status s = ValidateVolumeName(n);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << "'" << n << "'";
  }
  EXPECT_FALSE(ValidateVolumeName(std::string("a\0b", 3)).ok());
  absl::Status s = ValidateVolumeName(std::string(kMaxNameLength + 1, 'n'));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("64"), std::string::npos) << s;
  EXPECT_NE(ValidateVolumeName("").message().find("empty"), std::string::npos);
}

TEST(NamespaceTest, Rules) {
  EXPECT_TRUE(ValidateNamespace("").ok());
  EXPECT_TRUE(ValidateNamespace("team-a").ok());
  EXPECT_FALSE(ValidateNamespace("..").ok());
  EXPECT_FALSE(ValidateNamespace("a/b").ok());
  EXPECT_FALSE(ValidateNamespace(std::string(65, 'x')).ok());
  EXPECT_EQ(NamespaceOrDefault(""), "default");
  EXPECT_EQ(NamespaceOrDefault("prod"), "prod");
}

TEST(VolumeIdTest, Rules) {
  EXPECT_TRUE(ValidateVolumeId("vo-abc123XYZ").ok());
  EXPECT_TRUE(ValidateVolumeId("vo-" + std::string(22, 'Q')).ok());
  for (std::string_view id : {"", "vo-", "vo", "xx-abc", "vo-../x", "vo-a/b", "vo-a.b",
                              "vo-a-b", "../vo-a", "VO-abc"}) {
    EXPECT_EQ(ValidateVolumeId(id).code(), absl::StatusCode::kInvalidArgument) << id;
  }
  EXPECT_FALSE(ValidateVolumeId(std::string("vo-a\0b", 6)).ok());
  EXPECT_FALSE(ValidateVolumeId("vo-" + std::string(65, 'a')).ok());
}

}  // namespace
}  // namespace cairn
