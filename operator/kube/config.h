// Where the API server is and how to authenticate to it: from a kubeconfig
// file (what kubectl reads) or from the in-cluster service account.
//
// Credentials are read once, into memory, except a service-account token,
// which the kubelet rotates: `token_file` is re-read by the client.
// Failures name the file and the missing or malformed field
// (InvalidArgument / NotFound / FailedPrecondition).
#pragma once

#include <filesystem>
#include <string>

#include "absl/status/statusor.h"

namespace cairn::kube {

struct Config {
  std::string server;  // "https://host:port" (http:// only for tests)
  std::string ca_pem;  // empty: system roots
  bool insecure_skip_tls_verify = false;
  std::string token;       // bearer token, or
  std::string token_file;  // re-read on every request (rotated tokens)
  std::string client_cert_pem;  // client certificate and key, both or neither
  std::string client_key_pem;
  std::string ns = "default";  // the context's namespace (or the pod's)
};

// Reads a kubeconfig (YAML): the named context, or current-context when
// `context` is empty. Supports server, certificate-authority(-data),
// insecure-skip-tls-verify, token, tokenFile, client-certificate(-data),
// client-key(-data); relative file paths are relative to the kubeconfig.
[[nodiscard]] absl::StatusOr<Config> LoadKubeconfig(const std::filesystem::path& path,
                                                    const std::string& context = "");

inline constexpr char kServiceAccountDir[] = "/var/run/secrets/kubernetes.io/serviceaccount";

// The in-cluster service account: KUBERNETES_SERVICE_HOST/PORT, and
// `dir`/token, `dir`/ca.crt, `dir`/namespace. FailedPrecondition when not
// running in a pod.
[[nodiscard]] absl::StatusOr<Config> InClusterConfig(
    const std::filesystem::path& dir = kServiceAccountDir);

}  // namespace cairn::kube
