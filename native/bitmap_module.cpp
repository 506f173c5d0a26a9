// memsim._bitmap: the Python face of the sparse-bitmap codec (memsim/codec.py wraps it).
//
// Arrays come in zero-copy through nanobind's ndarray (DLPack from torch, buffer protocol / DLPack from
// numpy); encoded buffers come in through the buffer protocol. Every kernel runs with the GIL released.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

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

// A contiguous buffer held through the buffer protocol for the lifetime of this object.
class BufferView {
 public:
  BufferView(nb::handle obj, bool writable) {
    int flags = PyBUF_SIMPLE | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj.ptr(), &view_, flags) != 0) {
      PyErr_Clear();
      throw nb::type_error(writable ? "expected a writable contiguous bytes-like object"
                                    : "expected a contiguous bytes-like object (bytes, bytearray, memoryview, "
                                      "numpy uint8 array)");
    }
  }
  ~BufferView() { PyBuffer_Release(&view_); }
  BufferView(const BufferView&) = delete;
  BufferView& operator=(const BufferView&) = delete;
  const uint8_t* data() const { return static_cast<const uint8_t*>(view_.buf); }
  uint8_t* mutable_data() { return static_cast<uint8_t*>(view_.buf); }
  uint64_t size() const { return static_cast<uint64_t>(view_.len); }

 private:
  Py_buffer view_{};
};

// Memory for an encoding whose final size is known only after encoding: the worst case is reserved, then
// the unused tail is given back without copying. Large buffers are mmap'ed with transparent huge pages
// (as numpy does for its large arrays): with 4 KiB pages the page faults of fresh memory cost more than the
// encoding itself on many VMs.
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
    data_ = static_cast<uint8_t*>(std::malloc(bytes ? bytes : 1));
    if (!data_) throw std::bad_alloc();
    len_ = bytes;
  }
  ~OutputMemory() {
    if (data_) release(data_, len_, mmapped_);
  }
  OutputMemory(const OutputMemory&) = delete;
  OutputMemory& operator=(const OutputMemory&) = delete;

  uint8_t* data() const { return data_; }

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

using AnyArray = nb::ndarray<nb::ro, nb::device::cpu>;
using OutArray = nb::ndarray<nb::device::cpu>;

template <class A>
Header header_of(const A& a, int dtype_code) {
  Header h;
  h.dtype = static_cast<uint8_t>(dtype_code);
  h.itemsize = dtype_itemsize(h.dtype);
  if (h.itemsize == 0) throw nb::value_error("unknown dtype code");
  if (a.dtype().lanes != 1 || a.dtype().bits != 8u * static_cast<unsigned>(h.itemsize))
    throw nb::value_error("array item size does not match the dtype code");
  h.ndim = static_cast<int>(a.ndim());
  if (h.ndim > kMaxDims) throw nb::value_error("at most 8 dimensions are supported");
  int64_t expect = 1;
  bool empty = false;
  for (int d = 0; d < h.ndim; ++d) {
    h.shape[d] = a.shape(d);
    if (a.shape(d) == 0) empty = true;
  }
  // C-contiguous check (strides in elements; dims of size 1 may have any stride).
  if (!empty) {
    for (int d = h.ndim - 1; d >= 0; --d) {
      if (a.shape(d) != 1 && a.stride(d) != expect) throw nb::value_error("array is not C-contiguous");
      expect *= static_cast<int64_t>(a.shape(d));
    }
  }
  const char* err = check_shape(h.ndim, h.shape, h.itemsize, &h.numel);
  if (err) throw nb::value_error(err);
  return h;
}

Header header_of_shape(int dtype_code, const std::vector<uint64_t>& shape) {
  Header h;
  h.dtype = static_cast<uint8_t>(dtype_code);
  h.itemsize = dtype_itemsize(h.dtype);
  if (h.itemsize == 0) throw nb::value_error("unknown dtype code");
  if (shape.size() > static_cast<size_t>(kMaxDims)) throw nb::value_error("at most 8 dimensions are supported");
  h.ndim = static_cast<int>(shape.size());
  for (int d = 0; d < h.ndim; ++d) h.shape[d] = shape[d];
  const char* err = check_shape(h.ndim, h.shape, h.itemsize, &h.numel);
  if (err) throw nb::value_error(err);
  return h;
}

