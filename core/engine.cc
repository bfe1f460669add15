#include "core/engine.h"

#include <algorithm>
#include <mutex>
#include <random>
#include <thread>
#include <type_traits>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "core/files.h"
#include "core/log.h"
#include "core/path.h"
#include "core/status.h"
#include "core/tree.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"

namespace cairn {
namespace {

// absl 20220623 on Debian keeps its own string_view type; bridge once.
absl::string_view Sv(std::string_view s) { return absl::string_view(s.data(), s.size()); }

// A commit that keeps losing the head CAS to others is retried this often
// before giving up with Aborted; with hundreds of writers each attempt only
// has to beat the others once.
constexpr int kMaxCommitAttempts = 1000;

int64_t NowNs() { return absl::ToUnixNanos(absl::Now()); }

// Backoff between lost CAS rounds: none for the first few (the usual case is
// one concurrent writer), then jittered and growing to spread a herd.
void Backoff(int attempt) {
  if (attempt < 3) return;
  thread_local std::minstd_rand rng(std::random_device{}());
  int cap_us = std::min(50'000, 200 * (attempt - 2));
  std::uniform_int_distribution<int> dist(0, cap_us);
  std::this_thread::sleep_for(std::chrono::microseconds(dist(rng)));
}

absl::StatusOr<std::string> NormalizeChangePath(std::string_view path, int index) {
  absl::StatusOr<std::string> n = NormalizePath(path);
  if (!n.ok()) {
    return absl::Status(n.status().code(),
                        absl::StrCat("change ", index, ": ", n.status().message()));
  }
  return n;
}

// Reachability over every snapshot of one volume. Directory objects shared
// between snapshots are walked once. `walked` is kept apart from
// `reachable`: a file chunk can have the very bytes (and so the address) of
// a directory object, and must not stop that directory from being walked.
absl::Status MarkReachable(ObjectStore& objects, const Digest& dir_address,
                           absl::flat_hash_set<Digest>& walked,
                           absl::flat_hash_set<Digest>& reachable) {
  if (!walked.insert(dir_address).second) return absl::OkStatus();
  reachable.insert(dir_address);
  CAIRN_ASSIGN_OR_RETURN(std::shared_ptr<const objects::Directory> dir,
                         objects.GetDirectory(dir_address));
  for (const objects::Entry& e : dir->entries()) {
    CAIRN_ASSIGN_OR_RETURN(std::vector<Digest> chunks, StoredChunks(e));
    reachable.insert(chunks.begin(), chunks.end());
    if (e.type() == objects::DIRECTORY) {
      CAIRN_ASSIGN_OR_RETURN(Digest tree, Digest::FromRaw(e.tree()));
      CAIRN_RETURN_IF_ERROR(MarkReachable(objects, tree, walked, reachable));
    }
  }
  return absl::OkStatus();
}

// Same bytes for the same changes: what an idempotency key is recorded with.
std::string SerializeDeterministic(const objects::ChangeSet& changes) {
  std::string out;
  {
    google::protobuf::io::StringOutputStream stream(&out);
    google::protobuf::io::CodedOutputStream coded(&stream);
    coded.SetSerializationDeterministic(true);
    changes.SerializeToCodedStream(&coded);
  }
  return out;
}

absl::Status ValidateLease(absl::Duration lease) {
  if (lease < absl::Seconds(1) || lease > Engine::kMaxLease) {
    return absl::InvalidArgumentError(
        absl::StrCat("a lease must be between 1 s and ", absl::FormatDuration(Engine::kMaxLease),
                     ", got ", absl::FormatDuration(lease)));
  }
  return absl::OkStatus();
}

}  // namespace

std::string NewVolumeId() {
  static constexpr char kAlphabet[] =
      "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
  std::string id = "vo-";
  while (id.size() < 3 + 22) {
    for (unsigned char b : RandomBytes(32)) {
      // Rejection sampling keeps the 62 symbols equally likely.
      if (b >= 248) continue;
      id.push_back(kAlphabet[b % 62]);
      if (id.size() == 3 + 22) break;
    }
  }
  return id;
}

Engine::Engine(MetaStore* meta, BlobStore* blobs, MasterKey master)
    : meta_(meta), blobs_(blobs), master_(std::move(master)) {}

absl::StatusOr<VolumeRecord> Engine::CreateVolume(std::string_view ns, std::string_view name,
                                                  int version, std::optional<Limits> limits) {
  return CreateVolumeRecord(ns, name, version, limits, /*lease=*/std::nullopt);
}

absl::StatusOr<VolumeRecord> Engine::CreateEphemeralVolume(std::string_view ns, int version,
                                                           absl::Duration lease,
                                                           std::optional<Limits> limits) {
  CAIRN_RETURN_IF_ERROR(ValidateLease(lease));
  return CreateVolumeRecord(ns, /*name=*/{}, version, limits, lease);
}

absl::StatusOr<VolumeRecord> Engine::RenewLease(std::string_view id, absl::Duration lease) {
  CAIRN_RETURN_IF_ERROR(ValidateLease(lease));
  const absl::Time now = absl::Now();
  return meta_->RenewLease(id, absl::ToUnixNanos(now), absl::ToUnixNanos(now + lease));
}

absl::StatusOr<uint64_t> Engine::CollectExpiredVolumes() {
  CAIRN_ASSIGN_OR_RETURN(std::vector<std::string> expired, meta_->ListExpiredLeases(NowNs()));
  uint64_t deleted = 0;
  for (const std::string& id : expired) {
    absl::Status s = DeleteVolumeById(id);
    if (absl::IsNotFound(s)) continue;  // deleted meanwhile by a client
    CAIRN_RETURN_IF_ERROR(s);
    ++deleted;
  }
  return deleted;
}

absl::StatusOr<VolumeRecord> Engine::CreateVolumeRecord(std::string_view ns,
                                                        std::string_view name, int version,
                                                        std::optional<Limits> limits,
                                                        std::optional<absl::Duration> lease) {
  CAIRN_RETURN_IF_ERROR(ValidateNamespace(ns));
  if (!lease) CAIRN_RETURN_IF_ERROR(ValidateVolumeName(name));
  if (version != 1 && version != 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("volume version must be 1 or 2, got ", version));
  }
  std::string space = NamespaceOrDefault(ns);
  if (!lease && meta_->GetVolumeByName(space, name).ok()) {
    return absl::AlreadyExistsError(
        absl::StrCat("volume ", Sv(name), " already exists in namespace ", space));
  }

