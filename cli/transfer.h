// put and get: moving files between the local filesystem and a volume.
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

#include <string>

#include "absl/status/status.h"
#include "cli/client.h"

namespace cairn::cli {

struct PutRequest {
  std::string volume;
  std::string local;
  std::string remote = "/";  // ending in '/': the local basename is appended
  bool force = false;        // replace existing files (never directories)
};
[[nodiscard]] absl::Status Put(Client& client, const PutRequest& request);

struct GetRequest {
  std::string volume;
  std::string remote;
  std::string dest = ".";  // "-": the file's bytes to stdout
  bool force = false;      // overwrite existing local files
};
[[nodiscard]] absl::Status Get(Client& client, const GetRequest& request);

}  // namespace cairn::cli
