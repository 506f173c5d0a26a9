// memsim._bitmap: the Python face of the sparse-bitmap codec (memsim/codec.py wraps it).
//
// Every argument that carries memory is a typed nanobind ndarray: CPU, C-contiguous, and no implicit
// conversion (`noconvert`), so nanobind rejects anything else with a TypeError instead of copying it, and no
// Python caller can hand the native code a raw address. Tensors: `nb::ndarray<nb::ro, nb::c_contig,
// nb::device::cpu>` whose DLPack dtype must match the dtype code passed with it (BFLOAT16 also accepts 16-bit
// integer storage, since numpy has no bfloat16); encoded buffers and `out=` buffers: 1-D uint8. numpy arrays,
// torch tensors (memsim.codec passes `tensor.numpy()` views: ~1 us against ~4 us for torch's __dlpack__),
// bytes, bytearray and memoryviews all come in without a copy. Every kernel runs with the GIL released.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <optional>
#include <string>
#include <vector>

#include <cstdlib>
#include <stdexcept>

#if defined(__linux__)
#include <sys/mman.h>
#endif

#include "codec.h"

namespace nb = nanobind;
using namespace memsim;

namespace {

// Memory for an encoding or a decoded tensor, 64-byte aligned. For an encoding, whose final size is known only
// after encoding, the worst case is reserved, then the unused tail is given back without copying. Large buffers
// are mmap'ed 2 MiB aligned with transparent huge pages (numpy also asks for them on its large arrays): with
// 4 KiB pages the page faults of fresh memory cost more than the codec itself on many VMs.
class OutputMemory {
 public:
  explicit OutputMemory(uint64_t bytes) {
#if defined(__linux__)
    if (bytes >= kHugeThreshold) {
      len_ = round_up(bytes, kHuge);
      size_t span = len_ + kHuge;
      void* base = mmap(nullptr, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (base == MAP_FAILED) throw std::bad_alloc();
      uintptr_t b = reinterpret_cast<uintptr_t>(base);
      uintptr_t aligned = round_up(b, kHuge);
      if (aligned > b) munmap(base, aligned - b);
      if (b + span > aligned + len_) munmap(reinterpret_cast<void*>(aligned + len_), b + span - (aligned + len_));
      data_ = reinterpret_cast<uint8_t*>(aligned);
      madvise(data_, len_, MADV_HUGEPAGE);
      mmapped_ = true;
      return;
    }
#endif
    // 64-byte aligned (whole AVX-512 vectors); glibc's realloc/free accept aligned_alloc's memory.
    data_ = static_cast<uint8_t*>(std::aligned_alloc(64, round_up(bytes ? bytes : 1, 64)));
    if (!data_) throw std::bad_alloc();
    len_ = bytes;
  }
  ~OutputMemory() {
    if (data_) release(data_, len_, mmapped_);
  }
  OutputMemory(const OutputMemory&) = delete;
  OutputMemory& operator=(const OutputMemory&) = delete;

  uint8_t* data() const { return data_; }
  // Bytes per page of fresh, page-aligned memory (huge pages), or 0 for heap memory that may be reused.
  uint64_t fresh_page_bytes() const { return mmapped_ ? kHuge : 0; }

  void shrink(uint64_t bytes) {
#if defined(__linux__)
    if (mmapped_) {
      size_t keep = round_up(bytes ? bytes : 1, kPage);
      if (keep < len_) {
        munmap(data_ + keep, len_ - keep);
        len_ = keep;
      }
      return;
    }
#endif
    void* p = std::realloc(data_, bytes ? bytes : 1);  // shrinking: in place for glibc
    if (p) {
      data_ = static_cast<uint8_t*>(p);
      len_ = bytes;
    }
  }

  nb::capsule release_to_capsule() {
    auto* info = new Region{data_, len_, mmapped_};
    data_ = nullptr;
    return nb::capsule(info, [](void* p) noexcept {
      auto* r = static_cast<Region*>(p);
      release(r->data, r->len, r->mmapped);
      delete r;
    });
  }

 private:
  struct Region {
    uint8_t* data;
    size_t len;
    bool mmapped;
  };
  static constexpr size_t kPage = 4096;
  static constexpr size_t kHuge = size_t{2} << 20;
  static constexpr size_t kHugeThreshold = size_t{4} << 20;
  static size_t round_up(size_t v, size_t a) { return (v + a - 1) / a * a; }
  static void release(uint8_t* data, size_t len, bool mmapped) {
#if defined(__linux__)
    if (mmapped) {
      munmap(data, len);
      return;
    }
#endif
    (void)len;
    (void)mmapped;
    std::free(data);
  }

  uint8_t* data_ = nullptr;
  size_t len_ = 0;
  bool mmapped_ = false;
};

using TensorIn = nb::ndarray<nb::ro, nb::c_contig, nb::device::cpu>;
using TensorOut = nb::ndarray<nb::c_contig, nb::device::cpu>;
using BytesIn = nb::ndarray<const uint8_t, nb::ndim<1>, nb::c_contig, nb::device::cpu>;
using BytesOut = nb::ndarray<uint8_t, nb::ndim<1>, nb::c_contig, nb::device::cpu>;

// The DLPack dtype a tensor of this dtype code has (bool, ints, floats); BFLOAT16 has two (see above).
bool dtype_matches(uint8_t code, nb::dlpack::dtype d) {
  using C = nb::dlpack::dtype_code;
  if (d.lanes != 1) return false;
  auto is = [&](C c, unsigned bits) { return d.code == static_cast<uint8_t>(c) && d.bits == bits; };
  switch (static_cast<DType>(code)) {
    case DType::Bool: return is(C::Bool, 8);
    case DType::UInt8: return is(C::UInt, 8);
    case DType::Int8: return is(C::Int, 8);
    case DType::Int16: return is(C::Int, 16);
    case DType::Int32: return is(C::Int, 32);
    case DType::Int64: return is(C::Int, 64);
    case DType::Float16: return is(C::Float, 16);
    case DType::BFloat16: return is(C::Bfloat, 16) || is(C::UInt, 16) || is(C::Int, 16);
    case DType::Float32: return is(C::Float, 32);
    case DType::Float64: return is(C::Float, 64);
  }
  return false;
}

// Header (dtype, shape, numel) of a tensor; nanobind already checked CPU and C-contiguity.
template <class A>
Header header_of(const A& a, int dtype_code) {
  Header h;
  if (dtype_code < 0 || dtype_code > 255) throw nb::value_error("unknown dtype code");
  h.dtype = static_cast<uint8_t>(dtype_code);
  h.itemsize = dtype_itemsize(h.dtype);
  if (h.itemsize == 0) throw nb::value_error("unknown dtype code");
  if (!dtype_matches(h.dtype, a.dtype())) throw nb::value_error("array dtype does not match the dtype code");
  if (a.ndim() > static_cast<size_t>(kMaxDims)) throw nb::value_error("at most 8 dimensions are supported");
  h.ndim = static_cast<int>(a.ndim());
  for (int d = 0; d < h.ndim; ++d) h.shape[d] = a.shape(d);
  const char* err = check_shape(h.ndim, h.shape, h.itemsize, &h.numel);
  if (err) throw nb::value_error(err);
  return h;
}

nb::object encode(const TensorIn& x, int dtype_code, std::optional<BytesOut> out) {
  const Header h = header_of(x, dtype_code);
  const uint8_t* src = static_cast<const uint8_t*>(x.data());
  if (out) {
    uint8_t* dst = out->data();
    const uint64_t cap = out->shape(0);
    int64_t size;
    {
      nb::gil_scoped_release release;
      size = encode_into(src, h, dst, cap);
    }
    if (size < 0) {
      uint64_t nnz;
      {
        nb::gil_scoped_release release;
        nnz = count_nonzero(src, h.numel, h.itemsize);
      }
      throw nb::value_error(("out has " + std::to_string(cap) + " bytes; this tensor needs " +
                             std::to_string(encoded_bytes(h.numel, nnz, h.itemsize)))
                                .c_str());
    }
    return nb::int_(size);
  }
  const uint64_t worst = encoded_bytes(h.numel, h.numel, h.itemsize);
  OutputMemory mem(worst);
  int64_t size;
  {
    nb::gil_scoped_release release;
    size = encode_into(src, h, mem.data(), worst);
    if (size >= 0) mem.shrink(static_cast<uint64_t>(size));
  }
  if (size < 0) throw std::runtime_error("internal error: worst-case buffer too small");
  uint8_t* data = mem.data();
  nb::capsule owner = mem.release_to_capsule();
  return nb::cast(nb::ndarray<nb::numpy, uint8_t, nb::ndim<1>>(data, {static_cast<size_t>(size)}, owner));
}

nb::tuple header(const BytesIn& buf) {
  Header h;
  const char* err = parse_header(buf.data(), buf.shape(0), &h);
  if (err) throw nb::value_error(err);
  nb::list shape;
  for (int d = 0; d < h.ndim; ++d) shape.append(nb::int_(h.shape[d]));
  return nb::make_tuple(static_cast<int>(h.dtype), nb::tuple(shape), h.nnz);
}

Header validated(const BytesIn& buf) {
  Header h;
  const char* err;
  {
    nb::gil_scoped_release release;
    err = validate(buf.data(), buf.shape(0), &h);
  }
  if (err) throw nb::value_error(err);
  return h;
}

// `fresh_page_bytes`: see OutputMemory::fresh_page_bytes (0 for memory the caller owns).
void decode_checked(const BytesIn& buf, const Header& h, uint8_t* dst, uint64_t fresh_page_bytes = 0) {
  const char* err;
  {
    nb::gil_scoped_release release;
    err = fresh_page_bytes ? decode_into_fresh(buf.data(), h, dst, fresh_page_bytes) : decode_into(buf.data(), h, dst);
  }
  if (err) throw nb::value_error(err);
}

// Validates `buf` and decodes it into `out`, which must have the encoded dtype and shape.
void decode(const BytesIn& buf, TensorOut& out) {
  const Header h = validated(buf);
  if (!dtype_matches(h.dtype, out.dtype())) throw nb::value_error("out has a different dtype than the encoded tensor");
  if (out.ndim() != static_cast<size_t>(h.ndim))
    throw nb::value_error("out has a different number of dimensions than the encoded tensor");
  for (int d = 0; d < h.ndim; ++d)
    if (out.shape(d) != h.shape[d]) throw nb::value_error("out has a different shape than the encoded tensor");
  decode_checked(buf, h, static_cast<uint8_t*>(out.data()));
}

nb::dlpack::dtype numpy_dtype_of(uint8_t code) {
  switch (static_cast<DType>(code)) {
    case DType::Bool: return nb::dtype<bool>();
    case DType::UInt8: return nb::dtype<uint8_t>();
    case DType::Int8: return nb::dtype<int8_t>();
    case DType::Int16: return nb::dtype<int16_t>();
    case DType::Int32: return nb::dtype<int32_t>();
    case DType::Int64: return nb::dtype<int64_t>();
    case DType::Float16: return {static_cast<uint8_t>(nb::dlpack::dtype_code::Float), 16, 1};
    case DType::BFloat16: return nb::dtype<uint16_t>();  // numpy has no bfloat16: its bits in uint16
    case DType::Float32: return nb::dtype<float>();
    case DType::Float64: return nb::dtype<double>();
  }
  throw nb::value_error("unknown dtype code");
}

// Validates `buf`, decodes it into new memory and returns it as a numpy array of the encoded shape (bfloat16 as
// uint16). The memory is 64-byte aligned (2 MiB aligned with transparent huge pages from 4 MiB on, decoded
// page by page: decode_into_fresh); numpy's own allocations are only 16-byte aligned.
nb::object decode_new(const BytesIn& buf) {
  const Header h = validated(buf);
  const nb::dlpack::dtype dt = numpy_dtype_of(h.dtype);
  OutputMemory mem(h.numel * static_cast<uint64_t>(h.itemsize));
  decode_checked(buf, h, mem.data(), mem.fresh_page_bytes());
  size_t shape[kMaxDims];
  for (int d = 0; d < h.ndim; ++d) shape[d] = static_cast<size_t>(h.shape[d]);
  uint8_t* data = mem.data();
  nb::capsule owner = mem.release_to_capsule();
  return nb::cast(nb::ndarray<nb::numpy>(data, static_cast<size_t>(h.ndim), shape, owner, nullptr, dt));
}

uint64_t count(const TensorIn& x) {
  const auto d = x.dtype();
  if (d.lanes != 1 || (d.bits != 8 && d.bits != 16 && d.bits != 32 && d.bits != 64))
    throw nb::value_error("element size must be 1, 2, 4 or 8 bytes");
  const int itemsize = d.bits / 8;
  uint64_t numel = 1;
  for (size_t i = 0; i < x.ndim(); ++i) numel *= x.shape(i);
  const uint8_t* src = static_cast<const uint8_t*>(x.data());
  nb::gil_scoped_release release;
  return count_nonzero(src, numel, itemsize);
}

Op op_of(const std::string& name) {
  if (name == "encode") return Op::Encode;
  if (name == "decode") return Op::Decode;
  if (name == "count_nonzero") return Op::Count;
  throw nb::value_error(("unknown operation " + name + "; valid: encode, decode, count_nonzero").c_str());
}

void check_itemsize(int itemsize) {
  if (itemsize != 1 && itemsize != 2 && itemsize != 4 && itemsize != 8)
    throw nb::value_error("itemsize must be 1, 2, 4 or 8");
}

}  // namespace

NB_MODULE(_bitmap, m) {
  m.doc() = "Native sparse-bitmap codec (see memsim.codec for the documented API).";
  m.attr("FORMAT_VERSION") = static_cast<int>(kFormatVersion);
  m.attr("HEADER_BYTES") = static_cast<int>(kHeaderBytes);
  m.attr("MAX_DIMS") = kMaxDims;
  m.def("available_isas", &available_isas, "Kernel families usable on this CPU, widest first.");
  m.def("isa", []() { return std::string(active_isa()); }, "'auto' or the forced kernel family.");
  m.def(
      "set_isa",
      [](const std::string& name) {
        const char* err = set_isa(name);
        if (err) throw nb::value_error((std::string(err) + ": " + name).c_str());
      },
      nb::arg("name"));
  m.def(
      "kernel_unit",
      [](const std::string& op, int itemsize) {
        check_itemsize(itemsize);
        const Op o = op_of(op);
        nb::gil_scoped_release release;  // may calibrate (auto mode)
        return kernel_unit(o, itemsize);
      },
      nb::arg("op"), nb::arg("itemsize"), "Unit whose kernel runs for (op, itemsize) now (calibrates in auto mode).");
  m.def(
      "family_unit",
      [](const std::string& family, const std::string& op, int itemsize) {
        check_itemsize(itemsize);
        return family_unit(family, op_of(op), itemsize);
      },
      nb::arg("family"), nb::arg("op"), nb::arg("itemsize"), "Unit of a family's kernel for (op, itemsize).");
  m.def(
      "calibration",
      [](const std::string& op, int itemsize) {
        check_itemsize(itemsize);
        const Op o = op_of(op);
        Calibration c;
        {
          nb::gil_scoped_release release;
          c = calibration(o, itemsize);
        }
        nb::dict speeds;
        for (size_t i = 0; i < c.families.size(); ++i) speeds[nb::str(c.families[i].c_str())] = c.gbps[i];
        return nb::make_tuple(c.chosen, speeds);
      },
      nb::arg("op"), nb::arg("itemsize"),
      "(chosen family, {family: GB/s}) measured by the auto mode's first-use calibration of (op, itemsize).");
  m.def("encode", &encode, nb::arg("x").noconvert(), nb::arg("dtype_code"), nb::arg("out").noconvert().none() = nb::none(),
        "Encode a C-contiguous CPU array; returns a numpy uint8 array, or the size written into `out`.");
  m.def("header", &header, nb::arg("buf").noconvert(),
        "(dtype_code, shape, nnz) from a buffer's header (header checks only).");
  m.def("decode", &decode, nb::arg("buf").noconvert(), nb::arg("out").noconvert(),
        "Validate `buf` and decode it into the C-contiguous CPU array `out` of the encoded dtype and shape.");
  m.def("decode_new", &decode_new, nb::arg("buf").noconvert(),
        "Validate `buf` and decode it into a new numpy array (bfloat16 as uint16).");
  m.def("count_nonzero", &count, nb::arg("x").noconvert(), "Elements whose bits are not all zero.");
  m.def(
      "encoded_size",
      [](uint64_t numel, uint64_t nnz, int itemsize) {
        check_itemsize(itemsize);
        if (nnz > numel) throw nb::value_error("nnz larger than numel");
        uint64_t bytes;
        if (__builtin_mul_overflow(numel, static_cast<uint64_t>(itemsize), &bytes) || bytes > kMaxPayloadBytes)
          throw nb::value_error("tensor too large");
        return encoded_bytes(numel, nnz, itemsize);
      },
      nb::arg("numel"), nb::arg("nnz"), nb::arg("itemsize"));
}
