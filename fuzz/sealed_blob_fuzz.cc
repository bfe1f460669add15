// Sealed blobs as they come back from a blob store or over the API
// (DataKey::Open, core/crypto.h). Two modes, chosen by the first byte:
// - the rest is a sealed blob as stored: Open must fail cleanly (it cannot
//   forge a tag) with InvalidArgument when short, DataLoss otherwise;
// - the rest is a plaintext plus an edit: seal it, apply the edit (flip,
//   truncate, extend) to the sealed form or the address, and open: only
//   the untouched blob under its own address opens, and to the plaintext.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
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

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider in(data, size);
  const cairn::DataKey& key = Key();
  if (in.ConsumeBool()) {
    std::string raw_address = in.ConsumeBytesAsString(cairn::Digest::kSize);
    raw_address.resize(cairn::Digest::kSize);
    cairn::Digest address = *cairn::Digest::FromRaw(raw_address);
    std::string sealed = in.ConsumeRemainingBytesAsString();
    auto opened = key.Open(address, sealed);
    Check(!opened.ok(), "a blob not sealed with the key does not open");
    Check(sealed.size() < cairn::kSealOverhead ? absl::IsInvalidArgument(opened.status())
                                               : absl::IsDataLoss(opened.status()),
          "short blobs are InvalidArgument, forged ones DataLoss");
    return 0;
  }
  const uint8_t edit = in.ConsumeIntegralInRange<uint8_t>(0, 4);
  const size_t at = in.ConsumeIntegral<uint16_t>();
  const uint8_t mask = in.ConsumeIntegralInRange<uint8_t>(1, 255);
  const std::string plaintext = in.ConsumeRemainingBytesAsString();
  const cairn::Digest address = key.Address(plaintext);
  std::string sealed = key.Seal(address, plaintext);
  Check(sealed.size() == plaintext.size() + cairn::kSealOverhead, "seal overhead");
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
  }
  auto opened = key.Open(open_as, sealed);
  if (edit == 0) {
    Check(opened.ok() && *opened == plaintext, "an untouched blob opens to its plaintext");
  } else {
    Check(!opened.ok(), "an edited blob or a wrong address never opens");
  }
  return 0;
}
