#include "core/crypto.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <memory>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/fd.h"
#include "core/log.h"
#include "core/status.h"

namespace cairn {
namespace {

// Debian's abseil 20220623 has its own absl::string_view (not an alias of
// std::string_view), so std::string_view must be converted explicitly.
absl::string_view Sv(std::string_view s) { return absl::string_view(s.data(), s.size()); }

constexpr size_t kNonceSize = 12;
constexpr size_t kTagSize = 16;
constexpr size_t kAesKeySize = 32;
static_assert(kSealOverhead == kNonceSize + kTagSize);
static_assert(DataKey::kSize == 2 * kAesKeySize);
// EVP update calls take an int length; feed large buffers in slices.
constexpr size_t kMaxUpdate = size_t{1} << 30;

[[noreturn]] void CryptoFailure(const char* what) {
  LogLine(LogLevel::kError, absl::StrCat("OpenSSL failure in ", what, "; aborting"));
  std::abort();
}

// Fetched once: EVP_CIPHER / EVP_MAC objects are immutable after fetch and
// safe to share between threads; only the per-call contexts are mutable.
// Explicit fetches avoid OpenSSL 3's implicit fetch on every init.
const EVP_CIPHER* AesGcm() {
  static const EVP_CIPHER* cipher = [] {
    EVP_CIPHER* c = EVP_CIPHER_fetch(nullptr, "AES-256-GCM", nullptr);
    if (c == nullptr) CryptoFailure("EVP_CIPHER_fetch(AES-256-GCM)");
    return c;
  }();
  return cipher;
}

EVP_MAC* Hmac() {
  static EVP_MAC* mac = [] {
    EVP_MAC* m = EVP_MAC_fetch(nullptr, "HMAC", nullptr);
    if (m == nullptr) CryptoFailure("EVP_MAC_fetch(HMAC)");
    return m;
  }();
  return mac;
}

const EVP_MD* Sha256Md() {
  static const EVP_MD* md = [] {
    EVP_MD* m = EVP_MD_fetch(nullptr, "SHA256", nullptr);
    if (m == nullptr) CryptoFailure("EVP_MD_fetch(SHA256)");
    return m;
  }();
  return md;
}

struct CipherCtxDeleter {
  void operator()(EVP_CIPHER_CTX* c) const { EVP_CIPHER_CTX_free(c); }
};
using CipherCtx = std::unique_ptr<EVP_CIPHER_CTX, CipherCtxDeleter>;

struct MacCtxDeleter {
  void operator()(EVP_MAC_CTX* c) const { EVP_MAC_CTX_free(c); }
};

const unsigned char* U(std::string_view s) {
  return reinterpret_cast<const unsigned char*>(s.data());
}

// Feeds `in` to an encrypt/decrypt context, writing to `out` (nullptr for
// AAD). Returns false on an OpenSSL error.
bool CipherUpdate(EVP_CIPHER_CTX* ctx, bool encrypt, unsigned char* out, std::string_view in) {
  size_t done = 0;
  while (done < in.size()) {
    size_t n = std::min(kMaxUpdate, in.size() - done);
    int outl = 0;
    unsigned char* dst = out ? out + done : nullptr;
    int ok = encrypt ? EVP_EncryptUpdate(ctx, dst, &outl, U(in) + done, static_cast<int>(n))
                     : EVP_DecryptUpdate(ctx, dst, &outl, U(in) + done, static_cast<int>(n));
    if (ok != 1) return false;
    done += n;
  }
  return true;
}

// AES-256-GCM: returns nonce || ciphertext || tag.
std::string GcmSeal(std::string_view key, std::string_view aad, std::string_view plaintext) {
  std::string out(kNonceSize + plaintext.size() + kTagSize, '\0');
  unsigned char* p = reinterpret_cast<unsigned char*>(out.data());
  if (RAND_bytes(p, kNonceSize) != 1) CryptoFailure("RAND_bytes");
  CipherCtx ctx(EVP_CIPHER_CTX_new());
  if (!ctx) CryptoFailure("EVP_CIPHER_CTX_new");
  // GCM's default IV length is 12 bytes, our nonce size.
  if (EVP_EncryptInit_ex2(ctx.get(), AesGcm(), U(key), p, nullptr) != 1) {
    CryptoFailure("EVP_EncryptInit_ex2");
  }
  if (!CipherUpdate(ctx.get(), true, nullptr, aad)) CryptoFailure("GCM AAD");
  if (!CipherUpdate(ctx.get(), true, p + kNonceSize, plaintext)) CryptoFailure("GCM encrypt");
  int outl = 0;
  if (EVP_EncryptFinal_ex(ctx.get(), p + kNonceSize + plaintext.size(), &outl) != 1) {
    CryptoFailure("EVP_EncryptFinal_ex");
  }
  if (EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_AEAD_GET_TAG, kTagSize,
                          p + kNonceSize + plaintext.size()) != 1) {
    CryptoFailure("GCM get tag");
  }
  return out;
}

// Inverse of GcmSeal; DataLoss if the tag does not verify. `sealed` must be
// at least kSealOverhead bytes (checked by callers).
absl::StatusOr<std::string> GcmOpen(std::string_view key, std::string_view aad,
                                    std::string_view sealed, std::string_view what) {
  std::string_view nonce = sealed.substr(0, kNonceSize);
  std::string_view ct = sealed.substr(kNonceSize, sealed.size() - kSealOverhead);
  std::string tag(sealed.substr(sealed.size() - kTagSize));
  std::string out(ct.size(), '\0');
  CipherCtx ctx(EVP_CIPHER_CTX_new());
  if (!ctx) CryptoFailure("EVP_CIPHER_CTX_new");
  if (EVP_DecryptInit_ex2(ctx.get(), AesGcm(), U(key), U(nonce), nullptr) != 1) {
    CryptoFailure("EVP_DecryptInit_ex2");
  }
  if (!CipherUpdate(ctx.get(), false, nullptr, aad) ||
      !CipherUpdate(ctx.get(), false, reinterpret_cast<unsigned char*>(out.data()), ct)) {
    return absl::DataLossError(absl::StrCat(Sv(what), ": decryption failed"));
  }
  if (EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_AEAD_SET_TAG, kTagSize, tag.data()) != 1) {
    CryptoFailure("GCM set tag");
  }
  int outl = 0;
  if (EVP_DecryptFinal_ex(ctx.get(), reinterpret_cast<unsigned char*>(out.data()) + ct.size(),
                          &outl) != 1) {
    return absl::DataLossError(absl::StrCat(
        Sv(what), ": authentication tag mismatch (corrupt data, wrong key or wrong address)"));
  }
  return out;
}

