#include "mounter/mounter.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <poll.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <limits>
#include <optional>
#include <thread>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "core/crypto.h"
#include "core/flags.h"
#include "core/log.h"
#include "core/object_store.h"
#include "core/path.h"
#include "core/size.h"
#include "core/status.h"
#include "mounter/chunk_reader.h"
#include "mounter/control.h"
#include "mounter/disk_cache.h"
#include "mounter/filesystem.h"
#include "mounter/fuse_ops.h"
#include "mounter/handover.h"
#include "mounter/holder.h"
#include "mounter/inode_log.h"
#include "mounter/journal.h"
#include "mounter/volume_client.h"

extern char** environ;

namespace cairn::mounter {
namespace fs = std::filesystem;

namespace {


int RunCommand(const std::vector<std::string>& argv) {
  std::vector<char*> c;
  for (const auto& a : argv) c.push_back(const_cast<char*>(a.c_str()));
  c.push_back(nullptr);
  pid_t pid;
  if (posix_spawnp(&pid, c[0], nullptr, nullptr, c.data(), environ) != 0) return -1;
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

void LazyUnmount(const fs::path& mountpoint) {
  if (::umount2(mountpoint.c_str(), MNT_DETACH) == 0) return;
  RunCommand({"fusermount3", "-u", "-z", mountpoint.string()});
}

// Staging directories of the layout before journals (`staging/<pid>-<hex>`,
// anonymous files only, so nothing in them to recover) whose mounter is gone.
void RemoveOldStagingDirs(const fs::path& staging) {
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(staging, ec)) {
    std::string name = e.path().filename().string();
    size_t dash = name.find('-');
    int pid = 0;
    if (dash == std::string::npos || !absl::SimpleAtoi(name.substr(0, dash), &pid) || pid <= 0) {
      continue;
    }
    if (::kill(pid, 0) != 0 && errno == ESRCH) fs::remove_all(e.path(), ec);
  }
}

// Logs what a slow unmount is waiting for: once a phase has taken a second,
// and every five seconds after that. At `give_up_at` it calls `give_up`
// (which must not return): an RPC to a control plane that hangs without
// closing the connection is not bounded by the final commit's deadline.
class UnmountProgress {
 public:
  UnmountProgress(std::string volume, absl::Time give_up_at, std::function<void()> give_up)
      : volume_(std::move(volume)),
        give_up_at_(give_up_at),
        give_up_(std::move(give_up)),
        thread_([this] { Watch(); }) {}
  ~UnmountProgress() {
    {
      absl::MutexLock lock(&mu_);
      stop_ = true;
    }
    thread_.join();
  }
  void Phase(std::string what) {
    absl::MutexLock lock(&mu_);
    phase_ = std::move(what);
    changed_ = true;  // wakes Watch to compute its next deadline
    since_ = absl::Now();
    next_ = phase_.empty() ? absl::InfiniteFuture() : since_ + absl::Seconds(1);
  }

