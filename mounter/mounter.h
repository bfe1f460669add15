// The cairn-mount daemon: one volume at one mount point (issue 4). Parses
// its arguments, opens the volume, mounts with libfuse (low-level API,
// multi-threaded loop), commits in the background, and on unmount, SIGTERM,
// SIGINT or SIGHUP unmounts and makes a final commit (retried with backoff
// for up to `final_commit_timeout`; what still fails stays in the mount's
// node journal, and the next mount of the volume on the node recovers and
// commits it, as it does for a mounter that was killed: docs/mounter.md
// "Durability").
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "core/rpc_client.h"

namespace cairn::mounter {

inline constexpr absl::Duration kDefaultReadTimeout = absl::Seconds(60);

struct MountOptions {
  // client.retry_for is the mount's --read-timeout: reads of uncached data
  // and commits wait that long for a control plane that is down or
  // restarting before they fail.
  ClientOptions client;
  std::string volume;  // a name in client.ns, or an ID ("vo-…")
  std::filesystem::path mountpoint;
  bool read_only = false;
  std::string sub_path;
  absl::Duration commit_interval = absl::Seconds(5);
  absl::Duration final_commit_timeout = absl::Seconds(30);
  std::filesystem::path cache_dir = "/var/cache/cairn";  // env CAIRN_CACHE_DIR overrides
  uint64_t cache_size = uint64_t{10} << 30;
  uint64_t memory_cache = uint64_t{256} << 20;
  int uid = -1;  // owner shown for every file; -1: the daemon's
  int gid = -1;
  // Kubernetes fsGroup (CSI volume_mount_group): shown as the group of
  // every inode that stores none, group bits = owner bits, directories
  // setgid, and added to what new files inherit. -1: none.
  int64_t mount_group = -1;
  bool allow_other = true;  // when permitted (root, or user_allow_other)
  // Read blobs straight from the object store with URLs the control plane
  // signs, when its blobs are in one (core/direct_fetch_blob_store.h).
  bool direct_reads = true;
  bool debug = false;
  // Run under a holder of the FUSE connection (mounter/holder.h) that
  // restarts a mounter which dies, on the same connection.
  bool handover = false;
  // Mount pods (docs/csi.md): with `handover_listen`, this process is a
  // holder whose mounters are not its children but connect to that unix
  // socket (a mounter pod each); with `handover_connect`, this process is
  // such a mounter: it takes its hand-over link from that socket, SIGTERM
  // hands the mount over (the pod is going away, the mount is not), and the
  // holder's stop message ends the mount with its final commit.
  std::filesystem::path handover_listen;
  std::filesystem::path handover_connect;
};

inline constexpr char kMountUsage[] =
    "usage: cairn mount VOLUME MOUNTPOINT [options]\n"
    "\n"
    "Mounts VOLUME (a name in the namespace, or an ID vo-...) at MOUNTPOINT with\n"
    "FUSE and stays in the foreground until unmounted (fusermount3 -u MOUNTPOINT),\n"
    "SIGTERM or SIGINT, each of which makes a final commit. The mount shows the\n"
    "volume's head as of now plus its own writes; `sync MOUNTPOINT` or\n"
    "`cairn volume commit MOUNTPOINT` publishes them, `cairn volume reload\n"
    "MOUNTPOINT` moves to the newest head. A stale mount left at MOUNTPOINT by a\n"
    "killed mounter is cleaned up first, and what a killed mounter or a failed\n"
    "final commit left uncommitted in the node's journal (under --cache-dir) is\n"
    "recovered and committed. fsync of a file makes it durable on the node.\n"
    "\n"
    "Options:\n"
    "  -r, --read-only            refuse every change with EROFS\n"
    "  --sub-path P               show only directory P of the volume\n"
    "  --commit-interval SECONDS  background commit period while dirty (default 5)\n"
    "  --final-commit-timeout S   how long the final commit may retry (default 30);\n"
    "                             then the changes stay in the node journal\n"
    "  --read-timeout SECONDS     how long a read of uncached data, or a commit,\n"
    "                             waits for an unreachable control plane before\n"
    "                             failing (EAGAIN for a read; default 60)\n"
    "  -n, --namespace NS         namespace (env CAIRN_NAMESPACE, default \"default\")\n"
    "  --server HOST:PORT         control plane (env CAIRN_SERVER, default 127.0.0.1:7420)\n"
    "  --cache-dir DIR            node-local chunk cache shared by all mounts\n"
    "                             (env CAIRN_CACHE_DIR, default /var/cache/cairn)\n"
    "  --cache-size SIZE          bound of that cache (default 10G)\n"
    "  --memory-cache SIZE        decrypted chunks kept in memory (default 256M)\n"
    "  --uid N, --gid N           owner shown for files that store none (written\n"
    "                             before owners were stored, or by `volume put`;\n"
    "                             default: the mounter's); files created through\n"
    "                             a mount keep their creator's\n"
    "  --mount-group GID          present the volume with group GID (Kubernetes\n"
    "                             fsGroup): files storing no owner show it, with\n"
    "                             group permissions equal to the owner's\n"
    "  --no-allow-other           only the mounting user may access the mount\n"
    "  --no-direct-reads          read every blob through the control plane, even\n"
    "                             when it keeps them in S3 (by default they are read\n"
    "                             from the bucket with short-lived signed URLs)\n"
    "  --handover                 keep the mount alive across a mounter crash: a\n"
    "                             small holder process keeps the FUSE connection\n"
    "                             and starts a new mounter on it; SIGUSR2 to the\n"
    "                             holder (the pid this command started as)\n"
    "                             upgrades the mounter to the binary now at its path\n"
    "  -d, --debug                log every FUSE request\n";

// `args` excludes the program name. `client` supplies defaults (environment)
// that flags override. InvalidArgument with a message for bad usage;
// HelpRequested() (core/flags.h) for -h/--help.
[[nodiscard]] absl::StatusOr<MountOptions> ParseMountArgs(const std::vector<std::string>& args,
                                                          ClientOptions client);

// A mount point left behind by a mounter that died (stat fails with
// ENOTCONN) is lazily unmounted. OK if there was nothing to do.
[[nodiscard]] absl::Status CleanStaleMount(const std::filesystem::path& mountpoint);

// Runs until unmounted or signalled. Returns the process exit code: 0 after a
// clean unmount with everything committed, 1 otherwise. With
// `options.handover`, the calling process becomes the holder (it must have
// no threads yet) and the mounter runs in a child; a mounter started by a
// holder (kHandoverFdEnv set) takes its connection over if it has one, and
// returns kHandedOverExit when asked to hand over (SIGUSR1).
int RunMounter(const MountOptions& options);

}  // namespace cairn::mounter
