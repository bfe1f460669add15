// What the S3 blob store does beyond the shared contract (blob_store_test.cc
// runs that against S3 too): multipart uploads, presigned URLs, error codes
// by cause, retries, and the s3:// URL. Against a real versitygw, except the
// retry test, which needs a server that fails on purpose.
#include <httplib.h>

#include <atomic>
#include <fstream>
#include <map>
#include <string>
#include <thread>

#include "absl/strings/match.h"
#include "core/blob_store_s3.h"
#include "core/crypto.h"
#include "core/s3_client.h"
#include "core/testing/s3_server.h"
#include "core/testing/temp_dir.h"
#include "gtest/gtest.h"

namespace cairn {
namespace {

using ::cairn::testing::S3TestServer;

constexpr char kVol[] = "vo-s3a";
constexpr char kVol2[] = "vo-s3b";

std::string Content(int seed, size_t size) {
  std::string s(size, '\0');
  uint64_t x = 0x9e3779b97f4a7c15ULL * (seed + 1);
  for (size_t i = 0; i < size; ++i) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    s[i] = static_cast<char>(x);
  }
  return s;
}

TEST(S3BlobStoreTest, LargeBlobsGoUpInPartsAndReadBackWhole) {
  CAIRN_REQUIRE_S3(server);
  S3Config config = server->Config(S3TestServer::UniquePrefix());
  config.multipart_threshold = 6 << 20;
  config.part_size = 5 << 20;  // S3's smallest part but the last
  auto store = OpenS3BlobStore(config);
  ASSERT_TRUE(store.ok()) << store.status();
  std::string big = Content(1, (11 << 20) + 123);  // three parts, the last short
  Digest a = Sha256(big);
  ASSERT_TRUE((*store)->Put(kVol, a, big).ok());
  auto got = (*store)->Get(kVol, a);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_TRUE(*got == big);
  auto part = (*store)->GetRange(kVol, a, (5 << 20) - 10, 20);
  ASSERT_TRUE(part.ok()) << part.status();
  EXPECT_EQ(part->data, big.substr((5 << 20) - 10, 20));
  EXPECT_EQ(part->total_size, big.size());
  // Present already: refreshed, not uploaded again.
  ASSERT_TRUE((*store)->Put(kVol, a, big).ok());
  int listed = 0;
  ASSERT_TRUE((*store)->List(kVol, [&](const BlobStore::BlobInfo& i) {
    ++listed;
    EXPECT_EQ(i.size, big.size());
  }).ok());
  EXPECT_EQ(listed, 1);
}

TEST(S3BlobStoreTest, ListingPagesThroughManyBlobs) {
  CAIRN_REQUIRE_S3(server);
  auto store = OpenS3BlobStore(server->Config(S3TestServer::UniquePrefix()));
  ASSERT_TRUE(store.ok()) << store.status();
  // More than one ListObjectsV2 page (1,000 keys).
  constexpr int kBlobs = 1100;
  std::vector<std::thread> threads;
  std::atomic<int> failed{0};
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int i = t; i < kBlobs; i += 8) {
        std::string d = "blob " + std::to_string(i);
        if (!(*store)->Put(kVol, Sha256(d), d).ok()) ++failed;
      }
    });
  }
  for (auto& th : threads) th.join();
  ASSERT_EQ(failed.load(), 0);
  int listed = 0;
  ASSERT_TRUE((*store)->List(kVol, [&](const BlobStore::BlobInfo&) { ++listed; }).ok());
  EXPECT_EQ(listed, kBlobs);
  ASSERT_TRUE((*store)->DeleteVolume(kVol).ok());
  listed = 0;
  ASSERT_TRUE((*store)->List(kVol, [&](const BlobStore::BlobInfo&) { ++listed; }).ok());
  EXPECT_EQ(listed, 0);
}