// Reads an existing key file, enforcing size and permissions.
// NotFound (errno ENOENT) if there is no file.
absl::StatusOr<std::string> ReadKeyFile(const std::filesystem::path& path) {
  // Symlinks are followed: a Kubernetes Secret volume presents its files
  // as links into a timestamped directory. The checks below apply to the
  // file itself (fstat).
  ScopedFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) return ErrnoToStatus(errno, absl::StrCat("open master key ", path.string()));
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) {
    return ErrnoToStatus(errno, absl::StrCat("stat master key ", path.string()));
  }
  if (!S_ISREG(st.st_mode)) {
    return absl::FailedPreconditionError(
        absl::StrCat("master key ", path.string(), " is not a regular file"));
  }
  if ((st.st_mode & 077) != 0) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "master key %s has mode %04o; it must not be accessible by group or others "
        "(chmod 600 it)",
        path.string(), st.st_mode & 07777));
  }
  if (static_cast<size_t>(st.st_size) != MasterKey::kSize) {
    return absl::FailedPreconditionError(absl::StrCat("master key ", path.string(), " has ",
                                                      st.st_size, " bytes; expected ",
                                                      MasterKey::kSize));
  }
  std::string bytes(MasterKey::kSize, '\0');
  size_t got = 0;
  while (got < bytes.size()) {
    ssize_t n = ::read(fd.get(), bytes.data() + got, bytes.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoToStatus(errno, absl::StrCat("read master key ", path.string()));
    if (n == 0) {
      return absl::FailedPreconditionError(
          absl::StrCat("master key ", path.string(), " was truncated while reading"));
    }
    got += static_cast<size_t>(n);
  }
  return bytes;
}

