// NEON kernels for aarch64 (Jetson, Raspberry Pi 4/5); NEON is part of the aarch64 baseline, so no flags.
//
// vtst gives all-ones lanes for non-zero elements; AND with lane weights and a horizontal add (vaddv) turns
// them into mask bits. Packing and unpacking use table lookups (tbl) with byte controls looked up by the
// lane mask; a control byte >= 16 yields 0, which zeroes the empty lanes when decoding. As in the x86
// paths, full-vector loads/stores of values run only while a whole block of value slots remains.
#include <arm_neon.h>

#include "kernels.h"
#include "kernels_common.h"

namespace memsim {
namespace {

struct Luts {
  uint8_t c8[4][16], e8[4][16];      // 2 lanes of 8 bytes
  uint8_t c4[16][16], e4[16][16];    // 4 lanes of 4 bytes
  uint8_t c2[256][16], e2[256][16];  // 8 lanes of 2 bytes
  uint8_t c1[256][8], e1[256][8];    // 8 lanes of 1 byte
};

template <int E, int L, int M, int W>
constexpr void fill(uint8_t (&c)[M][W], uint8_t (&e)[M][W]) {
  for (int m = 0; m < M; ++m) {
    for (int i = 0; i < W; ++i) {
      c[m][i] = 0xFF;
      e[m][i] = 0xFF;
    }
    int k = 0;
    for (int j = 0; j < L; ++j) {
      if (m >> j & 1) {
        for (int b = 0; b < E; ++b) {
          c[m][k * E + b] = static_cast<uint8_t>(j * E + b);
          e[m][j * E + b] = static_cast<uint8_t>(k * E + b);
        }
        ++k;
      }
    }
  }
}

constexpr Luts make_luts() {
  Luts t{};
  fill<8, 2>(t.c8, t.e8);
  fill<4, 4>(t.c4, t.e4);
  fill<2, 8>(t.c2, t.e2);
  fill<1, 8>(t.c1, t.e1);
  return t;
}

alignas(64) constexpr Luts kLut = make_luts();

inline uint64_t pop(uint64_t m) { return static_cast<uint64_t>(__builtin_popcountll(m)); }

// Non-zero mask of the 64 elements of a block.
template <int E>
inline uint64_t block_mask(const uint8_t* s) {
  uint64_t bm = 0;
  if constexpr (E == 8) {
    const uint64x2_t w = {1, 2};
    for (int g = 0; g < 32; ++g) {
      uint64x2_t v = vld1q_u64(reinterpret_cast<const uint64_t*>(s + 16 * g));
      bm |= vaddvq_u64(vandq_u64(vtstq_u64(v, v), w)) << (2 * g);
    }
  } else if constexpr (E == 4) {
    const uint32x4_t w = {1, 2, 4, 8};
    for (int g = 0; g < 16; ++g) {
      uint32x4_t v = vld1q_u32(reinterpret_cast<const uint32_t*>(s + 16 * g));
      bm |= static_cast<uint64_t>(vaddvq_u32(vandq_u32(vtstq_u32(v, v), w))) << (4 * g);
    }
  } else if constexpr (E == 2) {
    const uint16x8_t w = {1, 2, 4, 8, 16, 32, 64, 128};
    for (int g = 0; g < 8; ++g) {
      uint16x8_t v = vld1q_u16(reinterpret_cast<const uint16_t*>(s + 16 * g));
      bm |= static_cast<uint64_t>(vaddvq_u16(vandq_u16(vtstq_u16(v, v), w))) << (8 * g);
    }
  } else {
    const uint8x8_t w = {1, 2, 4, 8, 16, 32, 64, 128};
    for (int g = 0; g < 8; ++g) {
      uint8x8_t v = vld1_u8(s + 8 * g);
      bm |= static_cast<uint64_t>(vaddv_u8(vand_u8(vtst_u8(v, v), w))) << (8 * g);
    }
  }
  return bm;
}

template <int E>
int64_t encode_neon(const uint8_t* src, uint64_t n, uint8_t* bitmap, uint8_t* vals, uint64_t cap) {
  const uint64_t full_blocks = n / 64;
  uint64_t k = 0, b = 0;
  for (; b < full_blocks && cap - k >= 64; ++b) {
    const uint8_t* s = src + b * 64 * E;
    const uint64_t bm = block_mask<E>(s);
    store_as<uint64_t>(bitmap + b * 8, bm);
    if (bm == ~uint64_t{0}) {
      std::memcpy(vals + k * E, s, 64 * E);
      k += 64;
      continue;
    }
    if (bm == 0) continue;
    if constexpr (E == 1) {
      for (int g = 0; g < 8; ++g) {
        const unsigned m = static_cast<unsigned>(bm >> (8 * g)) & 0xFF;
        vst1_u8(vals + k, vtbl1_u8(vld1_u8(s + 8 * g), vld1_u8(kLut.c1[m])));
        k += pop(m);
      }
    } else {
      constexpr int L = 16 / E;  // lanes per 16-byte vector
      constexpr unsigned lane_mask = (1u << L) - 1;
      for (int g = 0; g < 4 * E; ++g) {
        const unsigned m = static_cast<unsigned>(bm >> (L * g)) & lane_mask;
        const uint8_t* ctl = E == 8 ? kLut.c8[m] : E == 4 ? kLut.c4[m] : kLut.c2[m];
        vst1q_u8(vals + k * E, vqtbl1q_u8(vld1q_u8(s + 16 * g), vld1q_u8(ctl)));
        k += pop(m);
      }
    }
  }
  return encode_scalar_from<E>(src, n, bitmap, vals, cap, b, k);
}

template <int E>
bool decode_neon(const uint8_t* bitmap, const uint8_t* vals, uint64_t nnz, uint64_t n, uint8_t* dst) {
  const uint64_t full_blocks = n / 64;
  uint64_t k = 0, b = 0;
  for (; b < full_blocks && nnz - k >= 64; ++b) {
    const uint64_t bm = load_as<uint64_t>(bitmap + b * 8);
    uint8_t* d = dst + b * 64 * E;
    if (bm == ~uint64_t{0}) {
      std::memcpy(d, vals + k * E, 64 * E);
      k += 64;
      continue;
    }
    if (bm == 0) {
      std::memset(d, 0, 64 * E);
      continue;
    }
    if constexpr (E == 1) {
      for (int g = 0; g < 8; ++g) {
        const unsigned m = static_cast<unsigned>(bm >> (8 * g)) & 0xFF;
        vst1_u8(d + 8 * g, vtbl1_u8(vld1_u8(vals + k), vld1_u8(kLut.e1[m])));
        k += pop(m);
      }
    } else {
      constexpr int L = 16 / E;
      constexpr unsigned lane_mask = (1u << L) - 1;
      for (int g = 0; g < 4 * E; ++g) {
        const unsigned m = static_cast<unsigned>(bm >> (L * g)) & lane_mask;
        const uint8_t* ctl = E == 8 ? kLut.e8[m] : E == 4 ? kLut.e4[m] : kLut.e2[m];
        vst1q_u8(d + 16 * g, vqtbl1q_u8(vld1q_u8(vals + k * E), vld1q_u8(ctl)));
        k += pop(m);
      }
    }
  }
  return decode_scalar_from<E>(bitmap, vals, nnz, n, dst, b, k);
}

template <int E>
uint64_t count_neon(const uint8_t* src, uint64_t n) {
  const uint64_t full_blocks = n / 64;
  uint64_t c = 0;
  for (uint64_t b = 0; b < full_blocks; ++b) c += pop(block_mask<E>(src + b * 64 * E));
  return c + count_scalar<E>(src + full_blocks * 64 * E, n - full_blocks * 64);
}

uint64_t popcount_neon(const uint8_t* bitmap, uint64_t bytes) {
  uint64_t c = 0, i = 0;
  for (; i + 16 <= bytes; i += 16) c += vaddvq_u8(vcntq_u8(vld1q_u8(bitmap + i)));
  return c + popcount_words(bitmap + i, bytes - i);
}

}  // namespace

const KernelTable& neon_kernels() {
  static const KernelTable t = {
      "neon",
      {encode_neon<1>, encode_neon<2>, encode_neon<4>, encode_neon<8>},
      {decode_neon<1>, decode_neon<2>, decode_neon<4>, decode_neon<8>},
      {count_neon<1>, count_neon<2>, count_neon<4>, count_neon<8>},
      popcount_neon,
  };
  return t;
}

}  // namespace memsim