  VolumeRecord volume;
  volume.id = NewVolumeId();
  volume.ns = space;
  // An ephemeral volume is anonymous: its name only has to be unique.
  volume.name = lease ? absl::StrCat("ephemeral-", volume.id.substr(3)) : std::string(name);
  volume.version = version;
  volume.created_at_ns = NowNs();
  volume.limits = limits.value_or(DefaultLimits(version));
  if (lease) volume.lease_expires_ns = absl::ToUnixNanos(absl::Now() + *lease);
  DataKey key = DataKey::Generate();
  volume.wrapped_key = master_.Wrap(volume.id, key);

  // Shared with commits: GC purges blob prefixes of volumes it cannot find
  // in the MetaStore, which this one is not until CreateVolume returns.
  std::shared_lock gc_lock(gc_mu_);
  CAIRN_ASSIGN_OR_RETURN(auto store_gc_lock, meta_->LockGc(MetaStore::GcLockMode::kShared));
  ObjectStore objects(blobs_, volume.id, std::move(key));
  CAIRN_ASSIGN_OR_RETURN(Digest root, objects.PutDirectory(objects::Directory()));
  SnapshotRecord initial;
  initial.volume_id = volume.id;
  initial.seq = 0;
  initial.root = root;
  initial.created_at_ns = volume.created_at_ns;
  absl::Status created = meta_->CreateVolume(volume, initial);
  if (absl::IsAlreadyExists(created)) {
    // Lost a race for the name; the root blob written above is garbage.
    return absl::AlreadyExistsError(
        absl::StrCat("volume ", Sv(name), " already exists in namespace ", space));
  }
  CAIRN_RETURN_IF_ERROR(created);
  CAIRN_LOG_INFO("created %svolume %s/%s (%s, version %d)", lease ? "ephemeral " : "", space,
                 volume.name, volume.id, version);
  return volume;
}

absl::StatusOr<Limits> TightenLimits(int version, const Limits& requested) {
  if (version != 1 && version != 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("volume version must be 1 or 2, got ", version));
  }
  Limits limits = DefaultLimits(version);
  auto tighten = [&](auto& limit, uint64_t value, const char* what) -> absl::Status {
    if (value == 0) return absl::OkStatus();
    if (limit != 0 && value > limit) {
      return absl::InvalidArgumentError(absl::StrCat(what, " ", value, " is above version ",
                                                     version, "'s maximum of ", limit));
    }
    limit = static_cast<std::remove_reference_t<decltype(limit)>>(value);
    return absl::OkStatus();
  };
  CAIRN_RETURN_IF_ERROR(tighten(limits.max_inodes, requested.max_inodes, "max_inodes"));
  CAIRN_RETURN_IF_ERROR(
      tighten(limits.max_dir_entries, requested.max_dir_entries, "max_dir_entries"));
  CAIRN_RETURN_IF_ERROR(tighten(limits.max_file_size, requested.max_file_size, "max_file_size"));
  return limits;
}

