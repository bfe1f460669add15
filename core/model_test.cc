// Model-based test of commits (C3, C4): several simulated mounts, each a
// base snapshot plus a list of pending changes, make random edits and
// random commits and reloads against the real on-disk stores. A reference
// model (a map from path to content) applies the same changes; after every
// commit the engine's snapshot must equal the model, and old snapshots must
// never change.
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <map>
#include <optional>
#include <ostream>
#include <random>
#include <string>
#include <vector>

#include "core/blob_store.h"
#include "core/blob_store_s3.h"
#include "core/engine.h"
#include "core/files.h"
#include "core/meta_store.h"
#include "core/testing/postgres_server.h"
#include "core/testing/s3_server.h"
#include "core/testing/temp_dir.h"
#include "core/tree.h"
#include "gtest/gtest.h"

namespace cairn {
namespace {

using objects::Change;
using objects::ChangeSet;
using objects::Entry;

struct Node {
  bool dir = false;
  std::string content;
  friend bool operator==(const Node&, const Node&) = default;
};
using Model = std::map<std::string, Node>;

std::string Join(const std::string& dir, const std::string& name) {
  return dir.empty() ? name : dir + "/" + name;
}

bool Below(const std::string& path, const std::string& dir) {
  return path.size() > dir.size() && path.compare(0, dir.size(), dir) == 0 &&
         path[dir.size()] == '/';
}

void RemoveSubtree(Model& m, const std::string& path) {
  m.erase(path);
  for (auto it = m.lower_bound(path + "/"); it != m.end() && Below(it->first, path);) {
    it = m.erase(it);
  }
}

// Missing parents become directories; a file in the way is replaced.
void EnsureParents(Model& m, const std::string& path) {
  for (size_t slash = path.find('/'); slash != std::string::npos;
       slash = path.find('/', slash + 1)) {
    Node& n = m[path.substr(0, slash)];
    if (!n.dir) n = Node{true, ""};
  }
}

// The reference semantics of one change (proto/objects.proto), written
// independently of tree.cc.
void ApplyModel(Model& m, const Change& c) {
  const std::string& path = c.path();
  switch (c.kind()) {
    case Change::PUT:
      EnsureParents(m, path);
      RemoveSubtree(m, path);
      m[path] = Node{false, c.entry().inline_data().empty() && c.entry().size() > 0
                                ? "<chunked>"
                                : c.entry().inline_data()};
      break;
    case Change::MKDIR: {
      EnsureParents(m, path);
      auto it = m.find(path);
      if (it != m.end() && it->second.dir) break;
      m[path] = Node{true, ""};
      break;
    }
    case Change::REMOVE:
      RemoveSubtree(m, path);
      break;
    case Change::RENAME: {
      const std::string& to = c.to();
      if (!m.contains(path) || to == path) break;
      std::vector<std::pair<std::string, Node>> moved;
      moved.emplace_back(to, m[path]);
      for (auto it = m.lower_bound(path + "/"); it != m.end() && Below(it->first, path); ++it) {
        moved.emplace_back(to + it->first.substr(path.size()), it->second);
      }
      RemoveSubtree(m, path);
      RemoveSubtree(m, to);
      EnsureParents(m, to);
      for (auto& [p, n] : moved) m[p] = n;
      break;
    }
    default:
      FAIL() << "unexpected change kind";
  }
}

struct Mount {
  uint64_t base_seq = 0;
  Model view;  // base snapshot + pending, as the mount's user sees it
  std::vector<Change> pending;
};

// Where the metadata and the blobs live (SQLite or a real PostgreSQL; the
// local store or S3 — a real versitygw, one key prefix per test), and the
// random seed.
struct ModelParam {
  bool postgres = false;
  bool s3 = false;
  uint32_t seed = 0;
  friend std::ostream& operator<<(std::ostream& os, const ModelParam& p) {
    return os << (p.postgres ? "postgres" : "sqlite") << (p.s3 ? "+s3" : "") << " seed "
              << p.seed;
  }
};

class ModelTest : public ::testing::TestWithParam<ModelParam> {
 protected:
  void SetUp() override {
    // This test is about commit semantics, not durability (crash_test covers
    // that on the real TMPDIR), and fsync dominates its runtime: use tmpfs
    // when the machine has one.
    std::error_code ec;
    if (std::filesystem::is_directory("/dev/shm", ec) && access("/dev/shm", W_OK) == 0) {
      std::string tmpl = "/dev/shm/cairn-model-XXXXXX";
      if (mkdtemp(tmpl.data()) != nullptr) root_ = tmpl;
    }
    if (root_.empty()) {
      dir_.emplace();
      root_ = dir_->path();
    }
    if (GetParam().postgres) {
      CAIRN_REQUIRE_POSTGRES(pg);
      absl::StatusOr<std::string> url = pg->NewDatabase();
      ASSERT_TRUE(url.ok()) << url.status();
      absl::StatusOr<std::unique_ptr<MetaStore>> meta = OpenPostgresMetaStore(*url);
      ASSERT_TRUE(meta.ok()) << meta.status();
      meta_ = *std::move(meta);
    } else {
      meta_ = OpenSqliteMetaStore(root_ / "meta.db").value();
    }
    if (GetParam().s3) {
      CAIRN_REQUIRE_S3(server);
      auto s3 = OpenS3BlobStore(server->Config(testing::S3TestServer::UniquePrefix()));
      ASSERT_TRUE(s3.ok()) << s3.status();
      blobs_ = *std::move(s3);
    } else {
      blobs_ = OpenLocalBlobStore(root_ / "blobs").value();
    }
    engine_ = std::make_unique<Engine>(meta_.get(), blobs_.get(),
                                       MasterKey::FromBytes(std::string(32, 'M')).value());
    volume_ = engine_->CreateVolume("", "model", 2).value();
    objects_ = engine_->OpenObjects(volume_).value();
  }

