// Standalone C++ test of every kernel table compiled in, against a plain reference, with exactly-sized
// heap buffers so AddressSanitizer (or a crash) catches any out-of-bounds access. Run by
// native/tests/run_native_tests.sh: natively, with AVX-512 emulated through SIMDe, and for aarch64 (NEON)
// under qemu.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "../codec.h"
#include "../kernels.h"

using namespace memsim;

namespace {

int failures = 0;
#define CHECK(cond, ...)                      \
  do {                                        \
    if (!(cond)) {                            \
      ++failures;                             \
      std::printf("FAIL %s:%d: ", __FILE__, __LINE__); \
      std::printf(__VA_ARGS__);               \
      std::printf("\n");                      \
      if (failures > 20) std::exit(1);        \
    }                                         \
  } while (0)

// Heap copy of exactly `bytes` bytes (nothing readable past the end under ASan).
struct Exact {
  explicit Exact(size_t bytes) : p(static_cast<uint8_t*>(std::malloc(bytes ? bytes : 1))), n(bytes) {}
  ~Exact() { std::free(p); }
  uint8_t* p;
  size_t n;
};

void reference_encode(const uint8_t* src, uint64_t n, int E, std::vector<uint8_t>& bitmap, std::vector<uint8_t>& vals) {
  bitmap.assign(bitmap_bytes(n), 0);
  vals.clear();
  for (uint64_t i = 0; i < n; ++i) {
    bool nz = false;
    for (int b = 0; b < E; ++b) nz |= src[i * E + b] != 0;
    if (nz) {
      bitmap[i / 8] |= static_cast<uint8_t>(1u << (i % 8));
      vals.insert(vals.end(), src + i * E, src + (i + 1) * E);
    }
  }
}

void test_table(const KernelTable& t, std::mt19937_64& rng) {
  const uint64_t sizes[] = {0, 1, 7, 8, 9, 63, 64, 65, 127, 128, 129, 511, 512, 513, 1000, 4097, 9000};
  const double densities[] = {0.0, 0.01, 0.3, 0.5, 0.9, 0.99, 1.0};
  int cases = 0;
  for (int li = 0; li < 4; ++li) {
    const int E = 1 << li;
    for (uint64_t n : sizes) {
      for (double dens : densities) {
        std::bernoulli_distribution nz(dens);
        Exact src(n * E);
        for (uint64_t i = 0; i < n; ++i) {
          bool keep = nz(rng);
          for (int b = 0; b < E; ++b) src.p[i * E + b] = 0;
          // Non-zero values with a single set byte anywhere (tests "any bit set", e.g. -0.0 = 0x80000000).
          if (keep) src.p[i * E + (rng() % E)] = static_cast<uint8_t>(1 + rng() % 255);
        }
        std::vector<uint8_t> ref_bm, ref_vals;
        reference_encode(src.p, n, E, ref_bm, ref_vals);
        const uint64_t nnz = ref_vals.size() / E;

        CHECK(t.count_nonzero[li](src.p, n) == nnz, "%s count E=%d n=%llu", t.name, E, (unsigned long long)n);

        // Encode with exactly nnz slots of capacity: must fit and match the reference byte for byte.
        Exact bm(bitmap_bytes(n)), vals(nnz * E);
        int64_t got = t.encode[li](src.p, n, bm.p, vals.p, nnz);
        CHECK(got == static_cast<int64_t>(nnz), "%s encode E=%d n=%llu dens=%.2f got %lld want %llu", t.name, E,
              (unsigned long long)n, dens, (long long)got, (unsigned long long)nnz);
        CHECK(n == 0 || std::memcmp(bm.p, ref_bm.data(), bm.n) == 0, "%s bitmap E=%d n=%llu", t.name, E, (unsigned long long)n);
        CHECK(nnz == 0 || std::memcmp(vals.p, ref_vals.data(), vals.n) == 0, "%s values E=%d n=%llu", t.name, E,
              (unsigned long long)n);
        CHECK(t.bitmap_popcount(bm.p, bm.n) == nnz, "%s popcount", t.name);

        // One slot too few: must report -1 without writing past the buffer.
        if (nnz > 0) {
          Exact small(( nnz - 1) * E);
          CHECK(t.encode[li](src.p, n, bm.p, small.p, nnz - 1) == -1, "%s capacity E=%d n=%llu", t.name, E,
                (unsigned long long)n);
        }

        // Decode into an exactly-sized output.
        Exact out(n * E);
        CHECK(t.decode[li](bm.p, vals.p, nnz, n, out.p), "%s decode failed E=%d n=%llu", t.name, E, (unsigned long long)n);
        CHECK(n == 0 || std::memcmp(out.p, src.p, n * E) == 0, "%s decode mismatch E=%d n=%llu dens=%.2f", t.name, E,
              (unsigned long long)n, dens);

        // Hostile: fewer stored values than the bitmap asks for must fail, reading only what exists.
        if (nnz > 0) {
          Exact fewer((nnz - 1) * E);
          std::memcpy(fewer.p, vals.p, fewer.n);
          CHECK(!t.decode[li](bm.p, fewer.p, nnz - 1, n, out.p), "%s short values accepted E=%d", t.name, E);
        }
        ++cases;
      }
    }
  }
  // Outputs of 16 MiB and more take the streaming-store path on x86 (64-byte aligned destination).
  for (int li = 1; li < 4; ++li) {
    const int E = 1 << li;
    const uint64_t n = (uint64_t{17} << 20) / E + 3;
    std::vector<uint8_t> src(n * E, 0);
    for (uint64_t i = 0; i < n; ++i)
      if (rng() % 2) src[i * E + rng() % E] = static_cast<uint8_t>(1 + rng() % 255);
    std::vector<uint8_t> bm(bitmap_bytes(n)), vals(n * E);
    const int64_t nnz = t.encode[li](src.data(), n, bm.data(), vals.data(), n);
    uint8_t* out = static_cast<uint8_t*>(std::aligned_alloc(64, (n * E + 63) / 64 * 64));
    CHECK(nnz > 0 && t.decode[li](bm.data(), vals.data(), static_cast<uint64_t>(nnz), n, out), "%s large", t.name);
    CHECK(std::memcmp(out, src.data(), n * E) == 0, "%s large decode mismatch E=%d", t.name, E);
    std::free(out);
    ++cases;
  }
  std::printf("%-8s %d cases\n", t.name, cases);
}

void test_codec_api() {
  // Whole-buffer API: encode, validate, decode, and a mutation fuzz of the encoded buffer.
  std::mt19937_64 rng(7);
  Header h;
  h.dtype = static_cast<uint8_t>(DType::Float32);
  h.itemsize = 4;
  h.ndim = 2;
  h.shape[0] = 37;
  h.shape[1] = 29;
  h.numel = 37 * 29;
  std::vector<float> x(h.numel);
  for (auto& v : x) v = (rng() % 2) ? static_cast<float>(rng() % 1000) - 500.0f : 0.0f;
  std::vector<uint8_t> buf(encoded_bytes(h.numel, h.numel, 4));
  int64_t size = encode_into(reinterpret_cast<const uint8_t*>(x.data()), h, buf.data(), buf.size());
  CHECK(size > 0, "encode_into");
  buf.resize(static_cast<size_t>(size));
  Header g;
  CHECK(validate(buf.data(), buf.size(), &g) == nullptr, "validate");
  std::vector<float> y(h.numel);
  CHECK(decode_into(buf.data(), g, reinterpret_cast<uint8_t*>(y.data())) == nullptr, "decode_into");
  CHECK(std::memcmp(x.data(), y.data(), x.size() * 4) == 0, "api round trip");
  int rejected = 0, accepted = 0;
  for (int trial = 0; trial < 3000; ++trial) {
    std::vector<uint8_t> m = buf;
    int kind = trial % 3;
    if (kind == 0) m.resize(rng() % m.size());
    else if (kind == 1) m[rng() % m.size()] ^= static_cast<uint8_t>(1u << (rng() % 8));
    else for (int i = 0; i < 4; ++i) m[rng() % 80] = static_cast<uint8_t>(rng());
    Exact e(m.size());
    if (!m.empty()) std::memcpy(e.p, m.data(), m.size());
    Header mh;
    if (validate(e.p, e.n, &mh) != nullptr) {
      ++rejected;
      continue;
    }
    Exact out(mh.numel * mh.itemsize);
    if (decode_into(e.p, mh, out.p) == nullptr) ++accepted;
  }
  std::printf("fuzz     %d rejected, %d decoded\n", rejected, accepted);
}

bool complete(const KernelTable& t) {
  for (int i = 0; i < 4; ++i)
    if (!t.encode[i] || !t.decode[i] || !t.count_nonzero[i]) return false;
  return t.bitmap_popcount != nullptr;
}

void test_calibration() {
  // The auto mode measures each (op, size) once; the choice is one of the families and every family that has a
  // distinct kernel was timed.
  set_isa("auto");
  const std::vector<std::string> fams = available_isas();
  for (Op op : {Op::Encode, Op::Decode, Op::Count}) {
    for (int e : {1, 2, 4, 8}) {
      const Calibration c = calibration(op, e);
      bool known = false;
      for (const std::string& f : fams) known |= f == c.chosen;
      CHECK(known, "calibration %s %d chose unknown family %s", op_name(op), e, c.chosen.c_str());
      CHECK(!c.families.empty() && c.families.size() == c.gbps.size(), "calibration %s %d empty", op_name(op), e);
      for (double g : c.gbps) CHECK(g > 0, "calibration %s %d: no speed", op_name(op), e);
      CHECK(kernel_unit(op, e) == family_unit(c.chosen, op, e), "kernel_unit disagrees with the calibration");
      std::printf("auto     %-13s %dB -> %-6s (", op_name(op), e, c.chosen.c_str());
      for (size_t i = 0; i < c.families.size(); ++i)
        std::printf("%s%s %.1f GB/s", i ? ", " : "", c.families[i].c_str(), c.gbps[i]);
      std::printf(")\n");
    }
  }
}

}  // namespace

