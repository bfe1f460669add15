// Put and Get: moving files between the local filesystem and a volume, the
// parallel batched uploader and downloader every client shares.
//
// Data is sealed and opened here, on the client (the volume's data key
// comes from OpenVolume), and moves as sealed objects through
// PutObjects/GetObjects, several chunks in flight on worker threads.
//
// put uploads every chunk first and then makes ONE commit of all the files
// (an atomic multi-file change): if anything fails or the process dies
// mid-way, only unreferenced blobs remain (garbage for GC) and nothing
// shows in the volume. Chunks the server already holds are not re-sent, so
// retrying a failed put resumes cheaply.
//
// get writes each file to a temporary beside its destination and renames
// it into place, so a destination is never seen half-written.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/volume_api_client.h"

namespace cairn {

// What a transfer reports while it runs (a progress bar, logs). Called from
// worker threads: Add must be thread-safe; Begin and End come from the
// calling thread. Every method has a no-op default.
class TransferObserver {
 public:
  virtual ~TransferObserver() = default;
  // Once, when the size of the transfer is known.
  virtual void Begin(std::string_view label, uint64_t total_bytes) {}
  virtual void Add(uint64_t bytes) {}
  virtual void End() {}
  // A local entry put leaves out (a FIFO, a socket, a device).
  virtual void Skipped(const std::string& path, const absl::Status& why) {}
};

struct TransferStats {
  size_t files = 0;  // files, symlinks (directories not counted)
  uint64_t bytes = 0;
};

struct PutRequest {
  std::string volume;
  std::string local;
  std::string remote = "/";  // ending in '/': the local basename is appended
  bool force = false;        // replace existing files (never directories)
  TransferObserver* observer = nullptr;  // optional; must outlive the call
};
// `remote` is where the local path landed, as "VOLUME:/path".
[[nodiscard]] absl::StatusOr<TransferStats> Put(VolumeApiClient& client, const PutRequest& request,
                                                std::string* remote = nullptr);

struct GetRequest {
  std::string volume;
  std::string remote;
  std::string dest = ".";  // "-": the file's bytes to stdout
  bool force = false;      // overwrite existing local files
  TransferObserver* observer = nullptr;  // optional; must outlive the call
};
[[nodiscard]] absl::StatusOr<TransferStats> Get(VolumeApiClient& client, const GetRequest& request);

// Workers for transfers: CAIRN_TRANSFER_THREADS, else 4 per core (at least
// 8): they overlap hashing and sealing with the server's writes.
size_t TransferWorkerCount();

}  // namespace cairn
