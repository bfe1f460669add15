#include "core/testing/s3_server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace cairn::testing {
namespace {

int FreeLoopbackPort() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return 0;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  int port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  ::close(fd);
  return port;
}

// The versitygw binary: $CAIRN_VERSITYGW, else what scripts/go-tools.sh
// builds (a cache hit after the first time).
absl::StatusOr<std::string> VersitygwBinary() {
  if (const char* p = std::getenv("CAIRN_VERSITYGW"); p != nullptr && *p) return std::string(p);
  std::string cmd = absl::StrCat("/bin/bash '", CAIRN_SOURCE_DIR, "/scripts/go-tools.sh' versitygw 2>&1");
  FILE* f = ::popen(cmd.c_str(), "r");
  if (f == nullptr) return absl::UnavailableError("cannot run scripts/go-tools.sh");
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), f)) > 0) out.append(buf, n);
  int rc = ::pclose(f);
  // The binary's path is the last line printed.
  const std::string trimmed(absl::StripTrailingAsciiWhitespace(out));
  const size_t nl = trimmed.find_last_of('\n');
  const std::string last = nl == std::string::npos ? trimmed : trimmed.substr(nl + 1);
  if (rc != 0 || ::access(last.c_str(), X_OK) != 0) {
    return absl::UnavailableError(
        absl::StrCat("scripts/go-tools.sh versitygw failed (status ", rc, "):\n", out));
  }
  return last;
}

bool Answers(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  ::close(fd);
  return ok;
}

std::string ReadAll(const std::filesystem::path& p) {
  std::ifstream in(p);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

}  // namespace

bool InCi() {
  const char* ci = std::getenv("CI");
  return ci != nullptr && std::string(ci) == "true";
}

absl::StatusOr<std::unique_ptr<S3TestServer>> S3TestServer::Start() {
  absl::StatusOr<std::string> bin = VersitygwBinary();
  if (!bin.ok()) return bin.status();
  std::unique_ptr<S3TestServer> s(new S3TestServer());
  std::filesystem::create_directories(s->dir_.path() / "data");
  const std::filesystem::path log = s->dir_.path() / "versitygw.log";
  for (int attempt = 0; attempt < 5; ++attempt) {
    s->port_ = FreeLoopbackPort();
    const std::string listen = absl::StrCat("127.0.0.1:", s->port_);
    const std::string data = (s->dir_.path() / "data").string();
    pid_t pid = ::fork();
    if (pid < 0) return absl::InternalError("fork failed");
    if (pid == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
      if (fd >= 0) {
        ::dup2(fd, 1);
        ::dup2(fd, 2);
      }
      ::setenv("ROOT_ACCESS_KEY", kAccessKey, 1);
      ::setenv("ROOT_SECRET_KEY", kSecretKey, 1);
      ::execl(bin->c_str(), bin->c_str(), "--port", listen.c_str(), "posix", data.c_str(),
              static_cast<char*>(nullptr));
      ::_exit(127);
    }
    s->pid_ = pid;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    bool exited = false;
    while (std::chrono::steady_clock::now() < deadline) {
      int status = 0;
      if (::waitpid(pid, &status, WNOHANG) == pid) {
        exited = true;
        s->pid_ = -1;
        break;
      }
      if (Answers(s->port_)) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    if (exited) continue;  // most likely the port was taken meanwhile: another one
    if (!Answers(s->port_)) {
      return absl::UnavailableError(
          absl::StrCat("versitygw did not answer on ", listen, "; its log:\n", ReadAll(log)));
    }
    S3Config c = s->Config("");
    absl::StatusOr<std::unique_ptr<S3Client>> client = S3Client::Create(c);
    if (!client.ok()) return client.status();
    absl::Status made = (*client)->CreateBucket();
    if (!made.ok()) {
      return absl::UnavailableError(absl::StrCat("create bucket: ", made.ToString(),
                                                 "; versitygw log:\n", ReadAll(log)));
    }
    return s;
  }
  return absl::UnavailableError(absl::StrCat("versitygw kept exiting; its log:\n", ReadAll(log)));
}

absl::StatusOr<S3TestServer*> S3TestServer::Shared() {
  static absl::StatusOr<std::unique_ptr<S3TestServer>>* shared =
      new absl::StatusOr<std::unique_ptr<S3TestServer>>(Start());
  // Stopped at exit so no server outlives the test binary.
  static const bool registered = [] {
    std::atexit([] {
      if (shared->ok()) shared->value().reset();
    });
    return true;
  }();
  (void)registered;
  if (!shared->ok()) return shared->status();
  return shared->value().get();
}

S3TestServer::~S3TestServer() {
  if (pid_ > 0) {
    ::kill(pid_, SIGTERM);
    for (int i = 0; i < 100; ++i) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
  }
}

std::string S3TestServer::endpoint() const { return absl::StrCat("http://127.0.0.1:", port_); }

S3Config S3TestServer::Config(const std::string& prefix) const {
  S3Config c;
  c.endpoint = endpoint();
  c.region = "us-east-1";
  c.bucket = kBucket;
  c.prefix = prefix;
  c.path_style = true;
  c.credentials = {kAccessKey, kSecretKey, ""};
  c.max_attempts = 3;
  return c;
}

std::string S3TestServer::Url(const std::string& prefix) const {
  return absl::StrCat("s3://", kBucket, "/", prefix, "?endpoint=", endpoint(),
                      "&region=us-east-1&path_style=true");
}

std::vector<std::string> S3TestServer::Env() const {
  return {absl::StrCat("AWS_ACCESS_KEY_ID=", kAccessKey),
          absl::StrCat("AWS_SECRET_ACCESS_KEY=", kSecretKey)};
}

std::string S3TestServer::UniquePrefix() {
  static std::atomic<int> n{0};
  return absl::StrCat("t", ::getpid(), "-", n.fetch_add(1));
}

}  // namespace cairn::testing