 private:
  void Watch() {
    absl::MutexLock lock(&mu_);
    absl::Time start = absl::Now();
    auto woken = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stop_ || changed_; };
    for (;;) {
      changed_ = false;
      if (mu_.AwaitWithDeadline(absl::Condition(&woken), std::min(next_, give_up_at_))) {
        if (stop_) return;
        continue;
      }
      if (absl::Now() >= give_up_at_) {
        CAIRN_LOG_ERROR("unmount of %s: giving up after %s while %s", volume_,
                        absl::FormatDuration(absl::Trunc(absl::Now() - start, absl::Seconds(1))),
                        phase_);
        give_up_();
      }
      if (phase_.empty() || absl::Now() < next_) continue;
      CAIRN_LOG_INFO("unmount of %s: %s (%s in this step, %s in all)", volume_, phase_,
                     absl::FormatDuration(absl::Trunc(absl::Now() - since_, absl::Milliseconds(100))),
                     absl::FormatDuration(absl::Trunc(absl::Now() - start, absl::Milliseconds(100))));
      next_ = absl::Now() + absl::Seconds(5);
    }
  }
  const std::string volume_;
  const absl::Time give_up_at_;
  const std::function<void()> give_up_;
  absl::Mutex mu_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  bool changed_ ABSL_GUARDED_BY(mu_) = false;
  std::string phase_ ABSL_GUARDED_BY(mu_);
  absl::Time since_ ABSL_GUARDED_BY(mu_) = absl::Now();
  absl::Time next_ ABSL_GUARDED_BY(mu_) = absl::InfiniteFuture();
  std::thread thread_;
};

// A libfuse session, mounted, or serving a connection taken over
// (`adopted`: the kernel mount is not libfuse's to undo, LazyUnmount is);
// unmounted (unless KeepMounted) and destroyed on destruction.
class FuseSession {
 public:
  // `io`: hand-over hooks to install (a first worker records INIT), or null.
  static absl::StatusOr<std::unique_ptr<FuseSession>> Mount(const MountOptions& options,
                                                            FuseContext* ctx) {
    CAIRN_ASSIGN_OR_RETURN(fuse_session * se, New(options, ctx));
    if (fuse_session_mount(se, options.mountpoint.c_str()) != 0) {
      fuse_session_destroy(se);
      return absl::FailedPreconditionError(
          absl::StrCat("cannot mount at ", options.mountpoint.string(),
                       " (is /dev/fuse available and the directory present?)"));
    }
    if (ctx->io() != nullptr) {
      if (int rc = fuse_session_custom_io(se, &FuseIoHooks(), fuse_session_fd(se)); rc != 0) {
        fuse_session_unmount(se);
        fuse_session_destroy(se);
        return ErrnoToStatus(-rc, "fuse_session_custom_io");
      }
    }
    return std::unique_ptr<FuseSession>(new FuseSession(se, options.mountpoint, false));
  }
  // Serves the connection of `fuse_fd` (a mount another mounter served);
  // ctx->io() replays its INIT.
  static absl::StatusOr<std::unique_ptr<FuseSession>> Adopt(const MountOptions& options,
                                                            FuseContext* ctx, ScopedFd fuse_fd) {
    CAIRN_ASSIGN_OR_RETURN(fuse_session * se, New(options, ctx));
    int fd = fuse_fd.release();
    if (int rc = fuse_session_custom_io(se, &FuseIoHooks(), fd); rc != 0) {
      ::close(fd);
      fuse_session_destroy(se);
      return ErrnoToStatus(-rc, "fuse_session_custom_io");
    }
    return std::unique_ptr<FuseSession>(new FuseSession(se, options.mountpoint, true));
  }

 private:
  static absl::StatusOr<fuse_session*> New(const MountOptions& options, FuseContext* ctx) {
    std::vector<std::string> argv = {"cairn-mount"};
    std::string opts = absl::StrCat("fsname=cairn:", options.volume,
                                    ",subtype=cairn,default_permissions,max_read=1048576");
    if (options.allow_other && (::geteuid() == 0 || AllowOtherConfigured())) {
      opts += ",allow_other";
    }
    argv.push_back("-o");
    argv.push_back(opts);
    if (options.debug) argv.push_back("-d");
    std::vector<char*> c;
    for (auto& a : argv) c.push_back(a.data());
    fuse_args args = FUSE_ARGS_INIT(static_cast<int>(c.size()), c.data());
    fuse_session* se = fuse_session_new(&args, &FuseOps(), sizeof(fuse_lowlevel_ops), ctx);
    // Option parsing may have copied the arguments; the copy is ours to free.
    fuse_opt_free_args(&args);
    if (se == nullptr) return absl::InternalError("fuse_session_new failed");
    return se;
  }

 public:
  ~FuseSession() {
    if (!keep_mounted_) Unmount();
    fuse_session_destroy(se_);
  }
  FuseSession(const FuseSession&) = delete;
  FuseSession& operator=(const FuseSession&) = delete;
  fuse_session* get() const { return se_; }
  void Unmount() {
    if (std::exchange(unmounted_, true)) return;
    if (adopted_) {
      LazyUnmount(mountpoint_);
    } else {
      fuse_session_unmount(se_);
    }
  }
  // The next mounter serves this connection: leave the kernel mount alone.
  void KeepMounted() { keep_mounted_ = true; }

