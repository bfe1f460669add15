// VolumeServiceImpl: the gRPC Volume API (proto/volume.proto) over an Engine.
//
// Every call is authenticated first (bearer token in the "authorization"
// metadata, when a token is configured), timed and counted in the metrics,
// and answered with the absl code of its failure cast to gRPC (STYLE.md §2).
// The handlers translate proto to engine calls: the rules live in core
// (rm/cp change sets in core/file_ops.h; uploads, MissingObjects, commits
// and create-if-missing in Engine). File operations resolve the volume,
// read its head through a cached ObjectStore, and commit through
// Engine::Commit, so each mutation is one atomic snapshot; Commit passes the
// request's idempotency key through.
//
// Thread-safe: gRPC calls the handlers from its thread pool. The Engine and
// metrics are not owned and must outlive the service.
#pragma once

#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "core/engine.h"
#include "operator/service_metrics.h"
#include "core/api_convert.h"
#include "proto/volume.grpc.pb.h"

namespace cairn::operator_ {

class VolumeServiceImpl final : public api::VolumeService::Service {
 public:
  // An empty `token` disables authentication (loopback-only servers).
  VolumeServiceImpl(Engine* engine, ServiceMetrics* metrics, std::string token);

  // Sets the per-volume gauges from every volume's head (at startup).
  [[nodiscard]] absl::Status RefreshVolumeGauges();

  grpc::Status CreateVolume(grpc::ServerContext* ctx, const api::CreateVolumeRequest* req,
                            api::Volume* resp) override;
  grpc::Status CloneVolume(grpc::ServerContext* ctx, const api::CloneVolumeRequest* req,
                           api::Volume* resp) override;
  grpc::Status GetVolume(grpc::ServerContext* ctx, const api::GetVolumeRequest* req,
                         api::Volume* resp) override;
  grpc::Status RenewLease(grpc::ServerContext* ctx, const api::RenewLeaseRequest* req,
                          api::Volume* resp) override;
  grpc::Status ListVolumes(grpc::ServerContext* ctx, const api::ListVolumesRequest* req,
                           api::ListVolumesResponse* resp) override;
  grpc::Status DeleteVolume(grpc::ServerContext* ctx, const api::DeleteVolumeRequest* req,
                            api::DeleteVolumeResponse* resp) override;
  grpc::Status RenameVolume(grpc::ServerContext* ctx, const api::RenameVolumeRequest* req,
                            api::Volume* resp) override;

  grpc::Status ListFiles(grpc::ServerContext* ctx, const api::ListFilesRequest* req,
                         grpc::ServerWriter<api::ListFilesResponse>* writer) override;
  grpc::Status Stat(grpc::ServerContext* ctx, const api::StatRequest* req,
                    api::FileEntry* resp) override;
  grpc::Status ReadFile(grpc::ServerContext* ctx, const api::ReadFileRequest* req,
                        grpc::ServerWriter<api::ReadFileResponse>* writer) override;
  grpc::Status RemoveFile(grpc::ServerContext* ctx, const api::RemoveFileRequest* req,
                          api::CommitResponse* resp) override;
  grpc::Status CopyFiles(grpc::ServerContext* ctx, const api::CopyFilesRequest* req,
                         api::CommitResponse* resp) override;

  grpc::Status OpenVolume(grpc::ServerContext* ctx, const api::OpenVolumeRequest* req,
                          api::OpenVolumeResponse* resp) override;
  grpc::Status GetHead(grpc::ServerContext* ctx, const api::GetHeadRequest* req,
                       api::Snapshot* resp) override;
  grpc::Status GetObjects(grpc::ServerContext* ctx, const api::GetObjectsRequest* req,
                          grpc::ServerWriter<api::GetObjectsResponse>* writer) override;
  grpc::Status GetObjectUrls(grpc::ServerContext* ctx, const api::GetObjectUrlsRequest* req,
                             api::GetObjectUrlsResponse* resp) override;
  grpc::Status MissingObjects(grpc::ServerContext* ctx, const api::MissingObjectsRequest* req,
                              api::MissingObjectsResponse* resp) override;
  grpc::Status PutObjects(grpc::ServerContext* ctx,
                          grpc::ServerReader<api::PutObjectsRequest>* reader,
                          api::PutObjectsResponse* resp) override;
  grpc::Status Commit(grpc::ServerContext* ctx, const api::CommitRequest* req,
                      api::CommitResponse* resp) override;

 private:
  template <typename Fn>
  grpc::Status Handle(const char* method, grpc::ServerContext* ctx, Fn&& fn);
  absl::Status CheckAuth(grpc::ServerContext* ctx) const;

  absl::StatusOr<VolumeRecord> Resolve(const api::VolumeRef& ref);
  absl::StatusOr<VolumeRecord> ResolveId(const std::string& volume_id);
  absl::StatusOr<std::shared_ptr<ObjectStore>> Objects(const VolumeRecord& volume);
  absl::StatusOr<api::Volume> Describe(const VolumeRecord& volume);
  // A path in a volume's current head: the volume, its objects, the head,
  // the normalised path and its entry. NotFound names the path and volume.
  struct HeadEntry {
    VolumeRecord volume;
    std::shared_ptr<ObjectStore> objects;
    SnapshotRecord head;
    std::string path;
    objects::Entry entry;
  };
  absl::StatusOr<HeadEntry> LookupInHead(const api::VolumeRef& ref, const std::string& path);
  // Commits, records commit metrics and gauges.
  absl::StatusOr<SnapshotRecord> CommitChanges(const VolumeRecord& volume,
                                               const objects::ChangeSet& changes,
                                               std::string_view idempotency_key = {});
  void SetGauges(const VolumeRecord& volume, const SnapshotRecord& head);
  void DropVolume(const VolumeRecord& volume);

  Engine* const engine_;
  ServiceMetrics* const metrics_;
  const std::string token_;

  absl::Mutex mu_;
  // Per-volume ObjectStores, so parsed directory objects stay cached across
  // calls. Dropped when the volume is deleted.
  absl::flat_hash_map<std::string, std::shared_ptr<ObjectStore>> objects_ ABSL_GUARDED_BY(mu_);
};

// Volume API value conversions (one function per edge).
api::FileEntry ToApiEntry(const std::string& path, const objects::Entry& e);

}  // namespace cairn::operator_