absl::Status FsyncDir(const std::filesystem::path& dir) {
  ScopedFd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (fd.get() < 0) return ErrnoToStatus(errno, absl::StrCat("open dir ", dir.string()));
  if (::fsync(fd.get()) != 0) return ErrnoToStatus(errno, absl::StrCat("fsync ", dir.string()));
  return absl::OkStatus();
}

// Writes a new key to a private temporary and links it into place. link(2)
// never replaces an existing file, so when two processes race exactly one
// key wins and the loser reads it back. Returns AlreadyExists if lost.
absl::Status CreateKeyFile(const std::filesystem::path& path, std::string_view bytes) {
  std::filesystem::path dir = path.parent_path().empty() ? "." : path.parent_path();
  std::filesystem::path tmp = dir / absl::StrCat(".", path.filename().string(), ".tmp.",
                                                 ::getpid(), ".",
                                                 absl::BytesToHexString(RandomBytes(6)));
  {
    ScopedFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600));
    if (fd.get() < 0) return ErrnoToStatus(errno, absl::StrCat("create ", tmp.string()));
    // umask can only clear bits, but be explicit: the key is private.
    absl::Status st;
    if (::fchmod(fd.get(), 0600) != 0) st = ErrnoToStatus(errno, "fchmod master key");
    size_t put = 0;
    while (st.ok() && put < bytes.size()) {
      ssize_t n = ::write(fd.get(), bytes.data() + put, bytes.size() - put);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        st = ErrnoToStatus(errno, absl::StrCat("write ", tmp.string()));
        break;
      }
      put += static_cast<size_t>(n);
    }
    if (st.ok() && ::fsync(fd.get()) != 0) st = ErrnoToStatus(errno, "fsync master key");
    if (!st.ok()) {
      ::unlink(tmp.c_str());
      return st;
    }
  }
  int rc = ::link(tmp.c_str(), path.c_str());
  int err = errno;
  ::unlink(tmp.c_str());
  if (rc != 0) {
    if (err == EEXIST) return absl::AlreadyExistsError("master key created concurrently");
    return ErrnoToStatus(err, absl::StrCat("link master key ", path.string()));
  }
  return FsyncDir(dir);
}

}  // namespace

std::string RandomBytes(size_t n) {
  std::string out(n, '\0');
  if (n > 0 && RAND_bytes(reinterpret_cast<unsigned char*>(out.data()), static_cast<int>(n)) != 1) {
    CryptoFailure("RAND_bytes");
  }
  return out;
}

Digest Sha256(std::string_view data) {
  std::array<uint8_t, Digest::kSize> out;
  unsigned int len = 0;
  if (EVP_Digest(data.data(), data.size(), out.data(), &len, Sha256Md(), nullptr) != 1 ||
      len != Digest::kSize) {
    CryptoFailure("EVP_Digest(SHA256)");
  }
  return Digest::FromArray(out);
}

DataKey DataKey::Generate() { return DataKey(RandomBytes(kSize)); }

absl::StatusOr<DataKey> DataKey::FromBytes(std::string_view bytes) {
  if (bytes.size() != kSize) {
    return absl::InvalidArgumentError(
        absl::StrCat("data key must be ", kSize, " bytes, got ", bytes.size()));
  }
  return DataKey(std::string(bytes));
}

