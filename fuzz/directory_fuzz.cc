// Directory objects and snapshot roots as read back from a blob store
// (ObjectStore::GetDirectory and the tree walks of core/tree.h), and the
// change sets mounts send to be applied onto them (ApplyChanges).
//
// Input: a ChangeSet, a Limits selector, then up to 8 directory objects,
// each a length-prefixed chunk of bytes. Object 0 is the snapshot root. So
// that trees can have depth, a DIRECTORY entry whose `tree` is the single
// byte j (j > i) in object i is pointed at object j's real address; that
// keeps the graph acyclic, as HMAC addressing does in a real store (a
// cycle would need an HMAC fixpoint); a change's entry with such a `tree`
// grafts object j. Objects that do not parse are stored
// as they are, so the decoder's error path is exercised too.
//
// Checks, besides "no crash, no UB, no unbounded allocation": reads fail
// with a Status (never abort); if the base tree is well-formed (readable,
// sorted, unique valid names), so is every tree ApplyChanges returns, read
// back from the store, and every path a walk of it yields looks up. Files'
// holes (D28): lseek answers of any entry that passes CheckFileLayout are
// consistent with its hole list, and every file of an applied tree passes.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include <fuzzer/FuzzedDataProvider.h>

#include "core/testing/mem_stores.h"
#include "core/blob_store.h"
#include "core/crypto.h"
#include "core/files.h"
#include "core/meta_store.h"
#include "core/object_store.h"
#include "core/path.h"
#include "core/tree.h"
#include "proto/objects.pb.h"

