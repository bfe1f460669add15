// The per-mount holder (docs/decisions.md D16): a small process that owns a
// second descriptor of the mount's /dev/fuse connection and runs the mounter
// ("worker") that serves it as its child, speaking the protocol of
// mounter/handover.h. When the worker dies by a signal (a crash, SIGKILL,
// the OOM killer) the holder starts a new one on the same connection, so
// the pod's mount never becomes "transport endpoint is not connected"; on
// SIGUSR2 it asks the worker to hand over (SIGUSR1) and starts the binary
// found at the worker's path now, which is how mounters are upgraded in
// place.
//
// Why a holder per mount and not cairn-csi: it has no threads, no network
// and no state but the descriptor, so it has nothing to crash on, and it
// keeps the mount alive while cairn-csi restarts or is upgraded. A killed
// holder leaves the worker serving (it owns its own descriptor); only the
// protection against a later worker crash is gone.
//
// Signals: SIGTERM, SIGINT, SIGHUP are passed to the worker (which
// unmounts and makes its final commit) and end the holder with the
// worker's exit code; SIGUSR2 upgrades. A worker exiting on its own after
// it served (the mount was unmounted) ends the holder with its code; a
// replacement that exits before it serves is retried like a crash. Five
// workers in a row that end before serving end the holder with 1 (with
// pauses of 0.5 to 4 s between them, while the pod's requests wait): the
// connection is closed and the pod's requests fail instead of hanging.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

namespace cairn::mounter {

struct HolderOptions {
  // argv of each worker; argv[0] is a path, executed anew for every worker.
  std::vector<std::string> worker_argv;
  std::filesystem::path mountpoint;  // for messages
  // Non-empty: workers are not forked (worker_argv is unused) but connect
  // to a socket the holder listens on here (mounter pods, D29). A worker's
  // end is its connection's end and always counts as a crash or hand-over
  // (the next one to connect takes over; whoever runs the workers, the
  // kubelet and cairn-csi, starts it); SIGTERM, SIGINT, SIGHUP send the
  // worker the stop message (it unmounts and makes its final commit) and
  // end the holder with 0 once it is gone; SIGUSR2 is ignored (an upgrade
  // replaces the mounter pod). Five workers in a row that end within 10 s
  // of connecting without serving end the holder with 1, as above; so does
  // a worker that never connects before the first mount serves, once the
  // caller gives up and signals.
  std::filesystem::path listen_socket;
};

// Runs until the mount ends; returns the exit code. Call before any thread
// exists (it forks).
int RunHolder(const HolderOptions& options);

// argv of this process (/proc/self/cmdline) with argv[0] replaced by the
// path of the running executable, for HolderOptions::worker_argv.
std::vector<std::string> OwnCommandLine();

}  // namespace cairn::mounter
