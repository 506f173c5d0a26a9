// Portable helpers shared by every kernel translation unit. Everything here has internal linkage (anonymous
// namespace) on purpose: each TU is compiled with different -m flags, and a shared inline function with
// external linkage could be merged by the linker into the copy compiled with AVX-512, breaking the scalar
// path on older CPUs.
#pragma once

#include <cstdint>
#include <cstring>

namespace memsim {
namespace {

template <class T>
inline T load_as(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}
template <class T>
inline void store_as(uint8_t* p, T v) {
  std::memcpy(p, &v, sizeof(T));
}

template <int E> struct UIntOf;
template <> struct UIntOf<1> { using type = uint8_t; };
template <> struct UIntOf<2> { using type = uint16_t; };
template <> struct UIntOf<4> { using type = uint32_t; };
template <> struct UIntOf<8> { using type = uint64_t; };

inline uint64_t min_u64(uint64_t a, uint64_t b) { return a < b ? a : b; }

// Scalar encoding of blocks [first_block, ceil(n/64)) with `k` values already written. The fast
// branch-free store writes one slot past the last value, so it runs only while 64 slots remain.
template <int E>
inline int64_t encode_scalar_from(const uint8_t* src, uint64_t n, uint8_t* bitmap, uint8_t* vals, uint64_t cap,
                                  uint64_t first_block, uint64_t k) {
  using T = typename UIntOf<E>::type;
  const uint64_t blocks = (n + 63) / 64;
  for (uint64_t b = first_block; b < blocks; ++b) {
    const uint64_t i0 = b * 64;
    const uint64_t cnt = min_u64(64, n - i0);
    const uint8_t* s = src + i0 * E;
    uint64_t m = 0;
    if (cap - k >= cnt) {
      for (uint64_t j = 0; j < cnt; ++j) {
        T v = load_as<T>(s + j * E);
        uint64_t nz = v != 0;
        m |= nz << j;
        store_as<T>(vals + k * E, v);
        k += nz;
      }
    } else {
      for (uint64_t j = 0; j < cnt; ++j) {
        T v = load_as<T>(s + j * E);
        if (v != 0) {
          if (k >= cap) return -1;
          m |= uint64_t{1} << j;
          store_as<T>(vals + k * E, v);
          ++k;
        }
      }
    }
    store_as<uint64_t>(bitmap + b * 8, m);
  }
  return static_cast<int64_t>(k);
}

// Scalar decoding of blocks [first_block, ceil(n/64)) with `k` values already consumed.
template <int E>
inline bool decode_scalar_from(const uint8_t* bitmap, const uint8_t* vals, uint64_t nnz, uint64_t n, uint8_t* dst,
                               uint64_t first_block, uint64_t k) {
  using T = typename UIntOf<E>::type;
  const uint64_t blocks = (n + 63) / 64;
  for (uint64_t b = first_block; b < blocks; ++b) {
    const uint64_t i0 = b * 64;
    const uint64_t cnt = min_u64(64, n - i0);
    const uint64_t m = load_as<uint64_t>(bitmap + b * 8);
    const uint64_t pc = static_cast<uint64_t>(__builtin_popcountll(m));
    if (pc > nnz - k) return false;
    uint8_t* d = dst + i0 * E;
    if (cnt == 64 && m == ~uint64_t{0}) {
      std::memcpy(d, vals + k * E, 64 * E);
    } else if (m == 0) {
      std::memset(d, 0, cnt * E);
    } else if (nnz - k > cnt) {
      // Branch-free (the bits are unpredictable): reads the slot at k even for a zero bit, which stays
      // below k + cnt < nnz, so never past the stored values.
      for (uint64_t j = 0; j < cnt; ++j) {
        const uint64_t bit = (m >> j) & 1;
        const T v = load_as<T>(vals + k * E) & static_cast<T>(-static_cast<int64_t>(bit));
        store_as<T>(d + j * E, v);
        k += bit;
      }
      continue;
    } else {
      for (uint64_t j = 0; j < cnt; ++j) {
        T v = 0;
        if ((m >> j) & 1) v = load_as<T>(vals + (k++) * E);
        store_as<T>(d + j * E, v);
      }
      // Bits past n (only possible in a corrupt last word) are ignored here; the caller validates them.
      continue;
    }
    k += pc;
  }
  return true;
}

template <int E>
inline uint64_t count_scalar(const uint8_t* src, uint64_t n) {
  using T = typename UIntOf<E>::type;
  uint64_t c = 0;
  for (uint64_t i = 0; i < n; ++i) c += load_as<T>(src + i * E) != 0;
  return c;
}

}  // namespace
}  // namespace memsim

namespace memsim {
namespace {
inline uint64_t popcount_words(const uint8_t* bitmap, uint64_t bytes) {
  uint64_t c = 0;
  for (uint64_t i = 0; i + 8 <= bytes; i += 8) c += static_cast<uint64_t>(__builtin_popcountll(load_as<uint64_t>(bitmap + i)));
  return c;
}
}  // namespace
}  // namespace memsim
