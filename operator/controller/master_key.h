// The master key from a Kubernetes Secret (--master-key-secret NS/NAME), so
// the key that unwraps every volume's data key lives apart from the data.
//
// The Secret holds 32 random bytes under data["master-key"]. If the Secret
// does not exist it is created with a fresh key — only when `may_create`
// (the data directory holds no volumes yet: a new key could not open old
// ones); two replicas racing to create it both end up with the one stored.
// Errors: NotFound (absent and may not create), InvalidArgument (the Secret
// holds no 32-byte key), or the API error.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "core/crypto.h"
#include "operator/kube/client.h"

namespace cairn::controller {

inline constexpr char kMasterKeyField[] = "master-key";

// "NS/NAME" → {NS, NAME}; InvalidArgument otherwise.
[[nodiscard]] absl::StatusOr<std::pair<std::string, std::string>> ParseSecretRef(
    const std::string& ref);

[[nodiscard]] absl::StatusOr<MasterKey> LoadOrCreateMasterKeySecret(kube::Client& kube,
                                                                    const std::string& ns,
                                                                    const std::string& name,
                                                                    bool may_create);

}  // namespace cairn::controller
