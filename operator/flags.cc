#include "operator/flags.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "core/status.h"

namespace cairn::operator_ {

std::string ServerFlagsHelp() {
  return absl::StrCat(
      "  --data DIR              data directory (created if missing; required)\n"
      "  --listen HOST:PORT      Volume API address (default ", kDefaultListen, ")\n",
      "  --metrics-listen HOST:PORT, --metrics HOST:PORT\n"
      "                          /metrics, /healthz, /readyz (default ",
      kDefaultMetricsListen, "; \"\" disables). Off loopback it needs a token\n"
      "                          (scrapers send it as a bearer token) or\n"
      "  --metrics-public        serve /metrics off loopback to anyone (they name\n"
      "                          namespaces and volumes)\n",
      "  --token-file FILE       bearer token clients must send (else CAIRN_TOKEN or\n"
      "                          CAIRN_TOKEN_FILE); without one only loopback is allowed\n"
      "  --tls-cert FILE         PEM certificate chain (with --tls-key): serve TLS\n"
      "  --tls-key FILE          PEM private key\n"
      "  --gc-interval SECONDS   garbage collection period (default 600; 0 disables)\n"
      "  --gc-grace SECONDS      keep unreferenced blobs younger than this (default 3600)\n");
}

absl::StatusOr<ServerOptions> ParseServerFlags(const std::vector<std::string>& args) {
  ServerOptions options;
  std::string token_file;
  for (size_t i = 0; i < args.size(); ++i) {
    std::string flag = args[i];
    std::string value;
    bool has_value = false;
    if (size_t eq = flag.find('='); flag.rfind("--", 0) == 0 && eq != std::string::npos) {
      value = flag.substr(eq + 1);
      flag = flag.substr(0, eq);
      has_value = true;
    }
    auto take = [&]() -> absl::StatusOr<std::string> {
      if (has_value) return value;
      if (i + 1 >= args.size()) return absl::InvalidArgumentError(absl::StrCat(flag, " needs a value"));
      return args[++i];
    };
    auto seconds = [&]() -> absl::StatusOr<std::chrono::seconds> {
      CAIRN_ASSIGN_OR_RETURN(std::string v, take());
      int64_t n = 0;
      if (!absl::SimpleAtoi(v, &n) || n < 0) {
        return absl::InvalidArgumentError(absl::StrCat(flag, ": '", v, "' is not a number of seconds"));
      }
      return std::chrono::seconds(n);
    };
    if (flag == "--data") {
      CAIRN_ASSIGN_OR_RETURN(std::string v, take());
      options.data_dir = v;
    } else if (flag == "--listen") {
      CAIRN_ASSIGN_OR_RETURN(options.listen, take());
    } else if (flag == "--metrics-listen" || flag == "--metrics") {
      CAIRN_ASSIGN_OR_RETURN(options.metrics_listen, take());
    } else if (flag == "--metrics-public") {
      if (has_value) return absl::InvalidArgumentError("--metrics-public takes no value");
      options.metrics_public = true;
    } else if (flag == "--token-file") {
      CAIRN_ASSIGN_OR_RETURN(token_file, take());
    } else if (flag == "--tls-cert") {
      CAIRN_ASSIGN_OR_RETURN(options.tls_cert_file, take());
    } else if (flag == "--tls-key") {
      CAIRN_ASSIGN_OR_RETURN(options.tls_key_file, take());
    } else if (flag == "--gc-interval") {
      CAIRN_ASSIGN_OR_RETURN(options.gc_interval, seconds());
    } else if (flag == "--gc-grace") {
      CAIRN_ASSIGN_OR_RETURN(options.gc_grace, seconds());
    } else {
      return absl::InvalidArgumentError(absl::StrCat("unknown argument '", args[i], "'"));
    }
  }
  if (options.data_dir.empty()) return absl::InvalidArgumentError("--data DIR is required");
  CAIRN_RETURN_IF_ERROR(ValidateListenAddress(options.listen));
  if (!options.metrics_listen.empty()) {
    CAIRN_RETURN_IF_ERROR(ValidateListenAddress(options.metrics_listen));
  }
  CAIRN_ASSIGN_OR_RETURN(options.token, LoadServerToken(token_file));
  return options;
}

}  // namespace cairn::operator_
