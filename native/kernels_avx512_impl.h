// AVX-512 kernel templates, shared by two translation units with different flags:
//   kernels_avx512.cpp        -mavx512f -mavx512bw -mavx512vl (no VBMI2): 4- and 8-byte encode/decode, counts
//   kernels_avx512_vbmi2.cpp  the same plus -mavx512vbmi2: 1- and 2-byte encode/decode only
// so that no instruction beyond F+BW+VL can reach a CPU such as Skylake-SP, which has no VBMI2: the dispatcher
// (codec.cpp) uses the second unit only when CPUID reports avx512vbmi2, and native/tests/check_disassembly.py
// fails the build's tests if kernels_avx512.cpp.o contains any VBMI2 (or other non-F/BW/VL) instruction.
//
// vptestm gives the non-zero mask of a vector, i.e. the bitmap bits, directly; vpcompress packs the non-zero
// lanes and vpexpand puts them back, with zeroing masks for the empty lanes. As in the AVX2 path, full-vector
// loads/stores of values run only while a whole block of value slots remains; the rest goes through the
// checked scalar code.
//
// Everything here has internal linkage (anonymous namespace): each including unit gets its own copy compiled
// with its own flags, and the linker can never substitute one for the other.
//
// MEMSIM_AVX512_EMULATION (native/tests only) builds against SIMDe so the logic can be tested on CPUs without
// AVX-512.
#pragma once

#if defined(MEMSIM_AVX512_EMULATION)
#include "tests/avx512_emulation.h"
#else
#include <immintrin.h>
#endif

#include "kernels.h"
#include "kernels_common.h"

#if defined(__AVX512VBMI2__) || defined(MEMSIM_AVX512_EMULATION)
#define MEMSIM_HAVE_VBMI2 1
#else
#define MEMSIM_HAVE_VBMI2 0
#endif