  // The engine's tree at `root`, every file read back in full.
  Model ReadEngine(const Digest& root) {
    Model out;
    absl::Status s = WalkTree(*objects_, root, "", [&](const std::string& p, const Entry& e) {
      if (e.type() == objects::DIRECTORY) {
        out[p] = Node{true, ""};
      } else {
        absl::StatusOr<std::string> content = ReadFileRange(*objects_, e, 0, e.size());
        EXPECT_TRUE(content.ok()) << p << ": " << content.status();
        out[p] = Node{false, content.value_or("<unreadable>")};
      }
      return true;
    });
    EXPECT_TRUE(s.ok()) << s;
    return out;
  }

  static void CheckTotals(const SnapshotRecord& s, const Model& m) {
    uint64_t bytes = 0;
    for (const auto& [p, n] : m) bytes += n.content.size();
    EXPECT_EQ(s.inodes, m.size()) << "snapshot " << s.seq;
    EXPECT_EQ(s.bytes, bytes) << "snapshot " << s.seq;
  }

  void TearDown() override {
    objects_.reset();
    engine_.reset();
    blobs_.reset();
    meta_.reset();
    if (!dir_) {
      std::error_code ec;
      std::filesystem::remove_all(root_, ec);
    }
  }

  std::optional<testing::TempDir> dir_;
  std::filesystem::path root_;
  std::unique_ptr<MetaStore> meta_;
  std::unique_ptr<BlobStore> blobs_;
  std::unique_ptr<Engine> engine_;
  VolumeRecord volume_;
  std::unique_ptr<ObjectStore> objects_;
};

TEST_P(ModelTest, RandomEditsCommitsAndReloadsMatchTheModel) {
  std::mt19937 rng(GetParam().seed);
  auto pick = [&](size_t n) { return static_cast<size_t>(rng() % n); };
  const std::vector<std::string> names = {"a", "b", "c", "d", "e.txt"};

  constexpr int kMounts = 4;
  constexpr int kSteps = 4000;
  std::map<uint64_t, Model> expected;  // by snapshot seq
  expected[0] = {};
  std::vector<Mount> mounts(kMounts);
  int commits = 0;
  int edits = 0;

  // Replace the "<chunked>" placeholder ApplyModel writes with the content
  // the mount uploaded, so models compare byte-for-byte.
  auto resolve = [](Model& m, const std::map<std::string, std::string>& chunked,
                    const Change& c) {
    if (c.kind() == Change::PUT && m[c.path()].content == "<chunked>") {
      m[c.path()].content = chunked.at(c.entry().chunks(0));
    }
  };
  std::map<std::string, std::string> chunk_bytes;  // first chunk address -> content

  for (int step = 0; step < kSteps; ++step) {
    Mount& mount = mounts[pick(kMounts)];
    std::vector<std::string> files, dirs = {""};
    for (const auto& [p, n] : mount.view) (n.dir ? dirs : files).push_back(p);
    int op = static_cast<int>(pick(100));
    Change c;
    if (op < 35) {  // create or overwrite a file
      std::string path;
      if (!files.empty() && pick(3) == 0) {
        path = files[pick(files.size())];
      } else {
        path = Join(dirs[pick(dirs.size())], names[pick(names.size())]);
        if (pick(4) == 0) path = Join(path, names[pick(names.size())]);  // new parents
      }
      std::string content;
      if (pick(20) == 0) {
        content = std::string(kInlineMax + 1 + pick(3000), static_cast<char>('A' + pick(26)));
        content += std::to_string(step);
      } else {
        content = "step " + std::to_string(step) + std::string(pick(40), 'x');
      }
      c.set_kind(Change::PUT);
      c.set_path(path);
      absl::StatusOr<Entry> e = StoreBytes(*objects_, content, 0644, step);
      ASSERT_TRUE(e.ok()) << e.status();
      *c.mutable_entry() = *e;
      if (e->chunks_size() > 0) chunk_bytes[e->chunks(0)] = content;
    } else if (op < 45) {  // mkdir
      c.set_kind(Change::MKDIR);
      c.set_path(Join(dirs[pick(dirs.size())], names[pick(names.size())]));
      c.mutable_entry()->set_type(objects::DIRECTORY);
      c.mutable_entry()->set_mode(0755);
    } else if (op < 58) {  // remove a file
      if (files.empty()) continue;
      c.set_kind(Change::REMOVE);
      c.set_path(files[pick(files.size())]);
      c.set_recursive(true);  // on the head it may have become a directory
    } else if (op < 65) {  // remove a directory tree
      if (dirs.size() < 2) continue;
      c.set_kind(Change::REMOVE);
      c.set_path(dirs[1 + pick(dirs.size() - 1)]);
      c.set_recursive(true);
    } else if (op < 78) {  // rename a file or directory
      std::vector<std::string> all = files;
      all.insert(all.end(), dirs.begin() + 1, dirs.end());
      if (all.empty()) continue;
      std::string from = all[pick(all.size())];
      std::string to_dir = dirs[pick(dirs.size())];
      std::string to = Join(to_dir, names[pick(names.size())]);
      if (to == from || Below(to, from)) continue;
      c.set_kind(Change::RENAME);
      c.set_path(from);
      c.set_to(to);
    } else if (op < 90) {  // commit
      ChangeSet set;
      for (const Change& p : mount.pending) *set.add_changes() = p;
      uint64_t head_before = engine_->Head(volume_.id)->seq;
      absl::StatusOr<SnapshotRecord> s = engine_->Commit(volume_.id, set);
      ASSERT_TRUE(s.ok()) << "step " << step << ": " << s.status();
      if (mount.pending.empty()) {
        EXPECT_EQ(s->seq, head_before);
      } else {
        EXPECT_EQ(s->seq, head_before + 1);
        Model next = expected[head_before];
        for (const Change& p : mount.pending) {
          ApplyModel(next, p);
          resolve(next, chunk_bytes, p);
        }
        expected[s->seq] = next;
        ++commits;
        Model got = ReadEngine(s->root);
        ASSERT_EQ(got, next) << "seed " << GetParam().seed << " step " << step << " seq " << s->seq;
        CheckTotals(*s, next);
      }
      // After a commit the mount sees the new head (its changes included).
      mount.base_seq = s->seq;
      mount.view = expected[s->seq];
      mount.pending.clear();
      continue;
    } else if (op < 96) {  // reload: the current head plus own pending changes (C5)
      SnapshotRecord head = engine_->Head(volume_.id).value();
      mount.base_seq = head.seq;
      mount.view = expected[head.seq];
      for (const Change& p : mount.pending) {
        ApplyModel(mount.view, p);
        resolve(mount.view, chunk_bytes, p);
      }
      continue;
    } else {  // an old snapshot still reads exactly as it did (C2, C3)
      uint64_t seq = pick(expected.size());
      SnapshotRecord s = meta_->GetSnapshot(volume_.id, seq).value();
      ASSERT_EQ(ReadEngine(s.root), expected[seq]) << "snapshot " << seq << " changed";
      // The mount's own view, computed by the engine from its base and
      // pending changes, equals the model's view too.
      SnapshotRecord base = meta_->GetSnapshot(volume_.id, mount.base_seq).value();
      ChangeSet set;
      for (const Change& p : mount.pending) *set.add_changes() = p;
      absl::StatusOr<ApplyResult> local = ApplyChanges(*objects_, base.root, set, volume_.limits);
      ASSERT_TRUE(local.ok()) << local.status();
      ASSERT_EQ(ReadEngine(local->root), mount.view) << "step " << step;
      continue;
    }
    ++edits;
    mount.pending.push_back(c);
    ApplyModel(mount.view, c);
    resolve(mount.view, chunk_bytes, c);
  }

  // Every snapshot, at the end.
  std::vector<SnapshotRecord> snapshots = meta_->ListSnapshots(volume_.id).value();
  EXPECT_EQ(snapshots.size(), expected.size());
  for (const SnapshotRecord& s : snapshots) {
    ASSERT_TRUE(expected.contains(s.seq));
    ASSERT_EQ(ReadEngine(s.root), expected[s.seq]) << "snapshot " << s.seq;
    CheckTotals(s, expected[s.seq]);
  }
  EXPECT_GT(commits, 100);
  EXPECT_GT(edits, 500);
  EXPECT_GT(expected.rbegin()->second.size(), 0u);
}

std::string ModelName(const ::testing::TestParamInfo<ModelParam>& info) {
  return std::to_string(info.param.seed);
}

INSTANTIATE_TEST_SUITE_P(Sqlite, ModelTest,
                         ::testing::Values(ModelParam{false, false, 1}, ModelParam{false, false, 2},
                                           ModelParam{false, false, 3}, ModelParam{false, false, 4},
                                           ModelParam{false, false, 5}, ModelParam{false, false, 42},
                                           ModelParam{false, false, 1234},
                                           ModelParam{false, false, 2026}),
                         ModelName);
// Fewer seeds on real servers: every commit is several round trips.
INSTANTIATE_TEST_SUITE_P(Postgres, ModelTest,
                         ::testing::Values(ModelParam{true, false, 1}, ModelParam{true, false, 42},
                                           ModelParam{true, false, 2026}),
                         ModelName);
INSTANTIATE_TEST_SUITE_P(S3, ModelTest,
                         ::testing::Values(ModelParam{false, true, 1}, ModelParam{false, true, 42}),
                         ModelName);
// Both scale-out backends together, as a replicated control plane runs.
INSTANTIATE_TEST_SUITE_P(PostgresS3, ModelTest,
                         ::testing::Values(ModelParam{true, true, 7}), ModelName);

}  // namespace
}  // namespace cairn
