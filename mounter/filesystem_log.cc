// The change log and its journal: logging and coalescing changes, journal
// records of file content, replaying pending changes onto a new base, and
// taking over what a previous mount left (filesystem.h "Change log").
#include "mounter/filesystem.h"

#include <algorithm>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "core/log.h"
#include "core/path.h"
#include "core/status.h"
#include "mounter/filesystem_internal.h"

namespace cairn::mounter {

void Filesystem::LogLocked(objects::Change change, std::shared_ptr<Node> node) {
  uint64_t seq = JournalChangeLocked(change, node.get());
  log_.push_back({std::move(change), std::move(node), seq});
}

uint64_t Filesystem::JournalChangeLocked(const objects::Change& change, Node* node) {
  uint64_t seq = ++next_seq_;
  if (options_.journal != nullptr) {
    if (node && node->View(*this).jid == 0) node->Edit(*this).jid = ++next_jid_;
    JournalLocked(options_.journal->AppendChange(seq, node ? node->View(*this).jid : 0, change));
  }
  return seq;
}

uint64_t Filesystem::SentFirstSeqLocked(size_t begin) const {
  return (begin == 0 ? done_seq_ : prepared_[begin - 1].pending.seq) + 1;
}

void Filesystem::JournalSentLocked(size_t begin, size_t end, const objects::ChangeSet& changes) {
  if (options_.journal == nullptr) return;
  JournalLocked(options_.journal->AppendSent(SentFirstSeqLocked(begin),
                                             prepared_[end - 1].pending.seq,
                                             prepared_[begin].key, changes));
  JournalLocked(options_.journal->Sync());
}

void Filesystem::JournalLocked(const absl::Status& status) {
  if (status.ok() || journal_failed_.exchange(true)) return;
  // Commits go on; only crash safety is lost, and the status says so.
  CAIRN_LOG_ERROR("journal of %s failed; uncommitted changes are not crash-safe any more: %s",
                  volume_name_, status.ToString());
}

JournalContent Filesystem::ContentLocked(const Node& node) const {
  JournalContent content;
  objects::Entry& e = content.entry;
  if (node.type == objects::SYMLINK) {
    e.set_type(objects::SYMLINK);
    e.set_symlink_target(node.View(*this).symlink);
  } else if (IsSpecialFile(node.type)) {
    e.set_type(node.type);
  } else {
    if (!node.View(*this).staged && node.View(*this).base) e = *node.View(*this).base;
    e.set_type(objects::FILE);
    if (node.View(*this).staged) content.staged = node.View(*this).staged->Snapshot();
  }
  e.clear_name();
  e.set_mode(node.View(*this).mode);
  e.set_mtime_ns(node.View(*this).mtime_ns);
  e.set_link_id(node.View(*this).link_id);
  node.View(*this).PutAttributes(e);
  return content;
}

void Filesystem::JournalContentLocked(Node& node) {
  if (options_.journal == nullptr) return;
  if (node.View(*this).jid == 0) node.Edit(*this).jid = ++next_jid_;
  JournalLocked(options_.journal->AppendContent(node.View(*this).jid, ContentLocked(node)));
}

void Filesystem::MarkContentDirtyLocked(const std::shared_ptr<Node>& node) {
  node->Edit(*this).ctime_ns = NowNs();
  if (node->View(*this).UnseenLinks() > 0) {
    // Names of this base hard link in directories not listed yet would keep
    // the old content under the same link id, which must mean the same
    // content: the names this mount changes go on under a new id, and the
    // others stay a link of their own (docs/mounter.md).
    base_links_.erase(node->View(*this).link_id);
    Node::Fields& f = node->Edit(*this);
    f.link_id = next_link_id_.fetch_add(1);
    f.base_links = f.base_names_seen = 0;
  }
  if (node->View(*this).put_pending || !node->View(*this).attached) return;
  node->Edit(*this).put_pending = true;
  std::vector<std::string> paths = {VolumePathLocked(*node)};
  for (const auto& [dir, name] : node->View(*this).extra_links) {
    paths.push_back(JoinPath(VolumePathLocked(*dir), name));
  }
  for (const std::string& path : paths) {
    objects::Change change;
    change.set_kind(objects::Change::PUT);
    change.set_path(path);
    LogLocked(std::move(change), node);
  }
  JournalContentLocked(*node);
}

void Filesystem::LogMkdirLocked(const Node& dir) {
  objects::Change change;
  change.set_kind(objects::Change::MKDIR);
  change.set_path(VolumePathLocked(dir));
  change.mutable_entry()->set_type(objects::DIRECTORY);
  change.mutable_entry()->set_mode(dir.View(*this).mode);
  change.mutable_entry()->set_mtime_ns(dir.View(*this).mtime_ns);
  dir.View(*this).PutAttributes(*change.mutable_entry());
  LogLocked(std::move(change));
}

void Filesystem::Coalesce(std::vector<PendingChange>& log) {
  // Walk backwards keeping the paths a later REMOVE wipes: an earlier change
  // confined to such a subtree has no effect on the result, and sending it
  // could only fail (e.g. a path that was valid only for a moment). A RENAME
  // that moves something across the boundary ends the walk.
  absl::flat_hash_map<std::string, bool> removed;  // path → recursive
  auto covered = [&](const std::string& path, bool is_put) {
    if (removed.empty()) return false;
    // The path itself: removed by any later REMOVE if a file was put there,
    // by a recursive one whatever it is.
    if (auto it = removed.find(path); it != removed.end() && (it->second || is_put)) return true;
    for (size_t slash = path.rfind('/'); slash != std::string::npos && slash > 0;
         slash = path.rfind('/', slash - 1)) {
      auto it = removed.find(path.substr(0, slash));
      if (it != removed.end() && it->second) return true;
    }
    return false;
  };
  std::vector<bool> drop(log.size(), false);
  for (size_t i = log.size(); i-- > 0;) {
    const objects::Change& c = log[i].change;
    switch (c.kind()) {
      case objects::Change::REMOVE:
        if (covered(c.path(), false)) {
          drop[i] = true;
        } else {
          bool& recursive = removed[c.path()];
          recursive = recursive || c.recursive();
        }
        break;
      case objects::Change::RENAME: {
        bool from = covered(c.path(), false), to = covered(c.to(), false);
        if (from && to) {
          drop[i] = true;
        } else if (from || to) {
          removed.clear();
        }
        break;
      }
      case objects::Change::PUT:
        drop[i] = covered(c.path(), true);
        break;
      default:
        drop[i] = covered(c.path(), false);
        break;
    }
  }
  size_t out = 0;
  for (size_t i = 0; i < log.size(); ++i) {
    if (!drop[i]) log[out++] = std::move(log[i]);
  }
  log.resize(out);
}

void Filesystem::DoneLocked(uint64_t seq) {
  done_seq_ = std::max(done_seq_, seq);
  if (options_.journal == nullptr) return;
  JournalLocked(options_.journal->AppendDone(seq));
}

void Filesystem::ResetJournalIfCleanLocked() {
  if (options_.journal == nullptr) return;
  // Under mu_, so that no change is logged (and journaled) in between.
  absl::MutexLock lock(&mu_);
  if (prepared_.empty() && log_.empty()) {
    JournalLocked(options_.journal->Reset());
    return;
  }
  // A mount that is never idle at a commit: rewrite the journal down to
  // what is pending once it is much bigger than that.
  uint64_t size = options_.journal->size();
  if (size < options_.journal_compact_bytes || size < 4 * journal_compacted_size_) return;
  std::vector<std::string> records;
  absl::flat_hash_map<const Node*, bool> seen;
  auto add = [&](const PendingChange& pc) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (pc.node && pc.node->View(*this).jid == 0) pc.node->Edit(*this).jid = ++next_jid_;
    records.push_back(
        Journal::ChangeRecord(pc.seq, pc.node ? pc.node->View(*this).jid : 0, pc.change));
    if (pc.node && !seen[pc.node.get()]) {
      seen[pc.node.get()] = true;
      records.push_back(Journal::ContentRecord(pc.node->View(*this).jid, ContentLocked(*pc.node)));
    }
  };
  for (const Prepared& p : prepared_) add(p.pending);
  for (const PendingChange& pc : log_) add(pc);
  // Sets sent and not answered keep their keys across the rewrite.
  for (size_t begin = 0; begin < prepared_.size();) {
    size_t end = begin + 1;
    while (end < prepared_.size() && prepared_[end].key == prepared_[begin].key) ++end;
    if (!prepared_[begin].key.empty()) {
      objects::ChangeSet changes;
      for (size_t i = begin; i < end; ++i) *changes.add_changes() = prepared_[i].built;
      records.push_back(Journal::SentRecord(SentFirstSeqLocked(begin),
                                            prepared_[end - 1].pending.seq,
                                            prepared_[begin].key, changes));
    }
    begin = end;
  }
  absl::Status st = options_.journal->Rewrite(records);
  if (!st.ok()) {
    CAIRN_LOG_WARNING("rewriting the journal of %s failed (it keeps growing): %s", volume_name_,
                      st.ToString());
    return;
  }
  journal_compacted_size_ = options_.journal->size();
}

