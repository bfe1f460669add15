#include "mounter/mounter.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
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
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "core/crypto.h"
#include "core/log.h"
#include "core/object_store.h"
#include "core/path.h"
#include "core/size.h"
#include "core/status.h"
#include "mounter/chunk_reader.h"
#include "mounter/disk_cache.h"
#include "mounter/filesystem.h"
#include "mounter/fuse_ops.h"
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

// Removes the per-mount staging directory on every exit path.
class StagingDir {
 public:
  explicit StagingDir(fs::path path) : path_(std::move(path)) {}
  ~StagingDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  StagingDir(const StagingDir&) = delete;
  StagingDir& operator=(const StagingDir&) = delete;
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

// A libfuse session, mounted; unmounted and destroyed on destruction.
class FuseSession {
 public:
  static absl::StatusOr<std::unique_ptr<FuseSession>> Mount(const MountOptions& options,
                                                            Filesystem* fs) {
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
    fuse_session* se = fuse_session_new(&args, &FuseOps(), sizeof(fuse_lowlevel_ops), fs);
    if (se == nullptr) return absl::InternalError("fuse_session_new failed");
    if (fuse_session_mount(se, options.mountpoint.c_str()) != 0) {
      fuse_session_destroy(se);
      return absl::FailedPreconditionError(
          absl::StrCat("cannot mount at ", options.mountpoint.string(),
                       " (is /dev/fuse available and the directory present?)"));
    }
    return std::unique_ptr<FuseSession>(new FuseSession(se));
  }
  ~FuseSession() {
    fuse_session_unmount(se_);
    fuse_session_destroy(se_);
  }
  FuseSession(const FuseSession&) = delete;
  FuseSession& operator=(const FuseSession&) = delete;
  fuse_session* get() const { return se_; }
  void Unmount() { fuse_session_unmount(se_); }

 private:
  explicit FuseSession(fuse_session* se) : se_(se) {}
  static bool AllowOtherConfigured() {
    std::ifstream in("/etc/fuse.conf");
    std::string line;
    while (std::getline(in, line)) {
      if (absl::StripAsciiWhitespace(line) == "user_allow_other") return true;
    }
    return false;
  }
  fuse_session* se_;
};

// Lets the kernel read ahead one whole chunk (the default is 128 KiB).
void RaiseReadahead(const fs::path& mountpoint) {
  struct stat st;
  if (::stat(mountpoint.c_str(), &st) != 0) return;
  std::string path = absl::StrCat("/sys/class/bdi/", major(st.st_dev), ":", minor(st.st_dev),
                                  "/read_ahead_kb");
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
  for (size_t i = 0; i < args.size(); ++i) {
    std::string a = args[i];
    std::string value;
    bool has_inline = false;
    if (a.starts_with("--") && a.find('=') != std::string::npos) {
      value = a.substr(a.find('=') + 1);
      a = a.substr(0, a.find('='));
      has_inline = true;
    }
    auto next = [&]() -> absl::StatusOr<std::string> {
      if (has_inline) return value;
      if (i + 1 >= args.size()) return absl::InvalidArgumentError(absl::StrCat(a, " needs a value"));
      return args[++i];
    };
    auto number = [&](auto* out) -> absl::Status {
      CAIRN_ASSIGN_OR_RETURN(std::string v, next());
      if (!absl::SimpleAtoi(v, out)) {
        return absl::InvalidArgumentError(absl::StrCat(a, ": not a number: ", v));
      }
      return absl::OkStatus();
    };
    if (a == "--read-only" || a == "-r") {
      o.read_only = true;
    } else if (a == "--sub-path") {
      CAIRN_ASSIGN_OR_RETURN(std::string v, next());
      CAIRN_ASSIGN_OR_RETURN(o.sub_path, NormalizePath(v));
    } else if (a == "--commit-interval") {
      CAIRN_ASSIGN_OR_RETURN(std::string v, next());
      double seconds;
      if (!absl::SimpleAtod(v, &seconds) || seconds <= 0) {
        return absl::InvalidArgumentError(absl::StrCat("--commit-interval: bad value ", v));
      }
      o.commit_interval = absl::Seconds(seconds);
    } else if (a == "--final-commit-timeout") {
      CAIRN_ASSIGN_OR_RETURN(std::string v, next());
      double seconds;
      if (!absl::SimpleAtod(v, &seconds) || seconds < 0) {
        return absl::InvalidArgumentError(absl::StrCat("--final-commit-timeout: bad value ", v));
      }
      o.final_commit_timeout = absl::Seconds(seconds);
    } else if (a == "--read-timeout") {
      CAIRN_ASSIGN_OR_RETURN(std::string v, next());
      double seconds;
      if (!absl::SimpleAtod(v, &seconds) || seconds <= 0) {
        return absl::InvalidArgumentError(absl::StrCat("--read-timeout: bad value ", v));
      }
      o.client.retry_for = absl::Seconds(seconds);
    } else if (a == "-n" || a == "--namespace") {
      CAIRN_ASSIGN_OR_RETURN(o.client.ns, next());
    } else if (a == "--server") {
      CAIRN_ASSIGN_OR_RETURN(o.client.server, next());
    } else if (a == "--cache-dir") {
      CAIRN_ASSIGN_OR_RETURN(std::string v, next());
      o.cache_dir = v;
    } else if (a == "--cache-size") {
      CAIRN_ASSIGN_OR_RETURN(std::string v, next());
      CAIRN_ASSIGN_OR_RETURN(o.cache_size, ParseSize(v));
    } else if (a == "--memory-cache") {
      CAIRN_ASSIGN_OR_RETURN(std::string v, next());
      CAIRN_ASSIGN_OR_RETURN(o.memory_cache, ParseSize(v));
    } else if (a == "--uid") {
      CAIRN_RETURN_IF_ERROR(number(&o.uid));
    } else if (a == "--gid") {
      CAIRN_RETURN_IF_ERROR(number(&o.gid));
    } else if (a == "--no-allow-other") {
      o.allow_other = false;
    } else if (a == "--debug" || a == "-d") {
      o.debug = true;
    } else if (a == "-h" || a == "--help") {
      return absl::InvalidArgumentError("help requested");
    } else if (a.starts_with("-") && a != "-") {
      return absl::InvalidArgumentError(absl::StrCat("unknown flag ", a));
    } else {
      positional.push_back(a);
    }
  }
  if (positional.size() != 2) {
    return absl::InvalidArgumentError("expected VOLUME and MOUNTPOINT");
  }
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

int RunMounter(const MountOptions& options) {
  // Signals are taken by one thread with sigwait; block them before any
  // thread (gRPC's included) exists so that none of them runs a handler.
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGTERM);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGHUP);
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
  if (auto st = CleanStaleMount(options.mountpoint); !st.ok()) return fail("mount point", st);

