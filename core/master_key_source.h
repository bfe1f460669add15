// MasterKeySource: where the control plane's master key (which wraps every
// volume's data key, DESIGN.md §2) comes from. A file in standalone mode
// (FileMasterKeySource); a Kubernetes Secret in the operator, behind the
// same interface.
//
// A source must never mint a new key while volumes exist: their data keys
// are wrapped by the old one, and a new key would make them unreadable.
// Thread-compatible: Load is called once, at startup.
#pragma once

#include <filesystem>
#include <functional>
#include <string>

#include "absl/status/statusor.h"
#include "core/crypto.h"

namespace cairn {

class MasterKeySource {
 public:
  virtual ~MasterKeySource() = default;
  // The key. `volumes_exist` tells whether a missing key may be created
  // (only when it answers false). FailedPrecondition when the key is
  // missing but volumes exist; the source's errors otherwise.
  [[nodiscard]] virtual absl::StatusOr<MasterKey> Load(
      const std::function<absl::StatusOr<bool>()>& volumes_exist) = 0;
};

// 32 bytes in a file (mode 0600), created on first start.
class FileMasterKeySource final : public MasterKeySource {
 public:
  explicit FileMasterKeySource(std::filesystem::path path) : path_(std::move(path)) {}
  absl::StatusOr<MasterKey> Load(
      const std::function<absl::StatusOr<bool>()>& volumes_exist) override;

 private:
  std::filesystem::path path_;
};

// A key obtained elsewhere (e.g. read from a Kubernetes Secret at start).
class FixedMasterKeySource final : public MasterKeySource {
 public:
  explicit FixedMasterKeySource(MasterKey key) : key_(std::move(key)) {}
  absl::StatusOr<MasterKey> Load(const std::function<absl::StatusOr<bool>()>&) override {
    return key_;
  }

 private:
  MasterKey key_;
};

}  // namespace cairn
