// Sealed blobs as they come back from a blob store or over the API
// (DataKey::Open and the range path SealedLayout + OpenBlocks,
// core/crypto.h). Two modes, chosen by the first byte:
// - the rest is a sealed blob as stored: Open must fail cleanly (it cannot
//   forge a tag) with InvalidArgument when short, DataLoss otherwise, and
//   no run of its blocks opens;
// - the rest is a plaintext plus an edit: seal it (either form), apply the
//   edit (flip, truncate, extend, move bytes) to the sealed form or the
//   address, and open whole and as a run of blocks: only the untouched blob
//   under its own address opens whole; a run of blocks that opens after an
//   edit elsewhere in the blob is exactly the plaintext of those blocks.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <algorithm>
#include <string>

#include <fuzzer/FuzzedDataProvider.h>

#include "core/crypto.h"

namespace {

void Check(bool ok, const char* what) {
  if (!ok) {
    fprintf(stderr, "property violated: %s\n", what);
    abort();
  }
}

const cairn::DataKey& Key() {
  static const cairn::DataKey key = *cairn::DataKey::FromBytes(std::string(64, '\x5a'));
  return key;
}


// Opens a random run of blocks of `sealed` as a range reader would: from
// the header and total size, then only the bytes of those blocks.
absl::StatusOr<std::string> OpenRun(const cairn::DataKey& key, const cairn::Digest& address,
                                    const std::string& sealed, uint64_t first, uint64_t count,
                                    uint64_t* plain_offset) {
  auto layout = cairn::SealedLayout::Parse(sealed, sealed.size());
  if (!layout.ok()) return layout.status();
  if (!layout->blocked()) return absl::DataLossError("not blocked");
  first %= layout->block_count();
  uint64_t last = std::min(layout->block_count(), first + 1 + count % 4);
  *plain_offset = first * layout->block_size();
  return key.OpenBlocks(
      address, *layout, first,
      std::string_view(sealed).substr(layout->SealedOffset(first),
                                      layout->SealedOffset(last) - layout->SealedOffset(first)));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider in(data, size);
  const cairn::DataKey& key = Key();
  if (in.ConsumeBool()) {
    std::string raw_address = in.ConsumeBytesAsString(cairn::Digest::kSize);
    raw_address.resize(cairn::Digest::kSize);
    cairn::Digest address = *cairn::Digest::FromRaw(raw_address);
    const uint64_t first = in.ConsumeIntegral<uint8_t>();
    const uint64_t count = in.ConsumeIntegral<uint8_t>();
    std::string sealed = in.ConsumeRemainingBytesAsString();
    auto opened = key.Open(address, sealed);
    Check(!opened.ok(), "a blob not sealed with the key does not open");
    Check(sealed.size() < cairn::kSealOverhead ? absl::IsInvalidArgument(opened.status())
                                               : absl::IsDataLoss(opened.status()),
          "short blobs are InvalidArgument, forged ones DataLoss");
    uint64_t at = 0;
    auto run = OpenRun(key, address, sealed, first, count, &at);
    Check(!run.ok(), "no forged block opens");
    return 0;
  }
  const uint8_t edit = in.ConsumeIntegralInRange<uint8_t>(0, 5);
  const bool single = in.ConsumeBool();  // the form older releases wrote
  const size_t at = in.ConsumeIntegral<uint32_t>();
  const uint8_t mask = in.ConsumeIntegralInRange<uint8_t>(1, 255);
  const uint64_t first = in.ConsumeIntegral<uint8_t>();
  const uint64_t count = in.ConsumeIntegral<uint8_t>();
  // Stretch the input (repeated) to a length of up to ~5 blocks, so that
  // block boundaries and short last blocks are reached.
  const size_t length = in.ConsumeIntegralInRange<size_t>(0, 5 * cairn::kSealBlockSize + 77);
  std::string plaintext = in.ConsumeRemainingBytesAsString();
  if (!plaintext.empty() && length > plaintext.size()) {
    std::string stretched;
    stretched.reserve(length);
    while (stretched.size() < length) stretched += plaintext;
    stretched.resize(length);
    plaintext = std::move(stretched);
  }
  const cairn::Digest address = key.Address(plaintext);
  std::string sealed = single ? key.SealSingle(address, plaintext) : key.Seal(address, plaintext);
  Check(sealed.size() == (single ? plaintext.size() + cairn::kSealOverhead
                                 : cairn::SealedSize(plaintext.size())),
        "seal overhead");
  cairn::Digest open_as = address;
  switch (edit) {
    case 0:  // untouched
      break;
    case 1:
      sealed[at % sealed.size()] ^= static_cast<char>(mask);
      break;
    case 2:
      sealed.resize(at % sealed.size());
      break;
    case 3:
      sealed.push_back(static_cast<char>(mask));
      break;
    case 4:
      open_as.mutable_data()[at % cairn::Digest::kSize] ^= mask;
      break;
    case 5: {  // a run of bytes moved elsewhere in the blob (blocks swapped)
      size_t from = at % sealed.size(), to = (at / 7 + mask) % sealed.size();
      size_t n = std::min({sealed.size() - from, sealed.size() - to, size_t{mask} * 257});
      std::string moved = sealed.substr(from, n);
      if (moved == sealed.substr(to, n)) return 0;  // no change: nothing to check
      sealed.replace(to, n, moved);
      break;
    }
  }
  auto opened = key.Open(open_as, sealed);
  uint64_t plain_at = 0;
  auto run = OpenRun(key, open_as, sealed, first, count, &plain_at);
  if (edit == 0) {
    Check(opened.ok() && *opened == plaintext, "an untouched blob opens to its plaintext");
    Check(single ? !run.ok()
                 : run.ok() && *run == plaintext.substr(plain_at, run->size()) &&
                       (plain_at + run->size() == plaintext.size() ||
                        run->size() % cairn::kSealBlockSize == 0),
          "its blocks open to their plaintext");
  } else {
    Check(!opened.ok(), "an edited blob or a wrong address never opens");
    Check(!run.ok() || ((run->size() > 0 || plaintext.empty()) &&
                        *run == plaintext.substr(plain_at, run->size()) && edit != 4),
          "a block that opens is the plaintext of that block, under its own address");
  }
  return 0;
}