TEST(S3BlobStoreTest, LinkCopiesServerSideAndTheCopyOutlivesTheSource) {
  CAIRN_REQUIRE_S3(server);
  auto store = OpenS3BlobStore(server->Config(S3TestServer::UniquePrefix()));
  ASSERT_TRUE(store.ok()) << store.status();
  Digest a = Sha256("shared");
  ASSERT_TRUE((*store)->Put(kVol, a, "shared").ok());
  ASSERT_TRUE((*store)->Link(kVol, kVol2, a).ok());
  ASSERT_TRUE((*store)->DeleteVolume(kVol).ok());
  EXPECT_EQ((*store)->Get(kVol2, a).value(), "shared");
  EXPECT_EQ((*store)->Link(kVol, kVol2, Sha256("absent")).code(), absl::StatusCode::kNotFound);
}

TEST(S3BlobStoreTest, PresignedUrlReadsTheBlobWithoutCredentials) {
  CAIRN_REQUIRE_S3(server);
  auto store = OpenS3BlobStore(server->Config(S3TestServer::UniquePrefix()));
  ASSERT_TRUE(store.ok()) << store.status();
  std::string data = Content(3, 100000);
  Digest a = Sha256(data);
  ASSERT_TRUE((*store)->Put(kVol, a, data).ok());
  auto url = (*store)->PresignGet(kVol, a, absl::Minutes(5));
  ASSERT_TRUE(url.ok()) << url.status();
  ASSERT_TRUE(absl::StartsWith(*url, server->endpoint())) << *url;
  httplib::Client http(server->endpoint());
  http.set_url_encode(false);
  std::string path = url->substr(server->endpoint().size());
  auto res = http.Get(path, httplib::Headers{{"Range", "bytes=10-19"}});
  ASSERT_TRUE(res) << httplib::to_string(res.error());
  EXPECT_EQ(res->status, 206);
  EXPECT_EQ(res->body, data.substr(10, 10));
  // Tampering with the URL (another key) breaks the signature.
  std::string other = path;
  other.replace(other.find(a.ToHex()), 64, Sha256("x").ToHex());
  auto bad = http.Get(other);
  ASSERT_TRUE(bad);
  EXPECT_EQ(bad->status, 403);
  EXPECT_FALSE((*store)->PresignGet("../vo-x", a, absl::Minutes(5)).ok());
}

TEST(S3BlobStoreTest, FailuresMapToCodesByCause) {
  CAIRN_REQUIRE_S3(server);
  S3Config wrong_secret = server->Config("p");
  wrong_secret.credentials.secret_key = "not-the-secret";
  EXPECT_EQ(OpenS3BlobStore(wrong_secret).status().code(), absl::StatusCode::kPermissionDenied);

  S3Config no_bucket = server->Config("p");
  no_bucket.bucket = "no-such-bucket";
  auto missing = OpenS3BlobStore(no_bucket);
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kFailedPrecondition) << missing.status();
  EXPECT_TRUE(absl::StrContains(missing.status().message(), "no-such-bucket"));

  S3Config unreachable = server->Config("p");
  testing::TempDir dir;
  unreachable.endpoint = "http://127.0.0.1:1";  // nothing listens on port 1
  unreachable.max_attempts = 2;
  unreachable.initial_backoff = absl::Milliseconds(1);
  EXPECT_EQ(OpenS3BlobStore(unreachable).status().code(), absl::StatusCode::kUnavailable);
}

// A server that answers 503 SlowDown, then 500, then the object: the
// client retries through both, and gives up with Unavailable when they
// never stop.
TEST(S3ClientTest, RetriesSlowDownAndServerErrorsWithBackoff) {
  httplib::Server fake;
  std::atomic<int> calls{0};
  std::atomic<int> failures{2};
  fake.Get(R"(/bucket/.*)", [&](const httplib::Request&, httplib::Response& res) {
    ++calls;
    if (failures.load() < 0 || failures.fetch_sub(1) > 0) {
      const bool slow = calls.load() % 2 == 1;
      res.status = slow ? 503 : 500;
      res.set_content(slow ? "<Error><Code>SlowDown</Code><Message>Reduce your rate</Message></Error>"
                           : "<Error><Code>InternalError</Code></Error>",
                      "application/xml");
      return;
    }
    res.set_content("payload", "application/octet-stream");
  });
  int port = fake.bind_to_any_port("127.0.0.1");
  std::thread serve([&] { fake.listen_after_bind(); });
  fake.set_keep_alive_timeout(1);  // stop() waits out idle connections
  // Bound already: connections wait in the backlog until the loop runs.

  S3Config c;
  c.endpoint = "http://127.0.0.1:" + std::to_string(port);
  c.bucket = "bucket";
  c.credentials = {"id", "secret", ""};
  c.initial_backoff = absl::Milliseconds(1);
  c.max_attempts = 4;
  auto client = S3Client::Create(c);
  ASSERT_TRUE(client.ok());
  auto got = (*client)->GetObject("k");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, "payload");
  EXPECT_EQ(calls.load(), 3);

  failures = -1;  // fail for ever
  calls = 0;
  got = (*client)->GetObject("k");
  EXPECT_EQ(got.status().code(), absl::StatusCode::kUnavailable) << got.status();
  EXPECT_EQ(calls.load(), 4);
  fake.stop();
  serve.join();
}

