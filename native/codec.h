// The codec without Python: instruction-set dispatch, encode and validated decode on raw buffers.
// Used by the nanobind module and by the standalone C++ tests (tests/roundtrip_test.cpp, tests/fuzz_decode.cpp).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "format.h"
#include "kernels.h"

namespace memsim {

// Operations that have one kernel per element size; the dispatcher chooses each (op, size) separately.
enum class Op : int { Encode = 0, Decode = 1, Count = 2 };
constexpr int kNumOps = 3;
const char* op_name(Op op);

// Kernel families this CPU can run, widest first; always ends with "scalar". A family is a complete table;
// its slots come from the units noted by `kernel_unit` (e.g. "avx512" uses the VBMI2 unit for 1- and 2-byte
// elements when the CPU has VBMI2, and the AVX2 kernels for them when it does not).
std::vector<std::string> available_isas();

// "auto" (the default) or the name of a forced family.
const char* active_isa();
// "auto": for every (op, element size), the fastest family on this CPU, measured at the first call of that
// (op, size) and cached for the process. A family name forces that family for everything. Returns nullptr
// or why not (unknown name, not supported by this CPU or build).
const char* set_isa(const std::string& name);
// The table in use: the forced family's, or in "auto" mode a table of trampolines that calibrate on first use.
const KernelTable& active_kernels();
// The table of one family (nullptr if not available here).
const KernelTable* family_kernels(const std::string& name);

// The unit ("avx512", "avx512vbmi2", "avx2", "neon", "scalar") whose kernel runs for (op, itemsize) under the
// active mode; in "auto" mode this runs the calibration of that slot if it has not run yet.
std::string kernel_unit(Op op, int itemsize);
// Unit of a family's slot, without calibrating anything.
std::string family_unit(const std::string& family, Op op, int itemsize);

// What the calibration of one (op, itemsize) slot measured: each candidate family with its throughput
// (GB/s of dense data, best of the rounds) and the family chosen. Runs the calibration if needed.
struct Calibration {
  std::vector<std::string> families;
  std::vector<double> gbps;
  std::string chosen;
};
Calibration calibration(Op op, int itemsize);

// Encodes the elements described by `h` (dtype, ndim, shape, numel; nnz is ignored) from `src` into `out`
// (`out_cap` bytes). Returns the encoded size in bytes, or -1 when `out_cap` is too small.
int64_t encode_into(const uint8_t* src, const Header& h, uint8_t* out, uint64_t out_cap);

// Parses the header and validates the bitmap (padding bits zero, popcount == nnz).
// Returns nullptr or the reason the buffer is invalid.
const char* validate(const uint8_t* buf, uint64_t len, Header* h);

// Decodes a buffer that `validate` accepted into `dst` (numel * itemsize bytes).
// Returns nullptr or the reason (only if the buffer changed since it was validated).
const char* decode_into(const uint8_t* buf, const Header& h, uint8_t* dst);

// Same as decode_into, for `dst` that has never been written (fresh mmap'ed pages of `page_bytes` each,
// `dst` page-aligned): decodes page by page, faulting each page in at its end first (see codec.cpp).
const char* decode_into_fresh(const uint8_t* buf, const Header& h, uint8_t* dst, uint64_t page_bytes);

uint64_t count_nonzero(const uint8_t* src, uint64_t numel, int itemsize);

}  // namespace memsim
