// Metrics in the Prometheus text exposition format (version 0.0.4).
//
// prometheus-cpp is packaged nowhere we can reach, so this is the one small
// module that writes the format. A Registry owns metric families; a family
// owns one series per label-value tuple. Series handles returned by
// WithLabels() stay valid for the registry's lifetime unless Remove()d.
//
// Thread-safe: every method may be called from any thread. Counters and
// gauges are lock-free atomics; a histogram series takes its own mutex;
// families take a mutex only to find or create a series.
#pragma once

#include <atomic>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace cairn::metrics {

using LabelValues = std::vector<std::string>;

class Counter {
 public:
  // `v` must be >= 0 (counters only go up); negative values are ignored.
  void Increment(double v = 1);
  double value() const;

 private:
  std::atomic<double> value_{0};
};

class Gauge {
 public:
  void Set(double v);
  void Add(double v);
  double value() const;

 private:
  std::atomic<double> value_{0};
};

class Histogram {
 public:
  explicit Histogram(const std::vector<double>* bounds);
  void Observe(double v);

  struct Snapshot {
    std::vector<uint64_t> cumulative;  // one per bound, then +Inf
    double sum = 0;
    uint64_t count = 0;
  };
  Snapshot Read() const;

 private:
  const std::vector<double>* const bounds_;  // owned by the family
  mutable absl::Mutex mu_;
  std::vector<uint64_t> counts_ ABSL_GUARDED_BY(mu_);  // per bucket, +Inf last
  double sum_ ABSL_GUARDED_BY(mu_) = 0;
};

enum class Type { kCounter, kGauge, kHistogram };

// One metric name with its help, label names and series.
template <typename T>
class Family {
 public:
  Family(std::string name, std::string help, std::vector<std::string> labels, Type type,
         std::vector<double> bounds = {})
      : name_(std::move(name)),
        help_(std::move(help)),
        labels_(std::move(labels)),
        type_(type),
        bounds_(std::move(bounds)) {
    // A metric without labels is exported (as zero) from the start, so a
    // scrape can tell "nothing happened" from "not exported".
    if (labels_.empty()) WithLabels({});
  }

  // The series for `values` (one per label name, in order), created on
  // first use. A wrong number of values is a programming error: the extra
  // are dropped and missing ones are empty.
  T& WithLabels(const LabelValues& values);
  // Drops a series (e.g. a deleted volume's gauges). Missing is fine.
  void Remove(const LabelValues& values);

  // Appends this family's exposition text.
  void Render(std::string& out) const;

 private:
  LabelValues Fit(const LabelValues& values) const;

  const std::string name_;
  const std::string help_;
  const std::vector<std::string> labels_;
  const Type type_;
  const std::vector<double> bounds_;
  mutable absl::Mutex mu_;
  std::map<LabelValues, std::unique_ptr<T>> series_ ABSL_GUARDED_BY(mu_);
};

using CounterFamily = Family<Counter>;
using GaugeFamily = Family<Gauge>;
using HistogramFamily = Family<Histogram>;

// Default buckets for latencies in seconds: 1 ms .. 60 s.
std::vector<double> LatencyBuckets();

class Registry {
 public:
  // Names must match [a-zA-Z_:][a-zA-Z0-9_:]*; counters should end in
  // "_total" (promtool's lint). Registering a name twice returns the first
  // family (the help and labels of the second call are ignored).
  CounterFamily& AddCounter(const std::string& name, const std::string& help,
                            std::vector<std::string> labels = {});
  GaugeFamily& AddGauge(const std::string& name, const std::string& help,
                        std::vector<std::string> labels = {});
  HistogramFamily& AddHistogram(const std::string& name, const std::string& help,
                                std::vector<std::string> labels = {},
                                std::vector<double> bounds = LatencyBuckets());

  // The whole exposition, families in registration order.
  std::string Render() const;

 private:
  struct Entry {
    std::string name;
    std::unique_ptr<CounterFamily> counter;
    std::unique_ptr<GaugeFamily> gauge;
    std::unique_ptr<HistogramFamily> histogram;
  };
  Entry* Find(const std::string& name) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  mutable absl::Mutex mu_;
  std::vector<std::unique_ptr<Entry>> entries_ ABSL_GUARDED_BY(mu_);
};

// Text format helpers, exposed for tests.
std::string EscapeLabelValue(std::string_view v);
std::string FormatValue(double v);

}  // namespace cairn::metrics
