// The file browser's parts (ranges, sessions, escaping, tar framing) and
// its routes on a real in-process control plane over HTTP.
#include "operator/web_ui.h"

#include <httplib.h>

#include <cstdio>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "core/files.h"
#include "core/status.h"
#include "core/testing/temp_dir.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "operator/server.h"
#include "operator/tar.h"

namespace cairn::operator_ {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

TEST(ParseByteRangeTest, FormsOfOneRange) {
  auto r = ParseByteRange("bytes=0-9", 100);
  ASSERT_TRUE(r.ok() && r->has_value());
  EXPECT_EQ((*r)->offset, 0u);
  EXPECT_EQ((*r)->length, 10u);
  r = ParseByteRange("bytes=90-", 100);  // what `curl -C -` sends
  ASSERT_TRUE(r.ok() && r->has_value());
  EXPECT_EQ((*r)->offset, 90u);
  EXPECT_EQ((*r)->length, 10u);
  r = ParseByteRange("bytes=-30", 100);  // the last 30 bytes
  ASSERT_TRUE(r.ok() && r->has_value());
  EXPECT_EQ((*r)->offset, 70u);
  EXPECT_EQ((*r)->length, 30u);
  r = ParseByteRange("bytes=50-1000", 100);  // clipped to the end
  ASSERT_TRUE(r.ok() && r->has_value());
  EXPECT_EQ((*r)->length, 50u);
  r = ParseByteRange("bytes=-500", 100);  // a suffix longer than the file: all of it
  ASSERT_TRUE(r.ok() && r->has_value());
  EXPECT_EQ((*r)->offset, 0u);
  EXPECT_EQ((*r)->length, 100u);
}

TEST(ParseByteRangeTest, WholeBodyForNoHeaderOtherUnitsAndSeveralRanges) {
  for (const char* h : {"", "items=0-1", "bytes=0-1,5-6"}) {
    auto r = ParseByteRange(h, 100);
    ASSERT_TRUE(r.ok()) << h;
    EXPECT_FALSE(r->has_value()) << h;
  }
}

TEST(ParseByteRangeTest, UnsatisfiableAndMalformed) {
  // A finished download resumed: `curl -C -` asks from the end.
  EXPECT_TRUE(absl::IsOutOfRange(ParseByteRange("bytes=100-", 100).status()));
  EXPECT_TRUE(absl::IsOutOfRange(ParseByteRange("bytes=0-", 0).status()));
  EXPECT_TRUE(absl::IsOutOfRange(ParseByteRange("bytes=-0", 100).status()));
  for (const char* h : {"bytes=abc", "bytes=5-1", "bytes=x-3", "bytes=-y"}) {
    EXPECT_TRUE(absl::IsInvalidArgument(ParseByteRange(h, 100).status())) << h;
  }
}

TEST(SessionCookieTest, SignedByTheTokenAndExpiring) {
  const std::string v = SessionCookieValue("secret", 2000);
  EXPECT_TRUE(ValidSessionCookie("secret", v, 1999));
  EXPECT_FALSE(ValidSessionCookie("secret", v, 2000));          // expired
  EXPECT_FALSE(ValidSessionCookie("other-token", v, 1999));     // another token
  EXPECT_FALSE(ValidSessionCookie("secret", "3000" + v.substr(4), 1999));  // expiry changed
  EXPECT_FALSE(ValidSessionCookie("secret", "", 0));
  EXPECT_FALSE(ValidSessionCookie("secret", "2000.", 0));
  EXPECT_EQ(v.find("secret"), std::string::npos);  // the token is not in it
}

TEST(UrlEscapeTest, KeepsUnreservedAndOptionallySlashes) {
  EXPECT_EQ(UrlEscape("a b/c?d#e%ü", true), "a%20b/c%3Fd%23e%25%C3%BC");
  EXPECT_EQ(UrlEscape("a/b", false), "a%2Fb");
  EXPECT_EQ(UrlEscape("Az09-._~", false), "Az09-._~");
}

TEST(ContentTypeTest, ByExtension) {
  EXPECT_EQ(ContentTypeFor("photo.JPG"), "image/jpeg");
  EXPECT_EQ(ContentTypeFor("notes.txt"), "text/plain; charset=utf-8");
  EXPECT_EQ(ContentTypeFor("weights.safetensors"), "application/octet-stream");
  EXPECT_EQ(ContentTypeFor("Makefile"), "application/octet-stream");
}

// A ustar header's checksum: the sum of its bytes with the field as spaces.
unsigned ChecksumOf(const std::string& block) {
  unsigned sum = 0;
  for (size_t i = 0; i < 512; ++i) {
    sum += (i >= 148 && i < 156) ? ' ' : static_cast<unsigned char>(block[i]);
  }
  return sum;
}

TEST(TarTest, UstarHeaderFields) {
  const std::string h = TarHeader({"dir/file.txt", TarType::kFile, 0640, 1234, 1700000000, ""});
  ASSERT_EQ(h.size(), 512u);
  EXPECT_EQ(h.substr(0, 12), "dir/file.txt");
  EXPECT_EQ(h.substr(100, 7), "0000640");
  EXPECT_EQ(h.substr(124, 11), "00000002322");  // 1234 octal
  EXPECT_EQ(h[156], '0');
  EXPECT_EQ(h.substr(257, 6), std::string("ustar\0", 6));
  unsigned stored = 0;
  ASSERT_EQ(std::sscanf(h.substr(148, 7).c_str(), "%o", &stored), 1);
  EXPECT_EQ(stored, ChecksumOf(h));
  EXPECT_EQ(TarPadding(1234).size(), 512 - 1234 % 512);
  EXPECT_EQ(TarPadding(1024).size(), 0u);
  EXPECT_EQ(TarEnd(), std::string(1024, '\0'));
}

TEST(TarTest, LongAndNonAsciiNamesAndHugeSizesGetAPaxHeader) {
  const std::string long_name = std::string(120, 'a') + "/" + std::string(120, 'b');
  const std::string h = TarHeader({long_name, TarType::kFile, 0644, uint64_t{10} << 30, 0, ""});
  ASSERT_EQ(h.size() % 512, 0u);
  ASSERT_GT(h.size(), 512u);
  EXPECT_EQ(h[156], 'x');
  EXPECT_THAT(h, HasSubstr(absl::StrCat(" path=", long_name, "\n")));
  EXPECT_THAT(h, HasSubstr(absl::StrCat(" size=", uint64_t{10} << 30, "\n")));
  // A record's length counts itself.
  const size_t at = h.find(" path=");
  const size_t start = h.rfind('\n', at) == std::string::npos ? 512 : h.rfind('\n', at) + 1;
  size_t len = 0;
  ASSERT_TRUE(absl::SimpleAtoi(h.substr(start, at - start), &len));
  EXPECT_EQ(h[start + len - 1], '\n');
  // Fits ustar's prefix + name: no pax header.
  EXPECT_EQ(TarHeader({std::string(120, 'a') + "/short", TarType::kFile, 0644, 1, 0, ""}).size(),
            512u);
  EXPECT_GT(TarHeader({"caf\xc3\xa9", TarType::kFile, 0644, 1, 0, ""}).size(), 512u);
}

// ---- The routes, over HTTP against an in-process control plane ----

class WebUiServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ServerOptions o;
    o.data_dir = dir_.path() / "data";
    o.listen = "127.0.0.1:0";
    o.metrics_listen = "127.0.0.1:0";
    o.gc_interval = std::chrono::seconds(0);
    o.token = "s3cret-token";
    auto server = Server::Start(o);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    Engine& engine = server_->engine();
    auto volume = engine.CreateVolume("default", "data", 2);
    ASSERT_TRUE(volume.ok()) << volume.status();
    volume_ = *volume;
    content_.resize(3 * kChunkSize + 12345);
    for (size_t i = 0; i < content_.size(); ++i) content_[i] = static_cast<char>((i * 131) >> 7);
    ASSERT_TRUE(Put("models/big.bin", content_).ok());
    ASSERT_TRUE(Put("models/notes.txt", "hello <b>world</b>\n").ok());
  }

  absl::StatusOr<SnapshotRecord> Put(const std::string& path, const std::string& content) {
    Engine& engine = server_->engine();
    CAIRN_ASSIGN_OR_RETURN(std::unique_ptr<ObjectStore> objects, engine.OpenObjects(volume_));
    CAIRN_ASSIGN_OR_RETURN(objects::Entry entry,
                           StoreBytes(*objects, content, 0644, int64_t{1700000000} * 1000000000));
    objects::ChangeSet set;
    objects::Change* change = set.add_changes();
    change->set_kind(objects::Change::PUT);
    change->set_path(path);
    *change->mutable_entry() = entry;
    return engine.Commit(volume_.id, set);
  }

  httplib::Client Client() {
    httplib::Client client("127.0.0.1", server_->metrics_port());
    client.set_connection_timeout(10, 0);
    client.set_read_timeout(60, 0);
    return client;
  }
  httplib::Headers Auth(httplib::Headers extra = {}) {
    extra.emplace("Authorization", "Bearer s3cret-token");
    return extra;
  }

  testing::TempDir dir_;
  std::unique_ptr<Server> server_;
  VolumeRecord volume_;
  std::string content_;
};

