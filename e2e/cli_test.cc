// The `cairn` CLI against a real `cairn server`: every subcommand and flag,
// and every error path, through real processes (DESIGN.md §6).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "core/testing/temp_dir.h"
#include "e2e/harness.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace cairn::e2e {
namespace {

namespace fs = std::filesystem;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;
using ::testing::UnorderedElementsAre;

std::vector<std::string> Lines(const std::string& s) {
  std::vector<std::string> out = absl::StrSplit(s, '\n', absl::SkipEmpty());
  return out;
}

// One server for the suite; every test uses its own volume names.
class CliTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new cairn::testing::TempDir();
    auto server = ServerProcess::Start({.data_dir = dir_->path() / "data"});
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = server->release();
  }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
    delete dir_;
  }

  RunResult Cli(const std::vector<std::string>& args, RunOptions options = {}) {
    return RunCli(*server_, args, std::move(options));
  }
  // Runs and expects exit 0.
  std::string Ok(const std::vector<std::string>& args, RunOptions options = {}) {
    RunResult r = Cli(args, std::move(options));
    EXPECT_EQ(r.exit_code, 0) << absl::StrJoin(args, " ") << "\n" << Describe(r);
    return r.out;
  }
  // Runs and expects exit `code`; returns stderr.
  std::string Fails(int code, const std::vector<std::string>& args, RunOptions options = {}) {
    RunResult r = Cli(args, std::move(options));
    EXPECT_EQ(r.exit_code, code) << absl::StrJoin(args, " ") << "\n" << Describe(r);
    if (code == 1) {
      EXPECT_THAT(r.err, HasSubstr("cairn: error: ")) << Describe(r);
    }
    return r.err;
  }
  fs::path Local(const std::string& name) {
    fs::path p = local_.path() / name;
    fs::create_directories(p.parent_path());
    return p;
  }

  static cairn::testing::TempDir* dir_;
  static ServerProcess* server_;
  cairn::testing::TempDir local_;
};

cairn::testing::TempDir* CliTest::dir_ = nullptr;
ServerProcess* CliTest::server_ = nullptr;

TEST_F(CliTest, HelpEverywhere) {
  EXPECT_THAT(Ok({"--help"}), AllOf(HasSubstr("Usage: cairn"), HasSubstr("volume")));
  EXPECT_THAT(Ok({"volume", "--help"}), AllOf(HasSubstr("put VOLUME LOCAL"),
                                              HasSubstr("--namespace")));
  for (const char* sub : {"create", "list", "ls", "put", "get", "cp", "rm", "rename", "delete"}) {
    EXPECT_THAT(Ok({"volume", sub, "--help"}), HasSubstr(absl::StrCat("Usage: cairn volume ", sub)))
        << sub;
  }
  EXPECT_THAT(Ok({"server", "--help"}), AllOf(HasSubstr("--data DIR"), HasSubstr("--listen"),
                                              HasSubstr("--token-file"), HasSubstr("--tls-cert")));
  EXPECT_THAT(Ok({"fsck", "--help"}), HasSubstr("Usage: cairn fsck --data DIR"));
}

TEST_F(CliTest, UsageErrorsExitTwo) {
  EXPECT_THAT(Fails(2, {}), HasSubstr("Usage: cairn"));
  EXPECT_THAT(Fails(2, {"frobnicate"}), HasSubstr("unknown command"));
  EXPECT_THAT(Fails(2, {"volume", "frobnicate"}), HasSubstr("unknown volume subcommand"));
  EXPECT_THAT(Fails(2, {"volume", "create"}), HasSubstr("missing arguments"));
  EXPECT_THAT(Fails(2, {"volume", "create", "a", "b"}), HasSubstr("too many arguments"));
  EXPECT_THAT(Fails(2, {"volume", "put", "v", "x", "--bogus"}), HasSubstr("unknown option"));
  EXPECT_THAT(Fails(2, {"volume", "create", "v", "--version"}), HasSubstr("needs a value"));
  EXPECT_THAT(Fails(2, {"volume", "cp", "v", "a"}), HasSubstr("missing arguments"));
  EXPECT_THAT(Fails(2, {"fsck"}), HasSubstr("--data"));
  EXPECT_THAT(Fails(2, {"server"}), HasSubstr("--data"));
  // A malformed address is a usage error, found before anything starts.
  EXPECT_THAT(Fails(2, {"server", "--data", Local("srv").string(), "--listen", "nocolon"}),
              HasSubstr("HOST:PORT"));
  EXPECT_THAT(Fails(2, {"server", "--data", Local("srv").string(), "--listen", "127.0.0.1:99999"}),
              HasSubstr("bad port"));
  EXPECT_THAT(Fails(2, {"server", "--data", Local("srv").string(), "--metrics-listen", "x"}),
              HasSubstr("HOST:PORT"));
  EXPECT_FALSE(fs::exists(Local("srv")));
  EXPECT_THAT(Fails(2, {"volume", "list", "--server"}), HasSubstr("needs a value"));
}