 private:
  FuseSession(fuse_session* se, fs::path mountpoint, bool adopted)
      : se_(se), mountpoint_(std::move(mountpoint)), adopted_(adopted) {}
  static bool AllowOtherConfigured() {
    std::ifstream in("/etc/fuse.conf");
    std::string line;
    while (std::getline(in, line)) {
      if (absl::StripAsciiWhitespace(line) == "user_allow_other") return true;
    }
    return false;
  }
  fuse_session* se_;
  const fs::path mountpoint_;
  const bool adopted_;
  bool keep_mounted_ = false;
  bool unmounted_ = false;
};

// The "MAJOR:MINOR" of the file system mounted at `mountpoint` (the newest
// mount there), from /proc/self/mountinfo. Not from stat(): a stat of our
// own mountpoint is a FUSE request to this very process, which nobody
// answers once the session has begun to end (a SIGTERM just after
// mounting), and the thread asking then blocks the unmount for good.
std::optional<std::string> MountDevice(const fs::path& mountpoint) {
  std::ifstream in("/proc/self/mountinfo");
  std::optional<std::string> device;
  std::string line;
  while (std::getline(in, line)) {
    // ID PARENT MAJOR:MINOR ROOT MOUNTPOINT ...; octal escapes for blanks.
    std::vector<std::string> fields = absl::StrSplit(line, ' ');
    if (fields.size() < 5) continue;
    const std::string& f = fields[4];
    std::string point;
    for (size_t i = 0; i < f.size(); ++i) {
      auto octal = [&](size_t j) { return f[j] >= '0' && f[j] <= '7'; };
      if (f[i] == '\\' && i + 3 < f.size() && octal(i + 1) && octal(i + 2) && octal(i + 3)) {
        point.push_back(
            static_cast<char>((f[i + 1] - '0') * 64 + (f[i + 2] - '0') * 8 + (f[i + 3] - '0')));
        i += 3;
      } else {
        point.push_back(f[i]);
      }
    }
    if (point == mountpoint.string()) device = fields[2];
  }
  return device;
}

// Lets the kernel read ahead one whole chunk (the default is 128 KiB).
void RaiseReadahead(const fs::path& mountpoint) {
  fs::path point = fs::absolute(mountpoint).lexically_normal();
  if (!point.has_filename()) point = point.parent_path();  // "/a/b/" -> "/a/b"
  std::optional<std::string> device = MountDevice(point);
  if (!device.has_value()) return;
  std::string path = absl::StrCat("/sys/class/bdi/", *device, "/read_ahead_kb");
  int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return;
  std::string value = "4096";
  if (::write(fd, value.data(), value.size()) < 0) {
    CAIRN_LOG_DEBUG("cannot raise readahead: %s", std::strerror(errno));
  }
  ::close(fd);
}

}  // namespace

