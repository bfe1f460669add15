// WebUi: the read-only file browser the control plane serves under /ui on
// its HTTP port (docs/web.md). Volumes of a namespace, directories with
// sizes and times, breadcrumbs, previews of text and images, downloads of
// single files (HTTP range requests, resumable) and of directories (a tar
// archive streamed as it is read).
//
// Every page and download reads one snapshot: links carry `?at=SEQ`, so a
// URL names the same bytes for as long as the volume lives, and a resumed
// download can never splice two versions. Without `at` a request reads
// the head. Content is read through the engine (the server holds the keys,
// D1) a chunk at a time, with the next chunk fetched while one is sent:
// memory per download is bounded by two chunks, whatever the file's size.
//
// Access: with a token, every page and download needs either the session
// cookie that POST /ui/login sets after checking the token (HttpOnly,
// SameSite=Strict, an expiry signed with an HMAC keyed by the token, so
// the token itself never leaves the login form) or "Authorization: Bearer
// <token>" (scripts). Without one a request is sent to the login page.
// Without a token (loopback only, see Server) the browser is open.
//
// Thread-safe: handlers run on httplib's worker threads and share only the
// engine. `engine` must outlive the httplib server the routes are added to.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "core/engine.h"

namespace httplib {
class Server;
struct Request;
struct Response;
}  // namespace httplib

namespace cairn::operator_ {

class WebUi {
 public:
  struct Options {
    std::string token;  // the API's bearer token; empty: no login
    absl::Duration session = absl::Hours(12);
  };
  WebUi(Engine* engine, Options options);
  WebUi(const WebUi&) = delete;
  WebUi& operator=(const WebUi&) = delete;

  // Adds the /ui routes to `http`. Call before it starts listening.
  void Register(httplib::Server& http);

 private:
  struct Target;
  bool Authorized(const httplib::Request& req) const;
  absl::StatusOr<Target> Resolve(const httplib::Request& req) const;
  absl::Status VolumeList(const httplib::Request& req, httplib::Response& res) const;
  absl::Status Browse(const httplib::Request& req, httplib::Response& res) const;
  absl::Status Raw(const httplib::Request& req, httplib::Response& res) const;
  absl::Status Tar(const httplib::Request& req, httplib::Response& res) const;
  void Login(const httplib::Request& req, httplib::Response& res) const;
  // A whole page; the header offers "Log out" when `signed_in`.
  std::string Page(absl::string_view title, absl::string_view body, bool signed_in = true) const;

  Engine* const engine_;
  const Options options_;
};

// ---- Parts with their own tests ----

struct ByteRange {
  uint64_t offset = 0;
  uint64_t length = 0;
};
// The range a "Range" header asks of a body of `size` bytes. nullopt: send
// the whole body (no header, a unit other than bytes, or several ranges,
// which a server may answer in full). OutOfRange: nothing of the body is
// in the range (416). InvalidArgument: a malformed bytes range.
[[nodiscard]] absl::StatusOr<std::optional<ByteRange>> ParseByteRange(absl::string_view header,
                                                                      uint64_t size);

// The session cookie's value, "EXPIRY.MAC": the expiry (Unix seconds) and
// HMAC-SHA-256(token, expiry) in hex.
std::string SessionCookieValue(absl::string_view token, int64_t expiry_unix);
// True if `value` was made by SessionCookieValue with `token` and has not
// expired at `now_unix`. Constant-time in the MAC.
bool ValidSessionCookie(absl::string_view token, absl::string_view value, int64_t now_unix);

// "%XX"-escapes everything but unreserved characters and, if `keep_slash`,
// '/': a volume path as one piece of a URL path.
std::string UrlEscape(absl::string_view s, bool keep_slash);

// The Content-Type a download carries, from the name's extension
// ("application/octet-stream" when unknown).
std::string ContentTypeFor(absl::string_view name);

}  // namespace cairn::operator_
