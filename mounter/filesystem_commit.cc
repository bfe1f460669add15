// The committer: prepares the change log into a change set, uploads it,
// sends it with one idempotency key until answered, isolates changes that
// can never succeed, and schedules background commits (filesystem.h
// "Committer").
#include "mounter/filesystem.h"

#include <algorithm>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "core/crypto.h"
#include "core/log.h"
#include "core/status.h"
#include "mounter/filesystem_internal.h"

namespace cairn::mounter {

namespace {

constexpr auto kMaxCommitBackoff = absl::Seconds(1);

}  // namespace

size_t Filesystem::StuckCount() {
  absl::MutexLock lock(&status_mu_);
  return stuck_.size();
}

bool Filesystem::Dirty() {
  if (prepared_count_.load() != 0) return true;
  absl::ReaderMutexLock lock(&mu_);
  return !log_.empty();
}

CommitErrorKind ClassifyCommitError(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kResourceExhausted:
    case absl::StatusCode::kOutOfRange:
    case absl::StatusCode::kAlreadyExists:
      return CommitErrorKind::kNever;
    case absl::StatusCode::kFailedPrecondition:
      // core/engine.cc: "object … referenced by … is not stored" (GC took an
      // upload, or it never landed).
      return absl::StrContains(status.message(), "is not stored") ? CommitErrorKind::kReupload
                                                                   : CommitErrorKind::kNever;
    case absl::StatusCode::kNotFound:
      // The volume itself gone fails every change alike: nothing to isolate.
      return absl::StartsWith(status.message(), "volume ") ? CommitErrorKind::kRetry
                                                           : CommitErrorKind::kNever;
    default:
      return CommitErrorKind::kRetry;
  }
}

absl::Status Filesystem::Commit(bool report_stuck) {
  if (options_.read_only) return absl::OkStatus();
  absl::MutexLock lock(&commit_mu_);
  CAIRN_RETURN_IF_ERROR(CommitLocked());
  if (!report_stuck) return absl::OkStatus();
  absl::MutexLock status_lock(&status_mu_);
  if (stuck_unreported_ == 0) return absl::OkStatus();
  // The errno of the first newly stuck change (ENOSPC, EFBIG, …) tells the
  // caller why; the status lists every path.
  const Stuck& first = stuck_[stuck_.size() - stuck_unreported_];
  absl::Status st(first.error.code(),
                  absl::StrCat(stuck_unreported_, " change", stuck_unreported_ == 1 ? "" : "s",
                               " can never be committed and stay local only (see `stuck` in "
                               "the status), e.g. ",
                               first.path, ": ", first.error.message()));
  int err = StatusToErrno(first.error);
  stuck_unreported_ = 0;
  last_commit_error_ = std::string(st.message());
  return WithErrno(std::move(st), err == EAGAIN || err == ENOSYS ? EIO : err);
}

absl::Status Filesystem::PrepareLocked() {
  std::vector<PendingChange> batch;
  std::vector<Prepared> prepared;
  {
    absl::MutexLock lock(&mu_);
    if (log_.empty()) return absl::OkStatus();
    batch.swap(log_);
    Coalesce(batch);
    prepared.reserve(batch.size());
    for (PendingChange& pc : batch) {
      Prepared p;
      p.built = pc.change;
      if (pc.node) {
        Node::Fields& n = pc.node->Edit(*this);
        n.put_pending = false;  // writes from now on log a new PUT
        p.staged = n.staged;
        // The entry's metadata as of now; content below, from `staged`.
        objects::Entry& e = *p.built.mutable_entry();
        e.Clear();
        if (pc.node->type == objects::SYMLINK) {
          e.set_type(objects::SYMLINK);
          e.set_mode(0777);
          e.set_symlink_target(n.symlink);
        } else if (IsSpecialFile(pc.node->type)) {
          e.set_type(pc.node->type);
          e.set_mode(n.mode);
        } else {
          if (!n.staged && n.base) e = *n.base;
          e.set_type(objects::FILE);
          e.set_mode(n.mode);
        }
        e.set_mtime_ns(n.mtime_ns);
        e.clear_name();
        e.set_link_id(n.extra_links.empty() ? (n.link_id && limits_.hard_links ? n.link_id : 0)
                                            : n.link_id);
        if (e.link_id() != 0) {
          e.set_nlink(1 + n.extra_links.size());
        } else {
          e.clear_nlink();
        }
        n.PutAttributes(e);
      }
      p.pending = std::move(pc);
      prepared.push_back(std::move(p));
    }
  }
  size_t begin = prepared_.size();
  for (Prepared& p : prepared) prepared_.push_back(std::move(p));
  prepared_count_.store(prepared_.size());
  absl::Status built = RebuildLocked(begin, prepared_.size());
  if (!built.ok()) {
    // Nothing of these was sent: back into the log, in front of what was
    // logged meanwhile.
    std::vector<PendingChange> back;
    for (size_t i = begin; i < prepared_.size(); ++i) back.push_back(std::move(prepared_[i].pending));
    prepared_.resize(begin);
    prepared_count_.store(prepared_.size());
    absl::MutexLock lock(&mu_);
    for (const PendingChange& pc : back) {
      if (pc.node) pc.node->Edit(*this).put_pending = true;
    }
    log_.insert(log_.begin(), std::make_move_iterator(back.begin()),
                std::make_move_iterator(back.end()));
  }
  return built;
}