TEST_F(CliTest, CreateListAndVersions) {
  EXPECT_THAT(Ok({"volume", "create", "cl-a"}), HasSubstr("Created volume cl-a"));
  EXPECT_THAT(Ok({"volume", "create", "cl-b", "--version", "1"}), HasSubstr("version 1"));
  EXPECT_THAT(Ok({"volume", "create", "--version=2", "cl-c"}), HasSubstr("version 2"));
  // Piped: bare names, newest first.
  std::vector<std::string> names = Lines(Ok({"volume", "list"}));
  auto pos = [&](const std::string& n) { return std::find(names.begin(), names.end(), n) - names.begin(); };
  EXPECT_LT(pos("cl-c"), pos("cl-b"));
  EXPECT_LT(pos("cl-b"), pos("cl-a"));
  EXPECT_LT(pos("cl-a"), static_cast<long>(names.size()));
  std::string json = Ok({"volume", "list", "--json"});
  EXPECT_THAT(json, AllOf(HasSubstr("\"name\":\"cl-b\""), HasSubstr("\"version\":1"),
                          HasSubstr("\"id\":\"vo-")));
  EXPECT_EQ(json.front(), '[');

  // Exists: refused; get-or-create semantics with --allow-existing.
  EXPECT_THAT(Fails(1, {"volume", "create", "cl-a"}), HasSubstr("exists"));
  Ok({"volume", "create", "cl-a", "--allow-existing"});
  EXPECT_THAT(Fails(1, {"volume", "create", "cl-a", "--allow-existing", "--version", "1"}),
              HasSubstr("version"));
  EXPECT_THAT(Fails(2, {"volume", "create", "cl-x", "--version", "3"}),
              HasSubstr("--version must be 1 or 2"));
}

TEST_F(CliTest, BadNamesAreRefused) {
  for (const std::string& bad :
       {std::string("has/slash"), std::string(".."), std::string("."), std::string("sp ace"),
        std::string(65, 'x'), std::string("")}) {
    RunResult r = Cli({"volume", "create", bad});
    EXPECT_EQ(r.exit_code, 1) << "'" << bad << "'\n" << Describe(r);
    EXPECT_THAT(r.err, HasSubstr("cairn: error:"));
  }
  EXPECT_EQ(Cli({"volume", "create", std::string(64, 'y')}).exit_code, 0);
  Fails(1, {"volume", "ls", "bad/name"});
  Fails(1, {"volume", "get", "bad/name", "x", "-"});
  Fails(2, {"volume", "list", "-n", "bad/ns"});
}

TEST_F(CliTest, Namespaces) {
  Ok({"volume", "create", "ns-vol", "-n", "team-a"});
  Ok({"--namespace", "team-b", "volume", "create", "ns-vol"});
  EXPECT_THAT(Lines(Ok({"volume", "list", "-n", "team-a"})), ElementsAre("ns-vol"));
  EXPECT_THAT(Lines(Ok({"volume", "list"}, {.env = {"CAIRN_NAMESPACE=team-b"}})),
              ElementsAre("ns-vol"));
  EXPECT_THAT(Lines(Ok({"volume", "list"})), Not(::testing::Contains("ns-vol")));
  EXPECT_THAT(Fails(1, {"volume", "ls", "ns-vol"}), HasSubstr("not found"));
  Ok({"volume", "delete", "ns-vol", "-y", "-n", "team-a"});
  EXPECT_THAT(Lines(Ok({"volume", "list", "-n", "team-b"})), ElementsAre("ns-vol"));
}

TEST_F(CliTest, DeleteAsksAndAllowsMissing) {
  Ok({"volume", "create", "del-a"});
  // stdin is a pipe here: no prompt possible, so it refuses and says why.
  EXPECT_THAT(Fails(1, {"volume", "delete", "del-a"}), HasSubstr("-y"));
  EXPECT_THAT(Fails(1, {"volume", "delete", "del-a"}, {.stdin_data = "y\n"}), HasSubstr("-y"));
  EXPECT_THAT(Lines(Ok({"volume", "list"})), ::testing::Contains("del-a"));
  Ok({"volume", "delete", "del-a", "-y"});
  EXPECT_THAT(Lines(Ok({"volume", "list"})), Not(::testing::Contains("del-a")));
  EXPECT_THAT(Fails(1, {"volume", "delete", "del-a", "--yes"}), HasSubstr("not found"));
  EXPECT_THAT(Ok({"volume", "delete", "del-a", "-y", "--allow-missing"}),
              HasSubstr("does not exist"));
  Ok({"volume", "delete", "del-a", "--allow-missing"});
  // Re-created under the same name: a new ID, empty.
  Ok({"volume", "create", "del-a"});
  EXPECT_THAT(Ok({"volume", "ls", "del-a"}), IsEmpty());
}

TEST_F(CliTest, RenameAsksKeepsDataAndRefusesClashes) {
  Ok({"volume", "create", "ren-a"});
  Ok({"volume", "create", "ren-taken"});
  WriteWholeFile(Local("f.txt"), "renamed data\n");
  Ok({"volume", "put", "ren-a", Local("f.txt").string()});
  EXPECT_THAT(Fails(1, {"volume", "rename", "ren-a", "ren-b"}), HasSubstr("-y"));
  EXPECT_THAT(Fails(1, {"volume", "rename", "ren-a", "ren-taken", "-y"}), HasSubstr("exists"));
  Fails(1, {"volume", "rename", "ren-a", "bad/name", "-y"});
  Fails(1, {"volume", "rename", "ren-missing", "ren-c", "-y"});
  EXPECT_THAT(Ok({"volume", "rename", "ren-a", "ren-b", "-y"}), HasSubstr("Renamed"));
  Fails(1, {"volume", "ls", "ren-a"});
  EXPECT_EQ(Ok({"volume", "get", "ren-b", "f.txt", "-"}), "renamed data\n");
}

