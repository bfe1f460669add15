#include "operator/web_ui.h"

#include <httplib.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <algorithm>
#include <future>
#include <memory>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "core/async.h"
#include "core/crypto.h"
#include "core/files.h"
#include "core/log.h"
#include "core/markup.h"
#include "core/path.h"
#include "core/size.h"
#include "core/status.h"
#include "core/tree.h"
#include "operator/tar.h"

namespace cairn::operator_ {
namespace {

constexpr char kCookieName[] = "cairn_ui";
// A preview shows at most this much of a text file.
constexpr uint64_t kPreviewBytes = 64 << 10;

std::string HumanTime(int64_t unix_ns) {
  if (unix_ns == 0) return "-";
  return absl::FormatTime("%Y-%m-%d %H:%M", absl::FromUnixNanos(unix_ns), absl::UTCTimeZone());
}

std::string HttpDate(int64_t unix_ns) {
  return absl::FormatTime("%a, %d %b %Y %H:%M:%S GMT", absl::FromUnixSeconds(unix_ns / 1000000000),
                          absl::UTCTimeZone());
}

// Status -> HTTP status: the one conversion at this edge.
int HttpStatusFor(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kOutOfRange:
      return 400;
    case absl::StatusCode::kNotFound:
      return 404;
    case absl::StatusCode::kUnauthenticated:
      return 401;
    case absl::StatusCode::kPermissionDenied:
      return 403;
    case absl::StatusCode::kUnavailable:
      return 503;
    default:
      return 500;
  }
}

void Redirect(httplib::Response& res, const std::string& location) {
  res.status = 303;
  res.set_header("Location", location);
}

void SetPageHeaders(httplib::Response& res) {
  res.set_header("Content-Security-Policy",
                 "default-src 'self'; img-src 'self'; script-src 'self'; style-src 'self'; "
                 "frame-ancestors 'none'; form-action 'self'");
  res.set_header("X-Content-Type-Options", "nosniff");
  res.set_header("Referrer-Policy", "no-referrer");
  res.set_header("Cache-Control", "no-store");
}

bool IsImageType(absl::string_view type) {
  return type == "image/png" || type == "image/jpeg" || type == "image/gif" ||
         type == "image/webp" || type == "image/bmp";
}

// Types a browser may show inline from our origin: no active content.
bool IsInlineSafe(absl::string_view type_in) {
  const absl::string_view type = type_in;
  return IsImageType(type) || absl::StartsWith(type, "text/plain") ||
         absl::StartsWith(type, "text/csv") || type == "application/json";
}

// The start of a file as text, or nullopt if it does not look like text
// (a NUL byte, or bytes that are not UTF-8 before the cut).
std::optional<std::string> AsText(std::string data) {
  if (data.find('\0') != std::string::npos) return std::nullopt;
  size_t i = 0;
  while (i < data.size()) {
    const unsigned char c = data[i];
    const size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (n == 0) return std::nullopt;
    if (i + n > data.size()) break;  // a character cut by the preview's end
    for (size_t k = 1; k < n; ++k) {
      if ((static_cast<unsigned char>(data[i + k]) >> 6) != 2) return std::nullopt;
    }
    i += n;
  }
  data.resize(i);
  return data;
}

std::string Basename(absl::string_view path) {
  const size_t slash = path.rfind('/');
  return std::string(slash == absl::string_view::npos ? path : path.substr(slash + 1));
}

// Content-Disposition with an ASCII fallback and the UTF-8 name (RFC 6266).
std::string Disposition(bool inline_view, absl::string_view name) {
  std::string ascii;
  for (char c : name) {
    const unsigned char u = c;
    ascii += (u < 0x20 || u >= 0x7f || c == '"' || c == '\\') ? '_' : c;
  }
  return absl::StrCat(inline_view ? "inline" : "attachment", "; filename=\"", ascii,
                      "\"; filename*=UTF-8''", UrlEscape(name, false));
}

// A strong validator for a file's content: its chunk addresses (or inline
// bytes) and size. Equal content in any snapshot has the same ETag.
std::string ETagFor(const objects::Entry& file) {
  std::string identity = absl::StrCat(file.size(), ":");
  for (const std::string& chunk : file.chunks()) identity += chunk;
  identity += file.inline_data();
  return absl::StrCat("\"", Sha256(identity).ToHex().substr(0, 32), "\"");
}

// Sends a file's bytes [begin, end) a chunk-aligned block at a time, the
// next block read while the current one is written. One per response; the
// provider's calls are sequential.
class FileStream {
 public:
  FileStream(std::shared_ptr<ObjectStore> objects, objects::Entry file, uint64_t end)
      : objects_(std::move(objects)), file_(std::move(file)), end_(end) {}
  ~FileStream() {
    if (next_.valid()) next_.wait();
  }

