#include "core/fsck.h"

#include <memory>
#include <optional>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "core/files.h"
#include "core/object_store.h"
#include "core/path.h"
#include "core/status.h"

namespace cairn {
namespace {

struct Totals {
  uint64_t inodes = 0;
  uint64_t bytes = 0;
};

// Checks one volume. Directory objects are checked once each (snapshots
// share most of them); their computed totals are memoised so every
// snapshot's and every entry's claimed totals can still be verified.
class VolumeChecker {
 public:
  VolumeChecker(ObjectStore& objects, FsckReport& report) : objects_(objects), report_(report) {}

  void CheckSnapshot(const SnapshotRecord& s) {
    seq_ = s.seq;
    std::optional<Totals> t = CheckDirectory(s.root, "/");
    if (t && (t->inodes != s.inodes || t->bytes != s.bytes)) {
      report_.corrupt.push_back(absl::StrCat(objects_.volume_id(), ": snapshot ", s.seq,
                                             " claims ", s.inodes, " inodes and ", s.bytes,
                                             " bytes, tree has ", t->inodes, " and ", t->bytes));
    }
  }

  const absl::flat_hash_set<Digest>& referenced() const { return referenced_; }

 private:
  std::string Where(const Digest& d, const std::string& path) const {
    return absl::StrCat(objects_.volume_id(), "/", d.ToHex(), ": referenced by snapshot ", seq_,
                        " at ", path);
  }

  void Problem(const absl::Status& status, const Digest& d, const std::string& path) {
    if (absl::IsNotFound(status)) {
      report_.dangling.push_back(absl::StrCat(Where(d, path), ", missing"));
    } else {
      report_.corrupt.push_back(absl::StrCat(Where(d, path), ", ", status.message()));
    }
  }

  // Totals of the directory at `address`, or nullopt if it (or something
  // below it) could not be read; problems go to the report.
  std::optional<Totals> CheckDirectory(const Digest& address, const std::string& path) {
    if (auto it = dirs_.find(address); it != dirs_.end()) return it->second;
    referenced_.insert(address);
    ++report_.objects_checked;
    absl::StatusOr<std::shared_ptr<const objects::Directory>> dir = objects_.GetDirectory(address);
    if (!dir.ok()) {
      Problem(dir.status(), address, path);
      dirs_[address] = std::nullopt;
      return std::nullopt;
    }
    Totals totals;
    bool complete = true;
    const std::string* previous = nullptr;
    for (const objects::Entry& e : (*dir)->entries()) {
      std::string child =
          path == "/" ? absl::StrCat("/", e.name()) : absl::StrCat(path, "/", e.name());
      if (previous != nullptr && !(*previous < e.name())) {
        report_.corrupt.push_back(
            absl::StrCat(Where(address, path), ", entries not sorted at ", e.name()));
      }
      previous = &e.name();
      if (!IsValidComponent(e.name())) {
        report_.corrupt.push_back(absl::StrCat(Where(address, path), ", invalid entry name \"",
                                               absl::CHexEscape(e.name()), "\""));
      }
      totals.inodes += 1;
      switch (e.type()) {
        case objects::FILE:
          totals.bytes += e.size();
          CheckChunks(e, child);
          break;
        case objects::DIRECTORY: {
          absl::StatusOr<Digest> tree = Digest::FromRaw(e.tree());
          if (!tree.ok()) {
            report_.corrupt.push_back(
                absl::StrCat(Where(address, child), ", malformed tree address"));
            complete = false;
            break;
          }
          std::optional<Totals> sub = CheckDirectory(*tree, child);
          if (!sub) {
            complete = false;
            break;
          }
          if (sub->inodes != e.subtree_inodes() || sub->bytes != e.subtree_bytes()) {
            report_.corrupt.push_back(absl::StrCat(
                Where(address, child), ", entry claims ", e.subtree_inodes(), " inodes and ",
                e.subtree_bytes(), " bytes below, tree has ", sub->inodes, " and ", sub->bytes));
          }
          totals.inodes += sub->inodes;
          totals.bytes += sub->bytes;
          break;
        }
        case objects::SYMLINK:
        case objects::FIFO:
        case objects::SOCKET:
        case objects::CHAR_DEVICE:
        case objects::BLOCK_DEVICE:
          break;
        default:
          report_.corrupt.push_back(
              absl::StrCat(Where(address, child), ", entry of unknown type ", e.type()));
      }
    }
    std::optional<Totals> result;
    if (complete) result = totals;
    dirs_[address] = result;
    return result;
  }

