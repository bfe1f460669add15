// Integration-test harness: real processes on loopback (DESIGN.md §6).
//
// Child is an RAII child process (killed and reaped on destruction);
// RunProcess() executes a command to completion, feeding stdin and capturing
// stdout/stderr; ServerProcess starts the real `cairn server` on free
// loopback ports with a data directory and waits until /readyz answers.
// Shared by the CLI tests and the mount tests. Test-only: failures are
// reported as absl::Status for the test to ASSERT on.
#pragma once

#include <signal.h>
#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace cairn::e2e {

// Built binaries (CAIRN_BUILD_DIR, set by cairn_test()).
std::filesystem::path CairnBinary();          // build/cli/cairn
std::filesystem::path BuiltBinary(const std::string& relative);  // e.g. "mounter/cairn-mount"

// A loopback TCP port that was free a moment ago.
int FreePort();

struct RunOptions {
  std::string stdin_data;                // written to the child's stdin, then closed
  std::vector<std::string> env;          // "K=V" added to (or replacing in) our environment
  std::vector<std::string> unset_env;    // names removed from the environment
  std::chrono::seconds timeout{300};     // the child is SIGKILLed after this
  std::optional<std::filesystem::path> cwd;
  std::optional<std::filesystem::path> stdout_file;  // stdout to this file, not captured
};

struct RunResult {
  int exit_code = -1;  // 128 + signal when killed by a signal
  std::string out;
  std::string err;
  bool timed_out = false;
};

// Runs argv[0] (a path) with arguments to completion.
RunResult RunProcess(const std::vector<std::string>& argv, const RunOptions& options = {});

// Exit code, then the first 3,000 bytes of stdout and of stderr: for a
// failing assertion's message.
std::string Describe(const RunResult& r);

// A child running in the background; stdout and stderr go to `log_file`.
class Child {
 public:
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<Child>> Spawn(
      const std::vector<std::string>& argv, const std::vector<std::string>& env,
      const std::filesystem::path& log_file);
  ~Child();
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  pid_t pid() const { return pid_; }
  void Signal(int sig);
  // True if the child has exited (and reaps it).
  bool Exited();
  // Waits (up to `timeout`, then SIGKILL) and returns the exit code
  // (128 + signal if signalled).
  int Wait(std::chrono::seconds timeout = std::chrono::seconds(60));

 private:
  explicit Child(pid_t pid) : pid_(pid) {}
  pid_t pid_;
  std::optional<int> exit_code_;
};

class ServerProcess {
 public:
  struct Options {
    std::filesystem::path data_dir;   // required
    std::string token;                // written to a token file and passed with --token-file
    std::vector<std::string> extra_args;
    std::vector<std::string> env;     // "K=V" added to the server's environment
  };
  // Starts `cairn server` and waits for /readyz (up to 30 s).
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<ServerProcess>> Start(
      const Options& options);
  ~ServerProcess();

  std::string address() const;  // "127.0.0.1:PORT"
  int port() const { return port_; }
  int metrics_port() const { return metrics_port_; }
  // "CAIRN_SERVER=…" for RunCli's environment.
  std::vector<std::string> ClientEnv() const;
  // Sends `sig` and waits for the process; returns its exit code.
  int Stop(int sig = SIGTERM);
  // Sends `sig` without waiting (SIGSTOP/SIGCONT: a control plane that hangs).
  void Signal(int sig);

  // After Stop: starts the server again on the same ports and data
  // directory and waits for /readyz (outage tests).
  [[nodiscard]] absl::Status StartAgain();
  std::string Log() const;
  // GET on the metrics port; status code and body.
  std::pair<int, std::string> HttpGet(const std::string& path) const;

 private:
  ServerProcess() = default;
  absl::Status Launch();
  std::unique_ptr<Child> child_;
  Options options_;
  std::filesystem::path log_file_;
  int port_ = 0;
  int metrics_port_ = 0;
};

// Runs the `cairn` binary against `server` (CAIRN_SERVER set); extra env in
// options.env wins.
RunResult RunCli(const ServerProcess& server, const std::vector<std::string>& args,
                 RunOptions options = {});

// Writes `size` bytes of incompressible, non-repeating data (every 4 MiB
// block differs) generated from `seed`.
absl::Status WriteRandomFile(const std::filesystem::path& path, uint64_t size, uint64_t seed);
std::string ReadWholeFile(const std::filesystem::path& path);
void WriteWholeFile(const std::filesystem::path& path, const std::string& content);
// SHA-256 hex of a file, streamed.
absl::StatusOr<std::string> Sha256File(const std::filesystem::path& path);

}  // namespace cairn::e2e
