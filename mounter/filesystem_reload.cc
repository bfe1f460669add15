// Reload: switches the view to the current head and replays the pending
// changes on top, or puts the old view back (filesystem.h "Reload").
#include "mounter/filesystem.h"

#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/log.h"
#include "core/path.h"
#include "core/status.h"
#include "mounter/filesystem_internal.h"

namespace cairn::mounter {

namespace {

constexpr auto kBusyWait = absl::Milliseconds(500);

}  // namespace

std::string Filesystem::OpenPathExample(bool mu_held) {
  std::shared_ptr<Node> node;
  {
    absl::MutexLock lock(&handles_mu_);
    if (handles_.empty()) return "";
    node = handles_.begin()->second->node;
  }
  auto describe = [&]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
    return node->View(*this).attached ? "/" + PathLocked(*node) : std::string("(deleted file)");
  };
  if (mu_held) return describe();
  absl::ReaderMutexLock lock(&mu_);
  return describe();
}

absl::Status Filesystem::Reload() {
  absl::MutexLock commit_lock(&commit_mu_);
  // `mu_held`: called with mu_ already held (absl::Mutex is not reentrant).
  auto busy = [this](bool mu_held) -> absl::Status {
    int open;
    {
      absl::MutexLock lock(&handles_mu_);
      open = open_files_;
    }
    if (open == 0) return absl::OkStatus();
    std::string example = OpenPathExample(mu_held);
    std::string message = absl::StrCat("volume busy: ", open, " open file", open == 1 ? "" : "s",
                                       example.empty() ? "" : absl::StrCat(", e.g. ", example));
    return WithErrno(absl::FailedPreconditionError(message), EBUSY);
  };
  auto fail = [this](absl::Status status) {
    absl::MutexLock lock(&status_mu_);
    last_reload_error_ = std::string(status.message());
    CAIRN_LOG_WARNING("reload of %s refused: %s", volume_name_, last_reload_error_);
    return status;
  };
  // The kernel releases handles asynchronously after close(2): give
  // just-closed files a moment before calling the volume busy.
  absl::Time deadline = absl::Now() + kBusyWait;
  while (!busy(false).ok() && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(10));
  if (auto st = busy(false); !st.ok()) return fail(st);

  auto head = client_->Head(volume_id_);
  if (!head.ok()) return fail(head.status());
  auto root = Digest::FromRaw(head->root());
  if (!root.ok()) return fail(root.status());
  Digest tree = *root;
  uint32_t root_mode = kDefaultDirMode;
  int64_t root_mtime = head->created_at_ns();
  objects::Entry root_attributes;  // the root's stored owner and times, if any
  if (!options_.sub_path.empty()) {
    auto entry = LookupRepairing(*reader_, *objects_, *root, options_.sub_path);
    if (!entry.ok()) return fail(entry.status());
    if (entry->type() != objects::DIRECTORY) {
      return fail(Errno(ENOTDIR, absl::StrCat("sub-path ", options_.sub_path)));
    }
    auto t = Digest::FromRaw(entry->tree());
    if (!t.ok()) return fail(t.status());
    tree = *t;
    root_mode = entry->mode() ? entry->mode() : kDefaultDirMode;
    root_mtime = entry->mtime_ns();
    root_attributes = *entry;
  }
  auto warm = reader_->Directory(tree);
  if (!warm.ok()) return fail(warm.status());
  if (options_.sub_path.empty() && (*warm)->has_root()) root_attributes = (*warm)->root();
  int64_t root_subdirs = 0;
  for (const objects::Entry& e : (*warm)->entries()) root_subdirs += e.type() == objects::DIRECTORY;

  std::vector<uint64_t> inval_inodes;
  std::vector<std::pair<uint64_t, std::string>> inval_entries;
  {
    absl::MutexLock lock(&mu_);
    if (auto st = busy(true); !st.ok()) return fail(st);
    // Remember where every known inode was, so paths keep their numbers.
    absl::flat_hash_map<std::string, InoHint> ino_hint;
    absl::flat_hash_map<uint64_t, std::string> path_hint;
    for (const auto& [ino, path] : path_hint_) {
      auto old = ino_hint_.find(path);
      if (!inodes_.contains(ino) && old != ino_hint_.end() && old->second.ino == ino) {
        ino_hint[path] = old->second;
        path_hint[ino] = path;
      }
    }
    for (const auto& [ino, node] : inodes_) {
      inval_inodes.push_back(ino);
      if (ino == kRootIno || !node->View(*this).attached) continue;
      std::string path = PathLocked(*node);
      ino_hint[path] = InoHint{ino, node->type};
      path_hint[ino] = path;
      inval_entries.emplace_back(node->View(*this).parent->ino, node->View(*this).name);
    }
    // Everything the switch changes, so that a replay that fails can put the
    // old view back exactly (it never shows a view that differs from what
    // the next commit sends).
    struct Place {
      std::shared_ptr<Node> node;
      bool attached;
      Node* parent;
      std::string name;
      std::vector<std::pair<Node*, std::string>> extra_links;
    };
    std::vector<Place> places;
    places.reserve(inodes_.size());
    auto remember = [&](const std::shared_ptr<Node>& n) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      const Node::Fields& f = n->View(*this);
      places.push_back({n, f.attached, f.parent, f.name, f.extra_links});
    };
    for (const auto& [ino, n] : inodes_) remember(n);
    for (const Prepared& p : prepared_) {
      if (p.pending.node) remember(p.pending.node);
    }
    for (const PendingChange& pc : log_) {
      if (pc.node) remember(pc.node);
    }
    auto old_ino_hint = std::exchange(ino_hint_, std::move(ino_hint));
    auto old_path_hint = std::exchange(path_hint_, std::move(path_hint));
    auto old_inodes = std::move(inodes_);
    auto old_base_links = std::exchange(base_links_, {});
    inodes_ = old_inodes;  // the detach below walks it
    std::shared_ptr<Node> old_root = root_;
    api::Snapshot old_base = base_;
    int64_t old_inode_count = inode_count_;
    // The old tree goes away; an operation that looked a node of it up
    // before this reload may still hold it (it then fails with ESTALE, see
    // CheckCurrentLocked). Detach them all, so that nothing ever follows a
    // `parent` pointer into freed nodes.
    for (const auto& [ino, node] : inodes_) {
      node->Edit(*this).attached = false;
      node->Edit(*this).parent = nullptr;
      node->Edit(*this).extra_links.clear();
    }
    // Pending nodes are re-placed by the replay.
    auto detach = [this](const PendingChange& pc) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      if (!pc.node) return;
      pc.node->Edit(*this).attached = false;
      pc.node->Edit(*this).parent = nullptr;
      pc.node->Edit(*this).extra_links.clear();
    };
    for (const Prepared& p : prepared_) detach(p.pending);
    for (const PendingChange& pc : log_) detach(pc);
    auto node = std::make_shared<Node>(kRootIno, objects::DIRECTORY);
    node->Edit(*this).mode = root_mode;
    node->Edit(*this).mtime_ns = node->Edit(*this).ctime_ns = node->Edit(*this).atime_ns =
        root_mtime;
    if (root_attributes.has_uid()) node->Edit(*this).TakeAttributes(root_attributes);
    node->Edit(*this).subdirs = root_subdirs;
    node->Edit(*this).tree = tree;
    node->Edit(*this).attached = true;
    inodes_.clear();
    inodes_[kRootIno] = node;
    root_ = node;
    base_ = *head;
    inode_count_ = static_cast<int64_t>(head->inodes());
    ++generation_;
    std::vector<const PendingChange*> pending;
    for (const Prepared& p : prepared_) pending.push_back(&p.pending);
    for (const PendingChange& pc : log_) pending.push_back(&pc);
    for (const PendingChange* pcp : pending) {
      const PendingChange& pc = *pcp;
      absl::Status st = ReplayLocked(pc);
      if (st.ok()) continue;
      // Back to the old view, whole: the new tree is dropped unseen.
      for (Place& place : places) {
        place.node->Edit(*this).attached = place.attached;
        place.node->Edit(*this).parent = place.parent;
        place.node->Edit(*this).name = std::move(place.name);
        place.node->Edit(*this).extra_links = std::move(place.extra_links);
      }
      inodes_ = std::move(old_inodes);
      base_links_ = std::move(old_base_links);
      ino_hint_ = std::move(old_ino_hint);
      path_hint_ = std::move(old_path_hint);
      root_ = std::move(old_root);
      base_ = std::move(old_base);
      inode_count_ = old_inode_count;
      ++generation_;
      int err = StatusToErrno(st);
      return fail(WithErrno(
          absl::Status(st.code(), absl::StrCat("the pending change to /", pc.change.path(),
                                               " does not apply to the new head (",
                                               st.message(), "); commit it first")),
          err == EAGAIN || err == ENOSYS ? EIO : err));
    }
  }
  if (notifier_.inval_inode) {
    for (uint64_t ino : inval_inodes) notifier_.inval_inode(ino);
  }
  if (notifier_.inval_entry) {
    for (const auto& [parent, name] : inval_entries) notifier_.inval_entry(parent, name);
  }
  absl::MutexLock lock(&status_mu_);
  last_reload_time_ = absl::Now();
  last_reload_error_.clear();
  ++reloads_;
  CAIRN_LOG_INFO("reloaded %s at snapshot %d", volume_name_, head->seq());
  return absl::OkStatus();
}

}  // namespace cairn::mounter
