#include "core/testing/postgres_server.h"

#include <fcntl.h>
#include <libpq-fe.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <system_error>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

extern char** environ;

namespace cairn::testing {
namespace {

constexpr uid_t kNobody = 65534;  // nobody / nogroup on Debian

// The newest installed server's bin directory.
std::filesystem::path FindBinDir() {
  std::vector<std::filesystem::path> found;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator("/usr/lib/postgresql", ec)) {
    if (std::filesystem::exists(e.path() / "bin" / "pg_ctl")) found.push_back(e.path() / "bin");
  }
  if (found.empty()) return {};
  std::sort(found.begin(), found.end(), [](const auto& a, const auto& b) {
    return std::atoi(a.parent_path().filename().c_str()) <
           std::atoi(b.parent_path().filename().c_str());
  });
  return found.back();
}

std::string ReadFile(const std::filesystem::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

bool PostgresRequired() {
  const char* ci = std::getenv("CI");
  return ci != nullptr && std::string(ci) == "true";
}

absl::Status PostgresServer::Run(const std::vector<std::string>& argv) {
  std::vector<std::string> full;
  if (::geteuid() == 0) {
    // PostgreSQL refuses to run as root.
    full = {"/usr/bin/setpriv", absl::StrCat("--reuid=", kNobody),
            absl::StrCat("--regid=", kNobody), "--clear-groups", "--"};
  }
  full.insert(full.end(), argv.begin(), argv.end());
  std::vector<char*> args;
  for (std::string& a : full) args.push_back(a.data());
  args.push_back(nullptr);
  const std::string out = (home_ / "commands.log").string();
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, out.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  pid_t pid = 0;
  int rc = posix_spawn(&pid, args[0], &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) {
    return absl::InternalError(absl::StrCat("spawn ", full[0], ": ", std::strerror(rc)));
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return absl::InternalError(absl::StrCat(absl::StrJoin(argv, " "), " failed (status ", status,
                                            "):\n", ReadFile(out), ReadFile(home_ / "server.log")));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<PostgresServer>> PostgresServer::Start() {
  std::unique_ptr<PostgresServer> pg(new PostgresServer());
  pg->bin_ = FindBinDir();
  if (pg->bin_.empty()) {
    return absl::NotFoundError(
        "PostgreSQL server binaries not found under /usr/lib/postgresql (Debian package "
        "`postgresql`; scripts/setup.sh installs it)");
  }
  pg->home_ = pg->dir_.path() / "pg";
  std::filesystem::create_directories(pg->home_);
  ::chmod(pg->dir_.path().c_str(), 0755);
  if (::geteuid() == 0 && ::chown(pg->home_.c_str(), kNobody, kNobody) != 0) {
    return absl::InternalError(absl::StrCat("chown ", pg->home_.string(), " to nobody failed"));
  }
  absl::Status init = pg->Run({(pg->bin_ / "initdb").string(), "-D", (pg->home_ / "data").string(),
                               "-U", "cairn", "--auth=trust", "-E", "UTF8", "--locale=C",
                               "--no-sync"});
  if (!init.ok()) return init;
  absl::Status started = pg->StartServer();
  if (!started.ok()) return started;
  return pg;
}

absl::Status PostgresServer::StartServer() {
  const std::string options = absl::StrCat(
      "-k ", home_.string(),
      " -c listen_addresses='' -c fsync=off -c full_page_writes=off -c shared_buffers=16MB "
      "-c max_connections=300");
  absl::Status st = Run({(bin_ / "pg_ctl").string(), "-D", (home_ / "data").string(), "-l",
                         (home_ / "server.log").string(), "-w", "-t", "180", "-o", options,
                         "start"});
  running_ = st.ok();
  return st;
}

absl::Status PostgresServer::Stop(bool immediate) {
  absl::Status st = Run({(bin_ / "pg_ctl").string(), "-D", (home_ / "data").string(), "-w", "-t",
                         "120", "-m", immediate ? "immediate" : "fast", "stop"});
  if (st.ok()) running_ = false;
  return st;
}

absl::Status PostgresServer::Restart() { return StartServer(); }

PostgresServer::~PostgresServer() {
  if (running_) (void)Stop(true);
}

absl::StatusOr<PostgresServer*> PostgresServer::Shared() {
  static absl::StatusOr<std::unique_ptr<PostgresServer>> shared = Start();
  if (!shared.ok()) return shared.status();
  return shared->get();
}

std::string PostgresServer::Url(const std::string& db) const {
  return absl::StrCat("postgresql:///", db, "?host=", home_.string(), "&user=cairn");
}

absl::Status PostgresServer::Exec(const std::string& db, const std::string& sql) {
  PGconn* conn = PQconnectdb(Url(db).c_str());
  absl::Status st;
  if (PQstatus(conn) != CONNECTION_OK) {
    st = absl::UnavailableError(absl::StrCat("connect to ", db, ": ", PQerrorMessage(conn)));
  } else {
    PGresult* r = PQexec(conn, sql.c_str());
    if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK) {
      st = absl::InternalError(absl::StrCat(sql, ": ", PQresultErrorMessage(r)));
    }
    PQclear(r);
  }
  PQfinish(conn);
  return st;
}

absl::StatusOr<std::string> PostgresServer::NewDatabase() {
  const std::string db = absl::StrCat("t", ++next_db_);
  absl::Status st = Exec("postgres", absl::StrCat("CREATE DATABASE ", db));
  if (!st.ok()) return st;
  return Url(db);
}

}  // namespace cairn::testing