TEST_F(WebUiServerTest, WithoutASessionEveryPageSendsToTheLoginPage) {
  httplib::Client client = Client();
  for (const char* path : {"/ui/", "/ui/n/default/", "/ui/n/default/data/models/",
                           "/ui/raw/default/data/models/notes.txt",
                           "/ui/tar/default/data/models"}) {
    auto res = client.Get(path);
    ASSERT_TRUE(res) << path;
    EXPECT_EQ(res->status, 303) << path;
    EXPECT_EQ(res->get_header_value("Location"), "/ui/login") << path;
  }
  auto login = client.Get("/ui/login");
  ASSERT_TRUE(login);
  EXPECT_EQ(login->status, 200);
  EXPECT_THAT(login->body, HasSubstr("type=\"password\""));
}

TEST_F(WebUiServerTest, LoginChecksTheTokenAndSetsAStrictHttpOnlyCookie) {
  httplib::Client client = Client();
  auto wrong = client.Post("/ui/login", "token=nope", "application/x-www-form-urlencoded");
  ASSERT_TRUE(wrong);
  EXPECT_EQ(wrong->status, 401);
  EXPECT_FALSE(wrong->has_header("Set-Cookie"));
  EXPECT_THAT(wrong->body, HasSubstr("not valid"));

  auto right = client.Post("/ui/login", "token=s3cret-token", "application/x-www-form-urlencoded");
  ASSERT_TRUE(right);
  EXPECT_EQ(right->status, 303);
  const std::string cookie = right->get_header_value("Set-Cookie");
  EXPECT_THAT(cookie, StartsWith("cairn_ui="));
  EXPECT_THAT(cookie, HasSubstr("HttpOnly"));
  EXPECT_THAT(cookie, HasSubstr("SameSite=Strict"));
  EXPECT_EQ(cookie.find("s3cret-token"), std::string::npos);

  const std::string pair = cookie.substr(0, cookie.find(';'));
  auto page = client.Get("/ui/n/default/", {{"Cookie", pair}});
  ASSERT_TRUE(page);
  EXPECT_EQ(page->status, 200);
  EXPECT_THAT(page->body, HasSubstr(volume_.id));
  // A forged or altered cookie is no session.
  auto forged = client.Get("/ui/n/default/", {{"Cookie", pair + "0"}});
  ASSERT_TRUE(forged);
  EXPECT_EQ(forged->status, 303);
}

