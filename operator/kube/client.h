// Client: the small Kubernetes API client the operator needs (no C++ client
// is packaged anywhere we can reach). HTTPS via cpp-httplib + OpenSSL,
// bearer token or client certificate, JSON via nlohmann-json.
//
// The verbs mirror client-go's dynamic client: Get / List / Create / Update
// / MergePatch / Delete on a path built by ResourcePath(), status updates
// through the "status" subresource, and Watch with resourceVersion and
// bookmarks. Every failure is an absl::Status carrying a kube::Reason
// (errors.h); a call is never retried here — retry policy (Backoff) belongs
// to the caller, which knows whether the call is idempotent.
//
// The process must ignore SIGPIPE (cairn-operator does): a pooled TLS
// connection the server closed is written to before it is known dead, and
// that must be an error (retried by the caller), not a fatal signal.
//
// Thread-safe: calls may run concurrently (each takes a pooled
// connection). Shutdown() cancels running watches and makes later calls
// fail with Cancelled; the Client must outlive its callers.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "operator/kube/config.h"
#include "operator/kube/errors.h"
#include "operator/kube/json.h"

namespace httplib {
class ClientImpl;
}

namespace cairn::kube {

// A resource type, e.g. {"cairn.dev", "v1alpha1", "volumes"} or
// {"", "v1", "events"} for the core group.
struct Resource {
  std::string group;
  std::string version;
  std::string plural;
};

// "/apis/G/V[/namespaces/NS]/PLURAL[/NAME[/SUB]]" ("/api/v1/…" for the core
// group). An empty `ns` is the all-namespaces collection.
std::string ResourcePath(const Resource& r, std::string_view ns, std::string_view name = "",
                         std::string_view subresource = "");

struct ListOptions {
  std::string label_selector;
  int64_t page_size = 500;  // pages are followed with `continue`
};

struct ListResult {
  std::vector<Json> items;
  std::string resource_version;  // of the list; start a watch from here
};

enum class EventType { kAdded, kModified, kDeleted, kBookmark };

struct WatchEvent {
  EventType type;
  Json object;  // for a bookmark, only metadata.resourceVersion is meaningful
};

struct WatchOptions {
  std::string resource_version;  // usually ListResult::resource_version
  bool allow_bookmarks = true;
  std::chrono::seconds timeout{300};  // the server ends the watch after this
};

struct ClientOptions {
  std::chrono::milliseconds connect_timeout{5000};
  std::chrono::milliseconds request_timeout{30000};
};

class Client {
 public:
  // InvalidArgument for a malformed server URL or unusable PEM data.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<Client>> Create(
      Config config, ClientOptions options = {});
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  [[nodiscard]] absl::StatusOr<Json> Get(const std::string& path);
  [[nodiscard]] absl::StatusOr<ListResult> List(const std::string& collection_path,
                                                const ListOptions& options = {});
  // POST to the collection; returns the stored object.
  [[nodiscard]] absl::StatusOr<Json> Create(const std::string& collection_path, const Json& obj);
  // PUT; `obj` carries metadata.resourceVersion, so a stale write is a
  // Conflict (Aborted).
  [[nodiscard]] absl::StatusOr<Json> Update(const std::string& path, const Json& obj);
  // PATCH with application/merge-patch+json (RFC 7386).
  [[nodiscard]] absl::StatusOr<Json> MergePatch(const std::string& path, const Json& patch);
  // NotFound when already gone (callers that mean "ensure absent" ignore it).
  [[nodiscard]] absl::Status Delete(const std::string& path);

  // Streams events of `collection_path` from options.resource_version to
  // `on_event` until: the server closes the watch (OK; watch again from the
  // last resourceVersion seen), `on_event` returns false (OK), the server
  // sends an ERROR event (its status, e.g. Gone when the resourceVersion is
  // too old: re-list), the connection fails (Unavailable), or Shutdown()
  // (Cancelled).
  [[nodiscard]] absl::Status Watch(const std::string& collection_path, const WatchOptions& options,
                                   const std::function<bool(const WatchEvent&)>& on_event);

  void Shutdown();
  const Config& config() const { return config_; }

 private:
  struct Endpoint;
  Client(Config config, ClientOptions options);
  absl::StatusOr<std::unique_ptr<httplib::ClientImpl>> NewConnection() const;
  absl::StatusOr<std::unique_ptr<httplib::ClientImpl>> Acquire();
  void Release(std::unique_ptr<httplib::ClientImpl> c);
  absl::StatusOr<std::string> BearerToken() const;
  absl::StatusOr<Json> Call(const std::string& method, const std::string& path,
                            const std::string& body, const std::string& content_type);

  const Config config_;
  const ClientOptions options_;
  std::unique_ptr<Endpoint> endpoint_;
  absl::Mutex mu_;
  bool shut_down_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::unique_ptr<httplib::ClientImpl>> idle_ ABSL_GUARDED_BY(mu_);
  std::vector<httplib::ClientImpl*> watching_ ABSL_GUARDED_BY(mu_);
};

}  // namespace cairn::kube
