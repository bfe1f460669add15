#include "mounter/holder.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "core/fd.h"
#include "core/log.h"
#include "mounter/handover.h"

extern char** environ;

namespace cairn::mounter {
namespace {

// A worker that dies this soon after its start, before serving, counts
// towards giving up.
constexpr absl::Duration kQuickDeath = absl::Seconds(10);
constexpr int kMaxQuickDeaths = 5;

std::string DescribeStatus(int status) {
  if (WIFSIGNALED(status)) return absl::StrCat("killed by signal ", WTERMSIG(status));
  if (WIFEXITED(status)) return absl::StrCat("exited with ", WEXITSTATUS(status));
  return "ended";
}

int ExitCodeOf(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 1;
}

}  // namespace

std::vector<std::string> OwnCommandLine() {
  std::ifstream in("/proc/self/cmdline", std::ios::binary);
  std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::string> argv;
  size_t start = 0;
  while (start < all.size()) {
    size_t end = all.find('\0', start);
    if (end == std::string::npos) end = all.size();
    argv.push_back(all.substr(start, end - start));
    start = end + 1;
  }
  char exe[4096];
  ssize_t n = ::readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n > 0 && !argv.empty()) argv[0].assign(exe, static_cast<size_t>(n));
  return argv;
}

int RunHolder(const HolderOptions& options) {
  const std::string where = options.mountpoint.string();
  sigset_t sigs;
  sigemptyset(&sigs);
  for (int s : {SIGTERM, SIGINT, SIGHUP, SIGUSR2, SIGCHLD}) sigaddset(&sigs, s);
  sigset_t old_mask;
  sigprocmask(SIG_BLOCK, &sigs, &old_mask);
  ::signal(SIGPIPE, SIG_IGN);
  ScopedFd signals(::signalfd(-1, &sigs, SFD_CLOEXEC));
  if (!signals.valid()) {
    CAIRN_LOG_ERROR("holder of %s: signalfd: %s", where, std::strerror(errno));
    return 1;
  }
  if (options.worker_argv.empty()) {
    CAIRN_LOG_ERROR("holder of %s: no worker command", where);
    return 1;
  }

  HandoverState held;  // the connection, once a worker served it
  uint64_t generation = 0;
  bool stopping = false;  // a termination signal was passed on: no restart
  int quick_deaths = 0;
  for (;;) {
    int sp[2];
    if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) != 0) {
      CAIRN_LOG_ERROR("holder of %s: socketpair: %s", where, std::strerror(errno));
      return 1;
    }
    ScopedFd ours(sp[0]), theirs(sp[1]);
    // Everything the child needs is built before fork (only exec after it).
    std::vector<std::string> argv_s = options.worker_argv;
    std::vector<char*> argv;
    for (auto& a : argv_s) argv.push_back(a.data());
    argv.push_back(nullptr);
    std::vector<std::string> env_s;
    for (char** e = environ; *e != nullptr; ++e) {
      if (!std::string_view(*e).starts_with(absl::StrCat(kHandoverFdEnv, "="))) env_s.push_back(*e);
    }
    env_s.push_back(absl::StrCat(kHandoverFdEnv, "=", theirs.get()));
    std::vector<char*> envp;
    for (auto& e : env_s) envp.push_back(e.data());
    envp.push_back(nullptr);

    ++generation;
    pid_t pid = ::fork();
    if (pid < 0) {
      CAIRN_LOG_ERROR("holder of %s: fork: %s", where, std::strerror(errno));
      return 1;
    }
    if (pid == 0) {
      sigprocmask(SIG_SETMASK, &old_mask, nullptr);
      int flags = ::fcntl(theirs.get(), F_GETFD);
      ::fcntl(theirs.get(), F_SETFD, flags & ~FD_CLOEXEC);
      ::execve(argv[0], argv.data(), envp.data());
      ::_exit(127);
    }
    theirs.reset();
    absl::Time started = absl::Now();
    held.generation = generation;
    if (auto st = SendHandover(ours.get(), held); !st.ok()) {
      CAIRN_LOG_WARNING("holder of %s: worker %d did not take its start message: %s", where, pid,
                        st.ToString());
    }
    if (held.fuse_fd.valid()) {
      CAIRN_LOG_INFO("holder of %s: worker %d (generation %d) takes over the mount", where, pid,
                     generation);
    }
    bool served = false;
    int status = 0;
    for (bool running = true; running;) {
      pollfd p[2] = {{signals.get(), POLLIN, 0}, {ours.get(), POLLIN, 0}};
      int n = ::poll(p, ours.valid() ? 2 : 1, -1);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        CAIRN_LOG_ERROR("holder of %s: poll: %s", where, std::strerror(errno));
        ::kill(pid, SIGTERM);
        ::waitpid(pid, &status, 0);
        return 1;
      }
      if (ours.valid() && p[1].revents != 0) {
        auto msg = ReceiveHandover(ours.get(), absl::ZeroDuration());
        if (msg.ok() && msg->fuse_fd.valid()) {
          held = *std::move(msg);
          served = true;
          quick_deaths = 0;
        } else if (msg.ok()) {
          CAIRN_LOG_WARNING("holder of %s: worker %d sent no descriptor", where, pid);
        } else {
          // Closed (the worker is ending) or garbage: either way, no more.
          if (msg.status().code() != absl::StatusCode::kUnavailable) {
            CAIRN_LOG_WARNING("holder of %s: %s", where, msg.status().ToString());
          }
          ours.reset();
        }
      }
      if (p[0].revents != 0) {
        signalfd_siginfo info;
        if (::read(signals.get(), &info, sizeof info) != sizeof info) continue;
        int sig = static_cast<int>(info.ssi_signo);
        if (sig == SIGUSR2) {
          // Only a connection that served can be handed over: a worker
          // still mounting would take the mount down with it.
          if (stopping) continue;
          if (!held.fuse_fd.valid()) {
            CAIRN_LOG_WARNING("holder of %s: upgrade requested before the mount serves; ignored",
                              where);
            continue;
          }
          CAIRN_LOG_INFO("holder of %s: upgrade requested; worker %d hands over", where, pid);
          ::kill(pid, SIGUSR1);
        } else if (sig != SIGCHLD) {
          stopping = true;
          ::kill(pid, sig);
        }
        // SIGCHLD (or any signal: they coalesce) → is the worker gone?
        pid_t r = ::waitpid(pid, &status, WNOHANG);
        if (r == pid) running = false;
      }
    }
    bool handed = WIFEXITED(status) && WEXITSTATUS(status) == kHandedOverExit;
    // A replacement that gave up before serving (the control plane was
    // unreachable while it opened the volume, say) leaves a live connection
    // behind: try again, like after a crash, rather than end the mount.
    bool crashed = WIFSIGNALED(status) || (!handed && !served && held.fuse_fd.valid());
    if (stopping || !(crashed || handed)) {
      if (handed) return 1;  // its changes wait in the journal for the next mount
      return ExitCodeOf(status);
    }
    if (!held.fuse_fd.valid()) {
      CAIRN_LOG_ERROR("holder of %s: worker %d %s before the mount served; giving up", where, pid,
                      DescribeStatus(status));
      return 1;
    }
    absl::Duration wait = absl::ZeroDuration();
    if (crashed) {
      CAIRN_LOG_WARNING("holder of %s: worker %d %s%s; starting another on the same connection",
                        where, pid, DescribeStatus(status), served ? "" : " before serving");
      if (!served && absl::Now() - started < kQuickDeath) {
        if (++quick_deaths >= kMaxQuickDeaths) {
          CAIRN_LOG_ERROR("holder of %s: %d workers in a row died before serving; closing the "
                          "connection (requests on the mount now fail)",
                          where, quick_deaths);
          return 1;
        }
        wait = std::min(absl::Milliseconds(250) * (1 << quick_deaths), absl::Seconds(4));
      }
    }
    // A termination signal during the pause ends the mount here.
    absl::Time until = absl::Now() + wait;
    while (absl::Now() < until) {
      pollfd p{signals.get(), POLLIN, 0};
      int ms = static_cast<int>(absl::ToInt64Milliseconds(until - absl::Now())) + 1;
      if (::poll(&p, 1, ms) <= 0) continue;
      signalfd_siginfo info;
      if (::read(signals.get(), &info, sizeof info) != sizeof info) continue;
      int sig = static_cast<int>(info.ssi_signo);
      if (sig != SIGCHLD && sig != SIGUSR2) {
        CAIRN_LOG_WARNING("holder of %s: signal %d between workers; closing the connection", where,
                          sig);
        return 1;
      }
    }
  }
}

}  // namespace cairn::mounter