TEST_F(CliTest, PutGetFileSemantics) {
  Ok({"volume", "create", "pg"});
  WriteWholeFile(Local("hello.txt"), "hello\n");
  // Default REMOTE is '/', so the file keeps its name.
  Ok({"volume", "put", "pg", Local("hello.txt").string()});
  EXPECT_EQ(Ok({"volume", "get", "pg", "hello.txt", "-"}), "hello\n");
  EXPECT_EQ(Ok({"volume", "get", "pg", "/hello.txt", "-"}), "hello\n");
  // REMOTE ending in '/' gets the basename; otherwise it is the path.
  Ok({"volume", "put", "pg", Local("hello.txt").string(), "/docs/"});
  Ok({"volume", "put", "pg", Local("hello.txt").string(), "docs/renamed.txt"});
  EXPECT_THAT(Lines(Ok({"volume", "ls", "pg", "docs"})),
              ElementsAre("docs/hello.txt", "docs/renamed.txt"));
  // Existing file: refused without --force, replaced with it.
  WriteWholeFile(Local("hello.txt"), "hello again\n");
  EXPECT_THAT(Fails(1, {"volume", "put", "pg", Local("hello.txt").string()}),
              AllOf(HasSubstr("exists"), HasSubstr("--force")));
  EXPECT_EQ(Ok({"volume", "get", "pg", "hello.txt", "-"}), "hello\n");
  Ok({"volume", "put", "pg", Local("hello.txt").string(), "-f"});
  EXPECT_EQ(Ok({"volume", "get", "pg", "hello.txt", "-"}), "hello again\n");
  Ok({"volume", "put", "--force", "pg", Local("hello.txt").string(), "docs/hello.txt"});
  // A directory is never replaced by a file, even with --force.
  EXPECT_THAT(Fails(1, {"volume", "put", "pg", Local("hello.txt").string(), "docs", "--force"}),
              HasSubstr("directory"));

  // get to a file, to a directory, refusing an existing file without --force.
  fs::path out = Local("out/got.txt");
  Ok({"volume", "get", "pg", "docs/renamed.txt", out.string()});
  EXPECT_EQ(ReadWholeFile(out), "hello\n");
  EXPECT_THAT(Fails(1, {"volume", "get", "pg", "hello.txt", out.string()}),
              AllOf(HasSubstr("exists"), HasSubstr("--force")));
  EXPECT_EQ(ReadWholeFile(out), "hello\n");
  Ok({"volume", "get", "pg", "hello.txt", out.string(), "--force"});
  EXPECT_EQ(ReadWholeFile(out), "hello again\n");
  Ok({"volume", "get", "pg", "hello.txt", out.parent_path().string()});
  EXPECT_EQ(ReadWholeFile(out.parent_path() / "hello.txt"), "hello again\n");
  // Default DEST is the working directory.
  fs::create_directories(Local("cwd/x").parent_path());
  Ok({"volume", "get", "pg", "docs/hello.txt"}, {.cwd = Local("cwd/x").parent_path()});
  EXPECT_EQ(ReadWholeFile(Local("cwd/hello.txt")), "hello again\n");

  // Missing things.
  EXPECT_THAT(Fails(1, {"volume", "get", "pg", "nope.txt", "-"}), HasSubstr("no such file"));
  EXPECT_THAT(Fails(1, {"volume", "put", "pg", Local("nope.txt").string()}),
              HasSubstr("nope.txt"));
  EXPECT_THAT(Fails(1, {"volume", "put", "missing-vol", Local("hello.txt").string()}),
              HasSubstr("not found"));
  EXPECT_THAT(Fails(1, {"volume", "get", "missing-vol", "a", "-"}), HasSubstr("not found"));
  EXPECT_THAT(Fails(1, {"volume", "ls", "missing-vol"}), HasSubstr("not found"));
  EXPECT_THAT(Fails(1, {"volume", "get", "pg", "docs", "-"}), HasSubstr("not a file"));
}

TEST_F(CliTest, TraversalIsRefusedInEveryArgument) {
  Ok({"volume", "create", "trav"});
  WriteWholeFile(Local("t.txt"), "t\n");
  Ok({"volume", "put", "trav", Local("t.txt").string()});
  for (const char* bad : {"../t.txt", "a/../../t.txt", "/..", "x/.."}) {
    Fails(1, {"volume", "put", "trav", Local("t.txt").string(), bad});
    Fails(1, {"volume", "get", "trav", bad, "-"});
    Fails(1, {"volume", "ls", "trav", bad});
    Fails(1, {"volume", "rm", "trav", bad});
    Fails(1, {"volume", "cp", "trav", bad, "copy.txt"});
    Fails(1, {"volume", "cp", "trav", "t.txt", bad});
  }
  EXPECT_THAT(Lines(Ok({"volume", "ls", "trav"})), ElementsAre("t.txt"));
  EXPECT_THAT(Fails(1, {"volume", "rm", "trav", "/"}), HasSubstr("root"));
}