absl::StatusOr<MountOptions> ParseMountArgs(const std::vector<std::string>& args,
                                            ClientOptions client) {
  MountOptions o;
  o.client = std::move(client);
  o.client.retry_for = kDefaultReadTimeout;
  if (const char* dir = std::getenv("CAIRN_CACHE_DIR"); dir != nullptr && *dir != '\0') {
    o.cache_dir = dir;
  }
  std::vector<std::string> positional;
  FlagCursor flags(args);
  while (flags.Next()) {
    if (flags.Is("--read-only") || flags.Is("-r")) {
      CAIRN_RETURN_IF_ERROR(flags.NoValue());
      o.read_only = true;
    } else if (flags.Is("--sub-path")) {
      CAIRN_ASSIGN_OR_RETURN(std::string v, flags.Value());
      CAIRN_ASSIGN_OR_RETURN(o.sub_path, NormalizePath(v));
    } else if (flags.Is("--commit-interval")) {
      CAIRN_ASSIGN_OR_RETURN(o.commit_interval, flags.Seconds());
    } else if (flags.Is("--final-commit-timeout")) {
      CAIRN_ASSIGN_OR_RETURN(o.final_commit_timeout, flags.Seconds(/*allow_zero=*/true));
    } else if (flags.Is("--no-direct-reads")) {
      CAIRN_RETURN_IF_ERROR(flags.NoValue());
      o.direct_reads = false;
    } else if (flags.Is("--read-timeout")) {
      CAIRN_ASSIGN_OR_RETURN(o.client.retry_for, flags.Seconds());
    } else if (flags.Is("-n") || flags.Is("--namespace")) {
      CAIRN_ASSIGN_OR_RETURN(o.client.ns, flags.Value());
    } else if (flags.Is("--server")) {
      CAIRN_ASSIGN_OR_RETURN(o.client.server, flags.Value());
    } else if (flags.Is("--cache-dir")) {
      CAIRN_ASSIGN_OR_RETURN(std::string v, flags.Value());
      o.cache_dir = v;
    } else if (flags.Is("--cache-size")) {
      CAIRN_ASSIGN_OR_RETURN(std::string v, flags.Value());
      CAIRN_ASSIGN_OR_RETURN(o.cache_size, ParseSize(v));
    } else if (flags.Is("--memory-cache")) {
      CAIRN_ASSIGN_OR_RETURN(std::string v, flags.Value());
      CAIRN_ASSIGN_OR_RETURN(o.memory_cache, ParseSize(v));
    } else if (flags.Is("--uid")) {
      CAIRN_ASSIGN_OR_RETURN(o.uid, flags.Integer(0, std::numeric_limits<int>::max()));
    } else if (flags.Is("--gid")) {
      CAIRN_ASSIGN_OR_RETURN(o.gid, flags.Integer(0, std::numeric_limits<int>::max()));
    } else if (flags.Is("--mount-group")) {
      CAIRN_ASSIGN_OR_RETURN(o.mount_group, flags.Integer(0, int64_t{UINT32_MAX} - 1));
    } else if (flags.Is("--no-allow-other")) {
      CAIRN_RETURN_IF_ERROR(flags.NoValue());
      o.allow_other = false;
    } else if (flags.Is("--handover")) {
      CAIRN_RETURN_IF_ERROR(flags.NoValue());
      o.handover = true;
    } else if (flags.Is("--handover-listen")) {
      CAIRN_ASSIGN_OR_RETURN(std::string v, flags.Value());
      o.handover_listen = v;
    } else if (flags.Is("--handover-connect")) {
      CAIRN_ASSIGN_OR_RETURN(std::string v, flags.Value());
      o.handover_connect = v;
    } else if (flags.Is("--debug") || flags.Is("-d")) {
      CAIRN_RETURN_IF_ERROR(flags.NoValue());
      o.debug = true;
    } else if (flags.IsHelp()) {
      return HelpRequested();
    } else if (flags.IsFlag()) {
      return flags.Unknown();
    } else {
      positional.push_back(flags.arg());
    }
  }
  if (positional.size() != 2) {
    return absl::InvalidArgumentError("expected VOLUME and MOUNTPOINT");
  }
  if (!o.handover_listen.empty() && !o.handover_connect.empty()) {
    return absl::InvalidArgumentError("--handover-listen and --handover-connect exclude each other");
  }
  if (!o.handover_listen.empty()) o.handover = true;
  o.volume = positional[0];
  if (o.volume.empty()) return absl::InvalidArgumentError("empty volume name");
  if (!o.volume.starts_with("vo-")) CAIRN_RETURN_IF_ERROR(ValidateVolumeName(o.volume));
  o.mountpoint = fs::absolute(positional[1]).lexically_normal();
  if (o.mountpoint.has_filename() == false && o.mountpoint != "/") {
    o.mountpoint = o.mountpoint.parent_path();
  }
  return o;
}

absl::Status CleanStaleMount(const fs::path& mountpoint) {
  struct stat st;
  if (::stat(mountpoint.c_str(), &st) == 0) return absl::OkStatus();
  int err = errno;
  if (err != ENOTCONN && err != EIO) return ErrnoToStatus(err, absl::StrCat("stat ", mountpoint.string()));
  CAIRN_LOG_WARNING("%s is a stale mount (%s); unmounting it", mountpoint.string(),
                    std::strerror(err));
  LazyUnmount(mountpoint);
  if (::stat(mountpoint.c_str(), &st) != 0) {
    return ErrnoToStatus(errno, absl::StrCat("stale mount at ", mountpoint.string(),
                                             " could not be removed"));
  }
  return absl::OkStatus();
}

// How much longer than --final-commit-timeout an unmount may take.
constexpr absl::Duration kUnmountGrace = absl::Seconds(2);

