// EscapeMarkup: text made safe to place in HTML or XML, as element content
// or inside a double- or single-quoted attribute. Pure; thread-safe.
#pragma once

#include <string>

#include "absl/strings/string_view.h"

namespace cairn {

inline std::string EscapeMarkup(absl::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

}  // namespace cairn
