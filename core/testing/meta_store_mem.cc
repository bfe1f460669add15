// MemMetaStore: the MetaStore contract in memory, for unit tests. One mutex
// makes every call atomic, which is what the SQLite store's transactions
// give. DefaultLimits lives in meta_store_sqlite.cc.
#include <algorithm>
#include <map>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "core/testing/mem_stores.h"
#include "core/meta_store_errors.h"
#include "core/status.h"

namespace cairn {
namespace {

absl::string_view Sv(std::string_view s) { return absl::string_view(s.data(), s.size()); }

class MemMetaStore : public MetaStore {
 public:
  absl::Status CreateVolume(const VolumeRecord& volume, const SnapshotRecord& initial) override {
    if (initial.volume_id != volume.id) {
      return absl::InvalidArgumentError(absl::StrCat("initial snapshot belongs to ",
                                                     initial.volume_id, ", not ", volume.id));
    }
    absl::MutexLock lock(&mu_);
    if (FindByName(volume.ns, volume.name) != nullptr) {
      return absl::AlreadyExistsError(
          absl::StrCat("volume ", volume.ns, "/", volume.name, " already exists"));
    }
    if (volumes_.count(volume.id) != 0) {
      return absl::AlreadyExistsError(absl::StrCat("volume ID ", volume.id, " already exists"));
    }
    Volume& v = volumes_[volume.id];
    v.record = volume;
    v.snapshots[initial.seq] = initial;
    v.head = initial.seq;
    return absl::OkStatus();
  }

  absl::StatusOr<VolumeRecord> GetVolumeByName(std::string_view ns,
                                               std::string_view name) override {
    absl::MutexLock lock(&mu_);
    const Volume* v = FindByName(ns, name);
    if (v == nullptr) {
      return absl::NotFoundError(absl::StrCat("volume ", Sv(ns), "/", Sv(name), " not found"));
    }
    return v->record;
  }

  absl::StatusOr<VolumeRecord> GetVolumeById(std::string_view id) override {
    absl::MutexLock lock(&mu_);
    CAIRN_ASSIGN_OR_RETURN(Volume* v, Find(id));
    return v->record;
  }

  absl::StatusOr<std::vector<VolumeRecord>> ListVolumes(std::string_view ns) override {
    absl::MutexLock lock(&mu_);
    std::vector<VolumeRecord> out;
    for (const auto& [id, v] : volumes_) {
      if (ns.empty() || v.record.ns == ns) out.push_back(v.record);
    }
    std::sort(out.begin(), out.end(), [](const VolumeRecord& a, const VolumeRecord& b) {
      if (a.created_at_ns != b.created_at_ns) return a.created_at_ns > b.created_at_ns;
      return a.id < b.id;
    });
    return out;
  }

  absl::Status RenameVolume(std::string_view id, std::string_view new_name) override {
    absl::MutexLock lock(&mu_);
    CAIRN_ASSIGN_OR_RETURN(Volume* v, Find(id));
    if (v->record.name == new_name) return absl::OkStatus();
    if (FindByName(v->record.ns, new_name) != nullptr) {
      return absl::AlreadyExistsError(
          absl::StrCat("volume ", v->record.ns, "/", Sv(new_name), " already exists"));
    }
    v->record.name = std::string(new_name);
    return absl::OkStatus();
  }

  absl::Status DeleteVolume(std::string_view id) override {
    absl::MutexLock lock(&mu_);
    if (volumes_.erase(std::string(id)) == 0) return meta_store_errors::VolumeNotFound(id);
    return absl::OkStatus();
  }

  absl::StatusOr<SnapshotRecord> GetHead(std::string_view volume_id) override {
    absl::MutexLock lock(&mu_);
    CAIRN_ASSIGN_OR_RETURN(Volume* v, Find(volume_id));
    return v->snapshots.at(v->head);
  }

  absl::StatusOr<SnapshotRecord> GetSnapshot(std::string_view volume_id, uint64_t seq) override {
    absl::MutexLock lock(&mu_);
    CAIRN_ASSIGN_OR_RETURN(Volume* v, Find(volume_id));
    auto it = v->snapshots.find(seq);
    if (it == v->snapshots.end()) {
      return absl::NotFoundError(
          absl::StrCat("snapshot ", seq, " of volume ", Sv(volume_id), " not found"));
    }
    return it->second;
  }

  absl::StatusOr<std::vector<SnapshotRecord>> ListSnapshots(std::string_view volume_id) override {
    absl::MutexLock lock(&mu_);
    CAIRN_ASSIGN_OR_RETURN(Volume* v, Find(volume_id));
    std::vector<SnapshotRecord> out;
    for (const auto& [seq, snap] : v->snapshots) out.push_back(snap);  // std::map: oldest first
    return out;
  }