absl::StatusOr<VolumeRecord> Engine::CloneVolume(std::string_view source_id,
                                                 std::optional<uint64_t> seq,
                                                 std::string_view ns, std::string_view name) {
  CAIRN_RETURN_IF_ERROR(ValidateNamespace(ns));
  CAIRN_RETURN_IF_ERROR(ValidateVolumeName(name));
  CAIRN_ASSIGN_OR_RETURN(VolumeRecord source, GetVolumeById(source_id));
  std::string space = NamespaceOrDefault(ns);
  if (meta_->GetVolumeByName(space, name).ok()) {
    return absl::AlreadyExistsError(
        absl::StrCat("volume ", Sv(name), " already exists in namespace ", space));
  }
  CAIRN_ASSIGN_OR_RETURN(DataKey key, DataKeyFor(source));
  VolumeRecord volume;
  volume.id = NewVolumeId();
  volume.ns = space;
  volume.name = std::string(name);
  volume.version = source.version;
  volume.created_at_ns = NowNs();
  volume.limits = source.limits;
  volume.wrapped_key = master_.Wrap(volume.id, key);

  // Shared with commits, exclusive for GC: the source's blobs cannot be
  // collected while they are linked, and the clone's links are not garbage
  // before the clone is in the MetaStore (GC purges unknown prefixes only
  // outside this lock).
  std::shared_lock gc_lock(gc_mu_);
  CAIRN_ASSIGN_OR_RETURN(auto store_gc_lock, meta_->LockGc(MetaStore::GcLockMode::kShared));
  CAIRN_ASSIGN_OR_RETURN(SnapshotRecord from, seq.has_value()
                                                  ? meta_->GetSnapshot(source.id, *seq)
                                                  : meta_->GetHead(source.id));
  ObjectStore objects(blobs_, source.id, std::move(key));
  absl::flat_hash_set<Digest> walked, reachable;
  CAIRN_RETURN_IF_ERROR(MarkReachable(objects, from.root, walked, reachable));
  for (const Digest& address : reachable) {
    CAIRN_RETURN_IF_ERROR(blobs_->Link(source.id, volume.id, address));
  }
  SnapshotRecord initial;
  initial.volume_id = volume.id;
  initial.seq = 0;
  initial.root = from.root;
  initial.created_at_ns = volume.created_at_ns;
  initial.inodes = from.inodes;
  initial.bytes = from.bytes;
  absl::Status created = meta_->CreateVolume(volume, initial);
  if (absl::IsAlreadyExists(created)) {
    // Lost a race for the name; the links made above are garbage.
    return absl::AlreadyExistsError(
        absl::StrCat("volume ", Sv(name), " already exists in namespace ", space));
  }
  CAIRN_RETURN_IF_ERROR(created);
  return volume;
}

