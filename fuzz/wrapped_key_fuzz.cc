// Wrapped data keys as read from the metadata store (MasterKey::Unwrap,
// core/crypto.h). The first byte picks the mode:
// - the rest is a volume ID and a wrapped key as stored: Unwrap fails with
//   DataLoss (it cannot forge the tag) and never yields a key;
// - the rest is a key, volume ID and an edit: wrap, edit (bit flip,
//   truncate, extend, other volume), unwrap: only the untouched wrapping
//   under its own volume gives the key back.
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

const cairn::MasterKey& Master() {
  static const cairn::MasterKey key = *cairn::MasterKey::FromBytes(std::string(32, '\x3c'));
  return key;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider in(data, size);
  const cairn::MasterKey& master = Master();
  if (in.ConsumeBool()) {
    std::string volume_id = in.ConsumeRandomLengthString(80);
    std::string wrapped = in.ConsumeRemainingBytesAsString();
    auto key = master.Unwrap(volume_id, wrapped);
    Check(!key.ok() && absl::IsDataLoss(key.status()), "forged wrappings are DataLoss");
    (void)cairn::DataKey::FromBytes(wrapped);
    (void)cairn::MasterKey::FromBytes(wrapped);
    return 0;
  }
  const uint8_t edit = in.ConsumeIntegralInRange<uint8_t>(0, 4);
  const size_t at = in.ConsumeIntegral<uint16_t>();
  const uint8_t mask = in.ConsumeIntegralInRange<uint8_t>(1, 255);
  std::string raw_key = in.ConsumeBytesAsString(cairn::DataKey::kSize);
  raw_key.resize(cairn::DataKey::kSize);
  const cairn::DataKey key = *cairn::DataKey::FromBytes(raw_key);
  const std::string volume_id = in.ConsumeRemainingBytesAsString();
  std::string wrapped = master.Wrap(volume_id, key);
  std::string unwrap_as = volume_id;
  switch (edit) {
    case 0:
      break;
    case 1:
      wrapped[at % wrapped.size()] ^= static_cast<char>(mask);
      break;
    case 2:
      wrapped.resize(at % wrapped.size());
      break;
    case 3:
      wrapped.push_back(static_cast<char>(mask));
      break;
    case 4:
      unwrap_as.push_back(static_cast<char>(mask));
      break;
  }
  auto unwrapped = master.Unwrap(unwrap_as, wrapped);
  if (edit == 0) {
    Check(unwrapped.ok() && unwrapped->bytes() == key.bytes(), "a wrapping unwraps to its key");
  } else {
    Check(!unwrapped.ok() && absl::IsDataLoss(unwrapped.status()),
          "an edited wrapping or another volume's ID never unwraps");
  }
  return 0;
}
