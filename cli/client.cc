#include "cli/client.h"

#include "absl/strings/str_cat.h"

namespace cairn::cli {

absl::Status ForPerson(const Client& client, absl::Status status) {
  absl::Status s = client.Explain(std::move(status));
  if (absl::IsUnavailable(s)) {
    return absl::UnavailableError(absl::StrCat(
        s.message(), "; start one with `cairn server --data DIR` or set --server/CAIRN_SERVER"));
  }
  return s;
}

}  // namespace cairn::cli
