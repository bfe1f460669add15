#include "core/s3_client.h"

#include <httplib.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <random>
#include <sstream>

#include "absl/base/thread_annotations.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "core/markup.h"
#include "core/status.h"

namespace cairn {
namespace {

// Debian's abseil has its own absl::string_view (see core/crypto.cc).
absl::string_view Sv(std::string_view s) { return absl::string_view(s.data(), s.size()); }

// Inner text of each <tag>…</tag> in `xml` (tags of one name do not nest
// in the S3 responses read here).
std::vector<absl::string_view> XmlElements(absl::string_view xml, absl::string_view tag) {
  std::vector<absl::string_view> out;
  const std::string open = absl::StrCat("<", tag, ">");
  const std::string close = absl::StrCat("</", tag, ">");
  size_t pos = 0;
  while (true) {
    size_t start = xml.find(open, pos);
    if (start == absl::string_view::npos) break;
    start += open.size();
    size_t end = xml.find(close, start);
    if (end == absl::string_view::npos) break;
    out.push_back(xml.substr(start, end - start));
    pos = end + close.size();
  }
  return out;
}

std::string XmlUnescape(absl::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '&') {
      out.push_back(s[i]);
      continue;
    }
    static constexpr std::pair<absl::string_view, char> kEntities[] = {
        {"&amp;", '&'}, {"&lt;", '<'}, {"&gt;", '>'}, {"&quot;", '"'}, {"&apos;", '\''}};
    bool done = false;
    for (const auto& [entity, c] : kEntities) {
      if (s.substr(i, entity.size()) == entity) {
        out.push_back(c);
        i += entity.size() - 1;
        done = true;
        break;
      }
    }
    if (!done) out.push_back('&');
  }
  return out;
}

std::string XmlText(absl::string_view xml, absl::string_view tag) {
  std::vector<absl::string_view> e = XmlElements(xml, tag);
  return e.empty() ? std::string() : XmlUnescape(e.front());
}

absl::StatusOr<std::string> PercentDecode(absl::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%') {
      std::string hex(s.substr(i + 1, 2));
      if (hex.size() != 2 || !absl::ascii_isxdigit(hex[0]) || !absl::ascii_isxdigit(hex[1])) {
        return absl::InvalidArgumentError(absl::StrCat("bad percent-encoding in \"", s, "\""));
      }
      out.push_back(static_cast<char>(std::stoi(hex, nullptr, 16)));
      i += 2;
    } else if (s[i] == '+') {
      out.push_back(' ');
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

absl::StatusOr<bool> ParseBool(absl::string_view name, absl::string_view v) {
  if (v == "true" || v == "1" || v == "yes") return true;
  if (v == "false" || v == "0" || v == "no") return false;
  return absl::InvalidArgumentError(absl::StrCat(name, "=", v, ": want true or false"));
}

// The [profile] section of an AWS shared-credentials file.
absl::Status ReadCredentialsFile(const std::string& path, const std::string& profile,
                                 SigV4Credentials* creds) {
  std::ifstream in(path);
  if (!in) return absl::InvalidArgumentError(absl::StrCat("cannot read S3 credentials file ", path));
  std::string line, section;
  bool found = false;
  while (std::getline(in, line)) {
    absl::string_view l = absl::StripAsciiWhitespace(line);
    if (l.empty() || l[0] == '#' || l[0] == ';') continue;
    if (l.front() == '[' && l.back() == ']') {
      section = std::string(absl::StripAsciiWhitespace(l.substr(1, l.size() - 2)));
      continue;
    }
    if (section != profile) continue;
    std::pair<absl::string_view, absl::string_view> kv = absl::StrSplit(l, absl::MaxSplits('=', 1));
    absl::string_view k = absl::StripAsciiWhitespace(kv.first);
    std::string v(absl::StripAsciiWhitespace(kv.second));
    if (k == "aws_access_key_id") creds->access_key = v, found = true;
    if (k == "aws_secret_access_key") creds->secret_key = v;
    if (k == "aws_session_token") creds->session_token = v;
  }
  if (!found || creds->secret_key.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "S3 credentials file ", path, " has no aws_access_key_id and aws_secret_access_key in [",
        profile, "]"));
  }
  return absl::OkStatus();
}

