#include "e2e/kube/cluster.h"

#include <httplib.h>
#include <signal.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <thread>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "core/status.h"
#include "operator/kube/config.h"

#ifndef CAIRN_SOURCE_DIR
#error "CAIRN_SOURCE_DIR must name the source tree (for scripts/go-tools.sh)"
#endif

namespace cairn::e2e {
namespace {

namespace fs = std::filesystem;
constexpr char kAdminToken[] = "cairn-e2e-admin-token";

absl::Status Run(const std::vector<std::string>& argv, const std::string& what) {
  RunResult r = RunProcess(argv);
  if (r.exit_code != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat(what, " failed (exit ", r.exit_code, "): ", r.err.substr(0, 2000)));
  }
  return absl::OkStatus();
}

}  // namespace

bool MaySkipForMissingTools() {
  const char* ci = std::getenv("CI");
  return ci == nullptr || std::string(ci) != "true";
}

absl::StatusOr<fs::path> GoTool(const std::string& name) {
  RunOptions o;
  o.timeout = std::chrono::seconds(3600);
  RunResult r = RunProcess(
      {"/bin/bash", (fs::path(CAIRN_SOURCE_DIR) / "scripts/go-tools.sh").string(), name}, o);
  std::string path(absl::StripAsciiWhitespace(r.out));
  if (r.exit_code != 0 || path.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("scripts/go-tools.sh could not provide ", name, ": ", r.err.substr(0, 4000)));
  }
  return fs::path(path);
}

absl::StatusOr<KubeTools> GetKubeTools() {
  fs::path script = fs::path(CAIRN_SOURCE_DIR) / "scripts" / "go-tools.sh";
  RunOptions o;
  o.timeout = std::chrono::seconds(3600);  // a cold kube-apiserver build is ~13 min
  RunResult r = RunProcess({"/bin/bash", script.string(), "etcd", "kube-apiserver", "kubectl"}, o);
  if (r.exit_code != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("scripts/go-tools.sh could not provide etcd, kube-apiserver, kubectl: ",
                     r.err.substr(0, 4000)));
  }
  std::vector<std::string> lines = absl::StrSplit(r.out, '\n', absl::SkipEmpty());
  if (lines.size() != 3) {
    return absl::FailedPreconditionError(absl::StrCat("go-tools.sh printed: ", r.out));
  }
  return KubeTools{lines[0], lines[1], lines[2]};
}

