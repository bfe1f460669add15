#include "csi/mounts.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <optional>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "core/status.h"

extern char** environ;

namespace cairn::csi {
namespace fs = std::filesystem;

namespace {

// mountinfo escapes space, tab, newline and backslash as \ooo.
std::string Unescape(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 3 < s.size()) {
      int v = 0;
      bool ok = true;
      for (size_t j = 1; j <= 3 && ok; ++j) {
        char c = s[i + j];
        ok = c >= '0' && c <= '7';
        v = v * 8 + (c - '0');
      }
      if (ok) {
        out.push_back(static_cast<char>(v));
        i += 3;
        continue;
      }
    }
    out.push_back(s[i]);
  }
  return out;
}

// (mount point, fstype) of every line of /proc/self/mountinfo.
std::vector<std::pair<std::string, std::string>> MountTable() {
  std::vector<std::pair<std::string, std::string>> out;
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  while (std::getline(in, line)) {
    std::vector<std::string> f = absl::StrSplit(line, ' ');
    if (f.size() < 7) continue;
    size_t sep = 6;
    while (sep < f.size() && f[sep] != "-") ++sep;
    if (sep + 1 >= f.size()) continue;
    out.emplace_back(Unescape(f[4]), std::string(f[sep + 1]));
  }
  return out;
}

std::string Clean(const fs::path& p) { return p.lexically_normal().string(); }

std::optional<uint64_t> StartTicks(pid_t pid, char* state) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/stat"));
  std::string s((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  // The command name (field 2) may contain spaces; fields resume after ')'.
  size_t close = s.rfind(')');
  if (close == std::string::npos) return std::nullopt;
  std::vector<std::string> f = absl::StrSplit(s.substr(close + 2), ' ', absl::SkipEmpty());
  // f[0] is field 3 (state); field 22 is f[19].
  if (f.size() < 20) return std::nullopt;
  if (state != nullptr) *state = f[0].empty() ? '?' : f[0][0];
  uint64_t ticks;
  if (!absl::SimpleAtoi(f[19], &ticks)) return std::nullopt;
  return ticks;
}

}  // namespace

bool IsCairnMounted(const fs::path& target) {
  std::string t = Clean(target);
  for (const auto& [point, type] : MountTable()) {
    if (point == t && type == "fuse.cairn") return true;
  }
  return false;
}

bool IsMountPoint(const fs::path& target) {
  std::string t = Clean(target);
  for (const auto& [point, type] : MountTable()) {
    if (point == t) return true;
  }
  return false;
}

absl::Status LazyUnmount(const fs::path& target) {
  if (!IsMountPoint(target)) return absl::OkStatus();
  if (::umount2(target.c_str(), MNT_DETACH) != 0 && errno != EINVAL && errno != ENOENT) {
    return ErrnoToStatus(errno, absl::StrCat("unmount ", target.string()));
  }
  return absl::OkStatus();
}

bool IsAlive(const MounterId& id) {
  if (id.pid <= 0) return false;
  char state = '?';
  auto ticks = StartTicks(id.pid, &state);
  return ticks.has_value() && *ticks == id.start_ticks && state != 'Z' && state != 'X';
}

