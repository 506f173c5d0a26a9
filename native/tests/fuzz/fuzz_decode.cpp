// Coverage-guided fuzz target for the decoder (libFuzzer: native/tests/run_fuzz.sh; built with ASan + UBSan).
//
// Input: an arbitrary buffer, handed to validate() + decode_into() exactly as memsim._bitmap does, with every
// kernel family this CPU runs and with the "auto" mode. Checked on every input:
//   - no out-of-bounds access or undefined behaviour (the sanitizers; the input and the output are heap
//     buffers of exactly their size);
//   - every family accepts or rejects the same inputs with the same reason, and decodes them to the same bytes;
//   - decode_into never fails after validate accepted the buffer (nothing changed it in between);
//   - an accepted buffer round-trips: re-encoding the decoded tensor gives at most the input's nnz (a stored
//     value may be zero), and decoding that encoding gives the same tensor back.
// Any violation aborts, which the fuzzer reports as a crash with the input saved.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "../../codec.h"

using namespace memsim;

namespace {

[[noreturn]] void fail(const char* what, const std::string& isa) {
  std::fprintf(stderr, "fuzz_decode: %s (kernels %s)\n", what, isa.c_str());
  std::abort();
}

const std::vector<std::string>& modes() {
  static const std::vector<std::string> m = [] {
    std::vector<std::string> v = available_isas();
    v.push_back("auto");
    return v;
  }();
  return m;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // Exactly-sized heap copy: the sanitizer flags a read one byte past the end.
  uint8_t* buf = static_cast<uint8_t*>(std::malloc(size ? size : 1));
  if (size) std::memcpy(buf, data, size);
  std::vector<uint8_t> first_out;
  const char* first_err = nullptr;
  for (size_t m = 0; m < modes().size(); ++m) {
    const std::string& isa = modes()[m];
    set_isa(isa);
    Header h;
    const char* err = validate(buf, size, &h);
    if (m == 0) {
      first_err = err;
    } else if ((err == nullptr) != (first_err == nullptr) || (err && std::strcmp(err, first_err) != 0)) {
      fail("families disagree on validity", isa);
    }
    if (err) continue;
    const uint64_t out_bytes = h.numel * static_cast<uint64_t>(h.itemsize);
    // validate() bounds numel by the bitmap that is present: at most 8 * size elements.
    if (h.numel > 8 * static_cast<uint64_t>(size)) fail("numel not bounded by the buffer", isa);
    uint8_t* out = static_cast<uint8_t*>(std::malloc(out_bytes ? out_bytes : 1));
    if (decode_into(buf, h, out) != nullptr) fail("decode_into failed on a validated buffer", isa);
    if (m == 0) {
      first_out.assign(out, out + out_bytes);
    } else if (out_bytes && std::memcmp(first_out.data(), out, out_bytes) != 0) {
      fail("families decode to different bytes", isa);
    }
    // Round trip of the decoded tensor.
    Header e = h;
    const uint64_t cap = encoded_bytes(h.numel, h.numel, h.itemsize);
    uint8_t* enc = static_cast<uint8_t*>(std::malloc(cap));
    const int64_t n = encode_into(out, e, enc, cap);
    if (n < 0 || static_cast<uint64_t>(n) > size) fail("re-encoding is larger than the input", isa);
    Header h2;
    if (validate(enc, static_cast<uint64_t>(n), &h2) != nullptr) fail("re-encoding does not validate", isa);
    if (h2.nnz > h.nnz || h2.numel != h.numel || h2.dtype != h.dtype) fail("re-encoding header differs", isa);
    uint8_t* out2 = static_cast<uint8_t*>(std::malloc(out_bytes ? out_bytes : 1));
    if (decode_into(enc, h2, out2) != nullptr || (out_bytes && std::memcmp(out, out2, out_bytes) != 0))
      fail("round trip of a decoded tensor differs", isa);
    std::free(out2);
    std::free(enc);
    std::free(out);
  }
  std::free(buf);
  return 0;
}
