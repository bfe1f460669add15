#include "mounter/filesystem.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <thread>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/crypto.h"
#include "core/files.h"
#include "core/log.h"
#include "core/path.h"
#include "core/status.h"
#include "core/tree.h"
#include "mounter/filesystem_internal.h"

namespace cairn::mounter {

namespace {

constexpr size_t kReadaheadChunks = 4;  // 16 MiB ahead of a sequential reader

// A chunk's worth of zeros that reads of holes point into (never freed).
std::string_view Zeros() {
  static const std::string* zeros = new std::string(kChunkSize, '\0');
  return *zeros;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Filesystem>> Filesystem::Create(
    VolumeClient* client, ObjectStore* objects, ChunkReader* reader,
    const api::OpenVolumeResponse& opened, FsOptions options) {
  std::unique_ptr<Filesystem> fs(new Filesystem(client, objects, reader, opened, options));
  CAIRN_ASSIGN_OR_RETURN(Digest root, Digest::FromRaw(opened.head().root()));
  Digest tree = root;
  uint32_t mode = kDefaultDirMode;
  int64_t mtime_ns = opened.head().created_at_ns();
  objects::Entry attributes;  // the root's stored owner and times, if any
  if (!options.sub_path.empty()) {
    auto entry = LookupRepairing(*reader, *objects, root, options.sub_path);
    if (!entry.ok()) {
      return absl::Status(entry.status().code(),
                          absl::StrCat("sub-path ", options.sub_path, ": ", entry.status().message()));
    }
    if (entry->type() != objects::DIRECTORY) {
      return WithErrno(absl::FailedPreconditionError(
                           absl::StrCat("sub-path ", options.sub_path, " is not a directory")),
                       ENOTDIR);
    }
    CAIRN_ASSIGN_OR_RETURN(tree, Digest::FromRaw(entry->tree()));
    if (entry->mode()) mode = entry->mode();
    mtime_ns = entry->mtime_ns();
    attributes = *entry;
  }
  // Warm the root listing so the first `ls` does not pay for it.
  CAIRN_ASSIGN_OR_RETURN(auto listing, reader->Directory(tree));
  if (options.sub_path.empty() && listing->has_root()) attributes = listing->root();
  int64_t subdirs = 0;
  for (const objects::Entry& e : listing->entries()) subdirs += e.type() == objects::DIRECTORY;
  absl::MutexLock lock(&fs->mu_);
  auto node = std::make_shared<Node>(kRootIno, objects::DIRECTORY);
  Node::Fields& f = node->Edit(*fs);
  f.mode = mode;
  f.mtime_ns = f.ctime_ns = f.atime_ns = mtime_ns;
  if (attributes.has_uid()) f.TakeAttributes(attributes);
  f.subdirs = subdirs;
  f.tree = tree;
  f.attached = true;
  fs->root_ = node;
  fs->inodes_[kRootIno] = node;
  return fs;
}

Filesystem::Filesystem(VolumeClient* client, ObjectStore* objects, ChunkReader* reader,
                       const api::OpenVolumeResponse& opened, FsOptions options)
    : client_(client),
      objects_(objects),
      reader_(reader),
      options_(std::move(options)),
      volume_id_(opened.volume().id()),
      volume_name_(opened.volume().name()),
      version_(opened.volume().version()) {
  limits_.max_inodes = opened.max_inodes();
  limits_.max_dir_entries = opened.max_dir_entries();
  limits_.max_file_size = opened.max_file_size();
  limits_.hard_links = opened.hard_links();
  std::string seed = RandomBytes(8);
  uint64_t id = 0;
  std::memcpy(&id, seed.data(), sizeof id);
  next_link_id_ = (id >> 1) | 1;
  absl::MutexLock lock(&mu_);
  base_ = opened.head();
  inode_count_ = static_cast<int64_t>(opened.head().inodes());
}

Filesystem::~Filesystem() = default;

void Filesystem::SetNotifier(Notifier notifier) { notifier_ = std::move(notifier); }

absl::Status Filesystem::ReadOnlyCheck() const {
  if (options_.read_only) return Errno(EROFS, "read-only mount");
  return absl::OkStatus();
}

// ---- Tree helpers -------------------------------------------------------

// ---- Inodes -------------------------------------------------------------

absl::StatusOr<struct stat> Filesystem::Lookup(uint64_t parent, std::string_view name) {
  if (name.size() > kMaxComponentLength) return Errno(ENAMETOOLONG, "name");
  CAIRN_ASSIGN_OR_RETURN(auto dir, Get(parent));
  CAIRN_RETURN_IF_ERROR(EnsureLoaded(dir));
  absl::ReaderMutexLock lock(&mu_);
  CAIRN_RETURN_IF_ERROR(CheckCurrentLocked(*dir));
  auto it = dir->View(*this).children.find(std::string(name));
  if (it == dir->View(*this).children.end()) return Errno(ENOENT, name);
  it->second->nlookup.fetch_add(1);
  return AttrLocked(*it->second);
}

void Filesystem::Forget(uint64_t ino, uint64_t n) {
  if (ino == kRootIno) return;
  absl::MutexLock lock(&mu_);
  auto node = FindLocked(ino);
  if (!node) return;
  uint64_t cur = node->nlookup.load();
  node->nlookup.store(cur > n ? cur - n : 0);
  if (!node->View(*this).attached && node->nlookup.load() == 0 && node->open.load() == 0) {
    inodes_.erase(ino);
  }
}

absl::StatusOr<struct stat> Filesystem::GetAttr(uint64_t ino) {
  CAIRN_ASSIGN_OR_RETURN(auto node, Get(ino));
  absl::ReaderMutexLock lock(&mu_);
  return AttrLocked(*node);
}

absl::StatusOr<std::shared_ptr<StagedFile>> Filesystem::EnsureStaged(
    const std::shared_ptr<Node>& node) {
  std::shared_ptr<const objects::Entry> base;
  {
    absl::ReaderMutexLock lock(&mu_);
    if (node->type != objects::FILE) return Errno(EISDIR, "not a regular file");
    if (node->View(*this).staged) return node->View(*this).staged;
    base = node->View(*this).base;
  }
  CAIRN_ASSIGN_OR_RETURN(auto staged, StagedFile::Create(options_.staging_dir,
                                                         base ? *base : objects::Entry(), reader_));
  absl::MutexLock lock(&mu_);
  if (!node->View(*this).staged) node->Edit(*this).staged = std::move(staged);
  return node->View(*this).staged;
}

absl::StatusOr<struct stat> Filesystem::SetAttr(uint64_t ino, const struct stat& attr,
                                                int to_set) {
  CAIRN_ASSIGN_OR_RETURN(auto node, Get(ino));
  const int changing = kSetMode | kSetUid | kSetGid | kSetSize | kSetMtime | kSetMtimeNow |
                       kSetAtime | kSetAtimeNow | kSetCtime;
  if (to_set & changing) CAIRN_RETURN_IF_ERROR(ReadOnlyCheck());
  // From staging to logging, the node is pinned: a commit that finished in
  // between would otherwise replace the just-truncated staged file by the
  // entry it committed (the content before the truncate), losing it.
  struct Pin {
    std::atomic<int>* n = nullptr;
    ~Pin() {
      if (n != nullptr) n->fetch_sub(1);
    }
  } pin;
  if (to_set & kSetSize) {
    uint64_t size = attr.st_size;
    if (limits_.max_file_size != 0 && size >= limits_.max_file_size) {
      return Errno(EFBIG, "file size limit");
    }
    node->modifying.fetch_add(1);
    pin.n = &node->modifying;
    CAIRN_ASSIGN_OR_RETURN(auto staged, EnsureStaged(node));
    CAIRN_RETURN_IF_ERROR(staged->Truncate(size));
  }
  absl::MutexLock lock(&mu_);
  if (to_set & changing) CAIRN_RETURN_IF_ERROR(CheckCurrentLocked(*node));
  int64_t now = NowNs();
  bool changed = false;
  if (to_set & (kSetUid | kSetGid)) {
    // The kernel has checked that the caller may (default_permissions).
    // A node that stored no owner takes what it showed, mode included, so
    // a chown of one half does not change the other or the permissions.
    const Presented shown = PresentLocked(*node);
    Node::Fields& f = node->Edit(*this);
    f.uid = (to_set & kSetUid) ? attr.st_uid : shown.uid;
    f.gid = (to_set & kSetGid) ? attr.st_gid : shown.gid;
    if (!f.has_owner) f.mode = shown.mode;
    f.has_owner = true;
    changed = true;
  }
  if (to_set & kSetMode) {
    if (node.get() == root_.get() && !node->View(*this).has_owner) {
      // The volume root's mode is stored only with an owner (MKDIR "" of
      // format 2): it keeps the one it shows.
      const Presented shown = PresentLocked(*node);
      node->Edit(*this).uid = shown.uid;
      node->Edit(*this).gid = shown.gid;
      node->Edit(*this).has_owner = true;
    }
    node->Edit(*this).mode = attr.st_mode & 07777;
    changed = true;
  }
  if (to_set & kSetAtimeNow) {
    node->Edit(*this).atime_ns = now;
    changed = true;
  } else if (to_set & kSetAtime) {
    node->Edit(*this).atime_ns = int64_t{attr.st_atim.tv_sec} * 1000000000 + attr.st_atim.tv_nsec;
    changed = true;
  }
  if (to_set & kSetMtimeNow) {
    node->Edit(*this).mtime_ns = now;
    changed = true;
  } else if (to_set & kSetMtime) {
    node->Edit(*this).mtime_ns = int64_t{attr.st_mtim.tv_sec} * 1000000000 + attr.st_mtim.tv_nsec;
    changed = true;
  } else if (to_set & kSetSize) {
    node->Edit(*this).mtime_ns = now;
  }
  // chown(f, -1, -1) and the like: nothing but ctime changes, and it must.
  if (to_set & (kSetSize | kSetCtime)) changed = true;
  if (changed) {
    node->Edit(*this).ctime_ns = now;
    if (node->type == objects::DIRECTORY) {
      // The volume root too: MKDIR "" records its attributes (format 2).
      LogMkdirLocked(*node);
    } else {
      const bool logged = node->View(*this).put_pending;
      MarkContentDirtyLocked(node);
      // Already pending: the journal's record of it still has the old
      // owner, mode and times; a crash before the next record would
      // recover those.
      if (logged && node->View(*this).attached) JournalContentLocked(*node);
    }
  }
  return AttrLocked(*node);
}

absl::StatusOr<std::string> Filesystem::ReadLink(uint64_t ino) {
  CAIRN_ASSIGN_OR_RETURN(auto node, Get(ino));
  absl::ReaderMutexLock lock(&mu_);
  if (node->type != objects::SYMLINK) return Errno(EINVAL, "not a symlink");
  return node->View(*this).symlink;
}

// ---- Namespace ----------------------------------------------------------

absl::StatusOr<struct stat> Filesystem::MkDir(uint64_t parent, std::string_view name,
                                              mode_t mode, std::optional<Caller> caller) {
  CAIRN_RETURN_IF_ERROR(ReadOnlyCheck());
  CAIRN_ASSIGN_OR_RETURN(auto dir, Get(parent));
  CAIRN_RETURN_IF_ERROR(EnsureLoaded(dir));
  absl::MutexLock lock(&mu_);
  CAIRN_RETURN_IF_ERROR(CheckCurrentLocked(*dir));
  CAIRN_RETURN_IF_ERROR(CheckCreateLocked(*dir, name));
  auto node = NewLocalNode(objects::DIRECTORY, mode);
  node->Edit(*this).loaded = true;
  AttachNewLocked(dir, name, node, caller);
  LogMkdirLocked(*node);
  node->nlookup.fetch_add(1);
  return AttrLocked(*node);
}

absl::StatusOr<struct stat> Filesystem::Symlink(std::string_view target, uint64_t parent,
                                                std::string_view name,
                                                std::optional<Caller> caller) {
  CAIRN_RETURN_IF_ERROR(ReadOnlyCheck());
  if (target.size() > 4095) return Errno(ENAMETOOLONG, "symlink target");
  CAIRN_ASSIGN_OR_RETURN(auto dir, Get(parent));
  CAIRN_RETURN_IF_ERROR(EnsureLoaded(dir));
  absl::MutexLock lock(&mu_);
  CAIRN_RETURN_IF_ERROR(CheckCurrentLocked(*dir));
  CAIRN_RETURN_IF_ERROR(CheckCreateLocked(*dir, name));
  auto node = NewLocalNode(objects::SYMLINK, 0777);
  node->Edit(*this).symlink = std::string(target);
  AttachNewLocked(dir, name, node, caller);
  return FinishNewLocked(node);
}

absl::StatusOr<struct stat> Filesystem::Mknod(uint64_t parent, std::string_view name,
                                              mode_t mode, dev_t rdev,
                                              std::optional<Caller> caller) {
  objects::EntryType type;
  switch (mode & S_IFMT) {
    case S_IFREG: {
      CAIRN_ASSIGN_OR_RETURN(Created created, Create(parent, name, mode, O_WRONLY, caller));
      Release(created.fh);
      return created.attr;
    }
    case S_IFIFO: type = objects::FIFO; break;
    case S_IFSOCK: type = objects::SOCKET; break;
    case S_IFCHR: type = objects::CHAR_DEVICE; break;
    case S_IFBLK: type = objects::BLOCK_DEVICE; break;
    default:
      return Errno(EINVAL, absl::StrFormat("mknod of file type 0%o", mode & S_IFMT));
  }
  CAIRN_RETURN_IF_ERROR(ReadOnlyCheck());
  if (name.size() > kMaxComponentLength) return Errno(ENAMETOOLONG, "name");
  CAIRN_ASSIGN_OR_RETURN(auto dir, Get(parent));
  CAIRN_RETURN_IF_ERROR(EnsureLoaded(dir));
  absl::MutexLock lock(&mu_);
  CAIRN_RETURN_IF_ERROR(CheckCurrentLocked(*dir));
  CAIRN_RETURN_IF_ERROR(CheckCreateLocked(*dir, name));
  auto node = NewLocalNode(type, mode);
  if (type == objects::CHAR_DEVICE || type == objects::BLOCK_DEVICE) {
    node->Edit(*this).rdev = rdev;
  }
  AttachNewLocked(dir, name, node, caller);
  return FinishNewLocked(node);
}

void Filesystem::AttachNewLocked(const std::shared_ptr<Node>& dir, std::string_view name,
                                 const std::shared_ptr<Node>& node,
                                 const std::optional<Caller>& caller) {
  OwnNewLocked(*dir, *node, caller);
  AttachLocked(dir, std::string(name), node);
  ++inode_count_;
  dir->Edit(*this).mtime_ns = dir->Edit(*this).ctime_ns = node->View(*this).mtime_ns;
}

struct stat Filesystem::FinishNewLocked(const std::shared_ptr<Node>& node) {
  MarkContentDirtyLocked(node);
  node->Edit(*this).ctime_ns = node->View(*this).mtime_ns;  // a new inode: all three times equal
  node->nlookup.fetch_add(1);
  return AttrLocked(*node);
}

void Filesystem::OwnNewLocked(const Node& dir, Node& node, const std::optional<Caller>& caller) {
  if (!caller) return;
  const Presented parent = PresentLocked(dir);
  const bool setgid = (parent.mode & S_ISGID) != 0;
  Node::Fields& f = node.Edit(*this);
  f.has_owner = true;
  f.uid = caller->uid;
  f.gid = setgid ? parent.gid : caller->gid;
  if (setgid && node.type == objects::DIRECTORY) f.mode |= S_ISGID;
}

absl::StatusOr<struct stat> Filesystem::Link(uint64_t ino, uint64_t parent,
                                             std::string_view name) {
  CAIRN_RETURN_IF_ERROR(ReadOnlyCheck());
  if (!limits_.hard_links) {
    return Errno(EPERM, absl::StrCat("hard links need a version 2 volume (this is version ",
                                     version_, ")"));
  }
  CAIRN_ASSIGN_OR_RETURN(auto node, Get(ino));
  CAIRN_ASSIGN_OR_RETURN(auto dir, Get(parent));
  CAIRN_RETURN_IF_ERROR(EnsureLoaded(dir));
  absl::MutexLock lock(&mu_);
  if (node->type != objects::FILE) return Errno(EPERM, "hard links to regular files only");
  CAIRN_RETURN_IF_ERROR(CheckCurrentLocked(*dir));
  if (node->View(*this).attached) CAIRN_RETURN_IF_ERROR(CheckCurrentLocked(*node));
  if (!node->View(*this).attached) return Errno(ENOENT, "file was removed");
  CAIRN_RETURN_IF_ERROR(CheckCreateLocked(*dir, name));
  if (node->View(*this).link_id == 0) node->Edit(*this).link_id = next_link_id_.fetch_add(1);
  AttachLocked(dir, std::string(name), node);
  ++inode_count_;
  node->Edit(*this).put_pending = false;  // re-log a PUT for every name, carrying the link id
  MarkContentDirtyLocked(node);           // moves its ctime
  dir->Edit(*this).mtime_ns = dir->Edit(*this).ctime_ns = node->View(*this).ctime_ns;
  node->nlookup.fetch_add(1);
  return AttrLocked(*node);
}

absl::Status Filesystem::Unlink(uint64_t parent, std::string_view name) {
  CAIRN_RETURN_IF_ERROR(ReadOnlyCheck());
  CAIRN_ASSIGN_OR_RETURN(auto dir, Get(parent));
  CAIRN_RETURN_IF_ERROR(EnsureLoaded(dir));
  absl::MutexLock lock(&mu_);
  CAIRN_RETURN_IF_ERROR(CheckCurrentLocked(*dir));
  auto it = dir->View(*this).children.find(std::string(name));
  if (it == dir->View(*this).children.end()) return Errno(ENOENT, name);
  if (it->second->type == objects::DIRECTORY) return Errno(EISDIR, name);
  objects::Change change;
  change.set_kind(objects::Change::REMOVE);
  change.set_path(JoinPath(VolumePathLocked(*dir), name));
  const int64_t now = NowNs();
  // Its link count changes: so does its ctime (seen through other names).
  it->second->Edit(*this).ctime_ns = now;
  DetachLocked(dir, std::string(name));
  --inode_count_;
  dir->Edit(*this).mtime_ns = dir->Edit(*this).ctime_ns = now;
  LogLocked(std::move(change));
  return absl::OkStatus();
}

absl::Status Filesystem::RmDir(uint64_t parent, std::string_view name) {
  CAIRN_RETURN_IF_ERROR(ReadOnlyCheck());
  CAIRN_ASSIGN_OR_RETURN(auto dir, Get(parent));
  CAIRN_RETURN_IF_ERROR(EnsureLoaded(dir));
  std::shared_ptr<Node> child;
  {
    absl::ReaderMutexLock lock(&mu_);
    auto it = dir->View(*this).children.find(std::string(name));
    if (it == dir->View(*this).children.end()) return Errno(ENOENT, name);
    child = it->second;
  }
  CAIRN_RETURN_IF_ERROR(EnsureLoaded(child));
  absl::MutexLock lock(&mu_);
  CAIRN_RETURN_IF_ERROR(CheckCurrentLocked(*dir));
  auto it = dir->View(*this).children.find(std::string(name));
  if (it == dir->View(*this).children.end() || it->second != child) return Errno(ENOENT, name);
  if (!child->View(*this).children.empty()) return Errno(ENOTEMPTY, name);
  objects::Change change;
  change.set_kind(objects::Change::REMOVE);
  change.set_path(JoinPath(VolumePathLocked(*dir), name));
  // Our view of it is empty: remove it even if another mount has since put
  // files in it (last writer wins at directory level; docs/mounter.md).
  change.set_recursive(true);
  DetachLocked(dir, std::string(name));
  --inode_count_;
  dir->Edit(*this).mtime_ns = dir->Edit(*this).ctime_ns = NowNs();
  LogLocked(std::move(change));
  return absl::OkStatus();
}

absl::Status Filesystem::Rename(uint64_t parent, std::string_view name, uint64_t new_parent,
                                std::string_view new_name, unsigned flags) {
  if (flags & RENAME_EXCHANGE) return Errno(EINVAL, "RENAME_EXCHANGE is not supported");
  CAIRN_RETURN_IF_ERROR(ReadOnlyCheck());
  if (new_name.size() > kMaxComponentLength) return Errno(ENAMETOOLONG, "name");
  CAIRN_ASSIGN_OR_RETURN(auto dir, Get(parent));
  CAIRN_ASSIGN_OR_RETURN(auto new_dir, Get(new_parent));
  CAIRN_RETURN_IF_ERROR(EnsureLoaded(dir));
  CAIRN_RETURN_IF_ERROR(EnsureLoaded(new_dir));
  std::shared_ptr<Node> target;
  {
    absl::ReaderMutexLock lock(&mu_);
    auto it = new_dir->View(*this).children.find(std::string(new_name));
    if (it != new_dir->View(*this).children.end()) target = it->second;
  }
  if (target && target->type == objects::DIRECTORY) CAIRN_RETURN_IF_ERROR(EnsureLoaded(target));
  // Paths below a directory not listed yet count too: the commit would
  // refuse one over the limit.
  CAIRN_ASSIGN_OR_RETURN(UnloadedLengths unloaded, LongestUnloaded(dir, name, new_dir, new_name));

  absl::MutexLock lock(&mu_);
  CAIRN_RETURN_IF_ERROR(CheckCurrentLocked(*dir));
  CAIRN_RETURN_IF_ERROR(CheckCurrentLocked(*new_dir));
  auto src_it = dir->View(*this).children.find(std::string(name));
  if (src_it == dir->View(*this).children.end()) return Errno(ENOENT, name);
  std::shared_ptr<Node> src = src_it->second;
  auto dst_it = new_dir->View(*this).children.find(std::string(new_name));
  std::shared_ptr<Node> dst =
      dst_it == new_dir->View(*this).children.end() ? nullptr : dst_it->second;
  if (!new_dir->View(*this).attached) return Errno(ENOENT, "target directory was removed");
  if (dst) {
    if (flags & RENAME_NOREPLACE) return Errno(EEXIST, new_name);
    if (dst == src) return absl::OkStatus();
    if (src->type == objects::DIRECTORY) {
      if (dst->type != objects::DIRECTORY) return Errno(ENOTDIR, new_name);
      if (!dst->View(*this).loaded) return Errno(EAGAIN, "target changed");
      if (!dst->View(*this).children.empty()) return Errno(ENOTEMPTY, new_name);
    } else if (dst->type == objects::DIRECTORY) {
      return Errno(EISDIR, new_name);
    }
  } else if (new_dir != dir && limits_.max_dir_entries != 0 &&
             new_dir->View(*this).children.size() >= limits_.max_dir_entries) {
    return Errno(ENOSPC, "directory entry limit");
  }
  if (src->type == objects::DIRECTORY) {
    for (Node* n = new_dir.get(); n != nullptr;
         n = n->View(*this).attached ? n->View(*this).parent : nullptr) {
      if (n == src.get()) return Errno(EINVAL, "cannot move a directory into itself");
    }
  }
  CAIRN_RETURN_IF_ERROR(
      CheckPathLengthLocked(*new_dir, new_name,
                            src->type == objects::DIRECTORY ? LongestBelowLocked(*src, unloaded)
                                                            : 0));
  objects::Change change;
  change.set_kind(objects::Change::RENAME);
  change.set_path(JoinPath(VolumePathLocked(*dir), name));
  change.set_to(JoinPath(VolumePathLocked(*new_dir), new_name));
  if (dst) {
    DetachLocked(new_dir, std::string(new_name));
    --inode_count_;
  }
  DetachLocked(dir, std::string(name));
  AttachLocked(new_dir, std::string(new_name), src);
  int64_t now = NowNs();
  dir->Edit(*this).mtime_ns = dir->Edit(*this).ctime_ns = now;
  new_dir->Edit(*this).mtime_ns = new_dir->Edit(*this).ctime_ns = now;
  src->Edit(*this).ctime_ns = now;
  if (dst) dst->Edit(*this).ctime_ns = now;  // one name fewer, seen through others
  LogLocked(std::move(change));
  return absl::OkStatus();
}

// ---- Files --------------------------------------------------------------

absl::StatusOr<Filesystem::Created> Filesystem::Create(uint64_t parent, std::string_view name,
                                                       mode_t mode, int flags,
                                                       std::optional<Caller> caller) {
  CAIRN_RETURN_IF_ERROR(ReadOnlyCheck());
  if (name.size() > kMaxComponentLength) return Errno(ENAMETOOLONG, "name");
  CAIRN_ASSIGN_OR_RETURN(auto dir, Get(parent));
  CAIRN_RETURN_IF_ERROR(EnsureLoaded(dir));
  CAIRN_ASSIGN_OR_RETURN(auto staged,
                         StagedFile::Create(options_.staging_dir, objects::Entry(), reader_));
  std::shared_ptr<Node> node;
  struct stat attr;
  uint64_t fh;
  {
    absl::MutexLock lock(&mu_);
    CAIRN_RETURN_IF_ERROR(CheckCurrentLocked(*dir));
    CAIRN_RETURN_IF_ERROR(CheckCreateLocked(*dir, name));
    node = NewLocalNode(objects::FILE, mode);
    node->Edit(*this).staged = std::move(staged);
    AttachNewLocked(dir, name, node, caller);
    attr = FinishNewLocked(node);
    // Registered under mu_, so that a reload (which checks for open handles
    // under mu_) either sees this handle or happens entirely before it.
    fh = AddHandleLocked(node, /*writable=*/true);
  }
  return Created{attr, fh};
}

uint64_t Filesystem::AddHandleLocked(const std::shared_ptr<Node>& node, bool writable) {
  node->open.fetch_add(1);
  absl::MutexLock lock(&handles_mu_);
  uint64_t fh = next_fh_++;
  handles_[fh] = std::make_unique<Handle>();
  handles_[fh]->node = node;
  handles_[fh]->writable = writable;
  ++open_files_;
  return fh;
}

absl::StatusOr<uint64_t> Filesystem::Open(uint64_t ino, int flags) {
  bool writable = (flags & O_ACCMODE) != O_RDONLY;
  bool truncate = (flags & O_TRUNC) != 0;
  if (writable || truncate) CAIRN_RETURN_IF_ERROR(ReadOnlyCheck());
  // A reload between Get() and registering the handle would leave the
  // handle on a node that is no longer in the tree, and writes through it
  // would never be committed: register under mu_, on the current node.
  uint64_t fh = 0;
  for (int attempt = 0; fh == 0; ++attempt) {
    CAIRN_ASSIGN_OR_RETURN(auto node, Get(ino));
    absl::ReaderMutexLock lock(&mu_);
    if (node->type == objects::DIRECTORY) return Errno(EISDIR, "directory");
    if (node->type != objects::FILE) return Errno(EINVAL, "not a regular file");
    if (FindLocked(ino) == node) {
      fh = AddHandleLocked(node, writable);
    } else if (attempt >= 3) {
      return Errno(ESTALE, absl::StrCat("inode ", ino));
    }
  }
  // libfuse enables FUSE_CAP_ATOMIC_O_TRUNC by default: the kernel then
  // sends O_TRUNC with the open (no separate setattr) and expects the file
  // system to truncate.
  if (truncate) {
    struct stat zero {};
    if (auto st = SetAttr(ino, zero, kSetSize); !st.ok()) {
      Release(fh);
      return st.status();
    }
  }
  return fh;
}

void Filesystem::Release(uint64_t fh) {
  std::shared_ptr<Node> node;
  bool writable = false;
  {
    absl::MutexLock lock(&handles_mu_);
    auto it = handles_.find(fh);
    if (it == handles_.end()) return;
    node = it->second->node;
    writable = it->second->writable;
    handles_.erase(it);
    --open_files_;
  }
  node->open.fetch_sub(1);
  absl::MutexLock lock(&mu_);
  // What was written through the handle, so a mounter crash keeps it (the
  // record lives in the page cache; fsync makes it durable).
  if (writable && node->View(*this).put_pending && node->View(*this).attached) {
    JournalContentLocked(*node);
  }
  if (!node->View(*this).attached && node->nlookup.load() == 0 && node->open.load() == 0) {
    auto found = inodes_.find(node->ino);
    if (found != inodes_.end() && found->second == node) inodes_.erase(found);
  }
}

absl::Status Filesystem::FsyncFile(uint64_t fh) {
  if (options_.journal == nullptr) return absl::OkStatus();
  CAIRN_ASSIGN_OR_RETURN(std::shared_ptr<Node> node, HandleNode(fh, /*for_writing=*/false));
  std::shared_ptr<StagedFile> staged;
  {
    absl::ReaderMutexLock lock(&mu_);
    staged = node->View(*this).staged;
  }
  // Data first, then the record naming it, then the journal itself.
  if (staged) CAIRN_RETURN_IF_ERROR(staged->Sync());
  {
    absl::MutexLock lock(&mu_);
    if (node->View(*this).attached && (node->View(*this).put_pending || node->View(*this).staged)) {
      if (node->View(*this).jid == 0) node->Edit(*this).jid = ++next_jid_;
      CAIRN_RETURN_IF_ERROR(
          options_.journal->AppendContent(node->View(*this).jid, ContentLocked(*node)));
    }
  }
  return options_.journal->Sync();
}

size_t Filesystem::ReadBuffer::size() const {
  if (slices.empty()) return owned.size();
  size_t n = 0;
  for (const auto& [p, len] : slices) n += len;
  return n;
}

std::string Filesystem::ReadBuffer::Flatten() const {
  if (slices.empty()) return owned;
  std::string out;
  out.reserve(size());
  for (const auto& [p, len] : slices) out.append(p, len);
  return out;
}

absl::StatusOr<Filesystem::ReadBuffer> Filesystem::Read(uint64_t fh, uint64_t off, size_t size) {
  std::shared_ptr<Node> node;
  bool sequential;
  {
    absl::MutexLock lock(&handles_mu_);
    auto it = handles_.find(fh);
    if (it == handles_.end()) return Errno(EBADF, "file handle");
    node = it->second->node;
    // Kernel readahead issues several reads at once, not always in order:
    // anything within a chunk of the previous end counts as sequential.
    uint64_t prev = it->second->next_read.exchange(off + size);
    const bool near = off + kChunkSize >= prev && off <= prev + kChunkSize;
    int streak = near ? std::min(it->second->near_reads.load() + 1, 4) : 0;
    it->second->near_reads.store(streak);
    sequential = off == 0 || streak >= 2;
  }
  std::shared_ptr<StagedFile> staged;
  std::shared_ptr<const objects::Entry> base;
  bool touch;
  const int64_t now = NowNs();
  {
    absl::ReaderMutexLock lock(&mu_);
    const Node::Fields& f = node->View(*this);
    staged = f.staged;
    base = f.base;
    // relatime: atime moves when it is not after mtime/ctime, or a day old.
    touch = f.atime_ns <= f.mtime_ns || f.atime_ns <= f.ctime_ns ||
            now - f.atime_ns >= int64_t{86400} * 1000000000;
  }
  if (touch) {
    // In memory only: no change is logged for a read (it would make every
    // reader a writer); the atime goes out with the node's next change.
    absl::MutexLock lock(&mu_);
    node->Edit(*this).atime_ns = now;
  }
  ReadBuffer out;
  if (staged) {
    CAIRN_ASSIGN_OR_RETURN(out.owned, staged->Read(off, size));
    return out;
  }
  if (!base || off >= base->size()) return out;
  uint64_t end = std::min<uint64_t>(base->size(), off + size);
  if (base->chunks_size() == 0) {
    const std::string& data = base->inline_data();
    if (off < data.size()) out.owned = data.substr(off, end - off);
    out.owned.resize(end - off, '\0');
    return out;
  }
  const std::vector<Extent> holes = Holes(*base);
  uint64_t pos = off;
  size_t last = 0;
  bool short_chunk = false;
  while (pos < end) {
    size_t i = pos / kChunkSize;
    if (static_cast<int>(i) >= base->chunks_size()) break;
    uint64_t in_chunk = pos - i * kChunkSize;
    uint64_t n = std::min<uint64_t>(end - pos, kChunkSize - in_chunk);
    if (base->chunks(i).empty() || InHole(holes, pos, n)) {
      // A hole: zeros, nothing fetched (D28).
      out.slices.emplace_back(Zeros().data(), n);
      pos += n;
      last = i;
      continue;
    }
    CAIRN_ASSIGN_OR_RETURN(Digest address, Digest::FromRaw(base->chunks(i)));
    // A sequential reader takes whole chunks (read ahead below); a random
    // one only the blocks of the chunk its range touches.
    ChunkReader::Slice slice;
    if (sequential) {
      CAIRN_ASSIGN_OR_RETURN(ChunkData data, reader_->Get(address));
      std::string_view all = *data;
      slice = {std::move(data), in_chunk < all.size() ? all.substr(in_chunk, n) : ""};
    } else {
      CAIRN_ASSIGN_OR_RETURN(slice, reader_->Read(address, in_chunk, n));
    }
    if (slice.view.size() < n) short_chunk = true;  // corrupt entry: see below
    if (!slice.view.empty()) out.slices.emplace_back(slice.view.data(), slice.view.size());
    out.chunks.push_back(std::move(slice.data));
    pos += n;
    last = i;
  }
  if (short_chunk || pos < end) {
    // Chunks shorter than the entry says: flatten and pad with zeros.
    out.owned = out.Flatten();
    out.owned.resize(end - off, '\0');
    out.slices.clear();
    out.chunks.clear();
  }
  // Readahead for sequential readers: the next chunks, fetched in the
  // background while the kernel consumes this one.
  if (sequential) {
    for (size_t i = last + 1;
         i <= last + kReadaheadChunks && static_cast<int>(i) < base->chunks_size(); ++i) {
      if (auto next = Digest::FromRaw(base->chunks(i)); next.ok()) reader_->Prefetch(*next);
    }
  }
  return out;
}

absl::StatusOr<std::shared_ptr<Filesystem::Node>> Filesystem::HandleNode(uint64_t fh,
                                                                        bool for_writing) {
  absl::MutexLock lock(&handles_mu_);
  auto it = handles_.find(fh);
  if (it == handles_.end()) return Errno(EBADF, "file handle");
  if (for_writing && !it->second->writable) return Errno(EBADF, "not open for writing");
  return it->second->node;
}

absl::StatusOr<size_t> Filesystem::Write(uint64_t fh, uint64_t off, std::string_view data) {
  CAIRN_RETURN_IF_ERROR(ReadOnlyCheck());
  CAIRN_ASSIGN_OR_RETURN(std::shared_ptr<Node> node, HandleNode(fh, /*for_writing=*/true));
  if (limits_.max_file_size != 0 && off + data.size() >= limits_.max_file_size) {
    return Errno(EFBIG, "file size limit");
  }
  CAIRN_ASSIGN_OR_RETURN(auto staged, EnsureStaged(node));
  CAIRN_RETURN_IF_ERROR(staged->Write(off, data));
  absl::MutexLock lock(&mu_);
  node->Edit(*this).mtime_ns = NowNs();
  MarkContentDirtyLocked(node);
  return data.size();
}

absl::StatusOr<uint64_t> Filesystem::Seek(uint64_t fh, int64_t off, bool data) {
  CAIRN_ASSIGN_OR_RETURN(std::shared_ptr<Node> node, HandleNode(fh, /*for_writing=*/false));
  if (off < 0) return Errno(EINVAL, "negative offset");
  std::shared_ptr<StagedFile> staged;
  std::shared_ptr<const objects::Entry> base;
  {
    absl::ReaderMutexLock lock(&mu_);
    staged = node->View(*this).staged;
    base = node->View(*this).base;
  }
  if (staged) return staged->Seek(off, data);
  const std::vector<Extent> holes = base ? Holes(*base) : std::vector<Extent>();
  const uint64_t size = base ? base->size() : 0;
  return data ? SeekData(holes, size, off) : SeekHole(holes, size, off);
}

absl::Status Filesystem::Fallocate(uint64_t fh, int mode, int64_t off, int64_t len) {
  CAIRN_RETURN_IF_ERROR(ReadOnlyCheck());
  CAIRN_ASSIGN_OR_RETURN(std::shared_ptr<Node> node, HandleNode(fh, /*for_writing=*/true));
  if (off < 0 || len <= 0) return Errno(EINVAL, "negative offset or length not positive");
  const uint64_t end = static_cast<uint64_t>(off) + static_cast<uint64_t>(len);
  const bool punch = mode == (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE);
  if (!punch && mode != 0 && mode != FALLOC_FL_KEEP_SIZE) {
    return Errno(EOPNOTSUPP, "fallocate mode");
  }
  if (!punch) {
    if (limits_.max_file_size != 0 && end >= limits_.max_file_size) {
      return Errno(EFBIG, "file size limit");
    }
    // Nothing to reserve on the node; mode 0 grows the size (a hole).
    uint64_t size;
    {
      absl::ReaderMutexLock lock(&mu_);
      const Node::Fields& f = node->View(*this);
      size = f.staged ? f.staged->size() : (f.base ? f.base->size() : 0);
    }
    if (mode == FALLOC_FL_KEEP_SIZE || end <= size) return absl::OkStatus();
  }
  CAIRN_ASSIGN_OR_RETURN(auto staged, EnsureStaged(node));
  CAIRN_RETURN_IF_ERROR(punch ? staged->PunchHole(off, len)
                              : staged->Truncate(std::max(end, staged->size())));
  absl::MutexLock lock(&mu_);
  const int64_t now = NowNs();
  node->Edit(*this).mtime_ns = node->Edit(*this).ctime_ns = now;
  MarkContentDirtyLocked(node);
  return absl::OkStatus();
}

// ---- Directories --------------------------------------------------------

absl::StatusOr<std::vector<Filesystem::DirEntry>> Filesystem::ListDir(uint64_t ino) {
  CAIRN_ASSIGN_OR_RETURN(auto dir, Get(ino));
  CAIRN_RETURN_IF_ERROR(EnsureLoaded(dir));
  absl::ReaderMutexLock lock(&mu_);
  CAIRN_RETURN_IF_ERROR(CheckCurrentLocked(*dir));
  const Node::Fields& f = dir->View(*this);
  std::vector<DirEntry> out;
  out.reserve(f.children.size() + 2);
  out.push_back({".", AttrLocked(*dir)});
  out.push_back({"..", AttrLocked(f.attached && f.parent ? *f.parent : *dir)});
  for (const auto& [name, child] : f.children) out.push_back({name, AttrLocked(*child)});
  return out;
}

void Filesystem::AddLookup(uint64_t ino) {
  absl::ReaderMutexLock lock(&mu_);
  if (auto node = FindLocked(ino)) node->nlookup.fetch_add(1);
}

absl::Status Filesystem::FsyncDir(uint64_t ino) {
  // Another directory: its entries (every change logged so far) durable on
  // the node, as fsync of a directory promises.
  if (ino != kRootIno) return options_.journal ? options_.journal->Sync() : absl::OkStatus();
  return ForControl(Commit(/*report_stuck=*/true));
}

// ---- Controls -----------------------------------------------------------

// ---- Commit / reload ----------------------------------------------------

// ---- Status -------------------------------------------------------------

Filesystem::statvfs_like Filesystem::StatFs() {
  absl::ReaderMutexLock lock(&mu_);
  statvfs_like out;
  out.files = inode_count_ > 0 ? inode_count_ : 0;
  out.max_files = limits_.max_inodes;
  out.bytes = base_.bytes();
  return out;
}

}  // namespace cairn::mounter
