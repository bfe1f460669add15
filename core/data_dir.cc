#include "core/data_dir.h"

#include "core/master_key_source.h"
#include "core/blob_store_s3.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <system_error>

#include "absl/strings/str_cat.h"
#include "core/fd.h"
#include "core/log.h"
#include "core/status.h"

namespace cairn {
namespace {

absl::StatusOr<std::unique_ptr<BlobStore>> OpenBlobs(const std::filesystem::path& dir,
                                                     const DataDirOptions& options) {
  if (options.blobs_url.empty()) return OpenLocalBlobStore(dir / "blobs", options.env);
  CAIRN_ASSIGN_OR_RETURN(S3Config config, ParseS3Url(options.blobs_url));
  CAIRN_ASSIGN_OR_RETURN(std::unique_ptr<S3BlobStore> s3, OpenS3BlobStore(std::move(config)));
  return std::unique_ptr<BlobStore>(std::move(s3));
}

}  // namespace

absl::StatusOr<std::unique_ptr<DataDir>> DataDir::Open(const std::filesystem::path& dir,
                                                       const MasterKey& master,
                                                       DataDirOptions options) {
  FixedMasterKeySource keys(master);
  options.keys = &keys;
  return Open(dir, options);
}

absl::StatusOr<std::unique_ptr<DataDir>> DataDir::Open(const std::filesystem::path& dir,
                                                       MasterKeySource* keys) {
  return Open(dir, DataDirOptions{.keys = keys});
}

absl::StatusOr<std::unique_ptr<DataDir>> DataDir::Open(const std::filesystem::path& dir,
                                                       const DataDirOptions& options) {
  // On the real filesystem whatever options.env is: the lock, the master
  // key and the metadata database live here. Its entry is made durable even
  // when it exists, in case a crash followed its creation.
  absl::Status made = CreateDirsDurable(*PosixEnv(), dir);
  if (!made.ok()) {
    return absl::Status(made.code(),
                        absl::StrCat("create data directory ", dir.string(), ": ", made.message()));
  }

  // flock, not fcntl locks: it belongs to the open file description, so it
  // is neither dropped when some other fd of the file is closed nor shared
  // with a child that did not inherit this fd; the kernel releases it when
  // the process dies, so a crash never leaves a stale lock.
  const std::filesystem::path lock_path = dir / "LOCK";
  ScopedFd lock(::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  if (!lock.valid()) return ErrnoToStatus(errno, absl::StrCat("open ", lock_path.string()));
  if (::flock(lock.get(), LOCK_EX | LOCK_NB) != 0) {
    if (errno == EWOULDBLOCK) {
      return absl::FailedPreconditionError(absl::StrCat(
          "data directory ", dir.string(), " is in use by another process"));
    }
    return ErrnoToStatus(errno, absl::StrCat("flock ", lock_path.string()));
  }

  CAIRN_ASSIGN_OR_RETURN(std::unique_ptr<MetaStore> meta,
                         options.meta_url.empty()
                             ? OpenSqliteMetaStore(dir / "meta.db", options.sqlite)
                             : OpenPostgresMetaStore(options.meta_url, options.postgres));
  FileMasterKeySource file_keys(dir / "master.key");
  MetaStore* meta_ptr = meta.get();
  CAIRN_ASSIGN_OR_RETURN(
      MasterKey master,
      (options.keys != nullptr ? options.keys : &file_keys)
          ->Load([meta_ptr]() -> absl::StatusOr<bool> {
            CAIRN_ASSIGN_OR_RETURN(std::vector<VolumeRecord> volumes, meta_ptr->ListVolumes(""));
            return !volumes.empty();
          }));
  // A key from elsewhere (a Secret), or a key file beside a database other
  // replicas share, may be the wrong one: refuse it at start rather than
  // surface unreadable volumes later.
  CAIRN_ASSIGN_OR_RETURN(std::vector<VolumeRecord> volumes, meta->ListVolumes(""));
  if ((options.keys != nullptr || !options.meta_url.empty()) && !volumes.empty() &&
      !master.Unwrap(volumes.front().id, volumes.front().wrapped_key).ok()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the master key does not open the volumes in ",
        options.meta_url.empty() ? absl::StrCat("data directory ", dir.string())
                                 : std::string("the PostgreSQL metadata database"),
        " (volume ", volumes.front().id, " was made under another master key)"));
  }
  CAIRN_ASSIGN_OR_RETURN(std::unique_ptr<BlobStore> blobs, OpenBlobs(dir, options));
  CAIRN_LOG_INFO("opened data directory %s%s%s", dir.string(),
                 options.meta_url.empty() ? "" : " (metadata in PostgreSQL)",
                 options.blobs_url.empty() ? "" : " (blobs in S3)");
  return std::unique_ptr<DataDir>(new DataDir(dir, lock.release(), std::move(meta),
                                              std::move(blobs), std::move(master)));
}

DataDir::DataDir(std::filesystem::path path, int lock_fd, std::unique_ptr<MetaStore> meta,
                 std::unique_ptr<BlobStore> blobs, MasterKey master)
    : path_(std::move(path)),
      lock_fd_(lock_fd),
      meta_(std::move(meta)),
      blobs_(std::move(blobs)),
      master_(std::move(master)),
      engine_(std::make_unique<Engine>(meta_.get(), blobs_.get(), master_)) {}

DataDir::~DataDir() {
  // Everything that touches the directory goes before the lock is released,
  // so the next owner never overlaps with this one.
  engine_.reset();
  blobs_.reset();
  meta_.reset();
  if (lock_fd_ >= 0) ::close(lock_fd_);
}

}  // namespace cairn
