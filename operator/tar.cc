#include "operator/tar.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace cairn::operator_ {
namespace {

constexpr size_t kBlock = 512;
constexpr uint64_t kMaxOctalSize = (uint64_t{1} << 33) - 1;  // 11 octal digits

bool IsPlainAscii(absl::string_view s) {
  return std::all_of(s.begin(), s.end(),
                     [](char c) { return c >= 0x20 && c < 0x7f; });
}

void PutField(char* block, size_t offset, size_t width, absl::string_view value) {
  // An empty view may have a null data(), which memcpy must not be given.
  if (value.empty()) return;
  std::memcpy(block + offset, value.data(), std::min(width, value.size()));
}

void PutOctal(char* block, size_t offset, size_t width, uint64_t value) {
  // width - 1 digits and a NUL terminator.
  std::string digits = absl::StrFormat("%0*o", static_cast<int>(width - 1), value);
  PutField(block, offset, width - 1, digits);
}

// One pax record: "LEN key=value\n", where LEN counts the whole record.
std::string PaxRecord(absl::string_view key, absl::string_view value) {
  const size_t body = 1 + key.size() + 1 + value.size() + 1;  // ' ' k '=' v '\n'
  size_t len = body + 1;
  while (absl::StrCat(len).size() + body != len) len = absl::StrCat(len).size() + body;
  return absl::StrCat(len, " ", std::string(key), "=", std::string(value), "\n");
}

// Splits `path` into ustar's prefix (≤155) and name (≤100) at a '/', if it
// fits; false otherwise.
bool SplitUstarName(absl::string_view path, absl::string_view* prefix, absl::string_view* name) {
  if (path.size() <= 100) {
    *prefix = {};
    *name = path;
    return true;
  }
  for (size_t slash = path.find('/'); slash != absl::string_view::npos;
       slash = path.find('/', slash + 1)) {
    if (slash <= 155 && path.size() - slash - 1 <= 100 && slash + 1 < path.size()) {
      *prefix = path.substr(0, slash);
      *name = path.substr(slash + 1);
      return true;
    }
  }
  return false;
}

std::string UstarBlock(absl::string_view prefix, absl::string_view name, char type, uint32_t mode,
                       uint64_t size, int64_t mtime_s, absl::string_view link) {
  std::string block(kBlock, '\0');
  char* b = block.data();
  PutField(b, 0, 100, name);
  PutOctal(b, 100, 8, mode & 07777);
  PutOctal(b, 108, 8, 0);  // uid
  PutOctal(b, 116, 8, 0);  // gid
  PutOctal(b, 124, 12, std::min(size, kMaxOctalSize));
  PutOctal(b, 136, 12, static_cast<uint64_t>(std::max<int64_t>(0, mtime_s)) & kMaxOctalSize);
  std::memset(b + 148, ' ', 8);  // checksum counted as spaces
  b[156] = type;
  PutField(b, 157, 100, link);
  PutField(b, 257, 6, "ustar");  // magic "ustar\0"
  PutField(b, 263, 2, "00");
  PutField(b, 345, 155, prefix);
  unsigned sum = 0;
  for (unsigned char c : block) sum += c;
  PutField(b, 148, 7, absl::StrFormat("%06o", sum));  // six digits, NUL, space
  b[154] = '\0';
  b[155] = ' ';
  return block;
}

}  // namespace

std::string TarHeader(const TarMember& member) {
  std::string path = member.path;
  if (member.type == TarType::kDirectory) path += "/";
  std::string pax;
  absl::string_view prefix, name;
  if (!IsPlainAscii(path) || !SplitUstarName(path, &prefix, &name)) {
    absl::StrAppend(&pax, PaxRecord("path", path));
    prefix = {};
    name = absl::string_view(path).substr(0, std::min<size_t>(path.size(), 100));
  }
  absl::string_view link = member.link_target;
  if (!link.empty() && (link.size() > 100 || !IsPlainAscii(link))) {
    absl::StrAppend(&pax, PaxRecord("linkpath", link));
    link = link.substr(0, std::min<size_t>(link.size(), 100));
  }
  if (member.size > kMaxOctalSize) {
    absl::StrAppend(&pax, PaxRecord("size", absl::StrCat(member.size)));
  }
  std::string out;
  if (!pax.empty()) {
    out = UstarBlock({}, "PaxHeader", 'x', 0644, pax.size(), member.mtime_s, {});
    absl::StrAppend(&out, pax, TarPadding(pax.size()));
  }
  absl::StrAppend(&out, UstarBlock(prefix, name, static_cast<char>(member.type), member.mode,
                                   member.type == TarType::kFile ? member.size : 0,
                                   member.mtime_s, link));
  return out;
}

std::string TarPadding(uint64_t size) {
  return std::string((kBlock - size % kBlock) % kBlock, '\0');
}

std::string TarEnd() { return std::string(2 * kBlock, '\0'); }

}  // namespace cairn::operator_