namespace {

constexpr char kVolume[] = "vo-fuzz";
constexpr size_t kMaxObjects = 8;
constexpr size_t kMaxWalk = 4096;  // entries visited per walk

void Check(bool ok, const char* what) {
  if (!ok) {
    fprintf(stderr, "property violated: %s\n", what);
    abort();
  }
}

// SEEK_DATA / SEEK_HOLE / AllocatedBytes over a FILE entry; for one whose
// layout checks out, their answers agree with its holes.
void CheckHoles(const cairn::objects::Entry& e) {
  const std::vector<cairn::Extent> holes = cairn::Holes(e);
  (void)cairn::NormalizeHoles(holes, e.size());
  const bool valid = cairn::CheckFileLayout(e, "f").ok();
  for (uint64_t off : {uint64_t{0}, e.size() / 2, e.size() > 0 ? e.size() - 1 : 0, e.size()}) {
    absl::StatusOr<uint64_t> data = cairn::SeekData(holes, e.size(), off);
    absl::StatusOr<uint64_t> hole = cairn::SeekHole(holes, e.size(), off);
    if (!valid) continue;
    Check(hole.ok() == (off < e.size()), "SEEK_HOLE answers exactly below the size");
    if (hole.ok()) Check(*hole >= off && *hole <= e.size(), "SEEK_HOLE lands in [off, size]");
    if (data.ok()) {
      Check(*data >= off && *data < e.size() && !cairn::InHole(holes, *data, 1),
            "SEEK_DATA lands on data below the size");
    }
  }
  if (valid) {
    Check(cairn::AllocatedBytes(holes, e.size()) <= e.size() + cairn::kHoleBlock,
          "allocated bytes within the size rounded up");
  }
}

// Walks the whole tree; OK only if every directory on the way is readable.
// Gives up (sets *complete = false) after kMaxWalk entries: a wide fuzzed
// tree is not a bug.
absl::Status WalkAll(cairn::ObjectStore& objects, const cairn::Digest& root,
                     std::vector<std::string>* paths, bool* complete) {
  size_t visited = 0;
  *complete = true;
  return cairn::WalkTree(objects, root, "",
                         [&](const std::string& path, const cairn::objects::Entry& e) {
                           if (e.type() == cairn::objects::FILE) CheckHoles(e);
                           if (++visited > kMaxWalk) {
                             *complete = false;
                             return false;
                           }
                           if (paths != nullptr && paths->size() < 64) paths->push_back(path);
                           return true;
                         });
}

// What a tree written by the engine looks like: every directory readable,
// entries sorted, unique and valid names, directories with a tree address.
// *budget bounds the work on wide fuzzed trees; running out is "unknown".
enum class Shape { kValid, kInvalid, kUnknown };
Shape CheckShape(cairn::ObjectStore& objects, const cairn::Digest& tree, int* budget) {
  if (--*budget < 0) return Shape::kUnknown;
  auto dir = objects.GetDirectory(tree);
  if (!dir.ok()) return Shape::kInvalid;
  Shape shape = Shape::kValid;
  for (int k = 0; k < (*dir)->entries_size(); ++k) {
    const cairn::objects::Entry& e = (*dir)->entries(k);
    if (!cairn::IsValidComponent(e.name())) return Shape::kInvalid;
    if (k > 0 && !((*dir)->entries(k - 1).name() < e.name())) return Shape::kInvalid;
    if (e.type() == cairn::objects::FILE && !cairn::CheckFileLayout(e, e.name()).ok()) {
      return Shape::kInvalid;
    }
    if (e.type() != cairn::objects::DIRECTORY) continue;
    auto sub = cairn::Digest::FromRaw(e.tree());
    if (!sub.ok()) return Shape::kInvalid;
    Shape s = CheckShape(objects, *sub, budget);
    if (s == Shape::kInvalid) return s;
    if (s == Shape::kUnknown) shape = s;
  }
  return shape;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using cairn::objects::Directory;
  FuzzedDataProvider in(data, size);
  static const cairn::DataKey key = *cairn::DataKey::FromBytes(std::string(64, '\x17'));

  cairn::objects::ChangeSet changes;
  (void)changes.ParseFromString(in.ConsumeRandomLengthString(4096));
  cairn::Limits limits;
  switch (in.ConsumeIntegralInRange<int>(0, 3)) {
    case 0: limits = cairn::DefaultLimits(1); break;
    case 1: limits = cairn::DefaultLimits(2); break;
    case 2: limits = {.max_inodes = 8, .max_dir_entries = 4, .max_file_size = 1 << 20,
                      .hard_links = false}; break;
    default: limits = {}; break;
  }

  std::vector<std::string> raw;
  while (raw.size() < kMaxObjects && in.remaining_bytes() > 0) {
    raw.push_back(in.ConsumeRandomLengthString(8192));
  }
  if (raw.empty()) raw.emplace_back();

  std::unique_ptr<cairn::BlobStore> blobs = cairn::NewMemBlobStore();
  cairn::ObjectStore objects(blobs.get(), kVolume, key);
  std::vector<cairn::Digest> address(raw.size());
  for (size_t i = raw.size(); i-- > 0;) {
    Directory dir;
    std::string plaintext = raw[i];
    if (dir.ParseFromString(raw[i])) {
      for (auto& e : *dir.mutable_entries()) {
        if (e.tree().size() == 1) {
          size_t j = static_cast<uint8_t>(e.tree()[0]);
          if (j > i && j < raw.size()) e.set_tree(address[j].RawString());
        }
      }
      plaintext = dir.SerializeAsString();
    }
    address[i] = key.Address(plaintext);
    Check(blobs->Put(kVolume, address[i], key.Seal(address[i], plaintext)).ok(), "store object");
  }
  const cairn::Digest& root = address[0];
  // Changes can graft the stored objects the same way (PUT of a directory).
  for (auto& c : *changes.mutable_changes()) {
    if (c.entry().tree().size() == 1) {
      size_t j = static_cast<uint8_t>(c.entry().tree()[0]);
      if (j < raw.size()) c.mutable_entry()->set_tree(address[j].RawString());
    }
  }

  (void)objects.GetDirectory(root);
  (void)cairn::ReadDirectory(objects, root, "");
  std::vector<std::string> paths;
  bool complete = false;
  (void)WalkAll(objects, root, &paths, &complete);
  int budget = kMaxWalk;
  const bool base_valid = CheckShape(objects, root, &budget) == Shape::kValid;
  for (const std::string& p : paths) {
    (void)cairn::LookupPath(objects, root, p);
    (void)cairn::ReadDirectory(objects, root, p);
  }

  absl::StatusOr<cairn::ApplyResult> applied = cairn::ApplyChanges(objects, root, changes, limits);
  if (!applied.ok()) {
    Check(!applied.status().message().empty(), "a refused change set says why");
    return 0;
  }
  if (base_valid) {
    // Read the result back the way another process would: through a fresh
    // ObjectStore, so directories are parsed from the store, not served
    // from the cache PutDirectory filled.
    cairn::ObjectStore reread(blobs.get(), kVolume, key);
    budget = 4 * kMaxWalk;
    Check(CheckShape(reread, applied->root, &budget) != Shape::kInvalid,
          "a change set applied onto a well-formed tree gives a well-formed tree");
    std::vector<std::string> applied_paths;
    Check(WalkAll(reread, applied->root, &applied_paths, &complete).ok() || !complete,
          "an applied tree walks");
    for (const std::string& p : applied_paths) {
      Check(cairn::LookupPath(reread, applied->root, p).ok(),
            "every walked path of the applied tree looks up");
    }
  }
  return 0;
}