std::string FileTail(const fs::path& path, size_t max_bytes) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return "";
  in.seekg(0, std::ios::end);
  std::streamoff size = in.tellg();
  std::streamoff from = size > static_cast<std::streamoff>(max_bytes) ? size - max_bytes : 0;
  in.seekg(from);
  std::string s((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return s;
}

absl::Status WaitMountReady(const fs::path& target, const MounterId& id, absl::Duration timeout) {
  absl::Time deadline = absl::Now() + timeout;
  absl::Duration pause = absl::Milliseconds(5);
  for (;;) {
    if (IsCairnMounted(target)) {
      struct stat st;
      if (::stat(target.c_str(), &st) == 0) return absl::OkStatus();
    }
    if (!IsAlive(id)) {
      return absl::FailedPreconditionError(
          absl::StrCat("the mounter for ", target.string(), " exited before the mount was ready"));
    }
    if (absl::Now() >= deadline) {
      return absl::DeadlineExceededError(absl::StrCat("the mount at ", target.string(),
                                                      " was not ready within ",
                                                      absl::FormatDuration(timeout)));
    }
    absl::SleepFor(pause);
    pause = std::min(pause * 2, absl::Milliseconds(100));
  }
}

absl::StatusOr<MounterId> ProcessLauncher::Launch(const LaunchSpec& spec, absl::Duration timeout) {
  CAIRN_ASSIGN_OR_RETURN(MounterId id, Start(spec));
  absl::Status ready = WaitMountReady(spec.target, id, timeout);
  if (!ready.ok()) {
    if (IsAlive(id)) ::kill(id.pid, SIGKILL);
    for (int i = 0; i < 100 && IsAlive(id); ++i) absl::SleepFor(absl::Milliseconds(20));
    (void)LazyUnmount(spec.target);
    std::string tail = FileTail(spec.log_file, 1500);
    return absl::Status(ready.code(), absl::StrCat(ready.message(),
                                                   tail.empty() ? "" : "; mounter log: ", tail));
  }
  return id;
}

absl::StatusOr<MounterId> ProcessLauncher::Start(const LaunchSpec& spec) {
  // Everything the children need is prepared before fork: after it only
  // async-signal-safe calls are allowed (this process is multi-threaded).
  std::vector<std::string> argv_s = {spec.binary.string()};
  argv_s.insert(argv_s.end(), spec.args.begin(), spec.args.end());
  std::vector<char*> argv;
  for (auto& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::vector<std::string> env_s;
  for (char** e = environ; *e != nullptr; ++e) {
    std::string_view kv(*e);
    bool replaced = false;
    for (const auto& mine : spec.env) {
      if (kv.substr(0, kv.find('=') + 1) == std::string_view(mine).substr(0, mine.find('=') + 1)) {
        replaced = true;
      }
    }
    if (!replaced) env_s.emplace_back(kv);
  }
  env_s.insert(env_s.end(), spec.env.begin(), spec.env.end());
  std::vector<char*> envp;
  for (auto& e : env_s) envp.push_back(e.data());
  envp.push_back(nullptr);

  std::vector<std::string> procs_files;
  for (const auto& cg : cgroups_) procs_files.push_back((cg / "cgroup.procs").string());

  int log = ::open(spec.log_file.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
  if (log < 0) return ErrnoToStatus(errno, absl::StrCat("open ", spec.log_file.string()));
  int pipefd[2];
  if (::pipe2(pipefd, O_CLOEXEC) != 0) {
    int err = errno;
    ::close(log);
    return ErrnoToStatus(err, "pipe");
  }
  pid_t first = ::fork();
  if (first < 0) {
    int err = errno;
    ::close(log);
    ::close(pipefd[0]);
    ::close(pipefd[1]);
    return ErrnoToStatus(err, "fork");
  }
  if (first == 0) {
    // Intermediate: new session, fork the mounter, exit so that init
    // becomes its parent.
    ::setsid();
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    // Join the mounters' cgroups here, before the mounter exists: whatever
    // it forks (the holder's mounter child) is born in them. "0" names the
    // writing process. A failure travels up the pipe as -errno.
    for (const auto& file : procs_files) {
      int fd = ::open(file.c_str(), O_WRONLY | O_CLOEXEC);
      if (fd < 0 || ::write(fd, "0", 1) != 1) {
        pid_t err = -errno;
        ssize_t w = ::write(pipefd[1], &err, sizeof(err));
        (void)w;
        ::_exit(126);
      }
      ::close(fd);
    }
    pid_t second = ::fork();
    if (second < 0) ::_exit(127);
    if (second > 0) {
      ssize_t w = ::write(pipefd[1], &second, sizeof(second));
      ::_exit(w == sizeof(second) ? 0 : 127);
    }
    int devnull = ::open("/dev/null", O_RDONLY);
    if (devnull >= 0) ::dup2(devnull, 0);
    ::dup2(log, 1);
    ::dup2(log, 2);
    ::chdir("/");
    ::execve(argv[0], argv.data(), envp.data());
    const char msg[] = "cairn-csi: cannot exec the mounter\n";
    ssize_t ignored = ::write(2, msg, sizeof(msg) - 1);
    (void)ignored;
    ::_exit(127);
  }
  ::close(log);
  ::close(pipefd[1]);
  pid_t mounter = 0;
  ssize_t n;
  do {
    n = ::read(pipefd[0], &mounter, sizeof(mounter));
  } while (n < 0 && errno == EINTR);
  ::close(pipefd[0]);
  int status = 0;
  while (::waitpid(first, &status, 0) < 0 && errno == EINTR) {
  }
  if (n == sizeof(mounter) && mounter < 0) {
    return ErrnoToStatus(-mounter, absl::StrCat("cannot move the mounter into the cgroups under ",
                                                cgroups_.front().parent_path().string()));
  }
  if (n != sizeof(mounter) || mounter == 0) {
    return absl::InternalError("could not start the mounter process");
  }
  MounterId id{mounter, 0, ""};
  // The start time is read while the child certainly exists: it is not
  // reaped by anyone but init, and init only reaps after exit; a mounter
  // that already exited shows up as not ready below.
  if (auto ticks = StartTicks(mounter, nullptr)) id.start_ticks = *ticks;
  return id;
}

absl::StatusOr<std::vector<std::filesystem::path>> PrepareMounterCgroups(
    const std::filesystem::path& root, const std::string& name) {
  namespace fs = std::filesystem;
  if (name.empty() || name == "." || name == ".." || name.find('/') != std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("the mounters' cgroup name must be one path component, not \"", name, "\""));
  }
  std::vector<fs::path> parents;
  std::error_code ec;
  if (fs::exists(root / "cgroup.procs", ec)) {
    parents.push_back(root);  // cgroup v2: one hierarchy
  } else {
    for (const auto& e : fs::directory_iterator(root, ec)) {
      // Skip the v1 aliases (cpu -> cpu,cpuacct): the same hierarchy twice.
      if (e.is_symlink() || !e.is_directory()) continue;
      if (fs::exists(e.path() / "cgroup.procs")) parents.push_back(e.path());
    }
  }
  if (parents.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat(root.string(), " holds no cgroup hierarchy (mount the node's /sys/fs/cgroup there)"));
  }
  std::sort(parents.begin(), parents.end());
  std::vector<fs::path> out;
  for (const auto& parent : parents) {
    fs::path dir = parent / name;
    if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
      return ErrnoToStatus(errno, absl::StrCat("mkdir ", dir.string()));
    }
    for (const char* f : {"cpuset.cpus", "cpuset.mems"}) {
      if (!fs::exists(dir / f)) continue;
      std::ifstream in(dir / f);
      std::string mine;
      std::getline(in, mine);
      if (!mine.empty()) continue;
      std::ifstream from(parent / f);
      std::string value;
      std::getline(from, value);
      std::ofstream to(dir / f);
      to << value << std::flush;
      if (!to) return ErrnoToStatus(errno, absl::StrCat("write ", (dir / f).string()));
    }
    out.push_back(dir);
  }
  return out;
}

