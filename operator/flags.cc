#include "operator/flags.h"

#include <libpq-fe.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "core/flags.h"
#include "core/log.h"
#include "core/meta_store.h"
#include "core/s3_client.h"
#include "core/status.h"

namespace cairn::operator_ {
namespace {

// A URL that carries a password, which the process list would show.
bool HasPassword(const std::string& url) {
  PQconninfoOption* parsed = PQconninfoParse(url.c_str(), nullptr);
  if (parsed == nullptr) return false;
  bool found = false;
  for (PQconninfoOption* o = parsed; o->keyword != nullptr; ++o) {
    if (std::string_view(o->keyword) == "password" && o->val != nullptr && *o->val != '\0') {
      found = true;
    }
  }
  PQconninfoFree(parsed);
  return found;
}

absl::Status CheckMetaUrl(const std::string& url, const std::string& from) {
  if (!IsPostgresUrl(url)) {
    return absl::InvalidArgumentError(absl::StrCat(
        from, ": expected a postgres:// or postgresql:// URL (the embedded default needs none)"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<bool> ParseBackendFlag(FlagCursor& flags, ServerOptions& options) {
  if (flags.Is("--data")) {
    CAIRN_ASSIGN_OR_RETURN(std::string v, flags.Value());
    options.data_dir = v;
  } else if (flags.Is("--meta")) {
    CAIRN_ASSIGN_OR_RETURN(options.meta_url, flags.Value());
    CAIRN_RETURN_IF_ERROR(CheckMetaUrl(options.meta_url, "--meta"));
    if (HasPassword(options.meta_url)) {
      CAIRN_LOG_WARNING("--meta carries a password, which the process list shows; prefer "
                        "--meta-file, CAIRN_META_URL, PGPASSWORD or PGPASSFILE");
    }
  } else if (flags.Is("--meta-file")) {
    CAIRN_ASSIGN_OR_RETURN(std::string file, flags.Value());
    std::ifstream in(file);
    std::stringstream text;
    text << in.rdbuf();
    if (!in) {
      return absl::InvalidArgumentError(absl::StrCat("--meta-file ", file, ": cannot read it"));
    }
    options.meta_url = std::string(absl::StripAsciiWhitespace(text.str()));  // echo URL > file
    CAIRN_RETURN_IF_ERROR(CheckMetaUrl(options.meta_url, absl::StrCat("--meta-file ", file)));
  } else if (flags.Is("--blobs")) {
    // Checked now (URL and credentials), so a typo fails at start.
    CAIRN_ASSIGN_OR_RETURN(options.blobs, flags.Value());
    absl::Status valid = ParseS3Url(options.blobs).status();
    if (!valid.ok()) return absl::InvalidArgumentError(absl::StrCat("--blobs: ", valid.message()));
  } else {
    return false;
  }
  return true;
}

std::string ServerFlagsHelp() {
  return absl::StrCat(
      "  --data DIR              data directory (created if missing; required): the\n"
      "                          master key file and, without --meta/--blobs, the\n"
      "                          metadata and the blobs\n"
      "  --meta URL              keep the metadata in PostgreSQL (postgres://user@host/db),\n"
      "                          shared by several replicas; the password from\n"
      "                          PGPASSWORD or PGPASSFILE, not the command line\n"
      "  --meta-file FILE        the same URL read from FILE (a mounted Secret); else\n"
      "                          CAIRN_META_URL\n"
      "  --blobs s3://BUCKET/PREFIX?endpoint=URL&region=R&path_style=true|false\n"
      "                          keep blobs in S3 (or an S3-compatible store) instead\n"
      "                          of DIR/blobs; credentials from AWS_ACCESS_KEY_ID and\n"
      "                          AWS_SECRET_ACCESS_KEY, or credentials_file=FILE\n"
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
      "  --gc-grace SECONDS      keep unreferenced blobs younger than this (default 3600)\n"
      "  --lease-sweep-interval SECONDS\n"
      "                          how often ephemeral volumes whose lease lapsed are deleted\n"
      "                          (default 5; 0 disables)\n");
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
    CAIRN_ASSIGN_OR_RETURN(bool backend, ParseBackendFlag(flags, options));
    if (backend) {
      continue;
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
    } else if (flags.Is("--lease-sweep-interval")) {
      CAIRN_ASSIGN_OR_RETURN(options.lease_sweep_interval, seconds());
    } else {
      return flags.Unknown();
    }
  }
  if (options.data_dir.empty()) return absl::InvalidArgumentError("--data DIR is required");
  if (const char* env = std::getenv("CAIRN_META_URL");
      options.meta_url.empty() && env != nullptr && *env != '\0') {
    options.meta_url = std::string(absl::StripAsciiWhitespace(env));
    CAIRN_RETURN_IF_ERROR(CheckMetaUrl(options.meta_url, "CAIRN_META_URL"));
  }
  CAIRN_RETURN_IF_ERROR(ValidateListenAddress(options.listen));
  if (!options.metrics_listen.empty()) {
    CAIRN_RETURN_IF_ERROR(ValidateListenAddress(options.metrics_listen));
  }
  CAIRN_ASSIGN_OR_RETURN(options.token, LoadServerToken(token_file));
  return options;
}

}  // namespace cairn::operator_