Digest DataKey::Address(std::string_view plaintext) const {
  std::unique_ptr<EVP_MAC_CTX, MacCtxDeleter> ctx(EVP_MAC_CTX_new(Hmac()));
  if (!ctx) CryptoFailure("EVP_MAC_CTX_new");
  char digest_name[] = "SHA256";
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest_name, 0),
      OSSL_PARAM_construct_end(),
  };
  std::string_view mac_key = bytes_;
  mac_key.remove_prefix(kAesKeySize);
  if (EVP_MAC_init(ctx.get(), U(mac_key), mac_key.size(), params) != 1) {
    CryptoFailure("EVP_MAC_init");
  }
  if (EVP_MAC_update(ctx.get(), U(plaintext), plaintext.size()) != 1) {
    CryptoFailure("EVP_MAC_update");
  }
  std::array<uint8_t, Digest::kSize> out;
  size_t len = 0;
  if (EVP_MAC_final(ctx.get(), out.data(), &len, out.size()) != 1 || len != out.size()) {
    CryptoFailure("EVP_MAC_final");
  }
  return Digest::FromArray(out);
}

std::string DataKey::Seal(const Digest& address, std::string_view plaintext) const {
  return GcmSeal(std::string_view(bytes_).substr(0, kAesKeySize), address.raw(), plaintext);
}

absl::StatusOr<std::string> DataKey::Open(const Digest& address, std::string_view sealed) const {
  if (sealed.size() < kSealOverhead) {
    return absl::InvalidArgumentError(absl::StrCat("sealed blob is ", sealed.size(),
                                                   " bytes, shorter than the ", kSealOverhead,
                                                   "-byte nonce and tag"));
  }
  return GcmOpen(std::string_view(bytes_).substr(0, kAesKeySize), address.raw(), sealed,
                 absl::StrCat("blob ", address.ToHex()));
}

absl::StatusOr<MasterKey> MasterKey::LoadOrCreate(const std::filesystem::path& path) {
  // Bounded: each round either reads a key, creates one, or loses a create
  // race to a key that the next round reads.
  for (int attempt = 0; attempt < 3; ++attempt) {
    absl::StatusOr<std::string> bytes = ReadKeyFile(path);
    if (bytes.ok()) return MasterKey(*std::move(bytes));
    if (!absl::IsNotFound(bytes.status())) return bytes.status();
    std::string fresh = RandomBytes(kSize);
    absl::Status created = CreateKeyFile(path, fresh);
    if (created.ok()) {
      CAIRN_LOG_INFO("created master key %s", path.string());
      return MasterKey(std::move(fresh));
    }
    if (!absl::IsAlreadyExists(created)) return created;
  }
  return absl::UnavailableError(
      absl::StrCat("master key ", path.string(), " keeps appearing and disappearing"));
}

absl::StatusOr<MasterKey> MasterKey::FromBytes(std::string_view bytes) {
  if (bytes.size() != kSize) {
    return absl::InvalidArgumentError(
        absl::StrCat("master key must be ", kSize, " bytes, got ", bytes.size()));
  }
  return MasterKey(std::string(bytes));
}

std::string MasterKey::Wrap(std::string_view volume_id, const DataKey& key) const {
  return GcmSeal(bytes_, volume_id, key.bytes());
}

absl::StatusOr<DataKey> MasterKey::Unwrap(std::string_view volume_id,
                                          std::string_view wrapped) const {
  if (wrapped.size() != DataKey::kSize + kSealOverhead) {
    return absl::DataLossError(absl::StrCat("wrapped key of volume ", Sv(volume_id), " is ",
                                            wrapped.size(), " bytes; expected ",
                                            DataKey::kSize + kSealOverhead));
  }
  CAIRN_ASSIGN_OR_RETURN(
      std::string raw,
      GcmOpen(bytes_, volume_id, wrapped,
              absl::StrCat("wrapped key of volume ", Sv(volume_id),
                           " (wrong master key, or the key belongs to another volume)")));
  return DataKey::FromBytes(raw);
}

}  // namespace cairn
