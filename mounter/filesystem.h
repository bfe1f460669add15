// Filesystem: one mounted volume as an inode tree (DESIGN.md C3–C7), with no
// FUSE types in it: fuse_ops.cc is the thin glue. Every operation returns an
// absl::Status; StatusToErrno (core/status.h) turns it into the reply.
//
// Model
// - The base is one snapshot (the head at mount or at the last reload). Its
//   directories are read lazily from directory objects, its files by chunk
//   through a ChunkReader (memory LRU → node-local DiskCache → control plane).
// - Inode numbers are assigned on first lookup and never reused within the
//   process. A path keeps its inode number across a reload.
// - A file written through the mount gets a StagedFile (chunk-level
//   copy-on-write). Every mutation is appended to an ordered change log of
//   proto Changes (PUT/MKDIR/REMOVE/RENAME); a PUT refers to the node, and
//   its content is taken at commit time.
// - Commit takes the log under mu_ (dropping changes a later removal undid),
//   uploads changed chunks and builds each change's entry: the change set is
//   then "prepared" and is sent with one idempotency key until the control
//   plane answers. Writes made meanwhile are logged after it and stay
//   pending. Failures are classified (ClassifyCommitError): transient ones
//   keep the prepared set and resend it unchanged, with the same key; "object
//   not stored" rebuilds (re-uploads) it; a change that can never succeed is
//   found by committing prefixes, isolated (status `stuck`, an error from the
//   next commit request) and the rest keeps flowing. The view does not
//   change on commit (C3: other mounts' changes appear only on reload).
// - With a Journal (FsOptions::journal), every logged change and each
//   file's content state (first change, close of a writing handle, fsync)
//   is appended to it, each change set with its key before it is sent, and
//   "done" after each commit, so that the next mount recovers what this one
//   did not commit, resending a set whose answer it never saw with the same
//   key (Recover; mounter/journal.h).
// - Reload fetches the head, and under mu_ replaces the tree with the new
//   base and replays the pending log on top, so no lookup sees a
//   half-switched tree. Refused with EBUSY ("volume busy") while files are
//   open. Kernel caches are invalidated through the Notifier afterwards.
//
// Code: the operations are in filesystem.cc; the inode table and tree in
// filesystem_tree.cc; the change log, journal, replay and recovery in
// filesystem_log.cc; the committer in filesystem_commit.cc; reload in
// filesystem_reload.cc; the in-band controls and status in
// filesystem_control.cc. Node and Handle: filesystem_internal.h.
//
// Thread-safety: all public methods may be called concurrently.
// Lock order: commit_mu_ → mu_ → handles_mu_ → status_mu_ → StagedFile::mu_ →
// ChunkReader::mu_; Journal::mu_ is taken under mu_ and holds nothing else.
// Network and disk I/O happen outside mu_ except while reloading (which
// holds mu_ exclusively on purpose).
#pragma once

#include <sys/stat.h>

#include <atomic>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "core/meta_store.h"
#include "core/object_store.h"
#include "mounter/chunk_reader.h"
#include "mounter/journal.h"
#include "mounter/staged_file.h"
#include "mounter/volume_client.h"
#include "proto/volume.pb.h"

