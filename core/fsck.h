// fsck: a consistency check of everything stored.
//
// Walks every snapshot of every volume, checks that every referenced
// directory object and chunk exists and authenticates under the volume's
// key, and lists blobs no snapshot references (orphans: harmless, GC
// reclaims them) and blob prefixes of volumes that no longer exist.
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

  // Nothing referenced is missing or damaged. Orphans do not count: a
  // crash in the middle of an upload leaves some, and GC reclaims them.
  bool intact() const { return dangling.empty() && corrupt.empty(); }
  // 0: nothing to report; 3: orphans only; 4: dangling or corrupt objects.
  // (1 and 2 stay the CLI's "failed to run" and "usage".)
  int ExitCode() const;
  std::string Summary() const;
};

[[nodiscard]] absl::StatusOr<FsckReport> Fsck(MetaStore& meta, BlobStore& blobs,
                                              const MasterKey& master);

}  // namespace cairn