absl::StatusOr<VolumeRecord> Engine::GetOrCreateVolume(std::string_view ns, std::string_view name,
                                                       int version, const Limits& requested) {
  CAIRN_ASSIGN_OR_RETURN(Limits limits, TightenLimits(version, requested));
  // What the caller asked for and the volume must match: the version, and
  // each limit the request names (unnamed ones accept whatever the volume has).
  auto mismatch = [&](const VolumeRecord& v) {
    std::vector<std::string> diffs;
    if (v.version != version) {
      diffs.push_back(absl::StrCat("version ", v.version, " (requested ", version, ")"));
    }
    auto check = [&](const char* what, uint64_t have, uint64_t want) {
      if (want != 0 && have != want) {
        diffs.push_back(absl::StrCat(what, " ", have == 0 ? "unlimited" : absl::StrCat(have),
                                     " (requested ", want, ")"));
      }
    };
    check("max_inodes", v.limits.max_inodes, requested.max_inodes);
    check("max_dir_entries", v.limits.max_dir_entries, requested.max_dir_entries);
    check("max_file_size", v.limits.max_file_size, requested.max_file_size);
    return diffs.empty() ? std::string()
                         : absl::StrCat("volume ", Sv(name), " already exists with ",
                                        absl::StrJoin(diffs, ", "));
  };
  for (int attempt = 0; attempt < 3; ++attempt) {
    absl::StatusOr<VolumeRecord> existing = GetVolume(ns, name);
    if (existing.ok()) {
      std::string diff = mismatch(*existing);
      if (!diff.empty()) return absl::AlreadyExistsError(diff);
      return existing;
    }
    if (!absl::IsNotFound(existing.status())) return existing.status();
    absl::StatusOr<VolumeRecord> created = CreateVolume(ns, name, version, limits);
    // Someone else created it between our lookup and insert: read theirs.
    if (!absl::IsAlreadyExists(created.status())) return created;
  }
  return absl::AbortedError(absl::StrCat("volume ", Sv(name), " keeps appearing and disappearing"));
}

absl::StatusOr<VolumeRecord> Engine::GetVolume(std::string_view ns, std::string_view name) {
  CAIRN_RETURN_IF_ERROR(ValidateNamespace(ns));
  CAIRN_RETURN_IF_ERROR(ValidateVolumeName(name));
  std::string space = NamespaceOrDefault(ns);
  absl::StatusOr<VolumeRecord> volume = meta_->GetVolumeByName(space, name);
  if (absl::IsNotFound(volume.status())) {
    return absl::NotFoundError(
        absl::StrCat("volume ", Sv(name), " not found in namespace ", space));
  }
  return volume;
}

absl::StatusOr<VolumeRecord> Engine::GetVolumeById(std::string_view id) {
  absl::StatusOr<VolumeRecord> volume = meta_->GetVolumeById(id);
  if (absl::IsNotFound(volume.status())) {
    return absl::NotFoundError(absl::StrCat("volume ", Sv(id), " not found"));
  }
  return volume;
}

absl::StatusOr<std::vector<VolumeRecord>> Engine::ListVolumes(std::string_view ns) {
  if (ns.empty()) return meta_->ListVolumes("");
  CAIRN_RETURN_IF_ERROR(ValidateNamespace(ns));
  return meta_->ListVolumes(NamespaceOrDefault(ns));
}

absl::StatusOr<VolumeRecord> Engine::RenameVolume(std::string_view ns, std::string_view name,
                                                  std::string_view new_name) {
  CAIRN_RETURN_IF_ERROR(ValidateVolumeName(new_name));
  CAIRN_ASSIGN_OR_RETURN(VolumeRecord volume, GetVolume(ns, name));
  return RenameVolumeById(volume.id, new_name);
}