TEST_F(WebUiServerTest, DirectoryPageListsEntriesWithSizesAndPinnedLinks) {
  httplib::Client client = Client();
  auto res = client.Get("/ui/n/default/data/models/", Auth());
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200) << res->body;
  EXPECT_THAT(res->body, HasSubstr("big.bin"));
  EXPECT_THAT(res->body, HasSubstr("12.0 MiB"));
  EXPECT_THAT(res->body, HasSubstr("/ui/raw/default/data/models/big.bin?at=2"));
  EXPECT_THAT(res->body, HasSubstr("/ui/tar/default/data/models?at=2"));
  // The preview escapes what it shows.
  auto preview = client.Get("/ui/n/default/data/models/notes.txt", Auth());
  ASSERT_TRUE(preview);
  EXPECT_THAT(preview->body, HasSubstr("hello &lt;b&gt;world&lt;/b&gt;"));
}

TEST_F(WebUiServerTest, RangesResumeAndValidators) {
  httplib::Client client = Client();
  auto whole = client.Get("/ui/raw/default/data/models/big.bin", Auth());
  ASSERT_TRUE(whole);
  ASSERT_EQ(whole->status, 200);
  EXPECT_TRUE(whole->body == content_);
  EXPECT_EQ(whole->get_header_value("Accept-Ranges"), "bytes");
  EXPECT_THAT(whole->get_header_value("Content-Disposition"),
              HasSubstr("attachment; filename=\"big.bin\""));
  const std::string etag = whole->get_header_value("ETag");
  ASSERT_FALSE(etag.empty());

  // A range across a chunk boundary.
  const uint64_t from = kChunkSize - 100, to = kChunkSize + 99;
  auto part = client.Get("/ui/raw/default/data/models/big.bin",
                         Auth({{"Range", absl::StrCat("bytes=", from, "-", to)}}));
  ASSERT_TRUE(part);
  EXPECT_EQ(part->status, 206);
  EXPECT_EQ(part->get_header_value("Content-Range"),
            absl::StrCat("bytes ", from, "-", to, "/", content_.size()));
  EXPECT_TRUE(part->body == content_.substr(from, 200));

  // Resume from the middle, with the validator of the version we have.
  auto rest = client.Get("/ui/raw/default/data/models/big.bin",
                         Auth({{"Range", "bytes=5000000-"}, {"If-Range", etag}}));
  ASSERT_TRUE(rest);
  EXPECT_EQ(rest->status, 206);
  EXPECT_TRUE(rest->body == content_.substr(5000000));

  // The file changed: a range of the old version is refused, the new
  // version comes whole.
  ASSERT_TRUE(Put("models/big.bin", "replaced").ok());
  auto changed = client.Get("/ui/raw/default/data/models/big.bin",
                            Auth({{"Range", "bytes=2-"}, {"If-Range", etag}}));
  ASSERT_TRUE(changed);
  EXPECT_EQ(changed->status, 200);
  EXPECT_EQ(changed->body, "replaced");
  // A URL pinned to the old snapshot still serves the old bytes.
  auto pinned = client.Get("/ui/raw/default/data/models/big.bin?at=1",
                           Auth({{"Range", "bytes=5000000-"}, {"If-Range", etag}}));
  ASSERT_TRUE(pinned);
  EXPECT_EQ(pinned->status, 206);
  EXPECT_TRUE(pinned->body == content_.substr(5000000));

  // Past the end: 416 with the size.
  auto past = client.Get("/ui/raw/default/data/models/big.bin",
                         Auth({{"Range", "bytes=8-"}}));
  ASSERT_TRUE(past);
  EXPECT_EQ(past->status, 416);
  EXPECT_EQ(past->get_header_value("Content-Range"), "bytes */8");
}