namespace memsim {
namespace {

inline __m512i loadu512(const uint8_t* p) { return _mm512_loadu_si512(reinterpret_cast<const void*>(p)); }
inline void storeu512(uint8_t* p, __m512i v) { _mm512_storeu_si512(reinterpret_cast<void*>(p), v); }
constexpr uint64_t kStreamBytes = uint64_t{16} << 20;
inline uint64_t pop(uint64_t m) { return static_cast<uint64_t>(__builtin_popcountll(m)); }

constexpr int lanes_of(int e) { return 64 / e; }

// A load the compiler must not fold into the instruction that uses it. vpexpand with a memory source is an
// "expand-load" (it reads only popcount(mask) elements), which is microcoded and several times slower than a
// plain load + register vpexpand on AMD Zen 4; GCC folds the two unless told not to.
inline __m512i load_unfolded(const uint8_t* p) {
  __m512i v = loadu512(p);
#if !defined(MEMSIM_AVX512_EMULATION)
  asm("" : "+v"(v));
#endif
  return v;
}

// Non-zero mask of one 64-byte vector of E-byte elements (F for 4/8 bytes, BW for 1/2 bytes).
template <int E>
inline uint64_t nonzero_mask(__m512i v) {
  if constexpr (E == 1) return static_cast<uint64_t>(_mm512_test_epi8_mask(v, v));
  if constexpr (E == 2) return static_cast<uint64_t>(_mm512_test_epi16_mask(v, v));
  if constexpr (E == 4) return static_cast<uint64_t>(_mm512_test_epi32_mask(v, v));
  if constexpr (E == 8) return static_cast<uint64_t>(_mm512_test_epi64_mask(v, v));
}

template <int E>
inline __m512i compress(uint64_t m, __m512i v) {
  static_assert(E >= 4 || MEMSIM_HAVE_VBMI2, "1- and 2-byte compress needs VBMI2 (kernels_avx512_vbmi2.cpp)");
#if MEMSIM_HAVE_VBMI2
  if constexpr (E == 1) return _mm512_maskz_compress_epi8(static_cast<__mmask64>(m), v);
  if constexpr (E == 2) return _mm512_maskz_compress_epi16(static_cast<__mmask32>(m), v);
#endif
  if constexpr (E == 4) return _mm512_maskz_compress_epi32(static_cast<__mmask16>(m), v);
  if constexpr (E == 8) return _mm512_maskz_compress_epi64(static_cast<__mmask8>(m), v);
}

template <int E>
inline __m512i expand(uint64_t m, __m512i v) {
  static_assert(E >= 4 || MEMSIM_HAVE_VBMI2, "1- and 2-byte expand needs VBMI2 (kernels_avx512_vbmi2.cpp)");
#if MEMSIM_HAVE_VBMI2
  if constexpr (E == 1) return _mm512_maskz_expand_epi8(static_cast<__mmask64>(m), v);
  if constexpr (E == 2) return _mm512_maskz_expand_epi16(static_cast<__mmask32>(m), v);
#endif
  if constexpr (E == 4) return _mm512_maskz_expand_epi32(static_cast<__mmask16>(m), v);
  if constexpr (E == 8) return _mm512_maskz_expand_epi64(static_cast<__mmask8>(m), v);
}

// A 64-element block is E vectors of 64/E lanes.
template <int E>
int64_t encode_avx512(const uint8_t* src, uint64_t n, uint8_t* bitmap, uint8_t* vals, uint64_t cap) {
  constexpr int L = lanes_of(E);
  constexpr uint64_t lane_mask = L == 64 ? ~uint64_t{0} : (uint64_t{1} << L) - 1;
  const uint64_t full_blocks = n / 64;
  uint64_t k = 0, b = 0;
  for (; b < full_blocks && cap - k >= 64; ++b) {
    const uint8_t* s = src + b * 64 * E;
    __m512i v[E];
    uint64_t bm = 0;
    for (int g = 0; g < E; ++g) {
      v[g] = loadu512(s + 64 * g);
      bm |= nonzero_mask<E>(v[g]) << (L * g);
    }
    store_as<uint64_t>(bitmap + b * 8, bm);
    if (bm == ~uint64_t{0}) {
      for (int g = 0; g < E; ++g) storeu512(vals + (k + static_cast<uint64_t>(L * g)) * E, v[g]);
      k += 64;
      continue;
    }
    if (bm == 0) continue;
    for (int g = 0; g < E; ++g) {
      const uint64_t m = (bm >> (L * g)) & lane_mask;
      storeu512(vals + k * E, compress<E>(m, v[g]));  // register compress + store: the memory form is microcoded
      k += pop(m);
    }
  }
  return encode_scalar_from<E>(src, n, bitmap, vals, cap, b, k);
}

template <bool kStream>
inline void put512(uint8_t* p, __m512i v) {
  if constexpr (kStream) _mm512_stream_si512(reinterpret_cast<__m512i*>(p), v);
  else storeu512(p, v);
}

template <int E, bool kStream>
bool decode_avx512_impl(const uint8_t* bitmap, const uint8_t* vals, uint64_t nnz, uint64_t n, uint8_t* dst) {
  constexpr int L = lanes_of(E);
  constexpr uint64_t lane_mask = L == 64 ? ~uint64_t{0} : (uint64_t{1} << L) - 1;
  const uint64_t full_blocks = n / 64;
  uint64_t k = 0, b = 0;
  for (; b < full_blocks && nnz - k >= 64; ++b) {
    const uint64_t bm = load_as<uint64_t>(bitmap + b * 8);
    uint8_t* d = dst + b * 64 * E;
    if (bm == ~uint64_t{0}) {
      for (int g = 0; g < E; ++g) put512<kStream>(d + 64 * g, loadu512(vals + (k + static_cast<uint64_t>(L * g)) * E));
      k += 64;
      continue;
    }
    if (bm == 0) {
      for (int g = 0; g < E; ++g) put512<kStream>(d + 64 * g, _mm512_setzero_si512());
      continue;
    }
    for (int g = 0; g < E; ++g) {
      const uint64_t m = (bm >> (L * g)) & lane_mask;
      put512<kStream>(d + 64 * g, expand<E>(m, load_unfolded(vals + k * E)));
      k += pop(m);
    }
  }
  if constexpr (kStream) _mm_sfence();
  return decode_scalar_from<E>(bitmap, vals, nnz, n, dst, b, k);
}

template <int E>
bool decode_avx512(const uint8_t* bitmap, const uint8_t* vals, uint64_t nnz, uint64_t n, uint8_t* dst) {
  // Large, 64-byte aligned outputs: streaming stores (see kernels_avx2.cpp).
  if (n * E >= kStreamBytes && (reinterpret_cast<uintptr_t>(dst) & 63) == 0)
    return decode_avx512_impl<E, true>(bitmap, vals, nnz, n, dst);
  return decode_avx512_impl<E, false>(bitmap, vals, nnz, n, dst);
}

template <int E>
uint64_t count_avx512(const uint8_t* src, uint64_t n) {
  const uint64_t full_vectors = n * E / 64;
  uint64_t c = 0;
  for (uint64_t i = 0; i < full_vectors; ++i) c += pop(nonzero_mask<E>(loadu512(src + 64 * i)));
  const uint64_t done = full_vectors * 64 / E;
  return c + count_scalar<E>(src + done * E, n - done);
}

}  // namespace
}  // namespace memsim