namespace cairn::mounter {

struct FsOptions {
  bool read_only = false;
  std::string sub_path;              // normalised; "" is the volume root
  // Owner shown for inodes that store none (entries from before owners
  // were stored, `cairn volume put`, the root of a new volume).
  uid_t uid = 0;
  gid_t gid = 0;
  // Kubernetes fsGroup (CSI volume_mount_group): inodes that store no
  // owner show this group, group permissions equal to the owner's, and
  // directories setgid (docs/csi.md). Nothing is written for it.
  std::optional<gid_t> mount_group;
  std::filesystem::path staging_dir;  // for StagedFiles; must exist
  // Where uncommitted changes are recorded for crash recovery (its
  // directory is staging_dir); null: not recorded (read-only mounts, tests).
  Journal* journal = nullptr;
  // The journal is rewritten down to what is pending once it is this big
  // (and four times what the last rewrite left).
  uint64_t journal_compact_bytes = 64 << 20;
};

// How a failed Commit RPC is handled (the codes are the control plane's,
// STYLE.md 3): kRetry resends the same change set with the same key (the
// outcome is unknown or the failure passes: Unavailable, DeadlineExceeded,
// Aborted, Cancelled, Internal, an unknown or deleted volume, auth);
// kReupload builds it again, uploading its chunks (FailedPrecondition "…
// is not stored"); kNever: some change in it can never succeed as sent
// (InvalidArgument, ResourceExhausted, OutOfRange, AlreadyExists, other
// FailedPrecondition and NotFound).
enum class CommitErrorKind { kRetry, kReupload, kNever };
CommitErrorKind ClassifyCommitError(const absl::Status& status);

// Called after a reload for every inode and entry the kernel may have cached.
struct Notifier {
  std::function<void(uint64_t ino)> inval_inode;
  std::function<void(uint64_t parent, const std::string& name)> inval_entry;
};

// Who makes a call (the FUSE request's uid and gid). New inodes are
// theirs, with the parent's group under a setgid parent. Permission checks
// are the kernel's (`default_permissions`: mode bits, the caller's
// supplementary groups, sticky directories, chown/chmod rules, clearing
// setuid/setgid on write), made against the owners this class reports.
struct Caller {
  uid_t uid = 0;
  gid_t gid = 0;
};

class Filesystem {
 public:
  static constexpr uint64_t kRootIno = 1;

  // `client` and `reader`'s ObjectStore must outlive the Filesystem.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<Filesystem>> Create(
      VolumeClient* client, ObjectStore* objects, ChunkReader* reader,
      const api::OpenVolumeResponse& opened, FsOptions options);
  ~Filesystem();
  Filesystem(const Filesystem&) = delete;
  Filesystem& operator=(const Filesystem&) = delete;

  void SetNotifier(Notifier notifier);

  // ---- Inodes. Lookup-like calls count a kernel reference (Forget drops).
  [[nodiscard]] absl::StatusOr<struct stat> Lookup(uint64_t parent, std::string_view name);
  void Forget(uint64_t ino, uint64_t n);
  [[nodiscard]] absl::StatusOr<struct stat> GetAttr(uint64_t ino);
  // `to_set` bits; the values are FUSE_SET_ATTR_*'s (fuse_ops.cc asserts it).
  static constexpr int kSetMode = 1 << 0, kSetUid = 1 << 1, kSetGid = 1 << 2,
                       kSetSize = 1 << 3, kSetAtime = 1 << 4, kSetMtime = 1 << 5,
                       kSetAtimeNow = 1 << 7, kSetMtimeNow = 1 << 8, kSetCtime = 1 << 10;
  [[nodiscard]] absl::StatusOr<struct stat> SetAttr(uint64_t ino, const struct stat& attr,
                                                    int to_set);
  [[nodiscard]] absl::StatusOr<std::string> ReadLink(uint64_t ino);

  // ---- Namespace changes. Without a Caller (tests, tools) a new inode
  // stores no owner and shows the default one.
  [[nodiscard]] absl::StatusOr<struct stat> MkDir(uint64_t parent, std::string_view name,
                                                  mode_t mode,
                                                  std::optional<Caller> caller = std::nullopt);
  [[nodiscard]] absl::StatusOr<struct stat> Symlink(std::string_view target, uint64_t parent,
                                                    std::string_view name,
                                                    std::optional<Caller> caller = std::nullopt);
  // FIFOs, sockets and device nodes: entries only (the kernel opens FIFOs
  // itself; the mount is nodev, so device nodes never reach a device).
  // Device nodes need CAP_MKNOD, which the kernel checks. S_IFREG is a
  // plain create. Other types: EINVAL.
  [[nodiscard]] absl::StatusOr<struct stat> Mknod(uint64_t parent, std::string_view name,
                                                  mode_t mode, dev_t rdev,
                                                  std::optional<Caller> caller = std::nullopt);
  [[nodiscard]] absl::StatusOr<struct stat> Link(uint64_t ino, uint64_t parent,
                                                 std::string_view name);
  [[nodiscard]] absl::Status Unlink(uint64_t parent, std::string_view name);
  [[nodiscard]] absl::Status RmDir(uint64_t parent, std::string_view name);
  // `flags`: RENAME_NOREPLACE is honoured; RENAME_EXCHANGE is EINVAL.
  [[nodiscard]] absl::Status Rename(uint64_t parent, std::string_view name, uint64_t new_parent,
                                    std::string_view new_name, unsigned flags);

