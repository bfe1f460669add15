// The file browser (/ui) of a real `cairn server`, through real clients:
// curl for the HTTP contract (login, ranges, `curl -C -` resuming a killed
// download, archives, bad paths), and headless Chromium driven by
// playwright-core for the pages (e2e/web/browser_test.cjs).
//
// curl, node, chromium and playwright-core (scripts/node-tools.sh) are
// required: a test whose tool is missing fails when CI=true and is skipped
// otherwise.
#include <sys/stat.h>

#include <filesystem>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "core/testing/temp_dir.h"
#include "e2e/harness.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

#ifndef CAIRN_SOURCE_DIR
#error "CAIRN_SOURCE_DIR must name the source tree (for e2e/web and scripts/node-tools.sh)"
#endif

namespace cairn::e2e {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

constexpr char kToken[] = "web-test-token";

bool InCi() {
  const char* ci = std::getenv("CI");
  return ci != nullptr && std::string_view(ci) == "true";
}

#define REQUIRE_TOOL(path)                                                        \
  do {                                                                            \
    if (!fs::exists(path)) {                                                      \
      if (InCi()) FAIL() << path << " is missing (CI=true; scripts/setup.sh)";    \
      GTEST_SKIP() << path << " is missing (scripts/setup.sh installs it)";       \
    }                                                                             \
  } while (0)

// One server with a token and one volume for the suite:
//   /models/big.bin (24 MiB + 1 byte, random), /models/notes.txt,
//   /models/nested/deep.txt, /photo.png.
class WebTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new cairn::testing::TempDir();
    auto server = ServerProcess::Start({.data_dir = dir_->path() / "data", .token = kToken});
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = server->release();
    const fs::path src = dir_->path() / "src";
    fs::create_directories(src / "models" / "nested");
    ASSERT_TRUE(WriteRandomFile(src / "models" / "big.bin", (24 << 20) + 1, 7).ok());
    WriteWholeFile(src / "models" / "notes.txt", "Weights of run 42.\n<script>alert(1)</script>\n");
    WriteWholeFile(src / "models" / "nested" / "deep.txt", "deep\n");
    ASSERT_TRUE(Cli({"volume", "create", "web"}).exit_code == 0);
    RunResult put = Cli({"volume", "put", "web", (src / "models").string(), "/models"});
    ASSERT_EQ(put.exit_code, 0) << Describe(put);
  }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
    delete dir_;
  }

  static RunResult Cli(const std::vector<std::string>& args) {
    return RunCli(*server_, args, {.env = {absl::StrCat("CAIRN_TOKEN=", kToken)}});
  }
  static std::string Url(const std::string& path) {
    return absl::StrCat("http://127.0.0.1:", server_->metrics_port(), path);
  }
  // curl with the given arguments; -s, and -S for errors.
  RunResult Curl(std::vector<std::string> args, RunOptions options = {}) {
    args.insert(args.begin(), {"/usr/bin/curl", "-sS"});
    return RunProcess(args, options);
  }
  // Logs in through the form and returns the cookie jar's path.
  fs::path Login() {
    const fs::path jar = dir_->path() / "cookies.txt";
    RunResult r = Curl({"-c", jar.string(), "-o", "/dev/null", "-w", "%{http_code}",
                        "--data-urlencode", absl::StrCat("token=", kToken), Url("/ui/login")});
    EXPECT_EQ(r.out, "303") << Describe(r);
    return jar;
  }

  static cairn::testing::TempDir* dir_;
  static ServerProcess* server_;
};
cairn::testing::TempDir* WebTest::dir_ = nullptr;
ServerProcess* WebTest::server_ = nullptr;

