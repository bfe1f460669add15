// The `cairn` subcommands that act on mounts: `mount` runs the mounter
// in-process (cairn_cli links cairn_mounter); `volume commit|reload|status
// MOUNTPOINT` use the in-band controls on the mount root (extended
// attributes, docs/mounter.md); `shell` mounts volumes in a private mount
// namespace around a command.
#include "cli/mount_commands.h"

#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/flags.h"
#include "core/json.h"
#include "mounter/control.h"
#include "mounter/mounter.h"

namespace cairn::cli {
namespace {

using mounter::kCommitAttr;
using mounter::kReloadAttr;
using mounter::kStatusAttr;

void Error(const std::string& message) {
  std::fprintf(stderr, "cairn: error: %s\n", message.c_str());
}

// The status JSON of the mount at `mountpoint`, or "" with errno set.
std::string ReadStatus(const std::string& mountpoint) {
  std::string buf(64 << 10, '\0');
  ssize_t n = ::getxattr(mountpoint.c_str(), kStatusAttr, buf.data(), buf.size());
  if (n < 0) return "";
  buf.resize(n);
  return buf;
}

// The string value of "key" in the mount's status JSON; empty if absent or
// the status is not JSON.
std::string JsonField(const std::string& json, const std::string& key) {
  absl::StatusOr<nlohmann::json> parsed = ParseJson(json);
  return parsed.ok() ? JsonStringField(*parsed, key) : "";
}

// The mount's status for a person: what it shows, what is pending, how
// its commits and reloads went. `json` is the mount's status attribute.
std::string HumanStatus(const std::string& json) {
  absl::StatusOr<nlohmann::json> parsed = ParseJson(json);
  if (!parsed.ok() || !parsed->is_object()) return json + "\n";
  const nlohmann::json& j = *parsed;
  auto num = [&](const char* key) -> uint64_t {
    auto it = j.find(key);
    return it != j.end() && it->is_number() ? it->get<uint64_t>() : 0;
  };
  auto flag = [&](const char* key) {
    auto it = j.find(key);
    return it != j.end() && it->is_boolean() && it->get<bool>();
  };
  auto str = [&](const char* key) { return JsonStringField(j, key); };
  auto when = [&](const char* key) {
    std::string t = str(key);
    if (t.empty()) return std::string("never");
    // RFC 3339 with fractions: keep seconds, as elsewhere in the CLI.
    if (t.size() > 19) t = t.substr(0, 19);
    std::replace(t.begin(), t.end(), 'T', ' ');
    return t + " UTC";
  };
  std::string out = absl::StrCat("Volume:      ", str("volume"), " (", str("volume_id"),
                                 ", version ", num("version"), ")\n");
  absl::StrAppend(&out, "Access:      ", flag("read_only") ? "read-only" : "read-write",
                  str("sub_path").empty() ? "" : absl::StrCat(", sub-path /", str("sub_path")),
                  "\n");
  absl::StrAppend(&out, "Showing:     commit #", num("base_seq"), "\n");
  const uint64_t pending = num("pending_changes");
  absl::StrAppend(&out, "Uncommitted: ",
                  pending == 0 ? std::string("nothing")
                               : absl::StrCat(pending, " change", pending == 1 ? "" : "s"),
                  "\n");
  absl::StrAppend(&out, "Open files:  ", num("open_files"), "\n");
  absl::StrAppend(&out, "Inodes:      ", num("inodes"), "\n");
  absl::StrAppend(&out, "Commits:     ", num("commits"), " made, ", num("failed_commits"),
                  " failed; last ", num("last_commit_seq") == 0
                                        ? std::string("none")
                                        : absl::StrCat("#", num("last_commit_seq"), " at ",
                                                       when("last_commit_time")),
                  "\n");
  if (!str("last_commit_error").empty()) {
    absl::StrAppend(&out, "  last commit error: ", str("last_commit_error"), "\n");
  }
  absl::StrAppend(&out, "Reloads:     ", num("reloads"), "; last at ", when("last_reload_time"),
                  "\n");
  if (!str("last_reload_error").empty()) {
    absl::StrAppend(&out, "  last reload error: ", str("last_reload_error"), "\n");
  }
  auto stuck = j.find("stuck");
  if (stuck != j.end() && stuck->is_array() && !stuck->empty()) {
    absl::StrAppend(&out, "Held back:   ", stuck->size(),
                    " change(s) the head refused (kept in the mount, not committed):\n");
    for (const nlohmann::json& st : *stuck) {
      absl::StrAppend(&out, "  /", JsonStringField(st, "path"), ": ",
                      JsonStringField(st, "error"), "\n");
    }
  }
  if (flag("journal_failed")) {
    out += "Journal:     FAILED: changes since are not crash-safe on this node\n";
  }
  return out;
}

// The command `cairn shell` runs, for the signal handler that forwards
// SIGTERM/SIGHUP to it.
std::atomic<pid_t> g_shell_child{0};

bool IsMountedAt(const std::string& mountpoint) {
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  while (std::getline(in, line)) {
    // ... mount-point ... - fstype source options
    std::vector<std::string> fields;
    size_t start = 0;
    while (start <= line.size()) {
      size_t sp = line.find(' ', start);
      if (sp == std::string::npos) sp = line.size();
      fields.push_back(line.substr(start, sp - start));
      start = sp + 1;
    }
    if (fields.size() > 4 && fields[4] == mountpoint) {
      for (size_t i = 5; i + 1 < fields.size(); ++i) {
        if (fields[i] == "-" && fields[i + 1] == "fuse.cairn") return true;
      }
    }
  }
  return false;
}

}  // namespace

int RunMount(const ClientOptions& client, const std::vector<std::string>& args) {
  auto options = mounter::ParseMountArgs(args, client);
  if (!options.ok()) {
    if (IsHelpRequested(options.status())) {
      std::fputs(mounter::kMountUsage, stdout);
      return 0;
    }
    Error(std::string(options.status().message()));
    std::fputs(mounter::kMountUsage, stderr);
    return 2;
  }
  return mounter::RunMounter(*options);
}

int RunMountControl(const std::string& verb, const std::vector<std::string>& all_args) {
  // `status` alone takes --json: the status object for scripts.
  std::vector<std::string> args;
  bool json = false;
  for (const std::string& a : all_args) {
    if (verb == "status" && a == "--json") {
      json = true;
    } else if (a == "-h" || a == "--help") {
      std::printf(
          "Usage: cairn volume %s MOUNTPOINT%s\n\n%s", verb.c_str(),
          verb == "status" ? " [--json]" : "",
          verb == "status"
              ? "Shows a mount's state: the commit it shows, uncommitted changes, open\n"
                "files, and how its commits and reloads went.\n\n"
                "  --json   the mount's status as one JSON object\n"
              : verb == "commit" ? "Commits the mount's changes now (as `sync MOUNTPOINT`).\n"
                                 : "Moves the mount to the volume's head, keeping its own\n"
                                   "uncommitted changes; 'volume busy' while files are open.\n");
      return 0;
    } else {
      args.push_back(a);
    }
  }
  if (args.size() != 1 || args[0].empty() || args[0][0] == '-') {
    std::fprintf(stderr, "usage: cairn volume %s MOUNTPOINT%s\n", verb.c_str(),
                 verb == "status" ? " [--json]" : "");
    return 2;
  }
  const std::string& mountpoint = args[0];
  if (verb == "status") {
    std::string status = ReadStatus(mountpoint);
    if (status.empty()) {
      int err = errno;
      Error(mountpoint + " is not a cairn mount (" + std::strerror(err) + ")");
      return 1;
    }
    if (json) {
      std::printf("%s\n", status.c_str());
    } else {
      std::fputs(HumanStatus(status).c_str(), stdout);
    }
    return 0;
  }
  const char* attr = verb == "commit" ? kCommitAttr : verb == "reload" ? kReloadAttr : nullptr;
  if (attr == nullptr) {
    std::fprintf(stderr, "usage: cairn volume commit|reload|status MOUNTPOINT\n");
    return 2;
  }
  // Only a cairn mount answers the status attribute; anything else would
  // happily store a user.* attribute and report success.
  if (ReadStatus(mountpoint).empty()) {
    int err = errno;
    Error(mountpoint + " is not a cairn mount (" + std::strerror(err) + ")");
    return 1;
  }
  if (::setxattr(mountpoint.c_str(), attr, "1", 1, 0) == 0) return 0;
  int err = errno;
  std::string status = ReadStatus(mountpoint);
  std::string detail = JsonField(status, verb == "commit" ? "last_commit_error"
                                                          : "last_reload_error");
  if (err == EBUSY) {
    Error(detail.empty() ? std::string("volume busy") : detail);
  } else {
    Error(verb + " failed: " + std::strerror(err) + (detail.empty() ? "" : ": " + detail));
  }
  return 1;
}

int RunShell(const ClientOptions& client, const std::vector<std::string>& args) {
  std::vector<std::string> volumes;
  std::vector<std::string> command;
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--") {
      command.assign(args.begin() + i + 1, args.end());
      break;
    }
    if ((args[i] == "--volume" || args[i] == "-v") && i + 1 < args.size()) {
      volumes.push_back(args[++i]);
    } else if (args[i].starts_with("--volume=")) {
      volumes.push_back(args[i].substr(9));
    } else {
      std::fprintf(stderr, "usage: cairn shell --volume NAME [--volume NAME ...] [-- COMMAND...]\n");
      return 2;
    }
  }
  if (volumes.empty()) {
    std::fprintf(stderr, "usage: cairn shell --volume NAME [--volume NAME ...] [-- COMMAND...]\n");
    return 2;
  }
  // A private mount namespace: the mounts exist only for this shell.
  if (::unshare(CLONE_NEWNS) != 0) {
    Error(std::string("cannot create a mount namespace (root needed): ") + std::strerror(errno));
    return 1;
  }
  if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) {
    Error(std::string("cannot make mounts private: ") + std::strerror(errno));
    return 1;
  }
  if (!client.token.empty()) ::setenv("CAIRN_TOKEN", client.token.c_str(), 1);
  if (!client.ca_file.empty()) ::setenv("CAIRN_CA_FILE", client.ca_file.c_str(), 1);
  std::vector<pid_t> mounters;
  auto stop_all = [&]() {
    for (pid_t pid : mounters) ::kill(pid, SIGTERM);
    int rc = 0;
    for (pid_t pid : mounters) {
      int status = 0;
      while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
      }
      if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) rc = 1;
    }
    return rc;
  };
  for (const std::string& volume : volumes) {
    std::string mountpoint = "/mnt/" + volume;
    std::error_code ec;
    std::filesystem::create_directories(mountpoint, ec);
    std::vector<std::string> argv = {"/proc/self/exe", "mount", volume, mountpoint,
                                     "--server", client.server, "--namespace", client.ns};
    pid_t pid = ::fork();
    if (pid == 0) {
      // Its own process group: a Ctrl-C meant for the command (the terminal
      // signals the foreground group) must not unmount the volumes under
      // it. And if `cairn shell` dies, the mounter commits and exits
      // instead of lingering in the orphaned namespace.
      ::setpgid(0, 0);
      ::prctl(PR_SET_PDEATHSIG, SIGTERM);
      if (::getppid() == 1) _exit(1);
      std::vector<char*> c;
      for (auto& a : argv) c.push_back(a.data());
      c.push_back(nullptr);
      ::execv("/proc/self/exe", c.data());
      _exit(127);
    }
    if (pid < 0) {
      Error("fork failed");
      stop_all();
      return 1;
    }
    mounters.push_back(pid);
    bool ready = false;
    for (int i = 0; i < 300 && !ready; ++i) {
      int status;
      if (::waitpid(pid, &status, WNOHANG) == pid) {
        mounters.pop_back();
        Error("mounting " + volume + " failed");
        stop_all();
        return 1;
      }
      ready = IsMountedAt(mountpoint);
      if (!ready) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    if (!ready) {
      Error("timed out mounting " + volume);
      stop_all();
      return 1;
    }
  }
  if (command.empty()) {
    const char* shell = std::getenv("SHELL");
    command = {shell != nullptr && *shell ? shell : "/bin/sh"};
  }
  // Like system(3): while the command runs, SIGINT/SIGQUIT are its
  // business (it is in the terminal's foreground group with us), and
  // SIGTERM/SIGHUP sent to `cairn shell` go on to it; either way the
  // volumes stay mounted until it exits, then commit.
  struct sigaction ignore {}, forward {}, old_int {}, old_quit {}, old_term {}, old_hup {};
  ignore.sa_handler = SIG_IGN;
  sigemptyset(&ignore.sa_mask);
  forward.sa_handler = +[](int sig) {
    pid_t pid = g_shell_child.load();
    if (pid > 0) ::kill(pid, sig);
  };
  sigemptyset(&forward.sa_mask);
  ::sigaction(SIGINT, &ignore, &old_int);
  ::sigaction(SIGQUIT, &ignore, &old_quit);
  pid_t child = ::fork();
  if (child == 0) {
    ::sigaction(SIGINT, &old_int, nullptr);
    ::sigaction(SIGQUIT, &old_quit, nullptr);
    std::vector<char*> c;
    for (auto& a : command) c.push_back(a.data());
    c.push_back(nullptr);
    ::execvp(c[0], c.data());
    std::fprintf(stderr, "cairn: error: cannot run %s: %s\n", c[0], std::strerror(errno));
    _exit(127);
  }
  int status = 0;
  if (child > 0) {
    g_shell_child.store(child);
    ::sigaction(SIGTERM, &forward, &old_term);
    ::sigaction(SIGHUP, &forward, &old_hup);
    while (::waitpid(child, &status, 0) < 0 && errno == EINTR) {
    }
    g_shell_child.store(0);
    ::sigaction(SIGTERM, &old_term, nullptr);
    ::sigaction(SIGHUP, &old_hup, nullptr);
  }
  ::sigaction(SIGINT, &old_int, nullptr);
  ::sigaction(SIGQUIT, &old_quit, nullptr);
  // Unmounting commits (the mounter's final commit on SIGTERM).
  int mount_rc = stop_all();
  int rc = child < 0 ? 1 : WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  if (mount_rc != 0) {
    Error("a final commit failed; see the messages above");
    if (rc == 0) rc = 1;
  }
  return rc;
}

}  // namespace cairn::cli
