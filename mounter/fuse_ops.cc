#include "mounter/fuse_ops.h"

#include <fcntl.h>
#include <sys/statvfs.h>

#include <cerrno>
#include <cstring>
#include <deque>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "core/log.h"
#include "core/status.h"

namespace cairn::mounter {
namespace {

static_assert(Filesystem::kSetMode == FUSE_SET_ATTR_MODE);
static_assert(Filesystem::kSetUid == FUSE_SET_ATTR_UID);
static_assert(Filesystem::kSetGid == FUSE_SET_ATTR_GID);
static_assert(Filesystem::kSetSize == FUSE_SET_ATTR_SIZE);
static_assert(Filesystem::kSetAtime == FUSE_SET_ATTR_ATIME);
static_assert(Filesystem::kSetMtime == FUSE_SET_ATTR_MTIME);
static_assert(Filesystem::kSetAtimeNow == FUSE_SET_ATTR_ATIME_NOW);
static_assert(Filesystem::kSetMtimeNow == FUSE_SET_ATTR_MTIME_NOW);
static_assert(Filesystem::kSetCtime == FUSE_SET_ATTR_CTIME);

FuseContext* Ctx(fuse_req_t req) { return static_cast<FuseContext*>(fuse_req_userdata(req)); }
Filesystem* Fs(fuse_req_t req) { return Ctx(req)->fs(); }

// The kernel learns a node ID from this reply: remember where, for a
// mounter that takes this connection over.
void Named(fuse_req_t req, const struct stat& attr, fuse_ino_t parent, const char* name) {
  if (InodeLog* log = Ctx(req)->inodes()) log->Named(attr.st_ino, parent, name, attr.st_mode & S_IFMT);
}

// The Filesystem's handle for the kernel's `fi->fh`. One the kernel got
// from the mounter this one took over from is opened again here (node ID
// and open flags come with the request; fsync carries no flags, and needs
// no write access).
absl::StatusOr<uint64_t> HandleOf(fuse_req_t req, fuse_ino_t ino, const fuse_file_info* fi,
                                  int flags) {
  FuseContext* ctx = Ctx(req);
  if (auto ours = ctx->Inward(fi->fh)) return *ours;
  CAIRN_ASSIGN_OR_RETURN(uint64_t fh, Fs(req)->Open(ino, flags & ~(O_TRUNC | O_CREAT | O_EXCL)));
  uint64_t kept = ctx->Adopt(fi->fh, fh);
  if (kept != fh) Fs(req)->Release(fh);  // another request adopted it first
  return kept;
}

// The caller of a creating request: new inodes are theirs.
Caller Who(fuse_req_t req) {
  const fuse_ctx* ctx = fuse_req_ctx(req);
  return Caller{ctx->uid, ctx->gid};
}

int ErrnoOf(const absl::Status& status) {
  int err = StatusToErrno(status);
  if (err == EIO) CAIRN_LOG_WARNING("I/O error: %s", status.ToString());
  return err;
}

void ReplyErr(fuse_req_t req, const absl::Status& status) {
  fuse_reply_err(req, ErrnoOf(status));
}

void ReplyEntry(fuse_req_t req, const absl::StatusOr<struct stat>& attr, fuse_ino_t parent,
                const char* name) {
  if (!attr.ok()) return ReplyErr(req, attr.status());
  Named(req, *attr, parent, name);
  fuse_entry_param e{};
  e.ino = attr->st_ino;
  e.generation = 1;
  e.attr = *attr;
  e.attr_timeout = kEntryTimeout;
  e.entry_timeout = kEntryTimeout;
  fuse_reply_entry(req, &e);
}

void ReplyAttr(fuse_req_t req, const absl::StatusOr<struct stat>& attr) {
  if (!attr.ok()) return ReplyErr(req, attr.status());
  fuse_reply_attr(req, &*attr, kEntryTimeout);
}

void OpInit(void* userdata, fuse_conn_info* conn) {
  conn->max_write = 1 << 20;
  conn->max_read = 1 << 20;
  conn->max_readahead = 4 << 20;
  conn->max_background = 64;
  conn->congestion_threshold = 48;
  // O_TRUNC comes with OPEN (libfuse enables FUSE_CAP_ATOMIC_O_TRUNC by
  // default; Filesystem::Open truncates). No writeback cache: the
  // staging file is the only copy of uncommitted data and a commit must see
  // every completed write(2).
  conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
}

void OpLookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
  ReplyEntry(req, Fs(req)->Lookup(parent, name), parent, name);
}

void OpForget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup) {
  Fs(req)->Forget(ino, nlookup);
  fuse_reply_none(req);
}

