// The errors every MetaStore implementation reports in the same words
// (SQLite, PostgreSQL, the test fake), so callers and the conformance suite
// (meta_store_test.cc) see one contract.
#pragma once

#include <cstdint>
#include <string_view>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "core/meta_store.h"

namespace cairn::meta_store_errors {

inline absl::Status VolumeNotFound(std::string_view id) {
  return absl::NotFoundError(
      absl::StrCat("volume ", absl::string_view(id.data(), id.size()), " not found"));
}

// CommitSnapshot's precondition: InvalidArgument unless `next` follows the
// expected head directly.
inline absl::Status CheckFollows(const SnapshotRecord& next, uint64_t expected_head_seq) {
  if (next.seq == expected_head_seq + 1) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat("snapshot seq ", next.seq,
                                                 " does not follow expected head ",
                                                 expected_head_seq));
}

// The lost compare-and-swap.
inline absl::Status HeadMoved(uint64_t expected, uint64_t found) {
  return absl::AbortedError(absl::StrCat("head moved: expected ", expected, ", found ", found));
}

}  // namespace cairn::meta_store_errors
