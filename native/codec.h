// The codec without Python: instruction-set dispatch, encode and validated decode on raw buffers.
// Used by the nanobind module and by the standalone C++ test (tests/roundtrip_test.cpp).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "format.h"
#include "kernels.h"

namespace memsim {

// Instruction sets this CPU can run, best first; always ends with "scalar".
std::vector<std::string> available_isas();
// Name of the kernels in use.
const char* active_isa();
// Switches kernels; returns nullptr or why not (unknown name, not supported by this CPU).
const char* set_isa(const std::string& name);
const KernelTable& active_kernels();

// Encodes the elements described by `h` (dtype, ndim, shape, numel; nnz is ignored) from `src` into `out`
// (`out_cap` bytes). Returns the encoded size in bytes, or -1 when `out_cap` is too small.
int64_t encode_into(const uint8_t* src, const Header& h, uint8_t* out, uint64_t out_cap);

// Parses the header and validates the bitmap (padding bits zero, popcount == nnz).
// Returns nullptr or the reason the buffer is invalid.
const char* validate(const uint8_t* buf, uint64_t len, Header* h);

// Decodes a buffer that `validate` accepted into `dst` (numel * itemsize bytes).
// Returns nullptr or the reason (only if the buffer changed since it was validated).
const char* decode_into(const uint8_t* buf, const Header& h, uint8_t* dst);

uint64_t count_nonzero(const uint8_t* src, uint64_t numel, int itemsize);

}  // namespace memsim