struct Endpoint {
  bool https = false;
  std::string host;  // without port
  int port = 0;
  bool default_port = true;
};

absl::StatusOr<Endpoint> ParseEndpoint(absl::string_view url) {
  Endpoint e;
  absl::string_view rest = url;
  if (absl::ConsumePrefix(&rest, "https://")) {
    e.https = true;
  } else if (!absl::ConsumePrefix(&rest, "http://")) {
    return absl::InvalidArgumentError(
        absl::StrCat("S3 endpoint \"", url, "\" must start with http:// or https://"));
  }
  absl::ConsumeSuffix(&rest, "/");
  if (rest.empty() || absl::StrContains(rest, '/')) {
    return absl::InvalidArgumentError(
        absl::StrCat("S3 endpoint \"", url, "\" must be scheme://host[:port] with no path"));
  }
  e.port = e.https ? 443 : 80;
  const size_t colon = rest.rfind(':');
  const size_t bracket = rest.rfind(']');  // an IPv6 literal: [::1]:9000
  if (colon != absl::string_view::npos && (bracket == absl::string_view::npos || colon > bracket)) {
    if (!absl::SimpleAtoi(rest.substr(colon + 1), &e.port) || e.port <= 0 || e.port > 65535) {
      return absl::InvalidArgumentError(absl::StrCat("S3 endpoint \"", url, "\" has a bad port"));
    }
    e.default_port = false;
    rest = rest.substr(0, colon);
  }
  e.host = std::string(rest);
  return e;
}

bool RetryableHttp(int status, absl::string_view code) {
  return status >= 500 || status == 429 || code == "SlowDown" || code == "RequestTimeout";
}

}  // namespace

absl::StatusOr<S3Config> ParseS3Url(std::string_view url) {
  return ParseS3Url(url, [](const char* name) { return std::getenv(name); });
}

