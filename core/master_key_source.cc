#include "core/master_key_source.h"

#include "absl/strings/str_cat.h"
#include "core/status.h"

namespace cairn {

absl::StatusOr<MasterKey> FileMasterKeySource::Load(
    const std::function<absl::StatusOr<bool>()>& volumes_exist) {
  std::error_code ec;
  if (!std::filesystem::exists(path_, ec)) {
    // A missing key next to existing volumes means the key was lost or the
    // directory was copied without it. Minting a new one would silently
    // make every volume unreadable, so refuse and say what to restore.
    CAIRN_ASSIGN_OR_RETURN(bool exist, volumes_exist());
    if (exist) {
      return absl::FailedPreconditionError(absl::StrCat(
          "master key ", path_.string(),
          " is missing but the data directory holds volumes; restore the key file (a new key "
          "cannot read them)"));
    }
  }
  return MasterKey::LoadOrCreate(path_);
}

}  // namespace cairn