int main() {
  std::mt19937_64 rng(12345);
  std::vector<KernelTable> tables;
  for (const std::string& isa : available_isas()) {
    const KernelTable* t = family_kernels(isa);
    CHECK(t && complete(*t), "family %s has an empty slot", isa.c_str());
    if (t) tables.push_back(*t);
  }
#if defined(__x86_64__) && defined(MEMSIM_AVX512_EMULATION)
  // Both AVX-512 units built against SIMDe: the family as a VBMI2 CPU would see it.
  {
    KernelTable emu = avx512_kernels();
    for (int i = 0; i < 2; ++i) {
      emu.encode[i] = avx512_vbmi2_kernels().encode[i];
      emu.decode[i] = avx512_vbmi2_kernels().decode[i];
    }
    emu.name = "avx512-emulated";
    CHECK(complete(emu), "emulated avx512 table incomplete");
    tables.push_back(emu);
  }
#endif
  set_isa("auto");
  tables.push_back(active_kernels());  // the trampolines of the auto mode
  for (const KernelTable& t : tables) test_table(t, rng);
  test_calibration();
  for (const std::string& isa : available_isas()) {
    set_isa(isa);
    std::printf("codec api with %s: ", isa.c_str());
    test_codec_api();
  }
  set_isa("auto");
  std::printf("codec api with auto: ");
  test_codec_api();
  if (failures) {
    std::printf("%d FAILURES\n", failures);
    return 1;
  }
  std::printf("all passed\n");
  return 0;
}