absl::StatusOr<std::unique_ptr<KubeCluster>> KubeCluster::Start(const fs::path& dir) {
  // A pooled TLS connection to an API server that went away is written to
  // before it is known dead; that must be an error, not a fatal SIGPIPE.
  ::signal(SIGPIPE, SIG_IGN);
  std::unique_ptr<KubeCluster> c(new KubeCluster());
  c->dir_ = dir;
  CAIRN_ASSIGN_OR_RETURN(c->tools_, GetKubeTools());
  fs::create_directories(dir / "pki");
  fs::path pki = dir / "pki";
  // A CA, a serving certificate for 127.0.0.1/localhost, and the
  // service-account signing key pair.
  std::string ca_key = (pki / "ca.key").string(), ca_crt = (pki / "ca.crt").string();
  std::string key = (pki / "apiserver.key").string(), csr = (pki / "apiserver.csr").string();
  std::string crt = (pki / "apiserver.crt").string(), ext = (pki / "ext.cnf").string();
  WriteWholeFile(ext, "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n"
                      "keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n");
  CAIRN_RETURN_IF_ERROR(Run({"/usr/bin/openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                             "-keyout", ca_key, "-out", ca_crt, "-days", "2", "-subj",
                             "/CN=cairn-e2e-ca"},
                            "openssl (CA)"));
  CAIRN_RETURN_IF_ERROR(Run({"/usr/bin/openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout",
                             key, "-out", csr, "-subj", "/CN=kube-apiserver"},
                            "openssl (CSR)"));
  CAIRN_RETURN_IF_ERROR(Run({"/usr/bin/openssl", "x509", "-req", "-in", csr, "-CA", ca_crt,
                             "-CAkey", ca_key, "-CAcreateserial", "-out", crt, "-days", "2",
                             "-extfile", ext},
                            "openssl (sign)"));
  CAIRN_RETURN_IF_ERROR(Run({"/usr/bin/openssl", "genrsa", "-out", (pki / "sa.key").string(),
                             "2048"},
                            "openssl (sa key)"));
  CAIRN_RETURN_IF_ERROR(Run({"/usr/bin/openssl", "rsa", "-in", (pki / "sa.key").string(),
                             "-pubout", "-out", (pki / "sa.pub").string()},
                            "openssl (sa pub)"));
  // A client certificate in system:masters, for a kubeconfig that
  // authenticates with certificate data instead of a token.
  std::string ckey = (pki / "client.key").string(), ccsr = (pki / "client.csr").string();
  std::string ccrt = (pki / "client.crt").string(), cext = (pki / "client-ext.cnf").string();
  WriteWholeFile(cext, "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n"
                       "extendedKeyUsage=clientAuth\n");
  CAIRN_RETURN_IF_ERROR(Run({"/usr/bin/openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout",
                             ckey, "-out", ccsr, "-subj", "/O=system:masters/CN=cert-admin"},
                            "openssl (client CSR)"));
  CAIRN_RETURN_IF_ERROR(Run({"/usr/bin/openssl", "x509", "-req", "-in", ccsr, "-CA", ca_crt,
                             "-CAkey", ca_key, "-CAcreateserial", "-out", ccrt, "-days", "2",
                             "-extfile", cext},
                            "openssl (client sign)"));
  WriteWholeFile(pki / "tokens.csv",
                 absl::StrCat(kAdminToken, ",cairn-admin,cairn-admin-uid,\"system:masters\"\n",
                              "cairn-e2e-nobody-token,nobody,nobody-uid\n"));

  c->etcd_port_ = FreePort();
  c->etcd_peer_port_ = FreePort();
  c->api_port_ = FreePort();
  std::string client_url = absl::StrCat("http://127.0.0.1:", c->etcd_port_);
  std::string peer_url = absl::StrCat("http://127.0.0.1:", c->etcd_peer_port_);
  CAIRN_ASSIGN_OR_RETURN(
      c->etcd_,
      Child::Spawn({c->tools_.etcd.string(), "--name", "e2e", "--data-dir",
                    (dir / "etcd").string(), "--listen-client-urls", client_url,
                    "--advertise-client-urls", client_url, "--listen-peer-urls", peer_url,
                    "--initial-advertise-peer-urls", peer_url, "--initial-cluster",
                    absl::StrCat("e2e=", peer_url), "--log-level", "warn"},
                   {}, dir / "etcd.log"));

  c->kubeconfig_ = dir / "kubeconfig";
  WriteWholeFile(c->kubeconfig_,
                 absl::StrCat("apiVersion: v1\nkind: Config\ncurrent-context: e2e\n"
                              "clusters:\n- name: e2e\n  cluster:\n    server: ",
                              c->server_url(), "\n    certificate-authority: ", ca_crt,
                              "\ncontexts:\n- name: e2e\n  context: {cluster: e2e, user: admin}\n"
                              "users:\n- name: admin\n  user:\n    token: ",
                              kAdminToken, "\n"));
  c->cert_kubeconfig_ = dir / "kubeconfig-cert";
  WriteWholeFile(
      c->cert_kubeconfig_,
      absl::StrCat("apiVersion: v1\nkind: Config\ncurrent-context: e2e\n"
                   "clusters:\n- name: e2e\n  cluster:\n    server: ",
                   c->server_url(), "\n    certificate-authority-data: ",
                   absl::Base64Escape(ReadWholeFile(ca_crt)),
                   "\ncontexts:\n- name: e2e\n  context: {cluster: e2e, user: cert}\n"
                   "users:\n- name: cert\n  user:\n    client-certificate-data: ",
                   absl::Base64Escape(ReadWholeFile(ccrt)),
                   "\n    client-key-data: ", absl::Base64Escape(ReadWholeFile(ckey)), "\n"));
  CAIRN_ASSIGN_OR_RETURN(kube::Config config, kube::LoadKubeconfig(c->kubeconfig_));
  CAIRN_ASSIGN_OR_RETURN(c->client_, kube::Client::Create(config));
  CAIRN_RETURN_IF_ERROR(c->StartApiServer());
  return c;
}