TEST_F(WebTest, LoginGuardsEveryPageAndTheCookieIsHttpOnlyAndStrict) {
  REQUIRE_TOOL("/usr/bin/curl");
  // No cookie: sent to the login page.
  RunResult anonymous = Curl({"-o", "/dev/null", "-w", "%{http_code} %{redirect_url}",
                              Url("/ui/raw/default/web/models/notes.txt")});
  EXPECT_EQ(anonymous.out, absl::StrCat("303 ", Url("/ui/login"))) << Describe(anonymous);
  // A wrong token: 401, and no cookie.
  const fs::path bad_jar = dir_->path() / "bad.txt";
  RunResult wrong = Curl({"-c", bad_jar.string(), "-o", "/dev/null", "-w", "%{http_code}",
                          "--data-urlencode", "token=guess", Url("/ui/login")});
  EXPECT_EQ(wrong.out, "401") << Describe(wrong);
  EXPECT_THAT(ReadWholeFile(bad_jar), ::testing::Not(HasSubstr("cairn_ui")));
  // The right one: an HttpOnly cookie (curl marks those "#HttpOnly_")
  // that does not contain the token, and the pages open.
  const fs::path jar = Login();
  const std::string cookies = ReadWholeFile(jar);
  EXPECT_THAT(cookies, HasSubstr("#HttpOnly_127.0.0.1"));
  EXPECT_THAT(cookies, HasSubstr("cairn_ui"));
  EXPECT_THAT(cookies, ::testing::Not(HasSubstr(kToken)));
  RunResult headers = Curl({"-D", "-", "-o", "/dev/null", "--data-urlencode",
                            absl::StrCat("token=", kToken), Url("/ui/login")});
  EXPECT_THAT(headers.out, HasSubstr("SameSite=Strict"));
  RunResult page = Curl({"-b", jar.string(), Url("/ui/n/default/web/models/")});
  EXPECT_EQ(page.exit_code, 0);
  EXPECT_THAT(page.out, HasSubstr("big.bin"));
  EXPECT_THAT(page.out, HasSubstr("24.0 MiB"));
  // The text preview escapes what the file holds.
  RunResult preview = Curl({"-b", jar.string(), Url("/ui/n/default/web/models/notes.txt")});
  EXPECT_THAT(preview.out, HasSubstr("&lt;script&gt;alert(1)&lt;/script&gt;"));
  EXPECT_THAT(preview.out, ::testing::Not(HasSubstr("<script>alert")));
}

TEST_F(WebTest, CurlResumesAKilledDownloadToTheSameBytes) {
  REQUIRE_TOOL("/usr/bin/curl");
  const fs::path jar = Login();
  const fs::path out = dir_->path() / "resumed.bin";
  // A slow download, killed once part of it has arrived.
  auto slow = Child::Spawn({"/usr/bin/curl", "-sS", "-b", jar.string(), "--limit-rate", "2M",
                            "-o", out.string(), Url("/ui/raw/default/web/models/big.bin")},
                           {}, dir_->path() / "curl-slow.log");
  ASSERT_TRUE(slow.ok()) << slow.status();
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  std::error_code ec;
  while (std::chrono::steady_clock::now() < deadline &&
         (!fs::exists(out) || fs::file_size(out, ec) < (3u << 20))) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  (*slow)->Signal(SIGKILL);
  (*slow)->Wait();
  const uint64_t partial = fs::file_size(out);
  ASSERT_GE(partial, 3u << 20);
  ASSERT_LT(partial, (24u << 20) + 1) << "the download finished before it was killed";
  // `curl -C -` asks for the rest and appends it.
  RunResult resume = Curl({"-b", jar.string(), "-C", "-", "-o", out.string(), "-w",
                           "%{http_code}", Url("/ui/raw/default/web/models/big.bin")});
  EXPECT_EQ(resume.exit_code, 0) << Describe(resume);
  EXPECT_EQ(resume.out, "206");
  auto got = Sha256File(out);
  auto want = Sha256File(dir_->path() / "src" / "models" / "big.bin");
  ASSERT_TRUE(got.ok() && want.ok());
  EXPECT_EQ(*got, *want);

  // The headers a browser relies on.
  RunResult head = Curl({"-b", jar.string(), "-D", "-", "-o", "/dev/null",
                         Url("/ui/raw/default/web/models/big.bin")});
  EXPECT_THAT(head.out, HasSubstr("Content-Disposition: attachment; filename=\"big.bin\""));
  EXPECT_THAT(head.out, HasSubstr("Content-Length: 25165825"));
  EXPECT_THAT(head.out, HasSubstr("Accept-Ranges: bytes"));
  EXPECT_THAT(head.out, HasSubstr("ETag: \""));
  EXPECT_THAT(head.out, HasSubstr("Last-Modified: "));
}

TEST_F(WebTest, DirectoryDownloadsAsATarThatExtractsToTheSameFiles) {
  REQUIRE_TOOL("/usr/bin/curl");
  REQUIRE_TOOL("/usr/bin/tar");
  const fs::path jar = Login();
  const fs::path archive = dir_->path() / "models.tar";
  RunResult get = Curl({"-b", jar.string(), "-D", (dir_->path() / "tar-headers.txt").string(), "-o",
                        archive.string(), Url("/ui/tar/default/web/models")});
  ASSERT_EQ(get.exit_code, 0) << Describe(get);
  EXPECT_THAT(ReadWholeFile(dir_->path() / "tar-headers.txt"),
              HasSubstr("filename=\"models.tar\""));
  const fs::path into = dir_->path() / "untar";
  fs::create_directories(into);
  RunResult untar = RunProcess({"/usr/bin/tar", "-xf", archive.string(), "-C", into.string()});
  ASSERT_EQ(untar.exit_code, 0) << Describe(untar);
  for (const char* f : {"big.bin", "notes.txt", "nested/deep.txt"}) {
    auto got = Sha256File(into / "models" / f);
    auto want = Sha256File(dir_->path() / "src" / "models" / f);
    ASSERT_TRUE(got.ok()) << f << ": " << got.status();
    EXPECT_EQ(*got, *want) << f;
  }
}

