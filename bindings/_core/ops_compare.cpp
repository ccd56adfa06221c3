// Binding of the parity suite's array metrics (engine/cpu/compare.cpp).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>

#include "alexnet/core/compare.h"
#include "checks.h"

namespace alexnet::bind {

void register_compare_ops(py::module_& m) {
  m.def(
      "compare_arrays",
      [](py::array actual, py::array expected, py::object scale_of, py::object mask, double atol_scale,
         double rtol, double rel_floor) {
        check_array(actual, "actual", {-1});
        const int64_t n = actual.size();
        check_array(expected, "expected", {n});
        const float* s = nullptr;
        const uint8_t* mk = nullptr;
        if (!scale_of.is_none()) {
          check_array(scale_of, "scale_of", {n});
          s = static_cast<const float*>(py::reinterpret_borrow<py::array>(scale_of).data());
        }
        if (!mask.is_none()) {
          auto mk_arr = py::reinterpret_borrow<py::array>(mask);
          if (!mk_arr.dtype().is(py::dtype::of<bool>()) || mk_arr.ndim() != 1 || mk_arr.size() != n ||
              !(mk_arr.flags() & py::array::c_style))
            throw py::value_error("mask: expected a contiguous 1-d bool array of " + std::to_string(n) +
                                  " elements");
          mk = static_cast<const uint8_t*>(mk_arr.data());
        }
        const float* a = static_cast<const float*>(actual.data());
        const float* e = static_cast<const float*>(expected.data());
        CompareStats r;
        {
          py::gil_scoped_release release;
          r = compare_arrays(a, e, s, mk, n, atol_scale, rtol, rel_floor);
        }
        py::dict d;
        d["nonfinite_actual"] = r.nonfinite_actual;
        d["nonfinite_expected"] = r.nonfinite_expected;
        d["max_abs_expected"] = r.max_abs_expected;
        d["max_abs_scale"] = r.max_abs_scale;
        d["atol"] = r.atol;
        d["max_abs_diff"] = r.max_abs_diff;
        d["tolerance_used"] = r.tolerance_used;
        d["worst"] = r.worst;
        d["over"] = r.over;
        d["max_rel"] = r.max_rel;
        d["dot"] = r.dot;
        d["norm2_actual"] = r.norm2_actual;
        d["norm2_expected"] = r.norm2_expected;
        d["norm2_diff"] = r.norm2_diff;
        return d;
      },
      py::arg("actual"), py::arg("expected"), py::arg("scale_of") = py::none(), py::arg("mask") = py::none(),
      py::arg("atol_scale") = 0.0, py::arg("rtol") = 0.0, py::arg("rel_floor") = 0.0,
      "Metrics of actual against expected (1-d float32, same length): tolerance atol_scale * max|scale_of| "
      "+ rtol |expected|; where mask is True the element counts as equal. Returns a dict (see compare.h).");
}

}  // namespace alexnet::bind