absl::Status Filesystem::RebuildLocked(size_t begin, size_t end) {
  // One entry per staged node, shared by all its names (hard links).
  absl::flat_hash_map<const StagedFile*, objects::Entry> stored;
  for (size_t i = begin; i < end; ++i) {
    Prepared& p = prepared_[i];
    if (!p.pending.node || !p.staged) continue;
    auto it = stored.find(p.staged.get());
    objects::Entry& e = *p.built.mutable_entry();
    if (it == stored.end()) {
      CAIRN_ASSIGN_OR_RETURN(objects::Entry content,
                             p.staged->Store(*objects_, e.mode(), e.mtime_ns()));
      it = stored.emplace(p.staged.get(), std::move(content)).first;
    }
    // The content entry, with this change's link id, owner and times.
    objects::Entry attributes = std::move(e);
    e = it->second;
    e.clear_name();
    e.set_link_id(attributes.link_id());
    if (attributes.has_nlink()) e.set_nlink(attributes.nlink());
    if (attributes.has_uid()) e.set_uid(attributes.uid());
    if (attributes.has_gid()) e.set_gid(attributes.gid());
    e.set_atime_ns(attributes.atime_ns());
    e.set_ctime_ns(attributes.ctime_ns());
  }
  return absl::OkStatus();
}

void Filesystem::CommittedLocked(size_t n, const api::Snapshot& snapshot, absl::Time start) {
  {
    // Committed files that nobody has open or changed since become plain
    // base files again: their staging file (and its descriptor) goes, and
    // reads come from the chunks just uploaded (also in the disk cache).
    absl::MutexLock lock(&mu_);
    for (size_t i = 0; i < n; ++i) {
      const Prepared& p = prepared_[i];
      if (!p.pending.node) continue;
      Node& node = *p.pending.node;
      Node::Fields& f = node.Edit(*this);
      if (node.type != objects::FILE || !f.staged || f.staged != p.staged || f.put_pending ||
          node.open.load() != 0 || node.modifying.load() != 0) {
        continue;
      }
      f.base = std::make_shared<const objects::Entry>(p.built.entry());
      f.staged = nullptr;
    }
  }
  DoneLocked(prepared_[n - 1].pending.seq);
  prepared_.erase(prepared_.begin(), prepared_.begin() + n);
  prepared_count_.store(prepared_.size());
  ResetJournalIfCleanLocked();
  absl::MutexLock lock(&status_mu_);
  last_commit_time_ = absl::Now();
  last_commit_seq_ = snapshot.seq();
  last_commit_error_.clear();
  ++commits_;
  CAIRN_LOG_INFO("committed %d changes to %s as snapshot %d in %s", n, volume_name_,
                 snapshot.seq(), absl::FormatDuration(absl::Now() - start));
}

