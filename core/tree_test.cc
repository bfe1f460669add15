// Unit tests for directory objects, file chunking and ApplyChanges: every
// Change kind and flag, limits, totals, and that only changed paths load.
#include "core/testing/mem_stores.h"
#include "core/testing/counting_blob_store.h"
#include "core/tree.h"

#include <atomic>
#include <cerrno>
#include <cstring>
#include <algorithm>
#include <map>
#include <string>

#include "core/engine.h"
#include "core/files.h"
#include "core/path.h"
#include "core/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace cairn {
namespace {

using objects::Change;
using objects::ChangeSet;
using objects::Entry;
using ::testing::HasSubstr;

using cairn::testing::CountingBlobStore;

class TreeTest : public ::testing::Test {
 protected:
  TreeTest()
      : blobs_(NewMemBlobStore()),
        volume_id_(NewVolumeId()),
        key_(DataKey::Generate()),
        objects_(blobs_.get(), volume_id_, key_) {
    absl::StatusOr<Digest> empty = objects_.PutDirectory(objects::Directory());
    EXPECT_TRUE(empty.ok());
    root_ = *empty;
  }

  Change PutFile(const std::string& path, const std::string& content) {
    Change c;
    c.set_kind(Change::PUT);
    c.set_path(path);
    absl::StatusOr<Entry> e = StoreBytes(objects_, content, 0644, 1000);
    EXPECT_TRUE(e.ok()) << e.status();
    *c.mutable_entry() = *e;
    return c;
  }
  static Change Mkdir(const std::string& path, uint32_t mode = 0755) {
    Change c;
    c.set_kind(Change::MKDIR);
    c.set_path(path);
    c.mutable_entry()->set_type(objects::DIRECTORY);
    c.mutable_entry()->set_mode(mode);
    return c;
  }
  static Change Remove(const std::string& path, bool recursive = false, bool must_exist = false) {
    Change c;
    c.set_kind(Change::REMOVE);
    c.set_path(path);
    c.set_recursive(recursive);
    c.set_must_exist(must_exist);
    return c;
  }
  static Change Rename(const std::string& from, const std::string& to, bool must_exist = false) {
    Change c;
    c.set_kind(Change::RENAME);
    c.set_path(from);
    c.set_to(to);
    c.set_must_exist(must_exist);
    return c;
  }
  static Change Symlink(const std::string& path, const std::string& target) {
    Change c;
    c.set_kind(Change::PUT);
    c.set_path(path);
    c.mutable_entry()->set_type(objects::SYMLINK);
    c.mutable_entry()->set_mode(0777);
    c.mutable_entry()->set_symlink_target(target);
    return c;
  }

  // Applies onto the current root and advances it on success.
  absl::StatusOr<ApplyResult> Apply(std::vector<Change> changes, const Limits& limits = {}) {
    ChangeSet set;
    for (Change& c : changes) *set.add_changes() = std::move(c);
    absl::StatusOr<ApplyResult> r = ApplyChanges(objects_, root_, set, limits);
    if (r.ok()) root_ = r->root;
    return r;
  }

  // path -> "D", "F:<content>" or "L:<target>".
  std::map<std::string, std::string> Read(const Digest& root) {
    std::map<std::string, std::string> out;
    absl::Status s = WalkTree(objects_, root, "", [&](const std::string& path, const Entry& e) {
      if (e.type() == objects::DIRECTORY) {
        out[path] = "D";
      } else if (e.type() == objects::SYMLINK) {
        out[path] = "L:" + e.symlink_target();
      } else {
        absl::StatusOr<std::string> content = ReadFileRange(objects_, e, 0, e.size());
        EXPECT_TRUE(content.ok()) << content.status();
        out[path] = "F:" + content.value_or("?");
      }
      return true;
    });
    EXPECT_TRUE(s.ok()) << s;
    return out;
  }
  std::map<std::string, std::string> Read() { return Read(root_); }

  std::unique_ptr<BlobStore> blobs_;
  std::string volume_id_;
  DataKey key_;
  ObjectStore objects_;
  Digest root_;
};

using Tree = std::map<std::string, std::string>;

TEST_F(TreeTest, EmptyDirectoryAddressMatchesStoredEmptyDirectory) {
  EXPECT_EQ(objects_.EmptyDirectoryAddress(), root_);
  EXPECT_TRUE(Read().empty());
}

TEST_F(TreeTest, PutCreatesParentsAndCountsTotals) {
  absl::StatusOr<ApplyResult> r = Apply({PutFile("a/b/c.txt", "hello"), PutFile("top", "xy")});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(Read(), (Tree{{"a", "D"}, {"a/b", "D"}, {"a/b/c.txt", "F:hello"}, {"top", "F:xy"}}));
  EXPECT_EQ(r->inodes, 4u);
  EXPECT_EQ(r->bytes, 7u);
  absl::StatusOr<Entry> a = LookupPath(objects_, root_, "a");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->mode(), 0755u);
  EXPECT_EQ(a->subtree_inodes(), 2u);
  EXPECT_EQ(a->subtree_bytes(), 5u);
  absl::StatusOr<Entry> rootentry = LookupPath(objects_, root_, "/");
  ASSERT_TRUE(rootentry.ok());
  EXPECT_EQ(rootentry->subtree_inodes(), 4u);
}

