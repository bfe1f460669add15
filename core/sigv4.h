// AWS Signature Version 4 (SigV4), as S3 and S3-compatible servers check
// it: the Authorization header of a request, and presigned URLs (query
// string authentication). Pure functions over values, no I/O; tested
// against the cases AWS publishes (core/sigv4_test.cc).
//
// Paths are signed as they stand (S3 does not normalize them): every byte
// but the unreserved set and '/' is percent-encoded once.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/time/time.h"

namespace cairn {

struct SigV4Credentials {
  std::string access_key;
  std::string secret_key;
  std::string session_token;  // empty unless temporary credentials
};

struct SigV4Scope {
  std::string region;   // "us-east-1"
  std::string service;  // "s3"
};

// One request to sign. `path` and the query are raw (unencoded); the
// signer encodes them.
struct SigV4Request {
  std::string method;  // "GET"
  std::string host;    // "example.amazonaws.com" or "127.0.0.1:7070"
  std::string path;    // "/bucket/key"
  std::vector<std::pair<std::string, std::string>> query;
  // Headers to sign besides host, x-amz-date and x-amz-security-token
  // (which the signer adds). Names in any case; repeated names are joined.
  std::vector<std::pair<std::string, std::string>> headers;
  // Hex SHA-256 of the body, or "UNSIGNED-PAYLOAD".
  std::string payload_hash;
};

struct SigV4Signed {
  std::string canonical_request;
  std::string string_to_sign;
  std::string signature;  // hex
  // Headers to send: authorization, x-amz-date, x-amz-security-token
  // (when a token is set). Host is left to the HTTP client.
  std::vector<std::pair<std::string, std::string>> headers;
};

// Signs `request` for the Authorization header at time `now`.
[[nodiscard]] SigV4Signed SignV4(const SigV4Request& request, const SigV4Credentials& creds,
                                 const SigV4Scope& scope, absl::Time now);

// A presigned URL's query string ("X-Amz-Algorithm=…&X-Amz-Signature=…",
// after the request's own query, encoded) valid for `expires` from `now`.
// Signs host only and an unsigned payload, as S3 expects of a URL.
[[nodiscard]] std::string PresignV4(const SigV4Request& request, const SigV4Credentials& creds,
                                    const SigV4Scope& scope, absl::Time now,
                                    absl::Duration expires);

// RFC 3986 percent-encoding as SigV4 wants it (uppercase hex); '/' is kept
// when `keep_slash`.
[[nodiscard]] std::string SigV4Encode(std::string_view s, bool keep_slash);

// Hex SHA-256 of `data` (payload hashes).
[[nodiscard]] std::string Sha256Hex(std::string_view data);

}  // namespace cairn
