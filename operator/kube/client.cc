#include "operator/kube/client.h"

#include <httplib.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "core/status.h"

namespace cairn::kube {
namespace {

// RAII for the OpenSSL objects built from PEM text.
struct BioDeleter {
  void operator()(BIO* b) const { BIO_free(b); }
};
struct X509Deleter {
  void operator()(X509* x) const { X509_free(x); }
};
struct PkeyDeleter {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
using BioPtr = std::unique_ptr<BIO, BioDeleter>;
using X509Ptr = std::unique_ptr<X509, X509Deleter>;
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyDeleter>;

BioPtr MemBio(const std::string& pem) {
  return BioPtr(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
}

// Every certificate in `pem`, or InvalidArgument if there is none.
absl::StatusOr<std::vector<X509Ptr>> ParseCerts(const std::string& pem, std::string_view what) {
  std::vector<X509Ptr> certs;
  BioPtr bio = MemBio(pem);
  while (X509* x = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)) certs.emplace_back(x);
  if (certs.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(std::string(what), " holds no PEM certificate"));
  }
  return certs;
}

bool ConsumePrefix(std::string_view* s, std::string_view prefix) {
  if (s->substr(0, prefix.size()) != prefix) return false;
  s->remove_prefix(prefix.size());
  return true;
}

std::string UrlEncode(std::string_view s) {
  std::string out;
  for (unsigned char c : s) {
    if (absl::ascii_isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      absl::StrAppend(&out, "%", absl::Hex(c, absl::kZeroPad2));
    }
  }
  return out;
}

}  // namespace

std::string ResourcePath(const Resource& r, std::string_view ns, std::string_view name,
                         std::string_view subresource) {
  std::string p = r.group.empty() ? absl::StrCat("/api/", r.version)
                                  : absl::StrCat("/apis/", r.group, "/", r.version);
  if (!ns.empty()) absl::StrAppend(&p, "/namespaces/", std::string(ns));
  absl::StrAppend(&p, "/", r.plural);
  if (!name.empty()) absl::StrAppend(&p, "/", std::string(name));
  if (!subresource.empty()) absl::StrAppend(&p, "/", std::string(subresource));
  return p;
}

struct Client::Endpoint {
  bool https = true;
  std::string host;
  int port = 443;
  std::string prefix;  // a path under which the API is served, usually empty
  std::vector<X509Ptr> ca;
  X509Ptr client_cert;
  PkeyPtr client_key;
};

Client::Client(Config config, ClientOptions options)
    : config_(std::move(config)), options_(options), endpoint_(std::make_unique<Endpoint>()) {}

Client::~Client() { Shutdown(); }

absl::StatusOr<std::unique_ptr<Client>> Client::Create(Config config, ClientOptions options) {
  std::unique_ptr<Client> c(new Client(std::move(config), options));
  Endpoint& e = *c->endpoint_;
  std::string_view rest = c->config_.server;
  if (ConsumePrefix(&rest, "https://")) {
    e.https = true;
    e.port = 443;
  } else if (ConsumePrefix(&rest, "http://")) {
    e.https = false;
    e.port = 80;
  } else {
    return absl::InvalidArgumentError(absl::StrCat(
        "API server URL '", c->config_.server, "' must start with https:// (or http://)"));
  }
  size_t slash = rest.find('/');
  std::string_view hostport = rest.substr(0, slash);
  if (slash != std::string_view::npos) {
    e.prefix = std::string(rest.substr(slash));
    while (!e.prefix.empty() && e.prefix.back() == '/') e.prefix.pop_back();
  }
  size_t colon = hostport.rfind(':');
  size_t bracket = hostport.rfind(']');
  if (colon != std::string_view::npos && (bracket == std::string_view::npos || colon > bracket)) {
    if (!absl::SimpleAtoi(std::string(hostport.substr(colon + 1)), &e.port) || e.port <= 0 || e.port > 65535) {
      return absl::InvalidArgumentError(
          absl::StrCat("bad port in API server URL '", c->config_.server, "'"));
    }
    hostport = hostport.substr(0, colon);
  }
  if (ConsumePrefix(&hostport, "[") && !hostport.empty() && hostport.back() == ']') {
    hostport.remove_suffix(1);
  }
  if (hostport.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("no host in API server URL '", c->config_.server, "'"));
  }
  e.host = std::string(hostport);
  if (!c->config_.ca_pem.empty()) {
    CAIRN_ASSIGN_OR_RETURN(e.ca, ParseCerts(c->config_.ca_pem, "certificate authority data"));
  }
  if (!c->config_.client_cert_pem.empty()) {
    CAIRN_ASSIGN_OR_RETURN(std::vector<X509Ptr> certs,
                           ParseCerts(c->config_.client_cert_pem, "client certificate data"));
    e.client_cert = std::move(certs.front());
    BioPtr bio = MemBio(c->config_.client_key_pem);
    e.client_key.reset(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
    if (!e.client_key) return absl::InvalidArgumentError("client key data holds no PEM private key");
  }
  return c;
}

absl::StatusOr<std::unique_ptr<httplib::ClientImpl>> Client::NewConnection() const {
  const Endpoint& e = *endpoint_;
  std::unique_ptr<httplib::ClientImpl> conn;
  if (e.https) {
    std::unique_ptr<httplib::SSLClient> ssl =
        e.client_cert ? std::make_unique<httplib::SSLClient>(e.host, e.port, e.client_cert.get(),
                                                             e.client_key.get())
                      : std::make_unique<httplib::SSLClient>(e.host, e.port);
    if (!ssl->is_valid()) return absl::InternalError("cannot set up a TLS context");
    if (!e.ca.empty()) {
      X509_STORE* store = X509_STORE_new();
      for (const X509Ptr& x : e.ca) X509_STORE_add_cert(store, x.get());
      ssl->set_ca_cert_store(store);  // the TLS context takes ownership
    }
    ssl->enable_server_certificate_verification(!config_.insecure_skip_tls_verify);
    conn = std::move(ssl);
  } else {
    conn = std::make_unique<httplib::ClientImpl>(e.host, e.port);
  }
  conn->set_connection_timeout(options_.connect_timeout);
  conn->set_read_timeout(options_.request_timeout);
  conn->set_write_timeout(options_.request_timeout);
  conn->set_keep_alive(true);
  return conn;
}

absl::StatusOr<std::unique_ptr<httplib::ClientImpl>> Client::Acquire() {
  {
    absl::MutexLock lock(&mu_);
    if (shut_down_) return absl::CancelledError("Kubernetes client is shut down");
    if (!idle_.empty()) {
      std::unique_ptr<httplib::ClientImpl> c = std::move(idle_.back());
      idle_.pop_back();
      return c;
    }
  }
  return NewConnection();
}

void Client::Release(std::unique_ptr<httplib::ClientImpl> c) {
  absl::MutexLock lock(&mu_);
  if (!shut_down_ && idle_.size() < 8) idle_.push_back(std::move(c));
}

absl::StatusOr<std::string> Client::BearerToken() const {
  if (config_.token_file.empty()) return config_.token;
  // Re-read each time: the kubelet rotates projected service-account tokens.
  std::ifstream in(config_.token_file);
  if (!in) {
    return WithReason(absl::UnauthenticatedError(
                          absl::StrCat("cannot read token file ", config_.token_file)),
                      Reason::kUnauthorized);
  }
  std::ostringstream buf;
  buf << in.rdbuf();
  return std::string(absl::StripAsciiWhitespace(buf.str()));
}

absl::StatusOr<Json> Client::Call(const std::string& method, const std::string& path,
                                  const std::string& body, const std::string& content_type) {
  std::string what = absl::StrCat(method, " ", path);
  CAIRN_ASSIGN_OR_RETURN(std::string token, BearerToken());
  CAIRN_ASSIGN_OR_RETURN(std::unique_ptr<httplib::ClientImpl> conn, Acquire());
  httplib::Request req;
  req.method = method;
  req.path = endpoint_->prefix + path;
  req.headers.emplace("Accept", "application/json");
  if (!token.empty()) req.headers.emplace("Authorization", absl::StrCat("Bearer ", token));
  if (!content_type.empty()) {
    req.headers.emplace("Content-Type", content_type);
    req.body = body;
  }
  httplib::Result res = conn->send(req);
  if (!res) return ConnectionError(httplib::to_string(res.error()), what);
  int code = res->status;
  std::string text = std::move(res->body);
  Release(std::move(conn));
  if (code < 200 || code >= 300) return HttpError(code, text, what);
  if (method == "DELETE" && text.empty()) return Json::object();
  return ParseObject(text, what);
}

absl::StatusOr<Json> Client::Get(const std::string& path) { return Call("GET", path, "", ""); }

absl::StatusOr<ListResult> Client::List(const std::string& collection_path,
                                        const ListOptions& options) {
  ListResult out;
  std::string cont;
  do {
    std::string q = absl::StrCat(collection_path, "?limit=", options.page_size);
    if (!options.label_selector.empty()) {
      absl::StrAppend(&q, "&labelSelector=", UrlEncode(options.label_selector));
    }
    if (!cont.empty()) absl::StrAppend(&q, "&continue=", UrlEncode(cont));
    CAIRN_ASSIGN_OR_RETURN(Json page, Call("GET", q, "", ""));
    if (const Json* items = Find(page, {"items"}); items != nullptr && items->is_array()) {
      for (const Json& i : *items) out.items.push_back(i);
    }
    out.resource_version = GetStringAt(page, {"metadata", "resourceVersion"});
    cont = GetStringAt(page, {"metadata", "continue"});
  } while (!cont.empty());
  return out;
}

absl::StatusOr<Json> Client::Create(const std::string& collection_path, const Json& obj) {
  return Call("POST", collection_path, Dump(obj), "application/json");
}

absl::StatusOr<Json> Client::Update(const std::string& path, const Json& obj) {
  return Call("PUT", path, Dump(obj), "application/json");
}

absl::StatusOr<Json> Client::MergePatch(const std::string& path, const Json& patch) {
  return Call("PATCH", path, Dump(patch), "application/merge-patch+json");
}

absl::Status Client::Delete(const std::string& path) {
  return Call("DELETE", path, "", "").status();
}

absl::Status Client::Watch(const std::string& collection_path, const WatchOptions& options,
                           const std::function<bool(const WatchEvent&)>& on_event) {
  std::string path = absl::StrCat(collection_path, "?watch=1&timeoutSeconds=",
                                  options.timeout.count());
  if (options.allow_bookmarks) absl::StrAppend(&path, "&allowWatchBookmarks=true");
  if (!options.resource_version.empty()) {
    absl::StrAppend(&path, "&resourceVersion=", UrlEncode(options.resource_version));
  }
  std::string what = absl::StrCat("WATCH ", collection_path);
  CAIRN_ASSIGN_OR_RETURN(std::string token, BearerToken());
  CAIRN_ASSIGN_OR_RETURN(std::unique_ptr<httplib::ClientImpl> conn, NewConnection());
  // The server closes the stream after `timeout`; reads wait a little longer.
  conn->set_read_timeout(options.timeout + std::chrono::seconds(30));
  {
    absl::MutexLock lock(&mu_);
    if (shut_down_) return absl::CancelledError("Kubernetes client is shut down");
    watching_.push_back(conn.get());
  }
  httplib::Headers headers{{"Accept", "application/json"}};
  if (!token.empty()) headers.emplace("Authorization", absl::StrCat("Bearer ", token));

  int http_status = 0;
  std::string buffer;      // bytes after the last complete line
  std::string error_body;  // a non-2xx response's body
  absl::Status event_status;
  bool stopped_by_caller = false;
  auto handle_line = [&](std::string_view line) -> bool {
    if (line.find_first_not_of(" \t\r") == std::string_view::npos) return true;
    Json ev = ParseJson(line);
    std::string type = GetString(ev, "type");
    const Json* obj = Find(ev, {"object"});
    if (ev.is_discarded() || obj == nullptr) {
      event_status = ConnectionError("malformed watch event", what);
      return false;
    }
    WatchEvent e{EventType::kAdded, *obj};
    if (type == "ADDED") {
      e.type = EventType::kAdded;
    } else if (type == "MODIFIED") {
      e.type = EventType::kModified;
    } else if (type == "DELETED") {
      e.type = EventType::kDeleted;
    } else if (type == "BOOKMARK") {
      e.type = EventType::kBookmark;
    } else if (type == "ERROR") {
      int code = static_cast<int>(GetIntAt(*obj, {"code"}, 500));
      event_status = HttpError(code, Dump(*obj), what);
      return false;
    } else {
      return true;  // unknown types are skipped, as client-go does
    }
    if (!on_event(e)) {
      stopped_by_caller = true;
      return false;
    }
    return true;
  };
  httplib::Result res = conn->Get(
      path, headers,
      [&](const httplib::Response& r) {
        http_status = r.status;
        return true;
      },
      [&](const char* data, size_t n) {
        if (http_status < 200 || http_status >= 300) {
          error_body.append(data, n);
          return true;
        }
        buffer.append(data, n);
        size_t start = 0;
        for (size_t nl = buffer.find('\n', start); nl != std::string::npos;
             nl = buffer.find('\n', start)) {
          bool more = handle_line(std::string_view(buffer).substr(start, nl - start));
          start = nl + 1;
          if (!more) return false;
        }
        buffer.erase(0, start);
        return true;
      });
  bool shut_down;
  {
    absl::MutexLock lock(&mu_);
    std::erase(watching_, conn.get());
    shut_down = shut_down_;
  }
  if (!event_status.ok()) return event_status;
  if (stopped_by_caller) return absl::OkStatus();
  if (shut_down) return absl::CancelledError("Kubernetes client is shut down");
  if (http_status != 0 && (http_status < 200 || http_status >= 300)) {
    return HttpError(http_status, error_body, what);
  }
  if (!res) {
    return ConnectionError(httplib::to_string(res.error()), what);
  }
  if (!buffer.empty() && !handle_line(buffer)) {
    return event_status.ok() ? absl::OkStatus() : event_status;
  }
  return absl::OkStatus();
}

void Client::Shutdown() {
  absl::MutexLock lock(&mu_);
  shut_down_ = true;
  idle_.clear();
  for (httplib::ClientImpl* c : watching_) c->stop();
}

}  // namespace cairn::kube