  auto client = NewGrpcVolumeClient(options.client);
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
  std::error_code ec;
  StagingDir staging(options.cache_dir / "staging" /
                     absl::StrCat(::getpid(), "-", Sha256(RandomBytes(16)).ToHex().substr(0, 8)));
  fs::create_directories(staging.path(), ec);
  if (ec) return fail("staging", ErrnoToStatus(ec.value(), staging.path().string()));

  ObjectStore objects(cache->get(), opened->volume().id(), *key);
  ChunkReader reader(&objects, cache->get(), options.memory_cache, 4);
  FsOptions fs_options;
  fs_options.read_only = options.read_only;
  fs_options.sub_path = options.sub_path;
  fs_options.uid = options.uid >= 0 ? options.uid : ::geteuid();
  fs_options.gid = options.gid >= 0 ? options.gid : ::getegid();
  fs_options.staging_dir = staging.path();
  auto filesystem = Filesystem::Create(client->get(), &objects, &reader, *opened, fs_options);
  if (!filesystem.ok()) return fail("open volume", filesystem.status());
  Filesystem* fsys = filesystem->get();

  auto session = FuseSession::Mount(options, fsys);
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
  absl::Mutex se_mu;
  bool se_alive = true;  // guarded by se_mu: `se` may be used
  std::thread signal_thread([&] {
    timespec tick{0, 200 * 1000 * 1000};
    while (!done.load()) {
      int sig = sigtimedwait(&sigs, nullptr, &tick);
      if (sig <= 0) continue;
      CAIRN_LOG_INFO("signal %d: unmounting %s", sig, options.mountpoint.string());
      {
        absl::MutexLock lock(&se_mu);
        if (!se_alive) continue;
        fuse_session_exit(se);
      }
      char byte;
      ::getxattr(options.mountpoint.c_str(), "user.cairn.status", &byte, 0);
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

  fuse_loop_config* config = fuse_loop_cfg_create();
  fuse_loop_cfg_set_clone_fd(config, 0);
  fuse_loop_cfg_set_idle_threads(config, 16);
  fuse_loop_cfg_set_max_threads(config, 64);
  int loop = fuse_session_loop_mt(se, config);
  fuse_loop_cfg_destroy(config);
  if (loop != 0) CAIRN_LOG_WARNING("session loop ended with %d", loop);
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
  background.join();
  notifier.reset();
  (*session)->Unmount();

  // Final commit: retried with backoff; uncommitted data is never dropped
  // silently.
  int rc = 0;
  absl::Time deadline = absl::Now() + options.final_commit_timeout;
  absl::Duration backoff = absl::Milliseconds(200);
  while (fsys->Dirty() && !options.read_only) {
    absl::Status st = fsys->Commit();
    if (st.ok()) continue;
    if (absl::Now() + backoff > deadline) {
      CAIRN_LOG_ERROR("final commit of %s failed; uncommitted changes are lost: %s",
                      options.volume, st.ToString());
      rc = 1;
      break;
    }
    absl::SleepFor(backoff);
    backoff = std::min(backoff * 2, absl::Seconds(5));
  }
  // Closing /dev/fuse first also fails a request the signal thread may
  // still be waiting on (see above), so the join cannot hang.
  session->reset();
  done.store(true);
  signal_thread.join();
  CAIRN_LOG_INFO("unmounted %s from %s", options.volume, options.mountpoint.string());
  return rc;
}

}  // namespace cairn::mounter
