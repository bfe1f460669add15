// Client against an in-process HTTP server that answers like the API
// server does (status codes, metav1.Status bodies, chunked watch streams).
// The real API server is exercised by e2e/kube.
#include "operator/kube/client.h"

#include <httplib.h>

#include <thread>

#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "operator/kube/backoff.h"

namespace cairn::kube {
namespace {

using ::testing::HasSubstr;

std::string StatusBody(int code, const std::string& reason, const std::string& message) {
  return Dump(Json{{"kind", "Status"}, {"apiVersion", "v1"}, {"status", "Failure"},
                   {"code", code}, {"reason", reason}, {"message", message}});
}

class ClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    port_ = server_.bind_to_any_port("127.0.0.1");
    ASSERT_GT(port_, 0);
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    while (!server_.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  void TearDown() override {
    if (client_) client_->Shutdown();
    server_.stop();
    thread_.join();
  }
  Client& client() {
    if (!client_) {
      Config c;
      c.server = "http://127.0.0.1:" + std::to_string(port_);
      c.token = "secret-token";
      client_ = *Client::Create(c, ClientOptions{std::chrono::milliseconds(2000),
                                                 std::chrono::milliseconds(5000)});
    }
    return *client_;
  }

  httplib::Server server_;
  int port_ = 0;
  std::thread thread_;
  std::unique_ptr<Client> client_;
};

TEST(ResourcePathTest, CoreAndGroupedAndSubresources) {
  EXPECT_EQ(ResourcePath({"", "v1", "events"}, "ns1"), "/api/v1/namespaces/ns1/events");
  Resource vol{"cairn.dev", "v1alpha1", "volumes"};
  EXPECT_EQ(ResourcePath(vol, ""), "/apis/cairn.dev/v1alpha1/volumes");
  EXPECT_EQ(ResourcePath(vol, "a", "b", "status"),
            "/apis/cairn.dev/v1alpha1/namespaces/a/volumes/b/status");
}

TEST_F(ClientTest, GetSendsBearerTokenAndParsesObject) {
  std::string auth;
  server_.Get("/api/v1/namespaces/a/configmaps/b", [&](const httplib::Request& req,
                                                       httplib::Response& res) {
    auth = req.get_header_value("Authorization");
    res.set_content(R"({"metadata":{"name":"b","resourceVersion":"7"}})", "application/json");
  });
  absl::StatusOr<Json> got = client().Get("/api/v1/namespaces/a/configmaps/b");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(GetStringAt(*got, {"metadata", "resourceVersion"}), "7");
  EXPECT_EQ(auth, "Bearer secret-token");
}

TEST_F(ClientTest, HttpStatusesBecomeTypedErrors) {
  struct Case {
    int http;
    std::string reason;
    absl::StatusCode code;
    Reason kube;
  };
  const std::vector<Case> cases = {
      {404, "NotFound", absl::StatusCode::kNotFound, Reason::kNotFound},
      {409, "AlreadyExists", absl::StatusCode::kAlreadyExists, Reason::kAlreadyExists},
      {409, "Conflict", absl::StatusCode::kAborted, Reason::kConflict},
      {410, "Expired", absl::StatusCode::kFailedPrecondition, Reason::kGone},
      {422, "Invalid", absl::StatusCode::kInvalidArgument, Reason::kInvalid},
      {403, "Forbidden", absl::StatusCode::kPermissionDenied, Reason::kForbidden},
      {401, "Unauthorized", absl::StatusCode::kUnauthenticated, Reason::kUnauthorized},
      {429, "TooManyRequests", absl::StatusCode::kUnavailable, Reason::kTooManyRequests},
      {503, "ServiceUnavailable", absl::StatusCode::kUnavailable, Reason::kUnavailable},
  };
  int which = 0;
  server_.Get("/x", [&](const httplib::Request&, httplib::Response& res) {
    const Case& c = cases[which];
    res.status = c.http;
    res.set_content(StatusBody(c.http, c.reason, "the message " + c.reason), "application/json");
  });
  for (which = 0; which < static_cast<int>(cases.size()); ++which) {
    const Case& c = cases[which];
    absl::Status s = client().Get("/x").status();
    EXPECT_EQ(s.code(), c.code) << c.http << " " << s;
    EXPECT_EQ(ReasonOf(s), c.kube) << c.http << " " << s;
    EXPECT_THAT(std::string(s.message()), HasSubstr("the message " + c.reason));
  }
  EXPECT_TRUE(IsConflict(WithReason(absl::AbortedError("x"), Reason::kConflict)));
  EXPECT_EQ(ReasonOf(absl::AbortedError("no payload")), Reason::kNone);
}

TEST_F(ClientTest, ConnectionRefusedIsUnavailable) {
  Config c;
  c.server = "http://127.0.0.1:1";
  auto client = *Client::Create(c);
  absl::Status s = client->Get("/api").status();
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
  EXPECT_TRUE(IsRetriable(s));
}

TEST_F(ClientTest, BadServerUrlAndPemAreRefused) {
  Config c;
  c.server = "ftp://x";
  EXPECT_EQ(Client::Create(c).status().code(), absl::StatusCode::kInvalidArgument);
  c.server = "https://host:99999";
  EXPECT_EQ(Client::Create(c).status().code(), absl::StatusCode::kInvalidArgument);
  c.server = "https://host:6443";
  c.ca_pem = "not a certificate";
  absl::Status s = Client::Create(c).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("certificate authority"));
}

TEST_F(ClientTest, CreateUpdateMergePatchDeleteUseTheRightVerbs) {
  std::vector<std::string> seen;
  auto record = [&](const httplib::Request& req, httplib::Response& res) {
    seen.push_back(req.method + " " + req.path + " " + req.get_header_value("Content-Type") +
                   " " + req.body);
    res.set_content(R"({"ok":true})", "application/json");
  };
  server_.Post("/c", record);
  server_.Put("/c/o", record);
  server_.Patch("/c/o/status", record);
  server_.Delete("/c/o", record);
  ASSERT_TRUE(client().Create("/c", Json{{"a", 1}}).ok());
  ASSERT_TRUE(client().Update("/c/o", Json{{"b", 2}}).ok());
  ASSERT_TRUE(client().MergePatch("/c/o/status", Json{{"status", {{"phase", "Ready"}}}}).ok());
  ASSERT_TRUE(client().Delete("/c/o").ok());
  ASSERT_EQ(seen.size(), 4u);
  EXPECT_EQ(seen[0], R"(POST /c application/json {"a":1})");
  EXPECT_EQ(seen[1], R"(PUT /c/o application/json {"b":2})");
  EXPECT_EQ(seen[2], R"(PATCH /c/o/status application/merge-patch+json {"status":{"phase":"Ready"}})");
  EXPECT_EQ(seen[3], "DELETE /c/o  ");
}

TEST_F(ClientTest, ListFollowsContinueTokens) {
  std::vector<std::string> continues;
  server_.Get("/l", [&](const httplib::Request& req, httplib::Response& res) {
    std::string cont = req.get_param_value("continue");
    continues.push_back(cont);
    if (cont.empty()) {
      res.set_content(R"({"metadata":{"resourceVersion":"10","continue":"p 2"},"items":[{"n":1}]})",
                      "application/json");
    } else {
      res.set_content(R"({"metadata":{"resourceVersion":"11"},"items":[{"n":2},{"n":3}]})",
                      "application/json");
    }
  });
  absl::StatusOr<ListResult> l = client().List("/l", ListOptions{"", 1});
  ASSERT_TRUE(l.ok()) << l.status();
  ASSERT_EQ(l->items.size(), 3u);
  EXPECT_EQ(l->items[2]["n"], 3);
  EXPECT_EQ(l->resource_version, "11");
  EXPECT_EQ(continues, (std::vector<std::string>{"", "p 2"}));
}

TEST_F(ClientTest, WatchStreamsEventsAcrossChunksAndPassesOptions) {
  std::string query;
  server_.Get("/w", [&](const httplib::Request& req, httplib::Response& res) {
    query = req.get_param_value("resourceVersion") + "|" +
            req.get_param_value("allowWatchBookmarks") + "|" + req.get_param_value("watch");
    res.set_chunked_content_provider("application/json", [](size_t, httplib::DataSink& sink) {
      std::string a = R"({"type":"ADDED","object":{"metadata":{"name":"x","resourceVersion":"5"}}})";
      std::string b = "\n" + std::string(R"({"type":"BOOKMARK","object":{"metadata":{"resourceVersion":"6"}}})") + "\n";
      // Split an event across writes, as TCP may.
      sink.write(a.data(), 20);
      sink.write(a.data() + 20, a.size() - 20);
      sink.write(b.data(), b.size());
      std::string c = R"({"type":"DELETED","object":{"metadata":{"name":"x","resourceVersion":"7"}}})" "\n";
      sink.write(c.data(), c.size());
      sink.done();
      return true;
    });
  });
  std::vector<std::string> got;
  absl::Status s = client().Watch("/w", WatchOptions{"4", true}, [&](const WatchEvent& e) {
    got.push_back(std::to_string(static_cast<int>(e.type)) + ":" +
                  GetStringAt(e.object, {"metadata", "resourceVersion"}));
    return true;
  });
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(got, (std::vector<std::string>{"0:5", "3:6", "2:7"}));
  EXPECT_EQ(query, "4|true|1");
}

TEST_F(ClientTest, WatchErrorEventGoneIsReported) {
  server_.Get("/w", [&](const httplib::Request&, httplib::Response& res) {
    res.set_chunked_content_provider("application/json", [](size_t, httplib::DataSink& sink) {
      std::string e = R"J({"type":"ERROR","object":{"kind":"Status","code":410,"reason":"Expired","message":"too old resource version: 1 (20)"}})J" "\n";
      sink.write(e.data(), e.size());
      sink.done();
      return true;
    });
  });
  absl::Status s = client().Watch("/w", WatchOptions{"1", true}, [](const WatchEvent&) { return true; });
  EXPECT_TRUE(IsGone(s)) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr("too old resource version"));
}