TEST_F(WebUiServerTest, BadPathsAndNamesAreClearErrors) {
  httplib::Client client = Client();
  struct Case {
    const char* path;
    int status;
    const char* message;
  } cases[] = {
      {"/ui/raw/default/data/models/../../etc/passwd", 400, ".."},
      {"/ui/raw/default/data/%2E%2E/x", 400, ".."},
      {"/ui/n/default/..", 400, "volume name"},
      {"/ui/raw/default/nope/x", 404, "nope"},
      {"/ui/raw/default/data/models/missing.bin", 404, "missing.bin"},
      {"/ui/raw/default/data/models", 400, "is a directory"},
      {"/ui/tar/default/data/models/notes.txt", 400, "not a directory"},
      {"/ui/raw/default/data/models/big.bin?at=99", 404, "no snapshot 99"},
      {"/ui/raw/default/data/models/big.bin?at=x", 400, "not a snapshot number"},
  };
  for (const Case& c : cases) {
    auto res = client.Get(c.path, Auth());
    ASSERT_TRUE(res) << c.path;
    EXPECT_EQ(res->status, c.status) << c.path << ": " << res->body;
    EXPECT_THAT(res->body, HasSubstr(c.message)) << c.path;
  }
}

TEST_F(WebUiServerTest, DirectoryArchiveHoldsEveryFile) {
  httplib::Client client = Client();
  auto res = client.Get("/ui/tar/default/data/models?at=2", Auth());
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200);
  EXPECT_EQ(res->get_header_value("Content-Type"), "application/x-tar");
  const std::string& tar = res->body;
  ASSERT_EQ(tar.size() % 512, 0u);
  // models/, models/big.bin + content + padding, models/notes.txt + content + padding, end.
  const uint64_t expected = 512 + 512 + content_.size() + TarPadding(content_.size()).size() +
                            512 + 512 + 1024;
  EXPECT_EQ(tar.size(), expected);
  EXPECT_EQ(tar.substr(0, 7), "models/");
  EXPECT_EQ(tar.substr(512, 14), "models/big.bin");
  EXPECT_TRUE(tar.substr(1024, content_.size()) == content_);
}

}  // namespace
}  // namespace cairn::operator_
