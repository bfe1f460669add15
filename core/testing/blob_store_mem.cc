// MemBlobStore: the BlobStore contract in memory, for unit tests. One mutex
// guards everything; blobs are small in tests.
#include <algorithm>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "core/testing/mem_stores.h"
#include "core/path.h"
#include "core/status.h"

namespace cairn {
namespace {

// Debian's abseil 20220623 has its own absl::string_view (not an alias of
// std::string_view), so std::string_view must be converted explicitly.
absl::string_view Sv(std::string_view s) { return absl::string_view(s.data(), s.size()); }

class MemBlobStore : public BlobStore {
 public:
  absl::Status Put(std::string_view volume_id, const Digest& address,
                   std::string_view sealed) override {
    CAIRN_RETURN_IF_ERROR(ValidateVolumeId(volume_id));
    absl::MutexLock lock(&mu_);
    auto& blobs = volumes_[std::string(volume_id)];
    auto it = blobs.find(address);
    if (it != blobs.end()) {
      it->second.mtime = std::chrono::system_clock::now();  // like the local store: keep content
      return absl::OkStatus();
    }
    blobs.emplace(address, Blob{std::string(sealed), std::chrono::system_clock::now()});
    return absl::OkStatus();
  }

  absl::StatusOr<std::string> Get(std::string_view volume_id, const Digest& address) override {
    CAIRN_RETURN_IF_ERROR(ValidateVolumeId(volume_id));
    absl::MutexLock lock(&mu_);
    Blob* blob = Find(volume_id, address);
    if (blob == nullptr) return NotFound(volume_id, address);
    return blob->data;
  }

  absl::StatusOr<bool> Contains(std::string_view volume_id, const Digest& address) override {
    CAIRN_RETURN_IF_ERROR(ValidateVolumeId(volume_id));
    absl::MutexLock lock(&mu_);
    return Find(volume_id, address) != nullptr;
  }

  absl::Status Touch(std::string_view volume_id, const Digest& address) override {
    CAIRN_RETURN_IF_ERROR(ValidateVolumeId(volume_id));
    absl::MutexLock lock(&mu_);
    Blob* blob = Find(volume_id, address);
    if (blob == nullptr) return NotFound(volume_id, address);
    blob->mtime = std::chrono::system_clock::now();
    return absl::OkStatus();
  }

  absl::Status List(std::string_view volume_id,
                    const std::function<void(const BlobInfo&)>& fn) override {
    CAIRN_RETURN_IF_ERROR(ValidateVolumeId(volume_id));
    // Copy first: `fn` may call back into the store (GC deletes while
    // listing), which would deadlock under mu_.
    std::vector<BlobInfo> infos;
    {
      absl::MutexLock lock(&mu_);
      auto it = volumes_.find(Sv(volume_id));
      if (it == volumes_.end()) return absl::OkStatus();
      infos.reserve(it->second.size());
      for (const auto& [address, blob] : it->second) {
        infos.push_back(BlobInfo{address, blob.mtime, blob.data.size()});
      }
    }
    for (const BlobInfo& info : infos) fn(info);
    return absl::OkStatus();
  }

  absl::Status Delete(std::string_view volume_id, const Digest& address) override {
    CAIRN_RETURN_IF_ERROR(ValidateVolumeId(volume_id));
    absl::MutexLock lock(&mu_);
    auto it = volumes_.find(Sv(volume_id));
    if (it != volumes_.end()) it->second.erase(address);  // the prefix stays, as on disk
    return absl::OkStatus();
  }

  absl::StatusOr<std::vector<std::string>> ListVolumes() override {
    absl::MutexLock lock(&mu_);
    std::vector<std::string> out;
    for (const auto& [id, blobs] : volumes_) out.push_back(id);
    std::sort(out.begin(), out.end());
    return out;
  }

  absl::Status DeleteVolume(std::string_view volume_id) override {
    CAIRN_RETURN_IF_ERROR(ValidateVolumeId(volume_id));
    absl::MutexLock lock(&mu_);
    volumes_.erase(std::string(volume_id));
    return absl::OkStatus();
  }

 private:
  struct Blob {
    std::string data;
    std::chrono::system_clock::time_point mtime;
  };

  Blob* Find(std::string_view volume_id, const Digest& address)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    auto it = volumes_.find(Sv(volume_id));
    if (it == volumes_.end()) return nullptr;
    auto blob = it->second.find(address);
    return blob == it->second.end() ? nullptr : &blob->second;
  }

  static absl::Status NotFound(std::string_view volume_id, const Digest& address) {
    return absl::NotFoundError(
        absl::StrCat("blob ", address.ToHex(), " of volume ", Sv(volume_id), " not found"));
  }

  absl::Mutex mu_;
  absl::flat_hash_map<std::string, absl::flat_hash_map<Digest, Blob>> volumes_
      ABSL_GUARDED_BY(mu_);
};

}  // namespace

std::unique_ptr<BlobStore> NewMemBlobStore() { return std::make_unique<MemBlobStore>(); }

}  // namespace cairn
