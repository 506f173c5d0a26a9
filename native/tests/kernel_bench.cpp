// Speed of every kernel family against memcpy, outside Python: encode and decode of a tensor with random
// zeros into preallocated (already touched) memory, best of N, all operations interleaved round after round so
// background load hits them alike. Used for the NEON table under qemu (run_native_tests.sh arm-bench) and to
// compare the x86 kernels without the Python layer.
//
// Usage: kernel_bench [MiB=64] [zero_fraction=0.5] [repeat=7] [itemsizes=4]   e.g. kernel_bench 64 0.5 7 1248
#include <chrono>
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

double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

uint8_t* touched(size_t bytes) {
  auto* p = static_cast<uint8_t*>(std::aligned_alloc(64, (bytes + 63) / 64 * 64));
  std::memset(p, 1, bytes);
  return p;
}

}  // namespace

int main(int argc, char** argv) {
  const double mib = argc > 1 ? std::atof(argv[1]) : 64;
  const double zeros = argc > 2 ? std::atof(argv[2]) : 0.5;
  const int repeat = argc > 3 ? std::atoi(argv[3]) : 7;
  const std::string sizes = argc > 4 ? argv[4] : "4";
  const size_t bytes = static_cast<size_t>(mib * (1 << 20));

  std::vector<std::pair<std::string, const KernelTable*>> tables;
  for (const std::string& name : available_isas()) {
    set_isa(name);
    tables.push_back({name, &active_kernels()});
  }
  std::printf("kernel_bench: %g MiB, %.0f%% zeros, best of %d, one thread; GB/s = dense bytes / time\n", mib,
              zeros * 100, repeat);
  std::printf("| itemsize | kernels | encode GB/s | ×memcpy | decode GB/s | ×memcpy | memcpy GB/s |\n");
  std::printf("|---:|---|---:|---:|---:|---:|---:|\n");
  for (char c : sizes) {
    const int E = c - '0';
    if (E != 1 && E != 2 && E != 4 && E != 8) continue;
    const int li = log2_itemsize(E);
    const uint64_t n = bytes / E;
    uint8_t* src = touched(n * E);
    std::mt19937_64 rng(1);
    std::uniform_real_distribution<double> u(0, 1);
    for (uint64_t i = 0; i < n; ++i) {
      const bool zero = u(rng) < zeros;
      for (int b = 0; b < E; ++b) src[i * E + b] = zero ? 0 : static_cast<uint8_t>(1 + rng() % 255);
    }
    uint8_t* bm = touched(bitmap_bytes(n));
    uint8_t* vals = touched(n * E);
    uint8_t* dst = touched(n * E);
    uint8_t* copy = touched(n * E);
    const int64_t nnz = tables.back().second->encode[li](src, n, bm, vals, n);
    const size_t T = tables.size();
    std::vector<double> enc(T, 1e30), dec(T, 1e30);
    double cp = 1e30;
    for (int r = 0; r < repeat; ++r) {
      double t0 = now();
      std::memcpy(copy, src, n * E);
      cp = std::min(cp, now() - t0);
      for (size_t t = 0; t < T; ++t) {
        t0 = now();
        const int64_t got = tables[t].second->encode[li](src, n, bm, vals, n);
        enc[t] = std::min(enc[t], now() - t0);
        t0 = now();
        const bool ok = tables[t].second->decode[li](bm, vals, static_cast<uint64_t>(nnz), n, dst);
        dec[t] = std::min(dec[t], now() - t0);
        if (got != nnz || !ok || std::memcmp(dst, src, n * E) != 0) {
          std::printf("FAIL: %s E=%d round trip differs\n", tables[t].first.c_str(), E);
          return 1;
        }
      }
    }
    const double gb = static_cast<double>(n * E) / 1e9;
    for (size_t t = 0; t < T; ++t)
      std::printf("| %d | %s | %.2f | %.2f | %.2f | %.2f | %.2f |\n", E, tables[t].first.c_str(), gb / enc[t],
                  cp / enc[t], gb / dec[t], cp / dec[t], gb / cp);
    for (uint8_t* p : {src, bm, vals, dst, copy}) std::free(p);
  }
  return 0;
}
