// fsck: a consistency check of everything stored.
//
// Walks every snapshot of every volume, checks that every referenced
// directory object and chunk exists and authenticates under the volume's
// key, and lists blobs no snapshot references (orphans: harmless, GC
// reclaims them), temporaries left by interrupted writes (debris, GC
// reclaims them too) and blob prefixes of volumes that no longer exist.
// Run it on a data directory no server is using: a write in progress
// shows as a temporary, and an upload whose commit has not landed yet as
// orphans.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/blob_store.h"
#include "core/crypto.h"
#include "core/meta_store.h"

namespace cairn {

struct FsckReport {
  uint64_t volumes = 0;
  uint64_t snapshots = 0;
  uint64_t objects_checked = 0;
  std::vector<std::string> dangling;  // "vo-…/<hex>: referenced by snapshot N at PATH, missing"
  std::vector<std::string> corrupt;   // fails to authenticate or parse
  std::vector<std::string> orphans;   // stored, unreferenced
  std::vector<std::string> temporaries;  // "vo-…/aa/bb/.tmp.…": debris of a crashed write

  // Nothing referenced is missing or damaged. Orphans and temporaries do
  // not count: a crash in the middle of an upload leaves some (D7), and GC
  // reclaims them.
  bool intact() const { return dangling.empty() && corrupt.empty(); }
  // 0: nothing to report; 3: orphans or temporaries only; 4: dangling or
  // corrupt objects.
  // (1 and 2 stay the CLI's "failed to run" and "usage".)
  int ExitCode() const;
  std::string Summary() const;
};

[[nodiscard]] absl::StatusOr<FsckReport> Fsck(MetaStore& meta, BlobStore& blobs,
                                              const MasterKey& master);

}  // namespace cairn
