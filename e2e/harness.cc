#include "e2e/harness.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <httplib.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "core/testing/temp_dir.h"

extern char** environ;

namespace cairn::e2e {
namespace {

namespace fs = std::filesystem;

std::vector<std::string> MergedEnv(const std::vector<std::string>& extra,
                                   const std::vector<std::string>& unset) {
  std::vector<std::string> env;
  auto key = [](const std::string& kv) { return kv.substr(0, kv.find('=')); };
  for (char** e = environ; *e != nullptr; ++e) {
    std::string kv(*e);
    bool drop = false;
    for (const std::string& x : extra) drop = drop || key(x) == key(kv);
    for (const std::string& u : unset) drop = drop || u == key(kv);
    if (!drop) env.push_back(kv);
  }
  // Later entries of `extra` win over earlier ones with the same name.
  for (size_t i = 0; i < extra.size(); ++i) {
    bool overridden = false;
    for (size_t j = i + 1; j < extra.size(); ++j) overridden = overridden || key(extra[j]) == key(extra[i]);
    if (!overridden) env.push_back(extra[i]);
  }
  return env;
}

std::vector<char*> CStrings(std::vector<std::string>& v) {
  std::vector<char*> out;
  for (std::string& s : v) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

int DecodeWaitStatus(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

}  // namespace

fs::path BuiltBinary(const std::string& relative) {
  return cairn::testing::BuildDir() / relative;
}
fs::path CairnBinary() { return BuiltBinary("cli/cairn"); }

int FreePort() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
}

RunResult RunProcess(const std::vector<std::string>& argv_in, const RunOptions& options) {
  RunResult result;
  int in_pipe[2], out_pipe[2], err_pipe[2];
  if (::pipe2(in_pipe, O_CLOEXEC) != 0 || ::pipe2(out_pipe, O_CLOEXEC) != 0 ||
      ::pipe2(err_pipe, O_CLOEXEC) != 0) {
    result.err = "pipe failed";
    return result;
  }
  std::vector<std::string> argv = argv_in;
  std::vector<std::string> env = MergedEnv(options.env, options.unset_env);
  std::vector<char*> cargv = CStrings(argv);
  std::vector<char*> cenv = CStrings(env);
  int out_file = -1;
  if (options.stdout_file) {
    out_file = ::open(options.stdout_file->c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  }
  pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(in_pipe[0], 0);
    ::dup2(out_file >= 0 ? out_file : out_pipe[1], 1);
    ::dup2(err_pipe[1], 2);
    if (options.cwd && ::chdir(options.cwd->c_str()) != 0) _exit(126);
    ::execve(cargv[0], cargv.data(), cenv.data());
    _exit(127);
  }
  ::close(in_pipe[0]);
  ::close(out_pipe[1]);
  ::close(err_pipe[1]);
  if (out_file >= 0) ::close(out_file);
  int in_fd = in_pipe[1];
  size_t in_off = 0;
  if (options.stdin_data.empty()) {
    ::close(in_fd);
    in_fd = -1;
  } else {
    ::fcntl(in_fd, F_SETFL, O_NONBLOCK);
  }
  const auto deadline = std::chrono::steady_clock::now() + options.timeout;
  int out_fd = out_pipe[0], err_fd = err_pipe[0];
  char buf[65536];
  while (out_fd >= 0 || err_fd >= 0) {
    pollfd fds[3];
    int n = 0;
    if (out_fd >= 0) fds[n++] = {out_fd, POLLIN, 0};
    if (err_fd >= 0) fds[n++] = {err_fd, POLLIN, 0};
    if (in_fd >= 0) fds[n++] = {in_fd, POLLOUT, 0};
    int r = ::poll(fds, n, 200);
    if (std::chrono::steady_clock::now() > deadline) {
      ::kill(pid, SIGKILL);
      result.timed_out = true;
      break;
    }
    if (r <= 0) continue;
    for (int i = 0; i < n; ++i) {
      if (fds[i].revents == 0) continue;
      if (fds[i].fd == in_fd) {
        ssize_t w = ::write(in_fd, options.stdin_data.data() + in_off,
                            options.stdin_data.size() - in_off);
        if (w > 0) in_off += static_cast<size_t>(w);
        if (w < 0 || in_off == options.stdin_data.size()) {
          ::close(in_fd);
          in_fd = -1;
        }
        continue;
      }
      ssize_t got = ::read(fds[i].fd, buf, sizeof(buf));
      std::string& sink = fds[i].fd == out_fd ? result.out : result.err;
      if (got > 0) {
        sink.append(buf, static_cast<size_t>(got));
      } else {
        ::close(fds[i].fd);
        (fds[i].fd == out_fd ? out_fd : err_fd) = -1;
      }
    }
  }
  if (in_fd >= 0) ::close(in_fd);
  if (out_fd >= 0) ::close(out_fd);
  if (err_fd >= 0) ::close(err_fd);
  int status = 0;
  ::waitpid(pid, &status, 0);
  result.exit_code = DecodeWaitStatus(status);
  return result;
}

absl::StatusOr<std::unique_ptr<Child>> Child::Spawn(const std::vector<std::string>& argv_in,
                                                    const std::vector<std::string>& extra_env,
                                                    const fs::path& log_file) {
  std::vector<std::string> argv = argv_in;
  std::vector<std::string> env = MergedEnv(extra_env, {});
  std::vector<char*> cargv = CStrings(argv);
  std::vector<char*> cenv = CStrings(env);
  int log = ::open(log_file.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log < 0) return absl::InternalError(absl::StrCat("open ", log_file.string()));
  int devnull = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  pid_t pid = ::fork();
  if (pid < 0) return absl::InternalError("fork failed");
  if (pid == 0) {
    ::dup2(devnull, 0);
    ::dup2(log, 1);
    ::dup2(log, 2);
    ::execve(cargv[0], cargv.data(), cenv.data());
    _exit(127);
  }
  ::close(log);
  ::close(devnull);
  return std::unique_ptr<Child>(new Child(pid));
}

Child::~Child() {
  if (!exit_code_) {
    ::kill(pid_, SIGKILL);
    Wait();
  }
}

void Child::Signal(int sig) {
  if (!exit_code_) ::kill(pid_, sig);
}

bool Child::Exited() {
  if (exit_code_) return true;
  int status = 0;
  if (::waitpid(pid_, &status, WNOHANG) == pid_) {
    exit_code_ = DecodeWaitStatus(status);
    return true;
  }
  return false;
}

int Child::Wait(std::chrono::seconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!Exited()) {
    if (std::chrono::steady_clock::now() > deadline) {
      ::kill(pid_, SIGKILL);
      int status = 0;
      ::waitpid(pid_, &status, 0);
      exit_code_ = DecodeWaitStatus(status);
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return *exit_code_;
}

absl::StatusOr<std::unique_ptr<ServerProcess>> ServerProcess::Start(const Options& options) {
  absl::Status last = absl::InternalError("server did not start");
  // A port picked free can be taken by another test before the server binds
  // it; try a few times.
  for (int attempt = 0; attempt < 4; ++attempt) {
    std::unique_ptr<ServerProcess> server(new ServerProcess());
    server->options_ = options;
    server->port_ = FreePort();
    server->metrics_port_ = FreePort();
    if (server->metrics_port_ == server->port_) continue;
    server->log_file_ = options.data_dir.parent_path() /
                        absl::StrCat(options.data_dir.filename().string(), "-server.log");
    last = server->Launch();
    if (last.ok()) return server;
  }
  return last;
}

absl::Status ServerProcess::StartAgain() {
  if (child_) return absl::FailedPreconditionError("the server is still running");
  return Launch();
}

absl::Status ServerProcess::Launch() {
  std::vector<std::string> argv = {CairnBinary().string(), "server", "--data",
                                   options_.data_dir.string(), "--listen", address(),
                                   "--metrics-listen", absl::StrCat("127.0.0.1:", metrics_port_)};
  if (!options_.token.empty()) {
    fs::path token_file = options_.data_dir.parent_path() /
                          absl::StrCat(options_.data_dir.filename().string(), "-token");
    WriteWholeFile(token_file, options_.token + "\n");
    argv.push_back("--token-file");
    argv.push_back(token_file.string());
  }
  for (const std::string& a : options_.extra_args) argv.push_back(a);
  auto child = Child::Spawn(argv, options_.env, log_file_);
  if (!child.ok()) return child.status();
  child_ = std::move(*child);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (std::chrono::steady_clock::now() < deadline) {
    if (child_->Exited()) break;
    if (HttpGet("/readyz").first == 200) return absl::OkStatus();
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  absl::Status failed =
      absl::UnavailableError(absl::StrCat("cairn server did not become ready; log:\n", Log()));
  Stop(SIGKILL);
  return failed;
}

ServerProcess::~ServerProcess() {
  if (child_) Stop(SIGKILL);
}

std::string ServerProcess::address() const { return absl::StrCat("127.0.0.1:", port_); }

std::vector<std::string> ServerProcess::ClientEnv() const {
  return {absl::StrCat("CAIRN_SERVER=", address())};
}

int ServerProcess::Stop(int sig) {
  if (!child_) return -1;
  child_->Signal(sig);
  int code = child_->Wait(std::chrono::seconds(30));
  child_.reset();
  return code;
}

void ServerProcess::Signal(int sig) {
  if (child_) child_->Signal(sig);
}

std::string ServerProcess::Log() const { return ReadWholeFile(log_file_); }

std::pair<int, std::string> ServerProcess::HttpGet(const std::string& path) const {
  httplib::Client client("127.0.0.1", metrics_port_);
  client.set_connection_timeout(1, 0);
  client.set_read_timeout(5, 0);
  auto res = client.Get(path.c_str());
  if (!res) return {0, ""};
  return {res->status, res->body};
}

RunResult RunCli(const ServerProcess& server, const std::vector<std::string>& args,
                 RunOptions options) {
  std::vector<std::string> argv = {CairnBinary().string()};
  argv.insert(argv.end(), args.begin(), args.end());
  std::vector<std::string> env = server.ClientEnv();
  env.insert(env.end(), options.env.begin(), options.env.end());
  options.env = env;
  // The developer's own settings must not leak into tests.
  for (const char* name : {"CAIRN_NAMESPACE", "CAIRN_TOKEN", "CAIRN_TOKEN_FILE", "CAIRN_CA_FILE"}) {
    bool set = false;
    for (const std::string& e : options.env) set = set || e.rfind(std::string(name) + "=", 0) == 0;
    if (!set) options.unset_env.push_back(name);
  }
  return RunProcess(argv, options);
}

absl::Status WriteRandomFile(const fs::path& path, uint64_t size, uint64_t seed) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) return absl::InternalError(absl::StrCat("create ", path.string()));
  constexpr size_t kBlock = 4 << 20;
  std::vector<uint64_t> block(kBlock / 8);
  std::mt19937_64 rng(seed);
  for (uint64_t& w : block) w = rng();
  for (uint64_t done = 0, index = 0; done < size; ++index) {
    // Vary every block so no two chunks dedup.
    block[0] = index;
    block[1] = seed;
    block[index % (block.size() - 2) + 2] ^= rng();
    const size_t n = static_cast<size_t>(std::min<uint64_t>(kBlock, size - done));
    out.write(reinterpret_cast<const char*>(block.data()), static_cast<std::streamsize>(n));
    done += n;
  }
  out.close();
  if (!out) return absl::InternalError(absl::StrCat("write ", path.string()));
  return absl::OkStatus();
}

std::string ReadWholeFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream buf;
  buf << in.rdbuf();
  return buf.str();
}

void WriteWholeFile(const fs::path& path, const std::string& content) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << content;
}

absl::StatusOr<std::string> Sha256File(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("open ", path.string()));
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr);
  std::vector<char> buf(1 << 20);
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    EVP_DigestUpdate(ctx, buf.data(), static_cast<size_t>(in.gcount()));
  }
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_DigestFinal_ex(ctx, md, &len);
  EVP_MD_CTX_free(ctx);
  std::string hex;
  for (unsigned int i = 0; i < len; ++i) absl::StrAppend(&hex, absl::Hex(md[i], absl::kZeroPad2));
  return hex;
}

std::string Describe(const RunResult& r) {
  return absl::StrCat("exit ", r.exit_code, "\n--- stdout:\n", r.out.substr(0, 3000),
                      "\n--- stderr:\n", r.err.substr(0, 3000));
}

}  // namespace cairn::e2e
