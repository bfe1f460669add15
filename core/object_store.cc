#include "core/object_store.h"

#include <list>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "core/status.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"

namespace cairn {
namespace {

// Parsed directories kept per ObjectStore. A commit touches a handful of
// directories per changed path, and a mount revisits the same few; a
// thousand covers both without letting a volume walk (fsck, GC) grow memory
// without bound.
constexpr size_t kDirectoryCacheEntries = 1024;

// Deterministic serialization: the address of a directory must depend only
// on its content, or identical trees would not dedup and the same commit
// replayed would produce a different root.
std::string SerializeDeterministic(const objects::Directory& dir) {
  std::string out;
  {
    google::protobuf::io::StringOutputStream stream(&out);
    google::protobuf::io::CodedOutputStream coded(&stream);
    coded.SetSerializationDeterministic(true);
    dir.SerializeToCodedStream(&coded);
  }
  return out;
}

// Stores `sealed` under `address` unless it is already there. An existing
// blob is touched rather than skipped silently so that GC's grace period
// restarts: the caller is about to reference it.
absl::Status PutIfAbsent(BlobStore& blobs, std::string_view volume_id, const Digest& address,
                         const DataKey& key, std::string_view plaintext) {
  absl::Status touched = blobs.Touch(volume_id, address);
  if (touched.ok()) return absl::OkStatus();
  if (!absl::IsNotFound(touched)) return touched;
  return blobs.Put(volume_id, address, key.Seal(address, plaintext));
}

// The oldest format that carries everything `dir` uses: 3 for holes
// (sparse files), 2 for POSIX identity and special files, else 0 (the
// encoding of the first builds, byte for byte).
uint32_t FormatOf(const objects::Directory& dir) {
  uint32_t format = dir.has_root() ? 2 : 0;
  for (const objects::Entry& e : dir.entries()) {
    if (e.holes_size() != 0) return 3;
    if (e.has_uid() || e.has_gid() || e.atime_ns() != 0 || e.ctime_ns() != 0 || e.rdev() != 0 || e.has_subdirs() || e.has_nlink() ||
        e.type() > objects::SYMLINK) {
      format = 2;
    }
  }
  return format;
}

}  // namespace

struct ObjectStore::Cache {
  using Value = std::shared_ptr<const objects::Directory>;
  absl::Mutex mu;
  // Most recently used at the front.
  std::list<std::pair<Digest, Value>> lru ABSL_GUARDED_BY(mu);
  absl::flat_hash_map<Digest, std::list<std::pair<Digest, Value>>::iterator> index
      ABSL_GUARDED_BY(mu);

  Value Find(const Digest& address) {
    absl::MutexLock lock(&mu);
    auto it = index.find(address);
    if (it == index.end()) return nullptr;
    lru.splice(lru.begin(), lru, it->second);
    return it->second->second;
  }

  void Insert(const Digest& address, Value value) {
    absl::MutexLock lock(&mu);
    auto it = index.find(address);
    if (it != index.end()) {
      lru.splice(lru.begin(), lru, it->second);
      return;
    }
    lru.emplace_front(address, std::move(value));
    index[address] = lru.begin();
    while (lru.size() > kDirectoryCacheEntries) {
      index.erase(lru.back().first);
      lru.pop_back();
    }
  }
};

ObjectStore::ObjectStore(BlobStore* blobs, std::string volume_id, DataKey key)
    : blobs_(blobs),
      volume_id_(std::move(volume_id)),
      key_(std::move(key)),
      cache_(std::make_unique<Cache>()) {}

ObjectStore::~ObjectStore() = default;

absl::StatusOr<Digest> ObjectStore::PutChunk(std::string_view plaintext) {
  Digest address = key_.Address(plaintext);
  CAIRN_RETURN_IF_ERROR(PutIfAbsent(*blobs_, volume_id_, address, key_, plaintext));
  return address;
}

absl::StatusOr<Digest> ObjectStore::PutChunk(std::string_view plaintext, BlobStore::Batch& batch) {
  Digest address = key_.Address(plaintext);
  absl::Status touched = blobs_->Touch(volume_id_, address);
  if (touched.ok()) return address;
  if (!absl::IsNotFound(touched)) return touched;
  CAIRN_RETURN_IF_ERROR(batch.Add(address, key_.Seal(address, plaintext)));
  return address;
}

absl::StatusOr<std::string> ObjectStore::GetChunk(const Digest& address) {
  CAIRN_ASSIGN_OR_RETURN(std::string sealed, blobs_->Get(volume_id_, address));
  absl::StatusOr<std::string> plain = key_.Open(address, sealed);
  if (!plain.ok()) {
    return absl::DataLossError(absl::StrCat("object ", address.ToHex(), " of volume ", volume_id_,
                                            " fails to authenticate: ", plain.status().message()));
  }
  return plain;
}

absl::StatusOr<Digest> ObjectStore::PutDirectory(const objects::Directory& dir) {
  for (int i = 0; i < dir.entries_size(); ++i) {
    const std::string& name = dir.entries(i).name();
    if (name.empty()) return absl::InvalidArgumentError("directory entry with an empty name");
    if (i > 0 && !(dir.entries(i - 1).name() < name)) {
      return absl::InvalidArgumentError(
          absl::StrCat("directory entries not sorted and unique at \"", name, "\""));
    }
  }
  auto stored = std::make_shared<objects::Directory>(dir);
  stored->set_format(FormatOf(dir));
  std::string plaintext = SerializeDeterministic(*stored);
  Digest address = key_.Address(plaintext);
  CAIRN_RETURN_IF_ERROR(PutIfAbsent(*blobs_, volume_id_, address, key_, plaintext));
  cache_->Insert(address, std::move(stored));
  return address;
}

absl::StatusOr<std::shared_ptr<const objects::Directory>> ObjectStore::GetDirectory(
    const Digest& address) {
  if (auto cached = cache_->Find(address)) return cached;
  CAIRN_ASSIGN_OR_RETURN(std::string plaintext, GetChunk(address));
  auto dir = std::make_shared<objects::Directory>();
  if (!dir->ParseFromString(plaintext)) {
    return absl::DataLossError(absl::StrCat("object ", address.ToHex(), " of volume ", volume_id_,
                                            " is not a directory object"));
  }
  if (dir->format() > kDirectoryFormat) {
    return absl::FailedPreconditionError(absl::StrCat(
        "directory object ", address.ToHex(), " of volume ", volume_id_, " has format ",
        dir->format(), ", newer than this build reads (", kDirectoryFormat,
        "): upgrade Cairn to read this volume"));
  }
  std::shared_ptr<const objects::Directory> result = std::move(dir);
  cache_->Insert(address, result);
  return result;
}

Digest ObjectStore::EmptyDirectoryAddress() const {
  return key_.Address(SerializeDeterministic(objects::Directory()));
}

}  // namespace cairn
