// The mount's in-band controls: extended attributes on the mount root
// (Filesystem::SetXattr / GetXattr / ListXattr, docs/mounter.md), driven
// with arbitrary names and values as any process on the node can send
// them, interleaved with writes that give commit and reload work to do.
//
// The Filesystem runs without FUSE and without a server: its VolumeClient
// is an adapter straight onto an in-process Engine over memory stores (the
// real engine; only the gRPC hop is left out).
//
// Checks: unknown names answer EOPNOTSUPP (set) / ENODATA (get), and any
// inode but the root has no controls; the status attribute is always
// valid JSON (UTF-8 included) whose "pending_changes" matches Dirty(); a
// successful commit control leaves nothing pending.
#include <sys/stat.h>
#include <unistd.h>

#include <fcntl.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>

#include <fuzzer/FuzzedDataProvider.h>

#include "core/testing/mem_stores.h"
#include "core/blob_store.h"
#include "core/crypto.h"
#include "core/engine.h"
#include "core/meta_store.h"
#include "core/object_store.h"
#include "core/status.h"
#include "mounter/chunk_reader.h"
#include "mounter/filesystem.h"
#include "mounter/volume_client.h"
#include "nlohmann/json.hpp"

namespace {

using cairn::mounter::Filesystem;

void Check(bool ok, const char* what) {
  if (!ok) {
    fprintf(stderr, "property violated: %s\n", what);
    abort();
  }
}

cairn::api::Snapshot ToApi(const cairn::SnapshotRecord& s) {
  cairn::api::Snapshot out;
  out.set_volume_id(s.volume_id);
  out.set_seq(s.seq);
  out.set_root(s.root.RawString());
  out.set_parent_seq(s.parent_seq);
  out.set_created_at_ns(s.created_at_ns);
  out.set_inodes(s.inodes);
  out.set_bytes(s.bytes);
  return out;
}

// The mounter's view of the control plane, answered by an Engine in this
// process.
class EngineVolumeClient : public cairn::mounter::VolumeClient {
 public:
  explicit EngineVolumeClient(cairn::Engine* engine) : engine_(engine) {}

  absl::StatusOr<cairn::api::OpenVolumeResponse> Open(const cairn::api::VolumeRef& ref) override {
    absl::StatusOr<cairn::VolumeRecord> v = engine_->GetVolume(ref.namespace_(), ref.name());
    if (!v.ok()) return v.status();
    absl::StatusOr<cairn::DataKey> key = engine_->DataKeyFor(*v);
    if (!key.ok()) return key.status();
    absl::StatusOr<cairn::SnapshotRecord> head = engine_->Head(v->id);
    if (!head.ok()) return head.status();
    cairn::api::OpenVolumeResponse out;
    out.mutable_volume()->set_id(v->id);
    out.mutable_volume()->set_namespace_(v->ns);
    out.mutable_volume()->set_name(v->name);
    out.mutable_volume()->set_version(v->version);
    out.set_data_key(std::string(key->bytes()));
    *out.mutable_head() = ToApi(*head);
    out.set_max_inodes(v->limits.max_inodes);
    out.set_max_dir_entries(v->limits.max_dir_entries);
    out.set_max_file_size(v->limits.max_file_size);
    out.set_hard_links(v->limits.hard_links);
    return out;
  }
  absl::StatusOr<cairn::api::Snapshot> Head(std::string_view volume_id) override {
    absl::StatusOr<cairn::SnapshotRecord> head = engine_->Head(volume_id);
    if (!head.ok()) return head.status();
    return ToApi(*head);
  }
  absl::StatusOr<cairn::api::Snapshot> Commit(std::string_view volume_id, uint64_t base_seq,
                                              const cairn::objects::ChangeSet& changes,
                                              std::string_view idempotency_key) override {
    absl::StatusOr<cairn::SnapshotRecord> next =
        engine_->Commit(volume_id, changes, idempotency_key);
    if (!next.ok()) return next.status();
    return ToApi(*next);
  }
  cairn::BlobStore* blobs() override { return engine_->blobs(); }

 private:
  cairn::Engine* engine_;
};

// Control names the fuzzer would take long to spell; it mutates from here.
const char* const kNames[] = {"user.cairn.commit", "user.cairn.reload", "user.cairn.status",
                              "cairn.commit",      "cairn.status",      "user.cairn.",
                              "trusted.cairn.commit"};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider in(data, size);
  static const std::filesystem::path staging = [] {
    std::filesystem::path p =
        std::filesystem::temp_directory_path() / ("cairn-xattr-fuzz-" + std::to_string(getpid()));
    std::filesystem::create_directories(p);
    return p;
  }();