absl::StatusOr<S3Config> ParseS3Url(std::string_view url_arg, const GetEnvFn& getenv) {
  const absl::string_view url = Sv(url_arg);
  S3Config c;
  absl::string_view rest = url;
  if (!absl::ConsumePrefix(&rest, "s3://")) {
    return absl::InvalidArgumentError(
        absl::StrCat("blob store URL \"", url, "\" must look like s3://BUCKET/PREFIX?endpoint=…"));
  }
  absl::string_view query;
  if (size_t q = rest.find('?'); q != absl::string_view::npos) {
    query = rest.substr(q + 1);
    rest = rest.substr(0, q);
  }
  std::pair<absl::string_view, absl::string_view> bp = absl::StrSplit(rest, absl::MaxSplits('/', 1));
  c.bucket = std::string(bp.first);
  absl::string_view prefix = bp.second;
  while (absl::ConsumeSuffix(&prefix, "/")) {
  }
  c.prefix = std::string(prefix);
  // Bucket names: 3-63 of [a-z0-9.-] (the S3 rules, which also keep the
  // name safe in a host name and a path).
  if (c.bucket.size() < 3 || c.bucket.size() > 63 ||
      !std::all_of(c.bucket.begin(), c.bucket.end(), [](char ch) {
        return absl::ascii_islower(ch) || absl::ascii_isdigit(ch) || ch == '-' || ch == '.';
      })) {
    return absl::InvalidArgumentError(absl::StrCat(
        "blob store URL \"", url, "\": bucket \"", c.bucket,
        "\" is not a valid S3 bucket name (3-63 lowercase letters, digits, '-' or '.')"));
  }
  for (absl::string_view part : absl::StrSplit(c.prefix, '/')) {
    if (!c.prefix.empty() && (part.empty() || part == "." || part == "..")) {
      return absl::InvalidArgumentError(
          absl::StrCat("blob store URL \"", url, "\": bad key prefix \"", c.prefix, "\""));
    }
  }
  std::string credentials_file, profile;
  bool endpoint_given = false;
  for (absl::string_view kv : absl::StrSplit(query, '&', absl::SkipEmpty())) {
    std::pair<absl::string_view, absl::string_view> p = absl::StrSplit(kv, absl::MaxSplits('=', 1));
    CAIRN_ASSIGN_OR_RETURN(std::string v, PercentDecode(p.second));
    if (p.first == "endpoint") {
      c.endpoint = v;
      endpoint_given = true;
    } else if (p.first == "region") {
      c.region = v;
    } else if (p.first == "path_style") {
      CAIRN_ASSIGN_OR_RETURN(c.path_style, ParseBool(p.first, v));
    } else if (p.first == "credentials_file") {
      credentials_file = v;
    } else if (p.first == "profile") {
      profile = v;
    } else {
      return absl::InvalidArgumentError(absl::StrCat(
          "blob store URL \"", url, "\": unknown parameter \"", p.first,
          "\" (known: endpoint, region, path_style, credentials_file, profile)"));
    }
  }
  if (!endpoint_given) c.endpoint = absl::StrCat("https://s3.", c.region, ".amazonaws.com");
  CAIRN_RETURN_IF_ERROR(ParseEndpoint(c.endpoint).status());
  if (c.region.empty()) return absl::InvalidArgumentError("blob store URL: region is empty");

  const char* id = getenv("AWS_ACCESS_KEY_ID");
  const char* secret = getenv("AWS_SECRET_ACCESS_KEY");
  if (credentials_file.empty() && id != nullptr && secret != nullptr && *id && *secret) {
    c.credentials.access_key = id;
    c.credentials.secret_key = secret;
    if (const char* token = getenv("AWS_SESSION_TOKEN"); token != nullptr) {
      c.credentials.session_token = token;
    }
    return c;
  }
  if (credentials_file.empty()) {
    if (const char* f = getenv("AWS_SHARED_CREDENTIALS_FILE"); f != nullptr) credentials_file = f;
  }
  if (profile.empty()) {
    const char* p = getenv("AWS_PROFILE");
    profile = p != nullptr && *p ? p : "default";
  }
  if (credentials_file.empty()) {
    return absl::InvalidArgumentError(
        "no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or name a "
        "shared-credentials file with credentials_file= or AWS_SHARED_CREDENTIALS_FILE");
  }
  CAIRN_RETURN_IF_ERROR(ReadCredentialsFile(credentials_file, profile, &c.credentials));
  return c;
}

struct S3Client::Request {
  std::string method;
  std::string key;          // empty: the bucket itself
  std::vector<std::pair<std::string, std::string>> query;
  std::vector<std::pair<std::string, std::string>> headers;
  absl::string_view body;
};

struct S3Client::Response {
  int status = 0;
  std::string body;
  httplib::Headers headers;
};

struct S3Client::Pool {
  std::string base_url;  // scheme://host[:port]
  absl::Duration timeout;
  absl::Mutex mu;
  std::vector<std::unique_ptr<httplib::Client>> idle ABSL_GUARDED_BY(mu);

  std::unique_ptr<httplib::Client> Acquire() {
    {
      absl::MutexLock lock(&mu);
      if (!idle.empty()) {
        std::unique_ptr<httplib::Client> c = std::move(idle.back());
        idle.pop_back();
        return c;
      }
    }
    auto c = std::make_unique<httplib::Client>(base_url);
    const auto t = absl::ToChronoMilliseconds(timeout);
    c->set_connection_timeout(std::chrono::seconds(10));
    c->set_read_timeout(t);
    c->set_write_timeout(t);
    c->set_keep_alive(true);
    c->set_url_encode(false);  // paths and queries are encoded here, as signed
    return c;
  }
  void Release(std::unique_ptr<httplib::Client> c) {
    absl::MutexLock lock(&mu);
    if (idle.size() < 16) idle.push_back(std::move(c));
  }
};

S3Client::S3Client(S3Config config) : config_(std::move(config)), pool_(std::make_unique<Pool>()) {}
S3Client::~S3Client() = default;