absl::flat_hash_map<uint64_t, uint64_t> Filesystem::KnownInodesOf(
    const RecoveredJournal& journal) {
  // Where each journaled node ends up once the journal's renames and
  // removals are applied (a file written as a temporary and renamed is
  // known to the kernel by its final name).
  absl::flat_hash_map<uint64_t, std::string> at;
  auto under = [](const std::string& path, const std::string& dir) {
    return path.size() > dir.size() && path.starts_with(dir) && path[dir.size()] == '/';
  };
  for (const RecoveredChange& rc : journal.changes) {
    const objects::Change& c = rc.change;
    if (c.kind() == objects::Change::PUT) {
      at[rc.node] = c.path();
    } else if (c.kind() == objects::Change::RENAME) {
      for (auto& [id, path] : at) {
        if (path == c.path()) {
          path = c.to();
        } else if (under(path, c.path())) {
          path = c.to() + path.substr(c.path().size());
        }
      }
    } else if (c.kind() == objects::Change::REMOVE) {
      for (auto& [id, path] : at) {
        if (path == c.path() || under(path, c.path())) path.clear();
      }
    }
  }
  absl::flat_hash_map<uint64_t, uint64_t> out;
  absl::ReaderMutexLock lock(&mu_);
  if (ino_hint_.empty()) return out;
  absl::flat_hash_set<uint64_t> taken;
  const std::string& sub = options_.sub_path;
  for (const auto& [id, volume_path] : at) {
    if (volume_path.empty()) continue;
    std::string path = volume_path;
    if (!sub.empty()) {
      if (!under(volume_path, sub)) continue;
      path = volume_path.substr(sub.size() + 1);
    }
    auto hint = ino_hint_.find(path);
    if (hint == ino_hint_.end() || hint->second.type == objects::DIRECTORY ||
        inodes_.contains(hint->second.ino) || !taken.insert(hint->second.ino).second) {
      continue;
    }
    out[id] = hint->second.ino;
  }
  return out;
}