nb::object encode_impl(const uint8_t* src, const Header& h, nb::handle out) {
  if (!out.is_none()) {
    BufferView buf(out, true);
    int64_t size;
    {
      nb::gil_scoped_release release;
      size = encode_into(src, h, buf.mutable_data(), buf.size());
    }
    if (size < 0) {
      uint64_t nnz;
      {
        nb::gil_scoped_release release;
        nnz = count_nonzero(src, h.numel, h.itemsize);
      }
      throw nb::value_error(("out has " + std::to_string(buf.size()) + " bytes; this tensor needs " +
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

nb::object encode(const AnyArray& x, int dtype_code, nb::handle out) {
  Header h = header_of(x, dtype_code);
  return encode_impl(static_cast<const uint8_t*>(x.data()), h, out);
}

// Raw-pointer entry points for torch tensors: torch's __dlpack__ costs ~10 us per call, more than encoding
// a small tensor. memsim.codec checks dtype, device and contiguity and keeps the tensor alive during the call.
nb::object encode_ptr(uintptr_t ptr, int dtype_code, const std::vector<uint64_t>& shape, nb::handle out) {
  Header h = header_of_shape(dtype_code, shape);
  if (!ptr && h.numel) throw nb::value_error("null data pointer");
  return encode_impl(reinterpret_cast<const uint8_t*>(ptr), h, out);
}

nb::tuple header(nb::handle buf_obj) {
  BufferView buf(buf_obj, false);
  Header h;
  const char* err = parse_header(buf.data(), buf.size(), &h);
  if (err) throw nb::value_error(err);
  nb::list shape;
  for (int d = 0; d < h.ndim; ++d) shape.append(nb::int_(h.shape[d]));
  return nb::make_tuple(static_cast<int>(h.dtype), nb::tuple(shape), h.nnz);
}

// Validates `buf`, checks it against the output's dtype and shape, decodes into `dst`.
void decode_impl(nb::handle buf_obj, const Header& o, uint8_t* dst) {
  BufferView buf(buf_obj, false);
  Header h;
  const char* err;
  {
    nb::gil_scoped_release release;
    err = validate(buf.data(), buf.size(), &h);
  }
  if (err) throw nb::value_error(err);
  if (dtype_itemsize(o.dtype) != h.itemsize) throw nb::value_error("out has a different item size than the encoded tensor");
  if (o.ndim != h.ndim) throw nb::value_error("out has a different number of dimensions than the encoded tensor");
  for (int d = 0; d < h.ndim; ++d)
    if (o.shape[d] != h.shape[d]) throw nb::value_error("out has a different shape than the encoded tensor");
  {
    nb::gil_scoped_release release;
    err = decode_into(buf.data(), h, dst);
  }
  if (err) throw nb::value_error(err);
}

void decode(nb::handle buf_obj, OutArray& out) {
  BufferView probe(buf_obj, false);
  Header ph;
  // The output's item size is checked against the encoded dtype (a bfloat16 goes into uint16 storage).
  const char* err = parse_header(probe.data(), probe.size(), &ph);
  if (err) throw nb::value_error(err);
  Header o = header_of(out, ph.dtype);
  decode_impl(buf_obj, o, static_cast<uint8_t*>(out.data()));
}

void decode_ptr(nb::handle buf_obj, uintptr_t ptr, int dtype_code, const std::vector<uint64_t>& shape) {
  Header o = header_of_shape(dtype_code, shape);
  if (!ptr && o.numel) throw nb::value_error("null data pointer");
  decode_impl(buf_obj, o, reinterpret_cast<uint8_t*>(ptr));
}

uint64_t count(const AnyArray& x, int itemsize) {
  if (itemsize != 1 && itemsize != 2 && itemsize != 4 && itemsize != 8)
    throw nb::value_error("itemsize must be 1, 2, 4 or 8");
  Header h = header_of(x, itemsize == 1 ? 2 : itemsize == 2 ? 4 : itemsize == 4 ? 5 : 6);
  const uint8_t* src = static_cast<const uint8_t*>(x.data());
  nb::gil_scoped_release release;
  return count_nonzero(src, h.numel, itemsize);
}

uint64_t count_ptr(uintptr_t ptr, uint64_t numel, int itemsize) {
  if (itemsize != 1 && itemsize != 2 && itemsize != 4 && itemsize != 8)
    throw nb::value_error("itemsize must be 1, 2, 4 or 8");
  if (!ptr && numel) throw nb::value_error("null data pointer");
  nb::gil_scoped_release release;
  return count_nonzero(reinterpret_cast<const uint8_t*>(ptr), numel, itemsize);
}

}  // namespace

NB_MODULE(_bitmap, m) {
  m.doc() = "Native sparse-bitmap codec (see memsim.codec for the documented API).";
  m.attr("FORMAT_VERSION") = static_cast<int>(kFormatVersion);
  m.attr("HEADER_BYTES") = static_cast<int>(kHeaderBytes);
  m.attr("MAX_DIMS") = kMaxDims;
  m.def("available_isas", &available_isas, "Instruction sets usable on this CPU, best first.");
  m.def("isa", []() { return std::string(active_isa()); }, "Instruction set of the kernels in use.");
  m.def(
      "set_isa",
      [](const std::string& name) {
        const char* err = set_isa(name);
        if (err) throw nb::value_error((std::string(err) + ": " + name).c_str());
      },
      nb::arg("name"));
  m.def("encode", &encode, nb::arg("x"), nb::arg("dtype_code"), nb::arg("out").none() = nb::none(),
        "Encode a C-contiguous CPU array; returns a numpy uint8 array, or the size written into `out`.");
  m.def("header", &header, nb::arg("buf"), "(dtype_code, shape, nnz) from a buffer's header (header checks only).");
  m.def("decode", &decode, nb::arg("buf"), nb::arg("out"),
        "Validate `buf` and decode it into the C-contiguous CPU array `out`.");
  m.def("count_nonzero", &count, nb::arg("x"), nb::arg("itemsize"));
  m.def("encode_ptr", &encode_ptr, nb::arg("ptr"), nb::arg("dtype_code"), nb::arg("shape"),
        nb::arg("out").none() = nb::none(), "encode() for a C-contiguous CPU buffer at address `ptr` (internal).");
  m.def("decode_ptr", &decode_ptr, nb::arg("buf"), nb::arg("ptr"), nb::arg("dtype_code"), nb::arg("shape"),
        "decode() into a C-contiguous CPU buffer of that dtype and shape at address `ptr` (internal).");
  m.def("count_nonzero_ptr", &count_ptr, nb::arg("ptr"), nb::arg("numel"), nb::arg("itemsize"));
  m.def(
      "encoded_size",
      [](uint64_t numel, uint64_t nnz, int itemsize) {
        if (nnz > numel) throw nb::value_error("nnz larger than numel");
        uint64_t bytes;
        if (__builtin_mul_overflow(numel, static_cast<uint64_t>(itemsize), &bytes) || bytes > kMaxPayloadBytes)
          throw nb::value_error("tensor too large");
        return encoded_bytes(numel, nnz, itemsize);
      },
      nb::arg("numel"), nb::arg("nnz"), nb::arg("itemsize"));
}
