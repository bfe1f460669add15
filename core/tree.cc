#include "core/tree.h"

#include <algorithm>
#include <cerrno>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "core/files.h"
#include "core/path.h"
#include "core/status.h"

namespace cairn {
namespace {

// absl 20220623 on Debian keeps its own string_view type; bridge once.
absl::string_view Sv(std::string_view s) { return absl::string_view(s.data(), s.size()); }

using objects::Change;
using objects::Directory;
using objects::Entry;

constexpr uint32_t kDefaultDirMode = 0755;

std::string Join(std::string_view dir, std::string_view name) {
  return dir.empty() ? std::string(name) : absl::StrCat(Sv(dir), "/", Sv(name));
}

std::vector<std::string_view> Components(std::string_view normalized) {
  std::vector<std::string_view> out;
  if (normalized.empty()) return out;
  size_t start = 0;
  while (true) {
    size_t slash = normalized.find('/', start);
    if (slash == std::string_view::npos) {
      out.push_back(normalized.substr(start));
      return out;
    }
    out.push_back(normalized.substr(start, slash - start));
    start = slash + 1;
  }
}

// Binary search in a directory object's sorted entries.
const Entry* FindEntry(const Directory& dir, std::string_view name) {
  int lo = 0;
  int hi = dir.entries_size();
  while (lo < hi) {
    int mid = lo + (hi - lo) / 2;
    const std::string& n = dir.entries(mid).name();
    if (n < name) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  if (lo < dir.entries_size() && dir.entries(lo).name() == name) return &dir.entries(lo);
  return nullptr;
}

absl::StatusOr<Digest> TreeAddress(const Entry& entry, std::string_view path) {
  absl::StatusOr<Digest> d = Digest::FromRaw(entry.tree());
  if (!d.ok()) {
    return absl::DataLossError(
        absl::StrCat("directory \"", Sv(path), "\" has a malformed tree address"));
  }
  return d;
}

absl::StatusOr<std::string> Normalized(std::string_view path) {
  CAIRN_ASSIGN_OR_RETURN(std::string n, NormalizePath(path));
  return n;
}

struct Totals {
  uint64_t inodes = 0;
  uint64_t bytes = 0;
  void Add(const Entry& e) {
    inodes += 1;
    if (e.type() == objects::DIRECTORY) {
      inodes += e.subtree_inodes();
      bytes += e.subtree_bytes();
    } else if (e.type() == objects::FILE) {
      bytes += e.size();
    }
  }
};

Totals SumEntries(const Directory& dir) {
  Totals t;
  for (const Entry& e : dir.entries()) t.Add(e);
  return t;
}

// ---------------------------------------------------------------------------
// The mutable overlay ApplyChanges builds: only directories on changed paths
// are materialised (as Nodes); everything else stays a reference (an Entry
// with its tree address) into the base snapshot.

struct Node;

struct Slot {
  Entry entry;
  std::unique_ptr<Node> child;  // set once a DIRECTORY's contents are loaded
};

struct Node {
  std::map<std::string, Slot, std::less<>> entries;  // bytewise order = object order
  Digest address;             // of the stored object this node was loaded from / written as
  bool dirty = false;         // entries differ from the stored object
  bool names_changed = false; // names added or removed: mtime moves to commit time
  size_t base_count = 0;      // entries when loaded; the entry limit applies to growth
  std::optional<Entry> root;  // the root's own attributes (Directory.root)
  Totals totals;              // filled by Flush
  uint32_t subdirs = 0;       // entries that are directories, filled by Flush
};

class Builder {
 public:
  Builder(ObjectStore& objects, const Limits& limits, int64_t now_ns)
      : objects_(objects), limits_(limits), now_(now_ns) {}

  absl::Status Init(const Digest& root) {
    CAIRN_ASSIGN_OR_RETURN(root_, Load(root, ""));
    for (const auto& [name, slot] : root_->entries) base_totals_.Add(slot.entry);
    return absl::OkStatus();
  }

  absl::Status Apply(const Change& change) {
    CAIRN_RETURN_IF_ERROR(CheckNormalized(change.path()));
    switch (change.kind()) {
      case Change::PUT:
        return Put(change);
      case Change::MKDIR:
        return Mkdir(change.path(), change.entry());
      case Change::REMOVE:
        return Remove(change);
      case Change::RENAME:
        CAIRN_RETURN_IF_ERROR(CheckNormalized(change.to()));
        return Rename(change);
      default:
        return absl::InvalidArgumentError(
            absl::StrCat("change of unknown kind ", static_cast<int>(change.kind()), " at \"",
                         change.path(), "\""));
    }
  }

  absl::StatusOr<ApplyResult> Finish() {
    CAIRN_RETURN_IF_ERROR(Flush(*root_, "").status());
    const Totals& t = root_->totals;
    // Only growth is refused: a volume already over its limit (limits can
    // be lowered) must still be able to shrink.
    if (limits_.max_inodes != 0 && t.inodes > limits_.max_inodes &&
        t.inodes > base_totals_.inodes) {
      return WithErrno(absl::ResourceExhaustedError(absl::StrCat(
                           "volume inode limit (", limits_.max_inodes, ") reached")),
                       ENOSPC);
    }
    return ApplyResult{root_->address, t.inodes, t.bytes};
  }

 private:
  static absl::Status CheckNormalized(std::string_view path) {
    absl::StatusOr<std::string> n = NormalizePath(path);
    if (!n.ok()) return n.status();
    if (*n != path) {
      return absl::InvalidArgumentError(absl::StrCat("path \"", Sv(path), "\" is not normalised"));
    }
    return absl::OkStatus();
  }

  absl::StatusOr<std::unique_ptr<Node>> Load(const Digest& address, std::string_view path) {
    CAIRN_ASSIGN_OR_RETURN(std::shared_ptr<const Directory> dir, objects_.GetDirectory(address));
    auto node = std::make_unique<Node>();
    node->address = address;
    for (const Entry& e : dir->entries()) {
      node->entries.emplace_hint(node->entries.end(), e.name(), Slot{e, nullptr});
    }
    node->base_count = node->entries.size();
    if (dir->has_root()) node->root = dir->root();
    return node;
  }

  absl::StatusOr<Node*> Materialize(Slot& slot, std::string_view path) {
    if (!slot.child) {
      CAIRN_ASSIGN_OR_RETURN(Digest tree, TreeAddress(slot.entry, path));
      CAIRN_ASSIGN_OR_RETURN(slot.child, Load(tree, path));
    }
    return slot.child.get();
  }

  Slot NewDirectory(std::string_view name, uint32_t mode, int64_t mtime_ns) {
    Slot slot;
    slot.entry.set_name(std::string(name));
    slot.entry.set_type(objects::DIRECTORY);
    slot.entry.set_mode(mode == 0 ? kDefaultDirMode : (mode & 07777));
    slot.entry.set_mtime_ns(mtime_ns == 0 ? now_ : mtime_ns);
    slot.child = std::make_unique<Node>();
    slot.child->dirty = true;  // never stored yet
    return slot;
  }

  // Puts `slot` at `name` in `dir`, replacing whatever is there.
  void Replace(Node& dir, std::string_view name, Slot slot) {
    auto it = dir.entries.find(name);
    if (it == dir.entries.end()) {
      dir.entries.emplace(std::string(name), std::move(slot));
      dir.names_changed = true;
    } else {
      it->second = std::move(slot);
    }
    dir.dirty = true;
  }

  // The directory that holds the last component of `comps`. With `create`,
  // missing parents are made and a non-directory in the way is replaced
  // (C4: the last writer wins). Without, nullptr when a parent is missing or
  // not a directory.
  absl::StatusOr<Node*> Parent(const std::vector<std::string_view>& comps, bool create) {
    Node* node = root_.get();
    std::string path;
    for (size_t i = 0; i + 1 < comps.size(); ++i) {
      std::string_view name = comps[i];
      path = Join(path, name);
      auto it = node->entries.find(name);
      if (it == node->entries.end() || it->second.entry.type() != objects::DIRECTORY) {
        if (!create) return nullptr;
        Replace(*node, name, NewDirectory(name, kDefaultDirMode, now_));
        it = node->entries.find(name);
      }
      CAIRN_ASSIGN_OR_RETURN(node, Materialize(it->second, path));
    }
    return node;
  }

  absl::Status CheckEntry(const Entry& e, const std::string& path) {
    if (e.link_id() != 0 && !limits_.hard_links) {
      return WithErrno(absl::FailedPreconditionError(absl::StrCat(
                           "\"", path, "\": hard links are not supported by this volume version")),
                       EPERM);
    }
    switch (e.type()) {
      case objects::FILE: {
        if (limits_.max_file_size != 0 && e.size() >= limits_.max_file_size) {
          return WithErrno(absl::ResourceExhaustedError(absl::StrCat(
                               "\"", path, "\": file size ", e.size(),
                               " is not under the volume limit of ", limits_.max_file_size)),
                           EFBIG);
        }
        CAIRN_RETURN_IF_ERROR(CheckFileLayout(e, path));
        return absl::OkStatus();
      }
      case objects::SYMLINK:
        // What symlink(2) accepts: 1 to PATH_MAX - 1 bytes, no NUL.
        if (e.symlink_target().empty() || e.symlink_target().size() >= kMaxPathLength ||
            e.symlink_target().find('\0') != std::string::npos) {
          return absl::InvalidArgumentError(
              absl::StrCat("\"", path, "\": symlink target is empty, over ",
                           kMaxPathLength - 1, " bytes or contains a NUL byte"));
        }
        return absl::OkStatus();
      case objects::DIRECTORY:
        if (!e.tree().empty() && e.tree().size() != Digest::kSize) {
          return absl::InvalidArgumentError(
              absl::StrCat("\"", path, "\": malformed tree address"));
        }
        return absl::OkStatus();
      case objects::FIFO:
      case objects::SOCKET:
      case objects::CHAR_DEVICE:
      case objects::BLOCK_DEVICE: {
        bool device = e.type() == objects::CHAR_DEVICE || e.type() == objects::BLOCK_DEVICE;
        if (e.size() != 0 || e.chunks_size() != 0 || !e.inline_data().empty() ||
            !e.symlink_target().empty() || !e.tree().empty() || e.link_id() != 0 ||
            (!device && e.rdev() != 0)) {
          return absl::InvalidArgumentError(absl::StrCat(
              "\"", path, "\": a special file carries no content, target, tree or link"));
        }
        return absl::OkStatus();
      }
      default:
        return absl::InvalidArgumentError(
            absl::StrCat("\"", path, "\": entry has no valid type"));
    }
  }

  absl::Status Put(const Change& change) {
    const std::string& path = change.path();
    if (path.empty()) {
      return absl::InvalidArgumentError("cannot replace the volume root");
    }
    const Entry& in = change.entry();
    CAIRN_RETURN_IF_ERROR(CheckEntry(in, path));
    std::vector<std::string_view> comps = Components(path);
    CAIRN_ASSIGN_OR_RETURN(Node * parent, Parent(comps, /*create=*/true));
    std::string_view name = comps.back();
    auto it = parent->entries.find(name);
    if (it != parent->entries.end()) {
      if (change.no_replace()) {
        return WithErrno(absl::AlreadyExistsError(absl::StrCat(path, " already exists")), EEXIST);
      }
      if (change.keep_directories() && it->second.entry.type() == objects::DIRECTORY) {
        return WithErrno(absl::FailedPreconditionError(absl::StrCat(path, " is a directory")),
                         EISDIR);
      }
    }
    if (in.type() == objects::DIRECTORY && in.tree().empty()) return Mkdir(path, in);

    Slot slot;
    slot.entry = in;
    slot.entry.set_name(std::string(name));
    slot.entry.set_mode(in.mode() & 07777);
    if (in.type() == objects::DIRECTORY) {
      // A graft: the totals come from the grafted objects themselves, not
      // from what the client claims, so snapshot totals stay exact. Clients
      // build and seal objects themselves (D1), so everything below is
      // checked too: names, order, limits and that every reference is stored.
      CAIRN_ASSIGN_OR_RETURN(Digest tree, Digest::FromRaw(in.tree()));
      CAIRN_ASSIGN_OR_RETURN(GraftInfo g, CheckGraft(tree, path, comps.size()));
      const Totals& t = g.totals;
      slot.entry.set_subtree_inodes(t.inodes);
      slot.entry.set_subtree_bytes(t.bytes);
      slot.entry.set_subdirs(g.subdirs);
      slot.entry.clear_chunks();
      slot.entry.clear_inline_data();
    } else {
      slot.entry.clear_tree();
      slot.entry.clear_subtree_inodes();
      slot.entry.clear_subtree_bytes();
    }
    Replace(*parent, name, std::move(slot));
    return absl::OkStatus();
  }

  absl::Status Mkdir(const std::string& path, const Entry& in) {
    if (path.empty()) return SetRootAttributes(in);  // the root always exists
    std::vector<std::string_view> comps = Components(path);
    CAIRN_ASSIGN_OR_RETURN(Node * parent, Parent(comps, /*create=*/true));
    std::string_view name = comps.back();
    auto it = parent->entries.find(name);
    if (it != parent->entries.end() && it->second.entry.type() == objects::DIRECTORY) {
      // Merge: keep the contents, take the requested metadata.
      Entry& e = it->second.entry;
      // Before format 2, mode 0 meant "unchanged"; an entry carrying an
      // owner is from a writer that always sends the full mode, 0 included.
      uint32_t mode = in.mode() & 07777;
      if ((mode != 0 || in.has_uid()) && mode != e.mode()) {
        e.set_mode(mode);
        parent->dirty = true;
      }
      if (CopyIdentity(in, e)) parent->dirty = true;
      if (in.mtime_ns() != 0) {
        if (in.mtime_ns() != e.mtime_ns()) {
          e.set_mtime_ns(in.mtime_ns());
          parent->dirty = true;
        }
        // An explicit mtime comes after the entry changes logged before it
        // (tar x, cp -a, rsync -a set it last): it must not be overridden
        // by the commit time when the directory is written.
        if (it->second.child != nullptr) it->second.child->names_changed = false;
      }
      return absl::OkStatus();
    }
    Slot slot = NewDirectory(name, in.mode(), in.mtime_ns());
    if (in.has_uid()) slot.entry.set_mode(in.mode() & 07777);
    CopyIdentity(in, slot.entry);
    Replace(*parent, name, std::move(slot));
    return absl::OkStatus();
  }

  // MKDIR "" from a writer that stores owners (format 2) records the
  // root's mode, owner and times; from older writers it does nothing, as
  // it always did.
  absl::Status SetRootAttributes(const Entry& in) {
    if (!in.has_uid() && !in.has_gid()) return absl::OkStatus();
    Entry next = root_->root.value_or(Entry());
    next.set_type(objects::DIRECTORY);
    next.set_mode(in.mode() & 07777);
    if (in.mtime_ns() != 0) next.set_mtime_ns(in.mtime_ns());
    CopyIdentity(in, next);
    if (!root_->root || next.SerializeAsString() != root_->root->SerializeAsString()) {
      root_->root = std::move(next);
      root_->dirty = true;
    }
    // As for any MKDIR: an explicit mtime is set after the name changes.
    if (in.mtime_ns() != 0) root_->names_changed = false;
    return absl::OkStatus();
  }

  // The POSIX identity fields of `in` that are set, onto `out`. Returns
  // whether `out` changed.
  static bool CopyIdentity(const Entry& in, Entry& out) {
    bool changed = false;
    if (in.has_uid() && (!out.has_uid() || out.uid() != in.uid())) {
      out.set_uid(in.uid());
      changed = true;
    }
    if (in.has_gid() && (!out.has_gid() || out.gid() != in.gid())) {
      out.set_gid(in.gid());
      changed = true;
    }
    if (in.atime_ns() != 0 && in.atime_ns() != out.atime_ns()) {
      out.set_atime_ns(in.atime_ns());
      changed = true;
    }
    if (in.ctime_ns() != 0 && in.ctime_ns() != out.ctime_ns()) {
      out.set_ctime_ns(in.ctime_ns());
      changed = true;
    }
    return changed;
  }

  absl::Status Remove(const Change& change) {
    const std::string& path = change.path();
    if (path.empty()) return absl::InvalidArgumentError("cannot remove the volume root");
    std::vector<std::string_view> comps = Components(path);
    CAIRN_ASSIGN_OR_RETURN(Node * parent, Parent(comps, /*create=*/false));
    auto it = parent ? parent->entries.find(comps.back())
                     : std::map<std::string, Slot, std::less<>>::iterator();
    if (parent == nullptr || it == parent->entries.end()) {
      if (change.must_exist()) {
        return WithErrno(absl::NotFoundError(absl::StrCat(path, " not found")), ENOENT);
      }
      return absl::OkStatus();
    }
    if (it->second.entry.type() == objects::DIRECTORY && !change.recursive()) {
      return WithErrno(absl::FailedPreconditionError(
                           absl::StrCat(path, " is a directory (use recursive)")),
                       EISDIR);
    }
    parent->entries.erase(it);
    parent->dirty = true;
    parent->names_changed = true;
    return absl::OkStatus();
  }

  absl::Status Rename(const Change& change) {
    const std::string& from = change.path();
    const std::string& to = change.to();
    if (from.empty() || to.empty()) {
      return absl::InvalidArgumentError("cannot rename the volume root");
    }
    if (to.size() > from.size() && to.compare(0, from.size(), from) == 0 &&
        to[from.size()] == '/') {
      return absl::InvalidArgumentError(
          absl::StrCat("cannot move ", from, " into itself (", to, ")"));
    }
    std::vector<std::string_view> from_comps = Components(from);
    CAIRN_ASSIGN_OR_RETURN(Node * src_dir, Parent(from_comps, /*create=*/false));
    auto it = src_dir ? src_dir->entries.find(from_comps.back())
                      : std::map<std::string, Slot, std::less<>>::iterator();
    if (src_dir == nullptr || it == src_dir->entries.end()) {
      if (change.must_exist()) {
        return WithErrno(absl::NotFoundError(absl::StrCat(from, " not found")), ENOENT);
      }
      return absl::OkStatus();
    }
    if (from == to) return absl::OkStatus();
    // Extracting keeps the slot (and any loaded subtree) intact while it is
    // out of the tree; `to` is not below `from`, so creating its parents
    // cannot reach into it.
    auto moved = src_dir->entries.extract(it);
    src_dir->dirty = true;
    src_dir->names_changed = true;
    std::vector<std::string_view> to_comps = Components(to);
    CAIRN_ASSIGN_OR_RETURN(Node * dst_dir, Parent(to_comps, /*create=*/true));
    std::string_view name = to_comps.back();
    moved.mapped().entry.set_name(std::string(name));
    Replace(*dst_dir, name, std::move(moved.mapped()));
    return absl::OkStatus();
  }

  struct GraftInfo {
    Totals totals;
    uint32_t subdirs = 0;  // of the grafted directory itself
    size_t height = 0;  // levels of directories, the grafted one included
  };

  // Validates the grafted directory object at `tree` (to be placed at
  // `path`, `depth` components deep) and everything below it, returning its
  // real totals. Every object is touched rather than read from the cache, so
  // its existence is checked anew on each commit attempt (GC may run
  // between attempts) and its GC grace period restarts. Subtrees shared
  // within one change set are checked once.
  absl::StatusOr<GraftInfo> CheckGraft(const Digest& tree, const std::string& path,
                                       size_t depth) {
    // Paths are at most kMaxPathLength bytes, so no honest tree is deeper;
    // the bound also keeps this recursion (and GC's, fsck's) off the end of
    // the stack.
    constexpr size_t kMaxDepth = kMaxPathLength / 2;
    if (auto it = grafts_.find(tree); it != grafts_.end()) {
      if (depth - 1 + it->second.height > kMaxDepth) return TooDeep(path);
      return it->second;
    }
    if (depth > kMaxDepth) return TooDeep(path);
    CAIRN_RETURN_IF_ERROR(CheckStored(tree, path));
    CAIRN_ASSIGN_OR_RETURN(std::shared_ptr<const Directory> dir, objects_.GetDirectory(tree));
    if (limits_.max_dir_entries != 0 &&
        static_cast<uint64_t>(dir->entries_size()) > limits_.max_dir_entries) {
      return WithErrno(
          absl::ResourceExhaustedError(absl::StrCat(
              "directory \"", path, "\" would have ", dir->entries_size(),
              " entries, over the limit of ", limits_.max_dir_entries)),
          ENOSPC);
    }
    GraftInfo info;
    const std::string* previous = nullptr;
    for (const Entry& e : dir->entries()) {
      if (!IsValidComponent(e.name()) || (previous != nullptr && !(*previous < e.name()))) {
        return absl::InvalidArgumentError(absl::StrCat(
            "grafted directory \"", path, "\" has an invalid, unsorted or repeated name"));
      }
      previous = &e.name();
      std::string child = Join(path, e.name());
      CAIRN_RETURN_IF_ERROR(CheckEntry(e, child));
      if (e.type() == objects::FILE) {
        CAIRN_ASSIGN_OR_RETURN(std::vector<Digest> chunks, StoredChunks(e));
        for (const Digest& chunk : chunks) CAIRN_RETURN_IF_ERROR(CheckStored(chunk, child));
      } else if (e.type() == objects::DIRECTORY) {
        if (e.tree().empty()) {
          return absl::InvalidArgumentError(
              absl::StrCat("grafted directory \"", child, "\" has no tree address"));
        }
        CAIRN_ASSIGN_OR_RETURN(Digest sub_tree, Digest::FromRaw(e.tree()));
        CAIRN_ASSIGN_OR_RETURN(GraftInfo sub, CheckGraft(sub_tree, child, depth + 1));
        if (sub.totals.inodes != e.subtree_inodes() || sub.totals.bytes != e.subtree_bytes()) {
          return absl::InvalidArgumentError(absl::StrCat(
              "grafted directory \"", child, "\" claims ", e.subtree_inodes(), " inodes and ",
              e.subtree_bytes(), " bytes below it, but holds ", sub.totals.inodes, " and ",
              sub.totals.bytes));
        }
        info.height = std::max(info.height, sub.height);
        ++info.subdirs;
      }
      info.totals.Add(e);
    }
    info.height += 1;
    grafts_[tree] = info;
    return info;
  }

  absl::Status CheckStored(const Digest& address, const std::string& path) {
    if (touched_.contains(address)) return absl::OkStatus();
    absl::Status touched = objects_.blobs()->Touch(objects_.volume_id(), address);
    if (absl::IsNotFound(touched)) {
      return absl::FailedPreconditionError(absl::StrCat(
          "object ", address.ToHex(), " referenced by ", path, " is not stored"));
    }
    if (touched.ok()) touched_.insert(address);
    return touched;
  }

  static absl::Status TooDeep(const std::string& path) {
    return WithErrno(absl::InvalidArgumentError(absl::StrCat(
                         "grafted tree at \"", path, "\" is nested too deeply")),
                     ENAMETOOLONG);
  }

  // Writes `node` and its changed descendants bottom-up. Returns whether the
  // node's address changed; fills node.totals either way.
  absl::StatusOr<bool> Flush(Node& node, const std::string& path) {
    bool changed = node.dirty;
    node.totals = Totals();
    node.subdirs = 0;
    for (auto& [name, slot] : node.entries) {
      if (slot.entry.type() == objects::DIRECTORY) ++node.subdirs;
      if (slot.child) {
        std::string child_path = Join(path, name);
        CAIRN_ASSIGN_OR_RETURN(bool child_changed, Flush(*slot.child, child_path));
        if (child_changed) {
          slot.entry.set_tree(slot.child->address.RawString());
          slot.entry.set_subtree_inodes(slot.child->totals.inodes);
          slot.entry.set_subtree_bytes(slot.child->totals.bytes);
          slot.entry.set_subdirs(slot.child->subdirs);
          if (slot.child->names_changed) {
            slot.entry.set_mtime_ns(now_);
            // ctime follows a name change too, where the entry records one.
            if (slot.entry.ctime_ns() != 0) slot.entry.set_ctime_ns(now_);
          }
          changed = true;
        }
      }
      node.totals.Add(slot.entry);
    }
    if (limits_.max_dir_entries != 0 && node.entries.size() > limits_.max_dir_entries &&
        node.entries.size() > node.base_count) {
      return WithErrno(
          absl::ResourceExhaustedError(absl::StrCat(
              "directory \"", path.empty() ? "/" : path, "\" would have ", node.entries.size(),
              " entries, over the limit of ", limits_.max_dir_entries)),
          ENOSPC);
    }
    if (!changed) return false;
    Directory dir;
    dir.mutable_entries()->Reserve(static_cast<int>(node.entries.size()));
    for (const auto& [name, slot] : node.entries) *dir.add_entries() = slot.entry;
    if (&node == root_.get() && node.root) {
      if (node.names_changed) {
        node.root->set_mtime_ns(now_);
        if (node.root->ctime_ns() != 0) node.root->set_ctime_ns(now_);
      }
      *dir.mutable_root() = *node.root;
    }
    CAIRN_ASSIGN_OR_RETURN(Digest address, objects_.PutDirectory(dir));
    changed = address != node.address;
    node.address = address;
    return changed;
  }

  ObjectStore& objects_;
  const Limits limits_;
  const int64_t now_;
  std::unique_ptr<Node> root_;
  Totals base_totals_;
  absl::flat_hash_map<Digest, GraftInfo> grafts_;  // checked grafted subtrees
  absl::flat_hash_set<Digest> touched_;            // objects of grafts found stored
};

}  // namespace

absl::StatusOr<Entry> LookupPath(ObjectStore& objects, const Digest& root, std::string_view path) {
  CAIRN_ASSIGN_OR_RETURN(std::string normalized, Normalized(path));
  Entry current;
  current.set_type(objects::DIRECTORY);
  current.set_mode(kDefaultDirMode);
  current.set_tree(root.RawString());
  std::string walked;
  for (std::string_view name : Components(normalized)) {
    if (current.type() != objects::DIRECTORY) {
      return WithErrno(absl::FailedPreconditionError(absl::StrCat(
                           walked, " is not a directory (looking up ", normalized, ")")),
                       ENOTDIR);
    }
    CAIRN_ASSIGN_OR_RETURN(Digest tree, TreeAddress(current, walked));
    CAIRN_ASSIGN_OR_RETURN(std::shared_ptr<const Directory> dir, objects.GetDirectory(tree));
    const Entry* e = FindEntry(*dir, name);
    walked = Join(walked, name);
    if (e == nullptr) {
      return WithErrno(absl::NotFoundError(absl::StrCat(walked, " not found")), ENOENT);
    }
    current = *e;
  }
  if (normalized.empty()) {
    // The root has no entry of its own; give it its totals so callers can
    // stat it like any directory.
    CAIRN_ASSIGN_OR_RETURN(std::shared_ptr<const Directory> dir, objects.GetDirectory(root));
    if (dir->has_root()) {
      current = dir->root();
      current.set_type(objects::DIRECTORY);
      current.set_tree(root.RawString());
    }
    Totals t = SumEntries(*dir);
    uint32_t subdirs = 0;
    for (const Entry& e : dir->entries()) subdirs += e.type() == objects::DIRECTORY ? 1 : 0;
    current.set_subdirs(subdirs);
    current.set_subtree_inodes(t.inodes);
    current.set_subtree_bytes(t.bytes);
  }
  return current;
}

absl::StatusOr<std::shared_ptr<const Directory>> ReadDirectory(ObjectStore& objects,
                                                               const Digest& root,
                                                               std::string_view path) {
  CAIRN_ASSIGN_OR_RETURN(Entry e, LookupPath(objects, root, path));
  if (e.type() != objects::DIRECTORY) {
    return WithErrno(absl::FailedPreconditionError(absl::StrCat(Sv(path), " is not a directory")),
                     ENOTDIR);
  }
  CAIRN_ASSIGN_OR_RETURN(Digest tree, TreeAddress(e, path));
  return objects.GetDirectory(tree);
}

namespace {

absl::Status WalkDirectory(
    ObjectStore& objects, const Directory& dir, const std::string& path,
    const std::function<bool(const std::string& path, const Entry& entry)>& fn) {
  for (const Entry& e : dir.entries()) {
    std::string child = Join(path, e.name());
    if (!fn(child, e) || e.type() != objects::DIRECTORY) continue;
    CAIRN_ASSIGN_OR_RETURN(Digest tree, TreeAddress(e, child));
    CAIRN_ASSIGN_OR_RETURN(std::shared_ptr<const Directory> sub, objects.GetDirectory(tree));
    CAIRN_RETURN_IF_ERROR(WalkDirectory(objects, *sub, child, fn));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status WalkTree(ObjectStore& objects, const Digest& root, std::string_view path,
                      const std::function<bool(const std::string& path, const Entry& entry)>& fn) {
  CAIRN_ASSIGN_OR_RETURN(std::string normalized, Normalized(path));
  CAIRN_ASSIGN_OR_RETURN(std::shared_ptr<const Directory> dir,
                         ReadDirectory(objects, root, normalized));
  return WalkDirectory(objects, *dir, normalized, fn);
}

absl::StatusOr<ApplyResult> ApplyChanges(ObjectStore& objects, const Digest& root,
                                         const objects::ChangeSet& changes,
                                         const Limits& limits) {
  Builder builder(objects, limits, absl::ToUnixNanos(absl::Now()));
  CAIRN_RETURN_IF_ERROR(builder.Init(root));
  for (const Change& change : changes.changes()) {
    CAIRN_RETURN_IF_ERROR(builder.Apply(change));
  }
  return builder.Finish();
}

}  // namespace cairn
