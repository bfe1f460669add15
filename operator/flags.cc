#include "operator/flags.h"

#include "absl/strings/str_cat.h"
#include "core/flags.h"
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
      "                          namespaces and volumes)\n"
      "                          The same port serves the file browser at /ui\n"
      "                          (log in with the token).\n",
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
  FlagCursor flags(args);
  auto seconds = [&]() -> absl::StatusOr<std::chrono::seconds> {
    CAIRN_ASSIGN_OR_RETURN(int64_t n, flags.Integer(0));
    return std::chrono::seconds(n);
  };
  while (flags.Next()) {
    if (flags.Is("--data")) {
      CAIRN_ASSIGN_OR_RETURN(std::string v, flags.Value());
      options.data_dir = v;
    } else if (flags.Is("--listen")) {
      CAIRN_ASSIGN_OR_RETURN(options.listen, flags.Value());
    } else if (flags.Is("--metrics-listen") || flags.Is("--metrics")) {
      CAIRN_ASSIGN_OR_RETURN(options.metrics_listen, flags.Value());
    } else if (flags.Is("--metrics-public")) {
      CAIRN_RETURN_IF_ERROR(flags.NoValue());
      options.metrics_public = true;
    } else if (flags.Is("--token-file")) {
      CAIRN_ASSIGN_OR_RETURN(token_file, flags.Value());
    } else if (flags.Is("--tls-cert")) {
      CAIRN_ASSIGN_OR_RETURN(options.tls_cert_file, flags.Value());
    } else if (flags.Is("--tls-key")) {
      CAIRN_ASSIGN_OR_RETURN(options.tls_key_file, flags.Value());
    } else if (flags.Is("--gc-interval")) {
      CAIRN_ASSIGN_OR_RETURN(options.gc_interval, seconds());
    } else if (flags.Is("--gc-grace")) {
      CAIRN_ASSIGN_OR_RETURN(options.gc_grace, seconds());
    } else {
      return flags.Unknown();
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