  // Writes the block at `offset`; false if reading failed (logged) or the
  // client went away.
  bool WriteBlock(uint64_t offset, const std::function<bool(const char*, size_t)>& write) {
    absl::StatusOr<std::string> data;
    if (next_.valid() && next_at_ == offset) {
      data = next_.get();
    } else {
      if (next_.valid()) next_.wait();
      data = Fetch(objects_, file_, offset, BlockEnd(offset));
    }
    if (!data.ok() || data->empty()) {
      CAIRN_LOG_WARNING("ui: reading %s of volume %s at %d: %s", file_.name(),
                        objects_->volume_id(), offset,
                        data.ok() ? "no data before the end" : data.status().ToString());
      return false;
    }
    const uint64_t following = offset + data->size();
    if (following < end_) {
      next_at_ = following;
      next_ = RunAsync(&FileStream::Fetch, objects_, file_, following, BlockEnd(following));
    }
    return write(data->data(), data->size());
  }

 private:
  uint64_t BlockEnd(uint64_t at) const {
    return std::min<uint64_t>(end_, (at / kChunkSize + 1) * kChunkSize);
  }
  static absl::StatusOr<std::string> Fetch(const std::shared_ptr<ObjectStore>& objects,
                                           const objects::Entry& file, uint64_t at,
                                           uint64_t end) {
    return ReadFileRange(*objects, file, at, end - at);
  }