int RunMounter(const MountOptions& options) {
  const char* link_env = std::getenv(kHandoverFdEnv);
  // A mounter that connects to its holder (a mounter pod): SIGTERM means
  // the pod is going away, not the mount (mounter/holder.h).
  const bool connected = !options.handover_connect.empty();
  if (options.handover && link_env == nullptr && !connected) {
    return RunHolder({OwnCommandLine(), options.mountpoint, options.handover_listen});
  }
  // Signals are taken by one thread with sigwait; block them before any
  // thread (gRPC's included) exists so that none of them runs a handler.
  // SIGUSR1 (from the holder): hand over to the next mounter.
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGTERM);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGHUP);
  if (link_env != nullptr || connected) sigaddset(&sigs, SIGUSR1);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
  signal(SIGPIPE, SIG_IGN);

  // Every file written and not yet committed holds a staging descriptor.
  struct rlimit nofile;
  if (::getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
    nofile.rlim_cur = nofile.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &nofile);
  }
  auto fail = [](std::string_view what, const absl::Status& status) {
    CAIRN_LOG_ERROR("%s: %s", what, status.ToString());
    return 1;
  };
  // Under a holder: the start message says whether there is a connection
  // to take over (mounter/handover.h).
  ScopedFd link;
  HandoverState offer;
  if (link_env != nullptr) {
    int fd = -1;
    if (!absl::SimpleAtoi(link_env, &fd) || fd < 0) {
      return fail("hand-over", absl::InvalidArgumentError(absl::StrCat(kHandoverFdEnv, "=", link_env)));
    }
    link.reset(fd);
    ::fcntl(fd, F_SETFD, FD_CLOEXEC);
    ::unsetenv(kHandoverFdEnv);
  } else if (connected) {
    auto sock = ConnectHandover(options.handover_connect, absl::Seconds(60));
    if (!sock.ok()) return fail("hand-over", sock.status());
    link = *std::move(sock);
  }
  if (link.valid()) {
    // A holder with mounter pods answers once the previous one is gone.
    auto got = ReceiveHandover(link.get(), absl::Seconds(connected ? 120 : 30));
    if (!got.ok()) return fail("hand-over start message", got.status());
    offer = *std::move(got);
  }
  const bool takeover = offer.fuse_fd.valid();
  // A mount being taken over is alive (its requests wait for us): a stat
  // of it would wait for this very process.
  if (!takeover) {
    if (auto st = CleanStaleMount(options.mountpoint); !st.ok()) return fail("mount point", st);
  }

  auto client = NewGrpcVolumeClient(options.client, options.direct_reads);
  if (!client.ok()) return fail("connect", client.status());
  api::VolumeRef ref;
  ref.set_namespace_(options.client.ns);
  if (options.volume.starts_with("vo-")) {
    ref.set_id(options.volume);
  } else {
    ref.set_name(options.volume);
  }
  absl::StatusOr<api::OpenVolumeResponse> opened;
  for (int attempt = 0;; ++attempt) {
    opened = (*client)->Open(ref);
    if (opened.ok() || opened.status().code() != absl::StatusCode::kUnavailable || attempt >= 20) {
      break;
    }
    absl::SleepFor(absl::Milliseconds(250));
  }
  if (!opened.ok()) return fail(absl::StrCat("open volume ", options.volume), opened.status());
  auto key = DataKey::FromBytes(opened->data_key());
  if (!key.ok()) return fail("data key", key.status());

  auto cache = DiskCache::Open((*client)->blobs(), options.cache_dir, options.cache_size);
  if (!cache.ok()) return fail("cache", cache.status());
  // Staged data and the change log live in a journal of this mount
  // (mounter/journal.h), next to the leftovers of mounts of this volume
  // that ended without committing.
  fs::path staging_root = options.cache_dir / "staging";
  RemoveOldStagingDirs(staging_root);
  fs::path volume_staging = staging_root / opened->volume().id();
  auto journal = Journal::Create(volume_staging / absl::BytesToHexString(RandomBytes(8)));
  if (!journal.ok()) return fail("staging journal", journal.status());
  // The node IDs the kernel knows from the mounter taken over (read before
  // its journal directory is recovered and removed), carried on in ours.
  std::vector<InodeLog::Record> known_inodes;
  if (takeover && !offer.journal_dir.empty()) {
    auto read = InodeLog::Read(offer.journal_dir / kInodeLogName);
    if (read.ok()) {
      known_inodes = *std::move(read);
    } else {
      CAIRN_LOG_WARNING("hand-over: %s; files the kernel knows by their old node IDs fail with "
                        "ESTALE until looked up again",
                        read.status().ToString());
    }
  }
  std::unique_ptr<InodeLog> inode_log;
  std::unique_ptr<FuseConnectionIo> io;
  if (link.valid()) {
    auto created = InodeLog::Create((*journal)->dir() / kInodeLogName, known_inodes);
    if (!created.ok()) return fail("inode log", created.status());
    inode_log = *std::move(created);
    io = takeover ? std::make_unique<FuseConnectionIo>(offer.init_request)
                  : std::make_unique<FuseConnectionIo>();
  }
  auto leftovers = Journal::FindLeftovers(volume_staging);
  if (!leftovers.ok()) return fail("staging journal", leftovers.status());

  ObjectStore objects(cache->get(), opened->volume().id(), *key);
  ChunkReader reader(&objects, cache->get(), options.memory_cache, 4);
  FsOptions fs_options;
  fs_options.read_only = options.read_only;
  fs_options.sub_path = options.sub_path;
  fs_options.uid = options.uid >= 0 ? options.uid : ::geteuid();
  fs_options.gid = options.gid >= 0 ? options.gid : ::getegid();
  if (options.mount_group >= 0) fs_options.mount_group = static_cast<gid_t>(options.mount_group);
  fs_options.staging_dir = (*journal)->dir();
  if (!options.read_only) fs_options.journal = journal->get();
  auto filesystem = Filesystem::Create(client->get(), &objects, &reader, *opened, fs_options);
  if (!filesystem.ok()) return fail("open volume", filesystem.status());
  Filesystem* fsys = filesystem->get();
  if (!known_inodes.empty()) {
    std::vector<Filesystem::KnownInode> known;
    for (const auto& r : InodeLog::Resolve(known_inodes)) known.push_back({r.path, r.ino, r.type});
    fsys->SeedInodes(known);
    CAIRN_LOG_INFO("hand-over: %d node IDs the kernel knows taken over", known.size());
  }
  if (options.read_only) {
    for (Journal::Leftover& left : *leftovers) {
      CAIRN_LOG_WARNING("%s holds %d uncommitted changes of an earlier mount of %s; a "
                        "read-write mount of it on this node will recover them",
                        left.journal().dir.string(), left.journal().changes.size(),
                        options.volume);
    }
  } else if (!leftovers->empty()) {
    // All at once: change sets they sent without an answer go first.
    std::vector<RecoveredJournal*> journals;
    for (Journal::Leftover& left : *leftovers) journals.push_back(&left.journal());
    auto taken = fsys->Recover(journals);
    if (!taken.ok()) return fail("recover earlier mounts' changes", taken.status());
    for (Journal::Leftover& left : *leftovers) {
      const RecoveredJournal& old = left.journal();
      CAIRN_LOG_WARNING(
          "recovered %d uncommitted changes of an earlier mount of %s from %s%s%s; "
          "committing them",
          old.changes.size(), options.volume, old.dir.string(),
          old.sent.empty() ? std::string()
                           : absl::StrCat(" (", old.sent.size(),
                                          " change sets it sent are resent with their keys)"),
          old.dropped_puts == 0
              ? std::string()
              : absl::StrCat(" (", old.dropped_puts,
                             " writes whose content was never recorded are lost)"));
      left.Discard();
    }
  }
  // Not while taking a mount over: its requests wait until we serve, and
  // the background commit publishes the recovered changes soon enough.
  if (fsys->Dirty() && !takeover) {
    if (auto st = fsys->Commit(); !st.ok()) {
      CAIRN_LOG_WARNING("commit of recovered changes failed (will retry): %s", st.ToString());
    }
  }

  FuseContext context(fsys, io.get(), inode_log.get(), offer.generation);
  auto session = takeover ? FuseSession::Adopt(options, &context, std::move(offer.fuse_fd))
                          : FuseSession::Mount(options, &context);
  if (!session.ok()) return fail("mount", session.status());
  fuse_session* se = (*session)->get();
  auto notifier = std::make_unique<KernelNotifier>(se);
  fsys->SetNotifier(notifier->notifier());
  CAIRN_LOG_INFO("mounted %s (%s, snapshot %d) at %s%s", options.volume, opened->volume().id(),
                 opened->head().seq(), options.mountpoint.string(),
                 options.read_only ? " read-only" : "");

  // Signal thread: SIGTERM/SIGINT/SIGHUP end the session. fuse_session_exit
  // only sets a flag that a worker checks after its next request, and a
  // lazy unmount ends the connection only once nothing on the mount is open
  // any more: a process holding a file open (idle) would keep the mounter,
  // and its final commit, waiting forever. So the thread also sends one
  // request itself (a getxattr of the root, never cached by the kernel),
  // which makes a worker see the flag and the loop return; then the main
  // thread unmounts and commits. If that request races with the loop's end
  // it waits until the main thread closes /dev/fuse (session->reset()
  // below, which is before the join).
  std::atomic<bool> done{false};
  // Set by the holder's stop message (a connected mounter): unmount as if
  // signalled.
  std::atomic<bool> stop_asked{false};
  absl::Mutex se_mu;
  bool se_alive = true;  // guarded by se_mu: `se` may be used
  std::thread signal_thread([&] {
    timespec tick{0, 200 * 1000 * 1000};
    while (!done.load()) {
      int sig = sigtimedwait(&sigs, nullptr, &tick);
      if (sig <= 0 && !stop_asked.exchange(false)) continue;
      if (sig == SIGUSR1 || (sig == SIGTERM && connected)) {
        // Stop taking requests; the loop ends once those in hand are
        // answered, and the next mounter serves the rest.
        CAIRN_LOG_INFO("handing %s over to the next mounter", options.mountpoint.string());
        if (io) io->Drain();
        continue;
      }
      CAIRN_LOG_INFO("signal %d: unmounting %s", sig, options.mountpoint.string());
      {
        absl::MutexLock lock(&se_mu);
        if (!se_alive) continue;
        fuse_session_exit(se);
      }
      char byte;
      ::getxattr(options.mountpoint.c_str(), kStatusAttr, &byte, 0);
      LazyUnmount(options.mountpoint);
    }
  });

  // Background commits.
  absl::Mutex bg_mu;
  bool bg_stop = false;
  std::thread background([&] {
    RaiseReadahead(options.mountpoint);
    absl::Duration wait = options.commit_interval;
    for (;;) {
      {
        absl::MutexLock lock(&bg_mu);
        if (bg_mu.AwaitWithTimeout(absl::Condition(&bg_stop), wait)) return;
      }
      wait = fsys->BackgroundTick(options.commit_interval);
    }
  });

  // An ephemeral volume lives while its holders renew its lease; a mount of
  // one is a holder for as long as it runs (the default lease, 30 s,
  // renewed every 10 s).
  std::thread lease;
  if (opened->volume().lease_expires_ns() != 0) {
    lease = std::thread([&] {
      const std::string id = opened->volume().id();
      for (;;) {  // at once (the creator's lease may be short), then every 10 s
        absl::Status renewed = (*client)->RenewLease(id);
        if (!renewed.ok()) {
          CAIRN_LOG_WARNING("renewing the lease of ephemeral volume %s: %s", id,
                            renewed.ToString());
        }
        absl::MutexLock lock(&bg_mu);
        if (bg_mu.AwaitWithTimeout(absl::Condition(&bg_stop), absl::Seconds(10))) return;
      }
    });
  }

  // Tells the holder what it needs for the next mounter once the kernel's
  // INIT is known, then watches for the holder going away.
  std::thread announce;
  if (link.valid()) {
    announce = std::thread([&] {
      std::optional<std::string> init;
      while (!done.load() && !(init = io->WaitForInit(absl::Milliseconds(200)))) {
      }
      if (!init) return;
      HandoverState mine;
      mine.fuse_fd = ScopedFd(::fcntl(fuse_session_fd(se), F_DUPFD_CLOEXEC, 0));
      mine.init_request = *init;
      mine.journal_dir = (*journal)->dir();
      mine.generation = offer.generation;
      if (auto st = SendHandover(link.get(), mine); !st.ok()) {
        CAIRN_LOG_WARNING("hand-over: the holder did not take the connection (%s); a crash of "
                          "this mounter ends the mount",
                          st.ToString());
        return;
      }
      while (!done.load()) {
        pollfd p{link.get(), POLLIN, 0};
        if (::poll(&p, 1, 200) > 0 && (p.revents & (POLLHUP | POLLERR | POLLIN)) != 0) {
          if (connected && (p.revents & POLLIN) != 0 &&
              ReceiveHandover(link.get(), absl::ZeroDuration()).ok()) {
            CAIRN_LOG_INFO("the holder of %s ends the mount", options.mountpoint.string());
            stop_asked.store(true);
            return;
          }
          CAIRN_LOG_WARNING("hand-over: the holder of %s is gone; the mount keeps serving, but a "
                            "crash of this mounter now ends it",
                            options.mountpoint.string());
          return;
        }
      }
    });
  }

  fuse_loop_config* config = fuse_loop_cfg_create();
  // Under a holder every session thread reads its own clone of the
  // connection: requests a killed mounter had taken are then ended
  // (ECONNABORTED) when its descriptors close, instead of waiting forever
  // on a descriptor the holder keeps open.
  fuse_loop_cfg_set_clone_fd(config, link.valid() ? 1 : 0);
  fuse_loop_cfg_set_idle_threads(config, 16);
  fuse_loop_cfg_set_max_threads(config, 64);
  int loop = fuse_session_loop_mt(se, config);
  fuse_loop_cfg_destroy(config);
  if (loop != 0) CAIRN_LOG_WARNING("session loop ended with %d", loop);
  if (io && io->draining()) {
    // Hand-over: everything taken was answered. What is not committed is
    // in the journal, which the next mounter recovers and carries on.
    {
      absl::MutexLock lock(&se_mu);
      se_alive = false;
    }
    {
      absl::MutexLock lock(&bg_mu);
      bg_stop = true;
    }
    background.join();
    if (lease.joinable()) lease.join();
    notifier.reset();
    if (auto st = (*journal)->Sync(); !st.ok()) {
      CAIRN_LOG_ERROR("journal %s: %s", (*journal)->dir().string(), st.ToString());
    }
    (*session)->KeepMounted();
    session->reset();
    done.store(true);
    signal_thread.join();
    if (announce.joinable()) announce.join();
    CAIRN_LOG_INFO("handed %s over", options.mountpoint.string());
    return kHandedOverExit;
  }
  absl::Time unmount_start = absl::Now();
  // The whole unmount, a background commit in flight included, gets the
  // final commit's time plus a little; past it, what is not committed stays
  // in the journal (durable first) and the process ends without waiting.
  UnmountProgress progress(
      options.volume, unmount_start + options.final_commit_timeout + kUnmountGrace, [&] {
        if (auto st = (*journal)->Sync(); !st.ok()) {
          CAIRN_LOG_ERROR("journal %s: %s", (*journal)->dir().string(), st.ToString());
        }
        CAIRN_LOG_ERROR("uncommitted changes of %s stay in %s; the next mount of %s on this node "
                        "commits them",
                        options.volume, (*journal)->dir().string(), options.volume);
        LazyUnmount(options.mountpoint);
        std::_Exit(1);
      });
  {
    absl::MutexLock lock(&se_mu);
    se_alive = false;
  }
  {
    absl::MutexLock lock(&bg_mu);
    bg_stop = true;
  }
  // A background commit waiting out an outage must not hold the unmount for
  // the whole --read-timeout: from here on, calls wait at most as long as
  // the final commit may take.
  (*client)->SetRetryFor(std::min(options.client.retry_for, options.final_commit_timeout));
  // A background commit in flight finishes first (its RPCs have deadlines).
  progress.Phase("waiting for a background commit in flight");
  background.join();
  if (lease.joinable()) lease.join();
  notifier.reset();
  progress.Phase("unmounting the kernel mount");
  (*session)->Unmount();

  // Final commit: retried with backoff until the deadline. What still fails
  // stays in the journal for the next mount of this volume on this node.
  int rc = 0;
  absl::Time deadline = absl::Now() + options.final_commit_timeout;
  absl::Duration backoff = absl::Milliseconds(200);
  if (fsys->Dirty() && !options.read_only) {
    progress.Phase(absl::StrCat("final commit (retried until ",
                                absl::FormatDuration(options.final_commit_timeout), " have passed)"));
  }
  while (fsys->Dirty() && !options.read_only) {
    absl::Status st = fsys->Commit();
    if (st.ok()) continue;
    if (absl::Now() + backoff > deadline) {
      CAIRN_LOG_ERROR("final commit of %s failed; the uncommitted changes stay in %s, and the "
                      "next mount of %s on this node commits them: %s",
                      options.volume, (*journal)->dir().string(), options.volume, st.ToString());
      rc = 1;
      break;
    }
    absl::SleepFor(backoff);
    backoff = std::min(backoff * 2, absl::Seconds(1));
  }
  if (rc == 0 && fsys->StuckCount() != 0) {
    CAIRN_LOG_ERROR("%d changes to %s could never be committed and are lost with this mount: %s",
                    fsys->StuckCount(), options.volume, fsys->StatusJson());
    rc = 1;
  }
  if (rc == 0) {
    (*journal)->RemoveOnClose();
  } else if (auto st = (*journal)->Sync(); !st.ok()) {
    CAIRN_LOG_ERROR("journal %s: %s", (*journal)->dir().string(), st.ToString());
  }
  // Closing /dev/fuse first also fails a request the signal thread may
  // still be waiting on (see above), so the join cannot hang.
  progress.Phase("closing the FUSE session");
  session->reset();
  done.store(true);
  progress.Phase("stopping the signal thread");
  signal_thread.join();
  if (announce.joinable()) announce.join();
  progress.Phase("");
  if (absl::Now() - unmount_start > absl::Seconds(1)) {
    CAIRN_LOG_INFO("unmount of %s took %s", options.volume,
                   absl::FormatDuration(absl::Now() - unmount_start));
  }
  CAIRN_LOG_INFO("unmounted %s from %s", options.volume, options.mountpoint.string());
  return rc;
}

}  // namespace cairn::mounter
