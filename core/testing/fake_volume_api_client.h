// FakeVolumeApiClient: a VolumeApiClient with no server, for unit tests of
// code that calls the Volume API (the CSI controller, the mounter's client
// side). Test-only (cairn_testing).
//
// It keeps volumes (namespace, name -> ID, C1: a re-created name gets a new
// ID), per-volume data keys, an empty root directory per volume, sealed
// blobs, and a head per volume that each Commit advances by one (the
// change set is recorded, not applied: tests that need C4's merge use the
// real server). FailNext makes the next calls fail, as a server outage or
// an error would.
//
// Thread-safe.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "core/blob_store.h"
#include "core/crypto.h"
#include "core/volume_api_client.h"

namespace cairn {

class FakeVolumeApiClient final : public VolumeApiClient {
 public:
  explicit FakeVolumeApiClient(ClientOptions options = {});

  // The next `count` calls (any method) fail with `status`.
  void FailNext(absl::Status status, int count = 1);
  // Every CommitRequest received, in order.
  std::vector<api::CommitRequest> commits() const;
  // Method names called, in order.
  std::vector<std::string> calls() const;

  absl::StatusOr<api::Volume> CreateVolume(const api::CreateVolumeRequest& request) override;
  absl::StatusOr<api::Volume> GetVolume(const api::VolumeRef& ref) override;
  absl::StatusOr<api::ListVolumesResponse> ListVolumes(std::string_view ns) override;
  absl::StatusOr<api::DeleteVolumeResponse> DeleteVolume(
      const api::DeleteVolumeRequest& request) override;
  absl::StatusOr<api::Volume> RenameVolume(const api::RenameVolumeRequest& request) override;
  absl::StatusOr<std::vector<api::FileEntry>> ListFiles(
      const api::ListFilesRequest& request) override;
  absl::StatusOr<api::FileEntry> Stat(const api::StatRequest& request) override;
  absl::StatusOr<api::CommitResponse> RemoveFile(const api::RemoveFileRequest& request) override;
  absl::StatusOr<api::CommitResponse> CopyFiles(const api::CopyFilesRequest& request) override;
  absl::StatusOr<api::OpenVolumeResponse> OpenVolume(const api::VolumeRef& ref) override;
  absl::StatusOr<api::Snapshot> GetHead(std::string_view volume_id) override;
  absl::StatusOr<api::Snapshot> Commit(const api::CommitRequest& request) override;
  absl::StatusOr<std::vector<std::string>> GetObjects(
      std::string_view volume_id, const std::vector<Digest>& addresses) override;
  absl::StatusOr<BlobRange> GetObjectRange(std::string_view volume_id, const Digest& address,
                                           uint64_t offset, uint64_t length) override;
  absl::StatusOr<std::vector<Digest>> MissingObjects(std::string_view volume_id,
                                                     const std::vector<Digest>& addresses) override;
  // Its blobs are in memory, not an object store: Unimplemented, as a
  // control plane over local blobs answers.
  absl::StatusOr<ObjectUrls> GetObjectUrls(std::string_view volume_id,
                                           const std::vector<Digest>& addresses) override {
    return absl::UnimplementedError("the fake keeps its blobs in memory");
  }
  absl::Status PutObjects(std::string_view volume_id,
                          std::vector<std::pair<Digest, std::string>>& blobs) override;
  absl::StatusOr<std::unique_ptr<PutStream>> OpenPutStream(std::string_view volume_id) override;
  bool WaitForServer(absl::Duration) override { return true; }

 private:
  struct Vol {
    api::Volume volume;
    DataKey key;
    api::Snapshot head;
  };
  class Stream;
  // Records the call; the injected failure if one is due.
  absl::Status Enter(std::string_view method) ABSL_LOCKS_EXCLUDED(mu_);
  absl::StatusOr<Vol*> Find(const api::VolumeRef& ref) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  mutable absl::Mutex mu_;
  std::map<std::string, Vol> volumes_ ABSL_GUARDED_BY(mu_);  // by ID
  std::unique_ptr<BlobStore> blobs_;                         // thread-safe itself
  std::vector<api::CommitRequest> commits_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> calls_ ABSL_GUARDED_BY(mu_);
  absl::Status fail_ ABSL_GUARDED_BY(mu_);
  int fail_count_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t next_id_ ABSL_GUARDED_BY(mu_) = 1;
};

}  // namespace cairn
