#include "core/metrics.h"

#include <charconv>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace cairn::metrics {
namespace {

void AtomicAdd(std::atomic<double>& a, double v) {
  double cur = a.load(std::memory_order_relaxed);
  while (!a.compare_exchange_weak(cur, cur + v, std::memory_order_relaxed)) {
  }
}

std::string EscapeHelp(std::string_view v) {
  std::string out;
  for (char c : v) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

const char* TypeName(Type t) {
  switch (t) {
    case Type::kCounter:
      return "counter";
    case Type::kGauge:
      return "gauge";
    case Type::kHistogram:
      return "histogram";
  }
  return "untyped";
}

// {a="x",b="y"} plus an optional extra label (histogram "le"); "" if none.
std::string LabelText(const std::vector<std::string>& names, const LabelValues& values,
                      std::string_view extra_name = {}, std::string_view extra_value = {}) {
  std::string out;
  for (size_t i = 0; i < names.size(); ++i) {
    absl::StrAppend(&out, out.empty() ? "" : ",", names[i], "=\"", EscapeLabelValue(values[i]),
                    "\"");
  }
  if (!extra_name.empty()) {
    absl::StrAppend(&out, out.empty() ? "" : ",", std::string(extra_name), "=\"", std::string(extra_value), "\"");
  }
  return out.empty() ? out : absl::StrCat("{", out, "}");
}

template <typename T>
void RenderSeries(std::string& out, const std::string& name,
                  const std::vector<std::string>& labels, const LabelValues& values,
                  const T& series, const std::vector<double>& bounds);

template <>
void RenderSeries<Counter>(std::string& out, const std::string& name,
                           const std::vector<std::string>& labels, const LabelValues& values,
                           const Counter& c, const std::vector<double>&) {
  absl::StrAppend(&out, name, LabelText(labels, values), " ", FormatValue(c.value()), "\n");
}

template <>
void RenderSeries<Gauge>(std::string& out, const std::string& name,
                         const std::vector<std::string>& labels, const LabelValues& values,
                         const Gauge& g, const std::vector<double>&) {
  absl::StrAppend(&out, name, LabelText(labels, values), " ", FormatValue(g.value()), "\n");
}

template <>
void RenderSeries<Histogram>(std::string& out, const std::string& name,
                             const std::vector<std::string>& labels, const LabelValues& values,
                             const Histogram& h, const std::vector<double>& bounds) {
  Histogram::Snapshot s = h.Read();
  for (size_t i = 0; i < bounds.size(); ++i) {
    absl::StrAppend(&out, name, "_bucket", LabelText(labels, values, "le", FormatValue(bounds[i])),
                    " ", s.cumulative[i], "\n");
  }
  absl::StrAppend(&out, name, "_bucket", LabelText(labels, values, "le", "+Inf"), " ", s.count,
                  "\n");
  absl::StrAppend(&out, name, "_sum", LabelText(labels, values), " ", FormatValue(s.sum), "\n");
  absl::StrAppend(&out, name, "_count", LabelText(labels, values), " ", s.count, "\n");
}

}  // namespace

std::string EscapeLabelValue(std::string_view v) {
  std::string out;
  for (char c : v) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

std::string FormatValue(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  // Integers print exactly (byte counts exceed float's default precision).
  if (v == std::floor(v) && std::fabs(v) < 9e15) return absl::StrFormat("%.0f", v);
  // Shortest text that parses back to the same double: 0.0025, not
  // 0.0025000000000000001.
  char buf[32];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  if (ec != std::errc()) return absl::StrFormat("%.17g", v);
  return std::string(buf, end);
}

void Counter::Increment(double v) {
  if (v > 0) AtomicAdd(value_, v);
}
double Counter::value() const { return value_.load(std::memory_order_relaxed); }

void Gauge::Set(double v) { value_.store(v, std::memory_order_relaxed); }
void Gauge::Add(double v) { AtomicAdd(value_, v); }
double Gauge::value() const { return value_.load(std::memory_order_relaxed); }

Histogram::Histogram(const std::vector<double>* bounds)
    : bounds_(bounds), counts_(bounds->size() + 1, 0) {}

void Histogram::Observe(double v) {
  size_t i = 0;
  while (i < bounds_->size() && v > (*bounds_)[i]) ++i;
  absl::MutexLock lock(&mu_);
  ++counts_[i];
  sum_ += v;
}

Histogram::Snapshot Histogram::Read() const {
  absl::MutexLock lock(&mu_);
  Snapshot s;
  uint64_t running = 0;
  for (size_t i = 0; i < bounds_->size(); ++i) {
    running += counts_[i];
    s.cumulative.push_back(running);
  }
  running += counts_.back();
  s.count = running;
  s.sum = sum_;
  return s;
}

template <typename T>
LabelValues Family<T>::Fit(const LabelValues& values) const {
  LabelValues fitted = values;
  fitted.resize(labels_.size());
  return fitted;
}

template <typename T>
T& Family<T>::WithLabels(const LabelValues& values) {
  LabelValues key = Fit(values);
  absl::MutexLock lock(&mu_);
  auto& slot = series_[key];
  if (slot == nullptr) {
    if constexpr (std::is_same_v<T, Histogram>) {
      slot = std::make_unique<Histogram>(&bounds_);
    } else {
      slot = std::make_unique<T>();
    }
  }
  return *slot;
}

template <typename T>
void Family<T>::Remove(const LabelValues& values) {
  LabelValues key = Fit(values);
  absl::MutexLock lock(&mu_);
  series_.erase(key);
}

template <typename T>
void Family<T>::Render(std::string& out) const {
  absl::StrAppend(&out, "# HELP ", name_, " ", EscapeHelp(help_), "\n");
  absl::StrAppend(&out, "# TYPE ", name_, " ", TypeName(type_), "\n");
  absl::MutexLock lock(&mu_);
  for (const auto& [values, series] : series_) {
    RenderSeries<T>(out, name_, labels_, values, *series, bounds_);
  }
}

template class Family<Counter>;
template class Family<Gauge>;
template class Family<Histogram>;

std::vector<double> LatencyBuckets() {
  return {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};
}

Registry::Entry* Registry::Find(const std::string& name) {
  for (auto& e : entries_) {
    if (e->name == name) return e.get();
  }
  return nullptr;
}

CounterFamily& Registry::AddCounter(const std::string& name, const std::string& help,
                                    std::vector<std::string> labels) {
  absl::MutexLock lock(&mu_);
  if (Entry* e = Find(name); e != nullptr && e->counter) return *e->counter;
  auto e = std::make_unique<Entry>();
  e->name = name;
  e->counter = std::make_unique<CounterFamily>(name, help, std::move(labels), Type::kCounter);
  entries_.push_back(std::move(e));
  return *entries_.back()->counter;
}

GaugeFamily& Registry::AddGauge(const std::string& name, const std::string& help,
                                std::vector<std::string> labels) {
  absl::MutexLock lock(&mu_);
  if (Entry* e = Find(name); e != nullptr && e->gauge) return *e->gauge;
  auto e = std::make_unique<Entry>();
  e->name = name;
  e->gauge = std::make_unique<GaugeFamily>(name, help, std::move(labels), Type::kGauge);
  entries_.push_back(std::move(e));
  return *entries_.back()->gauge;
}

HistogramFamily& Registry::AddHistogram(const std::string& name, const std::string& help,
                                        std::vector<std::string> labels,
                                        std::vector<double> bounds) {
  absl::MutexLock lock(&mu_);
  if (Entry* e = Find(name); e != nullptr && e->histogram) return *e->histogram;
  auto e = std::make_unique<Entry>();
  e->name = name;
  e->histogram = std::make_unique<HistogramFamily>(name, help, std::move(labels),
                                                   Type::kHistogram, std::move(bounds));
  entries_.push_back(std::move(e));
  return *entries_.back()->histogram;
}

std::string Registry::Render() const {
  std::string out;
  absl::MutexLock lock(&mu_);
  for (const auto& e : entries_) {
    if (e->counter) e->counter->Render(out);
    if (e->gauge) e->gauge->Render(out);
    if (e->histogram) e->histogram->Render(out);
  }
  return out;
}

}  // namespace cairn::metrics