  // ---- Files. A handle is an opaque number for the glue to pass back.
  struct Created {
    struct stat attr;
    uint64_t fh;
  };
  [[nodiscard]] absl::StatusOr<Created> Create(uint64_t parent, std::string_view name,
                                               mode_t mode, int flags,
                                               std::optional<Caller> caller = std::nullopt);
  [[nodiscard]] absl::StatusOr<uint64_t> Open(uint64_t ino, int flags);
  // The bytes of a read: either `owned`, or (for base files) `slices`
  // pointing into decrypted chunks that `chunks` keeps alive, so the reply
  // can be written without copying them again.
  struct ReadBuffer {
    std::string owned;
    std::vector<ChunkData> chunks;
    std::vector<std::pair<const char*, size_t>> slices;
    size_t size() const;
    std::string Flatten() const;  // for tests and callers that want one string
  };
  [[nodiscard]] absl::StatusOr<ReadBuffer> Read(uint64_t fh, uint64_t off, size_t size);
  [[nodiscard]] absl::StatusOr<size_t> Write(uint64_t fh, uint64_t off, std::string_view data);
  // lseek(2) SEEK_DATA (`data`) or SEEK_HOLE from `off`, over the file's
  // holes (docs/decisions.md D28): ENXIO at or past the end, or when no
  // data follows.
  [[nodiscard]] absl::StatusOr<uint64_t> Seek(uint64_t fh, int64_t off, bool data);
  // fallocate(2): mode 0 and FALLOC_FL_KEEP_SIZE reserve nothing (space is
  // the control plane's) but mode 0 extends the size as ftruncate would;
  // FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE makes the range a hole.
  // EOPNOTSUPP for any other mode.
  [[nodiscard]] absl::Status Fallocate(uint64_t fh, int mode, int64_t off, int64_t len);
  void Release(uint64_t fh);
  // fsync(2) of a file: its content and pending change become durable in
  // the node journal (not committed; a later mount recovers them after a
  // crash). OK without a journal.
  [[nodiscard]] absl::Status FsyncFile(uint64_t fh);

  // ---- Directories.
  struct DirEntry {
    std::string name;
    struct stat attr;  // st_ino and the S_IF* type bits at least
  };
  // The listing ("." and ".." first) as of the call.
  [[nodiscard]] absl::StatusOr<std::vector<DirEntry>> ListDir(uint64_t ino);
  // Counts a kernel reference made by readdirplus handing out an entry.
  void AddLookup(uint64_t ino);
  // fsync of the mount root commits (C6, `sync MOUNTPOINT`); of another
  // directory, makes the journal durable on the node.
  [[nodiscard]] absl::Status FsyncDir(uint64_t ino);

  // ---- In-band controls (extended attributes on the root; docs/mounter.md).
  [[nodiscard]] absl::Status SetXattr(uint64_t ino, std::string_view name,
                                      std::string_view value);
  [[nodiscard]] absl::StatusOr<std::string> GetXattr(uint64_t ino, std::string_view name);
  std::vector<std::string> ListXattr(uint64_t ino);

