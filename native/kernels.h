// Kernel tables: one per instruction set, each compiled in its own translation unit with its own flags.
// Index [k] of each array is for elements of 1 << k bytes (1, 2, 4, 8).
#pragma once

#include <cstdint>

namespace memsim {

// Encodes n elements: writes 8*ceil(n/64) bitmap bytes and the non-zero values (at most `cap` of them).
// Returns the number of values written, or -1 when more than `cap` values would be needed.
// `bitmap` and `vals` may be unaligned.
using EncodeFn = int64_t (*)(const uint8_t* src, uint64_t n, uint8_t* bitmap, uint8_t* vals, uint64_t cap);
// Decodes n elements from the bitmap and `nnz` packed values. Returns false (output partly written) when
// the bitmap asks for more than `nnz` values; never reads past vals + nnz*itemsize.
using DecodeFn = bool (*)(const uint8_t* bitmap, const uint8_t* vals, uint64_t nnz, uint64_t n, uint8_t* dst);
// Counts elements whose bits are not all zero.
using CountFn = uint64_t (*)(const uint8_t* src, uint64_t n);

// A slot may be nullptr in a unit that does not provide that kernel (kernels_avx512.cpp has no 1- and 2-byte
// encode/decode, kernels_avx512_vbmi2.cpp only those); codec.cpp composes the tables callers see.
struct KernelTable {
  const char* name;
  EncodeFn encode[4];
  DecodeFn decode[4];
  CountFn count_nonzero[4];
  // Popcount of `bytes` bitmap bytes (a multiple of 8), used to validate nnz before decoding.
  uint64_t (*bitmap_popcount)(const uint8_t* bitmap, uint64_t bytes);
};

const KernelTable& scalar_kernels();
#if defined(__x86_64__) || defined(_M_X64)
const KernelTable& avx2_kernels();
// AVX-512 F+BW+VL (kernels_avx512.cpp, compiled without VBMI2): encode/decode of 4- and 8-byte elements,
// count_nonzero of every size, bitmap popcount. The 1- and 2-byte encode/decode slots are nullptr.
const KernelTable& avx512_kernels();
// AVX-512 VBMI2 (kernels_avx512_vbmi2.cpp, the only unit compiled with -mavx512vbmi2): encode/decode of 1- and
// 2-byte elements (vpcompressb/w, vpexpandb/w); every other slot is nullptr. Only for CPUs with the vbmi2 bit.
const KernelTable& avx512_vbmi2_kernels();
#endif
#if defined(__aarch64__)
const KernelTable& neon_kernels();
#endif

}  // namespace memsim
