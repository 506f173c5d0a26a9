// The memsim sparse-bitmap format, version 1 (see native/README.md for the full description).
//
//   offset  size            field
//   0       4               magic "MSBM"
//   4       1               version (1)
//   5       1               dtype code (DType below)
//   6       1               ndim, 0..8
//   7       1               flags, must be 0 (reserved)
//   8       8               nnz: number of stored (non-zero) values, u64 little-endian
//   16      48              shape: 8 dims x u48 little-endian; dims >= ndim must be 0
//   64      8*ceil(n/64)    bitmap: bit i (byte i/8, bit i%8, LSB first) set when element i is non-zero;
//                           padded with zero bits to a multiple of 8 bytes
//   ...     nnz*itemsize    the non-zero values, in element order, native little-endian
//
// A value is "zero" only when all of its bits are zero, so -0.0, NaN payloads, inf and denormals are stored.
// The encoded size is therefore exactly 64 + 8*ceil(n/64) + nnz*itemsize bytes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace memsim {

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "memsim codec assumes a little-endian host");

constexpr uint8_t kMagic[4] = {'M', 'S', 'B', 'M'};
constexpr uint8_t kFormatVersion = 1;
constexpr size_t kHeaderBytes = 64;
constexpr int kMaxDims = 8;
constexpr uint64_t kMaxDim = (uint64_t{1} << 48) - 1;
// Largest tensor payload accepted (bytes); keeps every size computation far from 64-bit overflow.
constexpr uint64_t kMaxPayloadBytes = uint64_t{1} << 60;

enum class DType : uint8_t {
  Bool = 1,
  UInt8 = 2,
  Int8 = 3,
  Int16 = 4,
  Int32 = 5,
  Int64 = 6,
  Float16 = 7,
  BFloat16 = 8,
  Float32 = 9,
  Float64 = 10,
};

inline int dtype_itemsize(uint8_t code) {
  switch (static_cast<DType>(code)) {
    case DType::Bool:
    case DType::UInt8:
    case DType::Int8: return 1;
    case DType::Int16:
    case DType::Float16:
    case DType::BFloat16: return 2;
    case DType::Int32:
    case DType::Float32: return 4;
    case DType::Int64:
    case DType::Float64: return 8;
  }
  return 0;
}

inline int log2_itemsize(int itemsize) { return itemsize == 1 ? 0 : itemsize == 2 ? 1 : itemsize == 4 ? 2 : 3; }

inline uint64_t bitmap_bytes(uint64_t numel) { return ((numel + 63) / 64) * 8; }

inline uint64_t encoded_bytes(uint64_t numel, uint64_t nnz, int itemsize) {
  return kHeaderBytes + bitmap_bytes(numel) + nnz * static_cast<uint64_t>(itemsize);
}

struct Header {
  uint8_t dtype = 0;
  int ndim = 0;
  uint64_t shape[kMaxDims] = {};
  uint64_t numel = 1;
  uint64_t nnz = 0;
  int itemsize = 0;
};

inline void put_u64(uint8_t* p, uint64_t v) { std::memcpy(p, &v, 8); }
inline uint64_t get_u64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}
inline void put_u48(uint8_t* p, uint64_t v) {
  for (int i = 0; i < 6; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
inline uint64_t get_u48(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 0; i < 6; ++i) v |= static_cast<uint64_t>(p[i]) << (8 * i);
  return v;
}

inline void write_header(uint8_t* out, const Header& h) {
  std::memset(out, 0, kHeaderBytes);
  std::memcpy(out, kMagic, 4);
  out[4] = kFormatVersion;
  out[5] = h.dtype;
  out[6] = static_cast<uint8_t>(h.ndim);
  out[7] = 0;
  put_u64(out + 8, h.nnz);
  for (int d = 0; d < h.ndim; ++d) put_u48(out + 16 + 6 * d, h.shape[d]);
}

// Checks a shape and computes numel; returns nullptr or the reason it is invalid.
inline const char* check_shape(int ndim, const uint64_t* shape, int itemsize, uint64_t* numel_out) {
  if (ndim < 0 || ndim > kMaxDims) return "ndim must be 0..8";
  uint64_t numel = 1;
  bool empty = false;
  for (int d = 0; d < ndim; ++d) {
    if (shape[d] > kMaxDim) return "a dimension exceeds 2**48-1";
    if (shape[d] == 0) empty = true;
  }
  if (empty) {
    *numel_out = 0;
    return nullptr;
  }
  for (int d = 0; d < ndim; ++d) {
    if (__builtin_mul_overflow(numel, shape[d], &numel)) return "shape product overflows 64 bits";
  }
  uint64_t payload;
  if (__builtin_mul_overflow(numel, static_cast<uint64_t>(itemsize), &payload) || payload > kMaxPayloadBytes)
    return "tensor larger than 2**60 bytes";
  *numel_out = numel;
  return nullptr;
}

// Parses and bounds-checks the header of a buffer of `len` bytes. Everything except the bitmap popcount is
// checked here: magic, version, dtype, flags, ndim, unused dims, shape overflow, nnz <= numel and the exact
// total length. Returns nullptr on success or a human-readable reason.
inline const char* parse_header(const uint8_t* buf, uint64_t len, Header* h) {
  if (len < kHeaderBytes) return "buffer shorter than the 64-byte header (truncated?)";
  if (std::memcmp(buf, kMagic, 4) != 0) return "bad magic: not a memsim bitmap encoding";
  if (buf[4] != kFormatVersion) return "unsupported format version";
  h->dtype = buf[5];
  h->itemsize = dtype_itemsize(buf[5]);
  if (h->itemsize == 0) return "unknown dtype code";
  h->ndim = buf[6];
  if (h->ndim > kMaxDims) return "ndim larger than 8";
  if (buf[7] != 0) return "reserved flags byte is not 0";
  h->nnz = get_u64(buf + 8);
  for (int d = 0; d < kMaxDims; ++d) {
    uint64_t v = get_u48(buf + 16 + 6 * d);
    if (d >= h->ndim && v != 0) return "unused shape slot is not 0";
    h->shape[d] = d < h->ndim ? v : 0;
  }
  const char* err = check_shape(h->ndim, h->shape, h->itemsize, &h->numel);
  if (err) return err;
  if (h->nnz > h->numel) return "nnz larger than the number of elements";
  if (len != encoded_bytes(h->numel, h->nnz, h->itemsize))
    return len < encoded_bytes(h->numel, h->nnz, h->itemsize) ? "buffer truncated: shorter than header says"
                                                              : "buffer longer than header says (trailing bytes)";
  return nullptr;
}

}  // namespace memsim
