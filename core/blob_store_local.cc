// LocalBlobStore: blobs as files under root/<volume id>/<aa>/<bb>/<hex>,
// every file operation through an Env (env.h).
//
// Several processes may share a root. Writers never modify a visible file:
// a blob is written to a uniquely named temporary in its final directory
// (".tmp." prefix, so List skips it), synced, renamed over the final name,
// so a reader sees a whole blob or none. Two writers of one address both
// rename; each rename is atomic and either content is a valid sealing of
// that address. Shard directories are created treating AlreadyExists as
// success, so racing creators are harmless.
//
// Durability of a blob needs its data and every directory entry on the
// way to it: the leaf's entry for the blob, bb in aa, aa in the volume
// directory and the volume directory in the root. Whoever creates an entry
// may defer its fsync (a batch does, to Finish), so anyone who finds a blob
// present and lets a commit reference it (Put of a present blob, Touch, a
// batch meeting a present blob) syncs the whole chain itself. fsync of a
// clean directory still costs a cache flush on many filesystems, so the
// store remembers which directories' own entries it has made durable and
// syncs only the leaf (for the blob's entry) once the rest is known.
#include <algorithm>
#include <cerrno>
#include <functional>
#include <memory>
#include <set>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/escaping.h"
#include "absl/synchronization/mutex.h"
#include "absl/strings/str_cat.h"
#include "core/blob_store.h"
#include "core/crypto.h"
#include "core/env.h"
#include "core/path.h"
#include "core/status.h"

