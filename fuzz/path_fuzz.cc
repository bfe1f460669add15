// Names and paths as users and RPC callers send them (core/path.h, C9),
// plus the other small text decoders on the same edge: sizes
// (core/size.h) and hex digests (core/digest.h).
//
// Checks, besides "no crash, no UB": NormalizePath is idempotent and its
// output only has components IsValidComponent accepts; SplitPath and
// JoinPath/SplitParent agree with it; a validated name or ID contains only
// the characters the contract allows; a parsed digest prints back as the
// same hex.
#include <cctype>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "core/digest.h"
#include "core/path.h"
#include "core/size.h"

namespace {

void Check(bool ok, const char* what) {
  if (!ok) {
    fprintf(stderr, "property violated: %s\n", what);
    abort();
  }
}

bool IsNameChar(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-';
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);

  if (auto normal = cairn::NormalizePath(in); normal.ok()) {
    const std::string& p = *normal;
    Check(p.size() <= in.size(), "normalised path is not longer than its input");
    Check(p.empty() || (p.front() != '/' && p.back() != '/'), "no leading or trailing '/'");
    auto again = cairn::NormalizePath(p);
    Check(again.ok() && *again == p, "NormalizePath is idempotent");
    std::string joined;
    for (std::string_view comp : cairn::SplitPath(p)) {
      Check(cairn::IsValidComponent(comp) && comp != ".", "components are valid names");
      joined = cairn::JoinPath(joined, comp);
    }
    Check(joined == p, "JoinPath of SplitPath gives the path back");
    if (!p.empty()) {
      auto [parent, name] = cairn::SplitParent(p);
      Check(cairn::JoinPath(parent, name) == p, "SplitParent/JoinPath round trip");
    }
  } else {
    Check(absl::IsInvalidArgument(normal.status()), "bad paths are InvalidArgument");
    Check(!normal.status().message().empty(), "bad paths say why");
  }

  if (cairn::ValidateVolumeName(in).ok()) {
    Check(!in.empty() && in.size() <= cairn::kMaxNameLength && in != "." && in != "..",
          "volume name length and dot rules");
    for (char c : in) Check(IsNameChar(c), "volume name characters");
    Check(cairn::ValidateNamespace(in).ok(), "a valid name is a valid namespace");
  }
  if (cairn::ValidateVolumeId(in).ok()) {
    Check(in.substr(0, 3) == "vo-" && in.size() > 3 && in.size() <= 67, "volume ID shape");
    for (char c : in.substr(3)) Check(std::isalnum(static_cast<unsigned char>(c)), "ID chars");
  }
  (void)cairn::IsValidComponent(in);

  if (auto d = cairn::Digest::FromHex(in); d.ok()) {
    std::string lower(in);
    for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    Check(d->ToHex() == lower, "hex digest round trip");
  }
  if (auto d = cairn::Digest::FromRaw(in); d.ok()) {
    Check(d->raw() == in, "raw digest round trip");
  }
  (void)cairn::ParseSize(in);
  return 0;
}