absl::StatusOr<std::unique_ptr<S3Client>> S3Client::Create(S3Config config) {
  CAIRN_ASSIGN_OR_RETURN(Endpoint e, ParseEndpoint(config.endpoint));
  if (config.bucket.empty()) return absl::InvalidArgumentError("S3 bucket is empty");
  if (config.part_size == 0) {
    return absl::InvalidArgumentError("S3 part size is zero");
  }
  std::unique_ptr<S3Client> c(new S3Client(std::move(config)));
  std::string host = c->config_.path_style ? e.host : absl::StrCat(c->config_.bucket, ".", e.host);
  c->pool_->base_url =
      absl::StrCat(e.https ? "https://" : "http://", host, ":", e.port);
  c->pool_->timeout = c->config_.request_timeout;
  return c;
}

std::string S3Client::Host() const {
  Endpoint e = ParseEndpoint(config_.endpoint).value();
  std::string host = config_.path_style ? e.host : absl::StrCat(config_.bucket, ".", e.host);
  return e.default_port ? host : absl::StrCat(host, ":", e.port);
}

std::string S3Client::ObjectPath(std::string_view key_arg) const {
  const absl::string_view key = Sv(key_arg);
  if (config_.path_style) return absl::StrCat("/", config_.bucket, "/", key);
  return absl::StrCat("/", key);
}

bool S3Client::IsPreconditionFailed(const absl::Status& status) {
  return absl::IsFailedPrecondition(status) &&
         absl::StrContains(status.message(), "PreconditionFailed");
}

namespace {

// The one place an S3 answer becomes a Status.
absl::Status S3Error(absl::string_view method, absl::string_view what, int status,
                     absl::string_view body) {
  std::string code = XmlText(body, "Code");
  std::string message = XmlText(body, "Message");
  if (code.empty()) {
    switch (status) {
      case 404: code = absl::EndsWith(what, "/") ? "NoSuchBucket" : "NoSuchKey"; break;
      case 412: code = "PreconditionFailed"; break;
      case 403: code = "AccessDenied"; break;
      default: code = absl::StrCat("HTTP ", status);
    }
  }
  std::string text = absl::StrCat("S3 ", method, " ", what, ": ", status, " ", code,
                                  message.empty() ? "" : ": ", message);
  if (RetryableHttp(status, code)) return absl::UnavailableError(text);
  if (code == "NoSuchBucket") return absl::FailedPreconditionError(text);
  if (code == "ExpiredToken" || status == 401) return absl::UnauthenticatedError(text);
  switch (status) {
    case 400: return absl::InvalidArgumentError(text);
    case 403: return absl::PermissionDeniedError(text);
    case 404: return absl::NotFoundError(text);
    case 409: return absl::AbortedError(text);
    case 412: return absl::FailedPreconditionError(text);
    case 416: return absl::OutOfRangeError(text);
    case 501: return absl::UnimplementedError(text);
    default: return absl::UnknownError(text);
  }
}

}  // namespace

