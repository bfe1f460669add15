#include "core/blob_store_s3.h"

#include <algorithm>
#include <atomic>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "core/path.h"
#include "core/status.h"

namespace cairn {
namespace {

// Debian's abseil has its own absl::string_view (see core/crypto.cc).
absl::string_view Sv(std::string_view s) { return absl::string_view(s.data(), s.size()); }

std::chrono::system_clock::time_point ToTimePoint(absl::Time t) {
  return std::chrono::system_clock::from_time_t(0) +
         std::chrono::duration_cast<std::chrono::system_clock::duration>(
             absl::ToChronoNanoseconds(t - absl::UnixEpoch()));
}

class S3BlobStoreImpl final : public S3BlobStore {
 public:
  explicit S3BlobStoreImpl(std::unique_ptr<S3Client> client)
      : s3_(std::move(client)),
        root_(s3_->config().prefix.empty() ? "" : absl::StrCat(s3_->config().prefix, "/")) {}

  absl::Status CheckBucket() {
    absl::Status s = s3_->HeadBucket();
    if (absl::IsNotFound(s) || absl::IsFailedPrecondition(s)) {
      return absl::FailedPreconditionError(
          absl::StrCat("S3 bucket ", s3_->config().bucket, " does not exist: ", s.message()));
    }
    return s;
  }

  absl::Status Put(std::string_view volume_id, const Digest& address,
                   std::string_view sealed) override {
    CAIRN_ASSIGN_OR_RETURN(std::string key, Key(volume_id, address));
    if (sealed.size() >= s3_->config().multipart_threshold) {
      // A multipart upload cannot be made conditional everywhere: look first.
      absl::Status touched = Refresh(key, volume_id, address);
      if (!absl::IsNotFound(touched)) return touched;
      return s3_->PutObjectMultipart(key, sealed);
    }
    if (conditional_puts_.load(std::memory_order_relaxed)) {
      absl::Status s = s3_->PutObject(key, sealed, /*if_none_match=*/true);
      if (S3Client::IsPreconditionFailed(s)) return Refresh(key, volume_id, address);
      if (!absl::IsUnimplemented(s) && !absl::IsInvalidArgument(s)) return s;
      // This server does not do conditional writes: same content, so an
      // unconditional PUT is just as correct.
      conditional_puts_.store(false, std::memory_order_relaxed);
    }
    return s3_->PutObject(key, sealed, /*if_none_match=*/false);
  }

  absl::StatusOr<std::string> Get(std::string_view volume_id, const Digest& address) override {
    CAIRN_ASSIGN_OR_RETURN(std::string key, Key(volume_id, address));
    absl::StatusOr<std::string> data = s3_->GetObject(key);
    if (absl::IsNotFound(data.status())) return NotFound(volume_id, address);
    return data;
  }

  absl::StatusOr<Range> GetRange(std::string_view volume_id, const Digest& address,
                                 uint64_t offset, uint64_t length) override {
    CAIRN_ASSIGN_OR_RETURN(std::string key, Key(volume_id, address));
    if (length > 0) {
      absl::StatusOr<S3Client::Range> r = s3_->GetObjectRange(key, offset, length);
      if (r.ok()) return Range{std::move(r->data), r->total_size};
      if (absl::IsNotFound(r.status())) return NotFound(volume_id, address);
      if (!absl::IsOutOfRange(r.status())) return r.status();
    }
    // Nothing asked for, or a range S3 cannot satisfy (it starts at the
    // end, which the contract allows, or past it): the size settles it.
    absl::StatusOr<S3Client::ObjectInfo> info = s3_->HeadObject(key);
    if (absl::IsNotFound(info.status())) return NotFound(volume_id, address);
    if (!info.ok()) return info.status();
    if (offset > info->size) {
      return absl::OutOfRangeError(absl::StrCat("offset ", offset, " is past the end of object ",
                                                address.ToHex(), " (", info->size, " bytes)"));
    }
    return Range{"", info->size};
  }

  absl::StatusOr<bool> Contains(std::string_view volume_id, const Digest& address) override {
    CAIRN_ASSIGN_OR_RETURN(std::string key, Key(volume_id, address));
    absl::StatusOr<S3Client::ObjectInfo> info = s3_->HeadObject(key);
    if (absl::IsNotFound(info.status())) return false;
    if (!info.ok()) return info.status();
    return true;
  }

  absl::Status Touch(std::string_view volume_id, const Digest& address) override {
    CAIRN_ASSIGN_OR_RETURN(std::string key, Key(volume_id, address));
    return Refresh(key, volume_id, address);
  }

  absl::Status List(std::string_view volume_id,
                    const std::function<void(const BlobInfo&)>& fn) override {
    CAIRN_RETURN_IF_ERROR(ValidateVolumeId(volume_id));
    const std::string prefix = absl::StrCat(root_, Sv(volume_id), "/");
    // Collected first: `fn` may call back into the store (GC deletes).
    std::vector<BlobInfo> blobs;
    CAIRN_RETURN_IF_ERROR(s3_->ListObjects(
        prefix, "",
        [&](const S3Client::ObjectInfo& o) {
          absl::string_view name = o.key;
          if (!absl::ConsumePrefix(&name, prefix)) return;
          absl::StatusOr<Digest> d = Digest::FromHex(std::string_view(name.data(), name.size()));
          if (!d.ok() || d->ToHex() != name) return;  // not a blob of ours
          blobs.push_back({*d, ToTimePoint(o.last_modified), o.size});
        },
        nullptr));
    for (const BlobInfo& b : blobs) fn(b);
    return absl::OkStatus();
  }