void OpForgetMulti(fuse_req_t req, size_t count, fuse_forget_data* forgets) {
  for (size_t i = 0; i < count; ++i) Fs(req)->Forget(forgets[i].ino, forgets[i].nlookup);
  fuse_reply_none(req);
}

void OpGetattr(fuse_req_t req, fuse_ino_t ino, fuse_file_info*) {
  ReplyAttr(req, Fs(req)->GetAttr(ino));
}

void OpSetattr(fuse_req_t req, fuse_ino_t ino, struct stat* attr, int to_set, fuse_file_info*) {
  ReplyAttr(req, Fs(req)->SetAttr(ino, *attr, to_set));
}

void OpReadlink(fuse_req_t req, fuse_ino_t ino) {
  auto target = Fs(req)->ReadLink(ino);
  if (!target.ok()) return ReplyErr(req, target.status());
  fuse_reply_readlink(req, target->c_str());
}

void OpMknod(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode, dev_t rdev) {
  ReplyEntry(req, Fs(req)->Mknod(parent, name, mode, rdev, Who(req)), parent, name);
}

void OpMkdir(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode) {
  ReplyEntry(req, Fs(req)->MkDir(parent, name, mode, Who(req)), parent, name);
}

void OpUnlink(fuse_req_t req, fuse_ino_t parent, const char* name) {
  fuse_reply_err(req, ErrnoOf(Fs(req)->Unlink(parent, name)));
}

void OpRmdir(fuse_req_t req, fuse_ino_t parent, const char* name) {
  fuse_reply_err(req, ErrnoOf(Fs(req)->RmDir(parent, name)));
}

void OpSymlink(fuse_req_t req, const char* link, fuse_ino_t parent, const char* name) {
  ReplyEntry(req, Fs(req)->Symlink(link, parent, name, Who(req)), parent, name);
}

void OpRename(fuse_req_t req, fuse_ino_t parent, const char* name, fuse_ino_t newparent,
              const char* newname, unsigned int flags) {
  absl::Status st = Fs(req)->Rename(parent, name, newparent, newname, flags);
  if (st.ok()) {
    if (InodeLog* log = Ctx(req)->inodes()) log->Renamed(parent, name, newparent, newname);
  }
  fuse_reply_err(req, ErrnoOf(st));
}

void OpLink(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char* newname) {
  ReplyEntry(req, Fs(req)->Link(ino, newparent, newname), newparent, newname);
}

void OpOpen(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  auto fh = Fs(req)->Open(ino, fi->flags);
  if (!fh.ok()) return ReplyErr(req, fh.status());
  fi->fh = Ctx(req)->Outward(*fh);
  // Content changes only through this mount (the kernel sees those writes)
  // or a reload (which invalidates): let the page cache keep it.
  fi->keep_cache = 1;
  if (fuse_reply_open(req, fi) == -ENOENT) Fs(req)->Release(*fh);  // interrupted
}

void OpRead(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi) {
  auto fh = HandleOf(req, ino, fi, fi->flags);
  if (!fh.ok()) return ReplyErr(req, fh.status());
  auto data = Fs(req)->Read(*fh, off, size);
  if (!data.ok()) return ReplyErr(req, data.status());
  if (data->slices.empty()) {
    fuse_reply_buf(req, data->owned.data(), data->owned.size());
    return;
  }
  // Straight from the decrypted chunks (kept alive by `data`).
  std::vector<iovec> iov;
  iov.reserve(data->slices.size());
  for (const auto& [p, n] : data->slices) iov.push_back({const_cast<char*>(p), n});
  fuse_reply_iov(req, iov.data(), static_cast<int>(iov.size()));
}

void OpWrite(fuse_req_t req, fuse_ino_t ino, const char* buf, size_t size, off_t off,
             fuse_file_info* fi) {
  auto fh = HandleOf(req, ino, fi, fi->flags);
  if (!fh.ok()) return ReplyErr(req, fh.status());
  auto n = Fs(req)->Write(*fh, off, std::string_view(buf, size));
  if (!n.ok()) return ReplyErr(req, n.status());
  fuse_reply_write(req, *n);
}

void OpFlush(fuse_req_t req, fuse_ino_t, fuse_file_info*) { fuse_reply_err(req, 0); }

void OpRelease(fuse_req_t req, fuse_ino_t, fuse_file_info* fi) {
  // A handle of the mounter taken over that this one never used is
  // nothing to release here.
  if (auto fh = Ctx(req)->Forget(fi->fh)) Fs(req)->Release(*fh);
  fuse_reply_err(req, 0);
}