TEST_F(CliTest, DirectoriesRecursiveRmCpLs) {
  Ok({"volume", "create", "dirs"});
  WriteWholeFile(Local("tree/a.txt"), "A");
  WriteWholeFile(Local("tree/sub/b.txt"), std::string(10000, 'b'));  // chunked, not inline
  WriteWholeFile(Local("tree/sub/deep/c.txt"), "");
  fs::create_directories(Local("tree/empty"));
  fs::create_symlink("a.txt", Local("tree/link"));
  Ok({"volume", "put", "dirs", Local("tree").string()});
  EXPECT_THAT(Lines(Ok({"volume", "ls", "dirs"})), ElementsAre("tree"));
  EXPECT_THAT(Lines(Ok({"volume", "ls", "dirs", "tree"})),
              ElementsAre("tree/a.txt", "tree/empty", "tree/link", "tree/sub"));
  std::string json = Ok({"volume", "ls", "dirs", "tree", "--json"});
  EXPECT_THAT(json, AllOf(HasSubstr("{\"path\":\"tree/a.txt\",\"type\":\"file\",\"size\":1"),
                          HasSubstr("\"type\":\"dir\""), HasSubstr("\"symlink_target\":\"a.txt\"")));
  EXPECT_THAT(Lines(Ok({"volume", "ls", "dirs", "tree/sub/b.txt"})), ElementsAre("tree/sub/b.txt"));
  EXPECT_THAT(Fails(1, {"volume", "ls", "dirs", "nope"}), HasSubstr("no such file"));

  // Round trip of the whole directory: into an existing directory it keeps
  // its name; to a new path it becomes that path (like cp -r).
  Ok({"volume", "get", "dirs", "tree", Local("fresh").string()});
  EXPECT_EQ(ReadWholeFile(Local("fresh/a.txt")), "A");
  fs::create_directories(Local("back"));
  Ok({"volume", "get", "dirs", "tree", Local("back").string()});
  EXPECT_EQ(ReadWholeFile(Local("back/tree/a.txt")), "A");
  EXPECT_EQ(ReadWholeFile(Local("back/tree/sub/b.txt")), std::string(10000, 'b'));
  EXPECT_TRUE(fs::exists(Local("back/tree/sub/deep/c.txt")));
  EXPECT_TRUE(fs::is_directory(Local("back/tree/empty")));
  EXPECT_EQ(fs::read_symlink(Local("back/tree/link")), "a.txt");
  // Again: every file exists now.
  EXPECT_THAT(Fails(1, {"volume", "get", "dirs", "tree", Local("back").string()}),
              HasSubstr("--force"));
  Ok({"volume", "get", "dirs", "tree", Local("back").string(), "--force"});
  // Putting the same tree again: files exist.
  EXPECT_THAT(Fails(1, {"volume", "put", "dirs", Local("tree").string()}), HasSubstr("exist"));
  Ok({"volume", "put", "dirs", Local("tree").string(), "--force"});

  // cp: files, directories only with -r, several sources into a directory.
  Ok({"volume", "cp", "dirs", "tree/a.txt", "a-copy.txt"});
  EXPECT_EQ(Ok({"volume", "get", "dirs", "a-copy.txt", "-"}), "A");
  EXPECT_THAT(Fails(1, {"volume", "cp", "dirs", "tree/sub", "sub-copy"}), HasSubstr("-r"));
  Ok({"volume", "cp", "dirs", "tree/sub", "sub-copy", "-r"});
  EXPECT_EQ(Ok({"volume", "get", "dirs", "sub-copy/b.txt", "-"}), std::string(10000, 'b'));
  Ok({"volume", "cp", "dirs", "tree/a.txt", "a-copy.txt", "tree/sub"});
  EXPECT_THAT(Lines(Ok({"volume", "ls", "dirs", "tree/sub"})),
              UnorderedElementsAre("tree/sub/a-copy.txt", "tree/sub/a.txt", "tree/sub/b.txt",
                                   "tree/sub/deep"));
  EXPECT_THAT(Fails(1, {"volume", "cp", "dirs", "tree/a.txt", "a-copy.txt", "nodir"}),
              HasSubstr("not an existing directory"));
  EXPECT_THAT(Fails(1, {"volume", "cp", "dirs", "missing.txt", "x.txt"}),
              HasSubstr("no such file"));
  Fails(1, {"volume", "cp", "-r", "dirs", "tree", "tree/sub"});  // into itself

  // rm: directories only with -r.
  EXPECT_THAT(Fails(1, {"volume", "rm", "dirs", "tree"}), HasSubstr("directory"));
  Ok({"volume", "rm", "dirs", "a-copy.txt"});
  Ok({"volume", "cp", "--recursive", "dirs", "tree/sub", "sub-copy2"});
  Ok({"volume", "rm", "--recursive", "dirs", "sub-copy2"});
  Ok({"volume", "rm", "dirs", "tree", "-r"});
  EXPECT_THAT(Lines(Ok({"volume", "ls", "dirs"})), ElementsAre("sub-copy"));
  EXPECT_THAT(Fails(1, {"volume", "rm", "dirs", "tree"}), HasSubstr("no such file"));
  // The copy shares data with the removed source and still reads.
  EXPECT_EQ(Ok({"volume", "get", "dirs", "sub-copy/b.txt", "-"}), std::string(10000, 'b'));
}

