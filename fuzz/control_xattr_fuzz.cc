// The mount's in-band controls: extended attributes on the mount root
// (Filesystem::SetXattr / GetXattr / ListXattr, docs/mounter.md), driven
// with arbitrary names and values as any process on the node can send
// them, interleaved with writes that give commit and reload work to do.
//
// The Filesystem runs without FUSE and without a server: its VolumeClient
// is the mounter's test client (mounter/testing/engine_volume_client.h), an
// in-process Engine over memory stores (the real engine; only the gRPC hop
// is left out).
//
// Checks: unknown names answer EOPNOTSUPP (set and get), and any
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

#include "core/crypto.h"
#include "core/object_store.h"
#include "core/status.h"
#include "mounter/chunk_reader.h"
#include "mounter/filesystem.h"
#include "mounter/testing/engine_volume_client.h"
#include "nlohmann/json.hpp"

namespace {

using cairn::mounter::Filesystem;

void Check(bool ok, const char* what) {
  if (!ok) {
    fprintf(stderr, "property violated: %s\n", what);
    abort();
  }
}

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

  cairn::mounter::testing::EngineVolumeClient client;
  cairn::Limits limits{.max_inodes = 16, .max_dir_entries = 8, .max_file_size = 1 << 16,
                       .hard_links = false};
  absl::StatusOr<cairn::api::OpenVolumeResponse> opened = client.CreateVolume("fuzz", 2, limits);
  Check(opened.ok(), "create and open volume");
  cairn::ObjectStore objects(client.blobs(), opened->volume().id(),
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
          Check(cairn::StatusToErrno(v.status()) == EOPNOTSUPP,
                "unknown attributes are EOPNOTSUPP");
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
