// DataDir with a master key supplied from outside (a Kubernetes Secret).
#include "core/data_dir.h"

#include "core/testing/temp_dir.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace cairn {
namespace {

using ::testing::HasSubstr;

TEST(DataDirTest, SuppliedMasterKeyIsUsedAndAWrongOneRefused) {
  cairn::testing::TempDir dir;
  MasterKey a = *MasterKey::FromBytes(std::string(32, 'a'));
  MasterKey b = *MasterKey::FromBytes(std::string(32, 'b'));
  std::string id;
  {
    absl::StatusOr<std::unique_ptr<DataDir>> d = DataDir::Open(dir.path(), a);
    ASSERT_TRUE(d.ok()) << d.status();
    absl::StatusOr<VolumeRecord> v = (*d)->engine().CreateVolume("ns", "vol", 2);
    ASSERT_TRUE(v.ok()) << v.status();
    id = v->id;
  }
  EXPECT_FALSE(std::filesystem::exists(dir.path() / "master.key"));
  absl::Status wrong = DataDir::Open(dir.path(), b).status();
  EXPECT_EQ(wrong.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(wrong.message()), HasSubstr("another master key"));
  absl::StatusOr<std::unique_ptr<DataDir>> again = DataDir::Open(dir.path(), a);
  ASSERT_TRUE(again.ok()) << again.status();
  absl::StatusOr<VolumeRecord> v = (*again)->engine().GetVolumeById(id);
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_TRUE((*again)->engine().DataKeyFor(*v).ok());
}

TEST(DataDirTest, SuppliedKeyDirectoryWithoutKeyFileIsRefusedByTheFileMode) {
  cairn::testing::TempDir dir;
  {
    auto d = DataDir::Open(dir.path(), *MasterKey::FromBytes(std::string(32, 'a')));
    ASSERT_TRUE(d.ok());
    ASSERT_TRUE((*d)->engine().CreateVolume("ns", "vol", 2).ok());
  }
  // Opened later without the Secret: the existing rule (no key file next to
  // volumes) refuses instead of minting a key that opens nothing.
  absl::Status s = DataDir::Open(dir.path()).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(s.message()), HasSubstr("master key"));
}

}  // namespace
}  // namespace cairn
