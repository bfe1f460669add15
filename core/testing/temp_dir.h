// Test-only helpers shared by unit, model and crash tests (linked into every
// cairn_test binary, never into product code).
#pragma once

#include <filesystem>
#include <string>

namespace cairn::testing {

// A fresh directory under $TMPDIR (or /tmp), removed with its contents on
// destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

// Directory holding built binaries (CAIRN_BUILD_DIR set by cairn_test).
std::filesystem::path BuildDir();

}  // namespace cairn::testing
