// The plugin's durable state under --state-dir: what the node has published
// (so a restarted plugin re-adopts its mounters and can still unpublish them
// with a final commit) and what the controller has provisioned (request
// name -> Cairn volume, its parameters and deletion policy, so CreateVolume
// is idempotent and DeleteVolume removes only what the driver created with
// policy Delete).
//
// StateFile stores one JSON document; Save writes a temporary, fsyncs it,
// renames it over the old file and fsyncs the directory, so a crash leaves
// either the old or the new state, never a mix. Not thread-safe: the
// services serialise access with their own mutex.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "csi/mounts.h"

namespace cairn::csi {

struct Publication {
  std::string volume_id;     // as the CO sent it
  std::string cairn_id;      // the resolved Cairn volume ID (vo-…)
  std::string ns;
  std::string target;
  bool read_only = false;
  bool single_writer = false;  // SINGLE_NODE_SINGLE_WRITER: no second publish
  std::string fingerprint;   // the arguments that must match on a repeat call
  MounterId mounter;         // pod mode: the holder and the mounter pod
  std::string log_file;
  // The mounter's arguments (LaunchSpec::args), recorded in pod mode so a
  // mounter pod can be created again (csi/mount_pods.h).
  std::vector<std::string> mounter_args;
};

struct Provisioned {
  std::string request_name;
  std::string volume_id;     // vo-…
  std::string ns;
  std::string name;
  std::string fingerprint;   // parameters + capacity; a mismatch is ALREADY_EXISTS
  int64_t capacity_bytes = 0;
  bool created = false;      // the driver created the Cairn volume
  bool delete_on_delete = false;  // deletionPolicy Delete
  std::string source;        // content source, "" / "snapshot:ID" / "volume:ID"
};

// A CSI snapshot is a clone of its source's head in the plugin's own
// namespace (kSnapshotNamespace): O(blobs) links, nothing re-sealed, and it
// outlives its source like any clone (docs/decisions.md D12).
struct SnapshotEntry {
  std::string request_name;
  std::string snapshot_id;        // "snap-" + the clone's volume ID
  std::string source_volume_id;   // vo-…
  int64_t created_at_ns = 0;
  int64_t size_bytes = 0;
};

struct PluginState {
  std::map<std::string, Publication> publications;  // by target path
  std::map<std::string, Provisioned> provisioned;   // by request name
  std::map<std::string, SnapshotEntry> snapshots;   // by request name
};

class StateFile {
 public:
  explicit StateFile(std::filesystem::path path) : path_(std::move(path)) {}
  // A missing file is the empty state; a damaged one is DataLoss.
  [[nodiscard]] absl::StatusOr<PluginState> Load() const;
  [[nodiscard]] absl::Status Save(const PluginState& state) const;
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

}  // namespace cairn::csi