namespace cairn {
namespace {

// Debian's abseil 20220623 has its own absl::string_view (not an alias of
// std::string_view), so std::string_view must be converted explicitly.
absl::string_view Sv(std::string_view s) { return absl::string_view(s.data(), s.size()); }

namespace fs = std::filesystem;

absl::Status PastEnd(const Digest& address, uint64_t offset, uint64_t size) {
  return absl::OutOfRangeError(absl::StrCat("offset ", offset, " is past the end of object ",
                                            address.ToHex(), " (", size, " bytes)"));
}

constexpr char kTempPrefix[] = ".tmp.";

bool IsTempName(std::string_view name) { return name.starts_with(kTempPrefix); }

bool IsHexShard(std::string_view name) {
  return name.size() == 2 && std::all_of(name.begin(), name.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

// ListDir where a missing directory simply has no entries.
absl::Status ForEachEntry(Env& env, const fs::path& dir,
                          const std::function<void(const std::string&)>& fn) {
  absl::Status st = env.ListDir(dir, fn);
  if (absl::IsNotFound(st)) return absl::OkStatus();
  return st;
}

absl::Status MkdirIfMissing(Env& env, const fs::path& dir) {
  absl::Status st = env.CreateDir(dir);
  if (st.ok() || absl::IsAlreadyExists(st)) return absl::OkStatus();
  return st;
}

class LocalBlobStore : public BlobStore {
 public:
  LocalBlobStore(fs::path root, Env* env) : root_(std::move(root)), env_(*env) {}

  std::unique_ptr<Batch> NewBatch(std::string_view volume_id) override;

  absl::Status Put(std::string_view volume_id, const Digest& address,
                   std::string_view sealed) override {
    CAIRN_RETURN_IF_ERROR(ValidateVolumeId(volume_id));
    const std::string hex = address.ToHex();
    const fs::path dir = ShardDir(volume_id, hex);
    const fs::path final_path = dir / hex;
    // Present already: content-addressed, so only refresh the mtime (GC's
    // grace period restarts) and make sure the chain to it is durable. If
    // it vanished in between, write it anew.
    absl::Status touched = env_.Touch(final_path);
    if (touched.ok()) return SyncChain(volume_id, dir);
    if (!absl::IsNotFound(touched)) return touched;
    // A concurrent DeleteVolume can remove the directories between mkdir
    // and open; one retry recreates them.
    for (int attempt = 0;; ++attempt) {
      const fs::path vdir = root_ / std::string(volume_id);
      for (const fs::path& d : {vdir, dir.parent_path(), dir}) {
        CAIRN_RETURN_IF_ERROR(MkdirIfMissing(env_, d));
      }
      absl::Status st = WriteBlob(dir, hex, sealed, /*write_once=*/false);
      // The chain is synced even when the directories existed: the process
      // that made them may not have made their entries durable yet.
      if (st.ok()) return SyncChain(volume_id, dir);
      if (!absl::IsNotFound(st) || attempt >= 1) return st;
    }
  }

  // A hard link: the clone shares the file, so no bytes are copied and the
  // blob stays on disk until neither volume references it.
  absl::Status Link(std::string_view from_volume, std::string_view to_volume,
                    const Digest& address) override {
    CAIRN_RETURN_IF_ERROR(ValidateVolumeId(from_volume));
    CAIRN_RETURN_IF_ERROR(ValidateVolumeId(to_volume));
    const std::string hex = address.ToHex();
    const fs::path from = BlobPath(from_volume, address);
    const fs::path dir = ShardDir(to_volume, hex);
    for (const fs::path& d : {root_ / std::string(to_volume), dir.parent_path(), dir}) {
      CAIRN_RETURN_IF_ERROR(MkdirIfMissing(env_, d));
    }
    absl::Status linked = env_.Link(from, dir / hex);
    if (absl::IsNotFound(linked)) return NotFound(from_volume, address);
    if (!linked.ok() && !absl::IsAlreadyExists(linked)) return linked;
    return SyncChain(to_volume, dir);
  }

  absl::StatusOr<std::string> Get(std::string_view volume_id, const Digest& address) override {
    CAIRN_RETURN_IF_ERROR(ValidateVolumeId(volume_id));
    absl::StatusOr<std::string> data = env_.ReadFile(BlobPath(volume_id, address));
    if (absl::IsNotFound(data.status())) return NotFound(volume_id, address);
    return data;
  }

  absl::StatusOr<Range> GetRange(std::string_view volume_id, const Digest& address,
                                 uint64_t offset, uint64_t length) override {
    CAIRN_RETURN_IF_ERROR(ValidateVolumeId(volume_id));
    Range range;
    absl::StatusOr<std::string> data =
        env_.ReadFileRange(BlobPath(volume_id, address), offset, length, &range.total_size);
    if (absl::IsNotFound(data.status())) return NotFound(volume_id, address);
    if (!data.ok()) return data.status();
    if (offset > range.total_size) return PastEnd(address, offset, range.total_size);
    range.data = *std::move(data);
    return range;
  }

  absl::StatusOr<bool> Contains(std::string_view volume_id, const Digest& address) override {
    CAIRN_RETURN_IF_ERROR(ValidateVolumeId(volume_id));
    absl::StatusOr<FileInfo> info = env_.Stat(BlobPath(volume_id, address));
    if (info.ok()) return true;
    if (absl::IsNotFound(info.status())) return false;
    return info.status();
  }

  absl::Status Touch(std::string_view volume_id, const Digest& address) override {
    CAIRN_RETURN_IF_ERROR(ValidateVolumeId(volume_id));
    const fs::path path = BlobPath(volume_id, address);
    // A caller that finds a blob present references it instead of storing
    // it, so the chain to it must be durable now: a concurrent batch
    // (PutObjects) renames blobs in, and creates shard directories, before
    // its directory fsyncs.
    absl::Status touched = env_.Touch(path);
    if (touched.ok()) return SyncChain(volume_id, path.parent_path());
    if (absl::IsNotFound(touched)) return NotFound(volume_id, address);
    return touched;
  }

  absl::Status List(std::string_view volume_id,
                    const std::function<void(const BlobInfo&)>& fn) override {
    CAIRN_RETURN_IF_ERROR(ValidateVolumeId(volume_id));
    return Walk(volume_id, [&](const fs::path& path, const std::string& aa, const std::string& bb,
                               const std::string& name) -> absl::Status {
      // Temporaries start with '.', so FromHex refuses them; so does
      // anything else that is not a blob.
      absl::StatusOr<Digest> digest = Digest::FromHex(name);
      if (!digest.ok()) return absl::OkStatus();
      std::string hex = digest->ToHex();
      if (hex != name || hex.compare(0, 2, aa) != 0 || hex.compare(2, 2, bb) != 0) {
        return absl::OkStatus();
      }
      absl::StatusOr<FileInfo> info = env_.Stat(path);
      // Deleted while we walked: not part of the listing.
      if (absl::IsNotFound(info.status())) return absl::OkStatus();
      CAIRN_RETURN_IF_ERROR(info.status());
      fn(BlobInfo{*digest, info->mtime, info->size});
      return absl::OkStatus();
    });
  }

  absl::Status ListTemporaries(std::string_view volume_id,
                               const std::function<void(const TempInfo&)>& fn) override {
    CAIRN_RETURN_IF_ERROR(ValidateVolumeId(volume_id));
    return Walk(volume_id, [&](const fs::path& path, const std::string& aa, const std::string& bb,
                               const std::string& name) -> absl::Status {
      if (!IsTempName(name)) return absl::OkStatus();
      // One process owns the data directory (D5), so a temporary that is
      // not being written here is debris; one that is must be left alone
      // whatever its age (GC may run with no grace period).
      if (BeingWritten(path)) return absl::OkStatus();
      absl::StatusOr<FileInfo> info = env_.Stat(path);
      if (absl::IsNotFound(info.status())) return absl::OkStatus();  // renamed meanwhile
      CAIRN_RETURN_IF_ERROR(info.status());
      fn(TempInfo{absl::StrCat(aa, "/", bb, "/", name), info->mtime, info->size});
      return absl::OkStatus();
    });
  }

  absl::Status DeleteTemporary(std::string_view volume_id, std::string_view name) override {
    CAIRN_RETURN_IF_ERROR(ValidateVolumeId(volume_id));
    // Only "aa/bb/.tmp.*" as ListTemporaries names them: nothing else can
    // be reached through this call.
    const bool valid = name.size() > 6 && IsHexShard(name.substr(0, 2)) && name[2] == '/' &&
                       IsHexShard(name.substr(3, 2)) && name[5] == '/' &&
                       IsTempName(name.substr(6)) &&
                       name.substr(6).find('/') == std::string_view::npos;
    if (!valid) {
      return absl::InvalidArgumentError(
          absl::StrCat("\"", absl::CHexEscape(Sv(name)), "\" is not a blob temporary"));
    }
    const fs::path path = root_ / std::string(volume_id) / std::string(name);
    if (BeingWritten(path)) {
      return absl::FailedPreconditionError(
          absl::StrCat("temporary ", path.string(), " is being written"));
    }
    absl::Status st = env_.RemoveFile(path);
    if (st.ok() || absl::IsNotFound(st)) return absl::OkStatus();
    return st;
  }

  absl::Status Delete(std::string_view volume_id, const Digest& address) override {
    CAIRN_RETURN_IF_ERROR(ValidateVolumeId(volume_id));
    absl::Status st = env_.RemoveFile(BlobPath(volume_id, address));
    if (st.ok() || absl::IsNotFound(st)) return absl::OkStatus();
    return st;
  }

  absl::StatusOr<std::vector<std::string>> ListVolumes() override {
    std::vector<std::string> out;
    CAIRN_RETURN_IF_ERROR(ForEachEntry(env_, root_, [&](const std::string& name) {
      if (!ValidateVolumeId(name).ok()) return;
      absl::StatusOr<FileInfo> info = env_.Stat(root_ / name);
      if (info.ok() && info->is_dir) out.push_back(name);
    }));
    std::sort(out.begin(), out.end());
    return out;
  }

  absl::Status DeleteVolume(std::string_view volume_id) override {
    CAIRN_RETURN_IF_ERROR(ValidateVolumeId(volume_id));
    ForgetVolume(volume_id);
    return env_.RemoveTree(root_ / std::string(volume_id));
  }

 private:
  friend class LocalBatch;

  fs::path ShardDir(std::string_view volume_id, const std::string& hex) const {
    return root_ / std::string(volume_id) / hex.substr(0, 2) / hex.substr(2, 2);
  }
  fs::path BlobPath(std::string_view volume_id, const Digest& address) const {
    std::string hex = address.ToHex();
    return ShardDir(volume_id, hex) / hex;
  }
  // The directories whose entries lead to a blob in shard `dir`, deepest
  // first: the shard, its parent, the volume directory, the root.
  // The directories to fsync, deepest first, so that a blob in shard `dir`
  // and every entry on the way to it are durable: the shard itself (the
  // blob's entry), and the parent of each of shard, aa and the volume
  // directory whose own entry is not known to be durable yet.
  std::vector<fs::path> Chain(std::string_view volume_id, const fs::path& dir) {
    std::vector<fs::path> out = {dir};
    const fs::path vdir = root_ / std::string(volume_id);
    absl::MutexLock lock(&durable_mu_);
    for (const fs::path& d : {dir, dir.parent_path(), vdir}) {
      if (!durable_.contains(d.string())) out.push_back(d.parent_path());
    }
    return out;
  }
  // After the Chain of `dir` was synced: the entries of the shard, aa and
  // the volume directory are durable.
  void MarkDurable(std::string_view volume_id, const fs::path& dir) {
    absl::MutexLock lock(&durable_mu_);
    // Bounded: forgetting only costs a few extra fsyncs.
    if (durable_.size() > (1u << 20)) durable_.clear();
    for (const fs::path& d : {dir, dir.parent_path(), root_ / std::string(volume_id)}) {
      durable_.insert(d.string());
    }
  }
  absl::Status SyncChain(std::string_view volume_id, const fs::path& dir) {
    for (const fs::path& d : Chain(volume_id, dir)) CAIRN_RETURN_IF_ERROR(env_.SyncDir(d));
    MarkDurable(volume_id, dir);
    return absl::OkStatus();
  }
  void ForgetVolume(std::string_view volume_id) {
    const std::string prefix = (root_ / std::string(volume_id)).string();
    absl::MutexLock lock(&durable_mu_);
    for (auto it = durable_.begin(); it != durable_.end();) {
      auto here = it++;
      if (here->compare(0, prefix.size(), prefix) == 0) durable_.erase(here);
    }
  }

  // Calls fn(path, aa, bb, name) for every file in every shard of the volume.
  absl::Status Walk(std::string_view volume_id,
                    const std::function<absl::Status(const fs::path&, const std::string&,
                                                     const std::string&, const std::string&)>& fn) {
    const fs::path vdir = root_ / std::string(volume_id);
    absl::Status inner;
    absl::Status outer = ForEachEntry(env_, vdir, [&](const std::string& aa) {
      if (!inner.ok() || !IsHexShard(aa)) return;
      const fs::path adir = vdir / aa;
      absl::Status mid = ForEachEntry(env_, adir, [&](const std::string& bb) {
        if (!inner.ok() || !IsHexShard(bb)) return;
        const fs::path bdir = adir / bb;
        absl::Status leaf = ForEachEntry(env_, bdir, [&](const std::string& name) {
          if (inner.ok()) inner = fn(bdir / name, aa, bb, name);
        });
        if (inner.ok() && !leaf.ok()) inner = leaf;
      });
      if (inner.ok() && !mid.ok()) inner = mid;
    });
    CAIRN_RETURN_IF_ERROR(inner);
    return outer;
  }

  static absl::Status NotFound(std::string_view volume_id, const Digest& address) {
    return absl::NotFoundError(
        absl::StrCat("blob ", address.ToHex(), " of volume ", Sv(volume_id), " not found"));
  }

  // Temporary, data durable, renamed into place; the entry is not synced.
  // NotFound if `dir` vanished.
  absl::Status WriteBlob(const fs::path& dir, const std::string& hex, std::string_view sealed,
                         bool write_once) {
    // pid + random: unique across processes and threads without coordination.
    const fs::path tmp = dir / absl::StrCat(kTempPrefix, hex.substr(0, 16), ".", ::getpid(), ".",
                                            absl::BytesToHexString(RandomBytes(8)));
    WritingTemporary writing(this, tmp);
    CAIRN_ASSIGN_OR_RETURN(std::unique_ptr<WritableFile> file,
                           env_.NewWritableFile(tmp, {.write_once = write_once}));
    absl::Status st = file->Append(sealed);
    if (st.ok()) st = file->Sync();
    if (st.ok()) st = file->Close();
    if (st.ok()) {
      st = env_.Rename(tmp, dir / hex);
      if (absl::IsNotFound(st) && env_.Stat(dir).ok()) {
        // The directory is there, so the temporary itself went: removed by
        // hand or by another process, which D5 rules out. Redo the write.
        return absl::AbortedError(absl::StrCat("temporary ", tmp.string(), " of blob ", hex,
                                               " vanished before its rename"));
      }
    }
    if (!st.ok()) {
      file.reset();
      env_.RemoveFile(tmp).IgnoreError();  // best effort; GC removes what stays
    }
    return st;
  }

  // Marks a temporary as being written for its lifetime; ListTemporaries
  // and DeleteTemporary leave such a temporary alone.
  class WritingTemporary {
   public:
    WritingTemporary(LocalBlobStore* store, const fs::path& tmp)
        : store_(store), tmp_(tmp.string()) {
      absl::MutexLock lock(&store_->writing_mu_);
      store_->writing_.insert(tmp_);
    }
    ~WritingTemporary() {
      absl::MutexLock lock(&store_->writing_mu_);
      store_->writing_.erase(tmp_);
    }
    WritingTemporary(const WritingTemporary&) = delete;
    WritingTemporary& operator=(const WritingTemporary&) = delete;

   private:
    LocalBlobStore* const store_;
    const std::string tmp_;
  };

  bool BeingWritten(const fs::path& tmp) {
    absl::MutexLock lock(&writing_mu_);
    return writing_.contains(tmp.string());
  }

  const fs::path root_;
  Env& env_;
  absl::Mutex durable_mu_;
  // Directories whose entry in their parent this store made durable. Only
  // DeleteVolume removes directories, and it forgets them here first.
  absl::flat_hash_set<std::string> durable_ ABSL_GUARDED_BY(durable_mu_);
  absl::Mutex writing_mu_;
  // Paths of the temporaries WriteBlob is writing now.
  absl::flat_hash_set<std::string> writing_ ABSL_GUARDED_BY(writing_mu_);
};

// A batch writes each blob as Put does, temporary + fdatasync + rename, so
// a name only ever shows a whole, durable blob and a crash leaves at most
// one temporary per writer (everything else is a complete orphan blob that
// GC collects). What it defers is the directory side: the entries on the
// way to each blob (mkdir and rename) are fsynced once per directory at
// Finish instead of four fsyncs per blob, and Finish returns only once they
// are durable. Blob data is written with the write-once hint (O_DIRECT), so
// the fdatasync has only metadata left to commit.
class LocalBatch final : public BlobStore::Batch {
 public:
  LocalBatch(LocalBlobStore* store, std::string_view volume_id)
      : store_(store), env_(store->env_), volume_id_(volume_id) {}

  absl::Status Add(const Digest& address, std::string_view sealed) override {
    if (!validated_) {
      CAIRN_RETURN_IF_ERROR(ValidateVolumeId(volume_id_));
      validated_ = true;
    }
    const std::string hex = address.ToHex();
    const fs::path dir = store_->ShardDir(volume_id_, hex);
    // Present already: refresh the mtime, as Put does. The chain to it is
    // synced at Finish too, in case the writer that put it there has not
    // made those entries durable yet.
    absl::Status touched = env_.Touch(dir / hex);
    if (touched.ok()) {
      for (fs::path& d : store_->Chain(volume_id_, dir)) dirs_.insert(std::move(d));
      shards_.insert(dir);
      return absl::OkStatus();
    }
    if (!absl::IsNotFound(touched)) return touched;
    // A concurrent DeleteVolume can remove the directories between mkdir
    // and open; one retry recreates them.
    for (int attempt = 0;; ++attempt) {
      const fs::path vdir = store_->root_ / volume_id_;
      for (const fs::path& d : {vdir, dir.parent_path(), dir}) {
        CAIRN_RETURN_IF_ERROR(MkdirIfMissing(env_, d));
      }
      for (fs::path& d : store_->Chain(volume_id_, dir)) dirs_.insert(std::move(d));
      shards_.insert(dir);
      absl::Status st = store_->WriteBlob(dir, hex, sealed, /*write_once=*/true);
      if (st.ok() || !absl::IsNotFound(st) || attempt >= 1) return st;
    }
  }

  absl::Status Finish() override {
    // Deepest first: a shard's entries, then its parent's, then the root's.
    // (std::set orders a path before its children; reverse order visits
    // every child before its parent.)
    for (auto it = dirs_.rbegin(); it != dirs_.rend(); ++it) {
      CAIRN_RETURN_IF_ERROR(env_.SyncDir(*it));
    }
    for (const fs::path& shard : shards_) store_->MarkDurable(volume_id_, shard);
    dirs_.clear();
    shards_.clear();
    return absl::OkStatus();
  }

 private:
  LocalBlobStore* const store_;
  Env& env_;
  const std::string volume_id_;
  bool validated_ = false;
  std::set<fs::path> dirs_;
  std::set<fs::path> shards_;  // made durable, chain and all, by Finish
};

std::unique_ptr<BlobStore::Batch> LocalBlobStore::NewBatch(std::string_view volume_id) {
  return std::make_unique<LocalBatch>(this, volume_id);
}

}  // namespace

absl::StatusOr<BlobRange> CutRange(const Digest& address, std::string blob, uint64_t offset,
                                   uint64_t length) {
  BlobRange range;
  range.total_size = blob.size();
  if (offset > blob.size()) return PastEnd(address, offset, blob.size());
  if (offset == 0 && length >= blob.size()) {
    range.data = std::move(blob);
  } else {
    range.data = blob.substr(offset, length);
  }
  return range;
}

absl::StatusOr<std::unique_ptr<BlobStore>> OpenLocalBlobStore(const std::filesystem::path& root,
                                                              Env* env) {
  if (env == nullptr) env = PosixEnv();
  absl::Status made = CreateDirsDurable(*env, root);
  if (!made.ok()) {
    return absl::Status(made.code(),
                        absl::StrCat("blob root ", root.string(), ": ", made.message()));
  }
  return std::unique_ptr<BlobStore>(new LocalBlobStore(root, env));
}

}  // namespace cairn
