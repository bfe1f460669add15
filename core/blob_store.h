// BlobStore: where sealed chunks and directory objects live, keyed by
// (volume ID, address). The store never sees plaintext or keys.
//
// Implementations are thread-safe. LocalBlobStore is also safe for several
// processes sharing one root: every write is temp file + fsync + rename +
// fsync(dirs), so a reader sees a whole blob or none (shared/STYLE.md §6).
// A crash in the middle of a write can leave a temporary behind; stores
// that can list them (ListTemporaries) let fsck report and GC remove them.
#pragma once

#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/digest.h"

namespace cairn {

// Part of a blob (BlobStore::GetRange).
struct BlobRange {
  std::string data;
  uint64_t total_size = 0;
};

// The range of `blob` that GetRange returns (OutOfRange past its end).
[[nodiscard]] absl::StatusOr<BlobRange> CutRange(const Digest& address, std::string blob,
                                                 uint64_t offset, uint64_t length);

class BlobStore {
 public:
  struct BlobInfo {
    Digest address;
    std::chrono::system_clock::time_point mtime;
    uint64_t size = 0;
  };

  virtual ~BlobStore() = default;

  // Stores a blob. Storing an address that is already present succeeds and
  // refreshes its mtime (GC's grace period counts from there).
  [[nodiscard]] virtual absl::Status Put(std::string_view volume_id, const Digest& address,
                                         std::string_view sealed) = 0;
  // NotFound if absent.
  [[nodiscard]] virtual absl::StatusOr<std::string> Get(std::string_view volume_id,
                                                        const Digest& address) = 0;
  // Part of a blob: bytes [offset, offset + length) clipped at its end,
  // and the blob's total size (a reader needs it to tell the layout of a
  // sealed object, core/crypto.h). NotFound if absent; OutOfRange if
  // `offset` is past the end. The default reads the whole blob; stores
  // that can read a part (pread, an HTTP range) override it.
  using Range = BlobRange;
  [[nodiscard]] virtual absl::StatusOr<Range> GetRange(std::string_view volume_id,
                                                       const Digest& address, uint64_t offset,
                                                       uint64_t length) {
    absl::StatusOr<std::string> all = Get(volume_id, address);
    if (!all.ok()) return all.status();
    return CutRange(address, *std::move(all), offset, length);
  }
  [[nodiscard]] virtual absl::StatusOr<bool> Contains(std::string_view volume_id,
                                                      const Digest& address) = 0;
  // Refreshes the mtime of a present blob; NotFound if absent.
  [[nodiscard]] virtual absl::Status Touch(std::string_view volume_id, const Digest& address) = 0;
  // Calls `fn` for every blob of the volume, in no particular order.
  [[nodiscard]] virtual absl::Status List(std::string_view volume_id,
                                          const std::function<void(const BlobInfo&)>& fn) = 0;
  // A write's leftover after a crash (never a blob): `name` identifies it
  // within the volume for DeleteTemporary.
  struct TempInfo {
    std::string name;
    std::chrono::system_clock::time_point mtime;
    uint64_t size = 0;
  };
  // Calls `fn` for every temporary of the volume, except those this store
  // object is writing right now (one process owns a data directory, D5, so
  // the rest are debris of writes that died; GC still waits out its grace
  // period). Stores that never leave any have none (the default).
  [[nodiscard]] virtual absl::Status ListTemporaries(
      std::string_view volume_id, const std::function<void(const TempInfo&)>& fn) {
    return absl::OkStatus();
  }
  // Removes a temporary ListTemporaries named; missing is OK. InvalidArgument
  // for a name that is not a temporary, FailedPrecondition for one being
  // written. A write whose temporary vanishes before its rename fails with
  // Aborted naming the temporary.
  [[nodiscard]] virtual absl::Status DeleteTemporary(std::string_view volume_id,
                                                     std::string_view name) {
    return absl::InvalidArgumentError("this blob store keeps no temporaries");
  }
  // Missing is OK.
  [[nodiscard]] virtual absl::Status Delete(std::string_view volume_id, const Digest& address) = 0;
  // Volume IDs that have at least one blob (or an empty prefix left behind).
  [[nodiscard]] virtual absl::StatusOr<std::vector<std::string>> ListVolumes() = 0;
  // Removes every blob of the volume. Missing is OK.
  [[nodiscard]] virtual absl::Status DeleteVolume(std::string_view volume_id) = 0;

  // Makes blob `address` of `from_volume` a blob of `to_volume` as well, so
  // that a clone owns its source's sealed blobs and outlives the source.
  // Durable on return, like Put; NotFound if the source blob is absent.
  // The default copies the sealed bytes; stores that can share storage
  // (hard links, a server-side copy) override it.
  [[nodiscard]] virtual absl::Status Link(std::string_view from_volume,
                                          std::string_view to_volume, const Digest& address) {
    absl::StatusOr<std::string> sealed = Get(from_volume, address);
    if (!sealed.ok()) return sealed.status();
    return Put(to_volume, address, *sealed);
  }

  // Several Puts sharing one durability point. Added blobs may stay
  // invisible (and not durable) until Finish; once Finish returns OK every
  // one of them is stored exactly as if Put had been called (visible, whole,
  // durable). A reader never sees a blob half-written at any time. A batch
  // dropped without Finish (or whose Finish failed) leaves each blob stored
  // or absent. Not thread-safe: one batch per writer.
  class Batch {
   public:
    virtual ~Batch() = default;
    [[nodiscard]] virtual absl::Status Add(const Digest& address, std::string_view sealed) = 0;
    [[nodiscard]] virtual absl::Status Finish() = 0;
  };
  // The default batch calls Put for each blob (durable at once).
  [[nodiscard]] virtual std::unique_ptr<Batch> NewBatch(std::string_view volume_id) {
    class PutEach final : public Batch {
     public:
      PutEach(BlobStore* store, std::string_view volume_id)
          : store_(store), volume_id_(volume_id) {}
      absl::Status Add(const Digest& address, std::string_view sealed) override {
        return store_->Put(volume_id_, address, sealed);
      }
      absl::Status Finish() override { return absl::OkStatus(); }

     private:
      BlobStore* const store_;
      const std::string volume_id_;
    };
    return std::make_unique<PutEach>(this, volume_id);
  }
};

class Env;

// Blobs under `root`/<volume id>/<aa>/<bb>/<hex address>, temporaries as
// <aa>/<bb>/.tmp.* beside them. Creates `root` durably. Every file operation
// goes through `env` (not owned, must outlive the store; null: PosixEnv()).
// A Touch, or a Put or batch Add of a present blob, makes the directory
// entries leading to that blob durable before it returns (or before Finish
// does), so a commit may reference a blob another writer's unfinished batch
// stored.
[[nodiscard]] absl::StatusOr<std::unique_ptr<BlobStore>> OpenLocalBlobStore(
    const std::filesystem::path& root, Env* env = nullptr);

}  // namespace cairn