  // ---- Commit / reload / status.
  // Publishes pending changes; returns when the control plane accepted them.
  // OK at once when nothing is pending or the mount is read-only. Errors:
  // the transient one (Unavailable, …) when the change set stays pending;
  // for `report_stuck`, also an error naming changes isolated as stuck since
  // the last such report (the rest was committed).
  [[nodiscard]] absl::Status Commit(bool report_stuck = false);
  // Takes the changes mounts that ended without committing them left in
  // their journals (Journal::FindLeftovers): applied to the view the way a
  // reload replays pending changes, journaled here and committed like this
  // mount's own. A change set a mount sent without getting the answer
  // (RecoveredJournal::sent) is committed first, exactly as it was sent and
  // with its idempotency key, so that one the control plane applied is not
  // applied again. Returns how many changes were taken; the leftovers may
  // be discarded after an OK. EROFS on a read-only mount; FailedPrecondition
  // once this mount has pending changes of its own (call it at mount).
  [[nodiscard]] absl::StatusOr<size_t> Recover(const std::vector<RecoveredJournal*>& journals);
  // FailedPrecondition + EBUSY ("volume busy: …") while files are open.
  [[nodiscard]] absl::Status Reload();
  bool Dirty();
  // Changes isolated because they can never be committed (status `stuck`).
  size_t StuckCount();
  // Status fields: docs/mounter.md; `stuck` lists changes isolated for good.
  std::string StatusJson();
  // Background commits: call periodically; commits when dirty and the
  // backoff after a failure has passed (1 s at most, so a control plane
  // that comes back is used within about a second). Returns the next delay.
  absl::Duration BackgroundTick(absl::Duration interval);

  struct statvfs_like {
    uint64_t files = 0, max_files = 0, bytes = 0;
  };
  statvfs_like StatFs();

  // ---- Hand-over (docs/decisions.md D16).
  // A node ID the kernel knows from the mounter this one takes over from:
  // its path below the mount root and its S_IFMT type bits.
  struct KnownInode {
    std::string path;
    uint64_t ino = 0;
    uint32_t type = 0;
  };
  // Call before serving and before Recover: the same paths get the same
  // node IDs (recovered files included), a node ID the kernel names is
  // found by its path, and new node IDs are above all of them.
  void SeedInodes(const std::vector<KnownInode>& known);

 private:
  // Defined in mounter/filesystem_internal.h (with how Node's fields are
  // guarded by mu_).
  struct Node;
  struct Handle;
  struct PendingChange {
    objects::Change change;
    std::shared_ptr<Node> node;  // PUT: whose content/metadata to send
    uint64_t seq = 0;            // position in the journal's order
  };
  // A change taken from the log, with its entry built (chunks uploaded).
  struct Prepared {
    PendingChange pending;
    objects::Change built;
    std::shared_ptr<StagedFile> staged;  // PUT: the content it was built from
    // Non-empty: sent with this idempotency key and not answered for sure;
    // the leading run of prepared changes with one key is resent exactly.
    std::string key;
  };
  // A change the control plane refused for good; not sent again.
  struct Stuck {
    std::string path;
    absl::Status error;
  };

  Filesystem(VolumeClient* client, ObjectStore* objects, ChunkReader* reader,
             const api::OpenVolumeResponse& opened, FsOptions options);