  const std::shared_ptr<ObjectStore> objects_;
  const objects::Entry file_;
  const uint64_t end_;
  std::future<absl::StatusOr<std::string>> next_;
  uint64_t next_at_ = 0;
};

// Writes the tar members of `dir` (named `name` in the archive) and below.
// False once writing fails (the client went away) or a read fails (logged):
// the response is then cut short, which the client sees as an error.
bool WriteTarTree(const std::shared_ptr<ObjectStore>& objects, const objects::Entry& dir,
                  const std::string& name,
                  const std::function<bool(const char*, size_t)>& write) {
  auto put = [&](const std::string& bytes) { return write(bytes.data(), bytes.size()); };
  TarMember member{name, TarType::kDirectory, dir.mode() ? dir.mode() : 0755, 0,
                   dir.mtime_ns() / 1000000000, ""};
  if (!put(TarHeader(member))) return false;
  absl::StatusOr<Digest> tree = Digest::FromRaw(dir.tree());
  absl::StatusOr<std::shared_ptr<const objects::Directory>> listing =
      tree.ok() ? objects->GetDirectory(*tree)
                : absl::StatusOr<std::shared_ptr<const objects::Directory>>(tree.status());
  if (!listing.ok()) {
    CAIRN_LOG_WARNING("ui: archive of %s: %s", name, listing.status().ToString());
    return false;
  }
  for (const objects::Entry& e : (*listing)->entries()) {
    const std::string path = absl::StrCat(name, "/", e.name());
    const int64_t mtime_s = e.mtime_ns() / 1000000000;
    switch (e.type()) {
      case objects::DIRECTORY:
        if (!WriteTarTree(objects, e, path, write)) return false;
        break;
      case objects::SYMLINK:
        if (!put(TarHeader({path, TarType::kSymlink, e.mode() ? e.mode() : 0777, 0, mtime_s,
                            e.symlink_target()}))) {
          return false;
        }
        break;
      case objects::FILE: {
        if (!put(TarHeader({path, TarType::kFile, e.mode(), e.size(), mtime_s, ""}))) return false;
        FileStream stream(objects, e, e.size());
        for (uint64_t at = 0; at < e.size();) {
          uint64_t written = 0;
          if (!stream.WriteBlock(at, [&](const char* p, size_t n) {
                written = n;
                return write(p, n);
              })) {
            return false;
          }
          at += written;
        }
        if (!put(TarPadding(e.size()))) return false;
        break;
      }
      default:  // FIFOs, sockets, devices: entries without content, as `get`
        break;
    }
  }
  return true;
}

constexpr char kStyle[] = R"css(
body { font: 14px/1.45 system-ui, sans-serif; margin: 0; color: #1d2330; background: #f6f7f9; }
header { background: #1d2330; color: #fff; padding: 10px 24px; display: flex; gap: 16px;
  align-items: center; }
header a { color: #fff; text-decoration: none; font-weight: 600; }
header form { margin-left: auto; }
main { padding: 16px 24px; max-width: 1200px; }
nav.crumbs { margin: 4px 0 12px; font-size: 16px; }
nav.crumbs a { color: #2456b3; text-decoration: none; }
table { border-collapse: collapse; width: 100%; background: #fff; }
th, td { text-align: left; padding: 6px 10px; border-bottom: 1px solid #e3e6eb;
  white-space: nowrap; }
th { background: #eef0f4; font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
a { color: #2456b3; }
.muted { color: #6b7280; }
.error { background: #fde8e8; border: 1px solid #f5b5b5; padding: 10px 14px; }
pre.preview { background: #fff; border: 1px solid #e3e6eb; padding: 12px; overflow: auto;
  max-height: 70vh; }
img.preview { max-width: 100%; max-height: 70vh; border: 1px solid #e3e6eb; background: #fff; }
.bar { display: flex; gap: 12px; align-items: center; margin-bottom: 10px; }
.button { display: inline-block; padding: 4px 12px; border: 1px solid #2456b3; border-radius: 4px;
  text-decoration: none; }
input[type=search] { padding: 4px 8px; min-width: 240px; }
form.login { background: #fff; padding: 24px; max-width: 420px; border: 1px solid #e3e6eb; }
form.login input { width: 100%; padding: 6px; margin: 8px 0 12px; box-sizing: border-box; }
)css";

// Filters the rows of a listing as one types; everything works without it.
constexpr char kScript[] = R"js(
document.addEventListener('DOMContentLoaded', () => {
  const box = document.getElementById('filter');
  if (!box) return;
  const rows = Array.from(document.querySelectorAll('table.listing tbody tr'));
  box.addEventListener('input', () => {
    const q = box.value.toLowerCase();
    for (const r of rows) r.hidden = q !== '' && !r.dataset.name.toLowerCase().includes(q);
  });
});
)js";

}  // namespace

// ---- Pure parts ----

absl::StatusOr<std::optional<ByteRange>> ParseByteRange(absl::string_view header_in,
                                                        uint64_t size) {
  absl::string_view header = absl::StripAsciiWhitespace(header_in);
  if (header.empty()) return std::nullopt;
  if (!absl::ConsumePrefix(&header, "bytes=")) return std::nullopt;
  if (header.find(',') != absl::string_view::npos) return std::nullopt;
  const size_t dash = header.find('-');
  if (dash == absl::string_view::npos) {
    return absl::InvalidArgumentError(absl::StrCat("bad range 'bytes=", header, "'"));
  }
  absl::string_view first = absl::StripAsciiWhitespace(header.substr(0, dash));
  absl::string_view last = absl::StripAsciiWhitespace(header.substr(dash + 1));
  uint64_t a = 0, b = 0;
  if (first.empty()) {  // suffix: the last N bytes
    if (!absl::SimpleAtoi(last, &b)) {
      return absl::InvalidArgumentError(absl::StrCat("bad range 'bytes=", header, "'"));
    }
    if (b == 0 || size == 0) return absl::OutOfRangeError("empty suffix range");
    const uint64_t n = std::min(b, size);
    return ByteRange{size - n, n};
  }
  if (!absl::SimpleAtoi(first, &a) || (!last.empty() && !absl::SimpleAtoi(last, &b)) ||
      (!last.empty() && b < a)) {
    return absl::InvalidArgumentError(absl::StrCat("bad range 'bytes=", header, "'"));
  }
  if (a >= size) {
    return absl::OutOfRangeError(absl::StrCat("range starts at ", a, ", the file has ", size,
                                              " bytes"));
  }
  const uint64_t end = last.empty() ? size : std::min(size, b + 1);
  return ByteRange{a, end - a};
}

std::string SessionCookieValue(absl::string_view token, int64_t expiry_unix) {
  const std::string message = absl::StrCat("cairn-ui-session:", expiry_unix);
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int mac_len = 0;
  HMAC(EVP_sha256(), token.data(), static_cast<int>(token.size()),
       reinterpret_cast<const unsigned char*>(message.data()), message.size(), mac, &mac_len);
  absl::StatusOr<Digest> digest =
      Digest::FromRaw(std::string_view(reinterpret_cast<const char*>(mac), mac_len));
  return absl::StrCat(expiry_unix, ".", digest.ok() ? digest->ToHex() : "");
}

bool ValidSessionCookie(absl::string_view token, absl::string_view value, int64_t now_unix) {
  const size_t dot = value.find('.');
  if (dot == absl::string_view::npos) return false;
  int64_t expiry = 0;
  if (!absl::SimpleAtoi(value.substr(0, dot), &expiry) || expiry <= now_unix) return false;
  return SameSecret(SessionCookieValue(token, expiry),
                    std::string_view(value.data(), value.size()));
}

std::string UrlEscape(absl::string_view s, bool keep_slash) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (char c : s) {
    const unsigned char u = c;
    if (absl::ascii_isalnum(u) || c == '-' || c == '.' || c == '_' || c == '~' ||
        (keep_slash && c == '/')) {
      out += c;
    } else {
      out += '%';
      out += kHex[u >> 4];
      out += kHex[u & 15];
    }
  }
  return out;
}

std::string ContentTypeFor(absl::string_view name) {
  static const std::pair<const char*, const char*> kTypes[] = {
      {"txt", "text/plain; charset=utf-8"},   {"log", "text/plain; charset=utf-8"},
      {"md", "text/plain; charset=utf-8"},    {"py", "text/plain; charset=utf-8"},
      {"sh", "text/plain; charset=utf-8"},    {"yaml", "text/plain; charset=utf-8"},
      {"yml", "text/plain; charset=utf-8"},   {"toml", "text/plain; charset=utf-8"},
      {"ini", "text/plain; charset=utf-8"},   {"cfg", "text/plain; charset=utf-8"},
      {"c", "text/plain; charset=utf-8"},     {"cc", "text/plain; charset=utf-8"},
      {"h", "text/plain; charset=utf-8"},     {"go", "text/plain; charset=utf-8"},
      {"rs", "text/plain; charset=utf-8"},    {"csv", "text/csv; charset=utf-8"},
      {"tsv", "text/tab-separated-values; charset=utf-8"},
      {"json", "application/json"},           {"jsonl", "application/jsonl"},
      {"html", "text/html; charset=utf-8"},   {"htm", "text/html; charset=utf-8"},
      {"css", "text/css"},                    {"js", "text/javascript"},
      {"xml", "application/xml"},             {"svg", "image/svg+xml"},
      {"png", "image/png"},                   {"jpg", "image/jpeg"},
      {"jpeg", "image/jpeg"},                 {"gif", "image/gif"},
      {"webp", "image/webp"},                 {"bmp", "image/bmp"},
      {"pdf", "application/pdf"},             {"zip", "application/zip"},
      {"gz", "application/gzip"},             {"tar", "application/x-tar"},
      {"zst", "application/zstd"},            {"mp4", "video/mp4"},
      {"webm", "video/webm"},                 {"mp3", "audio/mpeg"},
      {"wav", "audio/wav"},                   {"parquet", "application/vnd.apache.parquet"},
  };
  const size_t dot = name.rfind('.');
  if (dot == absl::string_view::npos) return "application/octet-stream";
  const std::string ext = absl::AsciiStrToLower(std::string(name.substr(dot + 1)));
  for (const auto& [e, type] : kTypes) {
    if (ext == e) return type;
  }
  return "application/octet-stream";
}

// ---- The handlers ----

struct WebUi::Target {
  std::string ns;
  VolumeRecord volume;
  SnapshotRecord snapshot;
  std::shared_ptr<ObjectStore> objects;
  std::string path;  // normalised; "" is the root
  objects::Entry entry;

  // The URL of `path` in this volume and snapshot under /ui/KIND/.
  std::string Url(absl::string_view kind, absl::string_view at_path, bool directory) const {
    return absl::StrCat("/ui/", kind, "/", UrlEscape(ns, false), "/", UrlEscape(volume.name, false),
                        at_path.empty() ? "" : "/", UrlEscape(at_path, true),
                        directory && !at_path.empty() ? "/" : "", "?at=", snapshot.seq);
  }
};

WebUi::WebUi(Engine* engine, Options options) : engine_(engine), options_(std::move(options)) {}

bool WebUi::Authorized(const httplib::Request& req) const {
  if (options_.token.empty()) return true;
  if (SameSecret(req.get_header_value("Authorization"), absl::StrCat("Bearer ", options_.token))) {
    return true;
  }
  const int64_t now = absl::ToUnixSeconds(absl::Now());
  for (size_t i = 0, n = req.get_header_value_count("Cookie"); i < n; ++i) {
    const std::string header = req.get_header_value("Cookie", i);
    for (absl::string_view cookie : absl::StrSplit(header, ';')) {
      cookie = absl::StripAsciiWhitespace(cookie);
      if (absl::ConsumePrefix(&cookie, kCookieName) && absl::ConsumePrefix(&cookie, "=") &&
          ValidSessionCookie(options_.token, cookie, now)) {
        return true;
      }
    }
  }
  return false;
}

std::string WebUi::Page(absl::string_view title, absl::string_view body, bool signed_in) const {
  const std::string logout =
      options_.token.empty() || !signed_in
          ? ""
          : "<form method=\"post\" action=\"/ui/logout\"><button type=\"submit\">Log "
            "out</button></form>";
  return absl::StrCat(
      "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
      "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
      "<title>",
      EscapeMarkup(title),
      " · Cairn</title><link rel=\"stylesheet\" href=\"/ui/style.css\">"
      "<script src=\"/ui/app.js\" defer></script></head><body><header>"
      "<a href=\"/ui/\">Cairn volumes</a>",
      logout, "</header><main>", body, "</main></body></html>\n");
}

absl::StatusOr<WebUi::Target> WebUi::Resolve(const httplib::Request& req) const {
  Target t;
  t.ns = req.matches[1].str();
  const std::string name = req.matches[2].str();
  CAIRN_RETURN_IF_ERROR(ValidateNamespace(t.ns));
  CAIRN_RETURN_IF_ERROR(ValidateVolumeName(name));
  CAIRN_ASSIGN_OR_RETURN(t.path, NormalizePath(req.matches.size() > 3 ? req.matches[3].str() : ""));
  CAIRN_ASSIGN_OR_RETURN(t.volume, engine_->GetVolume(NamespaceOrDefault(t.ns), name));
  if (req.has_param("at")) {
    uint64_t seq = 0;
    if (!absl::SimpleAtoi(req.get_param_value("at"), &seq)) {
      return absl::InvalidArgumentError(absl::StrCat("at='", req.get_param_value("at"),
                                                     "' is not a snapshot number"));
    }
    absl::StatusOr<SnapshotRecord> snapshot = engine_->meta()->GetSnapshot(t.volume.id, seq);
    if (absl::IsNotFound(snapshot.status())) {
      return absl::NotFoundError(
          absl::StrCat("volume ", name, " has no snapshot ", seq));
    }
    CAIRN_ASSIGN_OR_RETURN(t.snapshot, std::move(snapshot));
  } else {
    CAIRN_ASSIGN_OR_RETURN(t.snapshot, engine_->Head(t.volume.id));
  }
  CAIRN_ASSIGN_OR_RETURN(std::unique_ptr<ObjectStore> objects, engine_->OpenObjects(t.volume));
  t.objects = std::move(objects);
  CAIRN_ASSIGN_OR_RETURN(t.entry, LookupPath(*t.objects, t.snapshot.root, t.path));
  return t;
}

void WebUi::Register(httplib::Server& http) {
  // Every route but the login page and the static files: authorised, and
  // errors as a page with the right status.
  auto guarded = [this](absl::Status (WebUi::*handler)(const httplib::Request&,
                                                       httplib::Response&) const) {
    return [this, handler](const httplib::Request& req, httplib::Response& res) {
      if (!Authorized(req)) return Redirect(res, "/ui/login");
      absl::Status status = (this->*handler)(req, res);
      if (status.ok()) return;
      SetPageHeaders(res);
      res.status = HttpStatusFor(status);
      res.set_content(
          Page("Error", absl::StrCat("<p class=\"error\">", EscapeMarkup(status.message()),
                                     "</p><p><a href=\"/ui/\">Back to the volumes</a></p>")),
          "text/html; charset=utf-8");
    };
  };
  http.Get("/ui", [](const httplib::Request&, httplib::Response& res) { Redirect(res, "/ui/"); });
  http.Get("/ui/", [this](const httplib::Request& req, httplib::Response& res) {
    if (!Authorized(req)) return Redirect(res, "/ui/login");
    const std::string ns = req.has_param("namespace") && !req.get_param_value("namespace").empty()
                               ? req.get_param_value("namespace")
                               : "default";
    Redirect(res, absl::StrCat("/ui/n/", UrlEscape(ns, false), "/"));
  });
  http.Get("/ui/style.css", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(kStyle, "text/css; charset=utf-8");
  });
  http.Get("/ui/app.js", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(kScript, "text/javascript; charset=utf-8");
  });
  http.Get("/ui/login", [this](const httplib::Request& req, httplib::Response& res) {
    if (Authorized(req)) return Redirect(res, "/ui/");
    Login(req, res);
  });
  http.Post("/ui/login", [this](const httplib::Request& req, httplib::Response& res) {
    Login(req, res);
  });
  http.Post("/ui/logout", [](const httplib::Request&, httplib::Response& res) {
    res.set_header("Set-Cookie", absl::StrCat(kCookieName,
                                              "=; Path=/ui; Max-Age=0; HttpOnly; SameSite=Strict"));
    Redirect(res, "/ui/login");
  });
  http.Get(R"(/ui/n/([^/]+)/?)", guarded(&WebUi::VolumeList));
  http.Get(R"(/ui/n/([^/]+)/([^/]+)(/.*)?)", guarded(&WebUi::Browse));
  http.Get(R"(/ui/raw/([^/]+)/([^/]+)(/.*)?)", guarded(&WebUi::Raw));
  http.Get(R"(/ui/tar/([^/]+)/([^/]+)(/.*)?)", guarded(&WebUi::Tar));
}

void WebUi::Login(const httplib::Request& req, httplib::Response& res) const {
  SetPageHeaders(res);
  std::string message;
  if (req.method == "POST") {
    httplib::Params form;
    httplib::detail::parse_query_text(req.body, form);
    auto it = form.find("token");
    const std::string given = it == form.end() ? "" : it->second;
    if (SameSecret(given, options_.token)) {
      const int64_t expiry = absl::ToUnixSeconds(absl::Now() + options_.session);
      // Secure only behind a TLS proxy that says so: on plain HTTP a
      // browser would drop a Secure cookie and the login would loop.
      const bool https = req.get_header_value("X-Forwarded-Proto") == "https";
      res.set_header("Set-Cookie",
                     absl::StrCat(kCookieName, "=", SessionCookieValue(options_.token, expiry),
                                  "; Path=/ui; Max-Age=",
                                  absl::ToInt64Seconds(options_.session),
                                  "; HttpOnly; SameSite=Strict", https ? "; Secure" : ""));
      return Redirect(res, "/ui/");
    }
    res.status = 401;
    message = given.empty() ? "Enter the token." : "That token is not valid.";
  }
  res.set_content(
      Page("Log in",
           absl::StrCat(
               "<h1>Log in</h1><form class=\"login\" method=\"post\" action=\"/ui/login\">",
               message.empty() ? "" : absl::StrCat("<p class=\"error\" id=\"login-error\">",
                                                   EscapeMarkup(message), "</p>"),
               "<label for=\"token\">The control plane's token (what <code>cairn</code> reads "
               "from <code>--token-file</code>)</label>"
               "<input type=\"password\" id=\"token\" name=\"token\" "
               "autocomplete=\"current-password\" autofocus>"
               "<button type=\"submit\" id=\"login\">Log in</button></form>"),
           /*signed_in=*/false),
      "text/html; charset=utf-8");
}

absl::Status WebUi::VolumeList(const httplib::Request& req, httplib::Response& res) const {
  const std::string ns = req.matches[1].str();
  CAIRN_RETURN_IF_ERROR(ValidateNamespace(ns));
  CAIRN_ASSIGN_OR_RETURN(std::vector<VolumeRecord> volumes,
                         engine_->ListVolumes(NamespaceOrDefault(ns)));
  std::string rows;
  for (const VolumeRecord& v : volumes) {
    absl::StatusOr<SnapshotRecord> head = engine_->Head(v.id);
    if (absl::IsNotFound(head.status())) continue;  // deleted meanwhile
    CAIRN_RETURN_IF_ERROR(head.status());
    absl::StrAppend(
        &rows, "<tr data-name=\"", EscapeMarkup(v.name), "\"><td><a href=\"/ui/n/", UrlEscape(ns, false),
        "/", UrlEscape(v.name, false), "/?at=", head->seq, "\">", EscapeMarkup(v.name),
        "</a></td><td class=\"muted\">", EscapeMarkup(v.id), "</td><td class=\"num\">", v.version,
        "</td><td class=\"num\">", head->seq, "</td><td class=\"num\">", head->inodes,
        "</td><td class=\"num\">", HumanBytes(head->bytes), "</td><td>",
        head->seq == 0 ? "-" : HumanTime(head->created_at_ns), "</td><td>",
        HumanTime(v.created_at_ns), "</td></tr>");
  }
  SetPageHeaders(res);
  res.set_content(
      Page(absl::StrCat("Volumes in ", ns),
           absl::StrCat(
               "<div class=\"bar\"><h1>Volumes in ", EscapeMarkup(ns),
               "</h1><form method=\"get\" action=\"/ui/\"><input name=\"namespace\" "
               "placeholder=\"namespace\" aria-label=\"namespace\"> <button "
               "type=\"submit\">Open</button></form><input type=\"search\" id=\"filter\" "
               "placeholder=\"Filter\" aria-label=\"Filter\"></div>",
               volumes.empty()
                   ? "<p class=\"muted\">No volumes in this namespace.</p>"
                   : absl::StrCat("<table class=\"listing\"><thead><tr><th>Name</th><th>ID</th>"
                                  "<th class=\"num\">Version</th><th class=\"num\">Commit</th>"
                                  "<th class=\"num\">Files</th><th class=\"num\">Size</th>"
                                  "<th>Last commit</th><th>Created</th></tr></thead><tbody>",
                                  rows, "</tbody></table>"))),
      "text/html; charset=utf-8");
  return absl::OkStatus();
}

absl::Status WebUi::Browse(const httplib::Request& req, httplib::Response& res) const {
  CAIRN_ASSIGN_OR_RETURN(Target t, Resolve(req));
  // Breadcrumbs: the volume, then each directory on the way.
  std::string crumbs = absl::StrCat("<nav class=\"crumbs\"><a href=\"/ui/n/",
                                    UrlEscape(t.ns, false),
                                    "/\">", EscapeMarkup(t.ns), "</a> / <a href=\"", t.Url("n", "", true),
                                    "\">", EscapeMarkup(t.volume.name), "</a>");
  std::string so_far;
  for (std::string_view part : SplitPath(t.path)) {
    so_far = JoinPath(so_far, part);
    absl::StrAppend(&crumbs, " / <a href=\"", t.Url("n", so_far, true), "\">",
                    EscapeMarkup(std::string(part)), "</a>");
  }
  crumbs += "</nav>";
  absl::StatusOr<SnapshotRecord> head = engine_->Head(t.volume.id);
  const bool old = head.ok() && head->seq != t.snapshot.seq;
  std::string snapshot_line =
      absl::StrCat("<p class=\"muted\" id=\"snapshot\">Commit ", t.snapshot.seq, " of ",
                   HumanTime(t.snapshot.created_at_ns), " UTC");
  if (old) {
    // The newest: the same path without a pinned snapshot.
    const std::string here = t.Url("n", t.path, t.entry.type() == objects::DIRECTORY);
    absl::StrAppend(&snapshot_line, " (not the newest: <a href=\"",
                    here.substr(0, here.rfind("?at=")),
                    "\">show the newest</a>)");
  }
  snapshot_line += "</p>";

  std::string body = crumbs + snapshot_line;
  if (t.entry.type() == objects::DIRECTORY) {
    CAIRN_ASSIGN_OR_RETURN(std::shared_ptr<const objects::Directory> dir,
                           ReadDirectory(*t.objects, t.snapshot.root, t.path));
    std::vector<const objects::Entry*> entries;
    for (const objects::Entry& e : dir->entries()) entries.push_back(&e);
    std::stable_partition(entries.begin(), entries.end(),
                          [](const objects::Entry* e) { return e->type() == objects::DIRECTORY; });
    absl::StrAppend(&body, "<div class=\"bar\"><a class=\"button\" id=\"download-dir\" href=\"",
                    t.Url("tar", t.path, false), "\" download>Download as .tar</a>",
                    "<input type=\"search\" id=\"filter\" placeholder=\"Filter\" "
                    "aria-label=\"Filter\"><span class=\"muted\">",
                    entries.size(), " entries, ",
                    // The root's own entry carries no totals; the snapshot does.
                    HumanBytes(t.path.empty() ? t.snapshot.bytes : t.entry.subtree_bytes()),
                    "</span></div>");
    absl::StrAppend(&body,
                    "<table class=\"listing\"><thead><tr><th>Name</th><th class=\"num\">Size</th>"
                    "<th>Modified (UTC)</th><th></th></tr></thead><tbody>");
    for (const objects::Entry* e : entries) {
      const std::string path = JoinPath(t.path, e->name());
      const bool is_dir = e->type() == objects::DIRECTORY;
      std::string name_cell, action;
      switch (e->type()) {
        case objects::DIRECTORY:
          name_cell = absl::StrCat("<a href=\"", t.Url("n", path, true), "\">", EscapeMarkup(e->name()),
                                   "/</a>");
          action = absl::StrCat("<a href=\"", t.Url("tar", path, false), "\" download>.tar</a>");
          break;
        case objects::FILE:
          name_cell =
              absl::StrCat("<a href=\"", t.Url("n", path, false), "\">", EscapeMarkup(e->name()), "</a>");
          action = absl::StrCat("<a href=\"", t.Url("raw", path, false),
                                "\" download>Download</a>");
          break;
        case objects::SYMLINK:
          name_cell = absl::StrCat(EscapeMarkup(e->name()), " <span class=\"muted\">→ ",
                                   EscapeMarkup(e->symlink_target()), "</span>");
          break;
        default:
          name_cell = absl::StrCat(EscapeMarkup(e->name()), " <span class=\"muted\">(special)</span>");
      }
      absl::StrAppend(&body, "<tr data-name=\"", EscapeMarkup(e->name()), "\"><td>", name_cell,
                      "</td><td class=\"num\">",
                      is_dir ? HumanBytes(e->subtree_bytes())
                             : (e->type() == objects::FILE ? HumanBytes(e->size()) : ""),
                      "</td><td>", HumanTime(e->mtime_ns()), "</td><td>", action, "</td></tr>");
    }
    body += "</tbody></table>";
  } else if (t.entry.type() == objects::FILE) {
    const std::string name = Basename(t.path);
    const std::string type = ContentTypeFor(name);
    absl::StrAppend(&body, "<div class=\"bar\"><a class=\"button\" id=\"download\" href=\"",
                    t.Url("raw", t.path, false), "\" download>Download</a><span>",
                    HumanBytes(t.entry.size()), " (", t.entry.size(), " bytes), modified ",
                    HumanTime(t.entry.mtime_ns()), " UTC</span></div>");
    if (IsImageType(type)) {
      absl::StrAppend(&body, "<img class=\"preview\" alt=\"", EscapeMarkup(name), "\" src=\"",
                      t.Url("raw", t.path, false), "&amp;inline=1\">");
    } else {
      CAIRN_ASSIGN_OR_RETURN(std::string head_bytes,
                             ReadFileRange(*t.objects, t.entry, 0, kPreviewBytes));
      std::optional<std::string> text = AsText(std::move(head_bytes));
      if (text.has_value()) {
        absl::StrAppend(&body, "<pre class=\"preview\" id=\"preview\">", EscapeMarkup(*text), "</pre>",
                        t.entry.size() > kPreviewBytes
                            ? absl::StrCat("<p class=\"muted\">The first ",
                                           HumanBytes(kPreviewBytes), " are shown.</p>")
                            : "");
      } else {
        body += "<p class=\"muted\">No preview for this kind of file.</p>";
      }
    }
  } else if (t.entry.type() == objects::SYMLINK) {
    absl::StrAppend(&body, "<p>A symbolic link to <code>", EscapeMarkup(t.entry.symlink_target()),
                    "</code>.</p>");
  } else {
    body += "<p>A special file (FIFO, socket or device): it has no content.</p>";
  }
  SetPageHeaders(res);
  res.set_content(Page(t.path.empty() ? t.volume.name : Basename(t.path), body),
                  "text/html; charset=utf-8");
  return absl::OkStatus();
}

absl::Status WebUi::Raw(const httplib::Request& req, httplib::Response& res) const {
  CAIRN_ASSIGN_OR_RETURN(Target t, Resolve(req));
  if (t.entry.type() == objects::DIRECTORY) {
    return absl::InvalidArgumentError(absl::StrCat(
        "'/", t.path, "' is a directory: download it as an archive from its page"));
  }
  if (t.entry.type() != objects::FILE) {
    return absl::InvalidArgumentError(absl::StrCat("'/", t.path, "' is not a regular file"));
  }
  const uint64_t size = t.entry.size();
  const std::string name = Basename(t.path);
  const std::string type = ContentTypeFor(name);
  const std::string etag = ETagFor(t.entry);
  const std::string last_modified = HttpDate(t.entry.mtime_ns());
  res.set_header("ETag", etag);
  res.set_header("Last-Modified", last_modified);
  res.set_header("Accept-Ranges", "bytes");
  res.set_header("Cache-Control", "private, no-cache");
  res.set_header("X-Content-Type-Options", "nosniff");
  // Whatever a file holds, it never runs as a page of this origin.
  res.set_header("Content-Security-Policy", "sandbox; default-src 'none'; img-src 'self'");
  const bool inline_view = req.get_param_value("inline") == "1" && IsInlineSafe(type);
  res.set_header("Content-Disposition", Disposition(inline_view, name));

  ByteRange range{0, size};
  std::optional<ByteRange> asked;
  // If-Range: a range only of the version the client has; otherwise all.
  const std::string if_range = req.get_header_value("If-Range");
  if (req.has_header("Range") &&
      (if_range.empty() || if_range == etag || if_range == last_modified)) {
    absl::StatusOr<std::optional<ByteRange>> parsed =
        ParseByteRange(req.get_header_value("Range"), size);
    if (absl::IsOutOfRange(parsed.status())) {
      res.status = 416;
      res.set_header("Content-Range", absl::StrCat("bytes */", size));
      res.set_content(absl::StrCat(parsed.status().message(), "\n"), "text/plain");
      return absl::OkStatus();
    }
    CAIRN_RETURN_IF_ERROR(parsed.status());
    asked = *parsed;
  }
  // httplib would apply the Range header again on its own (and in this
  // version ignores If-Range and mis-sizes unsatisfiable ranges): the
  // range is handled above, so the parsed copy is dropped. The request
  // object is httplib's own, not const.
  const_cast<httplib::Request&>(req).ranges.clear();
  if (asked.has_value()) {
    range = *asked;
    res.status = 206;
    res.set_header("Content-Range", absl::StrCat("bytes ", range.offset, "-",
                                                  range.offset + range.length - 1, "/", size));
  } else {
    res.status = 200;
  }
  if (range.length == 0) {
    res.set_content("", type);
    return absl::OkStatus();
  }
  auto stream = std::make_shared<FileStream>(t.objects, t.entry, range.offset + range.length);
  const uint64_t begin = range.offset;
  res.set_content_provider(
      range.length, type, [stream, begin](size_t offset, size_t, httplib::DataSink& sink) {
        return stream->WriteBlock(begin + offset, sink.write);
      });
  return absl::OkStatus();
}

absl::Status WebUi::Tar(const httplib::Request& req, httplib::Response& res) const {
  CAIRN_ASSIGN_OR_RETURN(Target t, Resolve(req));
  if (t.entry.type() != objects::DIRECTORY) {
    return absl::InvalidArgumentError(
        absl::StrCat("'/", t.path, "' is not a directory: download the file itself"));
  }
  const std::string top = t.path.empty() ? t.volume.name : Basename(t.path);
  const objects::Entry dir = t.entry;
  res.set_header("Content-Disposition", Disposition(false, top + ".tar"));
  res.set_header("X-Content-Type-Options", "nosniff");
  res.set_header("Cache-Control", "private, no-cache");
  std::shared_ptr<ObjectStore> objects = t.objects;
  res.set_chunked_content_provider(
      "application/x-tar", [objects, dir, top](size_t, httplib::DataSink& sink) {
        if (!WriteTarTree(objects, dir, top, sink.write)) return false;
        const std::string end = TarEnd();
        if (!sink.write(end.data(), end.size())) return false;
        sink.done();
        return true;
      });
  return absl::OkStatus();
}

}  // namespace cairn::operator_
