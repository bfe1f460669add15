// Filesystem against an in-process control plane (EngineVolumeClient):
// commit error handling, idempotency keys, coalescing and interleavings
// that a real mount cannot hit deterministically.
#include "mounter/filesystem.h"

#include <fcntl.h>
#include <sys/sysmacros.h>

#include <atomic>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "core/tree.h"
#include "core/files.h"
#include "core/testing/temp_dir.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "core/status.h"
#include "mounter/control.h"
#include "mounter/disk_cache.h"
#include "mounter/journal.h"
#include "mounter/testing/engine_volume_client.h"

namespace cairn::mounter {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

class FilesystemTest : public ::testing::Test {
 protected:
  void SetUp() override { Open(); }

  // (Re)opens the volume, as a new mount of it would.
  void Open(std::optional<Limits> limits = {}, Journal* journal = nullptr,
            uint64_t compact_bytes = 64 << 20) {
    fs_.reset();
    reader_.reset();
    objects_.reset();
    if (!created_) {
      auto opened = client_.CreateVolume("v", 2, limits);
      ASSERT_TRUE(opened.ok()) << opened.status();
      created_ = true;
    }
    api::VolumeRef ref;
    ref.set_namespace_("default");
    ref.set_name("v");
    auto opened = client_.Open(ref);
    ASSERT_TRUE(opened.ok()) << opened.status();
    opened_ = *opened;
    // A node cache of its own: reads of base chunks reach the client.
    cache_.reset();
    auto cache = DiskCache::Open(client_.blobs(), dir_.path() / absl::StrCat("cache", ++mounts_), 0);
    ASSERT_TRUE(cache.ok()) << cache.status();
    cache_ = std::move(*cache);
    auto key = DataKey::FromBytes(opened_.data_key());
    ASSERT_TRUE(key.ok());
    objects_ = std::make_unique<ObjectStore>(cache_.get(), opened_.volume().id(), *key);
    reader_ = std::make_unique<ChunkReader>(objects_.get(), cache_.get(), 64 << 20, 1);
    FsOptions options;
    options.staging_dir = journal ? journal->dir() : dir_.path() / "staging";
    options.journal = journal;
    options.journal_compact_bytes = compact_bytes;
    options.uid = 7;
    options.gid = 8;
    options.mount_group = mount_group_;
    std::filesystem::create_directories(options.staging_dir);
    auto fs = Filesystem::Create(&client_, objects_.get(), reader_.get(), opened_, options);
    ASSERT_TRUE(fs.ok()) << fs.status();
    fs_ = std::move(*fs);
  }

  // Creates (or truncates) a file at the root and writes `content`.
  void WriteFile(const std::string& name, const std::string& content) {
    uint64_t fh;
    auto attr = fs_->Lookup(Filesystem::kRootIno, name);
    if (attr.ok()) {
      auto opened = fs_->Open(attr->st_ino, O_WRONLY | O_TRUNC);
      ASSERT_TRUE(opened.ok()) << opened.status();
      fh = *opened;
    } else {
      auto created = fs_->Create(Filesystem::kRootIno, name, 0644, O_WRONLY);
      ASSERT_TRUE(created.ok()) << created.status();
      fh = created->fh;
    }
    auto n = fs_->Write(fh, 0, content);
    ASSERT_TRUE(n.ok()) << n.status();
    fs_->Release(fh);
  }

  // The file's content in the volume's head.
  std::optional<std::string> HeadFile(const std::string& path) {
    auto head = client_.Head(opened_.volume().id());
    if (!head.ok()) return std::nullopt;
    auto root = Digest::FromRaw(head->root());
    if (!root.ok()) return std::nullopt;
    auto entry = LookupPath(*objects_, *root, path);
    if (!entry.ok()) return std::nullopt;
    auto content = ReadFileRange(*objects_, *entry, 0, entry->size());
    if (!content.ok()) return std::nullopt;
    return *content;
  }

  uint64_t HeadSeq() {
    auto head = client_.Head(opened_.volume().id());
    return head.ok() ? head->seq() : ~uint64_t{0};
  }