  // ---- Inode table and tree (filesystem_tree.cc); mu_ held as annotated.
  std::shared_ptr<Node> FindLocked(uint64_t ino) ABSL_SHARED_LOCKS_REQUIRED(mu_);
  // OK if `node` is the current node for its inode number; ESTALE if a
  // reload replaced it after the caller's Get() (mu_ was released between).
  absl::Status CheckCurrentLocked(const Node& node) const ABSL_SHARED_LOCKS_REQUIRED(mu_);
  absl::StatusOr<std::shared_ptr<Node>> Get(uint64_t ino);
  absl::Status EnsureLoaded(const std::shared_ptr<Node>& dir);
  absl::Status EnsureLoadedLocked(const std::shared_ptr<Node>& dir)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void PopulateLocked(const std::shared_ptr<Node>& dir, const objects::Directory& listing)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::shared_ptr<Node> NewNodeLocked(const std::shared_ptr<Node>& parent, std::string_view name,
                                      const objects::Entry& entry)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The inode number for a new node at parent/name: the one the path had
  // before the last reload if free, else a fresh one.
  // The type must match: the kernel refuses an inode that changes type.
  uint64_t InoForLocked(const Node& parent, std::string_view name, objects::EntryType type)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::string PathLocked(const Node& node) const ABSL_SHARED_LOCKS_REQUIRED(mu_);
  std::string VolumePathLocked(const Node& node) const ABSL_SHARED_LOCKS_REQUIRED(mu_);
  struct stat AttrLocked(const Node& node) const ABSL_SHARED_LOCKS_REQUIRED(mu_);
  // The owner and mode a node shows (its own, or the mount's defaults and
  // mount group when it stores none).
  struct Presented {
    uid_t uid;
    gid_t gid;
    uint32_t mode;
  };
  Presented PresentLocked(const Node& node) const ABSL_SHARED_LOCKS_REQUIRED(mu_);
  // Gives a new `node` in `dir` its owner: the caller's, with `dir`'s group
  // (and, for a directory, setgid) when `dir` is setgid.
  void OwnNewLocked(const Node& dir, Node& node, const std::optional<Caller>& caller)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status CheckCreateLocked(const Node& dir, std::string_view name)
      ABSL_SHARED_LOCKS_REQUIRED(mu_);
  // ENAMETOOLONG if dir/name, plus `below` bytes of path under it, would be
  // longer than the control plane accepts (kMaxPathLength).
  absl::Status CheckPathLengthLocked(const Node& dir, std::string_view name, size_t below) const
      ABSL_SHARED_LOCKS_REQUIRED(mu_);
  // Bytes of the longest path below `node` ("/a/b" → 4): loaded
  // directories by their children, unloaded ones by `unloaded` (what
  // LongestUnloaded found in their base trees; 0 if absent).
  using UnloadedLengths = std::map<const Node*, size_t>;
  size_t LongestBelowLocked(const Node& node, const UnloadedLengths& unloaded = {}) const
      ABSL_SHARED_LOCKS_REQUIRED(mu_);
  // For a rename of `name` in `dir` below `new_dir`/`new_name`: the longest
  // path below each directory of the source not loaded yet, read from the
  // base trees (no lock held), as far as it matters for kMaxPathLength.
  absl::StatusOr<UnloadedLengths> LongestUnloaded(const std::shared_ptr<Node>& dir,
                                                  std::string_view name,
                                                  const std::shared_ptr<Node>& new_dir,
                                                  std::string_view new_name)
      ABSL_LOCKS_EXCLUDED(mu_);
  // A node created by this mount (mkdir, symlink, create): a fresh inode
  // number, the permission bits of `mode`, times now. No lock: nobody else
  // can reach it yet.
  std::shared_ptr<Node> NewLocalNode(objects::EntryType type, mode_t mode);
  void AttachLocked(const std::shared_ptr<Node>& dir, const std::string& name,
                    const std::shared_ptr<Node>& node) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A node from NewLocalNode into `dir` as `name`: owned (OwnNewLocked),
  // attached, counted, and `dir`'s mtime and ctime set to the node's time.
  void AttachNewLocked(const std::shared_ptr<Node>& dir, std::string_view name,
                       const std::shared_ptr<Node>& node, const std::optional<Caller>& caller)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The end of creating a non-directory: its content logged as changed, all
  // three times equal, one kernel reference; returns its attributes.
  struct stat FinishNewLocked(const std::shared_ptr<Node>& node) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void DetachLocked(const std::shared_ptr<Node>& dir, const std::string& name)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<std::shared_ptr<Node>> WalkLocked(std::string_view path, bool create_dirs)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // ---- Change log, journal, replay and recovery (filesystem_log.cc).
  // Logs a MKDIR carrying the directory's mode and mtime (mkdir, chmod,
  // utimens of a directory).
  void LogMkdirLocked(const Node& dir) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void LogLocked(objects::Change change, std::shared_ptr<Node> node = nullptr)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Journals `change` (of `node`, for a PUT) under a new seq, returned.
  uint64_t JournalChangeLocked(const objects::Change& change, Node* node)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Journals that prepared_[begin, end) is sent as `changes` with their key
  // (synced: the control plane may apply it before this mount dies).
  void JournalSentLocked(size_t begin, size_t end, const objects::ChangeSet& changes)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(commit_mu_);
  // The first seq a change set starting at prepared_[begin] covers: every
  // change not done before it (also those coalesced away).
  uint64_t SentFirstSeqLocked(size_t begin) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(commit_mu_);
  // Journal records of a node's current content (mu_ held so the node's
  // fields are stable; exclusive because it may assign node.jid).
  JournalContent ContentLocked(const Node& node) const ABSL_SHARED_LOCKS_REQUIRED(mu_);
  void JournalContentLocked(Node& node) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Reports the first journal failure; later ones are not repeated.
  void JournalLocked(const absl::Status& status);
  void MarkContentDirtyLocked(const std::shared_ptr<Node>& node)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status ReplayLocked(const PendingChange& change) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Journal node id → the node ID the kernel knows for where that node ends
  // up in `journal` (SeedInodes), for the nodes Recover creates.
  absl::flat_hash_map<uint64_t, uint64_t> KnownInodesOf(const RecoveredJournal& journal)
      ABSL_LOCKS_EXCLUDED(mu_);
  // Journal: changes up to `seq` are done; an empty journal when nothing
  // is pending any more, a rewritten one when it grew far past that.
  void DoneLocked(uint64_t seq) ABSL_EXCLUSIVE_LOCKS_REQUIRED(commit_mu_);
  void ResetJournalIfCleanLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(commit_mu_);
  // Drops changes that a later REMOVE in the same log makes irrelevant.
  static void Coalesce(std::vector<PendingChange>& log);

