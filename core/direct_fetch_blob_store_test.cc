// Direct reads from the object store with signed URLs (against a real
// versitygw), and every way they fall back to the control plane: a URL
// nobody answers, an expired URL, a control plane without an object store.
#include "core/direct_fetch_blob_store.h"

#include <thread>

#include "core/blob_store_s3.h"
#include "core/crypto.h"
#include "core/testing/mem_stores.h"
#include "core/testing/s3_server.h"
#include "gtest/gtest.h"

namespace cairn {
namespace {

using ::cairn::testing::S3TestServer;

constexpr char kVol[] = "vo-direct";

// A control plane that signs URLs with a real S3 store, or hands out
// URLs a test chooses.
class UrlClient final : public VolumeApiClient {
 public:
  UrlClient() : VolumeApiClient(ClientOptions{}) {}
  absl::StatusOr<ObjectUrls> GetObjectUrls(std::string_view volume_id,
                                           const std::vector<Digest>& addresses) override {
    ++calls;
    if (!status.ok()) return status;
    ObjectUrls out;
    out.expires = absl::Now() + absl::Minutes(5);
    for (const Digest& a : addresses) {
      if (!url_override.empty()) {
        out.urls.push_back(url_override);
        continue;
      }
      auto url = store->PresignGet(volume_id, a, lifetime);
      if (!url.ok()) return url.status();
      out.urls.push_back(*url);
    }
    return out;
  }
  S3BlobStore* store = nullptr;
  absl::Duration lifetime = absl::Minutes(5);
  std::string url_override;
  absl::Status status;
  int calls = 0;
};

class DirectFetchTest : public ::testing::Test {
 protected:
  void SetUp() override {
    CAIRN_REQUIRE_S3(server);
    auto s3 = OpenS3BlobStore(server->Config(S3TestServer::UniquePrefix()));
    ASSERT_TRUE(s3.ok()) << s3.status();
    s3_ = *std::move(s3);
    client_.store = s3_.get();
    data_ = std::string(300000, 'x');
    for (size_t i = 0; i < data_.size(); ++i) data_[i] = static_cast<char>(i * 7919 >> 3);
    address_ = Sha256(data_);
    ASSERT_TRUE(s3_->Put(kVol, address_, data_).ok());
    // The control plane's copy, for fallbacks.
    ASSERT_TRUE(fallback_->Put(kVol, address_, data_).ok());
  }

  std::unique_ptr<S3BlobStore> s3_;
  std::unique_ptr<BlobStore> fallback_ = NewMemBlobStore();
  UrlClient client_;
  std::string data_;
  Digest address_;
};

TEST_F(DirectFetchTest, ReadsWholeBlobsAndRangesFromTheBucket) {
  DirectFetchBlobStore store(&client_, fallback_.get());
  ASSERT_TRUE(fallback_->Delete(kVol, address_).ok());  // only the bucket has it now
  auto whole = store.Get(kVol, address_);
  ASSERT_TRUE(whole.ok()) << whole.status();
  EXPECT_TRUE(*whole == data_);
  auto part = store.GetRange(kVol, address_, 65536, 1000);
  ASSERT_TRUE(part.ok()) << part.status();
  EXPECT_EQ(part->data, data_.substr(65536, 1000));
  EXPECT_EQ(part->total_size, data_.size());
  auto tail = store.GetRange(kVol, address_, data_.size() - 10, ~uint64_t{0});
  ASSERT_TRUE(tail.ok()) << tail.status();
  EXPECT_EQ(tail->data, data_.substr(data_.size() - 10));
  EXPECT_EQ(store.direct_reads(), 3u);
  EXPECT_EQ(store.fallback_reads(), 0u);
  EXPECT_EQ(client_.calls, 1) << "the URL is cached";
}

TEST_F(DirectFetchTest, AnUnreachableObjectStoreFallsBackToTheControlPlane) {
  DirectFetchBlobStore store(&client_, fallback_.get());
  client_.url_override = "http://127.0.0.1:1/cairn-test/nothing?X-Amz-Signature=0";
  auto whole = store.Get(kVol, address_);
  ASSERT_TRUE(whole.ok()) << whole.status();
  EXPECT_TRUE(*whole == data_);
  EXPECT_EQ(store.direct_reads(), 0u);
  EXPECT_EQ(store.fallback_reads(), 1u);
  // Missing everywhere: the control plane's NotFound.
  EXPECT_EQ(store.Get(kVol, Sha256("absent")).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(DirectFetchTest, AnExpiredUrlFallsBackAndIsRenewed) {
  DirectFetchBlobStore store(&client_, fallback_.get());
  // Valid for 3 s while the client is told five minutes. Not 1 s: SigV4
  // dates count whole seconds, so a 1 s URL could expire before its first
  // use on a slow (sanitized, loaded) run.
  client_.lifetime = absl::Seconds(3);
  ASSERT_TRUE(store.Get(kVol, address_).ok());
  EXPECT_EQ(store.direct_reads(), 1u);
  std::this_thread::sleep_for(std::chrono::milliseconds(4500));
  auto again = store.Get(kVol, address_);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_TRUE(*again == data_);
  EXPECT_EQ(store.fallback_reads(), 1u) << "the expired URL was refused";
  client_.lifetime = absl::Minutes(5);
  ASSERT_TRUE(store.Get(kVol, address_).ok());
  EXPECT_EQ(store.direct_reads(), 2u) << "a fresh URL was asked for";
  EXPECT_EQ(client_.calls, 2);
}

TEST_F(DirectFetchTest, AControlPlaneWithoutAnObjectStoreIsAskedOnce) {
  DirectFetchBlobStore store(&client_, fallback_.get());
  client_.status = absl::UnimplementedError("blobs on local disk");
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(store.Get(kVol, address_).ok());
  EXPECT_EQ(client_.calls, 1);
  EXPECT_EQ(store.fallback_reads(), 3u);
  // Writes always go to the control plane.
  ASSERT_TRUE(store.Put(kVol, Sha256("new"), "new").ok());
  EXPECT_TRUE(fallback_->Contains(kVol, Sha256("new")).value());
}

}  // namespace
}  // namespace cairn
