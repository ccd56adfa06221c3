// Bindings of the normalisation layers (engine.md §3.7–§3.10): rnorm, cmrnorm,
// cnorm. Thin: check arrays and parameters, release the GIL, call the engine.
// α is passed already rewritten by the cfg reader (scale/size for cmrnorm,
// scale/size² for rnorm and cnorm); these functions never rewrite it.
#include <pybind11/pybind11.h>

#include <cstdint>
#include <initializer_list>
#include <string>
#include <utility>

#include "alexnet/cpu/norm.h"
#include "checks.h"

namespace alexnet::bind {

namespace {

bool overlap(const ConstMatView& a, const ConstMatView& b) {
  if (a.size() == 0 || b.size() == 0) return false;
  return a.data < b.data + b.size() && b.data < a.data + a.size();
}

// The backward's buffers: dx must not share memory with any argument (the
// window sums read neighbours of A, and the results must not depend on how a
// caller laid out buffers); scratch may be y itself (the release's in-place
// prelim, engine.md §13 item 9) but must not touch x/mean_diffs, denoms, dy.
void check_bprop_aliasing(const char* xname, ConstMatView x, ConstMatView y, ConstMatView denoms, ConstMatView dy,
                          ConstMatView dx, ConstMatView scratch) {
  const std::pair<const char*, ConstMatView> inputs[] = {{xname, x}, {"y", y}, {"denoms", denoms}, {"dy", dy},
                                                         {"scratch", scratch}};
  for (const auto& [name, v] : inputs)
    if (overlap(dx, v)) throw py::value_error(std::string("dx: must not share memory with ") + name);
  for (const auto& [name, v] : inputs) {
    if (std::string(name) == "scratch" || std::string(name) == "y") continue;
    if (overlap(scratch, v)) throw py::value_error(std::string("scratch: must not share memory with ") + name);
  }
  if (overlap(scratch, y) && scratch.data != y.data)
    throw py::value_error("scratch: may be y itself (the release's in-place prelim) but must not partly overlap it");
}

void check_fprop_aliasing(std::initializer_list<std::pair<const char*, ConstMatView>> outs, ConstMatView x) {
  for (const auto& [name, v] : outs)
    if (overlap(v, x)) throw py::value_error(std::string(name) + ": must not share memory with x");
  for (auto a = outs.begin(); a != outs.end(); ++a)
    for (auto b = a + 1; b != outs.end(); ++b)
      if (overlap(a->second, b->second))
        throw py::value_error(std::string(b->first) + ": must not share memory with " + a->first);
}

// The parameter structs, checked by the net plan's checks (core/op_params.h).
SpatialNormParams spatial_params(int64_t channels, int64_t img_size, int64_t size, float alpha, float beta) {
  const SpatialNormParams p{channels, img_size, size, alpha, beta};
  check_spatial_norm_params(p);
  return p;
}

CrossMapNormParams cross_map_params(int64_t channels, int64_t size, float alpha, float beta, float min_div,
                                    bool blocked, int64_t rows) {
  CrossMapNormParams p;
  p.channels = channels;
  p.size = size;
  p.alpha = alpha;
  p.beta = beta;
  p.min_div = min_div;
  p.blocked = blocked;
  check_cross_map_norm_params(p);
  if (rows % channels != 0)
    throw py::value_error("x: expected channels (" + std::to_string(channels) + ") to divide the row count " +
                          std::to_string(rows));
  return p;
}

constexpr const char* kSpatialShapes =
    "All arrays are float32, C-contiguous, shape (channels*img_size*img_size, N): images (C, S, S, N) with the "
    "case index fastest. ";

}  // namespace

void register_norm_ops(pybind11::module_& m) {
  // ----- rnorm (§3.8) -----
  m.def(
      "rnorm_fprop",
      [](py::object x, py::object y, py::object denoms, int64_t channels, int64_t img_size, int64_t size, float alpha,
         float beta) {
        const SpatialNormParams p = spatial_params(channels, img_size, size, alpha, beta);
        const int64_t rows = channels * img_size * img_size;
        ConstMatView xv = cmat(x, "x", rows);
        MatView yv = mat(y, "y", rows, xv.cols);
        MatView dv = mat(denoms, "denoms", rows, xv.cols);
        check_fprop_aliasing({{"y", yv}, {"denoms", dv}}, xv);
        py::gil_scoped_release release;
        cpu::rnorm_fprop(p, xv, yv, dv);
      },
      py::arg("x"), py::arg("y"), py::arg("denoms"), py::arg("channels"), py::arg("img_size"), py::arg("size"),
      py::arg("alpha"), py::arg("beta"),
      (std::string("Spatial response normalisation forward (engine.md §3.8). ") + kSpatialShapes +
       "Overwrites y = x * denoms**(-beta) and denoms = 1 + alpha * (sum of x**2 over the size x size window "
       "starting size//2 before each pixel, clipped). alpha is scale/size**2 (already rewritten, §3.7).")
          .c_str());
  m.def(
      "rnorm_bprop",
      [](py::object x, py::object y, py::object denoms, py::object dy, py::object dx, py::object scratch,
         int64_t channels, int64_t img_size, int64_t size, float alpha, float beta, float scale_targets) {
        check_scale_targets(scale_targets);
        const SpatialNormParams p = spatial_params(channels, img_size, size, alpha, beta);
        const int64_t rows = channels * img_size * img_size;
        ConstMatView xv = cmat(x, "x", rows);
        const int64_t n = xv.cols;
        ConstMatView yv = cmat(y, "y", rows, n), dv = cmat(denoms, "denoms", rows, n), dyv = cmat(dy, "dy", rows, n);
        MatView dxv = mat(dx, "dx", rows, n), sv = mat(scratch, "scratch", rows, n);
        check_bprop_aliasing("x", xv, yv, dv, dyv, dxv, sv);
        py::gil_scoped_release release;
        cpu::rnorm_bprop(p, xv, yv, dv, dyv, dxv, sv, scale_targets);
      },
      py::arg("x"), py::arg("y"), py::arg("denoms"), py::arg("dy"), py::arg("dx"), py::arg("scratch"),
      py::arg("channels"), py::arg("img_size"), py::arg("size"), py::arg("alpha"), py::arg("beta"),
      py::arg("scale_targets") = 0.0f,
      (std::string("Spatial response normalisation backward (engine.md §3.8). ") + kSpatialShapes +
       "x, y, denoms from the forward; dy = -dE/dy. Writes A = (-2*alpha*beta)*dy*y/denoms into scratch, then "
       "dx <- scale_targets*dx + x*(sum of A over the adjoint window) + dy*denoms**(-beta). scratch may be y "
       "itself, which reproduces the release (it destroyed the layer's output, engine.md §13 item 9).")
          .c_str());

  // ----- cmrnorm (§3.9) -----
  m.def(
      "cmrnorm_fprop",
      [](py::object x, py::object y, py::object denoms, int64_t channels, int64_t size, float alpha, float beta,
         float min_div, bool blocked) {
        ConstMatView xv = cmat(x, "x");
        const CrossMapNormParams p = cross_map_params(channels, size, alpha, beta, min_div, blocked, xv.rows);
        MatView yv = mat(y, "y", xv.rows, xv.cols);
        MatView dv = mat(denoms, "denoms", xv.rows, xv.cols);
        check_fprop_aliasing({{"y", yv}, {"denoms", dv}}, xv);
        py::gil_scoped_release release;
        cpu::cmrnorm_fprop(p, xv, yv, dv);
      },
      py::arg("x"), py::arg("y"), py::arg("denoms"), py::arg("channels"), py::arg("size"), py::arg("alpha"),
      py::arg("beta"), py::arg("min_div") = 1.0f, py::arg("blocked") = false,
      "Cross-map response normalisation forward (engine.md §3.9, AlexNet's LRN). All arrays are float32, "
      "C-contiguous, shape (channels*P, N): maps (F, P, N), P pixels per map, case fastest. Overwrites "
      "y = x * denoms**(-beta) and denoms = min_div + alpha * (sum of x**2 over channels "
      "[f - size//2, f - size//2 + size) clipped, or f's block [f//size*size, f//size*size + size) when blocked). "
      "alpha is scale/size (already rewritten, §3.7).");
  m.def(
      "cmrnorm_bprop",
      [](py::object x, py::object y, py::object denoms, py::object dy, py::object dx, py::object scratch,
         int64_t channels, int64_t size, float alpha, float beta, bool blocked, float scale_targets) {
        check_scale_targets(scale_targets);
        ConstMatView xv = cmat(x, "x");
        // min_div is not needed: the stored denoms carry it (§3.9).
        const CrossMapNormParams p = cross_map_params(channels, size, alpha, beta, 1.0f, blocked, xv.rows);
        const int64_t rows = xv.rows, n = xv.cols;
        ConstMatView yv = cmat(y, "y", rows, n), dv = cmat(denoms, "denoms", rows, n), dyv = cmat(dy, "dy", rows, n);
        MatView dxv = mat(dx, "dx", rows, n), sv = mat(scratch, "scratch", rows, n);
        check_bprop_aliasing("x", xv, yv, dv, dyv, dxv, sv);
        py::gil_scoped_release release;
        cpu::cmrnorm_bprop(p, xv, yv, dv, dyv, dxv, sv, scale_targets);
      },
      py::arg("x"), py::arg("y"), py::arg("denoms"), py::arg("dy"), py::arg("dx"), py::arg("scratch"),
      py::arg("channels"), py::arg("size"), py::arg("alpha"), py::arg("beta"), py::arg("blocked") = false,
      py::arg("scale_targets") = 0.0f,
      "Cross-map response normalisation backward (engine.md §3.9). Arrays (channels*P, N) as in cmrnorm_fprop; "
      "x, y, denoms from the forward; dy = -dE/dy. Writes A = (-2*alpha*beta)*dy*y/denoms into scratch, then "
      "dx <- scale_targets*dx + x*(sum of A[f'] over the f' whose window holds f) + dy*denoms**(-beta). scratch "
      "may be y itself, which reproduces the release (it destroyed the layer's output, engine.md §13 item 9).");

  // ----- cnorm (§3.10, as written) -----
  m.def(
      "cnorm_fprop",
      [](py::object x, py::object y, py::object denoms, py::object mean_diffs, int64_t channels, int64_t img_size,
         int64_t size, float alpha, float beta) {
        const SpatialNormParams p = spatial_params(channels, img_size, size, alpha, beta);
        const int64_t rows = channels * img_size * img_size;
        ConstMatView xv = cmat(x, "x", rows);
        MatView yv = mat(y, "y", rows, xv.cols);
        MatView dv = mat(denoms, "denoms", rows, xv.cols);
        MatView mv = mat(mean_diffs, "mean_diffs", rows, xv.cols);
        check_fprop_aliasing({{"y", yv}, {"denoms", dv}, {"mean_diffs", mv}}, xv);
        py::gil_scoped_release release;
        cpu::cnorm_fprop(p, xv, yv, dv, mv);
      },
      py::arg("x"), py::arg("y"), py::arg("denoms"), py::arg("mean_diffs"), py::arg("channels"), py::arg("img_size"),
      py::arg("size"), py::arg("alpha"), py::arg("beta"),
      (std::string("Contrast normalisation forward, as written (engine.md §3.10, §13 item 12). ") + kSpatialShapes +
       "Overwrites mean_diffs = x - (local mean of x over the clipped window, divided by the valid count), "
       "denoms = 1 + alpha * (sum of mean_diffs**2 over the window) and y = x * denoms**(-beta) (raw x as "
       "numerator). alpha is scale/size**2 (already rewritten, §3.7).")
          .c_str());
  m.def(
      "cnorm_bprop",
      [](py::object mean_diffs, py::object y, py::object denoms, py::object dy, py::object dx, py::object scratch,
         int64_t channels, int64_t img_size, int64_t size, float alpha, float beta, float scale_targets) {
        check_scale_targets(scale_targets);
        const SpatialNormParams p = spatial_params(channels, img_size, size, alpha, beta);
        const int64_t rows = channels * img_size * img_size;
        ConstMatView mv = cmat(mean_diffs, "mean_diffs", rows);
        const int64_t n = mv.cols;
        ConstMatView yv = cmat(y, "y", rows, n), dv = cmat(denoms, "denoms", rows, n), dyv = cmat(dy, "dy", rows, n);
        MatView dxv = mat(dx, "dx", rows, n), sv = mat(scratch, "scratch", rows, n);
        check_bprop_aliasing("mean_diffs", mv, yv, dv, dyv, dxv, sv);
        py::gil_scoped_release release;
        cpu::cnorm_bprop(p, mv, yv, dv, dyv, dxv, sv, scale_targets);
      },
      py::arg("mean_diffs"), py::arg("y"), py::arg("denoms"), py::arg("dy"), py::arg("dx"), py::arg("scratch"),
      py::arg("channels"), py::arg("img_size"), py::arg("size"), py::arg("alpha"), py::arg("beta"),
      py::arg("scale_targets") = 0.0f,
      (std::string("Contrast normalisation backward, as written (engine.md §3.10, §13 item 12): rnorm_bprop with "
                   "x replaced by mean_diffs; the local mean's dependence on x is ignored, so this is NOT the exact "
                   "gradient of cnorm_fprop. ") +
       kSpatialShapes + "scratch may be y itself (the release's in-place prelim, §13 item 9).")
          .c_str());
}

}  // namespace alexnet::bind
