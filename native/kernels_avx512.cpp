#include "kernels.h"
namespace memsim { KernelTable avx512_kernels(bool) { return scalar_kernels(); } }
