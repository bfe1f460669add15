#include "core/crypto.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <memory>

#include <openssl/crypto.h>
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

// ---- Version 2 (blocked) ------------------------------------------------

constexpr char kMagic[4] = {'C', 'R', 'N', '\x02'};
constexpr size_t kSaltSize = 16;
constexpr std::string_view kBlockKeyLabel = "cairn blocked chunk key v2";
static_assert(kSealHeaderSize == sizeof(kMagic) + 1 + 3 + 8 + kSaltSize);
static_assert(kSealTagSize == kTagSize);

uint64_t BlockCount(uint64_t plaintext_size, uint32_t shift) {
  // An empty plaintext still has one (empty) block, so its header is bound.
  if (plaintext_size == 0) return 1;
  return ((plaintext_size - 1) >> shift) + 1;
}

void PutU64Le(char* p, uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<char>(v >> (8 * i));
}
uint64_t GetU64Le(const char* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= uint64_t{static_cast<unsigned char>(p[i])} << (8 * i);
  return v;
}
void PutU64Be(unsigned char* p, uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<unsigned char>(v >> (56 - 8 * i));
}

// HMAC-SHA-256(key, label || address || salt): the key of one sealing of one
// chunk. The salt makes every sealing's key fresh, so the per-block nonce
// can simply be the block index.
std::string DeriveBlockKey(std::string_view aes_key, const Digest& address,
                           std::string_view salt) {
  std::unique_ptr<EVP_MAC_CTX, MacCtxDeleter> ctx(EVP_MAC_CTX_new(Hmac()));
  if (!ctx) CryptoFailure("EVP_MAC_CTX_new");
  char digest_name[] = "SHA256";
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest_name, 0),
      OSSL_PARAM_construct_end(),
  };
  if (EVP_MAC_init(ctx.get(), U(aes_key), aes_key.size(), params) != 1) {
    CryptoFailure("EVP_MAC_init");
  }
  for (std::string_view part : {kBlockKeyLabel, address.raw(), salt}) {
    if (EVP_MAC_update(ctx.get(), U(part), part.size()) != 1) CryptoFailure("EVP_MAC_update");
  }
  std::string out(kAesKeySize, '\0');
  size_t len = 0;
  if (EVP_MAC_final(ctx.get(), reinterpret_cast<unsigned char*>(out.data()), &len, out.size()) !=
          1 ||
      len != out.size()) {
    CryptoFailure("EVP_MAC_final");
  }
  return out;
}

// One AES-256-GCM context keyed once for all blocks of a chunk; each block
// only resets the IV (no key schedule per block).
class BlockCipher {
 public:
  BlockCipher(std::string_view key, const SealedLayout& layout, const Digest& address,
              bool encrypt)
      : ctx_(EVP_CIPHER_CTX_new()), encrypt_(encrypt) {
    if (!ctx_) CryptoFailure("EVP_CIPHER_CTX_new");
    int ok = encrypt ? EVP_EncryptInit_ex2(ctx_.get(), AesGcm(), U(key), nullptr, nullptr)
                     : EVP_DecryptInit_ex2(ctx_.get(), AesGcm(), U(key), nullptr, nullptr);
    if (ok != 1) CryptoFailure("GCM block key");
    memcpy(aad_, layout.header().data(), kSealHeaderSize);
    memcpy(aad_ + kSealHeaderSize, address.raw().data(), Digest::kSize);
  }

  // Seals block `index`: `in` to `out` (same size), tag to `tag`.
  void Seal(uint64_t index, std::string_view in, unsigned char* out, unsigned char* tag) {
    Start(index);
    if (!CipherUpdate(ctx_.get(), true, out, in)) CryptoFailure("GCM encrypt");
    int outl = 0;
    if (EVP_EncryptFinal_ex(ctx_.get(), out + in.size(), &outl) != 1) {
      CryptoFailure("EVP_EncryptFinal_ex");
    }
    if (EVP_CIPHER_CTX_ctrl(ctx_.get(), EVP_CTRL_AEAD_GET_TAG, kTagSize, tag) != 1) {
      CryptoFailure("GCM get tag");
    }
  }

