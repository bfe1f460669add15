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

  const bool remote = !options.listen_socket.empty();
  ScopedFd listener;
  if (remote) {
    auto l = ListenHandover(options.listen_socket);
    if (!l.ok()) {
      CAIRN_LOG_ERROR("holder of %s: %s", where, l.status().ToString());
      return 1;
    }
    listener = *std::move(l);
    CAIRN_LOG_INFO("holder of %s: waiting for mounters at %s", where,
                   options.listen_socket.string());
  }

  HandoverState held;  // the connection, once a worker served it
  uint64_t generation = 0;
  bool stopping = false;  // a termination signal was passed on: no restart
  int quick_deaths = 0;
  for (;;) {
    ScopedFd ours, theirs;
    pid_t pid = -1;  // remote: the connected worker's pid as the kernel reports it
    if (remote) {
      // Wait for the next worker; a termination signal meanwhile ends the
      // mount (closing the connection, if there is one).
      while (!ours.valid()) {
        pollfd p[2] = {{signals.get(), POLLIN, 0}, {listener.get(), POLLIN, 0}};
        if (::poll(p, 2, -1) < 0) {
          if (errno == EINTR) continue;
          CAIRN_LOG_ERROR("holder of %s: poll: %s", where, std::strerror(errno));
          return 1;
        }
        if (p[0].revents != 0) {
          signalfd_siginfo info;
          if (::read(signals.get(), &info, sizeof info) != sizeof info) continue;
          int sig = static_cast<int>(info.ssi_signo);
          if (sig == SIGCHLD || sig == SIGUSR2) continue;
          CAIRN_LOG_INFO("holder of %s: signal %d with no mounter connected; ending the mount",
                         where, sig);
          ::unlink(options.listen_socket.c_str());
          return held.fuse_fd.valid() ? 0 : 1;
        }
        if (p[1].revents != 0) {
          ours.reset(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
          if (!ours.valid() && errno != EINTR && errno != EAGAIN && errno != ECONNABORTED) {
            CAIRN_LOG_ERROR("holder of %s: accept: %s", where, std::strerror(errno));
            return 1;
          }
        }
      }
      ucred cred{};
      socklen_t len = sizeof cred;
      if (::getsockopt(ours.get(), SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0) pid = cred.pid;
      ++generation;
    } else {
      int sp[2];
      if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) != 0) {
        CAIRN_LOG_ERROR("holder of %s: socketpair: %s", where, std::strerror(errno));
        return 1;
      }
      ours.reset(sp[0]);
      theirs.reset(sp[1]);
      // Everything the child needs is built before fork (only exec after it).
      std::vector<std::string> argv_s = options.worker_argv;
      std::vector<char*> argv;
      for (auto& a : argv_s) argv.push_back(a.data());
      argv.push_back(nullptr);
      std::vector<std::string> env_s;
      for (char** e = environ; *e != nullptr; ++e) {
        if (!std::string_view(*e).starts_with(absl::StrCat(kHandoverFdEnv, "="))) {
          env_s.push_back(*e);
        }
      }
      env_s.push_back(absl::StrCat(kHandoverFdEnv, "=", theirs.get()));
      std::vector<char*> envp;
      for (auto& e : env_s) envp.push_back(e.data());
      envp.push_back(nullptr);

      ++generation;
      pid = ::fork();
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
    } else if (remote) {
      CAIRN_LOG_INFO("holder of %s: worker %d connected (generation %d)", where, pid, generation);
    }
    bool served = false;
    int status = 0;
    for (bool running = true; running;) {
      pollfd p[2] = {{signals.get(), POLLIN, 0}, {ours.get(), POLLIN, 0}};
      int n = ::poll(p, ours.valid() ? 2 : 1, -1);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        CAIRN_LOG_ERROR("holder of %s: poll: %s", where, std::strerror(errno));
        if (remote) return 1;
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
          // A connected worker's end is its connection's end.
          if (remote) running = false;
        }
      }
      if (p[0].revents != 0) {
        signalfd_siginfo info;
        if (::read(signals.get(), &info, sizeof info) != sizeof info) continue;
        int sig = static_cast<int>(info.ssi_signo);
        if (remote) {
          if (sig == SIGCHLD) continue;
          if (sig == SIGUSR2) {
            CAIRN_LOG_INFO("holder of %s: upgrades replace the mounter pod; SIGUSR2 ignored",
                           where);
            continue;
          }
          if (stopping) continue;
          stopping = true;
          CAIRN_LOG_INFO("holder of %s: signal %d; asking worker %d to end the mount", where, sig,
                         pid);
          // The stop message: the worker unmounts, commits and closes.
          if (!ours.valid() || !SendHandover(ours.get(), HandoverState{}).ok()) running = false;
          continue;
        }
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
    if (remote) {
      if (stopping) {
        CAIRN_LOG_INFO("holder of %s: worker %d ended the mount", where, pid);
        ::unlink(options.listen_socket.c_str());
        return 0;
      }
      // Exit status unknown: a hand-over (the pod was deleted) or a crash
      // (OOM kill) alike; the next worker to connect takes over.
      status = served ? (kHandedOverExit << 8) : (1 << 8);
      if (held.fuse_fd.valid()) {
        CAIRN_LOG_INFO("holder of %s: worker %d disconnected%s; waiting for the next mounter",
                       where, pid, served ? "" : " before serving");
      }
    }
    bool handed = WIFEXITED(status) && WEXITSTATUS(status) == kHandedOverExit;
    // A replacement that gave up before serving (the control plane was
    // unreachable while it opened the volume, say) leaves a live connection
    // behind: try again, like after a crash, rather than end the mount.
    bool crashed =
        WIFSIGNALED(status) || (!handed && !served && (held.fuse_fd.valid() || remote));
    if (stopping || !(crashed || handed)) {
      if (handed) return 1;  // its changes wait in the journal for the next mount
      return ExitCodeOf(status);
    }
    if (!held.fuse_fd.valid() && !remote) {
      CAIRN_LOG_ERROR("holder of %s: worker %d %s before the mount served; giving up", where, pid,
                      DescribeStatus(status));
      return 1;
    }
    absl::Duration wait = absl::ZeroDuration();
    if (crashed) {
      if (!remote) {
        CAIRN_LOG_WARNING("holder of %s: worker %d %s%s; starting another on the same connection",
                          where, pid, DescribeStatus(status), served ? "" : " before serving");
      }
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
        if (remote) ::unlink(options.listen_socket.c_str());
        return 1;
      }
    }
  }
}

}  // namespace cairn::mounter
