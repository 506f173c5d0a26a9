// A driver for fuzz_decode.cpp where libFuzzer (clang) is not installed: replays every corpus file, then applies
// random mutations (bit flips, byte writes, header-field values, truncation, extension, splices) to corpus
// inputs until the time is up. Not coverage-guided, but built with ASan + UBSan by g++ like the libFuzzer run.
// Usage: fuzz_decode_standalone [-max_total_time=SECONDS] [-seed=N] CORPUS_DIR_OR_FILE...
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <dirent.h>
#include <random>
#include <string>
#include <sys/stat.h>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {

std::vector<uint8_t> read_file(const std::string& path) {
  std::vector<uint8_t> v;
  if (FILE* f = std::fopen(path.c_str(), "rb")) {
    uint8_t chunk[4096];
    size_t n;
    while ((n = std::fread(chunk, 1, sizeof chunk, f)) > 0) v.insert(v.end(), chunk, chunk + n);
    std::fclose(f);
  }
  return v;
}

void collect(const std::string& path, std::vector<std::vector<uint8_t>>& out) {
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) return;
  if (S_ISDIR(st.st_mode)) {
    if (DIR* d = opendir(path.c_str())) {
      std::vector<std::string> names;
      while (dirent* e = readdir(d))
        if (e->d_name[0] != '.') names.push_back(path + "/" + e->d_name);
      closedir(d);
      for (const std::string& n : names) collect(n, out);
    }
  } else {
    out.push_back(read_file(path));
  }
}

void mutate(std::vector<uint8_t>& m, const std::vector<std::vector<uint8_t>>& corpus, std::mt19937_64& rng) {
  const int kinds = 1 + static_cast<int>(rng() % 4);
  for (int k = 0; k < kinds; ++k) {
    switch (rng() % 8) {
      case 0:  // bit flip anywhere
        if (!m.empty()) m[rng() % m.size()] ^= static_cast<uint8_t>(1u << (rng() % 8));
        break;
      case 1:  // random byte in the header or the first bitmap words
        if (!m.empty()) m[rng() % std::min<size_t>(m.size(), 96)] = static_cast<uint8_t>(rng());
        break;
      case 2: {  // an interesting 64-bit value at nnz (8) or a shape slot (16 + 6k)
        static const uint64_t vals[] = {0, 1, 63, 64, 65, 0xFFFFFFFFull, 1ull << 47, (1ull << 48) - 1, ~0ull};
        const size_t off = (rng() % 2) ? 8 : 16 + 6 * (rng() % 8);
        const uint64_t v = vals[rng() % (sizeof vals / sizeof vals[0])];
        for (size_t i = 0; i < 8 && off + i < m.size(); ++i) m[off + i] = static_cast<uint8_t>(v >> (8 * i));
        break;
      }
      case 3:  // truncate
        if (!m.empty()) m.resize(rng() % m.size());
        break;
      case 4:  // extend
        m.resize(m.size() + 1 + rng() % 16, static_cast<uint8_t>(rng() % 2 ? 0 : rng()));
        break;
      case 5: {  // splice a piece of another input
        const auto& o = corpus[rng() % corpus.size()];
        if (!o.empty() && !m.empty()) {
          const size_t from = rng() % o.size(), to = rng() % m.size();
          const size_t len = std::min({o.size() - from, m.size() - to, static_cast<size_t>(1 + rng() % 64)});
          std::memcpy(m.data() + to, o.data() + from, len);
        }
        break;
      }
      case 6:  // dtype / ndim / flags byte
        if (m.size() > 7) m[5 + rng() % 3] = static_cast<uint8_t>(rng() % 12);
        break;
      default:  // all-ones or all-zeros bitmap word
        if (m.size() > 72) {
          const size_t w = 64 + 8 * (rng() % ((m.size() - 64) / 8));
          std::memset(m.data() + w, rng() % 2 ? 0xFF : 0x00, std::min<size_t>(8, m.size() - w));
        }
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  double seconds = 10;
  uint64_t seed = 1;
  std::vector<std::vector<uint8_t>> corpus;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a.rfind("-max_total_time=", 0) == 0) seconds = std::atof(a.c_str() + 16);
    else if (a.rfind("-seed=", 0) == 0) seed = std::strtoull(a.c_str() + 6, nullptr, 10);
    else if (a[0] != '-') collect(a, corpus);
  }
  if (corpus.empty()) corpus.push_back({});
  for (const auto& c : corpus) LLVMFuzzerTestOneInput(c.data(), c.size());
  std::mt19937_64 rng(seed);
  const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  uint64_t runs = corpus.size();
  while (std::chrono::steady_clock::now() < end) {
    for (int batch = 0; batch < 256; ++batch, ++runs) {
      std::vector<uint8_t> m = corpus[rng() % corpus.size()];
      mutate(m, corpus, rng);
      LLVMFuzzerTestOneInput(m.data(), m.size());
    }
  }
  std::printf("fuzz_decode_standalone: %zu corpus inputs, %llu runs in %.0f s, no failure (not coverage-guided)\n",
              corpus.size(), static_cast<unsigned long long>(runs), seconds);
  return 0;
}