absl::StatusOr<VolumeRecord> Engine::RenameVolumeById(std::string_view id,
                                                      std::string_view new_name) {
  CAIRN_RETURN_IF_ERROR(ValidateVolumeName(new_name));
  CAIRN_ASSIGN_OR_RETURN(VolumeRecord volume, GetVolumeById(id));
  if (new_name == volume.name) return volume;
  absl::Status renamed = meta_->RenameVolume(volume.id, new_name);
  if (absl::IsAlreadyExists(renamed)) {
    return absl::AlreadyExistsError(
        absl::StrCat("volume ", Sv(new_name), " already exists in namespace ", volume.ns));
  }
  CAIRN_RETURN_IF_ERROR(renamed);
  volume.name = std::string(new_name);
  return volume;
}

absl::Status Engine::DeleteVolume(std::string_view ns, std::string_view name) {
  CAIRN_ASSIGN_OR_RETURN(VolumeRecord volume, GetVolume(ns, name));
  return DeleteVolumeById(volume.id);
}

absl::Status Engine::DeleteVolumeById(std::string_view id) {
  CAIRN_ASSIGN_OR_RETURN(VolumeRecord volume, GetVolumeById(id));
  // The wrapped key lives in the volume row: once this returns the data is
  // unreadable (C8); the blobs are reclaimed by CollectGarbage.
  CAIRN_RETURN_IF_ERROR(meta_->DeleteVolume(volume.id));
  CAIRN_LOG_INFO("deleted volume %s/%s (%s)", volume.ns, volume.name, volume.id);
  return absl::OkStatus();
}

absl::StatusOr<DataKey> Engine::DataKeyFor(const VolumeRecord& volume) const {
  return master_.Unwrap(volume.id, volume.wrapped_key);
}

absl::StatusOr<std::unique_ptr<ObjectStore>> Engine::OpenObjects(
    const VolumeRecord& volume) const {
  CAIRN_ASSIGN_OR_RETURN(DataKey key, DataKeyFor(volume));
  return std::make_unique<ObjectStore>(blobs_, volume.id, std::move(key));
}

absl::StatusOr<SnapshotRecord> Engine::Head(std::string_view volume_id) {
  absl::StatusOr<SnapshotRecord> head = meta_->GetHead(volume_id);
  if (absl::IsNotFound(head.status())) {
    return absl::NotFoundError(absl::StrCat("volume ", Sv(volume_id), " not found"));
  }
  return head;
}

absl::StatusOr<std::vector<Digest>> Engine::MissingObjects(std::string_view volume_id,
                                                           const std::vector<Digest>& addresses) {
  CAIRN_ASSIGN_OR_RETURN(VolumeRecord volume, GetVolumeById(volume_id));
  std::vector<Digest> missing;
  for (const Digest& address : addresses) {
    absl::Status touched = blobs_->Touch(volume.id, address);
    if (absl::IsNotFound(touched)) {
      missing.push_back(address);
    } else if (!touched.ok()) {
      return touched;
    }
  }
  return missing;
}

absl::StatusOr<std::unique_ptr<Engine::Upload>> Engine::NewUpload(std::string_view volume_id) {
  CAIRN_ASSIGN_OR_RETURN(VolumeRecord volume, GetVolumeById(volume_id));
  return std::unique_ptr<Upload>(new Upload(blobs_, volume.id));
}