  absl::Status CommitSnapshot(const SnapshotRecord& next, uint64_t expected_head_seq,
                              std::string_view idempotency_key,
                              const Digest& changes_digest) override {
    CAIRN_RETURN_IF_ERROR(meta_store_errors::CheckFollows(next, expected_head_seq));
    absl::MutexLock lock(&mu_);
    CAIRN_ASSIGN_OR_RETURN(Volume* v, Find(next.volume_id));
    const std::string key(idempotency_key);
    if (!key.empty() && v->keys.contains(key)) {
      return absl::AlreadyExistsError(absl::StrCat("commit key already recorded at snapshot ",
                                                   v->keys.at(key).seq));
    }
    if (v->head != expected_head_seq) {
      return meta_store_errors::HeadMoved(expected_head_seq, v->head);
    }
    if (!v->snapshots.emplace(next.seq, next).second) {
      return absl::AbortedError(absl::StrCat("snapshot ", next.seq, " of volume ",
                                             next.volume_id, " already exists"));
    }
    v->head = next.seq;
    if (!key.empty()) v->keys[key] = RecordedKey{next.seq, next.created_at_ns, changes_digest};
    const int64_t expired_before = next.created_at_ns - kCommitKeyRetentionNs;
    const uint64_t oldest_kept =
        next.seq > kCommitKeysMaxPerVolume ? next.seq - kCommitKeysMaxPerVolume + 1 : 0;
    for (auto it = v->keys.begin(); it != v->keys.end();) {
      auto here = it++;
      if (here->second.created_at_ns < expired_before || here->second.seq < oldest_kept) {
        v->keys.erase(here);
      }
    }
    return absl::OkStatus();
  }

  absl::StatusOr<SnapshotRecord> FindCommit(std::string_view volume_id,
                                            std::string_view idempotency_key,
                                            Digest* changes_digest) override {
    absl::MutexLock lock(&mu_);
    CAIRN_ASSIGN_OR_RETURN(Volume* v, Find(volume_id));
    auto it = v->keys.find(std::string(idempotency_key));
    if (it == v->keys.end()) return absl::NotFoundError("commit key not recorded");
    if (changes_digest != nullptr) *changes_digest = it->second.changes;
    return v->snapshots.at(it->second.seq);
  }

  absl::StatusOr<VolumeRecord> RenewLease(std::string_view volume_id, int64_t now_ns,
                                          int64_t expires_at_ns) override {
    absl::MutexLock lock(&mu_);
    CAIRN_ASSIGN_OR_RETURN(Volume* v, Find(volume_id));
    if (v->record.lease_expires_ns == 0) {
      return absl::FailedPreconditionError(absl::StrCat(
          "volume ", v->record.name, " (", Sv(volume_id), ") is not ephemeral: it has no lease to renew"));
    }
    if (v->record.lease_expires_ns <= now_ns) return LeaseLapsed(v->record);
    v->record.lease_expires_ns = std::max(v->record.lease_expires_ns, expires_at_ns);
    return v->record;
  }

  absl::StatusOr<std::vector<std::string>> ListExpiredLeases(int64_t now_ns) override {
    absl::MutexLock lock(&mu_);
    std::vector<std::pair<int64_t, std::string>> expired;
    for (const auto& [id, v] : volumes_) {
      const int64_t at = v.record.lease_expires_ns;
      if (at != 0 && at <= now_ns) expired.emplace_back(at, id);
    }
    std::sort(expired.begin(), expired.end());
    std::vector<std::string> out;
    for (auto& [at, id] : expired) out.push_back(std::move(id));
    return out;
  }

  absl::Status CheckHealth() override { return absl::OkStatus(); }  // memory does not fail

 private:
  struct RecordedKey {
    uint64_t seq = 0;
    int64_t created_at_ns = 0;  // of the snapshot
    Digest changes;
  };
  struct Volume {
    VolumeRecord record;
    std::map<uint64_t, SnapshotRecord> snapshots;
    uint64_t head = 0;
    absl::flat_hash_map<std::string, RecordedKey> keys;  // by idempotency key
  };

  absl::StatusOr<Volume*> Find(std::string_view id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    auto it = volumes_.find(std::string(id));
    if (it == volumes_.end()) return meta_store_errors::VolumeNotFound(id);
    return &it->second;
  }

  const Volume* FindByName(std::string_view ns, std::string_view name) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    for (const auto& [id, v] : volumes_) {
      if (v.record.ns == ns && v.record.name == name) return &v;
    }
    return nullptr;
  }

  absl::Mutex mu_;
  std::map<std::string, Volume> volumes_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

std::unique_ptr<MetaStore> NewMemMetaStore() { return std::make_unique<MemMetaStore>(); }

}  // namespace cairn
