// AVX-512 VBMI2 kernels (x86-64, compiled with -mavx512f -mavx512bw -mavx512vl -mavx512vbmi2 -mavx2 -mpopcnt
// -mbmi): encode/decode of 1- and 2-byte elements with vpcompressb/w and vpexpandb/w. The only unit built with
// VBMI2; codec.cpp calls into it only when CPUID reports avx512vbmi2 (Ice Lake, Zen 4 and later).
#include "kernels_avx512_impl.h"

#if !MEMSIM_HAVE_VBMI2
#error "kernels_avx512_vbmi2.cpp needs -mavx512vbmi2"
#endif

namespace memsim {

const KernelTable& avx512_vbmi2_kernels() {
  static const KernelTable t = {
      "avx512vbmi2",
      {encode_avx512<1>, encode_avx512<2>, nullptr, nullptr},
      {decode_avx512<1>, decode_avx512<2>, nullptr, nullptr},
      {nullptr, nullptr, nullptr, nullptr},
      nullptr,
  };
  return t;
}

}  // namespace memsim
