// The controller's metric families. Per-volume inodes/bytes gauges are the
// ones the Volume API already exports (operator/service_metrics.h); the
// registry hands back the same family when a name is registered twice, so
// the controller and the API keep one series per volume between them.
#pragma once

#include "core/metrics.h"

namespace cairn::controller {

struct ControllerMetrics {
  explicit ControllerMetrics(metrics::Registry& r)
      : reconciles(r.AddCounter("cairn_operator_reconciles_total",
                                "Volume reconciles by result (success, error).", {"result"})),
        reconcile_duration(r.AddHistogram("cairn_operator_reconcile_duration_seconds",
                                          "Time one Volume reconcile took.")),
        watch_restarts(r.AddCounter("cairn_operator_watch_restarts_total",
                                    "Volume watches re-established, by reason (closed, "
                                    "expired, error).",
                                    {"reason"})),
        leader(r.AddGauge("cairn_operator_leader",
                          "1 while this replica holds the leader lease (or election is off).")),
        volume_inodes(r.AddGauge("cairn_volume_inodes",
                                 "Files, directories and symlinks in a volume's head.",
                                 {"namespace", "volume"})),
        volume_bytes(r.AddGauge("cairn_volume_bytes", "Sum of file sizes in a volume's head.",
                                {"namespace", "volume"})),
        volume_commits(r.AddCounter("cairn_volume_commits_total",
                                    "Snapshots committed to a volume since it was created.",
                                    {"namespace", "volume"})) {}

  metrics::CounterFamily& reconciles;
  metrics::HistogramFamily& reconcile_duration;
  metrics::CounterFamily& watch_restarts;
  metrics::GaugeFamily& leader;
  metrics::GaugeFamily& volume_inodes;
  metrics::GaugeFamily& volume_bytes;
  metrics::CounterFamily& volume_commits;
};

}  // namespace cairn::controller