TEST_F(CliTest, AFileOnTheWayIsNotReplacedWithoutForce) {
  Ok({"volume", "create", "onway"});
  WriteWholeFile(Local("a.txt"), "A\n");
  WriteWholeFile(Local("b.txt"), "B\n");
  WriteWholeFile(Local("dir/c.txt"), "C\n");
  Ok({"volume", "put", "onway", Local("a.txt").string()});
  Ok({"volume", "put", "onway", Local("b.txt").string()});
  // "into" an existing file: cp(1) says it is not a directory.
  EXPECT_THAT(Fails(1, {"volume", "cp", "onway", "a.txt", "b.txt/"}), HasSubstr("not a directory"));
  // Below a file, and a directory onto a file: existing files need --force.
  EXPECT_THAT(Fails(1, {"volume", "put", "onway", Local("a.txt").string(), "b.txt/inner"}),
              AllOf(HasSubstr("not a directory"), HasSubstr("--force")));
  EXPECT_THAT(Fails(1, {"volume", "put", "onway", Local("dir").string(), "b.txt"}),
              HasSubstr("--force"));
  EXPECT_EQ(Ok({"volume", "get", "onway", "b.txt", "-"}), "B\n");
  // A directory onto a directory still merges.
  Ok({"volume", "put", "onway", Local("dir").string()});
  WriteWholeFile(Local("dir/d.txt"), "D\n");
  fs::remove(Local("dir/c.txt"));
  Ok({"volume", "put", "onway", Local("dir").string()});
  EXPECT_THAT(Lines(Ok({"volume", "ls", "onway", "dir"})), ElementsAre("dir/c.txt", "dir/d.txt"));
  // Deeper in the tree too.
  WriteWholeFile(Local("dir2/sub/e.txt"), "E\n");
  Ok({"volume", "put", "onway", Local("a.txt").string(), "dir2/sub"});
  EXPECT_THAT(Fails(1, {"volume", "put", "onway", Local("dir2").string()}),
              AllOf(HasSubstr("dir2/sub"), HasSubstr("--force")));
  EXPECT_EQ(Ok({"volume", "get", "onway", "dir2/sub", "-"}), "A\n");
  // With --force the file on the way is replaced.
  Ok({"volume", "put", "onway", Local("a.txt").string(), "b.txt/inner", "--force"});
  EXPECT_EQ(Ok({"volume", "get", "onway", "b.txt/inner", "-"}), "A\n");
}

TEST_F(CliTest, ErrorsAlwaysSaySomething) {
  Ok({"volume", "create", "say"});
  // Not UTF-8: gRPC cannot carry it and the server answers without a message.
  std::string err = Fails(1, {"volume", "ls", "say", "x\xff"});
  EXPECT_THAT(err, Not(HasSubstr("cairn: error: \n"))) << err;
}

TEST_F(CliTest, FsckOnALiveDataDirectoryIsRefusedAndUsageChecked) {
  // The server holds the data directory's lock.
  RunResult r = Cli({"fsck", "--data", (dir_->path() / "data").string()});
  EXPECT_EQ(r.exit_code, 1) << Describe(r);
  EXPECT_THAT(r.err, HasSubstr("in use"));
  Fails(2, {"fsck", "--data", "x", "extra"});
}

TEST_F(CliTest, UnreachableServerSaysSo) {
  RunResult r = Cli({"volume", "list"}, {.env = {absl::StrCat("CAIRN_SERVER=127.0.0.1:",
                                                                FreePort()),
                                                   "CAIRN_SERVER_WAIT=0.5"}});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("cannot reach the Cairn server"));
  r = Cli({"--server", absl::StrCat("127.0.0.1:", FreePort()), "--server-wait", "0.5", "volume",
           "list"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("cannot reach the Cairn server"));
  Fails(2, {"--server-wait", "soon", "volume", "list"});
}

// A server that accepts connections and never answers (a hung control
// plane): every call has a deadline, so the command ends with an error
// instead of hanging. Before, the CLI set no deadline and waited forever.
TEST_F(CliTest, AHungServerTimesOutInsteadOfHanging) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(::listen(fd, 16), 0);  // the kernel completes handshakes; nobody speaks HTTP/2
  socklen_t len = sizeof(addr);
  ASSERT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  const auto start = std::chrono::steady_clock::now();
  RunResult r = Cli({"--server", absl::StrCat("127.0.0.1:", ntohs(addr.sin_port)),
                     "--server-wait", "2", "volume", "list"},
                    {.timeout = std::chrono::seconds(60)});
  ::close(fd);
  EXPECT_FALSE(r.timed_out);
  EXPECT_EQ(r.exit_code, 1) << Describe(r);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(15));
}