TEST_F(TreeTest, EntriesStaySortedBytewise) {
  ASSERT_TRUE(Apply({PutFile("b", "1"), PutFile("a", "2"), PutFile("B", "3"),
                     PutFile("\xc3\xa9", "4"), PutFile("a.b", "5"), PutFile("a-b", "6")})
                  .ok());
  absl::StatusOr<std::shared_ptr<const objects::Directory>> dir =
      ReadDirectory(objects_, root_, "");
  ASSERT_TRUE(dir.ok());
  std::vector<std::string> names;
  for (const Entry& e : (*dir)->entries()) names.push_back(e.name());
  EXPECT_EQ(names, (std::vector<std::string>{"B", "a", "a-b", "a.b", "b", "\xc3\xa9"}));
}

// Names are bytes, as in POSIX, not UTF-8 text: a name in a legacy
// encoding must cross the wire and come back from the store, not make its
// directory unparseable (found by fuzz/directory_fuzz).
TEST_F(TreeTest, NamesThatAreNotUtf8SurviveTheWireAndTheStore) {
  ChangeSet sent;
  *sent.add_changes() = PutFile("caf\xe9", "latin-1");
  *sent.add_changes() = Symlink("link", "caf\xe9");
  ChangeSet received;
  ASSERT_TRUE(received.ParseFromString(sent.SerializeAsString()));
  absl::StatusOr<ApplyResult> r = ApplyChanges(objects_, root_, received, {});
  ASSERT_TRUE(r.ok()) << r.status();
  ObjectStore fresh(blobs_.get(), volume_id_, key_);  // nothing cached: parse from the store
  absl::StatusOr<Entry> file = LookupPath(fresh, r->root, "caf\xe9");
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ(file->size(), 7u);
  absl::StatusOr<Entry> link = LookupPath(fresh, r->root, "link");
  ASSERT_TRUE(link.ok()) << link.status();
  EXPECT_EQ(link->symlink_target(), "caf\xe9");
}

TEST_F(TreeTest, PutReplacesFileInTheWayOfAParent) {
  ASSERT_TRUE(Apply({PutFile("a", "file")}).ok());
  ASSERT_TRUE(Apply({PutFile("a/b", "inner")}).ok());
  EXPECT_EQ(Read(), (Tree{{"a", "D"}, {"a/b", "F:inner"}}));
}

