#include "core/path.h"

#include <cerrno>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "core/status.h"

namespace cairn {
namespace {

// Debian's abseil 20220623 has its own absl::string_view (not an alias of
// std::string_view), so std::string_view must be converted explicitly.
absl::string_view Sv(std::string_view s) { return absl::string_view(s.data(), s.size()); }

bool IsNameChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         c == '.' || c == '_' || c == '-';
}

// Shared by volume names and namespaces; `what` names the thing in errors.
absl::Status ValidateName(std::string_view name, std::string_view what) {
  if (name.empty()) return absl::InvalidArgumentError(absl::StrCat(Sv(what), " must not be empty"));
  if (name.size() > kMaxNameLength) {
    return absl::InvalidArgumentError(absl::StrCat(Sv(what), " is ", name.size(),
                                                   " characters; the maximum is ",
                                                   kMaxNameLength));
  }
  if (name == "." || name == "..") {
    return absl::InvalidArgumentError(absl::StrCat(Sv(what), " must not be \"", Sv(name), "\""));
  }
  for (char c : name) {
    if (!IsNameChar(c)) {
      return absl::InvalidArgumentError(
          absl::StrCat(Sv(what), " \"", absl::CHexEscape(Sv(name)),
                       "\" may only contain letters, digits, '.', '_' and '-'"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateVolumeName(std::string_view name) {
  return ValidateName(name, "volume name");
}

absl::Status ValidateNamespace(std::string_view ns) {
  if (ns.empty()) return absl::OkStatus();
  return ValidateName(ns, "namespace");
}

std::string NamespaceOrDefault(std::string_view ns) {
  return ns.empty() ? std::string("default") : std::string(ns);
}

absl::Status ValidateVolumeId(std::string_view id) {
  constexpr std::string_view kPrefix = "vo-";
  constexpr size_t kMaxIdLength = 3 + 64;
  bool ok = id.size() > kPrefix.size() && id.size() <= kMaxIdLength &&
            id.substr(0, kPrefix.size()) == kPrefix;
  for (size_t i = kPrefix.size(); ok && i < id.size(); ++i) {
    char c = id[i];
    ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
  }
  if (!ok) {
    return absl::InvalidArgumentError(absl::StrCat(
        "invalid volume ID \"", absl::CHexEscape(Sv(id.substr(0, 100))),
        "\": expected \"vo-\" followed by up to 64 letters and digits"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> NormalizePath(std::string_view path) {
  // The limit applies to what the caller sent, like PATH_MAX in the kernel:
  // a 5000-byte run of slashes is refused even though it names the root.
  if (path.size() > kMaxPathLength) {
    return WithErrno(absl::InvalidArgumentError(absl::StrCat(
                         "path is ", path.size(), " bytes; the maximum is ", kMaxPathLength)),
                     ENAMETOOLONG);
  }
  if (path.find('\0') != std::string_view::npos) {
    return WithErrno(absl::InvalidArgumentError("path contains a NUL byte"), EINVAL);
  }
  std::string out;
  out.reserve(path.size());
  size_t pos = 0;
  while (pos <= path.size()) {
    size_t end = path.find('/', pos);
    if (end == std::string_view::npos) end = path.size();
    std::string_view comp = path.substr(pos, end - pos);
    pos = end + 1;
    if (comp.empty() || comp == ".") continue;
    // Refused anywhere, even where it would stay inside the volume
    // ("a/../b"): a path means one thing, with no lexical games.
    if (comp == "..") {
      return WithErrno(absl::InvalidArgumentError(absl::StrCat(
                           "path \"", absl::CHexEscape(Sv(path)), "\" contains a \"..\" component")),
                       EINVAL);
    }
    if (comp.size() > kMaxComponentLength) {
      return WithErrno(
          absl::InvalidArgumentError(absl::StrCat("path component is ", comp.size(),
                                                  " bytes; the maximum is ", kMaxComponentLength)),
          ENAMETOOLONG);
    }
    if (!out.empty()) out.push_back('/');
    out.append(comp);
  }
  return out;
}

bool IsValidComponent(std::string_view name) {
  return !name.empty() && name.size() <= kMaxComponentLength && name != "." && name != ".." &&
         name.find('/') == std::string_view::npos && name.find('\0') == std::string_view::npos;
}

std::vector<std::string_view> SplitPath(std::string_view normalized) {
  std::vector<std::string_view> parts;
  size_t pos = 0;
  while (pos < normalized.size()) {
    size_t end = normalized.find('/', pos);
    if (end == std::string_view::npos) end = normalized.size();
    if (end > pos) parts.push_back(normalized.substr(pos, end - pos));
    pos = end + 1;
  }
  return parts;
}

std::pair<std::string_view, std::string_view> SplitParent(std::string_view normalized) {
  size_t slash = normalized.rfind('/');
  if (slash == std::string_view::npos) return {std::string_view(), normalized};
  return {normalized.substr(0, slash), normalized.substr(slash + 1)};
}

std::string JoinPath(std::string_view dir, std::string_view name) {
  if (dir.empty()) return std::string(name);
  if (name.empty()) return std::string(dir);
  return absl::StrCat(Sv(dir), "/", Sv(name));
}

}  // namespace cairn
