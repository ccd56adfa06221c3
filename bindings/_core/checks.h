// Argument checks shared by the bindings (STYLE.md habit 3): every array that
// reaches the engine is float32 (or int32 where stated), C-contiguous, with the
// shape the engine expects. Failures raise ValueError naming the argument.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <initializer_list>
#include <sstream>
#include <string>
#include <vector>

#include "alexnet/core/matrix.h"

namespace alexnet::bind {

namespace py = pybind11;

// float32 arrays only, never converted implicitly: a silent copy would break
// in-place outputs and hide dtype mistakes.
using FArray = py::array_t<float, py::array::c_style>;
using IArray = py::array_t<int32_t, py::array::c_style>;

inline std::string shape_text(const py::array& a) {
  std::ostringstream out;
  out << "(";
  for (py::ssize_t i = 0; i < a.ndim(); ++i) out << (i ? ", " : "") << a.shape(i);
  out << (a.ndim() == 1 ? ",)" : ")");
  return out.str();
}

// Checks dtype, contiguity and (where `shape` entries are >= 0) the shape.
inline void check_array(const py::handle& obj, const char* name, std::initializer_list<int64_t> shape,
                        bool writable = false, bool int32 = false) {
  if (!py::isinstance<py::array>(obj)) throw py::value_error(std::string(name) + ": expected a numpy array");
  py::array a = py::reinterpret_borrow<py::array>(obj);
  const bool ok_dtype = int32 ? a.dtype().is(py::dtype::of<int32_t>()) : a.dtype().is(py::dtype::of<float>());
  if (!ok_dtype)
    throw py::value_error(std::string(name) + ": expected dtype " + (int32 ? "int32" : "float32") + ", got " +
                          std::string(py::str(a.dtype())));
  if (!(a.flags() & py::array::c_style))
    throw py::value_error(std::string(name) + ": expected a C-contiguous array (use numpy.ascontiguousarray)");
  if (writable && !a.writeable()) throw py::value_error(std::string(name) + ": array is read-only");
  if (static_cast<size_t>(a.ndim()) != shape.size())
    throw py::value_error(std::string(name) + ": expected " + std::to_string(shape.size()) + " dimensions, got " +
                          shape_text(a));
  size_t i = 0;
  for (int64_t want : shape) {
    if (want >= 0 && a.shape(static_cast<py::ssize_t>(i)) != want) {
      std::ostringstream msg;
      msg << name << ": expected shape (";
      size_t j = 0;
      for (int64_t w : shape) msg << (j++ ? ", " : "") << (w >= 0 ? std::to_string(w) : std::string("*"));
      msg << "), got " << shape_text(a);
      throw py::value_error(msg.str());
    }
    ++i;
  }
}

// engine.md §1.4: targets are overwritten (0) or added to (1); nothing else.
inline void check_scale_targets(float s) {
  if (s != 0.0f && s != 1.0f) throw py::value_error("scale_targets: must be 0 (overwrite) or 1 (add)");
}

// A (rows, cols) view of a checked 2-D float32 array.
inline MatView mat(const py::handle& obj, const char* name, int64_t rows = -1, int64_t cols = -1) {
  check_array(obj, name, {rows, cols}, /*writable=*/true);
  py::array a = py::reinterpret_borrow<py::array>(obj);
  return MatView{static_cast<float*>(a.mutable_data()), a.shape(0), a.shape(1)};
}

inline ConstMatView cmat(const py::handle& obj, const char* name, int64_t rows = -1, int64_t cols = -1) {
  check_array(obj, name, {rows, cols});
  py::array a = py::reinterpret_borrow<py::array>(obj);
  return ConstMatView(static_cast<const float*>(a.data()), a.shape(0), a.shape(1));
}

}  // namespace alexnet::bind