absl::StatusOr<size_t> Filesystem::Recover(const std::vector<RecoveredJournal*>& journals) {
  CAIRN_RETURN_IF_ERROR(ReadOnlyCheck());
  absl::MutexLock commit_lock(&commit_mu_);
  {
    absl::ReaderMutexLock lock(&mu_);
    if (!prepared_.empty() || !log_.empty()) {
      return absl::FailedPreconditionError(
          "recovery of earlier mounts' changes must come before changes of this mount");
    }
  }
  // Nodes (and their staged files, moved into our directory) first: I/O,
  // outside mu_. One node per journaled node id, so hard links stay one.
  // The changes keep their old seq until they are journaled here.
  struct Taken {
    absl::flat_hash_map<uint64_t, std::shared_ptr<Node>> nodes;
    std::vector<PendingChange> changes;
  };
  std::vector<Taken> taken(journals.size());
  for (size_t j = 0; j < journals.size(); ++j) {
    RecoveredJournal& journal = *journals[j];
    auto& nodes = taken[j].nodes;
    absl::flat_hash_map<uint64_t, uint64_t> known_ino = KnownInodesOf(journal);
    for (RecoveredChange& rc : journal.changes) {
      PendingChange pc;
      pc.change = rc.change;
      pc.seq = rc.seq;
      if (rc.change.kind() == objects::Change::PUT) {
        std::shared_ptr<Node>& node = nodes[rc.node];
        if (!node) {
          const objects::Entry& e = rc.content->entry;
          bool symlink = e.type() == objects::SYMLINK;
          bool special = IsSpecialFile(e.type());
          Node::Fields fields;
          fields.TakeAttributes(e);
          fields.link_id = e.link_id();
          if (special) {
            // An entry only: nothing to restore.
          } else if (symlink) {
            fields.symlink = e.symlink_target();
          } else if (rc.content->staged) {
            auto staged = StagedFile::Restore(options_.staging_dir, journal.dir,
                                              *rc.content->staged, reader_);
            if (!staged.ok()) {
              CAIRN_LOG_ERROR("recovery: content of %s is lost: %s", rc.change.path(),
                              staged.status().ToString());
              nodes.erase(rc.node);
              continue;
            }
            fields.staged = *std::move(staged);
          } else {
            fields.base = std::make_shared<const objects::Entry>(e);
          }
          auto known = known_ino.find(rc.node);
          node = std::make_shared<Node>(
              known != known_ino.end() ? known->second : next_ino_.fetch_add(1),
              symlink || special ? e.type() : objects::FILE, std::move(fields));
        }
        pc.node = node;
        pc.change.clear_entry();
      }
      taken[j].changes.push_back(std::move(pc));
    }
  }
  size_t count = 0;
  {
    absl::MutexLock lock(&mu_);
    // The view shows the recovered state; what does not apply to the
    // current head is still sent, and the control plane decides.
    auto replay = [&](const PendingChange& pc) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      if (absl::Status st = ReplayLocked(pc); !st.ok()) {
        CAIRN_LOG_WARNING("recovery: change to %s does not apply to the head: %s",
                          pc.change.path(), st.ToString());
      }
      ++count;
    };
    // First every change set that may have been applied, as it was sent
    // and with its key, ahead of everything else (the journal's seq order is
    // the commit order, so DONE records keep meaning "all up to here").
    for (size_t j = 0; j < journals.size(); ++j) {
      std::vector<PendingChange>& changes = taken[j].changes;
      for (const RecoveredSent& sent : journals[j]->sent) {
        if (sent.changes.changes_size() == 0) continue;  // never sent: no key for it
        const size_t begin = prepared_.size();
        // Its changes, journaled under new seqs, in order.
        std::vector<PendingChange> covered;
        std::erase_if(changes, [&](PendingChange& pc) {
          if (pc.seq < sent.first_seq || pc.seq > sent.last_seq) return false;
          covered.push_back(std::move(pc));
          return true;
        });
        for (PendingChange& pc : covered) {
          replay(pc);
          pc.seq = JournalChangeLocked(pc.change, pc.node.get());
        }
        // One prepared change per change sent; each takes the node and seq
        // of the logged change it was built from (coalescing only dropped
        // some, so they match in order).
        size_t next = 0;
        for (const objects::Change& built : sent.changes.changes()) {
          Prepared p;
          p.built = built;
          p.key = sent.key;
          for (size_t k = next; k < covered.size(); ++k) {
            const objects::Change& c = covered[k].change;
            if (c.kind() == built.kind() && c.path() == built.path() && c.to() == built.to()) {
              p.pending = covered[k];
              next = k + 1;
              break;
            }
          }
          if (p.pending.node) p.staged = p.pending.node->View(*this).staged;
          if (p.pending.seq == 0) {
            p.pending.change = built;  // its node's content was lost
            p.pending.change.clear_entry();
            p.pending.seq = next > 0 ? covered[next - 1].seq : 0;
          }
          prepared_.push_back(std::move(p));
        }
        // DONE after it covers all its changes, also those coalesced away.
        const uint64_t last = covered.empty() ? ++next_seq_ : covered.back().seq;
        prepared_.back().pending.seq = std::max(prepared_.back().pending.seq, last);
        for (size_t i = begin; i < prepared_.size(); ++i) {
          if (prepared_[i].pending.seq == 0) prepared_[i].pending.seq = last;
        }
        JournalSentLocked(begin, prepared_.size(), sent.changes);
      }
    }
    // Then the rest, logged like this mount's own.
    for (Taken& t : taken) {
      for (PendingChange& pc : t.changes) {
        replay(pc);
        if (pc.node) pc.node->Edit(*this).put_pending = true;
        LogLocked(std::move(pc.change), std::move(pc.node));
      }
      for (auto& [id, node] : t.nodes) JournalContentLocked(*node);
    }
  }
  prepared_count_.store(prepared_.size());
  if (options_.journal != nullptr) CAIRN_RETURN_IF_ERROR(options_.journal->Sync());
  return count;
}