absl::Status ProcessLauncher::Stop(const MounterId& id, absl::Duration timeout) {
  if (!IsAlive(id)) return absl::OkStatus();
  ::kill(id.pid, SIGTERM);
  absl::Time deadline = absl::Now() + timeout;
  while (IsAlive(id) && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(20));
  if (!IsAlive(id)) return absl::OkStatus();
  // The holder and the mounter it runs share a process group (the
  // launcher's setsid); kill both, not the holder alone.
  pid_t group = ::getpgid(id.pid);
  if (group > 1 && group != ::getpgid(0)) ::kill(-group, SIGKILL);
  ::kill(id.pid, SIGKILL);
  for (int i = 0; i < 250 && IsAlive(id); ++i) absl::SleepFor(absl::Milliseconds(20));
  return absl::DeadlineExceededError(absl::StrCat("mounter ", id.pid, " did not stop within ",
                                                  absl::FormatDuration(timeout), "; killed"));
}

absl::Status ProcessLauncher::Upgrade(const MounterId& id) {
  if (!IsAlive(id)) {
    return absl::FailedPreconditionError(absl::StrCat("mounter ", id.pid, " is not running"));
  }
  if (::kill(id.pid, SIGUSR2) != 0) return ErrnoToStatus(errno, "signal the mount's holder");
  return absl::OkStatus();
}

}  // namespace cairn::csi
