#include "core/volume_api_client.h"

#include <atomic>
#include <fstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "core/grpc_server.h"
#include "core/testing/temp_dir.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"

namespace cairn {
namespace {

// A Volume API server that answers GetHead and Commit, optionally after a
// delay, and counts what it saw.
class TestService final : public api::VolumeService::Service {
 public:
  std::atomic<int> heads{0};
  std::atomic<int> commits{0};
  std::atomic<int> hang_commits{0};  // this many Commit calls sleep past any deadline
  std::atomic<int> unavailable_commits{0};  // this many Commit calls answer UNAVAILABLE
  std::atomic<int> head_delay_ms{0};
  std::string expect_token;

  grpc::Status GetHead(grpc::ServerContext* context, const api::GetHeadRequest* request,
                       api::Snapshot* response) override {
    if (absl::Status s = CheckBearerToken(*context, expect_token); !s.ok()) {
      return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, std::string(s.message()));
    }
    ++heads;
    Sleep(context, head_delay_ms.load());
    response->set_volume_id(request->volume().id());
    response->set_seq(7);
    return grpc::Status::OK;
  }

  grpc::Status Commit(grpc::ServerContext* context, const api::CommitRequest* request,
                      api::CommitResponse* response) override {
    ++commits;
    if (unavailable_commits.fetch_sub(1) > 0) {
      return grpc::Status(grpc::StatusCode::UNAVAILABLE, "going away");
    }
    if (hang_commits.fetch_sub(1) > 0) Sleep(context, 60'000);
    response->mutable_snapshot()->set_volume_id(request->volume_id());
    response->mutable_snapshot()->set_seq(request->base_seq() + 1);
    return grpc::Status::OK;
  }

 private:
  static void Sleep(grpc::ServerContext* context, int ms) {
    const absl::Time until = absl::Now() + absl::Milliseconds(ms);
    while (absl::Now() < until && !context->IsCancelled()) absl::SleepFor(absl::Milliseconds(5));
  }
};

class VolumeApiClientTest : public ::testing::Test {
 protected:
  // Starts (or restarts, on the same port) the server.
  void StartServer() {
    const std::string address = absl::StrCat("127.0.0.1:", port_);
    auto server = GrpcServer::Start({.address = address}, {&service_});
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    port_ = server_->port();
  }
  void StopServer() {
    server_->Shutdown(absl::ZeroDuration());
    server_.reset();
  }
  ClientOptions Options() const {
    ClientOptions o;
    o.server = absl::StrCat("127.0.0.1:", port_);
    o.metadata_timeout = absl::Seconds(2);
    o.commit_timeout = absl::Seconds(2);
    o.retry_for = absl::Seconds(10);
    return o;
  }
  std::unique_ptr<VolumeApiClient> Connect(const ClientOptions& o) {
    auto client = VolumeApiClient::Connect(o);
    EXPECT_TRUE(client.ok()) << client.status();
    return client.ok() ? std::move(*client) : nullptr;
  }