  // ---- Committer (filesystem_commit.cc); commit_mu_ held.
  absl::Status CommitLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(commit_mu_);
  // Takes the log (coalesced) and appends it to prepared_ with entries built.
  absl::Status PrepareLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(commit_mu_);
  // Builds the entries of prepared_[begin, end) again (re-uploading chunks).
  absl::Status RebuildLocked(size_t begin, size_t end) ABSL_EXCLUSIVE_LOCKS_REQUIRED(commit_mu_);
  // Success of the first `n` prepared changes as snapshot `snapshot`.
  void CommittedLocked(size_t n, const api::Snapshot& snapshot, absl::Time start)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(commit_mu_);

  // ---- File and namespace operations (filesystem.cc).
  absl::StatusOr<std::shared_ptr<Node>> ChildForWrite(uint64_t parent, std::string_view name,
                                                      std::shared_ptr<Node>* dir);
  absl::StatusOr<std::shared_ptr<StagedFile>> EnsureStaged(const std::shared_ptr<Node>& node);
  // Registers an open handle on `node` (mu_ held, at least shared, so that a
  // reload sees it).
  uint64_t AddHandleLocked(const std::shared_ptr<Node>& node, bool writable)
      ABSL_SHARED_LOCKS_REQUIRED(mu_);
  absl::Status ReadOnlyCheck() const;
  // The node of open handle `fh`: EBADF if there is none, or if
  // `for_writing` and it was not opened for writing.
  absl::StatusOr<std::shared_ptr<Node>> HandleNode(uint64_t fh, bool for_writing)
      ABSL_LOCKS_EXCLUDED(handles_mu_);

  // ---- Reload (filesystem_reload.cc).
  // The path of one open file, for "volume busy" messages.
  std::string OpenPathExample(bool mu_held);

  // ---- Controls and status (filesystem_control.cc).
  std::string StuckJsonLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(status_mu_);

  VolumeClient* const client_;
  ObjectStore* const objects_;
  ChunkReader* const reader_;
  const FsOptions options_;
  const std::string volume_id_;
  const std::string volume_name_;
  const uint32_t version_;
  Limits limits_;
  std::atomic<uint64_t> next_ino_{2};
  std::atomic<uint64_t> next_link_id_;
  Notifier notifier_;