absl::Status Engine::Upload::Add(const Digest& address, std::string_view sealed) {
  if (sealed.size() < kSealOverhead) {
    return absl::InvalidArgumentError(
        absl::StrCat("object ", address.ToHex(), " is too short to be sealed"));
  }
  if (sealed.size() > kMaxUploadedObjectBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "object ", address.ToHex(), " is ", sealed.size(), " bytes; an uploaded object is a "
        "sealed chunk, at most ", kMaxUploadedObjectBytes, " bytes"));
  }
  if (batch_ == nullptr) batch_ = blobs_->NewBatch(volume_id_);
  CAIRN_RETURN_IF_ERROR(batch_->Add(address, sealed));
  ++added_;
  if (added_ % kBlobsPerSync == 0) {
    CAIRN_RETURN_IF_ERROR(batch_->Finish());
    batch_.reset();
  }
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> Engine::Upload::Finish() {
  if (batch_ != nullptr) {
    CAIRN_RETURN_IF_ERROR(batch_->Finish());
    batch_.reset();
  }
  return added_;
}

absl::StatusOr<BlobRange> Engine::GetObjectRange(std::string_view volume_id,
                                                 const Digest& address, uint64_t offset,
                                                 uint64_t length) {
  absl::StatusOr<BlobRange> range = blobs_->GetRange(volume_id, address, offset, length);
  if (absl::IsNotFound(range.status())) {
    return absl::NotFoundError(
        absl::StrCat("object ", address.ToHex(), " not found in volume ", Sv(volume_id)));
  }
  return range;
}

absl::StatusOr<std::string> Engine::GetObject(std::string_view volume_id, const Digest& address) {
  absl::StatusOr<std::string> sealed = blobs_->Get(volume_id, address);
  if (absl::IsNotFound(sealed.status())) {
    return absl::NotFoundError(
        absl::StrCat("object ", address.ToHex(), " not found in volume ", Sv(volume_id)));
  }
  return sealed;
}