std::string KubeCluster::server_url() const {
  return absl::StrCat("https://127.0.0.1:", api_port_);
}

absl::Status KubeCluster::StartApiServer() {
  fs::path pki = dir_ / "pki";
  CAIRN_ASSIGN_OR_RETURN(
      apiserver_,
      Child::Spawn(
          {tools_.apiserver.string(),
           absl::StrCat("--etcd-servers=http://127.0.0.1:", etcd_port_),
           "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
           absl::StrCat("--secure-port=", api_port_),
           absl::StrCat("--tls-cert-file=", (pki / "apiserver.crt").string()),
           absl::StrCat("--tls-private-key-file=", (pki / "apiserver.key").string()),
           absl::StrCat("--token-auth-file=", (pki / "tokens.csv").string()),
           absl::StrCat("--client-ca-file=", (pki / "ca.crt").string()),
           "--authorization-mode=RBAC", "--service-cluster-ip-range=10.255.0.0/24",
           "--service-account-issuer=https://kubernetes.default.svc",
           absl::StrCat("--service-account-key-file=", (pki / "sa.pub").string()),
           absl::StrCat("--service-account-signing-key-file=", (pki / "sa.key").string()),
           "--endpoint-reconciler-type=none",
           // As on any cluster that runs CSI node plugins: their mounts need it.
           "--allow-privileged=true",
           absl::StrCat("--cert-dir=", (dir_ / "apiserver-certs").string())},
          {}, dir_ / "kube-apiserver.log"));
  return WaitReady(std::chrono::seconds(120));
}

void KubeCluster::StopApiServer() {
  if (apiserver_) {
    // A graceful stop waits up to a minute for open watches to drain (ours
    // among them); after a few seconds of that, a kill is just as good a
    // test of the operator's watch recovery.
    apiserver_->Signal(SIGTERM);
    apiserver_->Wait(std::chrono::seconds(5));
    apiserver_.reset();
  }
}

absl::Status KubeCluster::RestartApiServer() {
  StopApiServer();
  return StartApiServer();
}

absl::Status KubeCluster::WaitReady(std::chrono::seconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  absl::Status last;
  while (std::chrono::steady_clock::now() < deadline) {
    if (apiserver_->Exited()) {
      return absl::FailedPreconditionError(
          absl::StrCat("kube-apiserver exited; log ", (dir_ / "kube-apiserver.log").string()));
    }
    absl::StatusOr<kube::Json> r = client_->Get("/readyz");
    // /readyz answers plain text "ok", which is not JSON: any 2xx will do.
    last = r.status();
    if (r.ok() || absl::IsInvalidArgument(r.status())) return absl::OkStatus();
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
  }
  return absl::DeadlineExceededError(absl::StrCat("kube-apiserver not ready: ", last.ToString()));
}

KubeCluster::~KubeCluster() {
  if (client_) client_->Shutdown();
  StopApiServer();
  if (etcd_) {
    etcd_->Signal(SIGTERM);
    etcd_->Wait(std::chrono::seconds(20));
  }
}

