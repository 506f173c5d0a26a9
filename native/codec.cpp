// Kernel dispatch (families, the measured "auto" choice) and the whole-buffer codec API.
//
// Wider is not always faster: on AMD Zen 4/5, for instance, some AVX-512 kernels lose to the AVX2 ones for some
// element sizes. So by default ("auto") nothing is assumed: the first call of each (operation, element size)
// times every family that has a kernel for it on a small in-cache tensor with 50% random zeros (a few hundred
// microseconds), keeps the fastest for the rest of the process, and that choice is what every later call uses.
// All families produce identical bytes (the format is canonical), so the choice only changes speed.
#include "codec.h"

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <mutex>
#include <cstring>
#include <new>

namespace memsim {
namespace {

struct Family {
  std::string name;
  KernelTable table;
  const char* unit[kNumOps][4];  // the unit each slot's kernel comes from
};

void set_family_unit(Family& f, const char* unit) {
  for (auto& op : f.unit)
    for (auto& u : op) u = unit;
}

std::vector<Family> detect() {
  std::vector<Family> out;
#if defined(__x86_64__) || defined(_M_X64)
  __builtin_cpu_init();
  // libgcc also checks (XGETBV) that the OS saves the YMM / ZMM and opmask state before reporting these.
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("popcnt") &&
                    __builtin_cpu_supports("bmi");
  const bool avx512 = avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                      __builtin_cpu_supports("avx512vl");
  const bool vbmi2 = avx512 && __builtin_cpu_supports("avx512vbmi2");
  if (avx512) {
    Family f{"avx512", avx512_kernels(), {}};
    set_family_unit(f, "avx512");
    // 1- and 2-byte encode/decode: VBMI2 compress/expand where the CPU has it (own unit), else AVX2.
    const KernelTable& small = vbmi2 ? avx512_vbmi2_kernels() : avx2_kernels();
    for (int li = 0; li < 2; ++li) {
      f.table.encode[li] = small.encode[li];
      f.table.decode[li] = small.decode[li];
      f.unit[static_cast<int>(Op::Encode)][li] = f.unit[static_cast<int>(Op::Decode)][li] = small.name;
    }
    out.push_back(f);
  }
  if (avx2) {
    Family f{"avx2", avx2_kernels(), {}};
    set_family_unit(f, "avx2");
    out.push_back(f);
  }
#endif
#if defined(__aarch64__)
  {
    Family f{"neon", neon_kernels(), {}};
    set_family_unit(f, "neon");
    out.push_back(f);
  }
#endif
  Family s{"scalar", scalar_kernels(), {}};
  set_family_unit(s, "scalar");
  out.push_back(s);
  return out;
}

const std::vector<Family>& families() {
  static const std::vector<Family> v = detect();
  return v;
}

const void* slot_fn(const KernelTable& t, Op op, int li) {
  switch (op) {
    case Op::Encode: return reinterpret_cast<const void*>(t.encode[li]);
    case Op::Decode: return reinterpret_cast<const void*>(t.decode[li]);
    case Op::Count: return reinterpret_cast<const void*>(t.count_nonzero[li]);
  }
  return nullptr;
}

// --- "auto": calibration at first use ------------------------------------------------------------------------

constexpr uint64_t kCalibBytes = uint64_t{256} << 10;  // dense bytes per timed call: fits in L2 everywhere
constexpr int kCalibRounds = 9;                          // timed rounds (after one warm-up), best kept
constexpr double kCalibMargin = 0.98;                    // a wider family must be >2% faster to be preferred

struct Slot {
  std::once_flag once;
  std::atomic<int> chosen{-1};  // index into families()
  Calibration result;
};
Slot g_slots[kNumOps][4];
std::mutex g_calibration_mutex;  // one calibration at a time, so two threads do not disturb each other's timing

double seconds_now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

void run_calibration(Op op, int li) {
  std::lock_guard<std::mutex> lock(g_calibration_mutex);
  Slot& slot = g_slots[static_cast<int>(op)][li];
  const std::vector<Family>& fams = families();
  // Distinct kernels only (the avx512 family may reuse the AVX2 1-/2-byte kernels); the narrower family keeps a
  // shared kernel, so the name reported is the unit that really runs.
  std::vector<int> cand;
  std::vector<const void*> seen;
  for (int i = static_cast<int>(fams.size()) - 1; i >= 0; --i) {
    const void* fn = slot_fn(fams[i].table, op, li);
    bool dup = false;
    for (const void* s : seen) dup |= s == fn;
    if (!dup) {
      seen.push_back(fn);
      cand.insert(cand.begin(), i);
    }
  }
  int chosen = 0;
  std::vector<double> best(cand.size(), 1e30);
  try {
    const int E = 1 << li;
    const uint64_t n = kCalibBytes / E;
    std::vector<uint8_t> src(n * E), bm(bitmap_bytes(n)), vals(n * E), dst(n * E);
    uint64_t x = 0x9E3779B97F4A7C15ull;
    for (uint64_t i = 0; i < n; ++i) {
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
      const bool zero = (x >> 63) != 0;
      for (int b = 0; b < E; ++b) src[i * E + b] = zero ? 0 : static_cast<uint8_t>((x >> (8 * b)) | 1);
    }
    const KernelTable& ref = scalar_kernels();
    const int64_t nnz = ref.encode[li](src.data(), n, bm.data(), vals.data(), n);
    volatile uint64_t sink = 0;
    for (int r = 0; r <= kCalibRounds; ++r) {
      for (size_t c = 0; c < cand.size(); ++c) {
        const KernelTable& t = fams[cand[c]].table;
        const double t0 = seconds_now();
        switch (op) {
          case Op::Encode: sink = sink + static_cast<uint64_t>(t.encode[li](src.data(), n, bm.data(), vals.data(), n)); break;
          case Op::Decode: sink = sink + t.decode[li](bm.data(), vals.data(), static_cast<uint64_t>(nnz), n, dst.data()); break;
          case Op::Count: sink = sink + t.count_nonzero[li](src.data(), n); break;
        }
        const double dt = seconds_now() - t0;
        if (r > 0 && dt < best[c]) best[c] = dt;
      }
    }
    // Narrowest first; a wider family replaces it only when clearly faster.
    size_t pick = cand.size() - 1;
    for (size_t c = cand.size() - 1; c-- > 0;)
      if (best[c] < best[pick] * kCalibMargin) pick = c;
    chosen = cand[pick];
    for (size_t c = 0; c < cand.size(); ++c) {
      slot.result.families.push_back(fams[cand[c]].name);
      slot.result.gbps.push_back(best[c] > 0 && best[c] < 1e29 ? static_cast<double>(n * E) / best[c] / 1e9 : 0.0);
    }
  } catch (const std::bad_alloc&) {
    chosen = 0;  // no memory to measure: the widest family
  }
  slot.result.chosen = fams[chosen].name;
  slot.chosen.store(chosen, std::memory_order_release);
}

inline const Family& auto_family(Op op, int li) {
  Slot& slot = g_slots[static_cast<int>(op)][li];
  int c = slot.chosen.load(std::memory_order_acquire);
  if (c < 0) {
    std::call_once(slot.once, run_calibration, op, li);
    c = slot.chosen.load(std::memory_order_acquire);
  }
  return families()[c];
}

template <int L>
int64_t encode_auto(const uint8_t* src, uint64_t n, uint8_t* bitmap, uint8_t* vals, uint64_t cap) {
  return auto_family(Op::Encode, L).table.encode[L](src, n, bitmap, vals, cap);
}
template <int L>
bool decode_auto(const uint8_t* bitmap, const uint8_t* vals, uint64_t nnz, uint64_t n, uint8_t* dst) {
  return auto_family(Op::Decode, L).table.decode[L](bitmap, vals, nnz, n, dst);
}
template <int L>
uint64_t count_auto(const uint8_t* src, uint64_t n) {
  return auto_family(Op::Count, L).table.count_nonzero[L](src, n);
}
uint64_t popcount_auto(const uint8_t* bitmap, uint64_t bytes) {
  return families().front().table.bitmap_popcount(bitmap, bytes);
}

const KernelTable kAutoTable = {
    "auto",
    {encode_auto<0>, encode_auto<1>, encode_auto<2>, encode_auto<3>},
    {decode_auto<0>, decode_auto<1>, decode_auto<2>, decode_auto<3>},
    {count_auto<0>, count_auto<1>, count_auto<2>, count_auto<3>},
    popcount_auto,
};

std::atomic<int> g_forced{-1};  // -1: auto, else index into families()

int checked_log2(int itemsize) {
  if (itemsize != 1 && itemsize != 2 && itemsize != 4 && itemsize != 8) return -1;
  return log2_itemsize(itemsize);
}

}  // namespace

const char* op_name(Op op) {
  switch (op) {
    case Op::Encode: return "encode";
    case Op::Decode: return "decode";
    case Op::Count: return "count_nonzero";
  }
  return "?";
}

std::vector<std::string> available_isas() {
  std::vector<std::string> names;
  for (const Family& f : families()) names.push_back(f.name);
  return names;
}

const char* active_isa() {
  const int f = g_forced.load(std::memory_order_acquire);
  return f < 0 ? "auto" : families()[f].name.c_str();
}

const KernelTable& active_kernels() {
  const int f = g_forced.load(std::memory_order_acquire);
  return f < 0 ? kAutoTable : families()[f].table;
}

const KernelTable* family_kernels(const std::string& name) {
  for (const Family& f : families())
    if (f.name == name) return &f.table;
  return nullptr;
}

const char* set_isa(const std::string& name) {
  if (name == "auto") {
    g_forced.store(-1, std::memory_order_release);
    return nullptr;
  }
  const std::vector<Family>& fams = families();
  for (size_t i = 0; i < fams.size(); ++i) {
    if (fams[i].name == name) {
      g_forced.store(static_cast<int>(i), std::memory_order_release);
      return nullptr;
    }
  }
  if (name == "scalar" || name == "avx2" || name == "avx512" || name == "neon")
    return "instruction set not supported by this CPU or build";
  return "unknown instruction set";
}

std::string family_unit(const std::string& family, Op op, int itemsize) {
  const int li = checked_log2(itemsize);
  if (li < 0) return "";
  for (const Family& f : families())
    if (f.name == family) return f.unit[static_cast<int>(op)][li];
  return "";
}

std::string kernel_unit(Op op, int itemsize) {
  const int li = checked_log2(itemsize);
  if (li < 0) return "";
  const int f = g_forced.load(std::memory_order_acquire);
  const Family& fam = f < 0 ? auto_family(op, li) : families()[f];
  return fam.unit[static_cast<int>(op)][li];
}

Calibration calibration(Op op, int itemsize) {
  const int li = checked_log2(itemsize);
  if (li < 0) return {};
  auto_family(op, li);
  return g_slots[static_cast<int>(op)][li].result;
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

const char* decode_into_fresh(const uint8_t* buf, const Header& h, uint8_t* dst, uint64_t page_bytes) {
  const uint64_t itemsize = static_cast<uint64_t>(h.itemsize);
  const uint64_t chunk = page_bytes / itemsize;  // elements per page
  if (h.numel == 0 || chunk == 0 || chunk % 64 != 0) return decode_into(buf, h, dst);
  // Fresh pages are zeroed by the kernel at their first write, subpage by subpage toward the written address,
  // so the subpages cleared last are still in cache. Faulting each page at its last line, then writing it
  // front to back, makes the decoder's stores hit lines the kernel has just zeroed: measured on a 2 MiB
  // transparent-huge-page VM, 64 MiB decode into fresh memory 10 ms -> 6 ms, where the page faults alone
  // take 6 ms.
  const KernelTable& k = active_kernels();
  const DecodeFn decode = k.decode[log2_itemsize(h.itemsize)];
  const uint8_t* bitmap = buf + kHeaderBytes;
  const uint8_t* vals = bitmap + bitmap_bytes(h.numel);
  uint64_t used = 0;
  for (uint64_t first = 0; first < h.numel; first += chunk) {
    const uint64_t n = h.numel - first < chunk ? h.numel - first : chunk;
    uint8_t* out = dst + first * itemsize;
    reinterpret_cast<volatile uint8_t*>(out)[n * itemsize - 1] = 0;
    if (!decode(bitmap + first / 8, vals + used * itemsize, h.nnz - used, n, out))
      return "bitmap asks for more values than stored";
    // Whole chunks are multiples of 64 elements, so their bitmap is whole 8-byte words.
    if (first + n < h.numel) used += k.bitmap_popcount(bitmap + first / 8, n / 8);
  }
  return nullptr;
}

uint64_t count_nonzero(const uint8_t* src, uint64_t numel, int itemsize) {
  return numel ? active_kernels().count_nonzero[log2_itemsize(itemsize)](src, numel) : 0;
}

}  // namespace memsim
