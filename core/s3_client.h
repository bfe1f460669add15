// S3Client: the few S3 API calls the blob store needs, signed with SigV4
// (core/sigv4.h) over cpp-httplib, against AWS or any S3-compatible server
// (versitygw, MinIO, Ceph RGW, ...).
//
// Errors map to absl codes by how a caller should react (one function,
// S3Error): Unavailable for network failures, 5xx, 429 and SlowDown (after
// the client's own retries with exponential backoff), NotFound (NoSuchKey),
// FailedPrecondition (NoSuchBucket, a failed If-None-Match), PermissionDenied
// (AccessDenied, SignatureDoesNotMatch, InvalidAccessKeyId), Unauthenticated
// (ExpiredToken), OutOfRange (416), InvalidArgument (other 4xx), Unimplemented
// (501). Messages name the method, bucket, key and the server's own code.
//
// Thread-safe: requests run on a small pool of keep-alive connections.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "core/sigv4.h"

namespace cairn {

struct S3Config {
  // "http://127.0.0.1:7070", "https://s3.eu-west-1.amazonaws.com".
  std::string endpoint = "https://s3.amazonaws.com";
  std::string region = "us-east-1";
  std::string bucket;
  // Keys start with "<prefix>/" (no leading or trailing slash; may be empty).
  std::string prefix;
  // Path-style URLs (endpoint/bucket/key), which S3-compatible servers
  // want; virtual-hosted (bucket.endpoint/key) otherwise.
  bool path_style = true;
  SigV4Credentials credentials;
  // Blobs this size or larger go up as multipart uploads of `part_size`.
  uint64_t multipart_threshold = uint64_t{64} << 20;
  uint64_t part_size = uint64_t{16} << 20;
  // Attempts per request (1 = no retry) and the first backoff (doubled,
  // with jitter, up to 5 s).
  int max_attempts = 6;
  absl::Duration initial_backoff = absl::Milliseconds(100);
  absl::Duration request_timeout = absl::Seconds(60);
};

// Environment lookup (getenv in production; a map in tests).
using GetEnvFn = std::function<const char*(const char*)>;

// Parses `s3://BUCKET[/PREFIX][?endpoint=URL&region=R&path_style=true|false
// &credentials_file=FILE&profile=P]`. Credentials come from
// AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (/ AWS_SESSION_TOKEN), else
// from the AWS shared-credentials file (credentials_file=, else
// AWS_SHARED_CREDENTIALS_FILE) under [PROFILE] (profile=, else AWS_PROFILE,
// else "default"). InvalidArgument naming what is wrong.
[[nodiscard]] absl::StatusOr<S3Config> ParseS3Url(std::string_view url, const GetEnvFn& getenv);
[[nodiscard]] absl::StatusOr<S3Config> ParseS3Url(std::string_view url);

class S3Client {
 public:
  struct ObjectInfo {
    std::string key;  // full key, prefix included
    uint64_t size = 0;
    absl::Time last_modified;
  };
  struct Range {
    std::string data;
    uint64_t total_size = 0;
  };

  [[nodiscard]] static absl::StatusOr<std::unique_ptr<S3Client>> Create(S3Config config);
  ~S3Client();
  S3Client(const S3Client&) = delete;
  S3Client& operator=(const S3Client&) = delete;

  const S3Config& config() const { return config_; }

  // PUT. With `if_none_match`, FailedPrecondition (tagged as such by
  // IsPreconditionFailed) when the key exists; servers that do not support
  // conditional writes answer Unimplemented or InvalidArgument.
  [[nodiscard]] absl::Status PutObject(std::string_view key, std::string_view body,
                                       bool if_none_match);
  // A multipart upload of `body` in config().part_size parts; aborted on
  // failure so no parts are left behind.
  [[nodiscard]] absl::Status PutObjectMultipart(std::string_view key, std::string_view body);
  [[nodiscard]] absl::StatusOr<std::string> GetObject(std::string_view key);
  // Bytes [offset, offset + length) (length > 0), clipped at the end.
  // OutOfRange when the range starts at or past the end.
  [[nodiscard]] absl::StatusOr<Range> GetObjectRange(std::string_view key, uint64_t offset,
                                                     uint64_t length);
  [[nodiscard]] absl::StatusOr<ObjectInfo> HeadObject(std::string_view key);
  // Missing is OK.
  [[nodiscard]] absl::Status DeleteObject(std::string_view key);
  // Server-side copy; returns the copy's Last-Modified as the server
  // reports it. Onto itself it replaces the (empty) metadata, which AWS S3
  // counts as a new object (a new Last-Modified) and some servers do not.
  [[nodiscard]] absl::StatusOr<absl::Time> CopyObject(std::string_view from_key,
                                                      std::string_view to_key);
  // ListObjectsV2 over every page. With a delimiter, common prefixes go to
  // `on_prefix`.
  [[nodiscard]] absl::Status ListObjects(std::string_view prefix, std::string_view delimiter,
                                         const std::function<void(const ObjectInfo&)>& on_object,
                                         const std::function<void(std::string_view)>& on_prefix);
  // HEAD on the bucket: OK if it exists and the credentials may use it
  // (NotFound if it does not exist).
  [[nodiscard]] absl::Status HeadBucket();
  // Creates the bucket; one that exists and is ours is OK.
  [[nodiscard]] absl::Status CreateBucket();

  // A presigned GET URL for `key`, valid for `expires` from now.
  std::string PresignGet(std::string_view key, absl::Duration expires) const;

  // True for the status PutObject returns when If-None-Match failed.
  static bool IsPreconditionFailed(const absl::Status& status);

 private:
  struct Pool;
  struct Request;
  struct Response;
  explicit S3Client(S3Config config);
  // One signed request with retries; non-2xx becomes a Status unless
  // `ok_status` lists it.
  absl::StatusOr<Response> Send(Request request);
  std::string ObjectPath(std::string_view key) const;  // raw (unencoded) request path
  std::string Host() const;

  const S3Config config_;
  std::unique_ptr<Pool> pool_;
};

}  // namespace cairn
