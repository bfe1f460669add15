// EngineVolumeClient: a VolumeClient for unit tests of the mounter library,
// backed by an in-process core Engine over in-memory stores. It answers like
// the control plane (the Engine is the one the server runs), records the
// idempotency keys it is sent and deduplicates by them as the server does
// (through the Engine),
// and lets a test intercept commits and blob reads to force an
// interleaving or a failure. Test-only (cairn_mounter_testing).
//
// Thread-safe; hooks are called without internal locks held, from the
// calling thread, and must be set before the client is shared.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "core/blob_store.h"
#include "core/engine.h"
#include "core/meta_store.h"
#include "mounter/volume_client.h"

namespace cairn::mounter::testing {

class EngineVolumeClient final : public VolumeClient {
 public:
  EngineVolumeClient();
  ~EngineVolumeClient() override;

  // Creates a volume in namespace "default"; returns its OpenVolume answer.
  absl::StatusOr<api::OpenVolumeResponse> CreateVolume(const std::string& name, int version = 2,
                                                       std::optional<Limits> limits = {});

  absl::StatusOr<api::OpenVolumeResponse> Open(const api::VolumeRef& ref) override;
  absl::StatusOr<api::Snapshot> Head(std::string_view volume_id) override;
  absl::StatusOr<api::Snapshot> Commit(std::string_view volume_id, uint64_t base_seq,
                                       const objects::ChangeSet& changes,
                                       std::string_view idempotency_key) override;
  BlobStore* blobs() override { return &blobs_; }

  Engine& engine() { return *engine_; }

  // Called at the start of every Commit; a non-OK status is returned
  // instead of committing. `applied` = true: commit first, then return the
  // status (a reply lost after the server applied it).
  struct CommitFault {
    absl::Status status;
    bool applied = false;
  };
  std::function<CommitFault(const objects::ChangeSet&)> on_commit;
  // Called before every blob Get and GetRange (after the commit hook's
  // thread released).
  std::function<void(const Digest&)> on_get;

  // Keys of every Commit call, in order (empty strings included).
  std::vector<std::string> keys() const;
  int commit_calls() const;

 private:
  class HookedBlobs final : public BlobStore {
   public:
    explicit HookedBlobs(EngineVolumeClient* owner) : owner_(owner) {}
    absl::Status Put(std::string_view v, const Digest& a, std::string_view s) override;
    absl::StatusOr<std::string> Get(std::string_view v, const Digest& a) override;
    absl::StatusOr<Range> GetRange(std::string_view v, const Digest& a, uint64_t offset,
                                   uint64_t length) override;
    absl::StatusOr<bool> Contains(std::string_view v, const Digest& a) override;
    absl::Status Touch(std::string_view v, const Digest& a) override;
    absl::Status List(std::string_view v, const std::function<void(const BlobInfo&)>& fn) override;
    absl::Status Delete(std::string_view v, const Digest& a) override;
    absl::StatusOr<std::vector<std::string>> ListVolumes() override;
    absl::Status DeleteVolume(std::string_view v) override;

   private:
    EngineVolumeClient* const owner_;
  };

  absl::StatusOr<api::OpenVolumeResponse> Describe(const VolumeRecord& volume);

  std::unique_ptr<MetaStore> meta_;
  std::unique_ptr<BlobStore> store_;
  std::unique_ptr<Engine> engine_;
  HookedBlobs blobs_{this};
  mutable absl::Mutex mu_;
  std::vector<std::string> keys_ ABSL_GUARDED_BY(mu_);
};

}  // namespace cairn::mounter::testing