RunResult KubeCluster::Kubectl(const std::vector<std::string>& args,
                               const std::string& stdin_data) const {
  std::vector<std::string> argv = {tools_.kubectl.string(), "--kubeconfig", kubeconfig_.string()};
  argv.insert(argv.end(), args.begin(), args.end());
  RunOptions o;
  o.stdin_data = stdin_data;
  o.timeout = std::chrono::seconds(120);
  return RunProcess(argv, o);
}

absl::StatusOr<std::unique_ptr<OperatorProcess>> OperatorProcess::Start(const Options& o) {
  absl::Status last = absl::InternalError("cairn-operator did not start");
  for (int attempt = 0; attempt < 4; ++attempt) {
    std::unique_ptr<OperatorProcess> p(new OperatorProcess());
    p->port_ = FreePort();
    p->metrics_port_ = FreePort();
    if (p->port_ == p->metrics_port_) continue;
    p->log_ = o.data_dir.string() + "-operator.log";
    std::vector<std::string> argv = {BuiltBinary("operator/cairn-operator").string(),
                                     "--data", o.data_dir.string(),
                                     "--listen", absl::StrCat("127.0.0.1:", p->port_),
                                     "--metrics-listen", absl::StrCat("127.0.0.1:", p->metrics_port_),
                                     "--kubeconfig", o.kubeconfig.string()};
    argv.insert(argv.end(), o.extra_args.begin(), o.extra_args.end());
    CAIRN_ASSIGN_OR_RETURN(p->child_, Child::Spawn(argv, {}, p->log_));
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    bool up = false;
    while (std::chrono::steady_clock::now() < deadline) {
      if (p->child_->Exited()) break;
      int code = p->HttpGet("/readyz").first;
      if (code == 200 || (!o.wait_ready && code == 503)) {
        up = true;
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    if (up) return p;
    last = absl::UnavailableError(absl::StrCat("cairn-operator not ready; log:\n", p->Log()));
    if (!p->child_->Exited()) return last;  // running but not ready: not a port clash
  }
  return last;
}

OperatorProcess::~OperatorProcess() {
  if (child_ && !child_->Exited()) {
    child_->Signal(SIGTERM);
    child_->Wait(std::chrono::seconds(30));
  }
}

std::vector<std::string> OperatorProcess::ClientEnv(const std::string& ns) const {
  return {absl::StrCat("CAIRN_SERVER=127.0.0.1:", port_), absl::StrCat("CAIRN_NAMESPACE=", ns)};
}

void OperatorProcess::Kill(int sig) { child_->Signal(sig); }
int OperatorProcess::Wait() { return child_->Wait(std::chrono::seconds(60)); }

std::string OperatorProcess::Log() const { return ReadWholeFile(log_); }

std::pair<int, std::string> OperatorProcess::HttpGet(const std::string& path) const {
  httplib::Client c("127.0.0.1", metrics_port_);
  c.set_connection_timeout(std::chrono::seconds(2));
  c.set_read_timeout(std::chrono::seconds(5));
  auto r = c.Get(path);
  if (!r) return {0, ""};
  return {r->status, r->body};
}

double OperatorProcess::Metric(const std::string& series) const {
  auto [code, body] = HttpGet("/metrics");
  if (code != 200) return -1;
  for (absl::string_view line : absl::StrSplit(body, '\n')) {
    if (absl::ConsumePrefix(&line, series) && absl::ConsumePrefix(&line, " ")) {
      double v = 0;
      if (absl::SimpleAtod(line, &v)) return v;
    }
  }
  return -1;
}

RunResult Cairn(const OperatorProcess& op, const std::string& ns,
                const std::vector<std::string>& args) {
  std::vector<std::string> argv = {CairnBinary().string()};
  argv.insert(argv.end(), args.begin(), args.end());
  RunOptions o;
  o.env = op.ClientEnv(ns);
  o.unset_env = {"CAIRN_TOKEN", "CAIRN_TOKEN_FILE"};
  o.timeout = std::chrono::seconds(60);
  return RunProcess(argv, o);
}

}  // namespace cairn::e2e