// Tokens may be longer than a page (JWTs, service-account tokens); the CLI
// read only the first 4 KiB of --token-file and was refused.
// ---- Servers of their own --------------------------------------------------

// Tokens may be longer than a page (JWTs, service-account tokens); the CLI
// read only the first 4 KiB of --token-file and was refused.
// ---- Niceties: --version, tables, -l, --quiet, completion ----

// The chart's appVersion: what the image and chart carry.
std::string ChartAppVersion() {
  const std::string chart =
      ReadWholeFile(fs::path(CAIRN_SOURCE_DIR) / "charts" / "cairn" / "Chart.yaml");
  for (absl::string_view line : absl::StrSplit(chart, '\n')) {
    if (absl::ConsumePrefix(&line, "appVersion:")) {
      return std::string(absl::StripAsciiWhitespace(absl::StripSuffix(
          absl::StripPrefix(absl::StripAsciiWhitespace(line), "\""), "\"")));
    }
  }
  return "";
}

TEST_F(CliTest, EveryBinaryPrintsTheChartsVersion) {
  const std::string version = ChartAppVersion();
  ASSERT_FALSE(version.empty());
  EXPECT_THAT(Ok({"--version"}), ::testing::StartsWith(absl::StrCat("cairn ", version, " (git ")));
  for (const char* bin : {"operator/cairn-operator", "csi/cairn-csi", "mounter/cairn-mount"}) {
    RunResult r = RunProcess({BuiltBinary(bin).string(), "--version"});
    EXPECT_EQ(r.exit_code, 0) << bin << Describe(r);
    const std::string name = fs::path(bin).filename().string();
    EXPECT_THAT(r.out, ::testing::StartsWith(absl::StrCat(name, " ", version, " (git "))) << bin;
    // One revision everywhere: the same text after the name.
    EXPECT_EQ(r.out.substr(name.size()), Ok({"--version"}).substr(5)) << bin;
  }
  EXPECT_THAT(Ok({"--help"}), HasSubstr("--version"));
}

TEST_F(CliTest, ListAndLsLongFormsAndJson) {
  Ok({"volume", "create", "long-a"});
  WriteWholeFile(Local("long/data.bin"), std::string(3 << 20, 'x'));
  WriteWholeFile(Local("long/small.txt"), "hi");
  fs::permissions(Local("long/small.txt"), fs::perms(0640));
  Ok({"volume", "put", "long-a", Local("long").string(), "/"});
  // -l: the table even when piped, with human sizes and the last commit.
  std::string table = Ok({"volume", "list", "-l"});
  EXPECT_THAT(Lines(table)[0], AllOf(HasSubstr("NAME"), HasSubstr("ID"), HasSubstr("VERSION"),
                                     HasSubstr("FILES"), HasSubstr("SIZE"),
                                     HasSubstr("LAST COMMIT (UTC)"), HasSubstr("CREATED (UTC)")));
  std::string row;
  for (const std::string& line : Lines(table)) {
    if (absl::StartsWith(line, "long-a ")) row = line;
  }
  EXPECT_THAT(row,
              AllOf(HasSubstr("vo-"), HasSubstr("v2"), HasSubstr("3.0 MiB"), HasSubstr("(#1)")));
  EXPECT_THAT(Ok({"volume", "list", "--json"}), HasSubstr("\"last_commit_ns\":"));
  // ls -l: mode, human size, time, path.
  std::vector<std::string> ls = Lines(Ok({"volume", "ls", "long-a", "long", "-l"}));
  ASSERT_EQ(ls.size(), 3u) << absl::StrJoin(ls, "\n");
  EXPECT_THAT(ls[0], AllOf(HasSubstr("MODE"), HasSubstr("SIZE"), HasSubstr("PATH")));
  EXPECT_THAT(ls[1],
              AllOf(::testing::StartsWith("-rw-"), HasSubstr("3.0 MiB"), HasSubstr("data.bin")));
  EXPECT_THAT(ls[2], AllOf(::testing::StartsWith("-rw-r-----"), HasSubstr("2 B"),
                           HasSubstr("small.txt")));
  // --json keeps exact bytes.
  EXPECT_THAT(Ok({"volume", "ls", "long-a", "long", "--json"}), HasSubstr("\"size\":3145728"));
}

