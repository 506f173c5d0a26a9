#include "codec.h"

#include <atomic>
#include <cstdlib>

namespace memsim {
namespace {

struct Isa {
  std::string name;
  KernelTable table;
};

std::vector<Isa> detect() {
  std::vector<Isa> out;
#if defined(__x86_64__) || defined(_M_X64)
  __builtin_cpu_init();
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("popcnt") &&
                    __builtin_cpu_supports("bmi");
  const bool avx512 = avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                      __builtin_cpu_supports("avx512vl");
  const bool vbmi2 = avx512 && __builtin_cpu_supports("avx512vbmi2");
  if (avx512) out.push_back({"avx512", avx512_kernels(vbmi2)});
  if (avx2) out.push_back({"avx2", avx2_kernels()});
#endif
#if defined(__aarch64__)
  out.push_back({"neon", neon_kernels()});
#endif
  out.push_back({"scalar", scalar_kernels()});
  return out;
}

const std::vector<Isa>& isas() {
  static const std::vector<Isa> v = detect();
  return v;
}

std::atomic<const Isa*> g_active{nullptr};

const Isa& active() {
  const Isa* a = g_active.load(std::memory_order_acquire);
  if (!a) {
    a = &isas().front();
    g_active.store(a, std::memory_order_release);
  }
  return *a;
}

}  // namespace

std::vector<std::string> available_isas() {
  std::vector<std::string> names;
  for (const Isa& i : isas()) names.push_back(i.name);
  return names;
}

const char* active_isa() { return active().name.c_str(); }
const KernelTable& active_kernels() { return active().table; }

const char* set_isa(const std::string& name) {
  for (const Isa& i : isas()) {
    if (i.name == name) {
      g_active.store(&i, std::memory_order_release);
      return nullptr;
    }
  }
  if (name == "scalar" || name == "avx2" || name == "avx512" || name == "neon")
    return "instruction set not supported by this CPU or build";
  return "unknown instruction set";
}

int64_t encode_into(const uint8_t* src, const Header& h, uint8_t* out, uint64_t out_cap) {
  const uint64_t bm = bitmap_bytes(h.numel);
  if (out_cap < kHeaderBytes + bm) return -1;
  const uint64_t cap = (out_cap - kHeaderBytes - bm) / static_cast<uint64_t>(h.itemsize);
  int64_t nnz = 0;
  if (h.numel > 0) {
    nnz = active_kernels().encode[log2_itemsize(h.itemsize)](src, h.numel, out + kHeaderBytes,
                                                             out + kHeaderBytes + bm, cap);
    if (nnz < 0) return -1;
  }
  Header w = h;
  w.nnz = static_cast<uint64_t>(nnz);
  write_header(out, w);
  return static_cast<int64_t>(encoded_bytes(h.numel, w.nnz, h.itemsize));
}

const char* validate(const uint8_t* buf, uint64_t len, Header* h) {
  const char* err = parse_header(buf, len, h);
  if (err) return err;
  const uint64_t bm = bitmap_bytes(h->numel);
  const uint8_t* bitmap = buf + kHeaderBytes;
  if (h->numel % 64 != 0) {
    uint64_t last;
    std::memcpy(&last, bitmap + bm - 8, 8);
    if (last >> (h->numel % 64)) return "bitmap padding bits past the last element are not 0";
  }
  if (active_kernels().bitmap_popcount(bitmap, bm) != h->nnz) return "bitmap popcount does not match nnz";
  return nullptr;
}

const char* decode_into(const uint8_t* buf, const Header& h, uint8_t* dst) {
  if (h.numel == 0) return nullptr;
  const uint64_t bm = bitmap_bytes(h.numel);
  const bool ok = active_kernels().decode[log2_itemsize(h.itemsize)](buf + kHeaderBytes, buf + kHeaderBytes + bm,
                                                                    h.nnz, h.numel, dst);
  return ok ? nullptr : "bitmap asks for more values than stored";
}

uint64_t count_nonzero(const uint8_t* src, uint64_t numel, int itemsize) {
  return numel ? active_kernels().count_nonzero[log2_itemsize(itemsize)](src, numel) : 0;
}

}  // namespace memsim
