#include "core/sigv4.h"

#include <openssl/evp.h>
#include <openssl/sha.h>

#include <algorithm>
#include <map>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace cairn {
namespace {

// Debian's abseil has its own absl::string_view (see core/crypto.cc).
absl::string_view Sv(std::string_view s) { return absl::string_view(s.data(), s.size()); }

std::string HmacSha256(absl::string_view key, absl::string_view data) {
  unsigned char out[EVP_MAX_MD_SIZE];
  size_t len = 0;
  // One-shot HMAC (OpenSSL 3); it only fails on allocation failure.
  if (EVP_Q_mac(nullptr, "HMAC", nullptr, "SHA256", nullptr, key.data(), key.size(),
                reinterpret_cast<const unsigned char*>(data.data()), data.size(), out,
                sizeof(out), &len) == nullptr) {
    std::abort();
  }
  return std::string(reinterpret_cast<const char*>(out), len);
}

// Trims and collapses runs of spaces, as the canonical header value wants.
std::string CanonicalValue(std::string_view value) {
  absl::string_view v = absl::StripAsciiWhitespace(Sv(value));
  std::string out;
  out.reserve(v.size());
  bool space = false;
  for (char c : v) {
    if (c == ' ' || c == '\t') {
      space = true;
      continue;
    }
    if (space && !out.empty()) out.push_back(' ');
    space = false;
    out.push_back(c);
  }
  return out;
}

std::string CanonicalQuery(const std::vector<std::pair<std::string, std::string>>& query) {
  std::vector<std::pair<std::string, std::string>> enc;
  enc.reserve(query.size());
  for (const auto& [k, v] : query) enc.emplace_back(SigV4Encode(k, false), SigV4Encode(v, false));
  std::sort(enc.begin(), enc.end());
  std::vector<std::string> parts;
  parts.reserve(enc.size());
  for (const auto& [k, v] : enc) parts.push_back(absl::StrCat(k, "=", v));
  return absl::StrJoin(parts, "&");
}

struct Canonical {
  std::string request;
  std::string signed_headers;
};

// headers: lowercase name -> values in the order given.
Canonical Canonicalize(const SigV4Request& r,
                       const std::vector<std::pair<std::string, std::string>>& query,
                       const std::vector<std::pair<std::string, std::string>>& extra_headers) {
  std::map<std::string, std::vector<std::string>> headers;
  headers["host"].push_back(r.host);
  for (const auto* list : {&r.headers, &extra_headers}) {
    for (const auto& [name, value] : *list) {
      headers[absl::AsciiStrToLower(name)].push_back(CanonicalValue(value));
    }
  }
  std::string canonical_headers;
  std::vector<std::string> names;
  for (const auto& [name, values] : headers) {
    absl::StrAppend(&canonical_headers, name, ":", absl::StrJoin(values, ","), "\n");
    names.push_back(name);
  }
  Canonical c;
  c.signed_headers = absl::StrJoin(names, ";");
  c.request = absl::StrCat(r.method, "\n", SigV4Encode(r.path.empty() ? "/" : r.path, true), "\n",
                           CanonicalQuery(query), "\n", canonical_headers, "\n",
                           c.signed_headers, "\n", r.payload_hash);
  return c;
}

std::string SigningKey(const SigV4Credentials& creds, const SigV4Scope& scope,
                       absl::string_view date) {
  std::string k = HmacSha256(absl::StrCat("AWS4", creds.secret_key), date);
  k = HmacSha256(k, scope.region);
  k = HmacSha256(k, scope.service);
  return HmacSha256(k, "aws4_request");
}

struct Stamp {
  std::string date_time;  // 20150830T123600Z
  std::string date;       // 20150830
};

Stamp StampOf(absl::Time now) {
  return {absl::FormatTime("%Y%m%dT%H%M%SZ", now, absl::UTCTimeZone()),
          absl::FormatTime("%Y%m%d", now, absl::UTCTimeZone())};
}

std::string CredentialScope(const Stamp& stamp, const SigV4Scope& scope) {
  return absl::StrCat(stamp.date, "/", scope.region, "/", scope.service, "/aws4_request");
}

std::string Sign(const std::string& canonical_request, const Stamp& stamp,
                 const SigV4Credentials& creds, const SigV4Scope& scope,
                 std::string* string_to_sign) {
  *string_to_sign = absl::StrCat("AWS4-HMAC-SHA256\n", stamp.date_time, "\n",
                                 CredentialScope(stamp, scope), "\n",
                                 Sha256Hex(canonical_request));
  return absl::BytesToHexString(HmacSha256(SigningKey(creds, scope, stamp.date), *string_to_sign));
}

}  // namespace

std::string SigV4Encode(std::string_view s, bool keep_slash) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(s.size());
  for (char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if (absl::ascii_isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~' ||
        (keep_slash && c == '/')) {
      out.push_back(ch);
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  return out;
}

std::string Sha256Hex(std::string_view data) {
  unsigned char out[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), out);
  return absl::BytesToHexString(absl::string_view(reinterpret_cast<const char*>(out), sizeof(out)));
}

SigV4Signed SignV4(const SigV4Request& request, const SigV4Credentials& creds,
                   const SigV4Scope& scope, absl::Time now) {
  const Stamp stamp = StampOf(now);
  std::vector<std::pair<std::string, std::string>> extra = {{"x-amz-date", stamp.date_time}};
  if (!creds.session_token.empty()) extra.emplace_back("x-amz-security-token", creds.session_token);
  Canonical c = Canonicalize(request, request.query, extra);
  SigV4Signed out;
  out.canonical_request = c.request;
  out.signature = Sign(c.request, stamp, creds, scope, &out.string_to_sign);
  out.headers = extra;
  out.headers.emplace_back(
      "authorization",
      absl::StrCat("AWS4-HMAC-SHA256 Credential=", creds.access_key, "/",
                   CredentialScope(stamp, scope), ", SignedHeaders=", c.signed_headers,
                   ", Signature=", out.signature));
  return out;
}

std::string PresignV4(const SigV4Request& request, const SigV4Credentials& creds,
                      const SigV4Scope& scope, absl::Time now, absl::Duration expires) {
  const Stamp stamp = StampOf(now);
  SigV4Request r = request;
  r.payload_hash = "UNSIGNED-PAYLOAD";
  // Signed headers are named before signing: the list is itself signed.
  std::vector<std::string> names = {"host"};
  for (const auto& [name, value] : r.headers) names.push_back(absl::AsciiStrToLower(name));
  std::sort(names.begin(), names.end());
  names.erase(std::unique(names.begin(), names.end()), names.end());
  std::vector<std::pair<std::string, std::string>> query = r.query;
  query.emplace_back("X-Amz-Algorithm", "AWS4-HMAC-SHA256");
  query.emplace_back("X-Amz-Credential",
                     absl::StrCat(creds.access_key, "/", CredentialScope(stamp, scope)));
  query.emplace_back("X-Amz-Date", stamp.date_time);
  query.emplace_back("X-Amz-Expires", absl::StrCat(absl::ToInt64Seconds(expires)));
  if (!creds.session_token.empty()) query.emplace_back("X-Amz-Security-Token", creds.session_token);
  query.emplace_back("X-Amz-SignedHeaders", absl::StrJoin(names, ";"));
  Canonical c = Canonicalize(r, query, {});
  std::string string_to_sign;
  std::string signature = Sign(c.request, stamp, creds, scope, &string_to_sign);
  return absl::StrCat(CanonicalQuery(query), "&X-Amz-Signature=", signature);
}

}  // namespace cairn
