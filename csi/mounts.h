// Mount-table queries and the mounter launcher of the CSI node service.
//
// A publish is one `cairn-mount --handover` per target path (each pod gets
// its own snapshot view and commit/reload, C3): the process started is the
// mount's holder, which keeps the FUSE connection and runs the mounter that
// serves it, restarting it on the same connection if it dies. MounterLauncher is the seam: a
// detached process today, a mount pod later. The process launcher detaches
// the mounter completely (double fork + setsid: own session and process
// group, parent is init), so a SIGKILL or upgrade of cairn-csi leaves every
// mount serving; a restarted plugin finds its mounters again by pid and
// start time (MounterId) from its state file.
//
// Thread-safety: the free functions are thread-safe; ProcessLauncher holds
// no mutable state and may be used from any thread.
// The process launcher can also move mounters out of the plugin's cgroups
// (PrepareMounterCgroups), so that they outlive the plugin's container.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace cairn::csi {

// True if /proc/self/mountinfo lists a FUSE mount of Cairn's (fstype
// "fuse.cairn") whose mount point is exactly `target`.
bool IsCairnMounted(const std::filesystem::path& target);

// True if anything at all is mounted at `target`.
bool IsMountPoint(const std::filesystem::path& target);

// Lazily unmounts whatever is mounted at `target` (umount2 MNT_DETACH).
// OK when nothing is mounted there.
[[nodiscard]] absl::Status LazyUnmount(const std::filesystem::path& target);

// A process identity that survives pid reuse: the pid plus its start time
// in clock ticks since boot (/proc/PID/stat field 22).
// In pod mode it names the mount's holder, and `pod` the mounter pod
// serving the mount now (empty in process mode).
struct MounterId {
  pid_t pid = 0;
  uint64_t start_ticks = 0;
  std::string pod;
};

// True while the process `id` names is alive (not a zombie) and is still
// the process that was started.
bool IsAlive(const MounterId& id);

struct LaunchSpec {
  std::filesystem::path binary;            // cairn-mount
  std::vector<std::string> args;           // after argv[0]
  std::vector<std::string> env;            // "K=V", added to the environment
  std::filesystem::path log_file;          // stdout and stderr, appended
  std::filesystem::path target;            // the mount point, for readiness
  std::string volume_id;                   // vo-…, for labels
};

class MounterLauncher {
 public:
  virtual ~MounterLauncher() = default;
  // Starts a mounter and returns once `target` serves (mountinfo shows the
  // Cairn FUSE mount and a stat of it answers). If it dies first or is not
  // ready within `timeout`, it is killed, nothing stays mounted, and the
  // error carries the tail of its log.
  [[nodiscard]] virtual absl::StatusOr<MounterId> Launch(const LaunchSpec& spec,
                                                         absl::Duration timeout) = 0;
  // SIGTERM (the mounter unmounts and makes its final commit), waits up to
  // `timeout`, then SIGKILL. OK once the process is gone.
  [[nodiscard]] virtual absl::Status Stop(const MounterId& id, absl::Duration timeout) = 0;
  // Replaces the mounter serving `id`'s mount by a fresh one on the same
  // FUSE connection (docs/decisions.md D16): open files stay open. Returns
  // once asked; the hand-over itself takes about a mounter start.
  // FailedPrecondition if `id` is not running.
  [[nodiscard]] virtual absl::Status Upgrade(const MounterId& id) = 0;
  // Starts again what serves `id`'s mount if it is gone, `spec` being what
  // Launch was given; may update `id` (a new pod). OK when nothing was
  // missing. Process mode has nothing to do: the holder restarts its own
  // mounter.
  [[nodiscard]] virtual absl::Status Repair(const LaunchSpec& spec, MounterId* id) {
    (void)spec;
    (void)id;
    return absl::OkStatus();
  }
  // Removes what this launcher started for mounts other than `live` (pod
  // mode: this node's mounter pods that no publication names).
  [[nodiscard]] virtual absl::Status CollectGarbage(const std::vector<MounterId>& live) {
    (void)live;
    return absl::OkStatus();
  }
};

// Real mounters as detached processes.
class ProcessLauncher : public MounterLauncher {
 public:
  ProcessLauncher() = default;
  // Every mounter started is born in each cgroup directory in `cgroups`
  // (from PrepareMounterCgroups), and so is every process it forks: the
  // launcher's intermediate child joins them before the mounter is forked.
  // If one cannot be joined, no mounter starts and Launch fails.
  explicit ProcessLauncher(std::vector<std::filesystem::path> cgroups)
      : cgroups_(std::move(cgroups)) {}

  absl::StatusOr<MounterId> Launch(const LaunchSpec& spec, absl::Duration timeout) override;
  // Launch without the wait: the detached process runs, nothing is known
  // about its mount yet.
  [[nodiscard]] absl::StatusOr<MounterId> Start(const LaunchSpec& spec);
  absl::Status Stop(const MounterId& id, absl::Duration timeout) override;
  // SIGUSR2 to the mount's holder (mounter/holder.h), which has the
  // mounter hand over to the binary now at its path.
  absl::Status Upgrade(const MounterId& id) override;

 private:
  const std::vector<std::filesystem::path> cgroups_{};
};

// Why mounters leave the plugin's cgroups: double fork and setsid detach a
// mounter from cairn-csi, but a container runtime that removes the plugin's
// container (pod deletion, DaemonSet upgrade) kills every process in the
// container's cgroup, mounters included, and with them every pod's mount.
//
// The cgroups for mounters, one per hierarchy under `root` (the node's
// cgroup file system as this process sees it, e.g. a hostPath mount of
// /sys/fs/cgroup): ROOT/NAME on cgroup v2, ROOT/H/NAME for every v1
// hierarchy H. Creates those that are missing; a new v1 cpuset cgroup gets
// its parent's cpus and mems (no task may join one without). NAME is one
// path component. InvalidArgument for a bad NAME, FailedPrecondition when
// `root` holds no cgroup hierarchy, the errno's status when one cannot be
// made.
[[nodiscard]] absl::StatusOr<std::vector<std::filesystem::path>> PrepareMounterCgroups(
    const std::filesystem::path& root, const std::string& name);

// Blocks until `target` serves a Cairn mount, the process `id` is gone
// (FailedPrecondition), or `timeout` passes (DeadlineExceeded).
[[nodiscard]] absl::Status WaitMountReady(const std::filesystem::path& target, const MounterId& id,
                                          absl::Duration timeout);

// The last `max_bytes` of a file, for error messages.
std::string FileTail(const std::filesystem::path& path, size_t max_bytes = 2000);

}  // namespace cairn::csi
