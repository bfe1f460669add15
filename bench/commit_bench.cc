// Commit latency against volume size, and bulk ingest throughput, on a real
// data directory (DESIGN.md §2: "a commit rewrites only the directories on
// the paths it changed, so its cost grows with the change, not with the
// volume").
//
//   cairn_commit_bench [--dir=PATH] [--meta=postgres://...] [--max_files=N] [--ingest_mib=N]
//
// --meta keeps the metadata in that PostgreSQL database (an empty one)
// instead of DIR/meta.db, as `cairn server --meta` does.
//
// Volumes of 1k..1M files are built through a bulk path (directory objects
// written bottom-up, one CommitSnapshot), then one-file commits are timed
// through Engine::Commit. Not part of ctest: it takes minutes.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "core/data_dir.h"
#include "core/files.h"
#include "core/status.h"

namespace cairn {
namespace {

using Clock = std::chrono::steady_clock;

constexpr uint64_t kFilesPerLeaf = 1000;
constexpr uint64_t kLeavesPerTop = 32;
constexpr int kTimedCommits = 21;

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

std::string Name(const char* prefix, uint64_t i) { return absl::StrFormat("%s%04d", prefix, i); }

objects::Entry DirEntry(const std::string& name, const Digest& tree, uint64_t inodes,
                        uint64_t bytes, int64_t now) {
  objects::Entry e;
  e.set_name(name);
  e.set_type(objects::DIRECTORY);
  e.set_mode(0755);
  e.set_mtime_ns(now);
  e.set_tree(tree.RawString());
  e.set_subtree_inodes(inodes);
  e.set_subtree_bytes(bytes);
  return e;
}

// Builds root/tNNNN/lNNNN/fNNNN with `files` small inline files, bottom-up,
// and makes it the head.
absl::StatusOr<SnapshotRecord> BuildVolume(Engine& engine, const VolumeRecord& volume,
                                           uint64_t files) {
  CAIRN_ASSIGN_OR_RETURN(std::unique_ptr<ObjectStore> objects, engine.OpenObjects(volume));
  const int64_t now = absl::ToUnixNanos(absl::Now());
  uint64_t leaves = (files + kFilesPerLeaf - 1) / kFilesPerLeaf;
  objects::Directory root;
  uint64_t total_inodes = 0, total_bytes = 0;
  for (uint64_t top = 0; top * kLeavesPerTop < leaves; ++top) {
    objects::Directory top_dir;
    uint64_t top_inodes = 0, top_bytes = 0;
    for (uint64_t l = top * kLeavesPerTop; l < std::min(leaves, (top + 1) * kLeavesPerTop); ++l) {
      objects::Directory leaf;
      uint64_t leaf_bytes = 0;
      uint64_t n = std::min(kFilesPerLeaf, files - l * kFilesPerLeaf);
      for (uint64_t f = 0; f < n; ++f) {
        objects::Entry* e = leaf.add_entries();
        e->set_name(Name("f", f));
        e->set_type(objects::FILE);
        e->set_mode(0644);
        e->set_mtime_ns(now);
        std::string content = absl::StrFormat("file %d of leaf %d\n", f, l);
        e->set_size(content.size());
        e->set_inline_data(std::move(content));
        leaf_bytes += e->size();
      }
      CAIRN_ASSIGN_OR_RETURN(Digest leaf_address, objects->PutDirectory(leaf));
      *top_dir.add_entries() =
          DirEntry(Name("l", l % kLeavesPerTop), leaf_address, n, leaf_bytes, now);
      top_inodes += 1 + n;
      top_bytes += leaf_bytes;
    }
    CAIRN_ASSIGN_OR_RETURN(Digest top_address, objects->PutDirectory(top_dir));
    *root.add_entries() = DirEntry(Name("t", top), top_address, top_inodes, top_bytes, now);
    total_inodes += 1 + top_inodes;
    total_bytes += top_bytes;
  }
  CAIRN_ASSIGN_OR_RETURN(Digest root_address, objects->PutDirectory(root));
  CAIRN_ASSIGN_OR_RETURN(SnapshotRecord head, engine.Head(volume.id));
  SnapshotRecord next;
  next.volume_id = volume.id;
  next.seq = head.seq + 1;
  next.parent_seq = head.seq;
  next.root = root_address;
  next.created_at_ns = now;
  next.inodes = total_inodes;
  next.bytes = total_bytes;
  CAIRN_RETURN_IF_ERROR(engine.meta()->CommitSnapshot(next, head.seq));
  return next;
}

struct Row {
  uint64_t files = 0;
  double build_s = 0;
  double median_ms = 0;
  double p90_ms = 0;
  uint64_t inodes = 0;
};

absl::StatusOr<Row> MeasureSize(Engine& engine, uint64_t files, std::mt19937& rng) {
  Row row;
  row.files = files;
  CAIRN_ASSIGN_OR_RETURN(VolumeRecord volume,
                         engine.CreateVolume("bench", absl::StrFormat("files-%d", files), 2));
  auto start = Clock::now();
  CAIRN_ASSIGN_OR_RETURN(SnapshotRecord built, BuildVolume(engine, volume, files));
  row.build_s = Seconds(Clock::now() - start);
  CAIRN_ASSIGN_OR_RETURN(std::unique_ptr<ObjectStore> objects, engine.OpenObjects(volume));
  uint64_t leaves = (files + kFilesPerLeaf - 1) / kFilesPerLeaf;
  std::vector<double> ms;
  SnapshotRecord last = built;
  for (int i = 0; i < kTimedCommits; ++i) {
    uint64_t leaf = rng() % leaves;
    std::string path = absl::StrFormat("%s/%s/new-%d", Name("t", leaf / kLeavesPerTop),
                                       Name("l", leaf % kLeavesPerTop), i);
    CAIRN_ASSIGN_OR_RETURN(objects::Entry entry,
                           StoreBytes(*objects, absl::StrFormat("commit %d\n", i), 0644, 1));
    objects::ChangeSet set;
    objects::Change* c = set.add_changes();
    c->set_kind(objects::Change::PUT);
    c->set_path(path);
    *c->mutable_entry() = entry;
    auto t0 = Clock::now();
    CAIRN_ASSIGN_OR_RETURN(last, engine.Commit(volume.id, set));
    ms.push_back(Seconds(Clock::now() - t0) * 1000);
  }
  std::sort(ms.begin(), ms.end());
  row.median_ms = ms[ms.size() / 2];
  row.p90_ms = ms[ms.size() * 9 / 10];
  row.inodes = last.inodes;
  return row;
}

// Pseudo-random bytes that neither compress nor dedup, cheaply.
void Fill(char* buf, size_t n, uint64_t& state) {
  for (size_t i = 0; i + 8 <= n; i += 8) {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    memcpy(buf + i, &state, 8);
  }
}

absl::Status Ingest(Engine& engine, uint64_t mib) {
  CAIRN_ASSIGN_OR_RETURN(VolumeRecord volume, engine.CreateVolume("bench", "ingest", 2));
  CAIRN_ASSIGN_OR_RETURN(std::unique_ptr<ObjectStore> objects, engine.OpenObjects(volume));

  // One large file through StoreFile: chunking, sealing, fsynced blob writes.
  uint64_t remaining = mib << 20;
  uint64_t state = 0x9E3779B97F4A7C15ull;
  ReadFn read = [&](char* buf, size_t n) -> absl::StatusOr<size_t> {
    size_t take = std::min<uint64_t>(n, remaining);
    Fill(buf, take, state);
    remaining -= take;
    return take;
  };
  auto t0 = Clock::now();
  CAIRN_ASSIGN_OR_RETURN(objects::Entry big, StoreFile(*objects, read, 0644, 1));
  objects::ChangeSet set;
  objects::Change* c = set.add_changes();
  c->set_kind(objects::Change::PUT);
  c->set_path("big.bin");
  *c->mutable_entry() = big;
  CAIRN_RETURN_IF_ERROR(engine.Commit(volume.id, set).status());
  double s = Seconds(Clock::now() - t0);
  absl::PrintF("large file  %6d MiB in %6.2f s   %8.1f MB/s\n", mib, s,
               static_cast<double>(mib << 20) / 1e6 / s);

  // Many small files (inline: no blob each) in one commit.
  constexpr int kSmall = 10000;
  t0 = Clock::now();
  set.Clear();
  uint64_t bytes = 0;
  for (int i = 0; i < kSmall; ++i) {
    std::string content(1024, '\0');
    Fill(content.data(), content.size(), state);
    CAIRN_ASSIGN_OR_RETURN(objects::Entry e, StoreBytes(*objects, content, 0644, 1));
    c = set.add_changes();
    c->set_kind(objects::Change::PUT);
    c->set_path(absl::StrFormat("small/%02d/%05d", i % 100, i));
    *c->mutable_entry() = std::move(e);
    bytes += content.size();
  }
  CAIRN_RETURN_IF_ERROR(engine.Commit(volume.id, set).status());
  s = Seconds(Clock::now() - t0);
  absl::PrintF("small files %6d x 1 KiB in %6.2f s   %8.0f files/s  %6.1f MB/s\n", kSmall, s,
               kSmall / s, static_cast<double>(bytes) / 1e6 / s);

  // Mid-size files: one chunk blob each.
  constexpr int kMid = 500;
  t0 = Clock::now();
  set.Clear();
  bytes = 0;
  for (int i = 0; i < kMid; ++i) {
    std::string content(16 << 10, '\0');
    Fill(content.data(), content.size(), state);
    CAIRN_ASSIGN_OR_RETURN(objects::Entry e, StoreBytes(*objects, content, 0644, 1));
    c = set.add_changes();
    c->set_kind(objects::Change::PUT);
    c->set_path(absl::StrFormat("mid/%02d/%05d", i % 20, i));
    *c->mutable_entry() = std::move(e);
    bytes += content.size();
  }
  CAIRN_RETURN_IF_ERROR(engine.Commit(volume.id, set).status());
  s = Seconds(Clock::now() - t0);
  absl::PrintF("mid files   %6d x 16 KiB in %6.2f s  %8.0f files/s  %6.1f MB/s\n", kMid, s,
               kMid / s, static_cast<double>(bytes) / 1e6 / s);
  return absl::OkStatus();
}

int Main(int argc, char** argv) {
  std::filesystem::path dir;
  DataDirOptions options;
  uint64_t max_files = 1'000'000;
  uint64_t ingest_mib = 256;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg.starts_with("--dir=")) {
      dir = std::string(arg.substr(6));
    } else if (arg.starts_with("--meta=")) {
      options.meta_url = std::string(arg.substr(7));
    } else if (arg.starts_with("--max_files=")) {
      max_files = std::strtoull(argv[i] + 12, nullptr, 10);
    } else if (arg.starts_with("--ingest_mib=")) {
      ingest_mib = std::strtoull(argv[i] + 13, nullptr, 10);
    } else {
      absl::FPrintF(stderr,
                    "usage: %s [--dir=PATH] [--meta=URL] [--max_files=N] [--ingest_mib=N]\n",
                    argv[0]);
      return 2;
    }
  }
  bool remove_dir = false;
  if (dir.empty()) {
    const char* base = std::getenv("TMPDIR");
    std::string tmpl = std::string(base && *base ? base : "/tmp") + "/cairn-bench-XXXXXX";
    if (mkdtemp(tmpl.data()) == nullptr) {
      absl::FPrintF(stderr, "mkdtemp %s failed\n", tmpl);
      return 1;
    }
    dir = tmpl;
    remove_dir = true;
  }
  int rc = 0;
  {
    absl::StatusOr<std::unique_ptr<DataDir>> data = DataDir::Open(dir, options);
    if (!data.ok()) {
      absl::FPrintF(stderr, "%s\n", data.status().ToString());
      return 1;
    }
    Engine& engine = (*data)->engine();
    std::mt19937 rng(7);
    absl::PrintF("data directory %s, metadata in %s\n\n", dir.string(),
                 options.meta_url.empty() ? "SQLite" : "PostgreSQL");
    absl::PrintF("%10s %10s %10s %12s %12s\n", "files", "inodes", "build s", "commit p50",
                 "commit p90");
    std::vector<Row> rows;
    for (uint64_t files = 1000; files <= max_files; files *= 10) {
      absl::StatusOr<Row> row = MeasureSize(engine, files, rng);
      if (!row.ok()) {
        absl::FPrintF(stderr, "%d files: %s\n", files, row.status().ToString());
        rc = 1;
        break;
      }
      absl::PrintF("%10d %10d %10.2f %10.2f ms %10.2f ms\n", row->files, row->inodes,
                   row->build_s, row->median_ms, row->p90_ms);
      std::fflush(stdout);
      rows.push_back(*row);
    }
    if (rows.size() > 1) {
      absl::PrintF("\nlatency(%d) / latency(%d) = %.2f\n\n", rows.back().files, rows.front().files,
                   rows.back().median_ms / rows.front().median_ms);
    }
    if (rc == 0 && ingest_mib > 0) {
      absl::Status s = Ingest(engine, ingest_mib);
      if (!s.ok()) {
        absl::FPrintF(stderr, "ingest: %s\n", s.ToString());
        rc = 1;
      }
    }
  }
  if (remove_dir) {
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
  return rc;
}

}  // namespace
}  // namespace cairn

int main(int argc, char** argv) { return cairn::Main(argc, argv); }