TEST_F(ClientTest, WatchHttpErrorIsTyped) {
  server_.Get("/w", [&](const httplib::Request&, httplib::Response& res) {
    res.status = 403;
    res.set_content(StatusBody(403, "Forbidden", "cannot watch volumes"), "application/json");
  });
  absl::Status s = client().Watch("/w", WatchOptions{}, [](const WatchEvent&) { return true; });
  EXPECT_TRUE(IsForbidden(s)) << s;
}

TEST_F(ClientTest, ShutdownCancelsARunningWatch) {
  absl::Notification streaming;
  server_.Get("/w", [&](const httplib::Request&, httplib::Response& res) {
    res.set_chunked_content_provider("application/json", [&](size_t, httplib::DataSink& sink) {
      std::string e = R"({"type":"ADDED","object":{"metadata":{"resourceVersion":"1"}}})" "\n";
      sink.write(e.data(), e.size());
      if (!streaming.HasBeenNotified()) streaming.Notify();
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      return sink.is_writable();
    });
  });
  absl::Status result;
  Client& c = client();
  std::thread watcher([&] {
    result = c.Watch("/w", WatchOptions{}, [](const WatchEvent&) { return true; });
  });
  streaming.WaitForNotification();
  c.Shutdown();
  watcher.join();
  EXPECT_EQ(result.code(), absl::StatusCode::kCancelled) << result;
  EXPECT_EQ(c.Get("/w").status().code(), absl::StatusCode::kCancelled);
}

TEST(BackoffTest, DoublesUpToTheCapWithBoundedJitter) {
  Backoff b(std::chrono::milliseconds(100), std::chrono::milliseconds(1000), 0.2, 42);
  std::vector<int64_t> bases = {100, 200, 400, 800, 1000, 1000};
  for (int64_t base : bases) {
    int64_t d = b.Next().count();
    EXPECT_GE(d, base * 8 / 10);
    EXPECT_LE(d, base * 12 / 10);
  }
  b.Reset();
  EXPECT_LE(b.Next().count(), 120);
  // Jitter spreads: two backoffs with different seeds differ somewhere.
  Backoff x(std::chrono::milliseconds(1000), std::chrono::milliseconds(1000), 0.2, 1);
  Backoff y(std::chrono::milliseconds(1000), std::chrono::milliseconds(1000), 0.2, 2);
  bool differ = false;
  for (int i = 0; i < 10; ++i) differ = differ || x.Next() != y.Next();
  EXPECT_TRUE(differ);
}

}  // namespace
}  // namespace cairn::kube