// fsync of a file makes its data and change durable in the node journal
// (docs/mounter.md "Durability"); publishing is the commit's job.
void OpFsync(fuse_req_t req, fuse_ino_t ino, int, fuse_file_info* fi) {
  auto fh = HandleOf(req, ino, fi, O_RDONLY);
  if (!fh.ok()) return ReplyErr(req, fh.status());
  fuse_reply_err(req, ErrnoOf(Fs(req)->FsyncFile(*fh)));
}

// SEEK_DATA / SEEK_HOLE (the kernel answers SEEK_SET, SEEK_CUR and
// SEEK_END itself).
void OpLseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence, fuse_file_info* fi) {
  if (whence != SEEK_DATA && whence != SEEK_HOLE) return (void)fuse_reply_err(req, EINVAL);
  auto fh = HandleOf(req, ino, fi, O_RDONLY);
  if (!fh.ok()) return ReplyErr(req, fh.status());
  auto at = Fs(req)->Seek(*fh, off, whence == SEEK_DATA);
  if (!at.ok()) return ReplyErr(req, at.status());
  fuse_reply_lseek(req, static_cast<off_t>(*at));
}

void OpFallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t off, off_t len,
                 fuse_file_info* fi) {
  auto fh = HandleOf(req, ino, fi, fi->flags);
  if (!fh.ok()) return ReplyErr(req, fh.status());
  fuse_reply_err(req, ErrnoOf(Fs(req)->Fallocate(*fh, mode, off, len)));
}

using DirHandle = FuseContext::DirHandle;

// The directory handle of `fi`; one the mounter this one took over from
// opened is listed again (offsets index into a fresh listing).
absl::StatusOr<DirHandle*> FindDir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  if (DirHandle* h = Ctx(req)->FindDir(fi->fh)) return h;
  CAIRN_ASSIGN_OR_RETURN(auto entries, Fs(req)->ListDir(ino));
  auto handle = std::make_unique<DirHandle>();
  handle->entries = std::move(entries);
  handle->read = true;
  return Ctx(req)->AdoptDir(fi->fh, std::move(handle));
}

// The listing is taken at opendir and offsets index into it (stable
// telldir/seekdir). A later read from offset 0 is a rewinddir, after which
// POSIX wants changes made before it to show: list again.
void RewindIfAtStart(fuse_req_t req, fuse_ino_t ino, off_t off, DirHandle* handle) {
  if (off != 0) return;
  if (handle->read) {
    if (auto entries = Fs(req)->ListDir(ino); entries.ok()) handle->entries = std::move(*entries);
  }
  handle->read = true;
}

void OpOpendir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  auto entries = Fs(req)->ListDir(ino);
  if (!entries.ok()) return ReplyErr(req, entries.status());
  auto handle = std::make_unique<DirHandle>();
  handle->entries = std::move(*entries);
  fi->fh = Ctx(req)->AddDir(std::move(handle));
  if (fuse_reply_open(req, fi) == -ENOENT) Ctx(req)->RemoveDir(fi->fh);
}

void OpReaddir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi) {
  auto found = FindDir(req, ino, fi);
  if (!found.ok()) return ReplyErr(req, found.status());
  DirHandle* handle = *found;
  RewindIfAtStart(req, ino, off, handle);
  std::string buf(size, '\0');
  size_t used = 0;
  for (size_t i = off; i < handle->entries.size(); ++i) {
    const auto& e = handle->entries[i];
    size_t n =
        fuse_add_direntry(req, buf.data() + used, size - used, e.name.c_str(), &e.attr, i + 1);
    if (n > size - used) break;
    used += n;
  }
  fuse_reply_buf(req, buf.data(), used);
}

// readdir + lookup in one go: `ls -l` costs one request per 4 KiB of
// entries instead of one per file. Every entry handed out (but "." and "..")
// is a kernel reference, counted like a lookup.
void OpReaddirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                   fuse_file_info* fi) {
  auto found = FindDir(req, ino, fi);
  if (!found.ok()) return ReplyErr(req, found.status());
  DirHandle* handle = *found;
  RewindIfAtStart(req, ino, off, handle);
  std::string buf(size, '\0');
  size_t used = 0;
  for (size_t i = off; i < handle->entries.size(); ++i) {
    const auto& e = handle->entries[i];
    bool dots = e.name == "." || e.name == "..";
    fuse_entry_param p{};
    p.attr = e.attr;
    if (!dots) {
      p.ino = e.attr.st_ino;
      p.generation = 1;
      p.attr_timeout = kEntryTimeout;
      p.entry_timeout = kEntryTimeout;
    }
    size_t n =
        fuse_add_direntry_plus(req, buf.data() + used, size - used, e.name.c_str(), &p, i + 1);
    if (n > size - used) break;
    used += n;
    if (!dots) {
      Fs(req)->AddLookup(e.attr.st_ino);
      Named(req, e.attr, ino, e.name.c_str());
    }
  }
  fuse_reply_buf(req, buf.data(), used);
}