  // Serialises commits and reloads (a reload never overtakes a commit in
  // flight, so committed-but-unacknowledged changes never vanish from view).
  absl::Mutex commit_mu_ ABSL_ACQUIRED_BEFORE(mu_);

  // Guards the tree, the inode table and the change log.
  mutable absl::Mutex mu_ ABSL_ACQUIRED_BEFORE(handles_mu_);
  std::shared_ptr<Node> root_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<uint64_t, std::shared_ptr<Node>> inodes_ ABSL_GUARDED_BY(mu_);
  // Hard links of the base snapshot: link_id → the node its first listed
  // name made, so further names of it become links of that one inode.
  absl::flat_hash_map<uint64_t, std::weak_ptr<Node>> base_links_ ABSL_GUARDED_BY(mu_);
  // After a reload: path → inode number from before, so paths keep their
  // numbers, and the reverse for inodes the kernel still names.
  struct InoHint {
    uint64_t ino;
    objects::EntryType type;
  };
  absl::flat_hash_map<std::string, InoHint> ino_hint_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<uint64_t, std::string> path_hint_ ABSL_GUARDED_BY(mu_);
  std::vector<PendingChange> log_ ABSL_GUARDED_BY(mu_);
  uint64_t next_seq_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t next_jid_ ABSL_GUARDED_BY(mu_) = 0;
  std::atomic<bool> journal_failed_{false};
  uint64_t journal_compacted_size_ ABSL_GUARDED_BY(mu_) = 0;  // after the last rewrite
  // Taken from the log and built, not yet accepted; ahead of log_ in order.
  std::vector<Prepared> prepared_ ABSL_GUARDED_BY(commit_mu_);
  std::atomic<size_t> prepared_count_{0};  // prepared_.size(), for Dirty()/status
  // The last seq journaled as done (DONE record); SENT records start after.
  uint64_t done_seq_ ABSL_GUARDED_BY(commit_mu_) = 0;
  api::Snapshot base_ ABSL_GUARDED_BY(mu_);
  int64_t inode_count_ ABSL_GUARDED_BY(mu_) = 0;  // C7 inodes: base + local delta
  uint64_t generation_ ABSL_GUARDED_BY(mu_) = 0;  // bumped by every reload

  absl::Mutex handles_mu_ ABSL_ACQUIRED_BEFORE(status_mu_);
  absl::flat_hash_map<uint64_t, std::unique_ptr<Handle>> handles_ ABSL_GUARDED_BY(handles_mu_);
  uint64_t next_fh_ ABSL_GUARDED_BY(handles_mu_) = 1;
  int open_files_ ABSL_GUARDED_BY(handles_mu_) = 0;

  absl::Mutex status_mu_;
  absl::Time last_commit_time_ ABSL_GUARDED_BY(status_mu_) = absl::InfinitePast();
  uint64_t last_commit_seq_ ABSL_GUARDED_BY(status_mu_) = 0;
  std::string last_commit_error_ ABSL_GUARDED_BY(status_mu_);
  absl::Time last_reload_time_ ABSL_GUARDED_BY(status_mu_) = absl::InfinitePast();
  std::string last_reload_error_ ABSL_GUARDED_BY(status_mu_);
  uint64_t commits_ ABSL_GUARDED_BY(status_mu_) = 0;
  uint64_t failed_commits_ ABSL_GUARDED_BY(status_mu_) = 0;
  uint64_t reloads_ ABSL_GUARDED_BY(status_mu_) = 0;
  std::vector<Stuck> stuck_ ABSL_GUARDED_BY(status_mu_);
  // Stuck changes isolated since a commit request last reported them.
  size_t stuck_unreported_ ABSL_GUARDED_BY(status_mu_) = 0;
  absl::Duration backoff_ ABSL_GUARDED_BY(status_mu_) = absl::ZeroDuration();
  absl::Time next_attempt_ ABSL_GUARDED_BY(status_mu_) = absl::InfinitePast();
};

}  // namespace cairn::mounter
