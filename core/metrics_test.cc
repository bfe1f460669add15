#include "core/metrics.h"

#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace cairn::metrics {
namespace {

using ::testing::HasSubstr;

TEST(MetricsTest, CounterWithLabelsRenders) {
  Registry r;
  auto& c = r.AddCounter("cairn_things_total", "Things done.", {"method", "code"});
  c.WithLabels({"Put", "OK"}).Increment();
  c.WithLabels({"Put", "OK"}).Increment(2);
  std::string text = r.Render();
  EXPECT_THAT(text, HasSubstr("# HELP cairn_things_total Things done.\n"));
  EXPECT_THAT(text, HasSubstr("# TYPE cairn_things_total counter\n"));
  EXPECT_THAT(text, HasSubstr("cairn_things_total{method=\"Put\",code=\"OK\"} 3\n"));
}

TEST(MetricsTest, GaugeSetAddRemove) {
  Registry r;
  auto& g = r.AddGauge("cairn_volume_bytes", "Bytes.", {"namespace", "volume"});
  g.WithLabels({"default", "a"}).Set(10);
  g.WithLabels({"default", "a"}).Add(-3);
  g.WithLabels({"default", "b"}).Set(1);
  g.Remove({"default", "b"});
  std::string text = r.Render();
  EXPECT_THAT(text, HasSubstr("cairn_volume_bytes{namespace=\"default\",volume=\"a\"} 7\n"));
  EXPECT_EQ(text.find("volume=\"b\""), std::string::npos);
}

TEST(MetricsTest, HistogramBucketsAreCumulative) {
  Registry r;
  auto& h = r.AddHistogram("cairn_op_seconds", "Latency.", {}, {0.1, 1});
  h.WithLabels({}).Observe(0.05);
  h.WithLabels({}).Observe(0.5);
  h.WithLabels({}).Observe(5);
  std::string text = r.Render();
  EXPECT_THAT(text, HasSubstr("cairn_op_seconds_bucket{le=\"0.1\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("cairn_op_seconds_bucket{le=\"1\"} 2\n"));
  EXPECT_THAT(text, HasSubstr("cairn_op_seconds_bucket{le=\"+Inf\"} 3\n"));
  EXPECT_THAT(text, HasSubstr("cairn_op_seconds_count 3\n"));
  EXPECT_THAT(text, HasSubstr("cairn_op_seconds_sum 5.55\n"));
}

TEST(MetricsTest, UnlabelledMetricsStartAtZero) {
  Registry r;
  r.AddCounter("c_total", "c");
  r.AddHistogram("h_seconds", "h", {}, {1});
  r.AddCounter("l_total", "l", {"x"});
  std::string text = r.Render();
  EXPECT_THAT(text, HasSubstr("c_total 0\n"));
  EXPECT_THAT(text, HasSubstr("h_seconds_count 0\n"));
  EXPECT_EQ(text.find("l_total{"), std::string::npos);
}

TEST(MetricsTest, LabelValuesAreEscaped) {
  EXPECT_EQ(EscapeLabelValue("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
}

TEST(MetricsTest, RegisteringTwiceReturnsSameFamily) {
  Registry r;
  auto& a = r.AddCounter("x_total", "x");
  auto& b = r.AddCounter("x_total", "y");
  EXPECT_EQ(&a, &b);
}

TEST(MetricsTest, ConcurrentIncrementsAreNotLost) {
  Registry r;
  auto& c = r.AddCounter("n_total", "n", {"t"});
  auto& h = r.AddHistogram("h_seconds", "h");
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 10000; ++i) {
        c.WithLabels({"x"}).Increment();
        h.WithLabels({}).Observe(0.002);
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(c.WithLabels({"x"}).value(), 40000);
  EXPECT_EQ(h.WithLabels({}).Read().count, 40000u);
}

}  // namespace
}  // namespace cairn::metrics