  void CheckChunks(const objects::Entry& e, const std::string& path) {
    // The layout files.h promises: inline content of exactly `size` bytes,
    // or ceil(size / kChunkSize) chunks, each kChunkSize long but the last.
    // A chunk authenticates under its own address whatever its length, so
    // a wrong length is only visible here (reads of the file would fail).
    const uint64_t n = static_cast<uint64_t>(e.chunks_size());
    // Holes (D28): sorted, aligned, and exactly the chunks wholly in them
    // without an address.
    absl::Status layout = CheckFileLayout(e, path);
    if (!layout.ok()) {
      report_.corrupt.push_back(absl::StrCat(objects_.volume_id(), ": ", layout.message()));
    }
    const bool layout_ok = layout.ok();
    if (n == 0) return;
    const std::vector<Extent> holes = Holes(e);
    for (uint64_t i = 0; i < n; ++i) {
      const std::string& raw = e.chunks(static_cast<int>(i));
      if (raw.empty() && layout_ok) continue;  // a hole: nothing stored
      absl::StatusOr<Digest> d = Digest::FromRaw(raw);
      if (!d.ok()) {
        if (layout_ok) {
          report_.corrupt.push_back(
              absl::StrCat(objects_.volume_id(), ": malformed chunk address in ", path));
        }
        continue;
      }
      if (referenced_.insert(*d).second) {
        ++report_.objects_checked;
        // Reading the chunk authenticates it (GCM tag).
        absl::StatusOr<std::string> chunk = objects_.GetChunk(*d);
        if (!chunk.ok()) {
          Problem(chunk.status(), *d, path);
        } else {
          chunk_sizes_[*d] = chunk->size();
          // Where the file has a hole, the chunk holds zeros (files.h).
          std::string zeroed = holes.empty() ? std::string() : *chunk;
          ZeroHoles(holes, i * kChunkSize, zeroed);
          if (!holes.empty() && zeroed != *chunk) {
            report_.corrupt.push_back(absl::StrCat(Where(*d, path), ", chunk ", i,
                                                   " holds data inside a hole of the file"));
          }
        }
      }
      auto size = chunk_sizes_.find(*d);
      // Unreadable (reported above), or also a directory object's address.
      if (!layout_ok || size == chunk_sizes_.end()) continue;
      const uint64_t want = i + 1 < n ? kChunkSize : e.size() - (n - 1) * kChunkSize;
      if (size->second != want) {
        report_.corrupt.push_back(absl::StrCat(Where(*d, path), ", chunk ", i, " holds ",
                                               size->second, " bytes, expected ", want));
      }
    }
  }

  ObjectStore& objects_;
  FsckReport& report_;
  uint64_t seq_ = 0;
  absl::flat_hash_set<Digest> referenced_;
  absl::flat_hash_map<Digest, std::optional<Totals>> dirs_;
  absl::flat_hash_map<Digest, uint64_t> chunk_sizes_;  // plaintext length of chunks read
};

}  // namespace

int FsckReport::ExitCode() const {
  if (!intact()) return 4;
  if (!orphans.empty() || !temporaries.empty()) return 3;
  return 0;
}

std::string FsckReport::Summary() const {
  return absl::StrCat(volumes, " volumes, ", snapshots, " snapshots, ", objects_checked,
                      " objects checked: ", dangling.size(), " dangling, ", corrupt.size(),
                      " corrupt, ", orphans.size(), " orphans, ", temporaries.size(),
                      " temporaries");
}

absl::StatusOr<FsckReport> Fsck(MetaStore& meta, BlobStore& blobs, const MasterKey& master) {
  FsckReport report;
  CAIRN_ASSIGN_OR_RETURN(std::vector<VolumeRecord> volumes, meta.ListVolumes(""));
  absl::flat_hash_set<std::string> live;
  for (const VolumeRecord& volume : volumes) {
    live.insert(volume.id);
    ++report.volumes;
    absl::StatusOr<DataKey> key = master.Unwrap(volume.id, volume.wrapped_key);
    if (!key.ok()) {
      report.corrupt.push_back(absl::StrCat(volume.id, ": data key does not unwrap: ",
                                            key.status().message()));
      continue;
    }
    ObjectStore objects(&blobs, volume.id, *std::move(key));
    absl::StatusOr<std::vector<SnapshotRecord>> snapshots = meta.ListSnapshots(volume.id);
    if (absl::IsNotFound(snapshots.status())) continue;  // deleted while we ran
    CAIRN_RETURN_IF_ERROR(snapshots.status());
    VolumeChecker checker(objects, report);
    for (const SnapshotRecord& s : *snapshots) {
      ++report.snapshots;
      checker.CheckSnapshot(s);
    }
    CAIRN_RETURN_IF_ERROR(blobs.List(volume.id, [&](const BlobStore::BlobInfo& info) {
      if (!checker.referenced().contains(info.address)) {
        report.orphans.push_back(absl::StrCat(volume.id, "/", info.address.ToHex()));
      }
    }));
  }
  CAIRN_ASSIGN_OR_RETURN(std::vector<std::string> stored, blobs.ListVolumes());
  for (const std::string& id : stored) {
    if (!live.contains(id)) {
      report.orphans.push_back(absl::StrCat(id, "/: blobs of a volume that no longer exists"));
      continue;  // the prefix goes as a whole, temporaries included
    }
    CAIRN_RETURN_IF_ERROR(blobs.ListTemporaries(id, [&](const BlobStore::TempInfo& info) {
      report.temporaries.push_back(absl::StrCat(id, "/", info.name));
    }));
  }
  return report;
}

}  // namespace cairn
