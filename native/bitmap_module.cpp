// Placeholder: replaced by the sparse-bitmap codec (issue 2).
#include <nanobind/nanobind.h>
NB_MODULE(_bitmap, m) { m.attr("FORMAT_VERSION") = 0; }
