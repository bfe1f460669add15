// Single-thread throughput of the chunk crypto on 4 MiB chunks (DESIGN.md
// §2): DataKey::Seal (AES-256-GCM, blocked form), Open (decrypt + tag
// checks) and Address (HMAC-SHA-256), the single-block form of older
// releases beside them, one block of a chunk (a random read's cost), plus
// plain SHA-256 for reference. Compare against
// `openssl speed -evp aes-256-gcm` and `openssl speed -evp sha256` on the
// same machine: our numbers should be close to those at 16 KiB blocks, the
// remainder being one allocation and copy per call.
#include <string>

#include "benchmark/benchmark.h"
#include "core/crypto.h"

namespace cairn {
namespace {

constexpr size_t kChunk = size_t{4} << 20;

std::string Plaintext() {
  std::string s = RandomBytes(kChunk);
  return s;
}

void BM_Seal(benchmark::State& state) {
  DataKey key = DataKey::Generate();
  std::string plain = Plaintext();
  Digest addr = key.Address(plain);
  for (auto _ : state) {
    std::string sealed = key.Seal(addr, plain);
    benchmark::DoNotOptimize(sealed.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * kChunk));
}
BENCHMARK(BM_Seal)->Unit(benchmark::kMillisecond);

void BM_Open(benchmark::State& state) {
  DataKey key = DataKey::Generate();
  std::string plain = Plaintext();
  Digest addr = key.Address(plain);
  std::string sealed = key.Seal(addr, plain);
  for (auto _ : state) {
    auto opened = key.Open(addr, sealed);
    if (!opened.ok()) {
      state.SkipWithError("open failed");
      break;
    }
    benchmark::DoNotOptimize(opened->data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * kChunk));
}
BENCHMARK(BM_Open)->Unit(benchmark::kMillisecond);

// The single-block form older releases wrote (the baseline of the blocked
// form above, in the same run).
void BM_SealSingle(benchmark::State& state) {
  DataKey key = DataKey::Generate();
  std::string plain = Plaintext();
  Digest addr = key.Address(plain);
  for (auto _ : state) {
    std::string sealed = key.SealSingle(addr, plain);
    benchmark::DoNotOptimize(sealed.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * kChunk));
}
BENCHMARK(BM_SealSingle)->Unit(benchmark::kMillisecond);

void BM_OpenSingle(benchmark::State& state) {
  DataKey key = DataKey::Generate();
  std::string plain = Plaintext();
  Digest addr = key.Address(plain);
  std::string sealed = key.SealSingle(addr, plain);
  for (auto _ : state) {
    auto opened = key.Open(addr, sealed);
    if (!opened.ok()) {
      state.SkipWithError("open failed");
      break;
    }
    benchmark::DoNotOptimize(opened->data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * kChunk));
}
BENCHMARK(BM_OpenSingle)->Unit(benchmark::kMillisecond);

// What a random 4 KiB read costs in crypto: one 64 KiB block of a blocked
// chunk (against BM_OpenSingle, the whole chunk the old form needed).
void BM_OpenOneBlock(benchmark::State& state) {
  DataKey key = DataKey::Generate();
  std::string plain = Plaintext();
  Digest addr = key.Address(plain);
  std::string sealed = key.Seal(addr, plain);
  auto layout = SealedLayout::Parse(sealed, sealed.size());
  uint64_t block = 0;
  for (auto _ : state) {
    block = (block + 17) % layout->block_count();
    std::string_view run = std::string_view(sealed).substr(
        layout->SealedOffset(block), layout->SealedOffset(block + 1) - layout->SealedOffset(block));
    auto opened = key.OpenBlocks(addr, *layout, block, run);
    if (!opened.ok()) {
      state.SkipWithError("open failed");
      break;
    }
    benchmark::DoNotOptimize(opened->data());
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}
BENCHMARK(BM_OpenOneBlock);

void BM_Address(benchmark::State& state) {
  DataKey key = DataKey::Generate();
  std::string plain = Plaintext();
  for (auto _ : state) {
    Digest d = key.Address(plain);
    benchmark::DoNotOptimize(d);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * kChunk));
}
BENCHMARK(BM_Address)->Unit(benchmark::kMillisecond);

void BM_Sha256(benchmark::State& state) {
  std::string plain = Plaintext();
  for (auto _ : state) {
    Digest d = Sha256(plain);
    benchmark::DoNotOptimize(d);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * kChunk));
}
BENCHMARK(BM_Sha256)->Unit(benchmark::kMillisecond);

// Small objects (directory entries, inline files): per-call overhead.
void BM_SealOpenSmall(benchmark::State& state) {
  DataKey key = DataKey::Generate();
  std::string plain(static_cast<size_t>(state.range(0)), 'x');
  for (auto _ : state) {
    Digest addr = key.Address(plain);
    auto opened = key.Open(addr, key.Seal(addr, plain));
    benchmark::DoNotOptimize(opened);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * plain.size()));
}
BENCHMARK(BM_SealOpenSmall)->Arg(256)->Arg(4096);

}  // namespace
}  // namespace cairn

BENCHMARK_MAIN();