  // Opens block `index` (ciphertext || tag) into `out`; false if the tag
  // does not verify.
  bool Open(uint64_t index, std::string_view sealed, unsigned char* out) {
    Start(index);
    std::string_view ct = sealed.substr(0, sealed.size() - kTagSize);
    unsigned char tag[kTagSize];
    memcpy(tag, sealed.data() + ct.size(), kTagSize);
    if (!CipherUpdate(ctx_.get(), false, out, ct)) return false;
    if (EVP_CIPHER_CTX_ctrl(ctx_.get(), EVP_CTRL_AEAD_SET_TAG, kTagSize, tag) != 1) {
      CryptoFailure("GCM set tag");
    }
    int outl = 0;
    return EVP_DecryptFinal_ex(ctx_.get(), out + ct.size(), &outl) == 1;
  }

 private:
  void Start(uint64_t index) {
    unsigned char iv[kNonceSize] = {};
    PutU64Be(iv + 4, index);
    int ok = encrypt_ ? EVP_EncryptInit_ex2(ctx_.get(), nullptr, nullptr, iv, nullptr)
                      : EVP_DecryptInit_ex2(ctx_.get(), nullptr, nullptr, iv, nullptr);
    if (ok != 1) CryptoFailure("GCM block IV");
    PutU64Be(reinterpret_cast<unsigned char*>(aad_) + kSealHeaderSize + Digest::kSize, index);
    if (!CipherUpdate(ctx_.get(), encrypt_, nullptr, std::string_view(aad_, sizeof(aad_)))) {
      CryptoFailure("GCM AAD");
    }
  }

  CipherCtx ctx_;
  const bool encrypt_;
  // header || address || u64 big-endian block index
  char aad_[kSealHeaderSize + Digest::kSize + 8];
};

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

