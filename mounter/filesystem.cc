#include "mounter/filesystem.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <thread>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "core/json.h"
#include "core/crypto.h"
#include "core/files.h"
#include "core/log.h"
#include "core/path.h"
#include "core/status.h"
#include "core/tree.h"
#include "mounter/control.h"

namespace cairn::mounter {

namespace {

constexpr uint32_t kDefaultDirMode = 0755;
constexpr size_t kMaxName = 255;
constexpr auto kBusyWait = absl::Milliseconds(500);
constexpr size_t kReadaheadChunks = 4;  // 16 MiB ahead of a sequential reader
constexpr auto kMaxCommitBackoff = absl::Seconds(1);

absl::Status Errno(int err, std::string_view what) { return ErrnoToStatus(err, what); }

int64_t NowNs() { return absl::ToUnixNanos(absl::Now()); }

std::string Join(std::string_view dir, std::string_view name) {
  if (dir.empty()) return std::string(name);
  if (name.empty()) return std::string(dir);
  return absl::StrCat(std::string(dir), "/", std::string(name));
}

std::pair<std::string, std::string> Split(std::string_view path) {
  size_t slash = path.rfind('/');
  if (slash == std::string_view::npos) return {"", std::string(path)};
  return {std::string(path.substr(0, slash)), std::string(path.substr(slash + 1))};
}

// The inside of a JSON string literal (core/json.h; bytes that are not
// UTF-8, as names may be, become U+FFFD so the status stays valid JSON).
std::string JsonEscape(std::string_view s) {
  std::string quoted = JsonQuote(s);
  return quoted.substr(1, quoted.size() - 2);
}

std::string TimeJson(absl::Time t) {
  if (t == absl::InfinitePast()) return "null";
  return absl::StrCat("\"", absl::FormatTime(absl::RFC3339_full, t, absl::UTCTimeZone()), "\"");
}

// A commit that failed for a transient reason (control plane unreachable,
// cancelled, timed out) answers EIO: EAGAIN does not survive the kernel's
// xattr path as itself, and callers read the reason from the status.
absl::Status ForControl(absl::Status status) {
  int err = StatusToErrno(status);
  if (err == EAGAIN || err == ENOSYS) return WithErrno(std::move(status), EIO);
  return status;
}

}  // namespace

// Every field below, except the atomics, is guarded by the owning
// Filesystem's mu_ (shared to read, exclusive to write). The fields carry no
// ABSL_GUARDED_BY: clang's analysis cannot name another object's member
// mutex from a nested type (ABSL_GUARDED_BY(Filesystem::mu_) resolves to a
// `mu_` of the Node itself and flags every correct access; a back pointer
// `fs->mu_` is accepted and then silently never checked), so it is stated
// here instead and the Filesystem methods carry the annotations.
struct Filesystem::Node {
  uint64_t ino = 0;
  objects::EntryType type = objects::FILE;
  uint32_t mode = 0644;  // permission bits only
  int64_t mtime_ns = 0;
  int64_t ctime_ns = 0;
  // FILE: the base content (chunks or inline), until staged.
  std::shared_ptr<const objects::Entry> base;
  std::shared_ptr<StagedFile> staged;
  std::string symlink;
  // DIRECTORY
  Digest tree;
  bool loaded = false;
  std::map<std::string, std::shared_ptr<Node>> children;
  // Position. `parent` is valid while attached (a parent outlives its
  // children: a non-empty directory cannot be detached).
  bool attached = false;
  Node* parent = nullptr;
  std::string name;
  std::vector<std::pair<Node*, std::string>> extra_links;  // v2 hard links
  uint64_t link_id = 0;
  // Kernel references and open handles.
  std::atomic<uint64_t> nlookup{0};
  std::atomic<int> open{0};
  // Operations changing the staged content without an open handle
  // (truncate by path) between staging it and logging the change: a commit
  // finishing meanwhile must not swap the staged file out (see SetAttr).
  std::atomic<int> modifying{0};
  bool put_pending = false;  // a PUT of this node is in the change log
  uint64_t jid = 0;          // names the node in the journal (0: not yet)
};

struct Filesystem::Handle {
  std::shared_ptr<Node> node;
  bool writable = false;
  // End of the last read: a read starting there is sequential (readahead).
  std::atomic<uint64_t> next_read{0};
};

namespace {

// LookupPath, with every directory on the way loaded through the reader
// first: it repairs damaged node-cache copies, and LookupPath then finds
// them in the ObjectStore's cache of parsed directories.
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

}  // namespace

absl::StatusOr<std::unique_ptr<Filesystem>> Filesystem::Create(
    VolumeClient* client, ObjectStore* objects, ChunkReader* reader,
    const api::OpenVolumeResponse& opened, FsOptions options) {
  std::unique_ptr<Filesystem> fs(new Filesystem(client, objects, reader, opened, options));
  CAIRN_ASSIGN_OR_RETURN(Digest root, Digest::FromRaw(opened.head().root()));
  auto node = std::make_shared<Node>();
  node->ino = kRootIno;
  node->type = objects::DIRECTORY;
  node->mode = kDefaultDirMode;
  node->mtime_ns = opened.head().created_at_ns();
  node->tree = root;
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
    CAIRN_ASSIGN_OR_RETURN(node->tree, Digest::FromRaw(entry->tree()));
    node->mode = entry->mode() ? entry->mode() : kDefaultDirMode;
    node->mtime_ns = entry->mtime_ns();
  }
  node->ctime_ns = node->mtime_ns;
  node->attached = true;
  // Warm the root listing so the first `ls` does not pay for it.
  CAIRN_RETURN_IF_ERROR(reader->Directory(node->tree).status());
  absl::MutexLock lock(&fs->mu_);
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

std::string Filesystem::PathLocked(const Node& node) const {
  std::vector<std::string_view> parts;
  const Node* n = &node;
  while (n != nullptr && n->ino != kRootIno && n->attached && n->parent != nullptr) {
    parts.push_back(n->name);
    n = n->parent;
  }
  std::string out;
  for (auto it = parts.rbegin(); it != parts.rend(); ++it) {
    if (!out.empty()) out += '/';
    out.append(*it);
  }
  return out;
}

std::string Filesystem::VolumePathLocked(const Node& node) const {
  return Join(options_.sub_path, PathLocked(node));
}

struct stat Filesystem::AttrLocked(const Node& node) const {
  struct stat st {};
  st.st_ino = node.ino;
  st.st_uid = options_.uid;
  st.st_gid = options_.gid;
  st.st_blksize = 128 << 10;
  switch (node.type) {
    case objects::DIRECTORY:
      st.st_mode = S_IFDIR | node.mode;
      st.st_nlink = 2;
      st.st_size = 4096;
      break;
    case objects::SYMLINK:
      st.st_mode = S_IFLNK | 0777;
      st.st_nlink = 1;
      st.st_size = node.symlink.size();
      break;
    default:
      st.st_mode = S_IFREG | node.mode;
      st.st_nlink = 1 + node.extra_links.size();
      st.st_size = node.staged ? node.staged->size() : (node.base ? node.base->size() : 0);
      break;
  }
  if (node.type != objects::DIRECTORY && !node.attached) st.st_nlink = 0;
  st.st_blocks = (st.st_size + 511) / 512;
  st.st_mtim.tv_sec = node.mtime_ns / 1000000000;
  st.st_mtim.tv_nsec = node.mtime_ns % 1000000000;
  st.st_atim = st.st_mtim;
  st.st_ctim.tv_sec = node.ctime_ns / 1000000000;
  st.st_ctim.tv_nsec = node.ctime_ns % 1000000000;
  return st;
}

uint64_t Filesystem::InoForLocked(const Node& parent, std::string_view name,
                                  objects::EntryType type) {
  if (!ino_hint_.empty()) {
    auto hint = ino_hint_.find(Join(PathLocked(parent), name));
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
  auto node = std::make_shared<Node>();
  node->type = entry.type() == objects::ENTRY_TYPE_UNSPECIFIED ? objects::FILE : entry.type();
  node->ino = InoForLocked(*parent, name, node->type);
  node->mode = entry.mode() & 07777;
  if (node->mode == 0 && node->type == objects::DIRECTORY) node->mode = kDefaultDirMode;
  node->mtime_ns = entry.mtime_ns();
  node->ctime_ns = entry.mtime_ns();
  switch (node->type) {
    case objects::DIRECTORY:
      if (auto d = Digest::FromRaw(entry.tree()); d.ok()) {
        node->tree = *d;
      } else {
        node->loaded = true;  // no tree: an empty directory
      }
      break;
    case objects::SYMLINK:
      node->symlink = entry.symlink_target();
      break;
    default:
      node->base = std::make_shared<const objects::Entry>(entry);
      node->link_id = entry.link_id();
      break;
  }
  return node;
}

void Filesystem::PopulateLocked(const std::shared_ptr<Node>& dir,
                                const objects::Directory& listing) {
  if (dir->loaded) return;
  for (const objects::Entry& entry : listing.entries()) {
    if (dir->children.contains(entry.name())) continue;
    auto node = NewNodeLocked(dir, entry.name(), entry);
    AttachLocked(dir, entry.name(), node);
  }
  dir->loaded = true;
}

absl::Status Filesystem::EnsureLoaded(const std::shared_ptr<Node>& dir) {
  Digest tree;
  {
    absl::ReaderMutexLock lock(&mu_);
    if (dir->type != objects::DIRECTORY) return Errno(ENOTDIR, "not a directory");
    if (dir->loaded) return absl::OkStatus();
    tree = dir->tree;
  }
  CAIRN_ASSIGN_OR_RETURN(auto listing, reader_->Directory(tree));
  absl::MutexLock lock(&mu_);
  PopulateLocked(dir, *listing);
  return absl::OkStatus();
}

absl::Status Filesystem::EnsureLoadedLocked(const std::shared_ptr<Node>& dir) {
  if (dir->type != objects::DIRECTORY) return Errno(ENOTDIR, "not a directory");
  if (dir->loaded) return absl::OkStatus();
  CAIRN_ASSIGN_OR_RETURN(auto listing, reader_->Directory(dir->tree));
  PopulateLocked(dir, *listing);
  return absl::OkStatus();
}

void Filesystem::AttachLocked(const std::shared_ptr<Node>& dir, const std::string& name,
                              const std::shared_ptr<Node>& node) {
  dir->children[name] = node;
  if (!node->attached) {
    node->attached = true;
    node->parent = dir.get();
    node->name = name;
  } else {
    node->extra_links.emplace_back(dir.get(), name);
  }
  inodes_[node->ino] = node;
}

void Filesystem::DetachLocked(const std::shared_ptr<Node>& dir, const std::string& name) {
  auto it = dir->children.find(name);
  if (it == dir->children.end()) return;
  std::shared_ptr<Node> node = it->second;
  dir->children.erase(it);
  if (node->parent == dir.get() && node->name == name) {
    if (!node->extra_links.empty()) {
      node->parent = node->extra_links.back().first;
      node->name = node->extra_links.back().second;
      node->extra_links.pop_back();
    } else {
      node->attached = false;
      node->parent = nullptr;
    }
  } else {
    auto& links = node->extra_links;
    links.erase(std::remove(links.begin(), links.end(), std::make_pair(dir.get(), name)),
                links.end());
  }
  if (!node->attached && node->nlookup.load() == 0 && node->open.load() == 0) {
    auto found = inodes_.find(node->ino);
    if (found != inodes_.end() && found->second == node) inodes_.erase(found);
  }
}

void Filesystem::LogLocked(objects::Change change, std::shared_ptr<Node> node) {
  uint64_t seq = ++next_seq_;
  if (options_.journal != nullptr) {
    if (node && node->jid == 0) node->jid = ++next_jid_;
    JournalLocked(options_.journal->AppendChange(seq, node ? node->jid : 0, change));
  }
  log_.push_back({std::move(change), std::move(node), seq});
}

void Filesystem::JournalLocked(const absl::Status& status) {
  if (status.ok() || journal_failed_.exchange(true)) return;
  // Commits go on; only crash safety is lost, and the status says so.
  CAIRN_LOG_ERROR("journal of %s failed; uncommitted changes are not crash-safe any more: %s",
                  volume_name_, status.ToString());
}

JournalContent Filesystem::ContentLocked(const Node& node) const {
  JournalContent content;
  objects::Entry& e = content.entry;
  if (node.type == objects::SYMLINK) {
    e.set_type(objects::SYMLINK);
    e.set_symlink_target(node.symlink);
  } else {
    if (!node.staged && node.base) e = *node.base;
    e.set_type(objects::FILE);
    if (node.staged) content.staged = node.staged->Snapshot();
  }
  e.clear_name();
  e.set_mode(node.mode);
  e.set_mtime_ns(node.mtime_ns);
  e.set_link_id(node.link_id);
  return content;
}

void Filesystem::JournalContentLocked(Node& node) {
  if (options_.journal == nullptr) return;
  if (node.jid == 0) node.jid = ++next_jid_;
  JournalLocked(options_.journal->AppendContent(node.jid, ContentLocked(node)));
}

void Filesystem::MarkContentDirtyLocked(const std::shared_ptr<Node>& node) {
  node->ctime_ns = NowNs();
  if (node->put_pending || !node->attached) return;
  node->put_pending = true;
  std::vector<std::string> paths = {VolumePathLocked(*node)};
  for (const auto& [dir, name] : node->extra_links) {
    paths.push_back(Join(VolumePathLocked(*dir), name));
  }
  for (const std::string& path : paths) {
    objects::Change change;
    change.set_kind(objects::Change::PUT);
    change.set_path(path);
    LogLocked(std::move(change), node);
  }
  JournalContentLocked(*node);
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

size_t Filesystem::LongestBelowLocked(const Node& node) const {
  // Only what is loaded: an unloaded directory's own entries are known to
  // fit where they are, and a longer path below it is refused when made.
  size_t longest = 0;
  for (const auto& [name, child] : node.children) {
    size_t len = 1 + name.size();
    if (child->type == objects::DIRECTORY) len += LongestBelowLocked(*child);
    longest = std::max(longest, len);
  }
  return longest;
}

absl::Status Filesystem::CheckCreateLocked(const Node& dir, std::string_view name) {
  if (name.size() > kMaxName) return Errno(ENAMETOOLONG, "name");
  if (!dir.attached) return Errno(ENOENT, "directory was removed");
  CAIRN_RETURN_IF_ERROR(CheckPathLengthLocked(dir, name, 0));
  if (dir.children.contains(std::string(name))) return Errno(EEXIST, name);
  if (limits_.max_dir_entries != 0 && dir.children.size() >= limits_.max_dir_entries) {
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
    auto it = cur->children.find(std::string(part));
    if (it == cur->children.end()) {
      if (!create_dirs) return Errno(ENOENT, path);
      auto dir = std::make_shared<Node>();
      dir->ino = InoForLocked(*cur, part, objects::DIRECTORY);
      dir->type = objects::DIRECTORY;
      dir->mode = kDefaultDirMode;
      dir->mtime_ns = dir->ctime_ns = NowNs();
      dir->loaded = true;
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

// ---- Inodes -------------------------------------------------------------

absl::StatusOr<struct stat> Filesystem::Lookup(uint64_t parent, std::string_view name) {
  if (name.size() > kMaxName) return Errno(ENAMETOOLONG, "name");
  CAIRN_ASSIGN_OR_RETURN(auto dir, Get(parent));
  CAIRN_RETURN_IF_ERROR(EnsureLoaded(dir));
  absl::ReaderMutexLock lock(&mu_);
  CAIRN_RETURN_IF_ERROR(CheckCurrentLocked(*dir));
  auto it = dir->children.find(std::string(name));
  if (it == dir->children.end()) return Errno(ENOENT, name);
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
  if (!node->attached && node->nlookup.load() == 0 && node->open.load() == 0) inodes_.erase(ino);
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
    if (node->staged) return node->staged;
    base = node->base;
  }
  CAIRN_ASSIGN_OR_RETURN(auto staged, StagedFile::Create(options_.staging_dir,
                                                         base ? *base : objects::Entry(), reader_));
  absl::MutexLock lock(&mu_);
  if (!node->staged) node->staged = std::move(staged);
  return node->staged;
}

absl::StatusOr<struct stat> Filesystem::SetAttr(uint64_t ino, const struct stat& attr,
                                                int to_set) {
  CAIRN_ASSIGN_OR_RETURN(auto node, Get(ino));
  const int changing = kSetMode | kSetSize | kSetMtime | kSetMtimeNow | kSetAtime | kSetAtimeNow;
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
  if (to_set & kSetMode) {
    node->mode = attr.st_mode & 07777;
    changed = true;
  }
  if (to_set & kSetMtimeNow) {
    node->mtime_ns = now;
    changed = true;
  } else if (to_set & kSetMtime) {
    node->mtime_ns = int64_t{attr.st_mtim.tv_sec} * 1000000000 + attr.st_mtim.tv_nsec;
    changed = true;
  } else if (to_set & kSetSize) {
    node->mtime_ns = now;
  }
  if (to_set & kSetSize) changed = true;
  if (changed) {
    node->ctime_ns = now;
    if (node->type == objects::DIRECTORY) {
      if (node.get() != root_.get() || !options_.sub_path.empty()) {
        LogMkdirLocked(*node);
      }
    } else {
      MarkContentDirtyLocked(node);
    }
  }
  return AttrLocked(*node);
}

absl::StatusOr<std::string> Filesystem::ReadLink(uint64_t ino) {
  CAIRN_ASSIGN_OR_RETURN(auto node, Get(ino));
  absl::ReaderMutexLock lock(&mu_);
  if (node->type != objects::SYMLINK) return Errno(EINVAL, "not a symlink");
  return node->symlink;
}

// ---- Namespace ----------------------------------------------------------

void Filesystem::LogMkdirLocked(const Node& dir) {
  objects::Change change;
  change.set_kind(objects::Change::MKDIR);
  change.set_path(VolumePathLocked(dir));
  change.mutable_entry()->set_type(objects::DIRECTORY);
  change.mutable_entry()->set_mode(dir.mode);
  change.mutable_entry()->set_mtime_ns(dir.mtime_ns);
  LogLocked(std::move(change));
}

std::shared_ptr<Filesystem::Node> Filesystem::NewLocalNode(objects::EntryType type,
                                                           mode_t mode) {
  auto node = std::make_shared<Node>();
  node->ino = next_ino_.fetch_add(1);
  node->type = type;
  node->mode = mode & 07777;
  node->mtime_ns = node->ctime_ns = NowNs();
  return node;
}

absl::StatusOr<struct stat> Filesystem::MkDir(uint64_t parent, std::string_view name,
                                              mode_t mode) {
  CAIRN_RETURN_IF_ERROR(ReadOnlyCheck());
  CAIRN_ASSIGN_OR_RETURN(auto dir, Get(parent));
  CAIRN_RETURN_IF_ERROR(EnsureLoaded(dir));
  absl::MutexLock lock(&mu_);
  CAIRN_RETURN_IF_ERROR(CheckCurrentLocked(*dir));
  CAIRN_RETURN_IF_ERROR(CheckCreateLocked(*dir, name));
  auto node = NewLocalNode(objects::DIRECTORY, mode);
  node->loaded = true;
  AttachLocked(dir, std::string(name), node);
  ++inode_count_;
  dir->mtime_ns = dir->ctime_ns = node->mtime_ns;
  LogMkdirLocked(*node);
  node->nlookup.fetch_add(1);
  return AttrLocked(*node);
}

absl::StatusOr<struct stat> Filesystem::Symlink(std::string_view target, uint64_t parent,
                                                std::string_view name) {
  CAIRN_RETURN_IF_ERROR(ReadOnlyCheck());
  if (target.size() > 4095) return Errno(ENAMETOOLONG, "symlink target");
  CAIRN_ASSIGN_OR_RETURN(auto dir, Get(parent));
  CAIRN_RETURN_IF_ERROR(EnsureLoaded(dir));
  absl::MutexLock lock(&mu_);
  CAIRN_RETURN_IF_ERROR(CheckCurrentLocked(*dir));
  CAIRN_RETURN_IF_ERROR(CheckCreateLocked(*dir, name));
  auto node = NewLocalNode(objects::SYMLINK, 0777);
  node->symlink = std::string(target);
  AttachLocked(dir, std::string(name), node);
  ++inode_count_;
  MarkContentDirtyLocked(node);
  node->nlookup.fetch_add(1);
  return AttrLocked(*node);
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
  if (node->attached) CAIRN_RETURN_IF_ERROR(CheckCurrentLocked(*node));
  if (!node->attached) return Errno(ENOENT, "file was removed");
  CAIRN_RETURN_IF_ERROR(CheckCreateLocked(*dir, name));
  if (node->link_id == 0) node->link_id = next_link_id_.fetch_add(1);
  AttachLocked(dir, std::string(name), node);
  ++inode_count_;
  node->put_pending = false;  // re-log a PUT for every name, carrying the link id
  MarkContentDirtyLocked(node);
  node->nlookup.fetch_add(1);
  return AttrLocked(*node);
}

absl::Status Filesystem::Unlink(uint64_t parent, std::string_view name) {
  CAIRN_RETURN_IF_ERROR(ReadOnlyCheck());
  CAIRN_ASSIGN_OR_RETURN(auto dir, Get(parent));
  CAIRN_RETURN_IF_ERROR(EnsureLoaded(dir));
  absl::MutexLock lock(&mu_);
  CAIRN_RETURN_IF_ERROR(CheckCurrentLocked(*dir));
  auto it = dir->children.find(std::string(name));
  if (it == dir->children.end()) return Errno(ENOENT, name);
  if (it->second->type == objects::DIRECTORY) return Errno(EISDIR, name);
  objects::Change change;
  change.set_kind(objects::Change::REMOVE);
  change.set_path(Join(VolumePathLocked(*dir), name));
  DetachLocked(dir, std::string(name));
  --inode_count_;
  dir->mtime_ns = dir->ctime_ns = NowNs();
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
    auto it = dir->children.find(std::string(name));
    if (it == dir->children.end()) return Errno(ENOENT, name);
    child = it->second;
  }
  CAIRN_RETURN_IF_ERROR(EnsureLoaded(child));
  absl::MutexLock lock(&mu_);
  CAIRN_RETURN_IF_ERROR(CheckCurrentLocked(*dir));
  auto it = dir->children.find(std::string(name));
  if (it == dir->children.end() || it->second != child) return Errno(ENOENT, name);
  if (!child->children.empty()) return Errno(ENOTEMPTY, name);
  objects::Change change;
  change.set_kind(objects::Change::REMOVE);
  change.set_path(Join(VolumePathLocked(*dir), name));
  // Our view of it is empty: remove it even if another mount has since put
  // files in it (last writer wins at directory level; docs/mounter.md).
  change.set_recursive(true);
  DetachLocked(dir, std::string(name));
  --inode_count_;
  dir->mtime_ns = dir->ctime_ns = NowNs();
  LogLocked(std::move(change));
  return absl::OkStatus();
}

absl::Status Filesystem::Rename(uint64_t parent, std::string_view name, uint64_t new_parent,
                                std::string_view new_name, unsigned flags) {
  if (flags & RENAME_EXCHANGE) return Errno(EINVAL, "RENAME_EXCHANGE is not supported");
  CAIRN_RETURN_IF_ERROR(ReadOnlyCheck());
  if (new_name.size() > kMaxName) return Errno(ENAMETOOLONG, "name");
  CAIRN_ASSIGN_OR_RETURN(auto dir, Get(parent));
  CAIRN_ASSIGN_OR_RETURN(auto new_dir, Get(new_parent));
  CAIRN_RETURN_IF_ERROR(EnsureLoaded(dir));
  CAIRN_RETURN_IF_ERROR(EnsureLoaded(new_dir));
  std::shared_ptr<Node> target;
  {
    absl::ReaderMutexLock lock(&mu_);
    auto it = new_dir->children.find(std::string(new_name));
    if (it != new_dir->children.end()) target = it->second;
  }
  if (target && target->type == objects::DIRECTORY) CAIRN_RETURN_IF_ERROR(EnsureLoaded(target));

  absl::MutexLock lock(&mu_);
  CAIRN_RETURN_IF_ERROR(CheckCurrentLocked(*dir));
  CAIRN_RETURN_IF_ERROR(CheckCurrentLocked(*new_dir));
  auto src_it = dir->children.find(std::string(name));
  if (src_it == dir->children.end()) return Errno(ENOENT, name);
  std::shared_ptr<Node> src = src_it->second;
  auto dst_it = new_dir->children.find(std::string(new_name));
  std::shared_ptr<Node> dst = dst_it == new_dir->children.end() ? nullptr : dst_it->second;
  if (!new_dir->attached) return Errno(ENOENT, "target directory was removed");
  if (dst) {
    if (flags & RENAME_NOREPLACE) return Errno(EEXIST, new_name);
    if (dst == src) return absl::OkStatus();
    if (src->type == objects::DIRECTORY) {
      if (dst->type != objects::DIRECTORY) return Errno(ENOTDIR, new_name);
      if (!dst->loaded) return Errno(EAGAIN, "target changed");
      if (!dst->children.empty()) return Errno(ENOTEMPTY, new_name);
    } else if (dst->type == objects::DIRECTORY) {
      return Errno(EISDIR, new_name);
    }
  } else if (new_dir != dir && limits_.max_dir_entries != 0 &&
             new_dir->children.size() >= limits_.max_dir_entries) {
    return Errno(ENOSPC, "directory entry limit");
  }
  if (src->type == objects::DIRECTORY) {
    for (Node* n = new_dir.get(); n != nullptr; n = n->attached ? n->parent : nullptr) {
      if (n == src.get()) return Errno(EINVAL, "cannot move a directory into itself");
    }
  }
  CAIRN_RETURN_IF_ERROR(CheckPathLengthLocked(
      *new_dir, new_name, src->type == objects::DIRECTORY ? LongestBelowLocked(*src) : 0));
  objects::Change change;
  change.set_kind(objects::Change::RENAME);
  change.set_path(Join(VolumePathLocked(*dir), name));
  change.set_to(Join(VolumePathLocked(*new_dir), new_name));
  if (dst) {
    DetachLocked(new_dir, std::string(new_name));
    --inode_count_;
  }
  DetachLocked(dir, std::string(name));
  AttachLocked(new_dir, std::string(new_name), src);
  int64_t now = NowNs();
  dir->mtime_ns = dir->ctime_ns = new_dir->mtime_ns = new_dir->ctime_ns = now;
  src->ctime_ns = now;
  LogLocked(std::move(change));
  return absl::OkStatus();
}

// ---- Files --------------------------------------------------------------

absl::StatusOr<Filesystem::Created> Filesystem::Create(uint64_t parent, std::string_view name,
                                                       mode_t mode, int flags) {
  CAIRN_RETURN_IF_ERROR(ReadOnlyCheck());
  if (name.size() > kMaxName) return Errno(ENAMETOOLONG, "name");
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
    node->staged = std::move(staged);
    AttachLocked(dir, std::string(name), node);
    ++inode_count_;
    dir->mtime_ns = dir->ctime_ns = node->mtime_ns;
    MarkContentDirtyLocked(node);
    node->nlookup.fetch_add(1);
    attr = AttrLocked(*node);
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
  if (writable && node->put_pending && node->attached) JournalContentLocked(*node);
  if (!node->attached && node->nlookup.load() == 0 && node->open.load() == 0) {
    auto found = inodes_.find(node->ino);
    if (found != inodes_.end() && found->second == node) inodes_.erase(found);
  }
}

absl::Status Filesystem::FsyncFile(uint64_t fh) {
  if (options_.journal == nullptr) return absl::OkStatus();
  std::shared_ptr<Node> node;
  {
    absl::MutexLock lock(&handles_mu_);
    auto it = handles_.find(fh);
    if (it == handles_.end()) return Errno(EBADF, "file handle");
    node = it->second->node;
  }
  std::shared_ptr<StagedFile> staged;
  {
    absl::ReaderMutexLock lock(&mu_);
    staged = node->staged;
  }
  // Data first, then the record naming it, then the journal itself.
  if (staged) CAIRN_RETURN_IF_ERROR(staged->Sync());
  {
    absl::MutexLock lock(&mu_);
    if (node->attached && (node->put_pending || node->staged)) {
      if (node->jid == 0) node->jid = ++next_jid_;
      CAIRN_RETURN_IF_ERROR(options_.journal->AppendContent(node->jid, ContentLocked(*node)));
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
    sequential = off == 0 || (off + kChunkSize >= prev && off <= prev + kChunkSize);
  }
  std::shared_ptr<StagedFile> staged;
  std::shared_ptr<const objects::Entry> base;
  {
    absl::ReaderMutexLock lock(&mu_);
    staged = node->staged;
    base = node->base;
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
  uint64_t pos = off;
  size_t last = 0;
  bool short_chunk = false;
  while (pos < end) {
    size_t i = pos / kChunkSize;
    if (static_cast<int>(i) >= base->chunks_size()) break;
    CAIRN_ASSIGN_OR_RETURN(Digest address, Digest::FromRaw(base->chunks(i)));
    CAIRN_ASSIGN_OR_RETURN(ChunkData data, reader_->Get(address));
    uint64_t in_chunk = pos - i * kChunkSize;
    uint64_t n = std::min<uint64_t>(end - pos, kChunkSize - in_chunk);
    if (in_chunk + n > data->size()) short_chunk = true;  // corrupt entry: see below
    if (in_chunk < data->size()) {
      out.slices.emplace_back(data->data() + in_chunk,
                              std::min<uint64_t>(n, data->size() - in_chunk));
    }
    out.chunks.push_back(std::move(data));
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

absl::StatusOr<size_t> Filesystem::Write(uint64_t fh, uint64_t off, std::string_view data) {
  CAIRN_RETURN_IF_ERROR(ReadOnlyCheck());
  std::shared_ptr<Node> node;
  {
    absl::MutexLock lock(&handles_mu_);
    auto it = handles_.find(fh);
    if (it == handles_.end()) return Errno(EBADF, "file handle");
    if (!it->second->writable) return Errno(EBADF, "not open for writing");
    node = it->second->node;
  }
  if (limits_.max_file_size != 0 && off + data.size() >= limits_.max_file_size) {
    return Errno(EFBIG, "file size limit");
  }
  CAIRN_ASSIGN_OR_RETURN(auto staged, EnsureStaged(node));
  CAIRN_RETURN_IF_ERROR(staged->Write(off, data));
  absl::MutexLock lock(&mu_);
  node->mtime_ns = NowNs();
  MarkContentDirtyLocked(node);
  return data.size();
}

// ---- Directories --------------------------------------------------------

absl::StatusOr<std::vector<Filesystem::DirEntry>> Filesystem::ListDir(uint64_t ino) {
  CAIRN_ASSIGN_OR_RETURN(auto dir, Get(ino));
  CAIRN_RETURN_IF_ERROR(EnsureLoaded(dir));
  absl::ReaderMutexLock lock(&mu_);
  CAIRN_RETURN_IF_ERROR(CheckCurrentLocked(*dir));
  std::vector<DirEntry> out;
  out.reserve(dir->children.size() + 2);
  out.push_back({".", AttrLocked(*dir)});
  out.push_back({"..", AttrLocked(dir->attached && dir->parent ? *dir->parent : *dir)});
  for (const auto& [name, child] : dir->children) out.push_back({name, AttrLocked(*child)});
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

absl::Status Filesystem::SetXattr(uint64_t ino, std::string_view name, std::string_view value) {
  if (ino == kRootIno) {
    if (IsControl(name, kCommitAttr)) return ForControl(Commit(/*report_stuck=*/true));
    if (IsControl(name, kReloadAttr)) return ForControl(Reload());
  }
  return Errno(EOPNOTSUPP, "extended attribute " + std::string(name));
}

absl::StatusOr<std::string> Filesystem::GetXattr(uint64_t ino, std::string_view name) {
  if (ino == kRootIno && IsControl(name, kStatusAttr)) return StatusJson();
  return Errno(ENODATA, "extended attribute " + std::string(name));
}

std::vector<std::string> Filesystem::ListXattr(uint64_t ino) {
  if (ino == kRootIno) return {kStatusAttr};
  return {};
}

// ---- Commit / reload ----------------------------------------------------

size_t Filesystem::StuckCount() {
  absl::MutexLock lock(&status_mu_);
  return stuck_.size();
}

bool Filesystem::Dirty() {
  if (prepared_count_.load() != 0) return true;
  absl::ReaderMutexLock lock(&mu_);
  return !log_.empty();
}

CommitErrorKind ClassifyCommitError(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kResourceExhausted:
    case absl::StatusCode::kOutOfRange:
    case absl::StatusCode::kAlreadyExists:
      return CommitErrorKind::kNever;
    case absl::StatusCode::kFailedPrecondition:
      // core/engine.cc: "object … referenced by … is not stored" (GC took an
      // upload, or it never landed).
      return absl::StrContains(status.message(), "is not stored") ? CommitErrorKind::kReupload
                                                                   : CommitErrorKind::kNever;
    case absl::StatusCode::kNotFound:
      // The volume itself gone fails every change alike: nothing to isolate.
      return absl::StartsWith(status.message(), "volume ") ? CommitErrorKind::kRetry
                                                           : CommitErrorKind::kNever;
    default:
      return CommitErrorKind::kRetry;
  }
}

void Filesystem::Coalesce(std::vector<PendingChange>& log) {
  // Walk backwards keeping the paths a later REMOVE wipes: an earlier change
  // confined to such a subtree has no effect on the result, and sending it
  // could only fail (e.g. a path that was valid only for a moment). A RENAME
  // that moves something across the boundary ends the walk.
  absl::flat_hash_map<std::string, bool> removed;  // path → recursive
  auto covered = [&](const std::string& path, bool is_put) {
    if (removed.empty()) return false;
    // The path itself: removed by any later REMOVE if a file was put there,
    // by a recursive one whatever it is.
    if (auto it = removed.find(path); it != removed.end() && (it->second || is_put)) return true;
    for (size_t slash = path.rfind('/'); slash != std::string::npos && slash > 0;
         slash = path.rfind('/', slash - 1)) {
      auto it = removed.find(path.substr(0, slash));
      if (it != removed.end() && it->second) return true;
    }
    return false;
  };
  std::vector<bool> drop(log.size(), false);
  for (size_t i = log.size(); i-- > 0;) {
    const objects::Change& c = log[i].change;
    switch (c.kind()) {
      case objects::Change::REMOVE:
        if (covered(c.path(), false)) {
          drop[i] = true;
        } else {
          bool& recursive = removed[c.path()];
          recursive = recursive || c.recursive();
        }
        break;
      case objects::Change::RENAME: {
        bool from = covered(c.path(), false), to = covered(c.to(), false);
        if (from && to) {
          drop[i] = true;
        } else if (from || to) {
          removed.clear();
        }
        break;
      }
      case objects::Change::PUT:
        drop[i] = covered(c.path(), true);
        break;
      default:
        drop[i] = covered(c.path(), false);
        break;
    }
  }
  size_t out = 0;
  for (size_t i = 0; i < log.size(); ++i) {
    if (!drop[i]) log[out++] = std::move(log[i]);
  }
  log.resize(out);
}

absl::Status Filesystem::Commit(bool report_stuck) {
  if (options_.read_only) return absl::OkStatus();
  absl::MutexLock lock(&commit_mu_);
  CAIRN_RETURN_IF_ERROR(CommitLocked());
  if (!report_stuck) return absl::OkStatus();
  absl::MutexLock status_lock(&status_mu_);
  if (stuck_unreported_ == 0) return absl::OkStatus();
  // The errno of the first newly stuck change (ENOSPC, EFBIG, …) tells the
  // caller why; the status lists every path.
  const Stuck& first = stuck_[stuck_.size() - stuck_unreported_];
  absl::Status st(first.error.code(),
                  absl::StrCat(stuck_unreported_, " change", stuck_unreported_ == 1 ? "" : "s",
                               " can never be committed and stay local only (see `stuck` in "
                               "the status), e.g. ",
                               first.path, ": ", first.error.message()));
  int err = StatusToErrno(first.error);
  stuck_unreported_ = 0;
  last_commit_error_ = std::string(st.message());
  return WithErrno(std::move(st), err == EAGAIN || err == ENOSYS ? EIO : err);
}

absl::Status Filesystem::PrepareLocked() {
  std::vector<PendingChange> batch;
  std::vector<Prepared> prepared;
  {
    absl::MutexLock lock(&mu_);
    if (log_.empty()) return absl::OkStatus();
    batch.swap(log_);
    Coalesce(batch);
    prepared.reserve(batch.size());
    for (PendingChange& pc : batch) {
      Prepared p;
      p.built = pc.change;
      if (pc.node) {
        Node& n = *pc.node;
        n.put_pending = false;  // writes from now on log a new PUT
        p.staged = n.staged;
        // The entry's metadata as of now; content below, from `staged`.
        objects::Entry& e = *p.built.mutable_entry();
        e.Clear();
        if (n.type == objects::SYMLINK) {
          e.set_type(objects::SYMLINK);
          e.set_mode(0777);
          e.set_symlink_target(n.symlink);
        } else {
          if (!n.staged && n.base) e = *n.base;
          e.set_type(objects::FILE);
          e.set_mode(n.mode);
        }
        e.set_mtime_ns(n.mtime_ns);
        e.clear_name();
        e.set_link_id(n.extra_links.empty() ? (n.link_id && limits_.hard_links ? n.link_id : 0)
                                            : n.link_id);
      }
      p.pending = std::move(pc);
      prepared.push_back(std::move(p));
    }
  }
  size_t begin = prepared_.size();
  for (Prepared& p : prepared) prepared_.push_back(std::move(p));
  prepared_count_.store(prepared_.size());
  absl::Status built = RebuildLocked(begin, prepared_.size());
  if (!built.ok()) {
    // Nothing of these was sent: back into the log, in front of what was
    // logged meanwhile.
    std::vector<PendingChange> back;
    for (size_t i = begin; i < prepared_.size(); ++i) back.push_back(std::move(prepared_[i].pending));
    prepared_.resize(begin);
    prepared_count_.store(prepared_.size());
    absl::MutexLock lock(&mu_);
    for (const PendingChange& pc : back) {
      if (pc.node) pc.node->put_pending = true;
    }
    log_.insert(log_.begin(), std::make_move_iterator(back.begin()),
                std::make_move_iterator(back.end()));
  }
  return built;
}

absl::Status Filesystem::RebuildLocked(size_t begin, size_t end) {
  // One entry per staged node, shared by all its names (hard links).
  absl::flat_hash_map<const StagedFile*, objects::Entry> stored;
  for (size_t i = begin; i < end; ++i) {
    Prepared& p = prepared_[i];
    if (!p.pending.node || !p.staged) continue;
    auto it = stored.find(p.staged.get());
    objects::Entry& e = *p.built.mutable_entry();
    if (it == stored.end()) {
      CAIRN_ASSIGN_OR_RETURN(objects::Entry content,
                             p.staged->Store(*objects_, e.mode(), e.mtime_ns()));
      it = stored.emplace(p.staged.get(), std::move(content)).first;
    }
    uint64_t link_id = e.link_id();
    e = it->second;
    e.clear_name();
    e.set_link_id(link_id);
  }
  return absl::OkStatus();
}

void Filesystem::CommittedLocked(size_t n, const api::Snapshot& snapshot, absl::Time start) {
  {
    // Committed files that nobody has open or changed since become plain
    // base files again: their staging file (and its descriptor) goes, and
    // reads come from the chunks just uploaded (also in the disk cache).
    absl::MutexLock lock(&mu_);
    for (size_t i = 0; i < n; ++i) {
      const Prepared& p = prepared_[i];
      if (!p.pending.node) continue;
      Node& node = *p.pending.node;
      if (node.type != objects::FILE || !node.staged || node.staged != p.staged ||
          node.put_pending || node.open.load() != 0 || node.modifying.load() != 0) {
        continue;
      }
      node.base = std::make_shared<const objects::Entry>(p.built.entry());
      node.staged = nullptr;
    }
  }
  DoneLocked(prepared_[n - 1].pending.seq);
  prepared_.erase(prepared_.begin(), prepared_.begin() + n);
  prepared_count_.store(prepared_.size());
  sent_count_ = 0;
  ResetJournalIfCleanLocked();
  absl::MutexLock lock(&status_mu_);
  last_commit_time_ = absl::Now();
  last_commit_seq_ = snapshot.seq();
  last_commit_error_.clear();
  ++commits_;
  CAIRN_LOG_INFO("committed %d changes to %s as snapshot %d in %s", n, volume_name_,
                 snapshot.seq(), absl::FormatDuration(absl::Now() - start));
}

void Filesystem::DoneLocked(uint64_t seq) {
  if (options_.journal == nullptr) return;
  JournalLocked(options_.journal->AppendDone(seq));
}

void Filesystem::ResetJournalIfCleanLocked() {
  if (options_.journal == nullptr) return;
  // Under mu_, so that no change is logged (and journaled) in between.
  absl::MutexLock lock(&mu_);
  if (prepared_.empty() && log_.empty()) {
    JournalLocked(options_.journal->Reset());
    return;
  }
  // A mount that is never idle at a commit: rewrite the journal down to
  // what is pending once it is much bigger than that.
  uint64_t size = options_.journal->size();
  if (size < options_.journal_compact_bytes || size < 4 * journal_compacted_size_) return;
  std::vector<std::string> records;
  absl::flat_hash_map<const Node*, bool> seen;
  auto add = [&](const PendingChange& pc) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (pc.node && pc.node->jid == 0) pc.node->jid = ++next_jid_;
    records.push_back(
        Journal::ChangeRecord(pc.seq, pc.node ? pc.node->jid : 0, pc.change));
    if (pc.node && !seen[pc.node.get()]) {
      seen[pc.node.get()] = true;
      records.push_back(Journal::ContentRecord(pc.node->jid, ContentLocked(*pc.node)));
    }
  };
  for (const Prepared& p : prepared_) add(p.pending);
  for (const PendingChange& pc : log_) add(pc);
  absl::Status st = options_.journal->Rewrite(records);
  if (!st.ok()) {
    CAIRN_LOG_WARNING("rewriting the journal of %s failed (it keeps growing): %s", volume_name_,
                      st.ToString());
    return;
  }
  journal_compacted_size_ = options_.journal->size();
}

absl::StatusOr<size_t> Filesystem::Recover(RecoveredJournal& journal) {
  CAIRN_RETURN_IF_ERROR(ReadOnlyCheck());
  absl::MutexLock commit_lock(&commit_mu_);
  // Nodes (and their staged files, moved into our directory) first: I/O,
  // outside mu_. One node per journaled node id, so hard links stay one.
  absl::flat_hash_map<uint64_t, std::shared_ptr<Node>> nodes;
  std::vector<PendingChange> changes;
  for (RecoveredChange& rc : journal.changes) {
    PendingChange pc;
    pc.change = rc.change;
    if (rc.change.kind() == objects::Change::PUT) {
      std::shared_ptr<Node>& node = nodes[rc.node];
      if (!node) {
        const objects::Entry& e = rc.content->entry;
        bool symlink = e.type() == objects::SYMLINK;
        auto fresh = NewLocalNode(symlink ? objects::SYMLINK : objects::FILE, e.mode());
        fresh->mtime_ns = e.mtime_ns();
        fresh->link_id = e.link_id();
        if (symlink) {
          fresh->symlink = e.symlink_target();
        } else if (rc.content->staged) {
          auto staged = StagedFile::Restore(options_.staging_dir, journal.dir,
                                            *rc.content->staged, reader_);
          if (!staged.ok()) {
            CAIRN_LOG_ERROR("recovery: content of %s is lost: %s", rc.change.path(),
                            staged.status().ToString());
            nodes.erase(rc.node);
            continue;
          }
          fresh->staged = *std::move(staged);
        } else {
          fresh->base = std::make_shared<const objects::Entry>(e);
        }
        node = std::move(fresh);
      }
      pc.node = node;
      pc.change.clear_entry();
    }
    changes.push_back(std::move(pc));
  }
  {
    absl::MutexLock lock(&mu_);
    for (PendingChange& pc : changes) {
      // The view shows the recovered state; what does not apply to the
      // current head is still sent, and the control plane decides.
      if (absl::Status st = ReplayLocked(pc); !st.ok()) {
        CAIRN_LOG_WARNING("recovery: change to %s does not apply to the head: %s",
                          pc.change.path(), st.ToString());
      }
      if (pc.node) pc.node->put_pending = true;
      LogLocked(std::move(pc.change), std::move(pc.node));
    }
    for (auto& [id, node] : nodes) JournalContentLocked(*node);
  }
  if (options_.journal != nullptr) CAIRN_RETURN_IF_ERROR(options_.journal->Sync());
  return changes.size();
}

absl::Status Filesystem::CommitLocked() {
  absl::Time start = absl::Now();
  absl::Status prepared = PrepareLocked();
  uint64_t base_seq;
  {
    absl::ReaderMutexLock lock(&mu_);
    base_seq = base_.seq();
  }
  auto failed = [&](const absl::Status& st, size_t n) {
    absl::MutexLock lock(&status_mu_);
    last_commit_error_ = st.ToString();
    ++failed_commits_;
    CAIRN_LOG_WARNING("commit of %d changes to %s failed (will retry): %s", n, volume_name_,
                      last_commit_error_);
    return st;
  };
  // How many prepared changes the next change set holds: all of them, or
  // fewer while looking for one that can never succeed.
  size_t limit = prepared_.size();
  bool reuploaded = false;
  while (!prepared_.empty()) {
    size_t n = sent_count_ != 0 ? sent_count_ : std::min(limit, prepared_.size());
    if (sent_count_ == 0) {
      sent_key_ = absl::BytesToHexString(RandomBytes(16));
      sent_count_ = n;
    }
    objects::ChangeSet changes;
    for (size_t i = 0; i < n; ++i) *changes.add_changes() = prepared_[i].built;
    absl::StatusOr<api::Snapshot> result =
        client_->Commit(volume_id_, base_seq, changes, sent_key_);
    if (result.ok()) {
      CommittedLocked(n, *result, start);
      limit = prepared_.size();
      continue;
    }
    switch (ClassifyCommitError(result.status())) {
      case CommitErrorKind::kRetry:
        // sent_count_/sent_key_ stay: the next attempt resends this set.
        return failed(result.status(), n);
      case CommitErrorKind::kReupload:
        sent_count_ = 0;  // refused, so the key is free; the content changes
        if (reuploaded) return failed(result.status(), n);
        reuploaded = true;
        if (absl::Status st = RebuildLocked(0, n); !st.ok()) return failed(st, n);
        break;
      case CommitErrorKind::kNever:
        sent_count_ = 0;
        if (n > 1) {
          // Commit the first half alone: the log is ordered, so any prefix
          // is a state the mount went through. Halving finds the change.
          limit = n / 2;
          break;
        }
        {
          const Prepared& p = prepared_.front();
          CAIRN_LOG_ERROR("change to %s in %s can never be committed (%s); keeping it local "
                          "only and committing the rest",
                          p.built.path(), volume_name_, result.status().ToString());
          absl::MutexLock lock(&status_mu_);
          stuck_.push_back({p.built.path(), result.status()});
          ++stuck_unreported_;
          last_commit_error_ = absl::StrCat(p.built.path(), ": ", result.status().ToString());
        }
        DoneLocked(prepared_.front().pending.seq);
        prepared_.erase(prepared_.begin());
        prepared_count_.store(prepared_.size());
        limit = prepared_.size();
        ResetJournalIfCleanLocked();
        break;
    }
  }
  if (!prepared.ok()) return failed(prepared, 0);
  return absl::OkStatus();
}

std::string Filesystem::OpenPathExample(bool mu_held) {
  std::shared_ptr<Node> node;
  {
    absl::MutexLock lock(&handles_mu_);
    if (handles_.empty()) return "";
    node = handles_.begin()->second->node;
  }
  auto describe = [&]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
    return node->attached ? "/" + PathLocked(*node) : std::string("(deleted file)");
  };
  if (mu_held) return describe();
  absl::ReaderMutexLock lock(&mu_);
  return describe();
}

absl::Status Filesystem::Reload() {
  absl::MutexLock commit_lock(&commit_mu_);
  // `mu_held`: called with mu_ already held (absl::Mutex is not reentrant).
  auto busy = [this](bool mu_held) -> absl::Status {
    int open;
    {
      absl::MutexLock lock(&handles_mu_);
      open = open_files_;
    }
    if (open == 0) return absl::OkStatus();
    std::string example = OpenPathExample(mu_held);
    std::string message = absl::StrCat("volume busy: ", open, " open file", open == 1 ? "" : "s",
                                       example.empty() ? "" : absl::StrCat(", e.g. ", example));
    return WithErrno(absl::FailedPreconditionError(message), EBUSY);
  };
  auto fail = [this](absl::Status status) {
    absl::MutexLock lock(&status_mu_);
    last_reload_error_ = std::string(status.message());
    CAIRN_LOG_WARNING("reload of %s refused: %s", volume_name_, last_reload_error_);
    return status;
  };
  // The kernel releases handles asynchronously after close(2): give
  // just-closed files a moment before calling the volume busy.
  absl::Time deadline = absl::Now() + kBusyWait;
  while (!busy(false).ok() && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(10));
  if (auto st = busy(false); !st.ok()) return fail(st);

  auto head = client_->Head(volume_id_);
  if (!head.ok()) return fail(head.status());
  auto root = Digest::FromRaw(head->root());
  if (!root.ok()) return fail(root.status());
  Digest tree = *root;
  uint32_t root_mode = kDefaultDirMode;
  int64_t root_mtime = head->created_at_ns();
  if (!options_.sub_path.empty()) {
    auto entry = LookupRepairing(*reader_, *objects_, *root, options_.sub_path);
    if (!entry.ok()) return fail(entry.status());
    if (entry->type() != objects::DIRECTORY) {
      return fail(Errno(ENOTDIR, absl::StrCat("sub-path ", options_.sub_path)));
    }
    auto t = Digest::FromRaw(entry->tree());
    if (!t.ok()) return fail(t.status());
    tree = *t;
    root_mode = entry->mode() ? entry->mode() : kDefaultDirMode;
    root_mtime = entry->mtime_ns();
  }
  if (auto warm = reader_->Directory(tree); !warm.ok()) return fail(warm.status());

  std::vector<uint64_t> inval_inodes;
  std::vector<std::pair<uint64_t, std::string>> inval_entries;
  {
    absl::MutexLock lock(&mu_);
    if (auto st = busy(true); !st.ok()) return fail(st);
    // Remember where every known inode was, so paths keep their numbers.
    absl::flat_hash_map<std::string, InoHint> ino_hint;
    absl::flat_hash_map<uint64_t, std::string> path_hint;
    for (const auto& [ino, path] : path_hint_) {
      auto old = ino_hint_.find(path);
      if (!inodes_.contains(ino) && old != ino_hint_.end() && old->second.ino == ino) {
        ino_hint[path] = old->second;
        path_hint[ino] = path;
      }
    }
    for (const auto& [ino, node] : inodes_) {
      inval_inodes.push_back(ino);
      if (ino == kRootIno || !node->attached) continue;
      std::string path = PathLocked(*node);
      ino_hint[path] = InoHint{ino, node->type};
      path_hint[ino] = path;
      inval_entries.emplace_back(node->parent->ino, node->name);
    }
    // Everything the switch changes, so that a replay that fails can put the
    // old view back exactly (it never shows a view that differs from what
    // the next commit sends).
    struct Place {
      std::shared_ptr<Node> node;
      bool attached;
      Node* parent;
      std::string name;
      std::vector<std::pair<Node*, std::string>> extra_links;
    };
    std::vector<Place> places;
    places.reserve(inodes_.size());
    auto remember = [&](const std::shared_ptr<Node>& n) {
      places.push_back({n, n->attached, n->parent, n->name, n->extra_links});
    };
    for (const auto& [ino, n] : inodes_) remember(n);
    for (const Prepared& p : prepared_) {
      if (p.pending.node) remember(p.pending.node);
    }
    for (const PendingChange& pc : log_) {
      if (pc.node) remember(pc.node);
    }
    auto old_ino_hint = std::exchange(ino_hint_, std::move(ino_hint));
    auto old_path_hint = std::exchange(path_hint_, std::move(path_hint));
    auto old_inodes = std::move(inodes_);
    inodes_ = old_inodes;  // the detach below walks it
    std::shared_ptr<Node> old_root = root_;
    api::Snapshot old_base = base_;
    int64_t old_inode_count = inode_count_;
    // The old tree goes away; an operation that looked a node of it up
    // before this reload may still hold it (it then fails with ESTALE, see
    // CheckCurrentLocked). Detach them all, so that nothing ever follows a
    // `parent` pointer into freed nodes.
    for (const auto& [ino, node] : inodes_) {
      node->attached = false;
      node->parent = nullptr;
      node->extra_links.clear();
    }
    // Pending nodes are re-placed by the replay.
    auto detach = [](const PendingChange& pc) {
      if (!pc.node) return;
      pc.node->attached = false;
      pc.node->parent = nullptr;
      pc.node->extra_links.clear();
    };
    for (const Prepared& p : prepared_) detach(p.pending);
    for (const PendingChange& pc : log_) detach(pc);
    auto node = std::make_shared<Node>();
    node->ino = kRootIno;
    node->type = objects::DIRECTORY;
    node->mode = root_mode;
    node->mtime_ns = node->ctime_ns = root_mtime;
    node->tree = tree;
    node->attached = true;
    inodes_.clear();
    inodes_[kRootIno] = node;
    root_ = node;
    base_ = *head;
    inode_count_ = static_cast<int64_t>(head->inodes());
    ++generation_;
    std::vector<const PendingChange*> pending;
    for (const Prepared& p : prepared_) pending.push_back(&p.pending);
    for (const PendingChange& pc : log_) pending.push_back(&pc);
    for (const PendingChange* pcp : pending) {
      const PendingChange& pc = *pcp;
      absl::Status st = ReplayLocked(pc);
      if (st.ok()) continue;
      // Back to the old view, whole: the new tree is dropped unseen.
      for (Place& place : places) {
        place.node->attached = place.attached;
        place.node->parent = place.parent;
        place.node->name = std::move(place.name);
        place.node->extra_links = std::move(place.extra_links);
      }
      inodes_ = std::move(old_inodes);
      ino_hint_ = std::move(old_ino_hint);
      path_hint_ = std::move(old_path_hint);
      root_ = std::move(old_root);
      base_ = std::move(old_base);
      inode_count_ = old_inode_count;
      ++generation_;
      int err = StatusToErrno(st);
      return fail(WithErrno(
          absl::Status(st.code(), absl::StrCat("the pending change to /", pc.change.path(),
                                               " does not apply to the new head (",
                                               st.message(), "); commit it first")),
          err == EAGAIN || err == ENOSYS ? EIO : err));
    }
  }
  if (notifier_.inval_inode) {
    for (uint64_t ino : inval_inodes) notifier_.inval_inode(ino);
  }
  if (notifier_.inval_entry) {
    for (const auto& [parent, name] : inval_entries) notifier_.inval_entry(parent, name);
  }
  absl::MutexLock lock(&status_mu_);
  last_reload_time_ = absl::Now();
  last_reload_error_.clear();
  ++reloads_;
  CAIRN_LOG_INFO("reloaded %s at snapshot %d", volume_name_, head->seq());
  return absl::OkStatus();
}

absl::Status Filesystem::ReplayLocked(const PendingChange& pc) {
  const objects::Change& c = pc.change;
  auto relative = [this](const std::string& path) -> absl::StatusOr<std::string> {
    if (options_.sub_path.empty()) return path;
    if (path == options_.sub_path) return std::string();
    if (path.size() > options_.sub_path.size() && path.starts_with(options_.sub_path) &&
        path[options_.sub_path.size()] == '/') {
      return path.substr(options_.sub_path.size() + 1);
    }
    return absl::InvalidArgumentError(absl::StrCat(path, " is outside the sub-path"));
  };
  CAIRN_ASSIGN_OR_RETURN(std::string path, relative(c.path()));
  auto [parent_path, name] = Split(path);
  switch (c.kind()) {
    case objects::Change::PUT: {
      if (!pc.node || name.empty()) return absl::OkStatus();
      CAIRN_ASSIGN_OR_RETURN(auto dir, WalkLocked(parent_path, /*create_dirs=*/true));
      CAIRN_RETURN_IF_ERROR(EnsureLoadedLocked(dir));
      auto it = dir->children.find(name);
      if (it != dir->children.end()) {
        if (it->second == pc.node) return absl::OkStatus();
        bool was_dir = it->second->type == objects::DIRECTORY;
        DetachLocked(dir, name);
        if (was_dir) --inode_count_;
      } else {
        ++inode_count_;
      }
      AttachLocked(dir, name, pc.node);
      return absl::OkStatus();
    }
    case objects::Change::MKDIR: {
      CAIRN_ASSIGN_OR_RETURN(auto dir, WalkLocked(path, /*create_dirs=*/true));
      if (dir->type == objects::DIRECTORY) {
        dir->mode = c.entry().mode() & 07777;
        dir->mtime_ns = c.entry().mtime_ns();
      }
      return absl::OkStatus();
    }
    case objects::Change::REMOVE: {
      auto dir = WalkLocked(parent_path, /*create_dirs=*/false);
      if (!dir.ok()) return absl::OkStatus();
      CAIRN_RETURN_IF_ERROR(EnsureLoadedLocked(*dir));
      if ((*dir)->children.contains(name)) {
        DetachLocked(*dir, name);
        --inode_count_;
      }
      return absl::OkStatus();
    }
    case objects::Change::RENAME: {
      CAIRN_ASSIGN_OR_RETURN(std::string to, relative(c.to()));
      auto dir = WalkLocked(parent_path, /*create_dirs=*/false);
      if (!dir.ok()) return absl::OkStatus();
      CAIRN_RETURN_IF_ERROR(EnsureLoadedLocked(*dir));
      auto it = (*dir)->children.find(name);
      if (it == (*dir)->children.end()) return absl::OkStatus();
      std::shared_ptr<Node> src = it->second;
      auto [to_parent, to_name] = Split(to);
      CAIRN_ASSIGN_OR_RETURN(auto new_dir, WalkLocked(to_parent, /*create_dirs=*/true));
      CAIRN_RETURN_IF_ERROR(EnsureLoadedLocked(new_dir));
      if (new_dir->children.contains(to_name)) {
        DetachLocked(new_dir, to_name);
        --inode_count_;
      }
      DetachLocked(*dir, name);
      AttachLocked(new_dir, to_name, src);
      return absl::OkStatus();
    }
    default:
      return absl::OkStatus();
  }
}

// ---- Status -------------------------------------------------------------

absl::Duration Filesystem::BackgroundTick(absl::Duration interval) {
  if (options_.read_only || !Dirty()) return interval;
  {
    absl::MutexLock lock(&status_mu_);
    absl::Time now = absl::Now();
    if (now < next_attempt_) return std::min(interval, next_attempt_ - now);
  }
  absl::Status st = Commit();
  absl::MutexLock lock(&status_mu_);
  if (st.ok()) {
    backoff_ = absl::ZeroDuration();
    next_attempt_ = absl::InfinitePast();
  } else {
    // Capped at 1 s: a control plane back from an outage of any length is
    // used within about a second (the cost is one cheap RPC per second).
    backoff_ = backoff_ == absl::ZeroDuration() ? absl::Milliseconds(250)
                                                : std::min(backoff_ * 2, kMaxCommitBackoff);
    next_attempt_ = absl::Now() + backoff_;
    CAIRN_LOG_WARNING("background commit failed; retrying in %s",
                      absl::FormatDuration(backoff_));
  }
  return std::min(interval, backoff_ == absl::ZeroDuration() ? interval : backoff_);
}

std::string Filesystem::StuckJsonLocked() const {
  std::string out = "[";
  for (const Stuck& st : stuck_) {
    if (out.size() > 1) out += ",";
    absl::StrAppend(&out, "{\"path\":\"", JsonEscape(st.path), "\",\"error\":\"",
                    JsonEscape(st.error.ToString()), "\"}");
  }
  return out + "]";
}

std::string Filesystem::StatusJson() {
  uint64_t base_seq, pending;
  int64_t inodes;
  {
    absl::ReaderMutexLock lock(&mu_);
    base_seq = base_.seq();
    pending = log_.size() + prepared_count_.load();
    inodes = inode_count_;
  }
  int open;
  {
    absl::MutexLock lock(&handles_mu_);
    open = open_files_;
  }
  absl::MutexLock lock(&status_mu_);
  return absl::StrCat(
      "{\"volume\":\"", JsonEscape(volume_name_), "\",\"volume_id\":\"", JsonEscape(volume_id_),
      "\",\"version\":", version_, ",\"sub_path\":\"", JsonEscape(options_.sub_path),
      "\",\"read_only\":", options_.read_only ? "true" : "false", ",\"base_seq\":", base_seq,
      ",\"dirty\":", pending > 0 ? "true" : "false", ",\"pending_changes\":", pending,
      ",\"open_files\":", open, ",\"inodes\":", inodes, ",\"commits\":", commits_,
      ",\"failed_commits\":", failed_commits_, ",\"last_commit_time\":",
      TimeJson(last_commit_time_), ",\"last_commit_seq\":", last_commit_seq_,
      ",\"last_commit_error\":\"", JsonEscape(last_commit_error_), "\",\"reloads\":", reloads_,
      ",\"last_reload_time\":", TimeJson(last_reload_time_), ",\"last_reload_error\":\"",
      JsonEscape(last_reload_error_), "\",\"stuck\":", StuckJsonLocked(),
      ",\"journal_failed\":", journal_failed_.load() ? "true" : "false", "}");
}

Filesystem::statvfs_like Filesystem::StatFs() {
  absl::ReaderMutexLock lock(&mu_);
  statvfs_like out;
  out.files = inode_count_ > 0 ? inode_count_ : 0;
  out.max_files = limits_.max_inodes;
  out.bytes = base_.bytes();
  return out;
}

}  // namespace cairn::mounter