// On a terminal (script(1) gives the CLI one), put and get draw progress
// with a rate; --quiet draws none.
TEST_F(CliTest, ProgressOnATerminalUnlessQuiet) {
  Ok({"volume", "create", "prog"});
  WriteWholeFile(Local("prog.bin"), std::string(6 << 20, 'p'));
  auto on_tty = [&](const std::string& command) {
    std::vector<std::string> env = server_->ClientEnv();
    return RunProcess({"/usr/bin/script", "-qefc", command, "/dev/null"}, {.env = env});
  };
  const std::string cairn = CairnBinary().string();
  const std::string src = Local("prog.bin").string();
  RunResult loud = on_tty(absl::StrCat(cairn, " volume put prog ", src, " /a.bin"));
  EXPECT_EQ(loud.exit_code, 0) << Describe(loud);
  EXPECT_THAT(loud.out, AllOf(HasSubstr("/s"), HasSubstr("6.0 MiB"), HasSubstr("Uploaded 1 file")));
  RunResult quiet = on_tty(absl::StrCat(cairn, " volume put -q prog ", src, " /b.bin"));
  EXPECT_EQ(quiet.exit_code, 0) << Describe(quiet);
  EXPECT_THAT(quiet.out, AllOf(Not(HasSubstr("/s")), Not(HasSubstr("Uploaded"))));
  RunResult get =
      on_tty(absl::StrCat(cairn, " volume get prog /a.bin ", Local("got.bin").string()));
  EXPECT_THAT(get.out, HasSubstr("/s"));
  RunResult get_quiet =
      on_tty(absl::StrCat(cairn, " volume get --quiet prog /b.bin ", Local("got2.bin").string()));
  EXPECT_EQ(get_quiet.exit_code, 0) << Describe(get_quiet);
  EXPECT_THAT(get_quiet.out, Not(HasSubstr("/s")));
  EXPECT_EQ(fs::file_size(Local("got2.bin")), 6u << 20);
}

TEST_F(CliTest, ShellCompletion) {
  const std::string bash = Ok({"completion", "bash"});
  EXPECT_THAT(bash, HasSubstr("complete -o filenames -F _cairn cairn"));
  // The script loads in bash and completes subcommands and their flags.
  const fs::path script = Local("cairn.bash");
  WriteWholeFile(script, bash);
  auto complete = [&](const std::string& words, int cword) {
    RunResult r = RunProcess(
        {"/bin/bash", "-c",
         absl::StrCat("source ", script.string(), "; COMP_WORDS=(", words, "); COMP_CWORD=", cword,
                      "; _cairn; echo \"${COMPREPLY[*]}\"")});
    EXPECT_EQ(r.exit_code, 0) << Describe(r);
    return r.out;
  };
  EXPECT_EQ(complete("cairn vol", 1), "volume\n");
  EXPECT_EQ(complete("cairn volume l", 2), "list ls\n");
  EXPECT_THAT(complete("cairn volume put --f", 3), HasSubstr("--force"));
  EXPECT_THAT(complete("cairn volume list -", 3), AllOf(HasSubstr("--json"), HasSubstr("--long")));
  EXPECT_THAT(complete("cairn volume status /mnt -", 4), HasSubstr("--json"));
  const std::string zsh = Ok({"completion", "zsh"});
  EXPECT_THAT(zsh, AllOf(::testing::StartsWith("#compdef cairn"), HasSubstr("compdef _cairn cairn"),
                         HasSubstr("--allow-existing")));
  EXPECT_THAT(Fails(2, {"completion", "fish"}), HasSubstr("bash or zsh"));
  EXPECT_THAT(Fails(2, {"completion"}), HasSubstr("usage: cairn completion bash|zsh"));
  EXPECT_THAT(Ok({"completion", "--help"}), HasSubstr("source <(cairn completion bash)"));
}

TEST(ServerTest, ALongTokenFileIsReadWhole) {
  cairn::testing::TempDir dir;
  const std::string token(6000, 't');
  auto server = ServerProcess::Start({.data_dir = dir.path() / "data", .token = token});
  ASSERT_TRUE(server.ok()) << server.status();
  fs::path token_file = dir.path() / "token";
  WriteWholeFile(token_file, token + "\n");
  RunResult r = RunCli(**server, {"--token-file", token_file.string(), "volume", "list"});
  EXPECT_EQ(r.exit_code, 0) << Describe(r);
  r = RunCli(**server, {"volume", "list"},
             {.env = {absl::StrCat("CAIRN_TOKEN_FILE=", token_file.string())}});
  EXPECT_EQ(r.exit_code, 0) << Describe(r);
}

TEST(ServerTest, BearerTokenIsCheckedOnEveryCall) {
  cairn::testing::TempDir dir;
  auto server = ServerProcess::Start({.data_dir = dir.path() / "data", .token = "s3cret"});
  ASSERT_TRUE(server.ok()) << server.status();
  ServerProcess& s = **server;
  RunResult r = RunCli(s, {"volume", "list"});
  EXPECT_EQ(r.exit_code, 1) << Describe(r);
  EXPECT_THAT(r.err, HasSubstr("unauthenticated"));
  r = RunCli(s, {"volume", "create", "t"}, {.env = {"CAIRN_TOKEN=wrong"}});
  EXPECT_EQ(r.exit_code, 1) << Describe(r);
  EXPECT_THAT(r.err, HasSubstr("unauthenticated"));
  r = RunCli(s, {"volume", "create", "t"}, {.env = {"CAIRN_TOKEN=s3cret"}});
  EXPECT_EQ(r.exit_code, 0) << Describe(r);
  fs::path token_file = dir.path() / "token";
  WriteWholeFile(token_file, "s3cret\n");
  r = RunCli(s, {"volume", "list"}, {.env = {absl::StrCat("CAIRN_TOKEN_FILE=", token_file.string())}});
  EXPECT_EQ(r.exit_code, 0) << Describe(r);
  EXPECT_EQ(r.out, "t\n");
  // The data path is protected too.
  WriteWholeFile(dir.path() / "x", "x");
  r = RunCli(s, {"volume", "put", "t", (dir.path() / "x").string()});
  EXPECT_THAT(r.err, HasSubstr("unauthenticated"));
  r = RunCli(s, {"--token-file", token_file.string(), "volume", "put", "t",
                 (dir.path() / "x").string()});
  EXPECT_EQ(r.exit_code, 0) << Describe(r);
  EXPECT_EQ(s.Stop(SIGTERM), 0) << s.Log();
}