bool SameSecret(std::string_view a, std::string_view b) {
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
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

absl::StatusOr<SealedLayout> SealedLayout::Parse(std::string_view head, uint64_t total_size) {
  if (total_size < kSealOverhead) {
    return absl::InvalidArgumentError(absl::StrCat("sealed blob is ", total_size,
                                                   " bytes, shorter than the ", kSealOverhead,
                                                   "-byte nonce and tag"));
  }
  SealedLayout layout;
  layout.sealed_size_ = total_size;
  if (head.size() < kSealHeaderSize || total_size < kSealHeaderSize + kSealTagSize ||
      memcmp(head.data(), kMagic, sizeof(kMagic)) != 0) {
    return layout;  // version 1
  }
  const uint32_t shift = static_cast<unsigned char>(head[4]);
  const uint64_t size = GetU64Le(head.data() + 8);
  if (shift < kSealMinBlockShift || shift > kSealMaxBlockShift || head[5] != 0 || head[6] != 0 ||
      head[7] != 0 || size > total_size) {
    return layout;
  }
  const uint64_t count = BlockCount(size, shift);
  if (kSealHeaderSize + size + count * kSealTagSize != total_size) return layout;
  layout.blocked_ = true;
  layout.plaintext_size_ = size;
  layout.shift_ = shift;
  layout.block_count_ = count;
  memcpy(layout.header_, head.data(), kSealHeaderSize);
  return layout;
}

uint64_t SealedLayout::PlainBlockSize(uint64_t i) const {
  if (i + 1 < block_count_) return block_size();
  return plaintext_size_ - (block_count_ - 1) * block_size();
}

uint64_t SealedLayout::SealedOffset(uint64_t i) const {
  if (i >= block_count_) return sealed_size_;
  return kSealHeaderSize + i * (block_size() + kSealTagSize);
}

std::pair<uint64_t, uint64_t> SealedLayout::BlocksFor(uint64_t offset, uint64_t length) const {
  if (offset >= plaintext_size_ || length == 0) return {0, 0};
  uint64_t end = plaintext_size_ - offset < length ? plaintext_size_ : offset + length;
  return {offset >> shift_, ((end - 1) >> shift_) + 1};
}

std::string DataKey::Seal(const Digest& address, std::string_view plaintext,
                          uint32_t block_shift) const {
  if (block_shift < kSealMinBlockShift || block_shift > kSealMaxBlockShift) {
    CryptoFailure("block shift out of range");
  }
  const uint64_t count = BlockCount(plaintext.size(), block_shift);
  const uint64_t block_size = uint64_t{1} << block_shift;
  std::string out(kSealHeaderSize + plaintext.size() + count * kSealTagSize, '\0');
  char* h = out.data();
  memcpy(h, kMagic, sizeof(kMagic));
  h[4] = static_cast<char>(block_shift);
  PutU64Le(h + 8, plaintext.size());
  if (RAND_bytes(reinterpret_cast<unsigned char*>(h) + 16, kSaltSize) != 1) {
    CryptoFailure("RAND_bytes");
  }
  absl::StatusOr<SealedLayout> layout = SealedLayout::Parse(out, out.size());
  if (!layout.ok() || !layout->blocked()) CryptoFailure("blocked layout");
  BlockCipher cipher(DeriveBlockKey(std::string_view(bytes_).substr(0, kAesKeySize), address,
                                    std::string_view(h + 16, kSaltSize)),
                     *layout, address, /*encrypt=*/true);
  unsigned char* p = reinterpret_cast<unsigned char*>(out.data());
  for (uint64_t i = 0; i < count; ++i) {
    const uint64_t n = layout->PlainBlockSize(i);
    unsigned char* dst = p + layout->SealedOffset(i);
    cipher.Seal(i, plaintext.substr(i * block_size, n), dst, dst + n);
  }
  return out;
}

std::string DataKey::SealSingle(const Digest& address, std::string_view plaintext) const {
  return GcmSeal(std::string_view(bytes_).substr(0, kAesKeySize), address.raw(), plaintext);
}

absl::StatusOr<std::string> DataKey::Open(const Digest& address, std::string_view sealed) const {
  CAIRN_ASSIGN_OR_RETURN(SealedLayout layout, SealedLayout::Parse(sealed, sealed.size()));
  auto open_single = [&] {
    return GcmOpen(std::string_view(bytes_).substr(0, kAesKeySize), address.raw(), sealed,
                   absl::StrCat("blob ", address.ToHex()));
  };
  if (!layout.blocked()) return open_single();
  absl::StatusOr<std::string> plain =
      OpenBlocks(address, layout, 0, sealed.substr(kSealHeaderSize));
  if (plain.ok() || !absl::IsDataLoss(plain.status())) return plain;
  // A version 1 blob whose random nonce happens to read as a well-formed
  // header of exactly its size (about 2^-64): it is still that blob.
  if (absl::StatusOr<std::string> single = open_single(); single.ok()) return single;
  return plain;
}

absl::StatusOr<std::string> DataKey::OpenBlocks(const Digest& address, const SealedLayout& layout,
                                                uint64_t first,
                                                std::string_view sealed_blocks) const {
  if (!layout.blocked()) {
    return absl::InvalidArgumentError("a single-block (version 1) blob opens only whole");
  }
  if (first >= layout.block_count()) {
    return absl::InvalidArgumentError(absl::StrCat("block ", first, " of a ",
                                                   layout.block_count(), "-block blob"));
  }
  const std::string what = absl::StrCat("blob ", address.ToHex());
  // Sizes first: how many blocks `sealed_blocks` holds, exactly.
  uint64_t end = first, plain_size = 0, at = 0;
  while (at < sealed_blocks.size()) {
    if (end >= layout.block_count()) {
      return absl::DataLossError(absl::StrCat(what, ": bytes past its last block"));
    }
    const uint64_t n = layout.PlainBlockSize(end) + kSealTagSize;
    if (sealed_blocks.size() - at < n) {
      return absl::DataLossError(absl::StrCat(what, ": block ", end, " is truncated"));
    }
    at += n;
    plain_size += n - kSealTagSize;
    ++end;
  }
  if (end == first) return absl::DataLossError(absl::StrCat(what, ": no block to open"));
  std::string out(plain_size, '\0');
  BlockCipher cipher(
      DeriveBlockKey(std::string_view(bytes_).substr(0, kAesKeySize), address,
                     layout.header().substr(16, kSaltSize)),
      layout, address, /*encrypt=*/false);
  unsigned char* dst = reinterpret_cast<unsigned char*>(out.data());
  at = 0;
  for (uint64_t i = first; i < end; ++i) {
    const uint64_t n = layout.PlainBlockSize(i);
    if (!cipher.Open(i, sealed_blocks.substr(at, n + kSealTagSize), dst)) {
      return absl::DataLossError(absl::StrCat(
          what, ": block ", i,
          " fails to authenticate (corrupt data, wrong key, wrong address or moved block)"));
    }
    at += n + kSealTagSize;
    dst += n;
  }
  return out;
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
