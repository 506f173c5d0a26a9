// Portable scalar kernels: the reference every vector path is tested against, and the fallback.
#include "kernels.h"
#include "kernels_common.h"

namespace memsim {
namespace {

template <int E>
int64_t encode_scalar(const uint8_t* src, uint64_t n, uint8_t* bitmap, uint8_t* vals, uint64_t cap) {
  return encode_scalar_from<E>(src, n, bitmap, vals, cap, 0, 0);
}
template <int E>
bool decode_scalar(const uint8_t* bitmap, const uint8_t* vals, uint64_t nnz, uint64_t n, uint8_t* dst) {
  return decode_scalar_from<E>(bitmap, vals, nnz, n, dst, 0, 0);
}

}  // namespace

const KernelTable& scalar_kernels() {
  static const KernelTable t = {
      "scalar",
      {encode_scalar<1>, encode_scalar<2>, encode_scalar<4>, encode_scalar<8>},
      {decode_scalar<1>, decode_scalar<2>, decode_scalar<4>, decode_scalar<8>},
      {count_scalar<1>, count_scalar<2>, count_scalar<4>, count_scalar<8>},
      popcount_words,
  };
  return t;
}

}  // namespace memsim
