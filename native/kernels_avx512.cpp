// AVX-512 F+BW+VL kernels (x86-64, compiled with -mavx512f -mavx512bw -mavx512vl -mavx2 -mpopcnt -mbmi and
// deliberately *without* -mavx512vbmi2: chosen on every CPU with F+BW+VL, Skylake-SP included). Provides the
// 4- and 8-byte encode/decode (vpcompressd/q, vpexpandd/q), count_nonzero of every element size (vptestm) and
// the bitmap popcount. 1- and 2-byte encode/decode need VBMI2 and live in kernels_avx512_vbmi2.cpp.
#include "kernels_avx512_impl.h"

#if defined(__AVX512VBMI2__) && !defined(MEMSIM_AVX512_EMULATION)
#error "kernels_avx512.cpp must be compiled without -mavx512vbmi2 (it runs on CPUs without VBMI2)"
#endif

namespace memsim {

const KernelTable& avx512_kernels() {
  static const KernelTable t = {
      "avx512",
      {nullptr, nullptr, encode_avx512<4>, encode_avx512<8>},
      {nullptr, nullptr, decode_avx512<4>, decode_avx512<8>},
      {count_avx512<1>, count_avx512<2>, count_avx512<4>, count_avx512<8>},
      popcount_words,
  };
  return t;
}

}  // namespace memsim