  std::unique_ptr<cairn::MetaStore> meta = cairn::NewMemMetaStore();
  std::unique_ptr<cairn::BlobStore> blobs = cairn::NewMemBlobStore();
  cairn::Engine engine(meta.get(), blobs.get(),
                       *cairn::MasterKey::FromBytes(std::string(32, '\x42')));
  cairn::Limits limits{.max_inodes = 16, .max_dir_entries = 8, .max_file_size = 1 << 16,
                       .hard_links = false};
  Check(engine.CreateVolume("default", "fuzz", 2, limits).ok(), "create volume");
  EngineVolumeClient client(&engine);
  cairn::api::VolumeRef ref;
  ref.set_namespace_("default");
  ref.set_name("fuzz");
  absl::StatusOr<cairn::api::OpenVolumeResponse> opened = client.Open(ref);
  Check(opened.ok(), "open volume");
  cairn::ObjectStore objects(blobs.get(), opened->volume().id(),
                             *cairn::DataKey::FromBytes(opened->data_key()));
  cairn::mounter::ChunkReader reader(&objects, nullptr, 1 << 20, 0);
  cairn::mounter::FsOptions options;
  options.staging_dir = staging;
  auto fs = Filesystem::Create(&client, &objects, &reader, *opened, options);
  Check(fs.ok(), "create filesystem");

  for (int step = 0; step < 24 && in.remaining_bytes() > 0; ++step) {
    const uint64_t ino = in.ConsumeBool() ? Filesystem::kRootIno : in.ConsumeIntegral<uint8_t>();
    std::string name = in.ConsumeBool() ? kNames[in.ConsumeIntegralInRange<size_t>(
                                              0, std::size(kNames) - 1)]
                                        : in.ConsumeRandomLengthString(64);
    switch (in.ConsumeIntegralInRange<int>(0, 4)) {
      case 0: {  // set a control
        std::string value = in.ConsumeRandomLengthString(64);
        absl::Status s = (*fs)->SetXattr(ino, name, value);
        const bool control = ino == Filesystem::kRootIno &&
                             (name == "user.cairn.commit" || name == "cairn.commit" ||
                              name == "user.cairn.reload" || name == "cairn.reload");
        if (!control) {
          Check(cairn::StatusToErrno(s) == EOPNOTSUPP, "unknown controls are EOPNOTSUPP");
        } else if (s.ok() && (name == "user.cairn.commit" || name == "cairn.commit")) {
          Check(!(*fs)->Dirty(), "a successful commit leaves nothing pending");
        }
        break;
      }
      case 1: {  // get one
        absl::StatusOr<std::string> v = (*fs)->GetXattr(ino, name);
        const bool status = ino == Filesystem::kRootIno &&
                            (name == "user.cairn.status" || name == "cairn.status");
        if (!status) {
          Check(cairn::StatusToErrno(v.status()) == ENODATA, "unknown attributes are ENODATA");
          break;
        }
        Check(v.ok(), "the status attribute reads");
        nlohmann::json j = nlohmann::json::parse(*v, nullptr, /*allow_exceptions=*/false);
        Check(!j.is_discarded() && j.is_object(), "the status attribute is valid JSON");
        Check((j.value("pending_changes", uint64_t{0}) > 0) == (*fs)->Dirty(),
              "status pending_changes agrees with Dirty()");
        break;
      }
      case 2: {  // list
        auto names = (*fs)->ListXattr(ino);
        Check(ino == Filesystem::kRootIno || names.empty(), "only the root has controls");
        break;
      }
      case 3: {  // give commit work: a file with content, under a fuzzed name
        auto created = (*fs)->Create(Filesystem::kRootIno, name, 0644, O_WRONLY);
        if (created.ok()) {
          std::string content = in.ConsumeRandomLengthString(256);
          (void)(*fs)->Write(created->fh, 0, content);
          (*fs)->Release(created->fh);
        }
        break;
      }
      case 4: {  // and a directory
        (void)(*fs)->MkDir(Filesystem::kRootIno, name, 0755);
        break;
      }
    }
  }
  return 0;
}
