#include "core/crypto.h"

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "core/json.h"
#include "core/testing/temp_dir.h"
#include "gtest/gtest.h"

namespace cairn {
namespace {

using ::cairn::testing::TempDir;

std::string Pattern(size_t n) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>(i * 131 + 7);
  return s;
}

std::string ReadFile(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void WriteFile(const std::filesystem::path& p, std::string_view data, mode_t mode) {
  std::ofstream(p, std::ios::binary).write(data.data(), data.size());
  ASSERT_EQ(::chmod(p.c_str(), mode), 0);
}

TEST(Sha256Test, KnownVectors) {
  EXPECT_EQ(Sha256("").ToHex(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(Sha256("abc").ToHex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(RandomBytesTest, SizeAndVariety) {
  EXPECT_EQ(RandomBytes(0).size(), 0u);
  std::string a = RandomBytes(32), b = RandomBytes(32);
  EXPECT_EQ(a.size(), 32u);
  EXPECT_NE(a, b);
}

TEST(DataKeyTest, FromBytesChecksSize) {
  EXPECT_EQ(DataKey::FromBytes("short").status().code(), absl::StatusCode::kInvalidArgument);
  DataKey k = DataKey::Generate();
  EXPECT_EQ(k.bytes().size(), DataKey::kSize);
  auto copy = DataKey::FromBytes(k.bytes());
  ASSERT_TRUE(copy.ok());
  EXPECT_EQ(copy->Address("x"), k.Address("x"));
}

TEST(DataKeyTest, AddressDependsOnlyOnMacHalf) {
  // The first 32 key bytes are the AES key, the last 32 the MAC key.
  std::string bytes = RandomBytes(DataKey::kSize);
  auto k1 = DataKey::FromBytes(bytes);
  ASSERT_TRUE(k1.ok());
  std::string other_aes = bytes;
  other_aes[0] ^= 1;  // AES half differs, MAC half equal
  auto k2 = DataKey::FromBytes(other_aes);
  std::string other_mac = bytes;
  other_mac[40] ^= 1;  // MAC half differs
  auto k3 = DataKey::FromBytes(other_mac);
  ASSERT_TRUE(k2.ok() && k3.ok());
  EXPECT_EQ(k1->Address("hello"), k1->Address("hello"));
  EXPECT_NE(k1->Address("hello"), k1->Address("hellp"));
  EXPECT_EQ(k1->Address("hello"), k2->Address("hello"));
  EXPECT_NE(k1->Address("hello"), k3->Address("hello"));
  EXPECT_FALSE(k1->Address("").IsZero());
}

TEST(DataKeyTest, AddressMatchesRfc4231) {
  // RFC 4231 test case 6 uses a 131-byte key; case 2 ("Jefe") a 4-byte key.
  // HMAC pads short keys with zeros, so "Jefe" + 28 zero bytes is the same
  // key: put it in the MAC half.
  std::string bytes(DataKey::kSize, '\0');
  bytes.replace(32, 4, "Jefe");
  auto k = DataKey::FromBytes(bytes);
  ASSERT_TRUE(k.ok());
  EXPECT_EQ(k->Address("what do ya want for nothing?").ToHex(),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

TEST(DataKeyTest, SealOpenRoundTrip) {
  DataKey k = DataKey::Generate();
  for (size_t n : {size_t{0}, size_t{1}, size_t{15}, size_t{16}, size_t{4097},
                   size_t{4} << 20}) {
    std::string plain = Pattern(n);
    Digest addr = k.Address(plain);
    std::string sealed = k.Seal(addr, plain);
    EXPECT_EQ(sealed.size(), SealedSize(n));
    if (n > 64) {
      EXPECT_EQ(sealed.find(plain.substr(0, 64)), std::string::npos);
    }
    auto opened = k.Open(addr, sealed);
    ASSERT_TRUE(opened.ok()) << n << ": " << opened.status();
    EXPECT_EQ(*opened, plain);
  }
}

TEST(DataKeyTest, SaltsDiffer) {
  DataKey k = DataKey::Generate();
  Digest addr = k.Address("same");
  std::string a = k.Seal(addr, "same"), b = k.Seal(addr, "same");
  EXPECT_NE(a, b);
  EXPECT_NE(a.substr(16, 16), b.substr(16, 16));
  std::string c = k.SealSingle(addr, "same"), d = k.SealSingle(addr, "same");
  EXPECT_NE(c.substr(0, 12), d.substr(0, 12));
}

TEST(DataKeyTest, SingleFormOfOlderReleasesStillOpens) {
  DataKey k = DataKey::Generate();
  for (size_t n : {size_t{0}, size_t{5}, size_t{200} << 10, size_t{4} << 20}) {
    std::string plain = Pattern(n);
    Digest addr = k.Address(plain);
    std::string sealed = k.SealSingle(addr, plain);
    ASSERT_EQ(sealed.size(), n + kSealOverhead);
    auto layout = SealedLayout::Parse(sealed, sealed.size());
    ASSERT_TRUE(layout.ok());
    EXPECT_FALSE(layout->blocked());
    auto opened = k.Open(addr, sealed);
    ASSERT_TRUE(opened.ok()) << opened.status();
    EXPECT_EQ(*opened, plain);
    EXPECT_EQ(k.OpenBlocks(addr, *layout, 0, sealed).status().code(),
              absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(k.Open(k.Address("other"), sealed).status().code(), absl::StatusCode::kDataLoss);
  }
}

TEST(DataKeyTest, BlockedLayout) {
  DataKey k = DataKey::Generate();
  struct Case {
    uint64_t size, blocks, last;
  };
  for (Case c : {Case{0, 1, 0}, Case{1, 1, 1}, Case{kSealBlockSize, 1, kSealBlockSize},
                 Case{kSealBlockSize + 1, 2, 1},
                 Case{uint64_t{4} << 20, (uint64_t{4} << 20) / kSealBlockSize, kSealBlockSize}}) {
    std::string plain = Pattern(c.size);
    std::string sealed = k.Seal(k.Address(plain), plain);
    auto layout = SealedLayout::Parse(sealed, sealed.size());
    ASSERT_TRUE(layout.ok());
    ASSERT_TRUE(layout->blocked()) << c.size;
    EXPECT_EQ(layout->plaintext_size(), c.size);
    EXPECT_EQ(layout->block_size(), kSealBlockSize);
    EXPECT_EQ(layout->block_count(), c.blocks);
    EXPECT_EQ(layout->PlainBlockSize(c.blocks - 1), c.last);
    EXPECT_EQ(layout->SealedOffset(0), kSealHeaderSize);
    EXPECT_EQ(layout->SealedOffset(c.blocks), sealed.size());
    // The header alone (a range read's first request) gives the same layout.
    auto from_head = SealedLayout::Parse(sealed.substr(0, kSealHeaderSize), sealed.size());
    ASSERT_TRUE(from_head.ok());
    EXPECT_EQ(from_head->header(), layout->header());
    // The same header with any other total size is not a blocked object.
    for (uint64_t other : {sealed.size() - 1, sealed.size() + 1}) {
      auto wrong = SealedLayout::Parse(sealed, other);
      ASSERT_TRUE(wrong.ok());
      EXPECT_FALSE(wrong->blocked()) << c.size << " as " << other;
    }
  }
  EXPECT_EQ(SealedLayout::Parse("", 3).status().code(), absl::StatusCode::kInvalidArgument);
}

// Objects of writers that used other block sizes (the first blocked
// writers used 64 KiB) open whole and by range, and SealedSize matches them.
TEST(DataKeyTest, OtherBlockSizesOpenWholeAndByRange) {
  DataKey k = DataKey::Generate();
  for (uint32_t shift : {kSealMinBlockShift, uint32_t{16}, uint32_t{20}}) {
    const uint64_t block = uint64_t{1} << shift;
    std::string plain = Pattern(3 * block + 777);
    Digest addr = k.Address(plain);
    std::string sealed = k.Seal(addr, plain, shift);
    EXPECT_EQ(sealed.size(), SealedSize(plain.size(), shift));
    auto whole = k.Open(addr, sealed);
    ASSERT_TRUE(whole.ok()) << shift << ": " << whole.status();
    EXPECT_EQ(*whole, plain);
    auto layout = SealedLayout::Parse(sealed.substr(0, kSealHeaderSize), sealed.size());
    ASSERT_TRUE(layout.ok());
    ASSERT_TRUE(layout->blocked());
    EXPECT_EQ(layout->block_size(), block);
    EXPECT_EQ(layout->block_count(), 4u);
    auto [first, last] = layout->BlocksFor(block + 5, 10);
    ASSERT_EQ(first, 1u);
    ASSERT_EQ(last, 2u);
    auto run = k.OpenBlocks(addr, *layout, first,
                            std::string_view(sealed).substr(layout->SealedOffset(first),
                                                            layout->SealedOffset(last) -
                                                                layout->SealedOffset(first)));
    ASSERT_TRUE(run.ok()) << run.status();
    EXPECT_EQ(*run, plain.substr(block, block));
  }
  // The upload cap (core/files.h) is a chunk sealed in the smallest blocks:
  // no accepted block size makes a bigger object.
  for (uint32_t shift = kSealMinBlockShift; shift <= kSealMaxBlockShift; ++shift) {
    EXPECT_LE(SealedSize(uint64_t{4} << 20, shift),
              SealedSize(uint64_t{4} << 20, kSealMinBlockShift));
  }
}

TEST(DataKeyTest, BlocksForCoversTheRange) {
  DataKey k = DataKey::Generate();
  std::string plain = Pattern(3 * kSealBlockSize + 100);
  std::string sealed = k.Seal(k.Address(plain), plain);
  auto layout = SealedLayout::Parse(sealed, sealed.size());
  ASSERT_TRUE(layout.ok());
  using P = std::pair<uint64_t, uint64_t>;
  EXPECT_EQ(layout->BlocksFor(0, 1), P(0, 1));
  EXPECT_EQ(layout->BlocksFor(kSealBlockSize - 1, 2), P(0, 2));
  EXPECT_EQ(layout->BlocksFor(kSealBlockSize, kSealBlockSize), P(1, 2));
  EXPECT_EQ(layout->BlocksFor(3 * kSealBlockSize + 50, 1 << 20), P(3, 4));
  EXPECT_EQ(layout->BlocksFor(0, ~uint64_t{0}), P(0, 4));
  EXPECT_EQ(layout->BlocksFor(plain.size(), 10).first, layout->BlocksFor(plain.size(), 10).second);
  EXPECT_EQ(layout->BlocksFor(5, 0).first, layout->BlocksFor(5, 0).second);
}

TEST(DataKeyTest, OpenBlocksOpensAnyRunOfBlocks) {
  DataKey k = DataKey::Generate();
  std::string plain = Pattern(5 * kSealBlockSize + 12345);
  Digest addr = k.Address(plain);
  std::string sealed = k.Seal(addr, plain);
  auto layout = SealedLayout::Parse(sealed, sealed.size());
  ASSERT_TRUE(layout.ok());
  const uint64_t n = layout->block_count();
  for (uint64_t first = 0; first < n; ++first) {
    for (uint64_t last = first + 1; last <= n; ++last) {
      std::string_view run = std::string_view(sealed).substr(
          layout->SealedOffset(first), layout->SealedOffset(last) - layout->SealedOffset(first));
      auto opened = k.OpenBlocks(addr, *layout, first, run);
      ASSERT_TRUE(opened.ok()) << first << ".." << last << ": " << opened.status();
      EXPECT_EQ(*opened, plain.substr(first * kSealBlockSize,
                                      std::min<uint64_t>(plain.size(), last * kSealBlockSize) -
                                          first * kSealBlockSize));
    }
  }
}

TEST(DataKeyTest, BlocksCannotBeMovedTruncatedOrForged) {
  DataKey k = DataKey::Generate();
  // Two blocks of different content and a short third.
  std::string plain = Pattern(2 * kSealBlockSize + 10);
  plain[kSealBlockSize] ^= 1;
  Digest addr = k.Address(plain);
  std::string sealed = k.Seal(addr, plain);
  auto layout = SealedLayout::Parse(sealed, sealed.size());
  ASSERT_TRUE(layout.ok() && layout->blocked());
  const uint64_t b = kSealBlockSize + kSealTagSize;
  auto loss = [&](const std::string& bad, uint64_t first, std::string_view run) {
    EXPECT_EQ(k.Open(addr, bad).status().code(), absl::StatusCode::kDataLoss);
    auto l = SealedLayout::Parse(bad, bad.size());
    ASSERT_TRUE(l.ok());
    if (l->blocked()) {
      EXPECT_EQ(k.OpenBlocks(addr, *l, first, run).status().code(), absl::StatusCode::kDataLoss);
    }
  };
  {  // blocks 0 and 1 swapped
    std::string bad = sealed;
    std::string b0 = sealed.substr(kSealHeaderSize, b), b1 = sealed.substr(kSealHeaderSize + b, b);
    bad.replace(kSealHeaderSize, b, b1);
    bad.replace(kSealHeaderSize + b, b, b0);
    loss(bad, 0, std::string_view(bad).substr(kSealHeaderSize, b));
    // Block 1's bytes presented as block 0.
    EXPECT_EQ(k.OpenBlocks(addr, *layout, 0, b1).status().code(), absl::StatusCode::kDataLoss);
  }
  {  // the last block dropped and the header's size shortened to match
    std::string shorter = plain.substr(0, 2 * kSealBlockSize);
    std::string bad = sealed.substr(0, kSealHeaderSize + 2 * b);
    uint64_t size = shorter.size();
    for (int i = 0; i < 8; ++i) bad[8 + i] = static_cast<char>(size >> (8 * i));
    loss(bad, 1, std::string_view(bad).substr(kSealHeaderSize + b, b));
  }
  {  // the header of another sealing of the same plaintext (another salt)
    std::string other = k.Seal(addr, plain);
    std::string bad = sealed;
    bad.replace(0, kSealHeaderSize, other.substr(0, kSealHeaderSize));
    loss(bad, 2, std::string_view(bad).substr(kSealHeaderSize + 2 * b));
  }
  {  // a block of another object with the same layout
    std::string plain2 = Pattern(plain.size());
    Digest addr2 = k.Address(plain2);
    std::string sealed2 = k.Seal(addr2, plain2);
    EXPECT_EQ(k.OpenBlocks(addr, *layout, 0, std::string_view(sealed2).substr(kSealHeaderSize, b))
                  .status()
                  .code(),
              absl::StatusCode::kDataLoss);
  }
  // Runs that end inside a block, or run past the last one.
  std::string_view all = std::string_view(sealed).substr(kSealHeaderSize);
  EXPECT_EQ(k.OpenBlocks(addr, *layout, 0, all.substr(0, b + 1)).status().code(),
            absl::StatusCode::kDataLoss);
  EXPECT_EQ(k.OpenBlocks(addr, *layout, 2, all.substr(2 * b, 10)).status().code(),
            absl::StatusCode::kDataLoss);
  EXPECT_EQ(k.OpenBlocks(addr, *layout, 2, std::string(all.substr(2 * b)) + "x").status().code(),
            absl::StatusCode::kDataLoss);
  EXPECT_EQ(k.OpenBlocks(addr, *layout, 0, "").status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(k.OpenBlocks(addr, *layout, 3, all).status().code(),
            absl::StatusCode::kInvalidArgument);
  // Any flipped byte: the header and a sample across the blocks.
  for (size_t i = 0; i < sealed.size(); i += (i < 64 ? 1 : 4099)) {
    std::string bad = sealed;
    bad[i] ^= 0x20;
    EXPECT_EQ(k.Open(addr, bad).status().code(), absl::StatusCode::kDataLoss) << i;
  }
}

TEST(DataKeyTest, EveryFlippedByteIsDataLoss) {
  DataKey k = DataKey::Generate();
  std::string plain = Pattern(100);
  Digest addr = k.Address(plain);
  std::string sealed = k.Seal(addr, plain);
  for (size_t i = 0; i < sealed.size(); ++i) {
    std::string bad = sealed;
    bad[i] ^= 0x01;
    auto r = k.Open(addr, bad);
    ASSERT_FALSE(r.ok()) << "flip at " << i;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kDataLoss) << i;
  }
  // Truncated or extended ciphertext also fails.
  EXPECT_EQ(k.Open(addr, sealed.substr(0, sealed.size() - 1)).status().code(),
            absl::StatusCode::kDataLoss);
  EXPECT_EQ(k.Open(addr, sealed + "x").status().code(), absl::StatusCode::kDataLoss);
}

TEST(DataKeyTest, WrongAddressIsDataLoss) {
  DataKey k = DataKey::Generate();
  std::string sealed = k.Seal(k.Address("a"), "a");
  auto r = k.Open(k.Address("b"), sealed);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDataLoss) << r.status();
}

TEST(DataKeyTest, WrongKeyIsDataLoss) {
  DataKey k1 = DataKey::Generate(), k2 = DataKey::Generate();
  Digest addr = k1.Address("secret");
  auto r = k2.Open(addr, k1.Seal(addr, "secret"));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDataLoss);
}

TEST(DataKeyTest, ShortInputIsInvalidArgument) {
  DataKey k = DataKey::Generate();
  EXPECT_EQ(k.Open(Digest(), "").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(k.Open(Digest(), std::string(kSealOverhead - 1, 'x')).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(k.Open(Digest(), std::string(kSealOverhead, 'x')).status().code(),
            absl::StatusCode::kDataLoss);
}

TEST(DataKeyTest, ConcurrentUse) {
  DataKey k = DataKey::Generate();
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 200; ++i) {
        std::string plain = Pattern(1000 + t * 10 + i);
        Digest addr = k.Address(plain);
        auto r = k.Open(addr, k.Seal(addr, plain));
        if (!r.ok() || *r != plain) ++failures;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
}

// The vectors the Python client's sealing must reproduce byte for byte
// (core/testdata/sealing_vectors.json, docs/decisions.md D33): written by
// python/tests/make_sealing_vectors.py, opened here by the C++ core.
TEST(SealingVectorsTest, PythonSealedObjectsOpenAndAddressesAgree) {
  const char* src = std::getenv("CAIRN_SOURCE_DIR");
  ASSERT_NE(src, nullptr) << "CAIRN_SOURCE_DIR is set by ctest";
  std::string text = ReadFile(std::filesystem::path(src) / "core/testdata/sealing_vectors.json");
  ASSERT_FALSE(text.empty());
  auto doc = ParseJson(text);
  ASSERT_TRUE(doc.ok()) << doc.status();
  auto key = DataKey::FromBytes(absl::HexStringToBytes(doc->at("data_key").get<std::string>()));
  ASSERT_TRUE(key.ok()) << key.status();
  const auto& vectors = doc->at("vectors");
  ASSERT_GE(vectors.size(), 4u);
  for (const auto& v : vectors) {
    const size_t size = v.at("size").get<size_t>();
    SCOPED_TRACE(absl::StrCat("size ", size, " form ", v.at("form").get<std::string>()));
    const std::string plain = Pattern(size);
    auto address = Digest::FromHex(v.at("address").get<std::string>());
    ASSERT_TRUE(address.ok()) << address.status();
    EXPECT_EQ(key->Address(plain), *address);
    const std::string sealed = absl::HexStringToBytes(v.at("sealed").get<std::string>());
    auto layout = SealedLayout::Parse(sealed, sealed.size());
    ASSERT_TRUE(layout.ok()) << layout.status();
    EXPECT_EQ(layout->blocked(), v.at("form").get<std::string>() == "blocked");
    if (layout->blocked()) {
      EXPECT_EQ(sealed.size(), SealedSize(size));
    }
    auto opened = key->Open(*address, sealed);
    ASSERT_TRUE(opened.ok()) << opened.status();
    EXPECT_EQ(*opened, plain);
  }
}

TEST(MasterKeyTest, WrapUnwrapBoundToVolume) {
  auto m = MasterKey::FromBytes(RandomBytes(MasterKey::kSize));
  ASSERT_TRUE(m.ok());
  DataKey k = DataKey::Generate();
  std::string wrapped = m->Wrap("vo-one", k);
  EXPECT_EQ(wrapped.size(), DataKey::kSize + kSealOverhead);
  EXPECT_EQ(wrapped.find(std::string(k.bytes())), std::string::npos);
  auto back = m->Unwrap("vo-one", wrapped);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->bytes(), k.bytes());

  auto moved = m->Unwrap("vo-two", wrapped);
  EXPECT_EQ(moved.status().code(), absl::StatusCode::kDataLoss);

  auto other = MasterKey::FromBytes(RandomBytes(MasterKey::kSize));
  ASSERT_TRUE(other.ok());
  EXPECT_EQ(other->Unwrap("vo-one", wrapped).status().code(), absl::StatusCode::kDataLoss);

  std::string bad = wrapped;
  bad[20] ^= 4;
  EXPECT_EQ(m->Unwrap("vo-one", bad).status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(m->Unwrap("vo-one", "").status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(m->Unwrap("vo-one", wrapped.substr(1)).status().code(), absl::StatusCode::kDataLoss);
}

TEST(MasterKeyTest, FromBytesChecksSize) {
  EXPECT_EQ(MasterKey::FromBytes("x").status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(MasterKeyTest, CreateThenLoad) {
  TempDir dir;
  auto path = dir.path() / "master.key";
  auto created = MasterKey::LoadOrCreate(path);
  ASSERT_TRUE(created.ok()) << created.status();
  struct stat st;
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  EXPECT_EQ(st.st_size, static_cast<off_t>(MasterKey::kSize));
  // No temporaries left behind.
  int entries = 0;
  for (auto& e : std::filesystem::directory_iterator(dir.path())) {
    (void)e;
    ++entries;
  }
  EXPECT_EQ(entries, 1);

  auto loaded = MasterKey::LoadOrCreate(path);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  DataKey k = DataKey::Generate();
  auto unwrapped = loaded->Unwrap("vo-x", created->Wrap("vo-x", k));
  ASSERT_TRUE(unwrapped.ok());
  EXPECT_EQ(unwrapped->bytes(), k.bytes());
  auto from_bytes = MasterKey::FromBytes(ReadFile(path));
  ASSERT_TRUE(from_bytes.ok());
  EXPECT_TRUE(from_bytes->Unwrap("vo-x", created->Wrap("vo-x", k)).ok());
}

TEST(MasterKeyTest, RefusesGroupOrOtherAccess) {
  TempDir dir;
  auto path = dir.path() / "master.key";
  for (mode_t mode : {0640, 0604, 0660, 0644, 0610}) {
    WriteFile(path, RandomBytes(MasterKey::kSize), mode);
    auto r = MasterKey::LoadOrCreate(path);
    ASSERT_FALSE(r.ok()) << std::oct << mode;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_NE(r.status().message().find("group or others"), std::string::npos) << r.status();
  }
  ASSERT_EQ(::chmod(path.c_str(), 0400), 0);
  EXPECT_TRUE(MasterKey::LoadOrCreate(path).ok());
}

TEST(MasterKeyTest, RefusesWrongSize) {
  TempDir dir;
  auto path = dir.path() / "master.key";
  for (size_t n : {size_t{0}, size_t{31}, size_t{33}, size_t{64}}) {
    WriteFile(path, RandomBytes(n), 0600);
    auto r = MasterKey::LoadOrCreate(path);
    ASSERT_FALSE(r.ok()) << n;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition) << r.status();
    EXPECT_NE(r.status().message().find("expected 32"), std::string::npos) << r.status();
    // And the bad file is left alone, not replaced.
    EXPECT_EQ(ReadFile(path).size(), n);
  }
}

TEST(MasterKeyTest, FollowsSymlinkButChecksTarget) {
  // Kubernetes Secret volumes present files as symlinks.
  TempDir dir;
  auto target = dir.path() / "real.key";
  WriteFile(target, RandomBytes(MasterKey::kSize), 0600);
  auto link = dir.path() / "link.key";
  std::filesystem::create_symlink(target, link);
  EXPECT_TRUE(MasterKey::LoadOrCreate(link).ok());
  ASSERT_EQ(::chmod(target.c_str(), 0644), 0);
  EXPECT_EQ(MasterKey::LoadOrCreate(link).status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST(MasterKeyTest, RefusesDirectory) {
  TempDir dir;
  std::filesystem::create_directory(dir.path() / "d.key");
  auto r = MasterKey::LoadOrCreate(dir.path() / "d.key");
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition) << r.status();
}

TEST(MasterKeyTest, MissingParentDirectoryFails) {
  TempDir dir;
  EXPECT_FALSE(MasterKey::LoadOrCreate(dir.path() / "no" / "master.key").ok());
}

TEST(MasterKeyTest, RacingProcessesAgreeOnOneKey) {
  for (int round = 0; round < 5; ++round) {
    TempDir dir;
    auto path = dir.path() / "master.key";
    constexpr int kProcs = 6;
    std::vector<std::filesystem::path> outs;
    std::vector<pid_t> pids;
    for (int i = 0; i < kProcs; ++i) {
      outs.push_back(dir.path() / ("out" + std::to_string(i)));
      pid_t pid = ::fork();
      ASSERT_GE(pid, 0);
      if (pid == 0) {
        auto k = MasterKey::LoadOrCreate(path);
        if (!k.ok()) ::_exit(2);
        // Record what this process got: a wrap only its key can open.
        std::string w = k->Wrap("vo-probe", DataKey::FromBytes(std::string(64, 'k')).value());
        std::ofstream(outs.back(), std::ios::binary).write(w.data(), w.size());
        ::_exit(0);
      }
      pids.push_back(pid);
    }
    for (pid_t pid : pids) {
      int status = 0;
      ASSERT_EQ(::waitpid(pid, &status, 0), pid);
      ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
    }
    auto final_key = MasterKey::LoadOrCreate(path);
    ASSERT_TRUE(final_key.ok());
    for (const auto& out : outs) {
      auto k = final_key->Unwrap("vo-probe", ReadFile(out));
      EXPECT_TRUE(k.ok()) << "a process ended up with a different key: " << k.status();
    }
    int entries = 0;
    for (auto& e : std::filesystem::directory_iterator(dir.path())) {
      (void)e;
      ++entries;
    }
    EXPECT_EQ(entries, kProcs + 1) << "temporary files left behind";
  }
}

}  // namespace
}  // namespace cairn
