// A real S3 server for tests: versitygw (pinned and built by
// scripts/go-tools.sh, or $CAIRN_VERSITYGW) serving a temporary directory on
// a free loopback port, with one bucket. Test-only.
//
// Tests that need it use CAIRN_REQUIRE_S3(): with CI=true a missing server
// FAILS the test; otherwise it is skipped with the reason.
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/s3_client.h"
#include "core/testing/temp_dir.h"

namespace cairn::testing {

class S3TestServer {
 public:
  static constexpr char kAccessKey[] = "cairntestaccess";
  static constexpr char kSecretKey[] = "cairn-test-secret-key";
  static constexpr char kBucket[] = "cairn-test";

  [[nodiscard]] static absl::StatusOr<std::unique_ptr<S3TestServer>> Start();
  // One server per test binary, started on first use (and stopped at exit).
  [[nodiscard]] static absl::StatusOr<S3TestServer*> Shared();
  ~S3TestServer();
  S3TestServer(const S3TestServer&) = delete;
  S3TestServer& operator=(const S3TestServer&) = delete;

  std::string endpoint() const;  // "http://127.0.0.1:PORT"
  // A store configuration under key prefix `prefix` (fresh prefixes keep
  // tests apart in the one bucket).
  S3Config Config(const std::string& prefix) const;
  // The --blobs URL for `prefix`; credentials travel in Env().
  std::string Url(const std::string& prefix) const;
  // AWS_ACCESS_KEY_ID=… and AWS_SECRET_ACCESS_KEY=… for a child process.
  std::vector<std::string> Env() const;
  // A prefix no other call in this process returned.
  static std::string UniquePrefix();

 private:
  S3TestServer() = default;
  TempDir dir_;
  pid_t pid_ = -1;
  int port_ = 0;
};

// True when CI=true.
bool InCi();

}  // namespace cairn::testing

// Sets `var` (S3TestServer*) or fails (CI) / skips the test.
#define CAIRN_REQUIRE_S3(var)                                                       \
  ::cairn::testing::S3TestServer* var = nullptr;                                    \
  do {                                                                              \
    auto cairn_s3_ = ::cairn::testing::S3TestServer::Shared();                      \
    if (!cairn_s3_.ok()) {                                                          \
      if (::cairn::testing::InCi()) FAIL() << "CI=true and no S3 server: " << cairn_s3_.status(); \
      GTEST_SKIP() << "no S3 server: " << cairn_s3_.status();                       \
    }                                                                               \
    var = *cairn_s3_;                                                               \
  } while (0)
