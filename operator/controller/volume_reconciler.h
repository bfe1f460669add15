// VolumeReconciler: makes one Volume resource and its Cairn volume agree,
// by level (STYLE.md §11): read the resource and the engine, decide, act,
// write status. Safe to call any number of times for the same key, after a
// crash at any point, and concurrently for different keys.
//
// Ownership rules (docs/operator.md):
//  - A Volume creates the Cairn volume of its namespace and name. Before
//    creating, the controller adds its finalizer; a Volume that carries the
//    finalizer owns the Cairn volume of its name, so a crash between create
//    and the status write is recovered by adopting it on the next pass.
//  - A Cairn volume that already exists (made with the CLI) is adopted only
//    when the Volume carries the annotation cairn.dev/adopt: "true";
//    otherwise Ready=False, reason NameTaken, and nothing is touched.
//  - status.id, once set, is the volume: if it is gone, Ready=False
//    (VolumeMissing); a new volume is never made in its place (C1).
//  - Deletion honours spec.deletionPolicy: Delete destroys the data key at
//    once (C8), Retain keeps the volume; a volume already gone never holds
//    the finalizer.
//
// Errors returned mean "requeue with backoff"; invalid specs and ownership
// conflicts are terminal conditions, not errors. Thread-safe; the client,
// engine, metrics and recorder are not owned.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "core/engine.h"
#include "operator/controller/metrics.h"
#include "operator/kube/client.h"

namespace cairn::controller {

inline constexpr char kFinalizer[] = "cairn.dev/volume";
inline constexpr char kAdoptAnnotation[] = "cairn.dev/adopt";
const kube::Resource& VolumeResource();

struct VolumeSpec {
  int version = 2;
  bool delete_data = false;  // deletionPolicy: Delete
  Limits limits;             // the version's defaults, tightened by spec.limits
};

// The spec as the controller will act on it. InvalidArgument with a message
// for the condition when the schema let something through that the engine
// cannot honour (e.g. limits looser than the version allows).
[[nodiscard]] absl::StatusOr<VolumeSpec> ParseSpec(const kube::Json& volume);

struct Observed {
  std::string phase;            // Pending, Ready, Failed, Deleting
  bool ready = false;
  std::string reason;           // the Ready condition's reason
  std::string message;
  std::optional<VolumeRecord> volume;
  std::optional<SnapshotRecord> head;
};

// The status to merge-patch: the Ready condition keeps its
// lastTransitionTime unless its status flips; counts come from `head`.
kube::Json BuildStatus(const kube::Json& current_status, int64_t generation,
                       const Observed& observed, absl::Time now);

// RFC 3339 in UTC with seconds ("2026-12-01T11:00:00Z"), as metav1.Time.
std::string RfcTime(absl::Time t);

struct ReconcileResult {
  // Set: the key's head (seq) as reported in status, for the commit poller.
  std::optional<std::string> volume_id;
  uint64_t head_seq = 0;
  bool gone = false;  // the resource no longer exists
};

class VolumeReconciler {
 public:
  VolumeReconciler(kube::Client* kube, Engine* engine, ControllerMetrics* metrics);

  [[nodiscard]] absl::StatusOr<ReconcileResult> Reconcile(const std::string& ns,
                                                          const std::string& name);

 private:
  absl::StatusOr<ReconcileResult> Finalize(const kube::Json& obj, const std::string& ns,
                                           const std::string& name);
  absl::Status EnsureFinalizer(kube::Json& obj, const std::string& ns, const std::string& name);
  absl::Status WriteStatus(const kube::Json& obj, const std::string& ns, const std::string& name,
                           const Observed& observed);
  // A core/v1 Event on the resource; failures are logged, not returned.
  void Event(const kube::Json& obj, bool warning, const std::string& reason,
             const std::string& message);
  void SetGauges(const std::string& ns, const std::string& name, const SnapshotRecord& head);
  void DropGauges(const std::string& ns, const std::string& name, bool volume_deleted);

  kube::Client* const kube_;
  Engine* const engine_;
  ControllerMetrics* const metrics_;
};

}  // namespace cairn::controller