TEST(S3UrlTest, ParsesBucketPrefixAndParameters) {
  std::map<std::string, std::string> env = {{"AWS_ACCESS_KEY_ID", "AK"},
                                            {"AWS_SECRET_ACCESS_KEY", "SK"}};
  auto getenv = [&](const char* n) -> const char* {
    auto it = env.find(n);
    return it == env.end() ? nullptr : it->second.c_str();
  };
  auto c = ParseS3Url("s3://my-bucket/a/b/?endpoint=http%3A%2F%2F127.0.0.1%3A9000&region=eu-1"
                      "&path_style=false",
                      getenv);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->bucket, "my-bucket");
  EXPECT_EQ(c->prefix, "a/b");
  EXPECT_EQ(c->endpoint, "http://127.0.0.1:9000");
  EXPECT_EQ(c->region, "eu-1");
  EXPECT_FALSE(c->path_style);
  EXPECT_EQ(c->credentials.access_key, "AK");
  EXPECT_EQ(c->credentials.secret_key, "SK");

  auto aws = ParseS3Url("s3://bucket?region=eu-west-1", getenv);
  ASSERT_TRUE(aws.ok()) << aws.status();
  EXPECT_EQ(aws->endpoint, "https://s3.eu-west-1.amazonaws.com");
  EXPECT_EQ(aws->prefix, "");

  for (const char* bad : {"http://bucket/x", "s3://", "s3://UPPER", "s3://b", "s3://bucket/a/../b",
                          "s3://bucket/a//b", "s3://bucket?endpoint=ftp://x",
                          "s3://bucket?endpoint=http://h/path", "s3://bucket?colour=red",
                          "s3://bucket?path_style=maybe", "s3://bucket?endpoint=http://h:99999",
                          "s3://bucket?endpoint=%zz"}) {
    auto r = ParseS3Url(bad, getenv);
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << bad << ": " << r.status();
  }
}

TEST(S3UrlTest, CredentialsFromASharedCredentialsFile) {
  testing::TempDir dir;
  const std::string file = (dir.path() / "credentials").string();
  std::ofstream(file) << "[default]\naws_access_key_id = D\naws_secret_access_key = DS\n"
                         "[ci]\naws_access_key_id=C\naws_secret_access_key=CS\n"
                         "aws_session_token=T\n";
  auto none = [](const char*) -> const char* { return nullptr; };
  auto d = ParseS3Url("s3://bucket?credentials_file=" + file, none);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->credentials.access_key, "D");
  EXPECT_EQ(d->credentials.secret_key, "DS");
  auto ci = ParseS3Url("s3://bucket?profile=ci&credentials_file=" + file, none);
  ASSERT_TRUE(ci.ok()) << ci.status();
  EXPECT_EQ(ci->credentials.session_token, "T");
  auto absent = ParseS3Url("s3://bucket?profile=nope&credentials_file=" + file, none);
  EXPECT_EQ(absent.status().code(), absl::StatusCode::kInvalidArgument);
  auto nothing = ParseS3Url("s3://bucket", none);
  EXPECT_EQ(nothing.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(nothing.status().message(), "AWS_ACCESS_KEY_ID"));
}

}  // namespace
}  // namespace cairn