TEST_F(WebTest, TraversalAndUnknownNamesAreClearErrors) {
  REQUIRE_TOOL("/usr/bin/curl");
  const fs::path jar = Login();
  struct Case {
    std::string path;
    std::string code;
    std::string message;
  } cases[] = {
      {"/ui/raw/default/web/models/../../../etc/passwd", "400",
       "contains a &quot;..&quot; component"},
      {"/ui/raw/default/web/%2e%2e/%2e%2e/etc/passwd", "400", ".."},
      {"/ui/raw/default/../etc/passwd", "400", "volume name"},
      {"/ui/raw/default/missing/x", "404", "missing"},
      {"/ui/raw/default/web/models/nope.bin", "404", "nope.bin"},
  };
  for (const Case& c : cases) {
    RunResult r = Curl({"--path-as-is", "-b", jar.string(), "-w", "\n%{http_code}",
                        Url(c.path)});
    const std::string code = r.out.substr(r.out.rfind('\n') + 1);
    EXPECT_EQ(code, c.code) << c.path << "\n" << r.out;
    EXPECT_THAT(r.out, HasSubstr(c.message)) << c.path;
  }
}

// The pages in a real browser: log in, open the volume, go into a
// directory, download a 100 MB file and compare its digest, and keep a
// screenshot (build/e2e/web-artifacts/).
TEST(WebBrowserTest, BrowseAndDownloadInChromium) {
  REQUIRE_TOOL("/usr/bin/chromium");
  REQUIRE_TOOL("/usr/bin/node");
  RunResult modules = RunProcess(
      {"/bin/bash", std::string(CAIRN_SOURCE_DIR) + "/scripts/node-tools.sh", "playwright-core"});
  if (modules.exit_code != 0) {
    if (InCi()) FAIL() << "playwright-core: " << Describe(modules);
    GTEST_SKIP() << "playwright-core not installable: " << modules.err;
  }
  const std::string node_path(absl::StripTrailingAsciiWhitespace(modules.out));

  cairn::testing::TempDir dir;
  auto server = ServerProcess::Start({.data_dir = dir.path() / "data", .token = kToken});
  ASSERT_TRUE(server.ok()) << server.status();
  const fs::path src = dir.path() / "src";
  fs::create_directories(src / "datasets" / "images");
  const fs::path big = src / "datasets" / "train.bin";
  ASSERT_TRUE(WriteRandomFile(big, 100'000'000, 11).ok());
  WriteWholeFile(src / "datasets" / "README.txt", "Training data, version 3.\n");
  RunOptions env{.env = {absl::StrCat("CAIRN_TOKEN=", kToken)}};
  ASSERT_EQ(RunCli(**server, {"volume", "create", "browser-demo"}, env).exit_code, 0);
  RunResult put =
      RunCli(**server, {"volume", "put", "browser-demo", (src / "datasets").string(), "/"}, env);
  ASSERT_EQ(put.exit_code, 0) << Describe(put);
  auto digest = Sha256File(big);
  ASSERT_TRUE(digest.ok());

  const char* build_dir = std::getenv("CAIRN_BUILD_DIR");
  ASSERT_NE(build_dir, nullptr) << "CAIRN_BUILD_DIR is not set (run through ctest)";
  const fs::path artifacts = fs::path(build_dir) / "e2e" / "web-artifacts";
  fs::create_directories(artifacts);
  RunResult run = RunProcess(
      {"/usr/bin/node", std::string(CAIRN_SOURCE_DIR) + "/e2e/web/browser_test.cjs"},
      {.env = {absl::StrCat("NODE_PATH=", node_path),
               absl::StrCat("CAIRN_UI_URL=http://127.0.0.1:", (*server)->metrics_port(), "/ui/"),
               absl::StrCat("CAIRN_UI_TOKEN=", kToken), "CAIRN_UI_VOLUME=browser-demo",
               "CAIRN_UI_DIR=datasets", "CAIRN_UI_FILE=train.bin",
               absl::StrCat("CAIRN_UI_SHA256=", *digest),
               absl::StrCat("CAIRN_UI_DOWNLOADS=", (dir.path() / "downloads").string()),
               absl::StrCat("CAIRN_UI_ARTIFACTS=", artifacts.string())},
       .timeout = std::chrono::seconds(600)});
  EXPECT_EQ(run.exit_code, 0) << Describe(run);
  EXPECT_THAT(run.out, HasSubstr("digest ok"));
  EXPECT_TRUE(fs::exists(artifacts / "directory.png"));
  std::cout << run.out;
}

}  // namespace
}  // namespace cairn::e2e
