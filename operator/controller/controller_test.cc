// VolumeController and LeaderElector against an in-process HTTP server that
// answers like the API server, for the paths a healthy real server rarely
// takes (410 Gone on a watch, lease expiry and conflicts). e2e/kube covers
// the same code against a real kube-apiserver.
#include "operator/controller/controller.h"

#include <httplib.h>

#include <atomic>
#include <thread>

#include "core/testing/mem_stores.h"
#include "core/blob_store.h"
#include "core/crypto.h"
#include "core/meta_store.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "operator/controller/leader.h"

namespace cairn::controller {
namespace {

using kube::Json;
using Clock = std::chrono::steady_clock;

class FakeApiServer {
 public:
  FakeApiServer() {
    port_ = server_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    while (!server_.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ~FakeApiServer() {
    server_.stop();
    thread_.join();
  }
  httplib::Server& server() { return server_; }
  std::unique_ptr<kube::Client> Client() {
    kube::Config c;
    c.server = "http://127.0.0.1:" + std::to_string(port_);
    return *kube::Client::Create(c);
  }

 private:
  httplib::Server server_;
  int port_ = 0;
  std::thread thread_;
};

bool WaitFor(const std::function<bool()>& pred, std::chrono::seconds timeout) {
  const auto deadline = Clock::now() + timeout;
  while (Clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return pred();
}

TEST(VolumeControllerTest, WatchGoneRelistsAndReconcilesWhatTheListShows) {
  FakeApiServer api;
  std::atomic<int> lists{0}, watches{0}, gets_b{0};
  std::atomic<bool> stop_streams{false};
  api.server().Get("/apis/cairn.dev/v1alpha1/volumes", [&](const httplib::Request& req,
                                                           httplib::Response& res) {
    if (req.get_param_value("watch") != "1") {
      int n = ++lists;
      // The second list shows a Volume created while the watch was expired.
      Json items = Json::array({Json{{"metadata", {{"namespace", "ns"}, {"name", "a"}}}}});
      if (n >= 2) items.push_back(Json{{"metadata", {{"namespace", "ns"}, {"name", "b"}}}});
      res.set_content(kube::Dump(Json{{"metadata", {{"resourceVersion", std::to_string(10 * n)}}},
                                      {"items", items}}),
                      "application/json");
      return;
    }
    int w = ++watches;
    res.set_chunked_content_provider("application/json", [&, w](size_t, httplib::DataSink& sink) {
      if (w == 1) {
        std::string e = R"J({"type":"ERROR","object":{"kind":"Status","code":410,"reason":"Expired","message":"too old resource version"}})J" "\n";
        sink.write(e.data(), e.size());
        sink.done();
        return true;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      if (stop_streams) sink.done();
      return true;
    });
  });
  // Both Volumes are already gone when reconciled: the reconciler only
  // records that (no engine work), which is all this test needs.
  api.server().Get(R"(/apis/cairn.dev/v1alpha1/namespaces/ns/volumes/(\w+))",
                   [&](const httplib::Request& req, httplib::Response& res) {
                     if (req.matches[1] == "b") ++gets_b;
                     res.status = 404;
                     res.set_content(R"({"kind":"Status","code":404,"reason":"NotFound"})",
                                     "application/json");
                   });
  auto client = api.Client();
  auto meta = NewMemMetaStore();
  auto blobs = NewMemBlobStore();
  Engine engine(meta.get(), blobs.get(), *MasterKey::FromBytes(std::string(32, 'k')));
  metrics::Registry registry;
  ControllerMetrics m(registry);
  ControllerOptions o;
  o.backoff_initial = std::chrono::milliseconds(10);
  VolumeController controller(client.get(), &engine, &m, o, [] { return true; });
  controller.Start();
  EXPECT_TRUE(WaitFor([&] { return gets_b.load() >= 1; }, std::chrono::seconds(10)))
      << "lists " << lists << " watches " << watches;
  EXPECT_GE(lists.load(), 2);
  EXPECT_EQ(m.watch_restarts.WithLabels({"expired"}).value(), 1);
  EXPECT_TRUE(controller.ApiState().ok());
  stop_streams = true;
  client->Shutdown();
  controller.Stop();
}

TEST(VolumeReconcilerTest, NameCairnCannotHoldBecomesAConditionNotARetry) {
  FakeApiServer api;
  const std::string name(70, 'n');  // a valid Kubernetes name, too long for Cairn
  std::string patched;
  api.server().Get(".*/namespaces/ns/volumes/n+", [&](const httplib::Request&,
                                                     httplib::Response& res) {
    res.set_content(kube::Dump(Json{{"apiVersion", "cairn.dev/v1alpha1"}, {"kind", "Volume"},
                                    {"metadata", {{"namespace", "ns"}, {"name", name},
                                                  {"generation", 1}, {"resourceVersion", "3"}}},
                                    {"spec", {{"version", 2}}}}),
                    "application/json");
  });
  api.server().Patch(".*/namespaces/ns/volumes/n+/status",
                     [&](const httplib::Request& req, httplib::Response& res) {
                       patched = req.body;
                       res.set_content("{}", "application/json");
                     });
  api.server().Post("/api/v1/namespaces/ns/events", [](const httplib::Request&,
                                                       httplib::Response& res) {
    res.set_content("{}", "application/json");
  });
  auto client = api.Client();
  auto meta = NewMemMetaStore();
  auto blobs = NewMemBlobStore();
  Engine engine(meta.get(), blobs.get(), *MasterKey::FromBytes(std::string(32, 'k')));
  metrics::Registry registry;
  ControllerMetrics m(registry);
  VolumeReconciler r(client.get(), &engine, &m);
  absl::StatusOr<ReconcileResult> result = r.Reconcile("ns", name);
  ASSERT_TRUE(result.ok()) << result.status();
  Json status = kube::ParseJson(patched)["status"];
  EXPECT_EQ(status["phase"], "Failed");
  EXPECT_EQ(status["conditions"][0]["reason"], "InvalidSpec");
  EXPECT_THAT(status["conditions"][0]["message"].get<std::string>(),
              ::testing::HasSubstr("maximum is 64"));
  EXPECT_TRUE(engine.ListVolumes("ns")->empty());
}

TEST(VolumeControllerTest, UnreachableApiServerIsReportedAndRetried) {
  kube::Config c;
  c.server = "http://127.0.0.1:1";
  auto client = *kube::Client::Create(c);
  auto meta = NewMemMetaStore();
  auto blobs = NewMemBlobStore();
  Engine engine(meta.get(), blobs.get(), *MasterKey::FromBytes(std::string(32, 'k')));
  metrics::Registry registry;
  ControllerMetrics m(registry);
  ControllerOptions o;
  o.backoff_initial = std::chrono::milliseconds(10);
  VolumeController controller(client.get(), &engine, &m, o, [] { return true; });
  controller.Start();
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  absl::Status s = controller.ApiState();
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(s.message()), ::testing::HasSubstr("Kubernetes API server"));
  client->Shutdown();
  controller.Stop();
}

// A Lease store with resourceVersion checks, as the API server keeps it.
class FakeLeases {
 public:
  explicit FakeLeases(httplib::Server& s) {
    const std::string path = "/apis/coordination.k8s.io/v1/namespaces/ns/leases";
    s.Get(path + "/l", [this](const httplib::Request&, httplib::Response& res) {
      std::lock_guard<std::mutex> lock(mu_);
      if (lease_.is_null()) {
        res.status = 404;
        res.set_content(R"({"kind":"Status","code":404,"reason":"NotFound"})", "application/json");
        return;
      }
      res.set_content(kube::Dump(lease_), "application/json");
    });
    s.Post(path, [this](const httplib::Request& req, httplib::Response& res) {
      std::lock_guard<std::mutex> lock(mu_);
      if (!lease_.is_null()) {
        res.status = 409;
        res.set_content(R"({"kind":"Status","code":409,"reason":"AlreadyExists"})", "application/json");
        return;
      }
      lease_ = Json::parse(req.body);
      lease_["metadata"]["resourceVersion"] = std::to_string(++rv_);
      res.status = 201;
      res.set_content(kube::Dump(lease_), "application/json");
    });
    s.Put(path + "/l", [this](const httplib::Request& req, httplib::Response& res) {
      std::lock_guard<std::mutex> lock(mu_);
      Json next = Json::parse(req.body);
      if (lease_.is_null() || kube::GetStringAt(next, {"metadata", "resourceVersion"}) !=
                                  kube::GetStringAt(lease_, {"metadata", "resourceVersion"})) {
        res.status = 409;
        res.set_content(R"({"kind":"Status","code":409,"reason":"Conflict"})", "application/json");
        return;
      }
      lease_ = next;
      lease_["metadata"]["resourceVersion"] = std::to_string(++rv_);
      res.set_content(kube::Dump(lease_), "application/json");
    });
  }
  std::string holder() {
    std::lock_guard<std::mutex> lock(mu_);
    return lease_.is_null() ? "" : kube::GetStringAt(lease_, {"spec", "holderIdentity"});
  }

 private:
  std::mutex mu_;
  Json lease_;
  int rv_ = 0;
};

LeaderOptions Fast(const std::string& id) {
  LeaderOptions o;
  o.ns = "ns";
  o.name = "l";
  o.identity = id;
  o.lease_duration = std::chrono::milliseconds(600);
  o.renew_deadline = std::chrono::milliseconds(400);
  o.retry_period = std::chrono::milliseconds(50);
  return o;
}

TEST(LeaderElectorTest, OneLeaderTakeoverAfterExpiryAndReleaseOnStop) {
  FakeApiServer api;
  FakeLeases leases(api.server());
  auto client = api.Client();
  auto a = *LeaderElector::Start(client.get(), Fast("a"), nullptr);
  ASSERT_TRUE(WaitFor([&] { return a->IsLeader(); }, std::chrono::seconds(5)));
  auto b = *LeaderElector::Start(client.get(), Fast("b"), nullptr);
  // b sees a renewing and never leads.
  std::this_thread::sleep_for(std::chrono::milliseconds(1000));
  EXPECT_TRUE(a->IsLeader());
  EXPECT_FALSE(b->IsLeader());
  EXPECT_TRUE(b->LeaseState().ok());
  EXPECT_EQ(leases.holder(), "a");
  // a stops cleanly: the lease is released, so b takes it sooner than a
  // lease duration.
  auto t0 = Clock::now();
  a->Stop();
  EXPECT_FALSE(a->IsLeader());
  ASSERT_TRUE(WaitFor([&] { return b->IsLeader(); }, std::chrono::seconds(5)));
  EXPECT_LT(Clock::now() - t0, std::chrono::milliseconds(600));
  EXPECT_EQ(leases.holder(), "b");
  b->Stop();
}

TEST(LeaderElectorTest, AnExpiredHolderIsReplaced) {
  FakeApiServer api;
  FakeLeases leases(api.server());
  auto client = api.Client();
  // "dead" took the lease and never renews.
  Json lease = {{"apiVersion", "coordination.k8s.io/v1"}, {"kind", "Lease"},
                {"metadata", {{"name", "l"}, {"namespace", "ns"}}},
                {"spec", {{"holderIdentity", "dead"}, {"leaseDurationSeconds", 1},
                          {"renewTime", "2026-01-01T00:00:00.000000Z"}}}};
  ASSERT_TRUE(client->Create("/apis/coordination.k8s.io/v1/namespaces/ns/leases", lease).ok());
  std::atomic<int> changes{0};
  auto t0 = Clock::now();
  auto b = *LeaderElector::Start(client.get(), Fast("b"), [&](bool) { ++changes; });
  ASSERT_TRUE(WaitFor([&] { return b->IsLeader(); }, std::chrono::seconds(5)));
  // Not before the holder's own lease duration (1 s), timed on b's clock
  // from when it first saw the record: the renewTime's date is not trusted.
  EXPECT_GE(Clock::now() - t0, std::chrono::milliseconds(1000));
  EXPECT_EQ(leases.holder(), "b");
  EXPECT_EQ(changes.load(), 1);
  b->Stop();
}

TEST(LeaderElectorTest, InconsistentDurationsAreRefused) {
  kube::Config c;
  c.server = "http://127.0.0.1:1";
  auto client = *kube::Client::Create(c);
  LeaderOptions o = Fast("x");
  o.renew_deadline = o.lease_duration;
  EXPECT_EQ(LeaderElector::Start(client.get(), o, nullptr).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace cairn::controller
