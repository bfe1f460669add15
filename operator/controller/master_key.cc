#include "operator/controller/master_key.h"

#include <openssl/rand.h>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "core/log.h"
#include "core/status.h"
#include "operator/kube/errors.h"

namespace cairn::controller {
namespace {

const kube::Resource kSecrets{"", "v1", "secrets"};

absl::StatusOr<MasterKey> FromSecret(const kube::Json& secret, const std::string& where) {
  std::string b64 = kube::GetStringAt(secret, {"data", kMasterKeyField});
  std::string raw;
  if (b64.empty() || !absl::Base64Unescape(b64, &raw) || raw.size() != MasterKey::kSize) {
    return absl::InvalidArgumentError(absl::StrCat("Secret ", where, " has no ", MasterKey::kSize,
                                                   "-byte key under data[\"", kMasterKeyField,
                                                   "\"]"));
  }
  return MasterKey::FromBytes(raw);
}

}  // namespace

absl::StatusOr<std::pair<std::string, std::string>> ParseSecretRef(const std::string& ref) {
  size_t slash = ref.find('/');
  if (slash == std::string::npos || slash == 0 || slash + 1 == ref.size() ||
      ref.find('/', slash + 1) != std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("--master-key-secret wants NAMESPACE/NAME, not '", ref, "'"));
  }
  return std::make_pair(ref.substr(0, slash), ref.substr(slash + 1));
}

absl::StatusOr<MasterKey> LoadOrCreateMasterKeySecret(kube::Client& kube, const std::string& ns,
                                                     const std::string& name, bool may_create) {
  const std::string where = absl::StrCat(ns, "/", name);
  absl::StatusOr<kube::Json> got = kube.Get(kube::ResourcePath(kSecrets, ns, name));
  if (got.ok()) return FromSecret(*got, where);
  if (!kube::IsNotFound(got.status())) return got.status();
  if (!may_create) {
    return absl::NotFoundError(absl::StrCat(
        "master key Secret ", where,
        " does not exist, and the data directory already holds volumes made under another key; "
        "restore the Secret"));
  }
  std::string raw(MasterKey::kSize, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(raw.data()), static_cast<int>(raw.size())) != 1) {
    return absl::InternalError("no randomness for a master key");
  }
  kube::Json secret = {{"apiVersion", "v1"},
                       {"kind", "Secret"},
                       {"metadata", {{"name", name}, {"namespace", ns}}},
                       {"type", "Opaque"},
                       {"data", {{kMasterKeyField, absl::Base64Escape(raw)}}}};
  absl::StatusOr<kube::Json> created = kube.Create(kube::ResourcePath(kSecrets, ns), secret);
  if (kube::IsAlreadyExists(created.status())) {
    CAIRN_ASSIGN_OR_RETURN(kube::Json again, kube.Get(kube::ResourcePath(kSecrets, ns, name)));
    return FromSecret(again, where);
  }
  if (!created.ok()) return created.status();
  CAIRN_LOG_INFO("created master key Secret %s", where);
  return MasterKey::FromBytes(raw);
}

}  // namespace cairn::controller