absl::StatusOr<S3Client::Response> S3Client::Send(Request r) {
  const std::string raw_path =
      r.key.empty() ? (config_.path_style ? absl::StrCat("/", config_.bucket) : "/")
                    : ObjectPath(r.key);
  const std::string what = absl::StrCat(config_.bucket, "/", r.key);
  const std::string payload_hash = Sha256Hex(std::string_view(r.body.data(), r.body.size()));
  std::string path = SigV4Encode(raw_path, true);
  if (!r.query.empty()) {
    std::vector<std::string> parts;
    for (const auto& [k, v] : r.query) {
      parts.push_back(absl::StrCat(SigV4Encode(k, false), "=", SigV4Encode(v, false)));
    }
    absl::StrAppend(&path, "?", absl::StrJoin(parts, "&"));
  }
  absl::Duration backoff = config_.initial_backoff;
  thread_local std::mt19937_64 rng(std::random_device{}());
  absl::Status last;
  for (int attempt = 1;; ++attempt) {
    r.headers.erase(std::remove_if(r.headers.begin(), r.headers.end(),
                                   [](const auto& h) { return h.first == "x-amz-content-sha256"; }),
                    r.headers.end());
    r.headers.emplace_back("x-amz-content-sha256", payload_hash);
    SigV4Request sr{r.method, Host(), raw_path, r.query, r.headers, payload_hash};
    SigV4Signed signed_req =
        SignV4(sr, config_.credentials, {config_.region, "s3"}, absl::Now());
    httplib::Request req;
    req.method = r.method;
    req.path = path;
    req.headers.emplace("Host", Host());
    for (const auto& h : r.headers) req.headers.emplace(h.first, h.second);
    for (const auto& h : signed_req.headers) req.headers.emplace(h.first, h.second);
    req.body = std::string(r.body);
    if (r.method == "PUT" || r.method == "POST") {
      req.headers.emplace("Content-Type", "application/octet-stream");
    }

    std::unique_ptr<httplib::Client> client = pool_->Acquire();
    httplib::Response res;
    httplib::Error err = httplib::Error::Success;
    bool sent = client->send(req, res, err);
    if (!sent) {
      last = absl::UnavailableError(absl::StrCat("S3 ", r.method, " ", what, " at ",
                                                 config_.endpoint, ": ", httplib::to_string(err)));
    } else {
      pool_->Release(std::move(client));
      if (res.status >= 200 && res.status < 300) {
        // CompleteMultipartUpload and CopyObject can fail after a 200.
        if ((r.method == "POST" || r.method == "PUT") &&
            absl::StartsWith(absl::StripLeadingAsciiWhitespace(res.body), "<?xml") &&
            absl::StrContains(res.body, "<Error>")) {
          std::string code = XmlText(res.body, "Code");
          last = S3Error(r.method, what, RetryableHttp(500, code) ? 500 : 400, res.body);
          if (!absl::IsUnavailable(last)) return last;
        } else {
          return Response{res.status, std::move(res.body), std::move(res.headers)};
        }
      } else {
        last = S3Error(r.method, what, res.status, res.body);
        if (!absl::IsUnavailable(last)) return last;
      }
    }
    if (attempt >= config_.max_attempts) return last;
    const double jitter = std::uniform_real_distribution<double>(0.5, 1.0)(rng);
    absl::SleepFor(backoff * jitter);
    backoff = std::min(backoff * 2, absl::Seconds(5));
  }
}

absl::Status S3Client::PutObject(std::string_view key_arg, std::string_view body_arg, bool if_none_match) {
  const absl::string_view key = Sv(key_arg);
  const absl::string_view body = Sv(body_arg);
  Request r{"PUT", std::string(key), {}, {}, body};
  if (if_none_match) r.headers.emplace_back("If-None-Match", "*");
  return Send(std::move(r)).status();
}