  TestService service_;
  std::unique_ptr<GrpcServer> server_;
  int port_ = 0;
};

TEST_F(VolumeApiClientTest, EveryCallHasADeadline) {
  StartServer();
  service_.head_delay_ms = 30'000;  // a server that accepts and never answers
  ClientOptions o = Options();
  o.metadata_timeout = absl::Milliseconds(300);
  o.retry_for = absl::Seconds(1);
  auto client = Connect(o);
  const absl::Time start = absl::Now();
  absl::StatusOr<api::Snapshot> head = client->GetHead("vo-1");
  EXPECT_TRUE(absl::IsDeadlineExceeded(head.status())) << head.status();
  // Idempotent: retried within retry_for, then given up.
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
  EXPECT_GE(service_.heads.load(), 2);
}

TEST_F(VolumeApiClientTest, AnUnreachableServerIsUnavailableNamingItAfterRetryFor) {
  StartServer();
  StopServer();  // the port was ours a moment ago; nothing listens now
  ClientOptions o = Options();
  o.retry_for = absl::Milliseconds(800);
  auto client = Connect(o);
  const absl::Time start = absl::Now();
  absl::StatusOr<api::Snapshot> head = client->GetHead("vo-1");
  const absl::Duration took = absl::Now() - start;
  ASSERT_TRUE(absl::IsUnavailable(head.status())) << head.status();
  EXPECT_NE(head.status().message().find(o.server), std::string::npos) << head.status();
  EXPECT_GE(took, absl::Milliseconds(700));
  EXPECT_LT(took, absl::Seconds(4));
}

TEST_F(VolumeApiClientTest, ACallWaitsForARestartedServerAndUsesItAtOnce) {
  StartServer();
  auto client = Connect(Options());
  ASSERT_TRUE(client->GetHead("vo-1").ok());
  StopServer();
  absl::Time back;
  std::thread restart([&] {
    absl::SleepFor(absl::Seconds(3));
    StartServer();
    back = absl::Now();
  });
  // One call rides out the outage.
  absl::StatusOr<api::Snapshot> head = client->GetHead("vo-1");
  const absl::Time answered = absl::Now();
  restart.join();
  ASSERT_TRUE(head.ok()) << head.status();
  EXPECT_EQ(head->seq(), 7u);
  EXPECT_LT(answered - back, absl::Seconds(2)) << "answered " << (answered - back)
                                               << " after the server came back";
}

// gRPC's reconnect backoff grows to 120 s unless capped: after a long
// outage, a client whose calls kept failing would find the server again
// only at its next, distant reconnect attempt.
TEST_F(VolumeApiClientTest, AfterALongOutageTheServerIsUsedWithinTwoSeconds) {
  StartServer();
  ClientOptions o = Options();
  o.retry_for = absl::Milliseconds(300);  // calls fail during the outage, as reads would
  auto client = Connect(o);
  ASSERT_TRUE(client->GetHead("vo-1").ok());
  StopServer();
  const absl::Time outage_ends = absl::Now() + absl::Seconds(12);
  absl::Time back;
  absl::Notification restarted;
  std::thread restart([&] {
    absl::SleepFor(outage_ends - absl::Now());
    StartServer();
    back = absl::Now();
    restarted.Notify();
  });
  absl::Time answered;
  while (true) {
    if (client->GetHead("vo-1").ok()) {
      answered = absl::Now();
      break;
    }
    ASSERT_LT(absl::Now(), outage_ends + absl::Seconds(30)) << "never recovered";
  }
  restart.join();
  ASSERT_TRUE(restarted.HasBeenNotified());
  std::printf("recovered after %s\n", absl::FormatDuration(answered - back).c_str());
  EXPECT_LT(answered - back, absl::Seconds(2)) << "recovered " << (answered - back)
                                               << " after the server came back";
}

TEST_F(VolumeApiClientTest, AShortenedBudgetEndsCallsWaitingNow) {
  StartServer();
  StopServer();
  ClientOptions o = Options();
  o.retry_for = absl::Seconds(60);
  auto client = Connect(o);
  std::thread shorten([&] {
    absl::SleepFor(absl::Milliseconds(500));
    client->SetRetryFor(absl::Milliseconds(200));
  });
  const absl::Time start = absl::Now();
  absl::StatusOr<api::Snapshot> head = client->GetHead("vo-1");
  const absl::Duration took = absl::Now() - start;
  shorten.join();
  EXPECT_TRUE(absl::IsUnavailable(head.status())) << head.status();
  EXPECT_LT(took, absl::Seconds(5));
}

TEST_F(VolumeApiClientTest, SendsTheBearerToken) {
  service_.expect_token = "s3cret";
  StartServer();
  ClientOptions o = Options();
  auto anonymous = Connect(o);
  EXPECT_TRUE(absl::IsUnauthenticated(anonymous->GetHead("vo-1").status()));
  o.token = "s3cret";
  auto authorized = Connect(o);
  EXPECT_TRUE(authorized->GetHead("vo-1").ok());
}

TEST_F(VolumeApiClientTest, ACommitIsResentAfterATimeoutOnlyWithAnIdempotencyKey) {
  StartServer();
  ClientOptions o = Options();
  o.commit_timeout = absl::Milliseconds(300);
  auto client = Connect(o);
  api::CommitRequest request;
  request.set_volume_id("vo-1");
  request.set_base_seq(3);

  service_.hang_commits = 1;
  absl::StatusOr<api::Snapshot> blind = client->Commit(request);
  EXPECT_TRUE(absl::IsDeadlineExceeded(blind.status())) << blind.status();
  EXPECT_EQ(service_.commits.load(), 1);

  service_.commits = 0;
  service_.hang_commits = 1;
  request.set_idempotency_key("k-1");
  absl::StatusOr<api::Snapshot> keyed = client->Commit(request);
  ASSERT_TRUE(keyed.ok()) << keyed.status();
  EXPECT_EQ(keyed->seq(), 4u);
  EXPECT_EQ(service_.commits.load(), 2);
}

// The keepalive contract (core/grpc_server.h): an idle client pings, and a
// GrpcServer accepts those pings, so the connection stays up however long
// the client idles. The intervals are 300x shorter than in production.
ClientOptions FastPings(ClientOptions o) {
  o.keepalive_time = absl::Milliseconds(100);
  o.keepalive_timeout = absl::Milliseconds(500);
  return o;
}

// Makes one call on a Dial()ed channel, idles, and reports whether the
// same connection is still up.
bool StaysConnectedWhileIdle(const ClientOptions& o) {
  absl::StatusOr<std::shared_ptr<grpc::Channel>> channel = Dial(o);
  EXPECT_TRUE(channel.ok()) << channel.status();
  auto stub = api::VolumeService::NewStub(*channel);
  grpc::ClientContext context;
  api::GetHeadRequest request;
  api::Snapshot head;
  EXPECT_TRUE(stub->GetHead(&context, request, &head).ok());
  // gRPC sends at most one ping a second; its default server policy
  // answers the third with GOAWAY.
  absl::SleepFor(absl::Seconds(6));
  return (*channel)->GetState(/*try_to_connect=*/false) == GRPC_CHANNEL_READY;
}

TEST_F(VolumeApiClientTest, AnIdleClientKeepsItsConnectionToGrpcServer) {
  StartServer();
  EXPECT_TRUE(StaysConnectedWhileIdle(FastPings(Options())));
}

// What the control plane did before it used GrpcServer: gRPC's default
// policy answers an idle client's pings with GOAWAY ENHANCE_YOUR_CALM
// "too_many_pings" and closes the connection; a call racing with that
// closing fails UNAVAILABLE (a mount's sync answered EIO).
TEST_F(VolumeApiClientTest, GrpcDefaultPolicyDropsAnIdleClientThatPings) {
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&service_);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  ASSERT_NE(server, nullptr);
  port_ = port;
  EXPECT_FALSE(StaysConnectedWhileIdle(FastPings(Options())));
  server->Shutdown(std::chrono::system_clock::now());
}

TEST_F(VolumeApiClientTest, ACommitAnsweredUnavailableIsRetriedNotSurfaced) {
  StartServer();
  service_.unavailable_commits = 2;
  auto client = Connect(Options());
  api::CommitRequest request;
  request.set_volume_id("vo-1");
  request.set_base_seq(1);
  absl::StatusOr<api::Snapshot> committed = client->Commit(request);
  ASSERT_TRUE(committed.ok()) << committed.status();
  EXPECT_EQ(committed->seq(), 2u);
  EXPECT_EQ(service_.commits.load(), 3);
  EXPECT_EQ(client->retries(), 2u);
}

TEST(ReadTokenFileTest, ReadsAWholeLongTokenAndStripsTheNewline) {
  testing::TempDir dir;
  const std::string path = (dir.path() / "token").string();
  const std::string token(10'000, 'k');  // a long JWT-like token
  std::ofstream(path) << token << "\n";
  absl::StatusOr<std::string> read = ReadTokenFile(path);
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(*read, token);
}

TEST(ReadTokenFileTest, MissingOrEmptyFilesAreClearErrors) {
  testing::TempDir dir;
  absl::StatusOr<std::string> missing = ReadTokenFile((dir.path() / "nope").string());
  EXPECT_TRUE(absl::IsFailedPrecondition(missing.status())) << missing.status();
  EXPECT_NE(missing.status().message().find("nope"), std::string::npos);
  const std::string empty = (dir.path() / "empty").string();
  std::ofstream(empty) << " \n";
  EXPECT_TRUE(absl::IsInvalidArgument(ReadTokenFile(empty).status()));
}

}  // namespace
}  // namespace cairn
