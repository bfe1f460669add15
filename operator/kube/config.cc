#include "operator/kube/config.h"

#include <cstdlib>
#include <fstream>
#include <optional>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "core/status.h"
#include "yaml-cpp/yaml.h"

namespace cairn::kube {
namespace {

namespace fs = std::filesystem;

absl::StatusOr<std::string> ReadText(const fs::path& path, std::string_view what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", std::string(what), " ", path.string()));
  std::ostringstream buf;
  buf << in.rdbuf();
  return buf.str();
}

// yaml-cpp throws; everything that touches a node goes through here.
std::string Scalar(const YAML::Node& node, const char* key) {
  try {
    YAML::Node v = node[key];
    if (v && v.IsScalar()) return v.as<std::string>();
  } catch (const YAML::Exception&) {
  }
  return "";
}

// A default-constructed YAML::Node is a defined null, so absence is an
// empty optional.
std::optional<YAML::Node> Child(const YAML::Node& node, const char* key) {
  try {
    if (node.IsMap()) {
      YAML::Node v = node[key];
      if (v.IsMap()) return v;
    }
  } catch (const YAML::Exception&) {
  }
  return std::nullopt;
}

// The entry of list `list` whose "name" is `name`, as its `inner` map.
std::optional<YAML::Node> Named(const YAML::Node& root, const char* list,
                                const std::string& name, const char* inner) {
  try {
    YAML::Node l = root[list];
    if (!l || !l.IsSequence()) return std::nullopt;
    for (const YAML::Node& e : l) {
      if (Scalar(e, "name") == name) return Child(e, inner);
    }
  } catch (const YAML::Exception&) {
  }
  return std::nullopt;
}

absl::StatusOr<std::string> DataOrFile(const YAML::Node& node, const char* data_key,
                                       const char* file_key, const fs::path& base,
                                       const std::string& where) {
  std::string data = Scalar(node, data_key);
  if (!data.empty()) {
    std::string decoded;
    if (!absl::Base64Unescape(data, &decoded)) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": ", data_key, " is not valid base64"));
    }
    return decoded;
  }
  std::string file = Scalar(node, file_key);
  if (file.empty()) return std::string();
  fs::path p(file);
  if (p.is_relative()) p = base / p;
  return ReadText(p, absl::StrCat(where, " ", file_key));
}

}  // namespace

absl::StatusOr<Config> LoadKubeconfig(const fs::path& path, const std::string& context) {
  CAIRN_ASSIGN_OR_RETURN(std::string text, ReadText(path, "kubeconfig"));
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat("kubeconfig ", path.string(), " is not valid YAML: ", e.what()));
  }
  if (!root.IsMap()) {
    return absl::InvalidArgumentError(absl::StrCat("kubeconfig ", path.string(), " is not a map"));
  }
  std::string where = absl::StrCat("kubeconfig ", path.string());
  std::string ctx_name = context.empty() ? Scalar(root, "current-context") : context;
  if (ctx_name.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": no current-context"));
  }
  std::optional<YAML::Node> ctx = Named(root, "contexts", ctx_name, "context");
  if (!ctx) return absl::InvalidArgumentError(absl::StrCat(where, ": no context '", ctx_name, "'"));
  std::string cluster_name = Scalar(*ctx, "cluster");
  std::optional<YAML::Node> cluster = Named(root, "clusters", cluster_name, "cluster");
  if (!cluster) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": context '", ctx_name, "' names unknown cluster '", cluster_name, "'"));
  }
  Config c;
  c.server = Scalar(*cluster, "server");
  if (c.server.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": cluster '", cluster_name, "' has no server"));
  }
  fs::path base = path.parent_path();
  CAIRN_ASSIGN_OR_RETURN(c.ca_pem, DataOrFile(*cluster, "certificate-authority-data",
                                              "certificate-authority", base, where));
  c.insecure_skip_tls_verify = Scalar(*cluster, "insecure-skip-tls-verify") == "true";
  std::string user_name = Scalar(*ctx, "user");
  if (!user_name.empty()) {
    std::optional<YAML::Node> user = Named(root, "users", user_name, "user");
    if (!user) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": context '", ctx_name, "' names unknown user '", user_name, "'"));
    }
    c.token = Scalar(*user, "token");
    std::string token_file = Scalar(*user, "tokenFile");
    if (!token_file.empty()) {
      fs::path p(token_file);
      c.token_file = (p.is_relative() ? base / p : p).string();
    }
    CAIRN_ASSIGN_OR_RETURN(c.client_cert_pem, DataOrFile(*user, "client-certificate-data",
                                                         "client-certificate", base, where));
    CAIRN_ASSIGN_OR_RETURN(c.client_key_pem,
                           DataOrFile(*user, "client-key-data", "client-key", base, where));
    if (c.client_cert_pem.empty() != c.client_key_pem.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          where, ": user '", user_name, "' has a client certificate without a key or vice versa"));
    }
  }
  std::string ns = Scalar(*ctx, "namespace");
  if (!ns.empty()) c.ns = ns;
  return c;
}

absl::StatusOr<Config> InClusterConfig(const fs::path& dir) {
  const char* host = std::getenv("KUBERNETES_SERVICE_HOST");
  const char* port = std::getenv("KUBERNETES_SERVICE_PORT");
  if (host == nullptr || *host == '\0' || port == nullptr || *port == '\0') {
    return absl::FailedPreconditionError(
        "not running in a Kubernetes pod (KUBERNETES_SERVICE_HOST/PORT unset); pass --kubeconfig");
  }
  Config c;
  std::string h(host);
  if (h.find(':') != std::string::npos) h = absl::StrCat("[", h, "]");  // IPv6
  c.server = absl::StrCat("https://", h, ":", port);
  c.token_file = (dir / "token").string();
  CAIRN_ASSIGN_OR_RETURN(std::string token, ReadText(c.token_file, "service account token"));
  if (absl::StripAsciiWhitespace(token).empty()) {
    return absl::FailedPreconditionError(absl::StrCat("service account token ", c.token_file,
                                                      " is empty"));
  }
  CAIRN_ASSIGN_OR_RETURN(c.ca_pem, ReadText(dir / "ca.crt", "service account CA"));
  absl::StatusOr<std::string> ns = ReadText(dir / "namespace", "service account namespace");
  if (ns.ok() && !absl::StripAsciiWhitespace(*ns).empty()) {
    c.ns = std::string(absl::StripAsciiWhitespace(*ns));
  }
  return c;
}

}  // namespace cairn::kube
