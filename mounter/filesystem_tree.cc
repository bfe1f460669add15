// The inode table and the tree: nodes by inode number, their paths and
// attributes, lazy loading of base directories, attach/detach, and the
// checks a new name must pass (filesystem.h "Tree helpers").
#include "mounter/filesystem.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "core/files.h"
#include "core/path.h"
#include "core/status.h"
#include "core/tree.h"
#include "mounter/filesystem_internal.h"

namespace cairn::mounter {

absl::StatusOr<objects::Entry> LookupRepairing(ChunkReader& reader, ObjectStore& objects,
                                               const Digest& root, std::string_view path) {
  Digest dir = root;
  for (std::string_view name : SplitPath(path)) {
    CAIRN_ASSIGN_OR_RETURN(auto listing, reader.Directory(dir));
    auto it = std::find_if(listing->entries().begin(), listing->entries().end(),
                           [&](const objects::Entry& e) { return e.name() == name; });
    if (it == listing->entries().end() || it->type() != objects::DIRECTORY) break;
    CAIRN_ASSIGN_OR_RETURN(dir, Digest::FromRaw(it->tree()));
  }
  return LookupPath(objects, root, path);
}

std::shared_ptr<Filesystem::Node> Filesystem::FindLocked(uint64_t ino) {
  auto it = inodes_.find(ino);
  return it == inodes_.end() ? nullptr : it->second;
}

absl::Status Filesystem::CheckCurrentLocked(const Node& node) const {
  auto it = inodes_.find(node.ino);
  if (it != inodes_.end() && it->second.get() == &node) return absl::OkStatus();
  // Replaced by a reload (or forgotten) since the caller looked it up: its
  // path may be wrong now. ESTALE makes the kernel revalidate the path and
  // retry once (retry_estale), which finds the current node.
  return Errno(ESTALE, absl::StrCat("inode ", node.ino, " changed (reload)"));
}

absl::StatusOr<std::shared_ptr<Filesystem::Node>> Filesystem::Get(uint64_t ino) {
  {
    absl::ReaderMutexLock lock(&mu_);
    if (auto node = FindLocked(ino)) return node;
  }
  // An inode the kernel still names from before a reload: resolve its path
  // in the new tree (which hands out the same number for the same path).
  absl::MutexLock lock(&mu_);
  if (auto node = FindLocked(ino)) return node;
  auto hint = path_hint_.find(ino);
  if (hint != path_hint_.end()) {
    auto node = WalkLocked(hint->second, /*create_dirs=*/false);
    if (node.ok() && (*node)->ino == ino) return *node;
  }
  return Errno(ESTALE, absl::StrCat("inode ", ino));
}

void Filesystem::SeedInodes(const std::vector<KnownInode>& known) {
  absl::MutexLock lock(&mu_);
  uint64_t next = next_ino_.load();
  for (const KnownInode& k : known) {
    if (k.ino == kRootIno || k.path.empty()) continue;
    objects::EntryType type = S_ISDIR(k.type)   ? objects::DIRECTORY
                              : S_ISLNK(k.type) ? objects::SYMLINK
                                                : objects::FILE;
    ino_hint_[k.path] = InoHint{k.ino, type};
    path_hint_[k.ino] = k.path;
    next = std::max(next, k.ino + 1);
  }
  next_ino_.store(next);
}

std::string Filesystem::PathLocked(const Node& node) const {
  std::vector<std::string_view> parts;
  const Node* n = &node;
  while (n != nullptr && n->ino != kRootIno && n->View(*this).attached &&
         n->View(*this).parent != nullptr) {
    parts.push_back(n->View(*this).name);
    n = n->View(*this).parent;
  }
  std::string out;
  for (auto it = parts.rbegin(); it != parts.rend(); ++it) {
    if (!out.empty()) out += '/';
    out.append(*it);
  }
  return out;
}

std::string Filesystem::VolumePathLocked(const Node& node) const {
  return JoinPath(options_.sub_path, PathLocked(node));
}

Filesystem::Presented Filesystem::PresentLocked(const Node& node) const {
  const Node::Fields& f = node.View(*this);
  if (f.has_owner) return {f.uid, f.gid, f.mode};
  // No stored owner: the mount's default, and under a mount group
  // (Kubernetes fsGroup, docs/csi.md) that group with the owner's
  // permissions, directories setgid so that new entries inherit it.
  Presented p{options_.uid, options_.gid, f.mode};
  if (options_.mount_group) {
    p.gid = *options_.mount_group;
    p.mode |= (f.mode & 0700) >> 3;
    if (node.type == objects::DIRECTORY) p.mode |= S_ISGID;
  }
  return p;
}

struct stat Filesystem::AttrLocked(const Node& node) const {
  const Node::Fields& f = node.View(*this);
  const Presented p = PresentLocked(node);
  struct stat st {};
  st.st_ino = node.ino;
  st.st_uid = p.uid;
  st.st_gid = p.gid;
  st.st_blksize = 128 << 10;
  switch (node.type) {
    case objects::DIRECTORY: {
      st.st_mode = S_IFDIR | p.mode;
      if (f.loaded) {
        nlink_t subdirs = 0;
        for (const auto& [name, child] : f.children) {
          if (child->type == objects::DIRECTORY) ++subdirs;
        }
        st.st_nlink = 2 + subdirs;
      } else {
        // 1: "not counted" (what find(1) and others expect of a file
        // system that cannot tell), for directories stored without a count.
        st.st_nlink = f.subdirs >= 0 ? 2 + f.subdirs : 1;
      }
      st.st_size = 4096;
      break;
    }
    case objects::SYMLINK:
      st.st_mode = S_IFLNK | 0777;
      st.st_nlink = 1;
      st.st_size = f.symlink.size();
      break;
    case objects::FIFO:
    case objects::SOCKET:
    case objects::CHAR_DEVICE:
    case objects::BLOCK_DEVICE:
      st.st_mode = SpecialFileType(node.type) | p.mode;
      st.st_nlink = 1;
      st.st_rdev = f.rdev;
      break;
    default:
      st.st_mode = S_IFREG | p.mode;
      st.st_nlink = 1 + f.extra_links.size() + f.UnseenLinks();
      st.st_size = f.staged ? f.staged->size() : (f.base ? f.base->size() : 0);
      break;
  }
  if (node.type != objects::DIRECTORY && !f.attached) st.st_nlink = 0;
  st.st_blocks = (st.st_size + 511) / 512;
  if (node.type == objects::FILE) {
    // Files: the 4 KiB blocks that are not holes, as a local file system
    // allocates them (D28).
    st.st_blocks = (f.staged ? f.staged->AllocatedBytes()
                    : f.base ? AllocatedBytes(Holes(*f.base), f.base->size())
                             : 0) / 512;
  }
  auto ts = [](int64_t ns) {
    struct timespec t;
    // Floor division: times before 1970 stay exact too.
    t.tv_sec = ns / 1000000000;
    t.tv_nsec = ns % 1000000000;
    if (t.tv_nsec < 0) {
      t.tv_nsec += 1000000000;
      t.tv_sec -= 1;
    }
    return t;
  };
  st.st_mtim = ts(f.mtime_ns);
  st.st_atim = ts(f.atime_ns);
  st.st_ctim = ts(f.ctime_ns);
  return st;
}

uint64_t Filesystem::InoForLocked(const Node& parent, std::string_view name,
                                  objects::EntryType type) {
  if (!ino_hint_.empty()) {
    auto hint = ino_hint_.find(JoinPath(PathLocked(parent), name));
    if (hint != ino_hint_.end() && hint->second.type == type &&
        !inodes_.contains(hint->second.ino)) {
      return hint->second.ino;
    }
  }
  return next_ino_.fetch_add(1);
}

std::shared_ptr<Filesystem::Node> Filesystem::NewNodeLocked(const std::shared_ptr<Node>& parent,
                                                            std::string_view name,
                                                            const objects::Entry& entry) {
  const objects::EntryType type =
      entry.type() == objects::ENTRY_TYPE_UNSPECIFIED ? objects::FILE : entry.type();
  auto node = std::make_shared<Node>(InoForLocked(*parent, name, type), type);
  node->Edit(*this).TakeAttributes(entry);
  if (node->View(*this).mode == 0 && node->type == objects::DIRECTORY && !entry.has_uid()) {
    node->Edit(*this).mode = kDefaultDirMode;  // before format 2, 0 meant "not recorded"
  }
  switch (node->type) {
    case objects::DIRECTORY:
      if (auto d = Digest::FromRaw(entry.tree()); d.ok()) {
        node->Edit(*this).tree = *d;
      } else {
        node->Edit(*this).loaded = true;  // no tree: an empty directory
      }
      break;
    case objects::SYMLINK:
      node->Edit(*this).symlink = entry.symlink_target();
      break;
    case objects::FIFO:
    case objects::SOCKET:
    case objects::CHAR_DEVICE:
    case objects::BLOCK_DEVICE:
      break;
    default:
      node->Edit(*this).base = std::make_shared<const objects::Entry>(entry);
      node->Edit(*this).link_id = entry.link_id();
      break;
  }
  return node;
}

void Filesystem::PopulateLocked(const std::shared_ptr<Node>& dir,
                                const objects::Directory& listing) {
  if (dir->View(*this).loaded) return;
  for (const objects::Entry& entry : listing.entries()) {
    if (dir->View(*this).children.contains(entry.name())) continue;
    const bool linked = entry.type() == objects::FILE && entry.link_id() != 0;
    if (linked) {
      auto it = base_links_.find(entry.link_id());
      std::shared_ptr<Node> existing = it == base_links_.end() ? nullptr : it->second.lock();
      if (existing && existing->View(*this).attached) {
        // Another name of an inode already listed: one inode (v2 links).
        existing->Edit(*this).base_names_seen += 1;
        AttachLocked(dir, entry.name(), existing);
        continue;
      }
    }
    auto node = NewNodeLocked(dir, entry.name(), entry);
    if (linked) {
      node->Edit(*this).base_links = entry.has_nlink() ? entry.nlink() : 0;
      node->Edit(*this).base_names_seen = 1;
      base_links_[entry.link_id()] = node;
    }
    AttachLocked(dir, entry.name(), node);
  }
  dir->Edit(*this).loaded = true;
}

absl::Status Filesystem::EnsureLoaded(const std::shared_ptr<Node>& dir) {
  Digest tree;
  {
    absl::ReaderMutexLock lock(&mu_);
    if (dir->type != objects::DIRECTORY) return Errno(ENOTDIR, "not a directory");
    if (dir->View(*this).loaded) return absl::OkStatus();
    tree = dir->View(*this).tree;
  }
  CAIRN_ASSIGN_OR_RETURN(auto listing, reader_->Directory(tree));
  absl::MutexLock lock(&mu_);
  PopulateLocked(dir, *listing);
  return absl::OkStatus();
}

absl::Status Filesystem::EnsureLoadedLocked(const std::shared_ptr<Node>& dir) {
  if (dir->type != objects::DIRECTORY) return Errno(ENOTDIR, "not a directory");
  if (dir->View(*this).loaded) return absl::OkStatus();
  CAIRN_ASSIGN_OR_RETURN(auto listing, reader_->Directory(dir->View(*this).tree));
  PopulateLocked(dir, *listing);
  return absl::OkStatus();
}

void Filesystem::AttachLocked(const std::shared_ptr<Node>& dir, const std::string& name,
                              const std::shared_ptr<Node>& node) {
  dir->Edit(*this).children[name] = node;
  if (!node->View(*this).attached) {
    node->Edit(*this).attached = true;
    node->Edit(*this).parent = dir.get();
    node->Edit(*this).name = name;
  } else {
    node->Edit(*this).extra_links.emplace_back(dir.get(), name);
  }
  inodes_[node->ino] = node;
}

void Filesystem::DetachLocked(const std::shared_ptr<Node>& dir, const std::string& name) {
  auto it = dir->View(*this).children.find(name);
  if (it == dir->View(*this).children.end()) return;
  std::shared_ptr<Node> node = it->second;
  dir->Edit(*this).children.erase(it);
  if (node->View(*this).parent == dir.get() && node->View(*this).name == name) {
    if (!node->View(*this).extra_links.empty()) {
      node->Edit(*this).parent = node->View(*this).extra_links.back().first;
      node->Edit(*this).name = node->View(*this).extra_links.back().second;
      node->Edit(*this).extra_links.pop_back();
    } else {
      node->Edit(*this).attached = false;
      node->Edit(*this).parent = nullptr;
    }
  } else {
    auto& links = node->Edit(*this).extra_links;
    links.erase(std::remove(links.begin(), links.end(), std::make_pair(dir.get(), name)),
                links.end());
  }
  if (!node->View(*this).attached && node->nlookup.load() == 0 && node->open.load() == 0) {
    auto found = inodes_.find(node->ino);
    if (found != inodes_.end() && found->second == node) inodes_.erase(found);
  }
}

absl::Status Filesystem::CheckPathLengthLocked(const Node& dir, std::string_view name,
                                               size_t below) const {
  // The control plane refuses a change whose path from the volume root is
  // over kMaxPathLength bytes; refuse it here, where the caller can see it.
  size_t len = VolumePathLocked(dir).size();
  len += (len == 0 ? 0 : 1) + name.size() + below;
  if (len > kMaxPathLength) {
    return Errno(ENAMETOOLONG, absl::StrCat("path from the volume root would be ", len,
                                            " bytes; the maximum is ", kMaxPathLength));
  }
  return absl::OkStatus();
}

size_t Filesystem::LongestBelowLocked(const Node& node, const UnloadedLengths& unloaded) const {
  if (!node.View(*this).loaded) {
    auto it = unloaded.find(&node);
    return it == unloaded.end() ? 0 : it->second;
  }
  size_t longest = 0;
  for (const auto& [name, child] : node.View(*this).children) {
    size_t len = 1 + name.size();
    if (child->type == objects::DIRECTORY) len += LongestBelowLocked(*child, unloaded);
    longest = std::max(longest, len);
  }
  return longest;
}

absl::StatusOr<Filesystem::UnloadedLengths> Filesystem::LongestUnloaded(
    const std::shared_ptr<Node>& dir, std::string_view name, const std::shared_ptr<Node>& new_dir,
    std::string_view new_name) {
  // The unloaded directories of the source's subtree, with their base
  // trees, and how many bytes of path may lie below the new name.
  std::vector<std::pair<const Node*, Digest>> trees;
  size_t budget = 0;
  {
    absl::ReaderMutexLock lock(&mu_);
    auto it = dir->View(*this).children.find(std::string(name));
    if (it == dir->View(*this).children.end() || it->second->type != objects::DIRECTORY) {
      return UnloadedLengths();
    }
    const size_t from = VolumePathLocked(*dir).size() + 1 + name.size();
    const size_t to = VolumePathLocked(*new_dir).size() + 1 + new_name.size();
    // Not deeper than before: what fits where it is fits there too.
    if (to <= from || to >= kMaxPathLength) return UnloadedLengths();
    budget = kMaxPathLength - to;
    std::vector<const Node*> stack = {it->second.get()};
    while (!stack.empty()) {
      const Node* n = stack.back();
      stack.pop_back();
      if (!n->View(*this).loaded) {
        trees.emplace_back(n, n->View(*this).tree);
        continue;
      }
      for (const auto& [child_name, child] : n->View(*this).children) {
        if (child->type == objects::DIRECTORY) stack.push_back(child.get());
      }
    }
  }
  UnloadedLengths out;
  for (const auto& [node, tree] : trees) {
    size_t longest = 0;
    CAIRN_RETURN_IF_ERROR(WalkTree(*objects_, tree, "",
                                   [&](const std::string& path, const objects::Entry&) {
                                     longest = std::max(longest, 1 + path.size());
                                     return longest <= budget;  // over: no need to go deeper
                                   }));
    out[node] = longest;
  }
  return out;
}

absl::Status Filesystem::CheckCreateLocked(const Node& dir, std::string_view name) {
  if (name.size() > kMaxComponentLength) return Errno(ENAMETOOLONG, "name");
  if (!dir.View(*this).attached) return Errno(ENOENT, "directory was removed");
  CAIRN_RETURN_IF_ERROR(CheckPathLengthLocked(dir, name, 0));
  if (dir.View(*this).children.contains(std::string(name))) return Errno(EEXIST, name);
  if (limits_.max_dir_entries != 0 && dir.View(*this).children.size() >= limits_.max_dir_entries) {
    return Errno(ENOSPC, absl::StrCat("directory holds the maximum of ", limits_.max_dir_entries,
                                      " entries"));
  }
  if (limits_.max_inodes != 0 && inode_count_ >= static_cast<int64_t>(limits_.max_inodes)) {
    return Errno(ENOSPC, absl::StrCat("volume holds the maximum of ", limits_.max_inodes,
                                      " inodes"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<Filesystem::Node>> Filesystem::WalkLocked(std::string_view path,
                                                                         bool create_dirs) {
  std::shared_ptr<Node> cur = root_;
  if (path.empty()) return cur;
  for (absl::string_view piece :
       absl::StrSplit(absl::string_view(path.data(), path.size()), '/', absl::SkipEmpty())) {
    std::string_view part(piece.data(), piece.size());
    CAIRN_RETURN_IF_ERROR(EnsureLoadedLocked(cur));
    auto it = cur->View(*this).children.find(std::string(part));
    if (it == cur->View(*this).children.end()) {
      if (!create_dirs) return Errno(ENOENT, path);
      auto dir = std::make_shared<Node>(InoForLocked(*cur, part, objects::DIRECTORY),
                                        objects::DIRECTORY);
      dir->Edit(*this).mode = kDefaultDirMode;
      dir->Edit(*this).mtime_ns = dir->Edit(*this).ctime_ns = dir->Edit(*this).atime_ns = NowNs();
      dir->Edit(*this).loaded = true;
      AttachLocked(cur, std::string(part), dir);
      cur = dir;
      continue;
    }
    cur = it->second;
    if (cur->type != objects::DIRECTORY) {
      // Keep walking only to report; the last component may be a file.
      if (part.end() != path.end()) return Errno(ENOTDIR, path);
    }
  }
  return cur;
}

std::shared_ptr<Filesystem::Node> Filesystem::NewLocalNode(objects::EntryType type,
                                                           mode_t mode) {
  Node::Fields fields;
  fields.mode = mode & 07777;
  fields.mtime_ns = fields.ctime_ns = fields.atime_ns = NowNs();
  return std::make_shared<Node>(next_ino_.fetch_add(1), type, std::move(fields));
}

}  // namespace cairn::mounter