absl::Status Filesystem::CommitLocked() {
  absl::Time start = absl::Now();
  absl::Status prepared = PrepareLocked();
  uint64_t base_seq;
  {
    absl::ReaderMutexLock lock(&mu_);
    base_seq = base_.seq();
  }
  auto failed = [&](const absl::Status& st, size_t n) {
    absl::MutexLock lock(&status_mu_);
    last_commit_error_ = st.ToString();
    ++failed_commits_;
    CAIRN_LOG_WARNING("commit of %d changes to %s failed (will retry): %s", n, volume_name_,
                      last_commit_error_);
    return st;
  };
  // How many prepared changes the next change set holds: all of them, or
  // fewer while looking for one that can never succeed.
  size_t limit = prepared_.size();
  bool reuploaded = false;
  while (!prepared_.empty()) {
    // The leading run sent with one key and not answered for sure is resent
    // exactly, with that key; else up to `limit` changes not sent yet go
    // out with a new one.
    size_t n = 1;
    const bool resend = !prepared_.front().key.empty();
    if (resend) {
      while (n < prepared_.size() && prepared_[n].key == prepared_.front().key) ++n;
    } else {
      const size_t most = std::min(limit, prepared_.size());
      while (n < most && prepared_[n].key.empty()) ++n;
    }
    objects::ChangeSet changes;
    for (size_t i = 0; i < n; ++i) *changes.add_changes() = prepared_[i].built;
    if (!resend) {
      const std::string key = absl::BytesToHexString(RandomBytes(16));
      for (size_t i = 0; i < n; ++i) prepared_[i].key = key;
      JournalSentLocked(0, n, changes);
    }
    absl::StatusOr<api::Snapshot> result =
        client_->Commit(volume_id_, base_seq, changes, prepared_.front().key);
    if (result.ok()) {
      CommittedLocked(n, *result, start);
      limit = prepared_.size();
      continue;
    }
    // Refused, so the key is free (a resend after a crash is refused again).
    auto forget_key = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(commit_mu_) {
      for (size_t i = 0; i < n; ++i) prepared_[i].key.clear();
    };
    switch (ClassifyCommitError(result.status())) {
      case CommitErrorKind::kRetry:
        // The keys stay: the next attempt resends this set.
        return failed(result.status(), n);
      case CommitErrorKind::kReupload:
        forget_key();  // and the content changes
        if (reuploaded) return failed(result.status(), n);
        reuploaded = true;
        if (absl::Status st = RebuildLocked(0, n); !st.ok()) return failed(st, n);
        break;
      case CommitErrorKind::kNever:
        forget_key();
        if (n > 1) {
          // Commit the first half alone: the log is ordered, so any prefix
          // is a state the mount went through. Halving finds the change.
          limit = n / 2;
          break;
        }
        {
          const Prepared& p = prepared_.front();
          CAIRN_LOG_ERROR("change to %s in %s can never be committed (%s); keeping it local "
                          "only and committing the rest",
                          p.built.path(), volume_name_, result.status().ToString());
          absl::MutexLock lock(&status_mu_);
          stuck_.push_back({p.built.path(), result.status()});
          ++stuck_unreported_;
          last_commit_error_ = absl::StrCat(p.built.path(), ": ", result.status().ToString());
        }
        DoneLocked(prepared_.front().pending.seq);
        prepared_.erase(prepared_.begin());
        prepared_count_.store(prepared_.size());
        limit = prepared_.size();
        ResetJournalIfCleanLocked();
        break;
    }
  }
  if (!prepared.ok()) return failed(prepared, 0);
  return absl::OkStatus();
}

absl::Duration Filesystem::BackgroundTick(absl::Duration interval) {
  if (options_.read_only || !Dirty()) return interval;
  {
    absl::MutexLock lock(&status_mu_);
    absl::Time now = absl::Now();
    if (now < next_attempt_) return std::min(interval, next_attempt_ - now);
  }
  absl::Status st = Commit();
  absl::MutexLock lock(&status_mu_);
  if (st.ok()) {
    backoff_ = absl::ZeroDuration();
    next_attempt_ = absl::InfinitePast();
  } else {
    // Capped at 1 s: a control plane back from an outage of any length is
    // used within about a second (the cost is one cheap RPC per second).
    backoff_ = backoff_ == absl::ZeroDuration() ? absl::Milliseconds(250)
                                                : std::min(backoff_ * 2, kMaxCommitBackoff);
    next_attempt_ = absl::Now() + backoff_;
    CAIRN_LOG_WARNING("background commit failed; retrying in %s",
                      absl::FormatDuration(backoff_));
  }
  return std::min(interval, backoff_ == absl::ZeroDuration() ? interval : backoff_);
}

}  // namespace cairn::mounter