absl::Status S3Client::PutObjectMultipart(std::string_view key_arg, std::string_view body_arg) {
  const absl::string_view key = Sv(key_arg);
  const absl::string_view body = Sv(body_arg);
  CAIRN_ASSIGN_OR_RETURN(Response created,
                         Send({"POST", std::string(key), {{"uploads", ""}}, {}, {}}));
  const std::string upload_id = XmlText(created.body, "UploadId");
  if (upload_id.empty()) {
    return absl::UnknownError(
        absl::StrCat("S3 multipart upload of ", key, ": no UploadId in the answer"));
  }
  auto abort = [&] {
    Send({"DELETE", std::string(key), {{"uploadId", upload_id}}, {}, {}}).status().IgnoreError();
  };
  std::string complete = "<CompleteMultipartUpload>";
  int part = 1;
  for (uint64_t off = 0; off < body.size() || off == 0; off += config_.part_size, ++part) {
    absl::string_view piece = body.substr(off, config_.part_size);
    absl::StatusOr<Response> up = Send({"PUT",
                                        std::string(key),
                                        {{"partNumber", absl::StrCat(part)}, {"uploadId", upload_id}},
                                        {},
                                        piece});
    if (!up.ok()) {
      abort();
      return up.status();
    }
    auto etag = up->headers.find("ETag");
    if (etag == up->headers.end()) {
      abort();
      return absl::UnknownError(absl::StrCat("S3 upload of part ", part, " of ", key,
                                             ": no ETag in the answer"));
    }
    absl::StrAppend(&complete, "<Part><PartNumber>", part, "</PartNumber><ETag>",
                    EscapeMarkup(etag->second), "</ETag></Part>");
    if (body.empty()) break;
  }
  absl::StrAppend(&complete, "</CompleteMultipartUpload>");
  absl::StatusOr<Response> done =
      Send({"POST", std::string(key), {{"uploadId", upload_id}}, {}, complete});
  if (!done.ok()) {
    // A retried Complete whose first attempt succeeded finds no upload.
    if (absl::IsNotFound(done.status()) && HeadObject(key_arg).ok()) return absl::OkStatus();
    abort();
    return done.status();
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> S3Client::GetObject(std::string_view key_arg) {
  const absl::string_view key = Sv(key_arg);
  CAIRN_ASSIGN_OR_RETURN(Response r, Send({"GET", std::string(key), {}, {}, {}}));
  return std::move(r.body);
}

absl::StatusOr<S3Client::Range> S3Client::GetObjectRange(std::string_view key_arg, uint64_t offset,
                                                         uint64_t length) {
  const absl::string_view key = Sv(key_arg);
  std::string range = length >= UINT64_MAX - offset
                          ? absl::StrCat("bytes=", offset, "-")
                          : absl::StrCat("bytes=", offset, "-", offset + length - 1);
  CAIRN_ASSIGN_OR_RETURN(Response r, Send({"GET", std::string(key), {}, {{"Range", range}}, {}}));
  Range out;
  if (r.status == 206) {
    // Content-Range: bytes FIRST-LAST/TOTAL
    auto cr = r.headers.find("Content-Range");
    size_t slash = cr == r.headers.end() ? std::string::npos : cr->second.rfind('/');
    if (slash == std::string::npos ||
        !absl::SimpleAtoi(absl::string_view(cr->second).substr(slash + 1), &out.total_size)) {
      return absl::UnknownError(
          absl::StrCat("S3 GET ", config_.bucket, "/", key, ": 206 without a usable Content-Range"));
    }
    out.data = std::move(r.body);
    return out;
  }
  // A server that ignores Range sends it all.
  out.total_size = r.body.size();
  if (offset >= r.body.size()) {
    return absl::OutOfRangeError(absl::StrCat("S3 GET ", config_.bucket, "/", key, ": offset ",
                                              offset, " is past the end (", r.body.size(), ")"));
  }
  out.data = r.body.substr(offset, length);
  return out;
}

absl::StatusOr<S3Client::ObjectInfo> S3Client::HeadObject(std::string_view key_arg) {
  const absl::string_view key = Sv(key_arg);
  CAIRN_ASSIGN_OR_RETURN(Response r, Send({"HEAD", std::string(key), {}, {}, {}}));
  ObjectInfo info;
  info.key = std::string(key);
  auto len = r.headers.find("Content-Length");
  if (len != r.headers.end()) (void)absl::SimpleAtoi(len->second, &info.size);
  auto lm = r.headers.find("Last-Modified");
  std::string err;
  if (lm == r.headers.end() ||
      !absl::ParseTime("%a, %d %b %Y %H:%M:%S GMT", lm->second, &info.last_modified, &err)) {
    info.last_modified = absl::InfiniteFuture();  // unknown: nothing looks newer
  }
  return info;
}

absl::Status S3Client::DeleteObject(std::string_view key_arg) {
  const absl::string_view key = Sv(key_arg);
  absl::Status s = Send({"DELETE", std::string(key), {}, {}, {}}).status();
  return absl::IsNotFound(s) ? absl::OkStatus() : s;
}

absl::StatusOr<absl::Time> S3Client::CopyObject(std::string_view from_key_arg,
                                                std::string_view to_key_arg) {
  const absl::string_view from_key = Sv(from_key_arg);
  const absl::string_view to_key = Sv(to_key_arg);
  Request r{"PUT", std::string(to_key), {}, {}, {}};
  r.headers.emplace_back("x-amz-copy-source",
                         SigV4Encode(absl::StrCat("/", config_.bucket, "/", from_key), true));
  // S3 refuses a copy onto itself unless something changes: replacing the
  // (empty) metadata is that change, and it sets a new Last-Modified.
  if (from_key == to_key) r.headers.emplace_back("x-amz-metadata-directive", "REPLACE");
  CAIRN_ASSIGN_OR_RETURN(Response res, Send(std::move(r)));
  absl::Time last_modified;
  std::string err;
  if (!absl::ParseTime("%Y-%m-%dT%H:%M:%E*SZ", XmlText(res.body, "LastModified"), &last_modified,
                       &err)) {
    return absl::InfinitePast();  // unknown: the caller sees no refresh
  }
  return last_modified;
}

absl::Status S3Client::ListObjects(std::string_view prefix_arg, std::string_view delimiter_arg,
                                   const std::function<void(const ObjectInfo&)>& on_object,
                                   const std::function<void(std::string_view)>& on_prefix) {
  const absl::string_view prefix = Sv(prefix_arg), delimiter = Sv(delimiter_arg);
  std::string token;
  while (true) {
    Request r{"GET", "", {{"list-type", "2"}, {"prefix", std::string(prefix)}}, {}, {}};
    if (!delimiter.empty()) r.query.emplace_back("delimiter", std::string(delimiter));
    if (!token.empty()) r.query.emplace_back("continuation-token", token);
    CAIRN_ASSIGN_OR_RETURN(Response page, Send(std::move(r)));
    for (absl::string_view c : XmlElements(page.body, "Contents")) {
      ObjectInfo info;
      info.key = XmlText(c, "Key");
      if (!absl::SimpleAtoi(XmlText(c, "Size"), &info.size)) info.size = 0;
      std::string err;
      if (!absl::ParseTime("%Y-%m-%dT%H:%M:%E*SZ", XmlText(c, "LastModified"),
                           &info.last_modified, &err)) {
        return absl::UnknownError(absl::StrCat("S3 list of ", config_.bucket, "/", prefix,
                                               ": bad LastModified for ", info.key, ": ", err));
      }
      if (on_object) on_object(info);
    }
    if (on_prefix) {
      for (absl::string_view p : XmlElements(page.body, "CommonPrefixes")) {
        const std::string prefix_text = XmlText(p, "Prefix");
        on_prefix(prefix_text);
      }
    }
    if (XmlText(page.body, "IsTruncated") != "true") return absl::OkStatus();
    token = XmlText(page.body, "NextContinuationToken");
    if (token.empty()) {
      return absl::UnknownError(absl::StrCat("S3 list of ", config_.bucket, "/", prefix,
                                             ": truncated page without a continuation token"));
    }
  }
}

absl::Status S3Client::HeadBucket() { return Send({"HEAD", "", {}, {}, {}}).status(); }

absl::Status S3Client::CreateBucket() {
  std::string body;
  if (config_.region != "us-east-1") {
    body = absl::StrCat(
        "<CreateBucketConfiguration><LocationConstraint>", EscapeMarkup(config_.region),
        "</LocationConstraint></CreateBucketConfiguration>");
  }
  absl::Status s = Send({"PUT", "", {}, {}, body}).status();
  if (absl::IsAborted(s) && absl::StrContains(s.message(), "BucketAlreadyOwnedByYou")) {
    return absl::OkStatus();
  }
  return s;
}

std::string S3Client::PresignGet(std::string_view key, absl::Duration expires) const {
  const std::string raw_path = ObjectPath(key);
  SigV4Request r{"GET", Host(), raw_path, {}, {}, ""};
  std::string query = PresignV4(r, config_.credentials, {config_.region, "s3"}, absl::Now(), expires);
  Endpoint e = ParseEndpoint(config_.endpoint).value();
  return absl::StrCat(e.https ? "https://" : "http://", Host(), SigV4Encode(raw_path, true), "?",
                      query);
}

}  // namespace cairn
