// Single-thread throughput of the chunk crypto on 4 MiB chunks (DESIGN.md
// §2): DataKey::Seal (AES-256-GCM), Open (decrypt + tag check) and Address
// (HMAC-SHA-256), plus plain SHA-256 for reference. Compare against
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
