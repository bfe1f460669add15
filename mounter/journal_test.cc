#include "mounter/journal.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "core/testing/temp_dir.h"
#include "gtest/gtest.h"

namespace cairn::mounter {
namespace {

namespace fs = std::filesystem;

objects::Change Put(const std::string& path) {
  objects::Change c;
  c.set_kind(objects::Change::PUT);
  c.set_path(path);
  return c;
}

JournalContent Content(const std::string& memory) {
  JournalContent content;
  content.entry.set_type(objects::FILE);
  content.entry.set_mode(0640);
  StagedFile::State state;
  state.size = memory.size();
  state.memory = memory;
  content.staged = state;
  return content;
}

// Writes three PUTs (one committed) with their contents; returns the
// journal file's size after the second one.
uint64_t WriteJournal(const fs::path& dir) {
  auto j = Journal::Create(dir);
  EXPECT_TRUE(j.ok()) << j.status();
  EXPECT_TRUE((*j)->AppendChange(1, 7, Put("a")).ok());
  EXPECT_TRUE((*j)->AppendContent(7, Content("aaa")).ok());
  EXPECT_TRUE((*j)->AppendDone(1).ok());
  EXPECT_TRUE((*j)->AppendChange(2, 8, Put("b")).ok());
  EXPECT_TRUE((*j)->AppendContent(8, Content("bbb")).ok());
  uint64_t size = fs::file_size(dir / "journal");
  EXPECT_TRUE((*j)->AppendChange(3, 9, Put("c")).ok());
  EXPECT_TRUE((*j)->AppendContent(9, Content("ccc")).ok());
  EXPECT_TRUE((*j)->Sync().ok());
  return size;
}

// SENT records: the newest send of a change replaces older ones, and a
// DONE at or past a set's first change ends it.
TEST(JournalTest, SentChangeSetsLiveUntilDoneOrResent) {
  cairn::testing::TempDir dir;
  auto j = Journal::Create(dir.path() / "m");
  ASSERT_TRUE(j.ok()) << j.status();
  objects::ChangeSet set;
  *set.add_changes() = Put("x");
  for (uint64_t seq = 1; seq <= 6; ++seq) {
    objects::Change remove;
    remove.set_kind(objects::Change::REMOVE);
    remove.set_path(absl::StrCat("p", seq));
    ASSERT_TRUE((*j)->AppendChange(seq, 0, remove).ok());
  }
  ASSERT_TRUE((*j)->AppendSent(1, 2, "k-done", set).ok());
  ASSERT_TRUE((*j)->AppendDone(2).ok());
  ASSERT_TRUE((*j)->AppendSent(3, 6, "k-replaced", set).ok());
  ASSERT_TRUE((*j)->AppendSent(3, 4, "k-live", set).ok());
  ASSERT_TRUE((*j)->AppendSent(5, 6, "k-later", set).ok());
  auto read = Journal::Read(dir.path() / "m");
  ASSERT_TRUE(read.ok()) << read.status();
  ASSERT_EQ(read->sent.size(), 2u);
  EXPECT_EQ(read->sent[0].key, "k-live");
  EXPECT_EQ(read->sent[0].first_seq, 3u);
  EXPECT_EQ(read->sent[0].last_seq, 4u);
  ASSERT_EQ(read->sent[0].changes.changes_size(), 1);
  EXPECT_EQ(read->sent[0].changes.changes(0).path(), "x");
  EXPECT_EQ(read->sent[1].key, "k-later");
  ASSERT_EQ(read->changes.size(), 4u);
  EXPECT_EQ(read->changes[0].seq, 3u);
  ASSERT_TRUE((*j)->AppendDone(5).ok());
  read = Journal::Read(dir.path() / "m");
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_TRUE(read->sent.empty());  // both decided
}

TEST(JournalTest, ReadsWhatWasNotDone) {
  cairn::testing::TempDir dir;
  WriteJournal(dir.path() / "m");
  auto read = Journal::Read(dir.path() / "m");
  ASSERT_TRUE(read.ok()) << read.status();
  ASSERT_EQ(read->changes.size(), 2u);
  EXPECT_EQ(read->changes[0].change.path(), "b");
  ASSERT_TRUE(read->changes[0].content.has_value());
  EXPECT_EQ(read->changes[0].content->staged->memory, "bbb");
  EXPECT_EQ(read->changes[0].content->entry.mode(), 0640u);
  EXPECT_EQ(read->changes[1].change.path(), "c");
}

// A crash in the middle of an append leaves a torn record at the tail: it
// and nothing before it is dropped.
TEST(JournalTest, TornOrCorruptTailIsIgnored) {
  cairn::testing::TempDir dir;
  fs::path m = dir.path() / "m";
  uint64_t two = WriteJournal(m);
  uint64_t full = fs::file_size(m / "journal");
  for (uint64_t cut = two + 1; cut < full; cut += 7) {
    fs::resize_file(m / "journal", cut);
    auto read = Journal::Read(m);
    ASSERT_TRUE(read.ok()) << read.status();
    // "c" lost its content record or itself; "b" survives whole.
    ASSERT_GE(read->changes.size(), 1u) << cut;
    EXPECT_EQ(read->changes[0].change.path(), "b");
    EXPECT_EQ(read->changes[0].content->staged->memory, "bbb");
    EXPECT_LE(read->changes.size() + read->dropped_puts, 2u);
  }
  // A flipped byte inside the last records: the checksum stops the reader.
  WriteJournal(m);
  {
    std::fstream f(m / "journal", std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(static_cast<std::streamoff>(two + 20));
    f.put('\xff');
  }
  auto read = Journal::Read(m);
  ASSERT_TRUE(read.ok());
  ASSERT_EQ(read->changes.size(), 1u);
  EXPECT_EQ(read->changes[0].change.path(), "b");
}

TEST(JournalTest, LeftoversSkipLiveJournalsAndDiscardEmptyOnes) {
  cairn::testing::TempDir dir;
  fs::path volume = dir.path() / "vo-x";
  WriteJournal(volume / "dead");
  auto live = Journal::Create(volume / "live");
  ASSERT_TRUE(live.ok());
  ASSERT_TRUE((*live)->AppendChange(1, 1, Put("live")).ok());
  {
    auto empty = Journal::Create(volume / "empty");
    ASSERT_TRUE(empty.ok());
    ASSERT_TRUE((*empty)->AppendChange(1, 0, Put("x")).ok());
    ASSERT_TRUE((*empty)->AppendDone(1).ok());
  }
  fs::create_directories(volume / "no-journal");
  auto leftovers = Journal::FindLeftovers(volume);
  ASSERT_TRUE(leftovers.ok()) << leftovers.status();
  ASSERT_EQ(leftovers->size(), 1u);
  EXPECT_EQ((*leftovers)[0].journal().dir.filename(), "dead");
  EXPECT_FALSE(fs::exists(volume / "empty"));
  EXPECT_FALSE(fs::exists(volume / "no-journal"));
  EXPECT_TRUE(fs::exists(volume / "live"));
  (*leftovers)[0].Discard();
  EXPECT_FALSE(fs::exists(volume / "dead"));
}

TEST(JournalTest, RewriteKeepsOnlyWhatIsGivenAndStaysLocked) {
  cairn::testing::TempDir dir;
  fs::path volume = dir.path() / "vo-x";
  auto j = Journal::Create(volume / "m");
  ASSERT_TRUE(j.ok());
  for (int i = 1; i <= 100; ++i) {
    ASSERT_TRUE((*j)->AppendChange(i, i, Put(absl::StrCat("f", i))).ok());
    ASSERT_TRUE((*j)->AppendContent(i, Content(std::string(1000, 'x'))).ok());
  }
  uint64_t before = (*j)->size();
  EXPECT_EQ(before, fs::file_size(volume / "m/journal"));
  ASSERT_TRUE((*j)->Rewrite({Journal::ChangeRecord(100, 100, Put("f100")),
                             Journal::ContentRecord(100, Content("last"))})
                  .ok());
  EXPECT_LT((*j)->size(), before / 50);
  ASSERT_TRUE((*j)->AppendChange(101, 101, Put("f101")).ok());
  ASSERT_TRUE((*j)->AppendContent(101, Content("new")).ok());
  EXPECT_EQ((*j)->size(), fs::file_size(volume / "m/journal"));
  auto leftovers = Journal::FindLeftovers(volume);
  ASSERT_TRUE(leftovers.ok());
  EXPECT_TRUE(leftovers->empty());  // still ours, still locked
  auto read = Journal::Read(volume / "m");
  ASSERT_TRUE(read.ok());
  ASSERT_EQ(read->changes.size(), 2u);
  EXPECT_EQ(read->changes[0].change.path(), "f100");
  EXPECT_EQ(read->changes[0].content->staged->memory, "last");
  EXPECT_EQ(read->changes[1].change.path(), "f101");
}

}  // namespace
}  // namespace cairn::mounter
