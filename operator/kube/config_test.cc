#include "operator/kube/config.h"

#include <cstdlib>
#include <fstream>

#include "absl/strings/escaping.h"
#include "core/testing/temp_dir.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace cairn::kube {
namespace {

using ::testing::HasSubstr;
namespace fs = std::filesystem;

void Write(const fs::path& p, const std::string& s) { std::ofstream(p) << s; }

TEST(KubeconfigTest, CurrentContextWithTokenAndCaData) {
  cairn::testing::TempDir dir;
  std::string ca = absl::Base64Escape("CA PEM");
  Write(dir.path() / "kc", "apiVersion: v1\nkind: Config\ncurrent-context: b\n"
        "clusters:\n- name: c1\n  cluster:\n    server: https://127.0.0.1:6443\n"
        "    certificate-authority-data: " + ca + "\n"
        "- name: c2\n  cluster:\n    server: https://other:1\n"
        "contexts:\n- name: a\n  context: {cluster: c2, user: u1}\n"
        "- name: b\n  context: {cluster: c1, user: u1, namespace: team}\n"
        "users:\n- name: u1\n  user:\n    token: abc\n");
  absl::StatusOr<Config> c = LoadKubeconfig(dir.path() / "kc");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->server, "https://127.0.0.1:6443");
  EXPECT_EQ(c->ca_pem, "CA PEM");
  EXPECT_EQ(c->token, "abc");
  EXPECT_EQ(c->ns, "team");
  absl::StatusOr<Config> a = LoadKubeconfig(dir.path() / "kc", "a");
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->server, "https://other:1");
  EXPECT_EQ(a->ns, "default");
}

TEST(KubeconfigTest, ClientCertificateFilesRelativeToTheKubeconfig) {
  cairn::testing::TempDir dir;
  fs::create_directories(dir.path() / "sub");
  Write(dir.path() / "sub" / "ca.crt", "CA");
  Write(dir.path() / "sub" / "c.crt", "CERT");
  Write(dir.path() / "sub" / "c.key", "KEY");
  Write(dir.path() / "sub" / "kc", "current-context: x\n"
        "clusters: [{name: c, cluster: {server: 'https://h:1', certificate-authority: ca.crt}}]\n"
        "contexts: [{name: x, context: {cluster: c, user: u}}]\n"
        "users: [{name: u, user: {client-certificate: c.crt, client-key: c.key, tokenFile: t}}]\n");
  absl::StatusOr<Config> c = LoadKubeconfig(dir.path() / "sub" / "kc");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->ca_pem, "CA");
  EXPECT_EQ(c->client_cert_pem, "CERT");
  EXPECT_EQ(c->client_key_pem, "KEY");
  EXPECT_EQ(c->token_file, (dir.path() / "sub" / "t").string());
}

TEST(KubeconfigTest, ClearErrors) {
  cairn::testing::TempDir dir;
  EXPECT_EQ(LoadKubeconfig(dir.path() / "missing").status().code(), absl::StatusCode::kNotFound);
  Write(dir.path() / "bad", "{{{ not yaml");
  EXPECT_EQ(LoadKubeconfig(dir.path() / "bad").status().code(),
            absl::StatusCode::kInvalidArgument);
  Write(dir.path() / "noctx", "current-context: nope\ncontexts: []\n");
  absl::Status s = LoadKubeconfig(dir.path() / "noctx").status();
  EXPECT_THAT(std::string(s.message()), HasSubstr("no context 'nope'"));
  Write(dir.path() / "nocluster", "current-context: x\n"
        "contexts: [{name: x, context: {cluster: gone, user: u}}]\n");
  s = LoadKubeconfig(dir.path() / "nocluster").status();
  EXPECT_THAT(std::string(s.message()), HasSubstr("unknown cluster 'gone'"));
  Write(dir.path() / "halfcert", "current-context: x\n"
        "clusters: [{name: c, cluster: {server: 'https://h:1'}}]\n"
        "contexts: [{name: x, context: {cluster: c, user: u}}]\n"
        "users: [{name: u, user: {client-certificate-data: Q0VSVA==}}]\n");
  s = LoadKubeconfig(dir.path() / "halfcert").status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("without a key"));
  Write(dir.path() / "badb64", "current-context: x\n"
        "clusters: [{name: c, cluster: {server: 'https://h:1', certificate-authority-data: '!!'}}]\n"
        "contexts: [{name: x, context: {cluster: c}}]\n");
  s = LoadKubeconfig(dir.path() / "badb64").status();
  EXPECT_THAT(std::string(s.message()), HasSubstr("not valid base64"));
}

TEST(InClusterConfigTest, ReadsServiceAccountAndEnvironment) {
  cairn::testing::TempDir dir;
  Write(dir.path() / "token", "tok\n");
  Write(dir.path() / "ca.crt", "CA");
  Write(dir.path() / "namespace", "cairn-system\n");
  ::unsetenv("KUBERNETES_SERVICE_HOST");
  absl::Status s = InClusterConfig(dir.path()).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(s.message()), HasSubstr("--kubeconfig"));
  ::setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1", 1);
  ::setenv("KUBERNETES_SERVICE_PORT", "443", 1);
  absl::StatusOr<Config> c = InClusterConfig(dir.path());
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->server, "https://10.0.0.1:443");
  EXPECT_EQ(c->token_file, (dir.path() / "token").string());
  EXPECT_EQ(c->ca_pem, "CA");
  EXPECT_EQ(c->ns, "cairn-system");
  Write(dir.path() / "token", "  \n");
  EXPECT_EQ(InClusterConfig(dir.path()).status().code(), absl::StatusCode::kFailedPrecondition);
  ::unsetenv("KUBERNETES_SERVICE_HOST");
  ::unsetenv("KUBERNETES_SERVICE_PORT");
}

}  // namespace
}  // namespace cairn::kube