absl::Status Filesystem::ReplayLocked(const PendingChange& pc) {
  const objects::Change& c = pc.change;
  auto relative = [this](const std::string& path) -> absl::StatusOr<std::string> {
    if (options_.sub_path.empty()) return path;
    if (path == options_.sub_path) return std::string();
    if (path.size() > options_.sub_path.size() && path.starts_with(options_.sub_path) &&
        path[options_.sub_path.size()] == '/') {
      return path.substr(options_.sub_path.size() + 1);
    }
    return absl::InvalidArgumentError(absl::StrCat(path, " is outside the sub-path"));
  };
  CAIRN_ASSIGN_OR_RETURN(std::string path, relative(c.path()));
  auto [parent_path, name] = Split(path);
  switch (c.kind()) {
    case objects::Change::PUT: {
      if (!pc.node || name.empty()) return absl::OkStatus();
      CAIRN_ASSIGN_OR_RETURN(auto dir, WalkLocked(parent_path, /*create_dirs=*/true));
      CAIRN_RETURN_IF_ERROR(EnsureLoadedLocked(dir));
      auto it = dir->View(*this).children.find(name);
      if (it != dir->View(*this).children.end()) {
        if (it->second == pc.node) return absl::OkStatus();
        bool was_dir = it->second->type == objects::DIRECTORY;
        DetachLocked(dir, name);
        if (was_dir) --inode_count_;
      } else {
        ++inode_count_;
      }
      AttachLocked(dir, name, pc.node);
      return absl::OkStatus();
    }
    case objects::Change::MKDIR: {
      CAIRN_ASSIGN_OR_RETURN(auto dir, WalkLocked(path, /*create_dirs=*/true));
      if (dir->type == objects::DIRECTORY && (!path.empty() || c.entry().has_uid())) {
        Node::Fields& f = dir->Edit(*this);
        const int64_t subdirs = f.subdirs;
        f.TakeAttributes(c.entry());
        f.subdirs = subdirs;
      }
      return absl::OkStatus();
    }
    case objects::Change::REMOVE: {
      auto dir = WalkLocked(parent_path, /*create_dirs=*/false);
      if (!dir.ok()) return absl::OkStatus();
      CAIRN_RETURN_IF_ERROR(EnsureLoadedLocked(*dir));
      if ((*dir)->View(*this).children.contains(name)) {
        DetachLocked(*dir, name);
        --inode_count_;
      }
      return absl::OkStatus();
    }
    case objects::Change::RENAME: {
      CAIRN_ASSIGN_OR_RETURN(std::string to, relative(c.to()));
      auto dir = WalkLocked(parent_path, /*create_dirs=*/false);
      if (!dir.ok()) return absl::OkStatus();
      CAIRN_RETURN_IF_ERROR(EnsureLoadedLocked(*dir));
      auto it = (*dir)->View(*this).children.find(name);
      if (it == (*dir)->View(*this).children.end()) return absl::OkStatus();
      std::shared_ptr<Node> src = it->second;
      auto [to_parent, to_name] = Split(to);
      CAIRN_ASSIGN_OR_RETURN(auto new_dir, WalkLocked(to_parent, /*create_dirs=*/true));
      CAIRN_RETURN_IF_ERROR(EnsureLoadedLocked(new_dir));
      if (new_dir->View(*this).children.contains(to_name)) {
        DetachLocked(new_dir, to_name);
        --inode_count_;
      }
      DetachLocked(*dir, name);
      AttachLocked(new_dir, to_name, src);
      return absl::OkStatus();
    }
    default:
      return absl::OkStatus();
  }
}

}  // namespace cairn::mounter