void OpReleasedir(fuse_req_t req, fuse_ino_t, fuse_file_info* fi) {
  Ctx(req)->RemoveDir(fi->fh);
  fuse_reply_err(req, 0);
}

void OpFsyncdir(fuse_req_t req, fuse_ino_t ino, int, fuse_file_info*) {
  fuse_reply_err(req, ErrnoOf(Fs(req)->FsyncDir(ino)));
}

void OpStatfs(fuse_req_t req, fuse_ino_t) {
  auto s = Fs(req)->StatFs();
  struct statvfs st {};
  st.f_bsize = 4096;
  st.f_frsize = 4096;
  st.f_blocks = (uint64_t{1} << 50) / 4096;
  uint64_t used = (s.bytes + 4095) / 4096;
  st.f_bfree = st.f_bavail = st.f_blocks > used ? st.f_blocks - used : 0;
  st.f_files = s.max_files ? s.max_files : (uint64_t{1} << 32);
  st.f_ffree = st.f_favail = st.f_files > s.files ? st.f_files - s.files : 0;
  st.f_namemax = 255;
  fuse_reply_statfs(req, &st);
}

void OpSetxattr(fuse_req_t req, fuse_ino_t ino, const char* name, const char* value, size_t size,
                int) {
  fuse_reply_err(req, ErrnoOf(Fs(req)->SetXattr(ino, name, std::string_view(value, size))));
}

void ReplyXattr(fuse_req_t req, const std::string& value, size_t size) {
  if (size == 0) return (void)fuse_reply_xattr(req, value.size());
  if (size < value.size()) return (void)fuse_reply_err(req, ERANGE);
  fuse_reply_buf(req, value.data(), value.size());
}

// Never ENOSYS: the kernel would stop asking for every attribute, including
// the control ones.
void OpGetxattr(fuse_req_t req, fuse_ino_t ino, const char* name, size_t size) {
  auto value = Fs(req)->GetXattr(ino, name);
  if (!value.ok()) return ReplyErr(req, value.status());
  ReplyXattr(req, *value, size);
}

void OpListxattr(fuse_req_t req, fuse_ino_t ino, size_t size) {
  std::string names;
  for (const std::string& n : Fs(req)->ListXattr(ino)) {
    names += n;
    names += '\0';
  }
  ReplyXattr(req, names, size);
}

void OpRemovexattr(fuse_req_t req, fuse_ino_t, const char*) { fuse_reply_err(req, ENODATA); }

void OpCreate(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode,
              fuse_file_info* fi) {
  auto created = Fs(req)->Create(parent, name, mode, fi->flags, Who(req));
  if (!created.ok()) return ReplyErr(req, created.status());
  fuse_entry_param e{};
  e.ino = created->attr.st_ino;
  e.generation = 1;
  e.attr = created->attr;
  e.attr_timeout = kEntryTimeout;
  e.entry_timeout = kEntryTimeout;
  fi->fh = Ctx(req)->Outward(created->fh);
  fi->keep_cache = 1;
  Named(req, created->attr, parent, name);
  if (fuse_reply_create(req, &e, fi) == -ENOENT) Fs(req)->Release(created->fh);
}

fuse_lowlevel_ops MakeOps() {
  fuse_lowlevel_ops ops{};
  ops.init = OpInit;
  ops.lookup = OpLookup;
  ops.forget = OpForget;
  ops.forget_multi = OpForgetMulti;
  ops.getattr = OpGetattr;
  ops.setattr = OpSetattr;
  ops.readlink = OpReadlink;
  ops.mknod = OpMknod;
  ops.mkdir = OpMkdir;
  ops.unlink = OpUnlink;
  ops.rmdir = OpRmdir;
  ops.symlink = OpSymlink;
  ops.rename = OpRename;
  ops.link = OpLink;
  ops.open = OpOpen;
  ops.read = OpRead;
  ops.write = OpWrite;
  ops.flush = OpFlush;
  ops.release = OpRelease;
  ops.fsync = OpFsync;
  ops.lseek = OpLseek;
  ops.fallocate = OpFallocate;
  ops.opendir = OpOpendir;
  ops.readdir = OpReaddir;
  ops.readdirplus = OpReaddirplus;
  ops.releasedir = OpReleasedir;
  ops.fsyncdir = OpFsyncdir;
  ops.statfs = OpStatfs;
  ops.setxattr = OpSetxattr;
  ops.getxattr = OpGetxattr;
  ops.listxattr = OpListxattr;
  ops.removexattr = OpRemovexattr;
  ops.create = OpCreate;
  return ops;
}

}  // namespace