TEST(ServerTest, OperatorBinaryServesTheSameApi) {
  const std::string op = BuiltBinary("operator/cairn-operator").string();
  RunResult help = RunProcess({op, "--help"});
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_THAT(help.out, AllOf(HasSubstr("--data DIR"), HasSubstr("--gc-interval")));
  EXPECT_EQ(RunProcess({op}).exit_code, 2);
  cairn::testing::TempDir dir;
  const int port = FreePort();
  auto child = Child::Spawn({op, "--data", (dir.path() / "data").string(), "--listen",
                             absl::StrCat("127.0.0.1:", port), "--metrics-listen", ""},
                            {}, dir.path() / "op.log");
  ASSERT_TRUE(child.ok());
  const std::vector<std::string> env = {absl::StrCat("CAIRN_SERVER=127.0.0.1:", port)};
  RunResult r;
  for (int i = 0; i < 100; ++i) {
    r = RunProcess({CairnBinary().string(), "volume", "create", "op"}, {.env = env});
    if (r.exit_code == 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_EQ(r.exit_code, 0) << Describe(r);
  EXPECT_EQ(RunProcess({CairnBinary().string(), "volume", "list"}, {.env = env}).out, "op\n");
  (*child)->Signal(SIGTERM);
  EXPECT_EQ((*child)->Wait(), 0) << ReadWholeFile(dir.path() / "op.log");
}

TEST(ServerTest, ServesTlsWithCertAndKey) {
  cairn::testing::TempDir dir;
  const std::string cert = (dir.path() / "cert.pem").string();
  const std::string key = (dir.path() / "key.pem").string();
  RunResult gen = RunProcess({"/usr/bin/openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                              "-keyout", key, "-out", cert, "-days", "1", "-subj", "/CN=localhost",
                              "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"});
  ASSERT_EQ(gen.exit_code, 0) << Describe(gen);
  auto server = ServerProcess::Start({.data_dir = dir.path() / "data",
                                      .extra_args = {"--tls-cert", cert, "--tls-key", key}});
  ASSERT_TRUE(server.ok()) << server.status();
  RunResult ok = RunCli(**server, {"volume", "create", "tls"},
                        {.env = {absl::StrCat("CAIRN_CA_FILE=", cert)}});
  EXPECT_EQ(ok.exit_code, 0) << Describe(ok);
  ok = RunCli(**server, {"--ca-file", cert, "volume", "list"});
  EXPECT_EQ(ok.out, "tls\n") << Describe(ok);
  // A plaintext client cannot talk to a TLS server.
  RunResult plain = RunCli(**server, {"volume", "list"});
  EXPECT_EQ(plain.exit_code, 1) << Describe(plain);
  RunResult half = RunProcess({CairnBinary().string(), "server", "--data",
                               (dir.path() / "d2").string(), "--tls-cert", cert,
                               "--metrics-listen", ""});
  EXPECT_EQ(half.exit_code, 1) << Describe(half);
  EXPECT_THAT(half.err, HasSubstr("--tls-key"));
}

TEST(ServerTest, RefusesNonLoopbackWithoutTokenAndStopsOnSigterm) {
  cairn::testing::TempDir dir;
  RunResult r = RunProcess({CairnBinary().string(), "server", "--data", (dir.path() / "d").string(),
                     "--listen", absl::StrCat("0.0.0.0:", FreePort()), "--metrics-listen", ""},
                    {.timeout = std::chrono::seconds(30)});
  EXPECT_EQ(r.exit_code, 1) << Describe(r);
  EXPECT_THAT(r.err, AllOf(HasSubstr("refusing to listen"), HasSubstr("--token-file")));
  r = RunProcess({CairnBinary().string(), "server", "--data", (dir.path() / "d").string(), "--bogus"});
  EXPECT_EQ(r.exit_code, 2) << Describe(r);

  auto server = ServerProcess::Start({.data_dir = dir.path() / "data"});
  ASSERT_TRUE(server.ok()) << server.status();
  // A second server on the same data directory is refused (the lock).
  r = RunProcess({CairnBinary().string(), "server", "--data", (dir.path() / "data").string(),
           "--listen", absl::StrCat("127.0.0.1:", FreePort()), "--metrics-listen", ""},
          {.timeout = std::chrono::seconds(30)});
  EXPECT_EQ(r.exit_code, 1) << Describe(r);
  EXPECT_THAT(r.err, HasSubstr("in use"));
  EXPECT_EQ((*server)->Stop(SIGTERM), 0) << (*server)->Log();
  r = RunProcess({CairnBinary().string(), "fsck", "--data", (dir.path() / "data").string()});
  EXPECT_EQ(r.exit_code, 0) << Describe(r);
}

}  // namespace
}  // namespace cairn::e2e