absl::StatusOr<SnapshotRecord> Engine::Commit(std::string_view volume_id,
                                              const objects::ChangeSet& changes,
                                              std::string_view idempotency_key,
                                              bool* made_snapshot) {
  if (made_snapshot != nullptr) *made_snapshot = false;
  if (idempotency_key.size() > kMaxIdempotencyKey) {
    return absl::InvalidArgumentError(
        absl::StrCat("idempotency key must be at most ", kMaxIdempotencyKey, " bytes, got ",
                     idempotency_key.size()));
  }
  for (size_t i = 0; i < idempotency_key.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(idempotency_key[i]);
    if (c <= ' ' || c >= 0x7f) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "idempotency key must be printable ASCII without spaces, got %s at byte %d",
          c == ' ' ? std::string("a space") : absl::StrFormat("byte 0x%02x", c), i));
    }
  }
  CAIRN_ASSIGN_OR_RETURN(VolumeRecord volume, GetVolumeById(volume_id));

  // Validate everything before writing anything (C9).
  objects::ChangeSet normalized = changes;
  for (int i = 0; i < normalized.changes_size(); ++i) {
    objects::Change& c = *normalized.mutable_changes(i);
    if (c.kind() == objects::Change::KIND_UNSPECIFIED ||
        !objects::Change::Kind_IsValid(c.kind())) {
      return absl::InvalidArgumentError(absl::StrCat("change ", i, " has no valid kind"));
    }
    CAIRN_ASSIGN_OR_RETURN(*c.mutable_path(), NormalizeChangePath(c.path(), i));
    if (c.kind() == objects::Change::RENAME) {
      CAIRN_ASSIGN_OR_RETURN(*c.mutable_to(), NormalizeChangePath(c.to(), i));
    }
  }
  if (normalized.changes_size() == 0) {
    // No snapshot is made, so there would be none for the key to name.
    if (!idempotency_key.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("idempotency key ", Sv(idempotency_key),
                       " given for an empty change set, which makes no snapshot"));
    }
    return Head(volume_id);
  }
  // Normalized, so a repeat that spells a path differently is still a repeat.
  const Digest changes_digest =
      idempotency_key.empty() ? Digest() : Sha256(SerializeDeterministic(normalized));

  // A repeat of a commit that landed (its reply was lost): answer what it
  // made. Checked again inside the CAS transaction for a repeat racing the
  // original. The same key with different changes is a client bug; applying
  // nothing and answering success would drop those changes silently.
  auto recorded = [&]() -> absl::StatusOr<std::optional<SnapshotRecord>> {
    if (idempotency_key.empty()) return std::optional<SnapshotRecord>();
    Digest recorded_digest;
    absl::StatusOr<SnapshotRecord> found =
        meta_->FindCommit(volume.id, idempotency_key, &recorded_digest);
    if (found.ok()) {
      if (recorded_digest != changes_digest) {
        return absl::FailedPreconditionError(absl::StrCat(
            "idempotency key ", Sv(idempotency_key),
            " was already used for a different change set (snapshot ", found->seq, ")"));
      }
      return std::optional<SnapshotRecord>(*found);
    }
    if (!absl::IsNotFound(found.status())) return found.status();
    // NotFound for the volume itself surfaces from Head below.
    return std::optional<SnapshotRecord>();
  };
  std::shared_ptr<absl::Mutex> commit_lock = CommitLock(volume.id);
  absl::MutexLock serialised(commit_lock.get());
  CAIRN_ASSIGN_OR_RETURN(std::optional<SnapshotRecord> earlier, recorded());
  if (earlier.has_value()) return *earlier;

  CAIRN_ASSIGN_OR_RETURN(std::unique_ptr<ObjectStore> objects, OpenObjects(volume));
  for (int attempt = 0; attempt < kMaxCommitAttempts; ++attempt) {
    Backoff(attempt);
    CAIRN_ASSIGN_OR_RETURN(SnapshotRecord head, Head(volume_id));
    // Held from building the new tree to publishing it, so GC cannot delete
    // a blob (a new directory object, a chunk uploaded before the commit)
    // between our writing or checking it and the snapshot referencing it;
    // the store's lock does the same for GC on other replicas (D38).
    std::shared_lock gc_lock(gc_mu_);
    CAIRN_ASSIGN_OR_RETURN(auto store_gc_lock, meta_->LockGc(MetaStore::GcLockMode::kShared));
    CAIRN_ASSIGN_OR_RETURN(ApplyResult applied,
                           ApplyChanges(*objects, head.root, normalized, volume.limits));
    for (const objects::Change& c : normalized.changes()) {
      if (c.kind() != objects::Change::PUT) continue;
      for (const Digest& address : ReferencedAddresses(c.entry())) {
        absl::Status touched = blobs_->Touch(volume.id, address);
        if (absl::IsNotFound(touched)) {
          return absl::FailedPreconditionError(absl::StrCat(
              "object ", address.ToHex(), " referenced by ", c.path(), " is not stored"));
        }
        CAIRN_RETURN_IF_ERROR(touched);
      }
    }
    SnapshotRecord next;
    next.volume_id = volume.id;
    next.seq = head.seq + 1;
    next.root = applied.root;
    next.parent_seq = head.seq;
    next.created_at_ns = NowNs();
    next.inodes = applied.inodes;
    next.bytes = applied.bytes;
    absl::Status cas = meta_->CommitSnapshot(next, head.seq, idempotency_key, changes_digest);
    if (cas.ok()) {
      if (made_snapshot != nullptr) *made_snapshot = true;
      return next;
    }
    if (absl::IsAlreadyExists(cas) && !idempotency_key.empty()) {
      // The same commit landed meanwhile (a repeat racing the original).
      CAIRN_ASSIGN_OR_RETURN(std::optional<SnapshotRecord> landed, recorded());
      if (landed.has_value()) return *landed;
    }
    if (absl::IsNotFound(cas)) {
      return absl::NotFoundError(absl::StrCat("volume ", Sv(volume_id), " not found"));
    }
    if (!absl::IsAborted(cas)) return cas;
  }
  return absl::AbortedError(absl::StrCat("commit to volume ", Sv(volume_id), " lost the head race ",
                                         kMaxCommitAttempts, " times"));
}