  std::optional<gid_t> mount_group_;
  cairn::testing::TempDir dir_;
  testing::EngineVolumeClient client_;
  bool created_ = false;
  int mounts_ = 0;
  api::OpenVolumeResponse opened_;
  std::unique_ptr<DiskCache> cache_;
  std::unique_ptr<ObjectStore> objects_;
  std::unique_ptr<ChunkReader> reader_;
  std::unique_ptr<Filesystem> fs_;
};

TEST(ClassifyCommitErrorTest, ByCode) {
  EXPECT_EQ(ClassifyCommitError(absl::UnavailableError("down")), CommitErrorKind::kRetry);
  EXPECT_EQ(ClassifyCommitError(absl::DeadlineExceededError("slow")), CommitErrorKind::kRetry);
  EXPECT_EQ(ClassifyCommitError(absl::AbortedError("race")), CommitErrorKind::kRetry);
  EXPECT_EQ(ClassifyCommitError(absl::NotFoundError("volume vo-x not found")),
            CommitErrorKind::kRetry);
  EXPECT_EQ(ClassifyCommitError(absl::FailedPreconditionError(
                "object ab referenced by f is not stored")),
            CommitErrorKind::kReupload);
  EXPECT_EQ(ClassifyCommitError(absl::InvalidArgumentError("change 16: path is 4099 bytes")),
            CommitErrorKind::kNever);
  EXPECT_EQ(ClassifyCommitError(absl::ResourceExhaustedError("inode limit")),
            CommitErrorKind::kNever);
  EXPECT_EQ(ClassifyCommitError(absl::FailedPreconditionError("a is a directory")),
            CommitErrorKind::kNever);
}

// A reply lost after the control plane applied the commit: the retry
// carries the same key (so the server answers with the snapshot it made
// instead of applying the change set again); the next change set a new one.
TEST_F(FilesystemTest, RetryAfterLostReplyResendsTheSameKey) {
  int calls = 0;
  client_.on_commit = [&](const objects::ChangeSet&) {
    testing::EngineVolumeClient::CommitFault fault;
    if (calls++ == 0) fault = {absl::UnavailableError("reply lost"), /*applied=*/true};
    return fault;
  };
  WriteFile("a", "one");
  absl::Status first = fs_->Commit();
  EXPECT_TRUE(absl::IsUnavailable(first)) << first;
  EXPECT_TRUE(fs_->Dirty());
  WriteFile("b", "two");  // logged after the change set in flight
  ASSERT_TRUE(fs_->Commit().ok());
  EXPECT_FALSE(fs_->Dirty());
  std::vector<std::string> keys = client_.keys();
  ASSERT_EQ(keys.size(), 3u);
  EXPECT_EQ(keys[0].size(), 32u);
  EXPECT_EQ(keys[0], keys[1]);
  EXPECT_NE(keys[2], keys[1]);
  EXPECT_EQ(HeadSeq(), 2u);  // one snapshot per change set, not three
  EXPECT_EQ(HeadFile("a"), "one");
  EXPECT_EQ(HeadFile("b"), "two");
}

// A blob that went missing between upload and commit is uploaded again.
TEST_F(FilesystemTest, ObjectNotStoredIsUploadedAgain) {
  int calls = 0;
  client_.on_commit = [&](const objects::ChangeSet& changes) {
    if (calls++ == 0) {
      for (const objects::Change& c : changes.changes()) {
        for (const std::string& chunk : c.entry().chunks()) {
          auto d = Digest::FromRaw(chunk);
          EXPECT_TRUE(client_.engine().blobs()->Delete(opened_.volume().id(), *d).ok());
        }
      }
    }
    return testing::EngineVolumeClient::CommitFault{};
  };
  std::string big(kInlineMax * 4, 'x');
  WriteFile("big", big);
  absl::Status st = fs_->Commit();
  ASSERT_TRUE(st.ok()) << st;
  EXPECT_EQ(calls, 2);
  EXPECT_EQ(HeadFile("big"), big);
}

// Changes undone before they were committed are not sent.
TEST_F(FilesystemTest, CreateThenRemoveIsNotSent) {
  std::vector<objects::Change> sent;
  client_.on_commit = [&](const objects::ChangeSet& changes) {
    sent.assign(changes.changes().begin(), changes.changes().end());
    return testing::EngineVolumeClient::CommitFault{};
  };
  auto a = fs_->MkDir(Filesystem::kRootIno, "a", 0755);
  ASSERT_TRUE(a.ok());
  auto b = fs_->MkDir(a->st_ino, "b", 0755);
  ASSERT_TRUE(b.ok());
  WriteFile("tmp", "x");
  auto f = fs_->Create(b->st_ino, "f", 0644, O_WRONLY);
  ASSERT_TRUE(f.ok());
  fs_->Release(f->fh);
  ASSERT_TRUE(fs_->Unlink(b->st_ino, "f").ok());
  ASSERT_TRUE(fs_->RmDir(a->st_ino, "b").ok());
  ASSERT_TRUE(fs_->RmDir(Filesystem::kRootIno, "a").ok());
  ASSERT_TRUE(fs_->Unlink(Filesystem::kRootIno, "tmp").ok());
  WriteFile("keep", "kept");
  ASSERT_TRUE(fs_->Commit().ok());
  std::vector<std::string> paths;
  for (const auto& c : sent) paths.push_back(absl::StrCat(c.kind(), ":", c.path()));
  // The removals stay (the paths may exist in the head); nothing below them.
  EXPECT_THAT(paths, ElementsAre("3:a", "3:tmp", "1:keep"));
  EXPECT_EQ(HeadFile("keep"), "kept");
}

// A change moved out of a removed directory before the removal is kept.
TEST_F(FilesystemTest, RenameOutOfRemovedDirectoryKeepsEarlierChanges) {
  auto a = fs_->MkDir(Filesystem::kRootIno, "a", 0755);
  ASSERT_TRUE(a.ok());
  auto f = fs_->Create(a->st_ino, "f", 0644, O_WRONLY);
  ASSERT_TRUE(f.ok());
  ASSERT_TRUE(fs_->Write(f->fh, 0, "moved").ok());
  fs_->Release(f->fh);
  ASSERT_TRUE(fs_->Rename(a->st_ino, "f", Filesystem::kRootIno, "g", 0).ok());
  ASSERT_TRUE(fs_->RmDir(Filesystem::kRootIno, "a").ok());
  ASSERT_TRUE(fs_->Commit().ok());
  EXPECT_EQ(HeadFile("g"), "moved");
  EXPECT_FALSE(HeadFile("a/f").has_value());
}

// truncate(2) by path while a commit of the same file finishes: the
// commit must not swap the truncated staged file for what it committed.
TEST_F(FilesystemTest, TruncateByPathRacingACommitIsKept) {
  // A two-chunk file in the base; a write to its second chunk leaves the
  // first one lazy, so the truncate below reads it (the hook's window).
  std::string content(kChunkSize + 10, 'c');
  WriteFile("f", content);
  ASSERT_TRUE(fs_->Commit().ok());
  Open();  // a fresh mount: "f" is a base file
  auto attr = fs_->Lookup(Filesystem::kRootIno, "f");
  ASSERT_TRUE(attr.ok());
  auto fh = fs_->Open(attr->st_ino, O_WRONLY);
  ASSERT_TRUE(fh.ok());
  ASSERT_TRUE(fs_->Write(*fh, kChunkSize, "W").ok());
  fs_->Release(*fh);

  absl::Notification commit_sent, truncating, committed;
  client_.on_commit = [&](const objects::ChangeSet&) {
    commit_sent.Notify();
    truncating.WaitForNotification();
    return testing::EngineVolumeClient::CommitFault{};
  };
  auto head = client_.Head(opened_.volume().id());
  ASSERT_TRUE(head.ok());
  auto base_entry = LookupPath(*objects_, *Digest::FromRaw(head->root()), "f");
  ASSERT_TRUE(base_entry.ok());
  ASSERT_EQ(base_entry->chunks_size(), 2);
  Digest first_chunk = *Digest::FromRaw(base_entry->chunks(0));
  std::atomic<bool> hooked{false};
  client_.on_get = [&](const Digest& address) {
    if (address == first_chunk && !hooked.exchange(true)) {
      // Inside the truncate: let the commit finish now.
      truncating.Notify();
      committed.WaitForNotification();
    }
  };
  std::thread committer([&] {
    EXPECT_TRUE(fs_->Commit().ok());
    committed.Notify();
  });
  commit_sent.WaitForNotification();
  struct stat to {};
  to.st_size = 100;
  auto truncated = fs_->SetAttr(attr->st_ino, to, Filesystem::kSetSize);
  committer.join();
  ASSERT_TRUE(hooked.load());
  ASSERT_TRUE(truncated.ok()) << truncated.status();
  EXPECT_EQ(truncated->st_size, 100);
  client_.on_commit = nullptr;
  client_.on_get = nullptr;
  ASSERT_TRUE(fs_->Commit().ok());
  EXPECT_EQ(HeadFile("f"), std::string(100, 'c'));
}

// A reload whose replay of the pending changes fails (another mount made
// their parent directory a file) is refused, and the old view stays whole.
TEST_F(FilesystemTest, ReloadThatCannotReplayKeepsTheOldView) {
  auto d = fs_->MkDir(Filesystem::kRootIno, "d", 0755);
  ASSERT_TRUE(d.ok());
  auto f = fs_->Create(d->st_ino, "f", 0644, O_WRONLY);
  ASSERT_TRUE(f.ok());
  ASSERT_TRUE(fs_->Write(f->fh, 0, "pending").ok());
  fs_->Release(f->fh);
  objects::ChangeSet other;
  objects::Change* put = other.add_changes();
  put->set_kind(objects::Change::PUT);
  put->set_path("d");
  put->mutable_entry()->set_type(objects::FILE);
  put->mutable_entry()->set_size(1);
  put->mutable_entry()->set_inline_data("x");
  ASSERT_TRUE(client_.engine().Commit(opened_.volume().id(), other).ok());

  absl::Status reload = fs_->Reload();
  EXPECT_FALSE(reload.ok());
  EXPECT_THAT(std::string(reload.message()), HasSubstr("d/f"));
  auto again = fs_->Lookup(Filesystem::kRootIno, "d");
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_TRUE(S_ISDIR(again->st_mode));
  EXPECT_EQ(again->st_ino, d->st_ino);
  auto file = fs_->Lookup(d->st_ino, "f");
  ASSERT_TRUE(file.ok()) << file.status();
  auto fh = fs_->Open(file->st_ino, O_RDONLY);
  ASSERT_TRUE(fh.ok());
  auto data = fs_->Read(*fh, 0, 100);
  ASSERT_TRUE(data.ok());
  EXPECT_EQ(data->Flatten(), "pending");
  fs_->Release(*fh);
  EXPECT_THAT(fs_->StatusJson(), HasSubstr("does not apply to the new head"));
  EXPECT_THAT(fs_->StatusJson(), HasSubstr("\"base_seq\":0"));
}

// A mount that is never idle at the end of a commit keeps its journal as
// small as what is pending, and what it holds recovers into a new mount.
TEST_F(FilesystemTest, JournalIsRewrittenDownToWhatIsPendingAndRecovers) {
  auto journal = Journal::Create(dir_.path() / "staging-j" / "m1");
  ASSERT_TRUE(journal.ok()) << journal.status();
  Open({}, journal->get(), /*compact_bytes=*/1024);
  for (int i = 0; i < 20; ++i) WriteFile(absl::StrCat("f", i), std::string(500, 'a' + i));
  // A write lands while the commit is in flight, so the log is not empty
  // when it ends.
  bool once = false;
  client_.on_commit = [&](const objects::ChangeSet&) {
    if (!once) {
      once = true;
      WriteFile("late", "late content");
    }
    return testing::EngineVolumeClient::CommitFault{};
  };
  ASSERT_TRUE(fs_->Commit().ok());
  client_.on_commit = nullptr;
  EXPECT_TRUE(fs_->Dirty());
  EXPECT_LT(std::filesystem::file_size((*journal)->dir() / "journal"), 1024u);
  auto read = Journal::Read((*journal)->dir());
  ASSERT_TRUE(read.ok()) << read.status();
  ASSERT_EQ(read->changes.size(), 1u);
  EXPECT_EQ(read->changes[0].change.path(), "late");

  // As if this mounter died now: a new mount takes it over.
  fs_.reset();
  auto second = Journal::Create(dir_.path() / "staging-j" / "m2");
  ASSERT_TRUE(second.ok());
  Open({}, second->get());
  auto taken = fs_->Recover({&*read});
  ASSERT_TRUE(taken.ok()) << taken.status();
  EXPECT_EQ(*taken, 1u);
  ASSERT_TRUE(fs_->Commit().ok());
  EXPECT_EQ(HeadFile("late"), "late content");
  EXPECT_EQ(HeadFile("f3"), std::string(500, 'a' + 3));
}

// A mounter taking over a connection (hand-over) is told the node IDs the
// kernel knows: base files, and files it recovers from the dead mounter's
// journal (written as a temporary and renamed), answer under those IDs,
// even when the kernel names one before looking anything up.
TEST_F(FilesystemTest, SeededInodesKeepTheKernelsNodeIds) {
  ASSERT_TRUE(fs_->MkDir(Filesystem::kRootIno, "dir", 0755).ok());
  WriteFile("base.txt", "base");
  ASSERT_TRUE(fs_->Commit().ok());
  auto journal = Journal::Create(dir_.path() / "staging-h" / "m1");
  ASSERT_TRUE(journal.ok()) << journal.status();
  Open({}, journal->get());
  WriteFile("tmp", "written before the crash");
  ASSERT_TRUE(fs_->Rename(Filesystem::kRootIno, "tmp", Filesystem::kRootIno, "final", 0).ok());
  auto read = Journal::Read((*journal)->dir());
  ASSERT_TRUE(read.ok()) << read.status();

  fs_.reset();
  auto second = Journal::Create(dir_.path() / "staging-h" / "m2");
  ASSERT_TRUE(second.ok());
  Open({}, second->get());
  fs_->SeedInodes({{"dir", 40, S_IFDIR}, {"base.txt", 41, S_IFREG}, {"final", 42, S_IFREG}});
  ASSERT_TRUE(fs_->Recover({&*read}).ok());
  // Named by ID first (a getattr of a cached dentry), then looked up.
  auto base = fs_->GetAttr(41);
  ASSERT_TRUE(base.ok()) << base.status();
  EXPECT_EQ(base->st_size, 4);
  auto dir = fs_->Lookup(Filesystem::kRootIno, "dir");
  ASSERT_TRUE(dir.ok());
  EXPECT_EQ(dir->st_ino, 40u);
  auto recovered = fs_->Lookup(Filesystem::kRootIno, "final");
  ASSERT_TRUE(recovered.ok()) << recovered.status();
  EXPECT_EQ(recovered->st_ino, 42u);
  auto fh = fs_->Open(42, O_RDONLY);
  ASSERT_TRUE(fh.ok()) << fh.status();
  auto data = fs_->Read(*fh, 0, 100);
  ASSERT_TRUE(data.ok());
  EXPECT_EQ(data->Flatten(), "written before the crash");
  fs_->Release(*fh);
  // New node IDs start above the known ones.
  auto created = fs_->Create(Filesystem::kRootIno, "new", 0644, O_WRONLY);
  ASSERT_TRUE(created.ok());
  EXPECT_GT(created->attr.st_ino, 42u);
  fs_->Release(created->fh);
}

// The control plane applied a commit but the mounter died before the
// answer (and before journaling it done): the next mount resends that
// change set with its key, so it is applied once, and the rename in it does
// not run twice (a second run would fail: its source is gone).
TEST_F(FilesystemTest, RecoveredChangeSetThatWasAppliedIsNotAppliedAgain) {
  auto journal = Journal::Create(dir_.path() / "staging-k" / "m1");
  ASSERT_TRUE(journal.ok()) << journal.status();
  Open({}, journal->get());
  WriteFile("a", "one");
  ASSERT_TRUE(fs_->Commit().ok());
  const uint64_t before = HeadSeq();
  ASSERT_TRUE(fs_->Rename(Filesystem::kRootIno, "a", Filesystem::kRootIno, "b", 0).ok());
  WriteFile("c", "two");
  client_.on_commit = [](const objects::ChangeSet&) {
    return testing::EngineVolumeClient::CommitFault{absl::UnavailableError("reply lost"),
                                                    /*applied=*/true};
  };
  EXPECT_FALSE(fs_->Commit().ok());
  client_.on_commit = nullptr;
  ASSERT_EQ(HeadSeq(), before + 1);  // applied, unacknowledged
  const std::string sent_key = client_.keys().back();

  // As if this mounter were killed now: a new mount takes its journal over.
  auto read = Journal::Read((*journal)->dir());
  ASSERT_TRUE(read.ok()) << read.status();
  ASSERT_EQ(read->sent.size(), 1u);
  EXPECT_EQ(read->sent[0].key, sent_key);
  fs_.reset();
  auto second = Journal::Create(dir_.path() / "staging-k" / "m2");
  ASSERT_TRUE(second.ok());
  Open({}, second->get());
  auto taken = fs_->Recover({&*read});
  ASSERT_TRUE(taken.ok()) << taken.status();
  EXPECT_EQ(*taken, 2u);
  ASSERT_TRUE(fs_->Commit().ok()) << fs_->StatusJson();
  EXPECT_EQ(client_.keys().back(), sent_key);
  EXPECT_EQ(HeadSeq(), before + 1);  // one commit made it, not two
  EXPECT_EQ(fs_->StuckCount(), 0u);
  EXPECT_FALSE(fs_->Dirty());
  EXPECT_EQ(HeadFile("b"), "one");
  EXPECT_EQ(HeadFile("c"), "two");
  EXPECT_EQ(HeadFile("a"), std::nullopt);

  // And a set that was not applied is applied by the resend, once.
  ASSERT_TRUE(fs_->Unlink(Filesystem::kRootIno, "c").ok());
  client_.on_commit = [](const objects::ChangeSet&) {
    return testing::EngineVolumeClient::CommitFault{absl::UnavailableError("down"), false};
  };
  EXPECT_FALSE(fs_->Commit().ok());
  client_.on_commit = nullptr;
  auto again = Journal::Read((*second)->dir());
  ASSERT_TRUE(again.ok()) << again.status();
  ASSERT_EQ(again->sent.size(), 1u);
  fs_.reset();
  auto third = Journal::Create(dir_.path() / "staging-k" / "m3");
  ASSERT_TRUE(third.ok());
  Open({}, third->get());
  ASSERT_TRUE(fs_->Recover({&*again}).ok());
  ASSERT_TRUE(fs_->Commit().ok());
  EXPECT_EQ(client_.keys().back(), again->sent[0].key);
  EXPECT_EQ(HeadSeq(), before + 2);
  EXPECT_EQ(HeadFile("c"), std::nullopt);
}

// Recovery comes before this mount's own changes: after them, the journal's
// order would no longer be the commit order.
TEST_F(FilesystemTest, RecoverAfterOwnChangesIsRefused) {
  WriteFile("mine", "x");
  RecoveredJournal empty;
  EXPECT_EQ(fs_->Recover({&empty}).status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(FilesystemTest, ControlAttributesWithAndWithoutTheUserPrefix) {
  WriteFile("a", "x");
  ASSERT_TRUE(fs_->SetXattr(Filesystem::kRootIno, "cairn.commit", "1").ok());
  EXPECT_EQ(HeadFile("a"), "x");
  WriteFile("b", "y");
  ASSERT_TRUE(fs_->SetXattr(Filesystem::kRootIno, kCommitAttr, "1").ok());
  EXPECT_EQ(HeadFile("b"), "y");
  EXPECT_EQ(StatusToErrno(fs_->SetXattr(Filesystem::kRootIno, "user.cairn.bogus", "1")),
            EOPNOTSUPP);
  EXPECT_EQ(StatusToErrno(fs_->SetXattr(Filesystem::kRootIno, "commit", "1")), EOPNOTSUPP);
  auto status = fs_->GetXattr(Filesystem::kRootIno, "cairn.status");
  ASSERT_TRUE(status.ok());
  EXPECT_THAT(*status, HasSubstr("\"commits\":2"));
  EXPECT_THAT(fs_->ListXattr(Filesystem::kRootIno), ElementsAre(kStatusAttr));
}

// Attributes that are not stored answer "not supported" on every inode, the
// root included, so tools stop asking for labels and ACLs file by file.
TEST_F(FilesystemTest, UnstoredAttributesAreNotSupported) {
  WriteFile("f", "x");
  auto f = fs_->Lookup(Filesystem::kRootIno, "f");
  ASSERT_TRUE(f.ok()) << f.status();
  for (uint64_t ino : {Filesystem::kRootIno, static_cast<uint64_t>(f->st_ino)}) {
    for (const char* name : {"security.selinux", "system.posix_acl_access",
                             "system.posix_acl_default", "user.other", "user.cairn.bogus"}) {
      EXPECT_EQ(StatusToErrno(fs_->GetXattr(ino, name).status()), EOPNOTSUPP) << ino << name;
    }
  }
  EXPECT_THAT(fs_->ListXattr(static_cast<uint64_t>(f->st_ino)), ::testing::IsEmpty());
}

}  // namespace
TEST_F(FilesystemTest, OwnersModesAndSpecialFilesAreCommittedAndShownByTheNextMount) {
  const Caller user{1000, 1000};
  auto dir = fs_->MkDir(Filesystem::kRootIno, "g", 0775, user);
  ASSERT_TRUE(dir.ok()) << dir.status();
  EXPECT_EQ(dir->st_uid, 1000u);
  EXPECT_EQ(dir->st_gid, 1000u);
  struct stat want{};
  want.st_gid = 2000;
  want.st_mode = 02775;
  ASSERT_TRUE(fs_->SetAttr(dir->st_ino, want, Filesystem::kSetGid | Filesystem::kSetMode).ok());
  // Under a setgid directory: the directory's group, and setgid on subdirectories.
  auto file = fs_->Create(dir->st_ino, "f", 0640, O_WRONLY, user);
  ASSERT_TRUE(file.ok()) << file.status();
  fs_->Release(file->fh);
  EXPECT_EQ(file->attr.st_gid, 2000u);
  auto sub = fs_->MkDir(dir->st_ino, "sub", 0755, user);
  ASSERT_TRUE(sub.ok());
  EXPECT_EQ(sub->st_mode & 07777, 02755u);
  auto fifo = fs_->Mknod(dir->st_ino, "p", S_IFIFO | 0600, 0, user);
  ASSERT_TRUE(fifo.ok()) << fifo.status();
  EXPECT_TRUE(S_ISFIFO(fifo->st_mode));
  auto dev = fs_->Mknod(dir->st_ino, "c", S_IFCHR | 0600, makedev(1, 3), Caller{0, 0});
  ASSERT_TRUE(dev.ok()) << dev.status();
  EXPECT_EQ(dev->st_rdev, makedev(1, 3));
  // An unknown file type is refused and leaves nothing.
  auto bad = fs_->Mknod(dir->st_ino, "x", 0170000 | 0600, 0, user);
  EXPECT_EQ(StatusToErrno(bad.status()), EINVAL);
  EXPECT_EQ(StatusToErrno(fs_->Lookup(dir->st_ino, "x").status()), ENOENT);
  // Without a caller (no FUSE request): no owner stored, the default shown.
  ASSERT_TRUE(fs_->MkDir(Filesystem::kRootIno, "plain", 0755).ok());
  ASSERT_TRUE(fs_->Commit().ok());

  Open();
  auto g = fs_->Lookup(Filesystem::kRootIno, "g");
  ASSERT_TRUE(g.ok());
  EXPECT_EQ(g->st_uid, 1000u);
  EXPECT_EQ(g->st_gid, 2000u);
  EXPECT_EQ(g->st_mode & 07777, 02775u);
  EXPECT_EQ(g->st_nlink, 3u);  // 2 + the subdirectory
  auto f = fs_->Lookup(g->st_ino, "f");
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(f->st_uid, 1000u);
  EXPECT_EQ(f->st_gid, 2000u);
  EXPECT_EQ(f->st_mode & 07777, 0640u);
  auto c = fs_->Lookup(g->st_ino, "c");
  ASSERT_TRUE(c.ok());
  EXPECT_TRUE(S_ISCHR(c->st_mode));
  EXPECT_EQ(c->st_rdev, makedev(1, 3));
  EXPECT_EQ(c->st_uid, 0u);
  EXPECT_TRUE(S_ISFIFO(fs_->Lookup(g->st_ino, "p")->st_mode));
  auto plain = fs_->Lookup(Filesystem::kRootIno, "plain");
  EXPECT_EQ(plain->st_uid, 7u);
  EXPECT_EQ(plain->st_gid, 8u);
}

TEST_F(FilesystemTest, MountGroupIsShownOnEntriesWithoutAnOwnerOnly) {
  ASSERT_TRUE(fs_->MkDir(Filesystem::kRootIno, "plain", 0755).ok());
  auto owned = fs_->MkDir(Filesystem::kRootIno, "owned", 0700, Caller{1000, 1000});
  ASSERT_TRUE(owned.ok());
  ASSERT_TRUE(fs_->Commit().ok());
  mount_group_ = 2000;
  Open();
  auto root = fs_->GetAttr(Filesystem::kRootIno);
  ASSERT_TRUE(root.ok());
  EXPECT_EQ(root->st_uid, 7u);
  EXPECT_EQ(root->st_gid, 2000u);
  EXPECT_EQ(root->st_mode & 07777, 02775u);
  auto plain = fs_->Lookup(Filesystem::kRootIno, "plain");
  EXPECT_EQ(plain->st_gid, 2000u);
  EXPECT_EQ(plain->st_mode & 07777, 02775u);
  auto kept = fs_->Lookup(Filesystem::kRootIno, "owned");
  EXPECT_EQ(kept->st_gid, 1000u);
  EXPECT_EQ(kept->st_mode & 07777, 0700u);
  // A pod's new file in the (presented setgid) root takes the group.
  auto file = fs_->Create(Filesystem::kRootIno, "new", 0644, O_WRONLY, Caller{1000, 1000});
  ASSERT_TRUE(file.ok());
  fs_->Release(file->fh);
  EXPECT_EQ(file->attr.st_uid, 1000u);
  EXPECT_EQ(file->attr.st_gid, 2000u);
}

// A sparse file committed and mounted again (D28): lseek answers from
// the stored holes, st_blocks counts the data, and a read of a hole
// fetches nothing from the control plane.
TEST_F(FilesystemTest, CommittedHolesAnswerLseekAndReadWithoutFetching) {
  auto created = fs_->Create(Filesystem::kRootIno, "s", 0644, O_RDWR);
  ASSERT_TRUE(created.ok()) << created.status();
  const uint64_t at = 8 << 20;
  ASSERT_TRUE(fs_->Write(created->fh, at, "x").ok());
  auto staged_hole = fs_->Seek(created->fh, 0, /*data=*/false);
  ASSERT_TRUE(staged_hole.ok()) << staged_hole.status();
  if (*staged_hole != 0) GTEST_SKIP() << "the staging directory's file system reports no holes";
  EXPECT_EQ(*fs_->Seek(created->fh, 0, /*data=*/true), at);
  fs_->Release(created->fh);
  ASSERT_TRUE(fs_->Commit().ok());
  std::string want(at + 1, '\0');
  want[at] = 'x';
  EXPECT_EQ(HeadFile("s"), want);

  Open();
  auto attr = fs_->Lookup(Filesystem::kRootIno, "s");
  ASSERT_TRUE(attr.ok()) << attr.status();
  EXPECT_EQ(attr->st_size, static_cast<off_t>(at + 1));
  EXPECT_EQ(attr->st_blocks, 8);  // one 4 KiB block
  auto fh = fs_->Open(attr->st_ino, O_RDONLY);
  ASSERT_TRUE(fh.ok());
  EXPECT_EQ(*fs_->Seek(*fh, 0, /*data=*/true), at);
  EXPECT_EQ(*fs_->Seek(*fh, 0, /*data=*/false), 0u);
  EXPECT_EQ(*fs_->Seek(*fh, at, /*data=*/false), at + 1);
  EXPECT_EQ(StatusToErrno(fs_->Seek(*fh, at + 1, /*data=*/true).status()), ENXIO);
  std::atomic<int> gets{0};
  client_.on_get = [&](const Digest&) { ++gets; };
  auto hole = fs_->Read(*fh, 4096, 1 << 20);
  ASSERT_TRUE(hole.ok()) << hole.status();
  EXPECT_EQ(hole->Flatten(), std::string(1 << 20, '\0'));
  EXPECT_EQ(gets.load(), 0);
  auto data = fs_->Read(*fh, at - 2, 10);
  ASSERT_TRUE(data.ok()) << data.status();
  EXPECT_EQ(data->Flatten(), std::string("\0\0x", 3));
  EXPECT_GT(gets.load(), 0);
  client_.on_get = nullptr;
  fs_->Release(*fh);
}

}  // namespace cairn::mounter