  absl::Status Delete(std::string_view volume_id, const Digest& address) override {
    CAIRN_ASSIGN_OR_RETURN(std::string key, Key(volume_id, address));
    return s3_->DeleteObject(key);
  }

  absl::StatusOr<std::vector<std::string>> ListVolumes() override {
    std::vector<std::string> out;
    CAIRN_RETURN_IF_ERROR(s3_->ListObjects(root_, "/", nullptr, [&](std::string_view p) {
      absl::string_view id = Sv(p);
      if (!absl::ConsumePrefix(&id, root_) || !absl::ConsumeSuffix(&id, "/")) return;
      if (ValidateVolumeId(std::string_view(id.data(), id.size())).ok()) out.emplace_back(id);
    }));
    std::sort(out.begin(), out.end());
    return out;
  }

  absl::Status DeleteVolume(std::string_view volume_id) override {
    CAIRN_RETURN_IF_ERROR(ValidateVolumeId(volume_id));
    std::vector<std::string> keys;
    CAIRN_RETURN_IF_ERROR(s3_->ListObjects(
        absl::StrCat(root_, Sv(volume_id), "/"), "",
        [&](const S3Client::ObjectInfo& o) { keys.push_back(o.key); }, nullptr));
    for (const std::string& k : keys) CAIRN_RETURN_IF_ERROR(s3_->DeleteObject(k));
    return absl::OkStatus();
  }

  absl::Status Link(std::string_view from_volume, std::string_view to_volume,
                    const Digest& address) override {
    CAIRN_ASSIGN_OR_RETURN(std::string from, Key(from_volume, address));
    CAIRN_ASSIGN_OR_RETURN(std::string to, Key(to_volume, address));
    absl::Status s = s3_->CopyObject(from, to).status();
    if (absl::IsNotFound(s)) return NotFound(from_volume, address);
    return s;
  }

  absl::StatusOr<std::string> PresignGet(std::string_view volume_id, const Digest& address,
                                         absl::Duration expires) override {
    CAIRN_ASSIGN_OR_RETURN(std::string key, Key(volume_id, address));
    return s3_->PresignGet(key, expires);
  }

 private:
  absl::StatusOr<std::string> Key(std::string_view volume_id, const Digest& address) const {
    CAIRN_RETURN_IF_ERROR(ValidateVolumeId(volume_id));
    return absl::StrCat(root_, Sv(volume_id), "/", address.ToHex());
  }

  static absl::Status NotFound(std::string_view volume_id, const Digest& address) {
    return absl::NotFoundError(
        absl::StrCat("object ", address.ToHex(), " of volume ", Sv(volume_id), " not found"));
  }

  // Gives a present blob a new Last-Modified (GC's grace period counts
  // from it). A copy onto itself does that on AWS S3 without moving the
  // bytes; a server that keeps the old Last-Modified (versitygw's POSIX
  // backend does) shows it in the copy's answer, and the blob is read and
  // written back instead (after a few such answers, straight away).
  absl::Status Refresh(const std::string& key, std::string_view volume_id, const Digest& address) {
    if (copy_misses_.load(std::memory_order_relaxed) < kMaxCopyMisses) {
      absl::StatusOr<S3Client::ObjectInfo> before = s3_->HeadObject(key);
      if (absl::IsNotFound(before.status())) return NotFound(volume_id, address);
      if (!before.ok()) return before.status();
      absl::StatusOr<absl::Time> copied = s3_->CopyObject(key, key);
      if (absl::IsNotFound(copied.status())) return NotFound(volume_id, address);
      if (!copied.ok()) return copied.status();
      // Whole seconds, as Last-Modified headers carry them. A copy in the
      // second the blob was written looks like a miss: that costs one
      // rewrite, never a stale date.
      if (absl::FromUnixSeconds(absl::ToUnixSeconds(*copied)) > before->last_modified) {
        copy_misses_.store(0, std::memory_order_relaxed);
        return absl::OkStatus();
      }
      copy_misses_.fetch_add(1, std::memory_order_relaxed);
    }
    absl::StatusOr<std::string> data = s3_->GetObject(key);
    if (absl::IsNotFound(data.status())) return NotFound(volume_id, address);
    if (!data.ok()) return data.status();
    if (data->size() >= s3_->config().multipart_threshold) {
      return s3_->PutObjectMultipart(key, *data);
    }
    return s3_->PutObject(key, *data, /*if_none_match=*/false);
  }

  const std::unique_ptr<S3Client> s3_;
  const std::string root_;  // "<prefix>/" or ""
  std::atomic<bool> conditional_puts_{true};
  static constexpr int kMaxCopyMisses = 3;
  std::atomic<int> copy_misses_{0};
};

}  // namespace

absl::StatusOr<std::unique_ptr<S3BlobStore>> OpenS3BlobStore(S3Config config) {
  CAIRN_ASSIGN_OR_RETURN(std::unique_ptr<S3Client> client, S3Client::Create(std::move(config)));
  auto store = std::make_unique<S3BlobStoreImpl>(std::move(client));
  CAIRN_RETURN_IF_ERROR(store->CheckBucket());
  return store;
}

}  // namespace cairn