std::shared_ptr<absl::Mutex> Engine::CommitLock(const std::string& volume_id) {
  absl::MutexLock lock(&commit_locks_mu_);
  if (commit_locks_.size() > 1024) {
    // Volumes nobody commits to right now: drop their entries.
    for (auto it = commit_locks_.begin(); it != commit_locks_.end();) {
      auto here = it++;
      if (here->second.expired()) commit_locks_.erase(here);
    }
  }
  std::weak_ptr<absl::Mutex>& slot = commit_locks_[volume_id];
  std::shared_ptr<absl::Mutex> mu = slot.lock();
  if (mu == nullptr) {
    mu = std::make_shared<absl::Mutex>();
    slot = mu;
  }
  return mu;
}

absl::StatusOr<GcStats> Engine::CollectGarbage(std::chrono::seconds grace) {
  std::unique_lock gc_lock(gc_mu_);
  // Every replica's commits, not just this process's (D38).
  CAIRN_ASSIGN_OR_RETURN(auto store_gc_lock, meta_->LockGc(MetaStore::GcLockMode::kExclusive));
  GcStats stats;
  CAIRN_ASSIGN_OR_RETURN(std::vector<VolumeRecord> volumes, meta_->ListVolumes(""));
  absl::flat_hash_set<std::string> live;
  for (const VolumeRecord& v : volumes) live.insert(v.id);

  CAIRN_ASSIGN_OR_RETURN(std::vector<std::string> stored, blobs_->ListVolumes());
  for (const std::string& id : stored) {
    if (live.contains(id)) continue;
    // Deleted volume: its key is gone, so its blobs are unreadable noise.
    CAIRN_RETURN_IF_ERROR(blobs_->DeleteVolume(id));
    ++stats.volumes_purged;
  }

  const auto cutoff = std::chrono::system_clock::now() - grace;
  for (const VolumeRecord& volume : volumes) {
    CAIRN_ASSIGN_OR_RETURN(std::unique_ptr<ObjectStore> objects, OpenObjects(volume));
    absl::StatusOr<std::vector<SnapshotRecord>> snapshots = meta_->ListSnapshots(volume.id);
    if (absl::IsNotFound(snapshots.status())) continue;  // deleted meanwhile
    CAIRN_RETURN_IF_ERROR(snapshots.status());
    // Every snapshot is retained for now (no history expiry yet), so
    // anything any snapshot reaches is live. A missing directory aborts the
    // pass: without it we cannot tell what is garbage.
    absl::flat_hash_set<Digest> walked, reachable;
    for (const SnapshotRecord& s : *snapshots) {
      absl::Status marked = MarkReachable(*objects, s.root, walked, reachable);
      if (!marked.ok()) {
        return absl::Status(marked.code(),
                            absl::StrCat("gc of volume ", volume.id, " snapshot ", s.seq,
                                         " stopped: ", marked.message()));
      }
    }
    std::vector<BlobStore::BlobInfo> garbage;
    CAIRN_RETURN_IF_ERROR(blobs_->List(volume.id, [&](const BlobStore::BlobInfo& info) {
      if (!reachable.contains(info.address) && info.mtime < cutoff) garbage.push_back(info);
    }));
    for (const BlobStore::BlobInfo& info : garbage) {
      CAIRN_RETURN_IF_ERROR(blobs_->Delete(volume.id, info.address));
      ++stats.blobs_deleted;
      stats.bytes_freed += info.size;
    }
    // A writer renames its temporary away within moments; one older than
    // the grace period belongs to a write that died (D7).
    std::vector<BlobStore::TempInfo> debris;
    CAIRN_RETURN_IF_ERROR(blobs_->ListTemporaries(volume.id, [&](const BlobStore::TempInfo& info) {
      if (info.mtime < cutoff) debris.push_back(info);
    }));
    for (const BlobStore::TempInfo& info : debris) {
      CAIRN_RETURN_IF_ERROR(blobs_->DeleteTemporary(volume.id, info.name));
      ++stats.temporaries_deleted;
      stats.bytes_freed += info.size;
    }
  }
  return stats;
}

}  // namespace cairn
