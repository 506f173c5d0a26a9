// Test-only stand-in for <immintrin.h>: SIMDe's portable AVX-512 plus scalar versions of the VBMI2/F
// compress/expand intrinsics SIMDe 0.7 lacks. Lets kernels_avx512.cpp run (slowly) on any CPU so its
// logic is tested where no AVX-512 hardware is available (native/tests/run_native_tests.sh).
#pragma once
#define SIMDE_ENABLE_NATIVE_ALIASES
#include <simde/x86/avx512.h>

#include <cstdint>
#include <cstring>

// Mask type names SIMDe does not alias (a typedef may be repeated with the same type).
#ifndef __mmask8
typedef simde__mmask8 __mmask8;
#endif
#ifndef __mmask16
typedef simde__mmask16 __mmask16;
#endif
#ifndef __mmask32
typedef simde__mmask32 __mmask32;
#endif
#ifndef __mmask64
typedef simde__mmask64 __mmask64;
#endif

namespace memsim_emulation {
template <class T>
inline simde__m512i compress(uint64_t m, simde__m512i v) {
  constexpr int L = 64 / sizeof(T);
  T in[L], out[L] = {};
  std::memcpy(in, &v, 64);
  int k = 0;
  for (int j = 0; j < L; ++j)
    if (m >> j & 1) out[k++] = in[j];
  simde__m512i r;
  std::memcpy(&r, out, 64);
  return r;
}
template <class T>
inline simde__m512i expand(uint64_t m, simde__m512i v) {
  constexpr int L = 64 / sizeof(T);
  T in[L], out[L] = {};
  std::memcpy(in, &v, 64);
  int k = 0;
  for (int j = 0; j < L; ++j)
    if (m >> j & 1) out[j] = in[k++];
  simde__m512i r;
  std::memcpy(&r, out, 64);
  return r;
}
}  // namespace memsim_emulation

inline simde__m512i _mm512_maskz_compress_epi8(simde__mmask64 m, simde__m512i v) { return memsim_emulation::compress<uint8_t>(m, v); }
inline simde__m512i _mm512_maskz_compress_epi16(simde__mmask32 m, simde__m512i v) { return memsim_emulation::compress<uint16_t>(m, v); }
inline simde__m512i _mm512_maskz_expand_epi8(simde__mmask64 m, simde__m512i v) { return memsim_emulation::expand<uint8_t>(m, v); }
inline simde__m512i _mm512_maskz_expand_epi16(simde__mmask32 m, simde__m512i v) { return memsim_emulation::expand<uint16_t>(m, v); }
inline simde__m512i _mm512_maskz_expand_epi32(simde__mmask16 m, simde__m512i v) { return memsim_emulation::expand<uint32_t>(m, v); }
inline simde__m512i _mm512_maskz_expand_epi64(simde__mmask8 m, simde__m512i v) { return memsim_emulation::expand<uint64_t>(m, v); }

inline void _mm512_stream_si512(simde__m512i* p, simde__m512i v) { std::memcpy(p, &v, 64); }