const fuse_lowlevel_ops& FuseOps() {
  static const fuse_lowlevel_ops ops = MakeOps();
  return ops;
}

const fuse_custom_io& FuseIoHooks() {
  static const fuse_custom_io io = [] {
    fuse_custom_io hooks{};
    hooks.read = [](int fd, void* buf, size_t len, void* userdata) -> ssize_t {
      return static_cast<FuseContext*>(userdata)->io()->Read(fd, buf, len);
    };
    hooks.writev = [](int fd, struct iovec* iov, int count, void* userdata) -> ssize_t {
      return static_cast<FuseContext*>(userdata)->io()->Writev(fd, iov, count);
    };
    return hooks;
  }();
  return io;
}

uint64_t FuseContext::AddDir(std::unique_ptr<DirHandle> handle) {
  absl::MutexLock lock(&mu_);
  uint64_t fh = next_dir_++;
  dirs_[fh] = std::move(handle);
  return fh;
}

FuseContext::DirHandle* FuseContext::FindDir(uint64_t fh) {
  absl::MutexLock lock(&mu_);
  auto it = dirs_.find(fh);
  return it == dirs_.end() ? nullptr : it->second.get();
}

FuseContext::DirHandle* FuseContext::AdoptDir(uint64_t fh, std::unique_ptr<DirHandle> handle) {
  absl::MutexLock lock(&mu_);
  auto& slot = dirs_[fh];
  if (!slot) slot = std::move(handle);  // two adopting readers: the first one's
  return slot.get();
}

void FuseContext::RemoveDir(uint64_t fh) {
  absl::MutexLock lock(&mu_);
  dirs_.erase(fh);
}

std::optional<uint64_t> FuseContext::Inward(uint64_t kernel_fh) {
  if ((kernel_fh & ~kHandleMask) == handle_base_) return kernel_fh & kHandleMask;
  absl::MutexLock lock(&mu_);
  auto it = adopted_.find(kernel_fh);
  if (it == adopted_.end()) return std::nullopt;
  return it->second;
}

uint64_t FuseContext::Adopt(uint64_t kernel_fh, uint64_t fh) {
  absl::MutexLock lock(&mu_);
  return adopted_.try_emplace(kernel_fh, fh).first->second;
}

std::optional<uint64_t> FuseContext::Forget(uint64_t kernel_fh) {
  if ((kernel_fh & ~kHandleMask) == handle_base_) return kernel_fh & kHandleMask;
  absl::MutexLock lock(&mu_);
  auto it = adopted_.find(kernel_fh);
  if (it == adopted_.end()) return std::nullopt;
  uint64_t fh = it->second;
  adopted_.erase(it);
  return fh;
}

struct KernelNotifier::State {
  fuse_session* se;
  absl::Mutex mu;
  std::deque<std::pair<uint64_t, std::string>> queue ABSL_GUARDED_BY(mu);
  bool stop ABSL_GUARDED_BY(mu) = false;
  std::thread thread;
};

KernelNotifier::KernelNotifier(fuse_session* se) : state_(std::make_unique<State>()) {
  state_->se = se;
  State* s = state_.get();
  s->thread = std::thread([s] {
    for (;;) {
      std::pair<uint64_t, std::string> item;
      {
        absl::MutexLock lock(&s->mu);
        s->mu.Await(absl::Condition(
            +[](State* st) ABSL_NO_THREAD_SAFETY_ANALYSIS { return st->stop || !st->queue.empty(); },
            s));
        if (s->queue.empty()) return;  // stop requested and drained
        item = std::move(s->queue.front());
        s->queue.pop_front();
      }
      fuse_lowlevel_notify_inval_entry(s->se, item.first, item.second.c_str(), item.second.size());
    }
  });
}

KernelNotifier::~KernelNotifier() {
  {
    absl::MutexLock lock(&state_->mu);
    state_->stop = true;
    state_->queue.clear();
  }
  state_->thread.join();
}

Notifier KernelNotifier::notifier() {
  State* s = state_.get();
  Notifier n;
  n.inval_inode = [s](uint64_t ino) { fuse_lowlevel_notify_inval_inode(s->se, ino, 0, 0); };
  n.inval_entry = [s](uint64_t parent, const std::string& name) {
    absl::MutexLock lock(&s->mu);
    s->queue.emplace_back(parent, name);
  };
  return n;
}

}  // namespace cairn::mounter
