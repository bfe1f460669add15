#include "core/direct_fetch_blob_store.h"

#include <httplib.h>

#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "core/log.h"
#include "core/status.h"

namespace cairn {
namespace {

// A cached URL is used until this long before it expires.
constexpr absl::Duration kUrlMargin = absl::Seconds(60);

struct SplitUrl {
  std::string base;  // scheme://host[:port]
  std::string path;  // /path?query, already encoded
};

absl::StatusOr<SplitUrl> Split(const std::string& url) {
  const size_t scheme = url.find("://");
  if (scheme == std::string::npos) return absl::InvalidArgumentError("URL without a scheme");
  const size_t slash = url.find('/', scheme + 3);
  if (slash == std::string::npos) return absl::InvalidArgumentError("URL without a path");
  return SplitUrl{url.substr(0, slash), url.substr(slash)};
}

}  // namespace

struct DirectFetchBlobStore::State {
  struct CachedUrl {
    std::string url;
    absl::Time expires;
  };
  absl::Mutex mu;
  absl::flat_hash_map<std::string, CachedUrl> urls ABSL_GUARDED_BY(mu);  // volume/hex -> URL
  // Idle keep-alive connections per scheme://host:port.
  absl::flat_hash_map<std::string, std::vector<std::unique_ptr<httplib::Client>>> idle
      ABSL_GUARDED_BY(mu);
};

DirectFetchBlobStore::DirectFetchBlobStore(VolumeApiClient* client, BlobStore* fallback)
    : client_(client), fallback_(fallback), state_(std::make_unique<State>()) {}

DirectFetchBlobStore::~DirectFetchBlobStore() = default;

absl::StatusOr<BlobStore::Range> DirectFetchBlobStore::Fetch(std::string_view volume_id,
                                                             const Digest& address,
                                                             uint64_t offset, uint64_t length) {
  const std::string key = absl::StrCat(std::string(volume_id), "/", address.ToHex());
  std::string url;
  {
    absl::MutexLock lock(&state_->mu);
    auto it = state_->urls.find(key);
    if (it != state_->urls.end() && it->second.expires - kUrlMargin > absl::Now()) {
      url = it->second.url;
    }
  }
  if (url.empty()) {
    absl::StatusOr<VolumeApiClient::ObjectUrls> got = client_->GetObjectUrls(volume_id, {address});
    if (absl::IsUnimplemented(got.status())) {
      enabled_ = false;
      CAIRN_LOG_INFO("reading blobs through the control plane: %s", got.status().ToString());
    }
    if (!got.ok()) return got.status();
    url = got->urls.front();
    absl::MutexLock lock(&state_->mu);
    if (state_->urls.size() > 100000) state_->urls.clear();  // bounded; URLs are cheap to renew
    state_->urls[key] = {url, got->expires};
  }
  CAIRN_ASSIGN_OR_RETURN(SplitUrl split, Split(url));
  std::unique_ptr<httplib::Client> http;
  {
    absl::MutexLock lock(&state_->mu);
    auto& idle = state_->idle[split.base];
    if (!idle.empty()) {
      http = std::move(idle.back());
      idle.pop_back();
    }
  }
  if (http == nullptr) {
    http = std::make_unique<httplib::Client>(split.base);
    http->set_url_encode(false);  // signed as it stands
    http->set_keep_alive(true);
    http->set_connection_timeout(std::chrono::seconds(5));
    http->set_read_timeout(std::chrono::seconds(60));
  }
  httplib::Headers headers;
  if (length > 0) {
    const uint64_t last = length >= UINT64_MAX - offset ? UINT64_MAX - 1 : offset + length - 1;
    headers.emplace("Range", absl::StrCat("bytes=", offset, "-", last));
  }
  httplib::Result res = http->Get(split.path, headers);
  if (!res) {
    return absl::UnavailableError(
        absl::StrCat("object store GET ", address.ToHex(), ": ", httplib::to_string(res.error())));
  }
  {
    absl::MutexLock lock(&state_->mu);
    auto& idle = state_->idle[split.base];
    if (idle.size() < 8) idle.push_back(std::move(http));
  }
  Range out;
  if (res->status == 206) {
    auto cr = res->headers.find("Content-Range");
    size_t slash = cr == res->headers.end() ? std::string::npos : cr->second.rfind('/');
    if (slash == std::string::npos ||
        !absl::SimpleAtoi(cr->second.substr(slash + 1), &out.total_size)) {
      return absl::DataLossError("object store answered 206 without a usable Content-Range");
    }
    out.data = std::move(res->body);
    return out;
  }
  if (res->status != 200) {
    if (res->status == 403) {
      // Expired or refused: the next read asks for a fresh URL.
      absl::MutexLock lock(&state_->mu);
      state_->urls.erase(key);
    }
    return absl::UnavailableError(
        absl::StrCat("object store GET ", address.ToHex(), ": HTTP ", res->status));
  }
  out.total_size = res->body.size();
  if (length == 0) {
    out.data = std::move(res->body);
  } else {
    if (offset > out.total_size) return absl::OutOfRangeError("offset past the end");
    out.data = res->body.substr(offset, length);
  }
  return out;
}

absl::StatusOr<std::string> DirectFetchBlobStore::Get(std::string_view volume_id,
                                                      const Digest& address) {
  if (enabled_) {
    absl::StatusOr<Range> got = Fetch(volume_id, address, 0, 0);
    if (got.ok()) {
      ++direct_reads_;
      return std::move(got->data);
    }
    CAIRN_LOG_DEBUG("direct read of %s fell back: %s", address.ToHex(), got.status().ToString());
  }
  ++fallback_reads_;
  return fallback_->Get(volume_id, address);
}

absl::StatusOr<BlobStore::Range> DirectFetchBlobStore::GetRange(std::string_view volume_id,
                                                                const Digest& address,
                                                                uint64_t offset, uint64_t length) {
  if (enabled_ && length > 0) {
    absl::StatusOr<Range> got = Fetch(volume_id, address, offset, length);
    if (got.ok()) {
      ++direct_reads_;
      return got;
    }
    CAIRN_LOG_DEBUG("direct read of %s fell back: %s", address.ToHex(), got.status().ToString());
  }
  ++fallback_reads_;
  return fallback_->GetRange(volume_id, address, offset, length);
}

}  // namespace cairn
