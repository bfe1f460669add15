// The control plane's metric families (one place, so names and labels stay
// consistent between the service, the GC loop and the tests).
#pragma once

#include "core/metrics.h"

namespace cairn::operator_ {

struct ServiceMetrics {
  explicit ServiceMetrics(metrics::Registry& r)
      : requests(r.AddCounter("cairn_api_requests_total",
                              "Volume API calls by method and gRPC status code.",
                              {"method", "code"})),
        request_duration(r.AddHistogram("cairn_api_request_duration_seconds",
                                        "Volume API call latency by method.", {"method"})),
        commit_duration(r.AddHistogram("cairn_commit_duration_seconds",
                                       "Time to apply a change set and move the head.",
                                       {"namespace", "volume"})),
        commits(r.AddCounter("cairn_commits_total", "Snapshots committed.")),
        volume_inodes(r.AddGauge("cairn_volume_inodes",
                                 "Files, directories and symlinks in a volume's head.",
                                 {"namespace", "volume"})),
        volume_bytes(r.AddGauge("cairn_volume_bytes", "Sum of file sizes in a volume's head.",
                                {"namespace", "volume"})),
        bytes_in(r.AddCounter("cairn_bytes_in_total",
                              "Sealed object bytes received from clients.")),
        bytes_out(r.AddCounter("cairn_bytes_out_total",
                               "Object and file bytes sent to clients.")),
        gc_runs(r.AddCounter("cairn_gc_runs_total", "Garbage collection passes.")),
        gc_blobs_deleted(r.AddCounter("cairn_gc_blobs_deleted_total",
                                      "Blobs removed by garbage collection.")) {}

  metrics::CounterFamily& requests;
  metrics::HistogramFamily& request_duration;
  metrics::HistogramFamily& commit_duration;
  metrics::CounterFamily& commits;
  metrics::GaugeFamily& volume_inodes;
  metrics::GaugeFamily& volume_bytes;
  metrics::CounterFamily& bytes_in;
  metrics::CounterFamily& bytes_out;
  metrics::CounterFamily& gc_runs;
  metrics::CounterFamily& gc_blobs_deleted;
};

}  // namespace cairn::operator_