TEST_F(TreeTest, PutReplacesAndFlagsRefuse) {
  ASSERT_TRUE(Apply({PutFile("f", "one"), PutFile("d/x", "x")}).ok());
  ASSERT_TRUE(Apply({PutFile("f", "two")}).ok());
  EXPECT_EQ(Read()["f"], "F:two");

  Change no_replace = PutFile("f", "three");
  no_replace.set_no_replace(true);
  absl::StatusOr<ApplyResult> r = Apply({no_replace});
  EXPECT_EQ(r.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_THAT(r.status().message(), HasSubstr("f already exists"));
  EXPECT_EQ(StatusToErrno(r.status()), EEXIST);

  Change keep = PutFile("d", "over a dir");
  keep.set_keep_directories(true);
  r = Apply({keep});
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(r.status().message(), HasSubstr("d is a directory"));
  EXPECT_EQ(StatusToErrno(r.status()), EISDIR);

  // keep_directories does not stop replacing a file.
  Change keep_file = PutFile("f", "four");
  keep_file.set_keep_directories(true);
  ASSERT_TRUE(Apply({keep_file}).ok());

  // Without the flag a file replaces a whole directory tree.
  r = Apply({PutFile("d", "flat")});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(Read(), (Tree{{"d", "F:flat"}, {"f", "F:four"}}));
  EXPECT_EQ(r->inodes, 2u);
}

TEST_F(TreeTest, SymlinksAndDirectoryPutWithoutTreeIsMkdir) {
  Change dir;
  dir.set_kind(Change::PUT);
  dir.set_path("d");
  dir.mutable_entry()->set_type(objects::DIRECTORY);
  dir.mutable_entry()->set_mode(0700);
  ASSERT_TRUE(Apply({PutFile("d/keep", "k"), Symlink("l", "d/keep")}).ok());
  ASSERT_TRUE(Apply({dir}).ok());
  EXPECT_EQ(Read(), (Tree{{"d", "D"}, {"d/keep", "F:k"}, {"l", "L:d/keep"}}));
  EXPECT_EQ(LookupPath(objects_, root_, "d")->mode(), 0700u);
}

TEST_F(TreeTest, MkdirEnsuresMergesAndReplacesFiles) {
  ASSERT_TRUE(Apply({Mkdir("x/y/z", 0700)}).ok());
  EXPECT_EQ(Read(), (Tree{{"x", "D"}, {"x/y", "D"}, {"x/y/z", "D"}}));
  EXPECT_EQ(LookupPath(objects_, root_, "x/y/z")->mode(), 0700u);
  EXPECT_EQ(LookupPath(objects_, root_, "x/y")->mode(), 0755u);
  ASSERT_TRUE(Apply({PutFile("x/y/z/f", "c")}).ok());
  // Existing: contents kept, metadata taken from the change.
  ASSERT_TRUE(Apply({Mkdir("x/y/z", 0750)}).ok());
  EXPECT_EQ(Read()["x/y/z/f"], "F:c");
  EXPECT_EQ(LookupPath(objects_, root_, "x/y/z")->mode(), 0750u);
  // A file in the way becomes a directory (last writer wins).
  ASSERT_TRUE(Apply({PutFile("file", "c")}).ok());
  ASSERT_TRUE(Apply({Mkdir("file")}).ok());
  EXPECT_EQ(Read()["file"], "D");
  ASSERT_TRUE(Apply({Mkdir("")}).ok());  // the root: nothing to do
}

TEST_F(TreeTest, RemoveFlags) {
  ASSERT_TRUE(Apply({PutFile("d/a", "1"), PutFile("d/e/b", "2"), PutFile("f", "3")}).ok());
  Digest before = root_;
  // Missing is fine, and changes nothing.
  absl::StatusOr<ApplyResult> r = Apply({Remove("nope"), Remove("f/under-a-file")});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(root_, before);

  r = Apply({Remove("nope", false, /*must_exist=*/true)});
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(r.status().message(), HasSubstr("nope not found"));

  r = Apply({Remove("d")});
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(r.status().message(), HasSubstr("d is a directory (use recursive)"));

  r = Apply({Remove("d/a"), Remove("f")});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(Read(), (Tree{{"d", "D"}, {"d/e", "D"}, {"d/e/b", "F:2"}}));
  EXPECT_EQ(r->inodes, 3u);
  EXPECT_EQ(r->bytes, 1u);

  r = Apply({Remove("d", /*recursive=*/true)});
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(Read().empty());
  EXPECT_EQ(r->inodes, 0u);
  EXPECT_EQ(root_, objects_.EmptyDirectoryAddress());
}

TEST_F(TreeTest, RenameFilesAndDirectories) {
  ASSERT_TRUE(Apply({PutFile("d/a", "1"), PutFile("d/s/b", "2"), PutFile("f", "3")}).ok());
  // A directory not loaded by this change set moves as a reference.
  ASSERT_TRUE(Apply({Rename("d", "new/place/d2")}).ok());
  EXPECT_EQ(Read(), (Tree{{"f", "F:3"},
                          {"new", "D"},
                          {"new/place", "D"},
                          {"new/place/d2", "D"},
                          {"new/place/d2/a", "F:1"},
                          {"new/place/d2/s", "D"},
                          {"new/place/d2/s/b", "F:2"}}));
  // A directory changed earlier in the same set moves with its changes.
  absl::StatusOr<ApplyResult> r =
      Apply({PutFile("new/place/d2/s/c", "4"), Rename("new/place/d2", "d"), Rename("f", "d/a")});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(Read(), (Tree{{"d", "D"},
                          {"d/a", "F:3"},
                          {"d/s", "D"},
                          {"d/s/b", "F:2"},
                          {"d/s/c", "F:4"},
                          {"new", "D"},
                          {"new/place", "D"}}));
  EXPECT_EQ(r->inodes, 7u);
  EXPECT_EQ(r->bytes, 3u);

  // Missing source: skipped, or NotFound with must_exist.
  Digest before = root_;
  ASSERT_TRUE(Apply({Rename("ghost", "x")}).ok());
  EXPECT_EQ(root_, before);
  EXPECT_EQ(Apply({Rename("ghost", "x", true)}).status().code(), absl::StatusCode::kNotFound);
  // Into itself.
  r = Apply({Rename("d", "d/s/inner")});
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(r.status().message(), HasSubstr("into itself"));
  // Onto itself: nothing to do.
  ASSERT_TRUE(Apply({Rename("d", "d")}).ok());
  // Replaces a directory at the target.
  ASSERT_TRUE(Apply({Rename("d/a", "new")}).ok());
  EXPECT_EQ(Read(), (Tree{{"d", "D"}, {"d/s", "D"}, {"d/s/b", "F:2"}, {"d/s/c", "F:4"},
                          {"new", "F:3"}}));
}

TEST_F(TreeTest, RootAndUnnormalisedPathsAreInvalid) {
  ASSERT_TRUE(Apply({PutFile("a", "1")}).ok());
  EXPECT_EQ(Apply({PutFile("", "x")}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Apply({Remove("", true)}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Apply({Rename("", "x")}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Apply({Rename("a", "")}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Apply({PutFile("/a", "x")}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Apply({PutFile("a//b", "x")}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Apply({PutFile("../a", "x")}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Apply({Rename("a", "b/../c")}).status().code(), absl::StatusCode::kInvalidArgument);
  Change bad;
  bad.set_kind(Change::PUT);
  bad.set_path("typeless");
  EXPECT_EQ(Apply({bad}).status().code(), absl::StatusCode::kInvalidArgument);
  Change liar = PutFile("liar", "abc");
  liar.mutable_entry()->set_size(10);
  EXPECT_EQ(Apply({liar}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Read(), (Tree{{"a", "F:1"}}));
}

TEST_F(TreeTest, OversizedInlineDataAndBadSymlinkTargetsAreInvalid) {
  // files.h: only files of at most kInlineMax bytes are inline. A client
  // must not be able to put megabytes into a directory object.
  Change fat;
  fat.set_kind(Change::PUT);
  fat.set_path("fat");
  fat.mutable_entry()->set_type(objects::FILE);
  fat.mutable_entry()->set_inline_data(std::string(kInlineMax + 1, 'f'));
  fat.mutable_entry()->set_size(kInlineMax + 1);
  EXPECT_EQ(Apply({fat}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Apply({Symlink("long", std::string(4096, 't'))}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Apply({Symlink("nul", std::string("a\0b", 3))}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Apply({Symlink("empty", "")}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(Read().empty());
  ASSERT_TRUE(Apply({Symlink("ok", std::string(4095, 't'))}).ok());
}

TEST_F(TreeTest, InodeLimitRefusesGrowthButAllowsShrinking) {
  Limits limits;
  limits.max_inodes = 3;
  ASSERT_TRUE(Apply({PutFile("d/a", "1"), PutFile("b", "2")}, limits).ok());  // 3 inodes
  absl::StatusOr<ApplyResult> r = Apply({PutFile("c", "3")}, limits);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(r.status().message(), HasSubstr("volume inode limit (3) reached"));
  EXPECT_EQ(StatusToErrno(r.status()), ENOSPC);
  // Replacing keeps the count: allowed.
  ASSERT_TRUE(Apply({PutFile("b", "22")}, limits).ok());
  // Over the limit after lowering it: removals still work.
  limits.max_inodes = 1;
  r = Apply({Remove("b")}, limits);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->inodes, 2u);
  // A set that grows then shrinks back within the limit is fine.
  limits.max_inodes = 2;
  ASSERT_TRUE(Apply({PutFile("tmp", "x"), Remove("tmp")}, limits).ok());
}

TEST_F(TreeTest, DirectoryEntryLimit) {
  Limits limits;
  limits.max_dir_entries = 2;
  ASSERT_TRUE(Apply({PutFile("d/a", "1"), PutFile("d/b", "2")}, limits).ok());
  absl::StatusOr<ApplyResult> r = Apply({PutFile("d/c", "3")}, limits);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(StatusToErrno(r.status()), ENOSPC);
  EXPECT_THAT(r.status().message(), HasSubstr("\"d\""));
  // Other directories are unaffected; replacing within a full one is fine.
  ASSERT_TRUE(Apply({PutFile("e/c", "3"), PutFile("d/a", "11")}, limits).ok());
  // Lowered below the current size: removing is still possible.
  limits.max_dir_entries = 1;
  ASSERT_TRUE(Apply({Remove("d/a")}, limits).ok());
}

TEST_F(TreeTest, FileSizeAndHardLinkLimits) {
  Limits limits;
  limits.max_file_size = 10;
  absl::StatusOr<ApplyResult> r = Apply({PutFile("big", std::string(10, 'x'))}, limits);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(StatusToErrno(r.status()), EFBIG);
  ASSERT_TRUE(Apply({PutFile("ok", std::string(9, 'x'))}, limits).ok());

  Change link = PutFile("l1", "shared");
  link.mutable_entry()->set_link_id(7);
  r = Apply({link}, limits);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(StatusToErrno(r.status()), EPERM);
  limits.hard_links = true;
  Change link2 = link;
  link2.set_path("l2");
  ASSERT_TRUE(Apply({link, link2}, limits).ok());
  EXPECT_EQ(LookupPath(objects_, root_, "l2")->link_id(), 7u);
}

TEST_F(TreeTest, GraftCopiesASubtreeByReference) {
  ASSERT_TRUE(Apply({PutFile("src/a", "12345"), PutFile("src/s/b", "67")}).ok());
  absl::StatusOr<Entry> src = LookupPath(objects_, root_, "src");
  ASSERT_TRUE(src.ok());
  Change graft;
  graft.set_kind(Change::PUT);
  graft.set_path("copy/here");
  *graft.mutable_entry() = *src;
  graft.mutable_entry()->set_subtree_inodes(999);  // a lie the tree must not believe
  absl::StatusOr<ApplyResult> r = Apply({graft});
  ASSERT_TRUE(r.ok()) << r.status();
  Tree t = Read();
  EXPECT_EQ(t["copy/here/a"], "F:12345");
  EXPECT_EQ(t["copy/here/s/b"], "F:67");
  EXPECT_EQ(r->inodes, 4u + 5u);
  EXPECT_EQ(r->bytes, 14u);
  // Changing the copy leaves the source alone.
  ASSERT_TRUE(Apply({PutFile("copy/here/a", "changed")}).ok());
  EXPECT_EQ(Read()["src/a"], "F:12345");

  Change missing = graft;
  missing.set_path("other");
  missing.mutable_entry()->set_tree(std::string(32, '\x01'));
  r = Apply({missing});
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(r.status().message(), HasSubstr("is not stored"));
}

// A graft's directory objects may have been built and sealed by a client
// (D1), so nothing below the grafted object may be taken on trust: nested
// totals, limits, names and references are all checked.
class GraftTest : public TreeTest {
 protected:
  // Stores a client-made directory object as is (no sorting or name checks).
  Digest PutRawDirectory(const objects::Directory& dir) {
    std::string plain = dir.SerializeAsString();
    Digest address = key_.Address(plain);
    EXPECT_TRUE(blobs_->Put(volume_id_, address, key_.Seal(address, plain)).ok());
    return address;
  }
  static Entry DirEntry(const std::string& name, const Digest& tree, uint64_t inodes,
                        uint64_t bytes) {
    Entry e;
    e.set_name(name);
    e.set_type(objects::DIRECTORY);
    e.set_mode(0755);
    e.set_tree(tree.RawString());
    e.set_subtree_inodes(inodes);
    e.set_subtree_bytes(bytes);
    return e;
  }
  Entry FileEntry(const std::string& name, const std::string& content) {
    Entry e = StoreBytes(objects_, content, 0644, 1).value();
    e.set_name(name);
    return e;
  }
  // A directory with `n` small files f0..f<n-1>.
  Digest Files(int n) {
    objects::Directory dir;
    for (int i = 0; i < n; ++i) *dir.add_entries() = FileEntry("f" + std::to_string(i), "x");
    std::sort(dir.mutable_entries()->begin(), dir.mutable_entries()->end(),
              [](const Entry& a, const Entry& b) { return a.name() < b.name(); });
    return objects_.PutDirectory(dir).value();
  }
  // An outer directory holding `inner` under "sub".
  Digest Outer(const Entry& inner) {
    objects::Directory dir;
    *dir.add_entries() = inner;
    return PutRawDirectory(dir);
  }
  static Change Graft(const std::string& path, const Digest& tree) {
    Change c;
    c.set_kind(Change::PUT);
    c.set_path(path);
    *c.mutable_entry() = DirEntry("", tree, 0, 0);
    return c;
  }
};

TEST_F(GraftTest, NestedTotalsAreNotTrusted) {
  // "sub" holds 5 files but claims to hold nothing.
  Digest outer = Outer(DirEntry("sub", Files(5), 0, 0));
  Limits limits;
  limits.max_inodes = 3;
  absl::StatusOr<ApplyResult> r = Apply({Graft("g", outer)}, limits);
  EXPECT_FALSE(r.ok()) << "graft admitted with inodes=" << r->inodes;
  r = Apply({Graft("g", outer)});
  if (r.ok()) {
    // Accepted: then the totals must be the real ones.
    EXPECT_EQ(r->inodes, 1u + 1u + 5u);
    EXPECT_EQ(r->bytes, 5u);
  } else {
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << r.status();
  }
}

TEST_F(GraftTest, NestedDirectoryEntryLimit) {
  Digest outer = Outer(DirEntry("sub", Files(5), 5, 5));
  Limits limits;
  limits.max_dir_entries = 3;
  absl::StatusOr<ApplyResult> r = Apply({Graft("g", outer)}, limits);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kResourceExhausted) << r.status();
  EXPECT_EQ(StatusToErrno(r.status()), ENOSPC);
  // The grafted directory itself counts too.
  r = Apply({Graft("g", Files(5))}, limits);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kResourceExhausted) << r.status();
  EXPECT_TRUE(Read().empty());
}

TEST_F(GraftTest, NestedFileSizeAndHardLinkLimits) {
  Limits limits;
  limits.max_file_size = 10;
  Digest big = Outer(FileEntry("big", std::string(20, 'b')));
  absl::StatusOr<ApplyResult> r = Apply({Graft("g", big)}, limits);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kResourceExhausted) << r.status();
  EXPECT_EQ(StatusToErrno(r.status()), EFBIG);

  Entry linked = FileEntry("l", "x");
  linked.set_link_id(9);
  r = Apply({Graft("g", Outer(linked))}, Limits{});
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition) << r.status();
  EXPECT_EQ(StatusToErrno(r.status()), EPERM);
}

TEST_F(GraftTest, NestedReferencesMustBeStored) {
  Entry file = FileEntry("f", std::string(kInlineMax + 1, 'f'));
  Digest chunk = Digest::FromRaw(file.chunks(0)).value();
  Digest outer = Outer(file);
  ASSERT_TRUE(blobs_->Delete(volume_id_, chunk).ok());
  absl::StatusOr<ApplyResult> r = Apply({Graft("g", outer)});
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition) << r.status();
  EXPECT_THAT(r.status().message(), HasSubstr("is not stored"));

  Digest missing_dir = Digest::FromRaw(std::string(32, '\x07')).value();
  r = Apply({Graft("g", Outer(DirEntry("sub", missing_dir, 0, 0)))});
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition) << r.status();
  EXPECT_TRUE(Read().empty());
}

TEST_F(GraftTest, NestedNamesAndOrderAreValidated) {
  for (const std::string& bad : std::vector<std::string>{
           "", ".", "..", "a/b", std::string("nul\0x", 5), std::string(256, 'n')}) {
    Entry e = FileEntry("", "x");
    e.set_name(bad);
    absl::StatusOr<ApplyResult> r = Apply({Graft("g", Outer(e))});
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument)
        << "\"" << bad << "\": " << r.status();
  }
  objects::Directory unsorted;
  *unsorted.add_entries() = FileEntry("b", "1");
  *unsorted.add_entries() = FileEntry("a", "2");
  absl::StatusOr<ApplyResult> r = Apply({Graft("g", PutRawDirectory(unsorted))});
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << r.status();
  EXPECT_TRUE(Read().empty());
}

TEST_F(GraftTest, TreesDeeperThanAnyPathAreRefused) {
  // Deeper than a 4096-byte path can reach: walkers recurse per level.
  Digest tree = objects_.EmptyDirectoryAddress();
  uint64_t inodes = 0;
  for (size_t level = 0; level < kMaxPathLength / 2; ++level) {
    objects::Directory dir;
    *dir.add_entries() = DirEntry("d", tree, inodes, 0);
    tree = objects_.PutDirectory(dir).value();
    inodes += 1;
  }
  ASSERT_TRUE(objects_.PutDirectory(objects::Directory()).ok());
  absl::StatusOr<ApplyResult> r = Apply({Graft("g", tree)});
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << r.status();
  EXPECT_EQ(StatusToErrno(r.status()), ENAMETOOLONG);
}

TEST_F(GraftTest, HonestNestedGraftKeepsExactTotals) {
  Digest outer = Outer(DirEntry("sub", Files(5), 5, 5));
  absl::StatusOr<ApplyResult> r = Apply({Graft("g", outer), Graft("h", outer)});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->inodes, 2u * 7u);
  EXPECT_EQ(r->bytes, 2u * 5u);
}

TEST_F(TreeTest, ParentMtimeMovesWhenNamesChange) {
  ASSERT_TRUE(Apply({Mkdir("d"), PutFile("d/a", "1")}).ok());
  ASSERT_TRUE(Apply({Mkdir("d")}).ok());
  Change set_time = Mkdir("d");
  set_time.mutable_entry()->set_mtime_ns(42);
  ASSERT_TRUE(Apply({set_time}).ok());
  EXPECT_EQ(LookupPath(objects_, root_, "d")->mtime_ns(), 42);
  // Rewriting a file's content keeps the directory's mtime...
  ASSERT_TRUE(Apply({PutFile("d/a", "2")}).ok());
  EXPECT_EQ(LookupPath(objects_, root_, "d")->mtime_ns(), 42);
  // ...adding a name moves it to the commit time.
  ASSERT_TRUE(Apply({PutFile("d/b", "3")}).ok());
  EXPECT_GT(LookupPath(objects_, root_, "d")->mtime_ns(), 1'000'000'000'000'000'000);
}

TEST_F(TreeTest, ExplicitMtimeAfterNameChangesInOneCommitWins) {
  // tar x / cp -a: create entries, then set the directory's mtime, all
  // within one commit. The explicit time must survive the flush.
  Change set_time = Mkdir("d");
  set_time.mutable_entry()->set_mtime_ns(42);
  ASSERT_TRUE(Apply({Mkdir("d"), PutFile("d/a", "1"), set_time}).ok());
  EXPECT_EQ(LookupPath(objects_, root_, "d")->mtime_ns(), 42);
  // A name change after the explicit time moves it to the commit time again.
  ASSERT_TRUE(Apply({set_time, PutFile("d/b", "2")}).ok());
  EXPECT_GT(LookupPath(objects_, root_, "d")->mtime_ns(), 1'000'000'000'000'000'000);
}

TEST_F(TreeTest, LookupErrors) {
  ASSERT_TRUE(Apply({PutFile("f", "1")}).ok());
  absl::StatusOr<Entry> e = LookupPath(objects_, root_, "f/x");
  EXPECT_EQ(e.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(StatusToErrno(e.status()), ENOTDIR);
  e = LookupPath(objects_, root_, "missing");
  EXPECT_EQ(e.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(StatusToErrno(e.status()), ENOENT);
  EXPECT_EQ(ReadDirectory(objects_, root_, "f").status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST_F(TreeTest, WalkIsPreOrderAndCanSkip) {
  ASSERT_TRUE(Apply({PutFile("a/x", "1"), PutFile("a/y/z", "2"), PutFile("b", "3")}).ok());
  std::vector<std::string> seen;
  ASSERT_TRUE(WalkTree(objects_, root_, "", [&](const std::string& p, const Entry& e) {
                seen.push_back(p);
                return p != "a/y";
              }).ok());
  EXPECT_EQ(seen, (std::vector<std::string>{"a", "a/x", "a/y", "b"}));
  seen.clear();
  ASSERT_TRUE(WalkTree(objects_, root_, "a", [&](const std::string& p, const Entry& e) {
                seen.push_back(p);
                return true;
              }).ok());
  EXPECT_EQ(seen, (std::vector<std::string>{"a/x", "a/y", "a/y/z"}));
}

TEST_F(TreeTest, CommitLoadsOnlyTheChangedPath) {
  std::vector<Change> bulk;
  for (int d = 0; d < 40; ++d) {
    for (int f = 0; f < 5; ++f) {
      bulk.push_back(PutFile("d" + std::to_string(d) + "/sub/f" + std::to_string(f), "x"));
    }
  }
  ASSERT_TRUE(Apply(bulk).ok());
  // A fresh ObjectStore has a cold cache: count what one commit reads.
  CountingBlobStore counting(blobs_.get());
  ObjectStore cold(&counting, volume_id_, key_);
  ChangeSet one;
  *one.add_changes() = PutFile("d17/sub/new", "y");
  absl::StatusOr<ApplyResult> r = ApplyChanges(cold, root_, one, {});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(counting.gets.load(), 3u);  // root, d17, d17/sub
  EXPECT_EQ(r->inodes, 40u * 7u + 1u);
}

TEST_F(TreeTest, FilesInlineUpToLimitAndChunkBeyond) {
  absl::StatusOr<Entry> small = StoreBytes(objects_, std::string(kInlineMax, 'a'), 0644, 0);
  ASSERT_TRUE(small.ok());
  EXPECT_EQ(small->chunks_size(), 0);
  EXPECT_EQ(small->inline_data().size(), kInlineMax);
  absl::StatusOr<Entry> over = StoreBytes(objects_, std::string(kInlineMax + 1, 'a'), 0644, 0);
  ASSERT_TRUE(over.ok());
  EXPECT_EQ(over->chunks_size(), 1);
  EXPECT_TRUE(over->inline_data().empty());
  absl::StatusOr<Entry> empty = StoreBytes(objects_, "", 0644, 0);
  ASSERT_TRUE(empty.ok());
  EXPECT_EQ(empty->size(), 0u);
  EXPECT_EQ(ReadFileRange(objects_, *empty, 0, 10).value(), "");
}

TEST_F(TreeTest, ChunkedFilesReadAcrossBoundariesAndDedup) {
  std::string content(2 * kChunkSize + 1000, '\0');
  for (size_t i = 0; i < content.size(); ++i) content[i] = static_cast<char>((i * 131) ^ (i >> 12));
  absl::StatusOr<Entry> e = StoreBytes(objects_, content, 0600, 5);
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->chunks_size(), 3);
  EXPECT_EQ(e->size(), content.size());
  EXPECT_EQ(e->mode(), 0600u);
  for (auto [off, len] : std::vector<std::pair<uint64_t, uint64_t>>{
           {0, 10},
           {kChunkSize - 5, 10},
           {kChunkSize - 1, kChunkSize + 2},
           {2 * kChunkSize + 990, 100},
           {0, content.size()},
           {content.size(), 5},
           {content.size() + 7, 5}}) {
    absl::StatusOr<std::string> got = ReadFileRange(objects_, *e, off, len);
    ASSERT_TRUE(got.ok()) << got.status();
    std::string want = off < content.size() ? content.substr(off, len) : "";
    EXPECT_TRUE(*got == want) << "range " << off << "+" << len;
  }
  // Chunk boundaries do not depend on how the source splits its reads.
  size_t pos = 0;
  ReadFn dribble = [&](char* buf, size_t n) -> absl::StatusOr<size_t> {
    size_t take = std::min<size_t>({n, 7777, content.size() - pos});
    memcpy(buf, content.data() + pos, take);
    pos += take;
    return take;
  };
  absl::StatusOr<Entry> again = StoreFile(objects_, dribble, 0600, 5);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->SerializeAsString(), e->SerializeAsString());
  EXPECT_EQ(ReferencedAddresses(*e).size(), 3u);

  // A deleted chunk surfaces as NotFound, a damaged one as DataLoss.
  Digest first = Digest::FromRaw(e->chunks(0)).value();
  ASSERT_TRUE(blobs_->Delete(volume_id_, first).ok());
  EXPECT_EQ(ReadFileRange(objects_, *e, 0, 1).status().code(), absl::StatusCode::kNotFound);
  ASSERT_TRUE(blobs_->Put(volume_id_, first, std::string(100, 'z')).ok());
  EXPECT_EQ(ReadFileRange(objects_, *e, 0, 1).status().code(), absl::StatusCode::kDataLoss);
}

TEST_F(TreeTest, PutDirectoryRejectsUnsortedEntries) {
  objects::Directory dir;
  dir.add_entries()->set_name("b");
  dir.add_entries()->set_name("a");
  EXPECT_EQ(objects_.PutDirectory(dir).status().code(), absl::StatusCode::kInvalidArgument);
  objects::Directory dup;
  dup.add_entries()->set_name("a");
  dup.add_entries()->set_name("a");
  EXPECT_EQ(objects_.PutDirectory(dup).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(TreeTest, SameContentSameAddressOtherKeyOtherAddress) {
  absl::StatusOr<Digest> a = objects_.PutChunk("payload");
  absl::StatusOr<Digest> b = objects_.PutChunk("payload");
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(*a, *b);
  ObjectStore other(blobs_.get(), NewVolumeId(), DataKey::Generate());
  EXPECT_NE(other.PutChunk("payload").value(), *a);
  EXPECT_NE(other.EmptyDirectoryAddress(), objects_.EmptyDirectoryAddress());
  EXPECT_EQ(objects_.GetChunk(*a).value(), "payload");
}

// A directory object exactly as builds before format 2 encoded it (frozen
// bytes, not produced by today's encoder): one file "a", mode 0644, mtime
// 1000 ns, inline content "hi".
constexpr unsigned char kFormat1Directory[] = {
    0x0a, 0x11,                    // entries, 17 bytes
    0x0a, 0x01, 'a',               // name
    0x10, 0x01,                    // type FILE
    0x18, 0xa4, 0x03,              // mode 0644
    0x20, 0xe8, 0x07,              // mtime_ns 1000
    0x28, 0x02,                    // size 2
    0x3a, 0x02, 'h', 'i'};         // inline_data

TEST_F(TreeTest, DirectoryWrittenBeforeFormat2ReadsWithoutOwner) {
  std::string old(reinterpret_cast<const char*>(kFormat1Directory), sizeof(kFormat1Directory));
  // Directory objects are sealed like chunks: store the frozen plaintext.
  Digest old_root = objects_.PutChunk(old).value();
  absl::StatusOr<Entry> a = LookupPath(objects_, old_root, "a");
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_FALSE(a->has_uid());
  EXPECT_FALSE(a->has_gid());
  EXPECT_EQ(a->mode(), 0644u);
  EXPECT_EQ(a->atime_ns(), 0);
  EXPECT_EQ(a->ctime_ns(), 0);
  EXPECT_EQ(objects_.GetDirectory(old_root).value()->format(), 0u);
  // Rewriting it unchanged gives the same bytes, so the same address: an
  // old volume's objects dedup with what this build writes.
  EXPECT_EQ(objects_.PutDirectory(*objects_.GetDirectory(old_root).value()).value(), old_root);

  // A commit onto the old tree keeps the old entry owner-less and marks the
  // rewritten object as format 2.
  root_ = old_root;
  Change owned = PutFile("b", "x");
  owned.mutable_entry()->set_uid(1000);
  owned.mutable_entry()->set_gid(2000);
  ASSERT_TRUE(Apply({owned}).ok());
  EXPECT_FALSE(LookupPath(objects_, root_, "a")->has_uid());
  EXPECT_EQ(LookupPath(objects_, root_, "b")->uid(), 1000u);
  EXPECT_EQ(LookupPath(objects_, root_, "b")->gid(), 2000u);
  EXPECT_EQ(objects_.GetDirectory(root_).value()->format(), 2u);
  EXPECT_EQ(Read(), (Tree{{"a", "F:hi"}, {"b", "F:x"}}));
}

TEST_F(TreeTest, DirectoryOfANewerFormatIsRefused) {
  objects::Directory future;
  future.set_format(ObjectStore::kDirectoryFormat + 1);
  Digest address = objects_.PutChunk(future.SerializeAsString()).value();
  absl::StatusOr<std::shared_ptr<const objects::Directory>> dir = objects_.GetDirectory(address);
  EXPECT_EQ(dir.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(dir.status().message(), HasSubstr("upgrade Cairn"));
}

TEST_F(TreeTest, PosixIdentityAndSpecialFilesRoundTrip) {
  Change file = PutFile("f", "c");
  Entry& fe = *file.mutable_entry();
  fe.set_mode(06755);
  fe.set_uid(0);  // root is an owner, not "unknown"
  fe.set_gid(5);
  fe.set_atime_ns(int64_t{4102444800} * 1000000000 + 7);  // 2100-01-01, past 2038
  fe.set_ctime_ns(3);
  auto special = [](const std::string& path, objects::EntryType type, uint64_t rdev) {
    Change c;
    c.set_kind(Change::PUT);
    c.set_path(path);
    c.mutable_entry()->set_type(type);
    c.mutable_entry()->set_mode(0640);
    c.mutable_entry()->set_uid(1000);
    c.mutable_entry()->set_gid(1000);
    c.mutable_entry()->set_rdev(rdev);
    return c;
  };
  ASSERT_TRUE(Apply({file, special("p", objects::FIFO, 0), special("s", objects::SOCKET, 0),
                     special("c", objects::CHAR_DEVICE, 0x0103),
                     special("b", objects::BLOCK_DEVICE, 0x0801)})
                  .ok());
  Entry f = LookupPath(objects_, root_, "f").value();
  EXPECT_EQ(f.mode(), 06755u);
  ASSERT_TRUE(f.has_uid());
  EXPECT_EQ(f.uid(), 0u);
  EXPECT_EQ(f.gid(), 5u);
  EXPECT_EQ(f.atime_ns(), int64_t{4102444800} * 1000000000 + 7);
  EXPECT_EQ(f.ctime_ns(), 3);
  EXPECT_EQ(LookupPath(objects_, root_, "p")->type(), objects::FIFO);
  EXPECT_EQ(LookupPath(objects_, root_, "s")->type(), objects::SOCKET);
  EXPECT_EQ(LookupPath(objects_, root_, "c")->rdev(), 0x0103u);
  EXPECT_EQ(LookupPath(objects_, root_, "b")->type(), objects::BLOCK_DEVICE);
  // Each special file is an inode with no bytes.
  absl::StatusOr<Entry> root = LookupPath(objects_, root_, "");
  EXPECT_EQ(root->subtree_inodes(), 5u);
  EXPECT_EQ(root->subtree_bytes(), 1u);

  // Content on a special file, or a device number on a FIFO, is refused and
  // leaves the tree as it was.
  Digest before = root_;
  Change bad = special("q", objects::FIFO, 7);
  EXPECT_EQ(Apply({bad}).status().code(), absl::StatusCode::kInvalidArgument);
  bad = special("q", objects::SOCKET, 0);
  bad.mutable_entry()->set_inline_data("x");
  bad.mutable_entry()->set_size(1);
  EXPECT_EQ(Apply({bad}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(root_, before);
}

TEST_F(TreeTest, MkdirTakesOwnerTimesAndAnExplicitModeZero) {
  ASSERT_TRUE(Apply({PutFile("d/f", "c")}).ok());
  EXPECT_FALSE(LookupPath(objects_, root_, "d")->has_uid());  // made as a parent
  Change chown = Mkdir("d", 0);
  chown.mutable_entry()->set_uid(1000);
  chown.mutable_entry()->set_gid(3000);
  chown.mutable_entry()->set_ctime_ns(9);
  ASSERT_TRUE(Apply({chown}).ok());
  Entry d = LookupPath(objects_, root_, "d").value();
  EXPECT_EQ(d.uid(), 1000u);
  EXPECT_EQ(d.gid(), 3000u);
  EXPECT_EQ(d.ctime_ns(), 9);
  EXPECT_EQ(d.mode(), 0u);  // chmod 000 from a writer that sends the owner
  EXPECT_EQ(Read()["d/f"], "F:c");
  // Without an owner, mode 0 still means "keep" (writers before format 2).
  ASSERT_TRUE(Apply({Mkdir("e", 0750)}).ok());
  ASSERT_TRUE(Apply({Mkdir("e", 0)}).ok());
  EXPECT_EQ(LookupPath(objects_, root_, "e")->mode(), 0750u);
  // A new directory from an owner-carrying MKDIR gets exactly that.
  Change fresh = Mkdir("g", 01777);
  fresh.mutable_entry()->set_uid(7);
  fresh.mutable_entry()->set_gid(8);
  ASSERT_TRUE(Apply({fresh}).ok());
  EXPECT_EQ(LookupPath(objects_, root_, "g")->mode(), 01777u);
  EXPECT_EQ(LookupPath(objects_, root_, "g")->uid(), 7u);
}

TEST_F(TreeTest, RootStoresItsOwnModeAndOwner) {
  // Before anything sets them: the defaults, and no owner.
  EXPECT_EQ(LookupPath(objects_, root_, "")->mode(), 0755u);
  EXPECT_FALSE(LookupPath(objects_, root_, "")->has_uid());
  ASSERT_TRUE(Apply({Mkdir("", 0)}).ok());  // an old writer's MKDIR "": nothing
  EXPECT_EQ(root_, objects_.EmptyDirectoryAddress());
  Change chown = Mkdir("", 02770);
  chown.mutable_entry()->set_uid(1000);
  chown.mutable_entry()->set_gid(2000);
  chown.mutable_entry()->set_mtime_ns(5);
  ASSERT_TRUE(Apply({chown}).ok());
  Entry root = LookupPath(objects_, root_, "").value();
  EXPECT_EQ(root.mode(), 02770u);
  EXPECT_EQ(root.uid(), 1000u);
  EXPECT_EQ(root.gid(), 2000u);
  EXPECT_EQ(root.mtime_ns(), 5);
  // Kept through later commits; the root's mtime follows its name changes.
  ASSERT_TRUE(Apply({PutFile("f", "c")}).ok());
  root = LookupPath(objects_, root_, "").value();
  EXPECT_EQ(root.uid(), 1000u);
  EXPECT_EQ(root.mode(), 02770u);
  EXPECT_GT(root.mtime_ns(), 5);
  EXPECT_EQ(Read(), (Tree{{"f", "F:c"}}));
  EXPECT_EQ(root.subtree_inodes(), 1u);
}

}  // namespace
}  // namespace cairn
