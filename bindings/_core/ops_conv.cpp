// Bindings of the CPU conv and local layers (engine.md §3.4, §3.5): argument
// checks, then the engine (engine/cpu/conv.cpp, engine/cpu/local.cpp).
// Every geometry error raises ValueError naming the argument; the engine
// assumes consistent geometry.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>

#include "alexnet/cpu/conv.h"
#include "alexnet/cpu/local.h"
#include "checks.h"

namespace alexnet::bind {

namespace {



[[noreturn]] void fail(const std::string& msg) { throw py::value_error(msg); }

// Scratch of the kernels, kept per Python thread so that calls allocate only
// when a larger geometry than before comes along.
cpu::ConvScratch& scratch() {
  thread_local cpu::ConvScratch s;
  return s;
}

// Fills the engine's parameter struct of one input and checks it with the net
// plan's check (core/op_params.h). `filters` comes from the weight array's
// column count; with a connection table, filter_channels is its length / groups.
ConvParams make_params(int64_t channels, int64_t img_size, int64_t filter_size, int64_t padding, int64_t stride,
                       int64_t groups, int64_t modules_x, int64_t filters, const py::object& conns,
                       int64_t chunk_modules) {
  ConvParams p;
  p.channels = channels;
  p.img_size = img_size;
  p.filter_size = filter_size;
  p.padding = padding;
  p.stride = stride;
  p.modules_x = modules_x;
  p.filters = filters;
  p.groups = groups;
  p.chunk_modules = chunk_modules;
  if (conns.is_none()) {
    if (groups >= 1 && channels % groups != 0)
      fail("groups: channels=" + std::to_string(channels) + " is not divisible by groups=" + std::to_string(groups));
    p.filter_channels = groups >= 1 ? channels / groups : 0;
  } else {
    check_array(conns, "conns", {-1}, /*writable=*/false, /*int32=*/true);
    py::array a = py::reinterpret_borrow<py::array>(conns);
    const int64_t len = a.shape(0);
    if (groups >= 1 && (len < groups || len % groups != 0))
      fail("conns: length " + std::to_string(len) + " is not a positive multiple of groups=" + std::to_string(groups));
    p.filter_channels = groups >= 1 ? len / groups : 0;
    p.conns = static_cast<const int32_t*>(a.data());
  }
  check_conv_params(p);
  return p;
}

// Outputs must not share memory with inputs (the engine reads inputs while it
// writes the target).
void check_disjoint(const py::handle& out, const char* out_name, const py::handle& in, const char* in_name) {
  py::array a = py::reinterpret_borrow<py::array>(out), b = py::reinterpret_borrow<py::array>(in);
  const auto* a0 = static_cast<const char*>(a.data());
  const auto* b0 = static_cast<const char*>(b.data());
  if (a.nbytes() > 0 && b.nbytes() > 0 && a0 < b0 + b.nbytes() && b0 < a0 + a.nbytes())
    fail(std::string(out_name) + ": shares memory with " + in_name);
}

int64_t weight_filters(const py::handle& w) {
  check_array(w, "w", {-1, -1});
  return py::reinterpret_borrow<py::array>(w).shape(1);
}

// The shared-weight (conv) or per-module (local) weight matrix's row count.
int64_t weight_rows(const ConvParams& p, bool local) { return (local ? p.modules() : 1) * p.rows_per_group(); }

void fprop(bool local, const py::array& x, const py::array& w, const py::array& out, int64_t channels,
           int64_t img_size, int64_t filter_size, int64_t padding, int64_t stride, int64_t groups, int64_t modules_x,
           const py::object& conns, float scale_targets, int64_t chunk_modules) {
  const ConvParams p = make_params(channels, img_size, filter_size, padding, stride, groups, modules_x,
                                   weight_filters(w), conns, chunk_modules);
  const ConstMatView xv = cmat(x, "x", channels * img_size * img_size, -1);
  const ConstMatView wv = cmat(w, "w", weight_rows(p, local), p.filters);
  const MatView yv = mat(out, "out", p.filters * p.modules(), xv.cols);
  check_disjoint(out, "out", x, "x");
  check_disjoint(out, "out", w, "w");
  py::gil_scoped_release release;
  if (local)
    cpu::local_fprop(p, xv, wv, yv, scale_targets, scratch());
  else
    cpu::conv_fprop(p, xv, wv, yv, scale_targets, scratch());
}

void bprop_acts(bool local, const py::array& dy, const py::array& w, const py::array& dx, int64_t channels,
                int64_t img_size, int64_t filter_size, int64_t padding, int64_t stride, int64_t groups,
                int64_t modules_x, const py::object& conns, float scale_targets, int64_t chunk_modules) {
  const ConvParams p = make_params(channels, img_size, filter_size, padding, stride, groups, modules_x,
                                   weight_filters(w), conns, chunk_modules);
  const ConstMatView dyv = cmat(dy, "dy", p.filters * p.modules(), -1);
  const ConstMatView wv = cmat(w, "w", weight_rows(p, local), p.filters);
  const MatView dxv = mat(dx, "dx", channels * img_size * img_size, dyv.cols);
  check_disjoint(dx, "dx", dy, "dy");
  check_disjoint(dx, "dx", w, "w");
  py::gil_scoped_release release;
  if (local)
    cpu::local_bprop_acts(p, dyv, wv, dxv, scale_targets, scratch());
  else
    cpu::conv_bprop_acts(p, dyv, wv, dxv, scale_targets, scratch());
}

// Checks the weight-gradient arguments; `g_name` is "g" (conv) or "inc" (local).
struct WeightArgs {
  ConvParams p;
  ConstMatView x, dy;
  MatView g;
};

WeightArgs weight_args(bool local, const py::array& x, const py::array& dy, const py::array& g, const char* g_name,
                       int64_t channels, int64_t img_size, int64_t filter_size, int64_t padding, int64_t stride,
                       int64_t groups, int64_t modules_x, const py::object& conns, int64_t chunk_modules) {
  check_array(g, g_name, {-1, -1}, /*writable=*/true);
  const int64_t filters = py::reinterpret_borrow<py::array>(g).shape(1);
  WeightArgs a;
  a.p = make_params(channels, img_size, filter_size, padding, stride, groups, modules_x, filters, conns,
                    chunk_modules);
  a.x = cmat(x, "x", channels * img_size * img_size, -1);
  a.dy = cmat(dy, "dy", a.p.filters * a.p.modules(), a.x.cols);
  a.g = mat(g, g_name, weight_rows(a.p, local), a.p.filters);
  check_disjoint(g, g_name, x, "x");
  check_disjoint(g, g_name, dy, "dy");
  return a;
}

// Bias arrays: shared (F, 1) with y rows = F·M, or unshared (F·M, 1).
void check_bias(const py::array& y, const char* y_name, const py::array& b, const char* b_name, bool shared) {
  check_array(y, y_name, {-1, -1});
  check_array(b, b_name, {-1, 1});
  const int64_t rows = py::reinterpret_borrow<py::array>(y).shape(0);
  const int64_t brows = py::reinterpret_borrow<py::array>(b).shape(0);
  if (shared) {
    if (brows < 1 || rows % brows != 0)
      fail(std::string(b_name) + ": " + std::to_string(brows) + " shared biases do not divide the " +
           std::to_string(rows) + " rows (F*M) of " + y_name);
  } else if (brows != rows) {
    fail(std::string(b_name) + ": unshared biases need one per row (F*M = " + std::to_string(rows) + "), got " +
         std::to_string(brows));
  }
}

void add_bias(const py::array& out, const py::array& b, bool shared) {
  check_bias(out, "out", b, "b", shared);
  const MatView yv = mat(out, "out");
  const ConstMatView bv = cmat(b, "b");
  check_disjoint(out, "out", b, "b");
  py::gil_scoped_release release;
  cpu::conv_add_bias(bv, yv, shared);
}

void bprop_bias(const py::array& dy, const py::array& gb, bool shared, float scale, float scale_targets) {
  check_bias(dy, "dy", gb, "gb", shared);
  const ConstMatView dyv = cmat(dy, "dy");
  const MatView gv = mat(gb, "gb");
  check_disjoint(gb, "gb", dy, "dy");
  py::gil_scoped_release release;
  cpu::conv_bprop_bias(dyv, gv, shared, scale, scale_targets);
}

}  // namespace

void register_conv_ops(py::module_& m) {
  using namespace pybind11::literals;
  const char* geometry_doc =
      "Geometry (engine.md §3.4): channels C, img_size S (square), filter_size K, padding p >= 0 (the cfg's "
      "value), stride, groups G, modules_x = 1 + ceil((2p + S - K)/stride); F is w's column count. "
      "conns: optional int32 (G*Cg,) table for random sparse connectivity (filter channel c' of group g reads "
      "channel conns[g*Cg + c']); without it groups are dense (Cg = C/G, channel g*Cg + c'). "
      "chunk_modules: most modules lowered at once (0 = automatic; changes rounding only). "
      "scale_targets: 0 overwrites the target without reading it, 1 adds (engine.md §1.4).";

  m.def(
      "conv_modules",
      [](int64_t img_size, int64_t filter_size, int64_t padding, int64_t stride) {
        if (img_size < 1) fail("img_size: must be >= 1, got " + std::to_string(img_size));
        if (filter_size < 1) fail("filter_size: must be >= 1, got " + std::to_string(filter_size));
        if (padding < 0) fail("padding: must be >= 0, got " + std::to_string(padding));
        if (stride < 1) fail("stride: must be >= 1, got " + std::to_string(stride));
        if (filter_size > img_size + 2 * padding) fail("filter_size: exceeds img_size + 2*padding");
        return conv_modules_x(img_size, filter_size, padding, stride);
      },
      "img_size"_a, "filter_size"_a, "padding"_a, "stride"_a,
      "Modules per side of a conv/local layer: 1 + ceil((2*padding + img_size - filter_size)/stride) "
      "(engine.md §3.4; the ceiling leaves an implicit zero overhang on the bottom/right).");

  m.def(
      "conv_fprop",
      [](const py::array& x, const py::array& w, const py::array& out, int64_t channels, int64_t img_size,
         int64_t filter_size, int64_t padding, int64_t stride, int64_t groups, int64_t modules_x,
         const py::object& conns, float scale_targets, int64_t chunk_modules) {
        fprop(false, x, w, out, channels, img_size, filter_size, padding, stride, groups, modules_x, conns,
              scale_targets, chunk_modules);
      },
      "x"_a, "w"_a, "out"_a, "channels"_a, "img_size"_a, "filter_size"_a, "padding"_a, "stride"_a, "groups"_a,
      "modules_x"_a, "conns"_a = py::none(), "scale_targets"_a = 0.0f, "chunk_modules"_a = 0,
      (std::string("conv forward of one input: out (F*M, N) <- scale_targets*out + conv(x, w).\n"
                   "x (C*S*S, N) images (C, S, S, N); w (Cg*K*K, F), row c'*K*K + ky*K + kx; out (F*M, N), "
                   "(F, MY, MX, N). The bias is added separately (conv_add_bias), after the first input.\n") +
       geometry_doc)
          .c_str());

  m.def("conv_add_bias", &add_bias, "out"_a, "b"_a, "shared"_a,
        "out (F*M, N) += bias: shared b (F, 1) adds b[f] to every module of filter f; unshared b (F*M, 1) adds "
        "b[f*M + m].");

  m.def(
      "conv_bprop_acts",
      [](const py::array& dy, const py::array& w, const py::array& dx, int64_t channels, int64_t img_size,
         int64_t filter_size, int64_t padding, int64_t stride, int64_t groups, int64_t modules_x,
         const py::object& conns, float scale_targets, int64_t chunk_modules) {
        bprop_acts(false, dy, w, dx, channels, img_size, filter_size, padding, stride, groups, modules_x, conns,
                   scale_targets, chunk_modules);
      },
      "dy"_a, "w"_a, "dx"_a, "channels"_a, "img_size"_a, "filter_size"_a, "padding"_a, "stride"_a, "groups"_a,
      "modules_x"_a, "conns"_a = py::none(), "scale_targets"_a = 0.0f, "chunk_modules"_a = 0,
      (std::string("conv backward to the input: dx (C*S*S, N) <- scale_targets*dx + sum over filters and modules "
                   "of w * dy. dy (F*M, N) is the negative gradient of the layer output (engine.md §1.1); with "
                   "random sparsity every connection of a channel is summed.\n") +
       geometry_doc)
          .c_str());

  m.def(
      "conv_bprop_weights",
      [](const py::array& x, const py::array& dy, const py::array& g, int64_t channels, int64_t img_size,
         int64_t filter_size, int64_t padding, int64_t stride, int64_t groups, int64_t modules_x,
         int64_t partial_sum, float scale, const py::object& conns, float scale_targets, int64_t chunk_modules) {
        WeightArgs a = weight_args(false, x, dy, g, "g", channels, img_size, filter_size, padding, stride, groups,
                                   modules_x, conns, chunk_modules);
        check_partial_sum(a.p, partial_sum);
        py::gil_scoped_release release;
        cpu::conv_bprop_weights(a.p, a.x, a.dy, a.g, partial_sum, scale, scale_targets, scratch());
      },
      "x"_a, "dy"_a, "g"_a, "channels"_a, "img_size"_a, "filter_size"_a, "padding"_a, "stride"_a, "groups"_a,
      "modules_x"_a, "partial_sum"_a, "scale"_a, "conns"_a = py::none(), "scale_targets"_a = 0.0f,
      "chunk_modules"_a = 0,
      (std::string("conv weight gradient: g (Cg*K*K, F) <- scale_targets*g + sum over blocks of partial_sum "
                   "modules (raster order; 0 = one block) of scale * sum_{m in block, n} x-patch * dy, blocks "
                   "added in order (engine.md §3.4, §7.2). Pass scale = 1/N; scale_targets = 1 accumulates "
                   "(shared weights). x (C*S*S, N), dy (F*M, N).\n") +
       geometry_doc)
          .c_str());

  m.def("conv_bprop_bias", &bprop_bias, "dy"_a, "gb"_a, "shared"_a, "scale"_a, "scale_targets"_a = 0.0f,
        "conv/local bias gradient from dy (F*M, N): shared gb (F, 1) <- scale_targets*gb + scale*sum_{m,n} dy; "
        "unshared gb (F*M, 1) <- scale_targets*gb + scale*sum_n dy. Pass scale = 1/N. Summed in double, "
        "rounded once.");

  m.def(
      "local_fprop",
      [](const py::array& x, const py::array& w, const py::array& out, int64_t channels, int64_t img_size,
         int64_t filter_size, int64_t padding, int64_t stride, int64_t groups, int64_t modules_x,
         const py::object& conns, float scale_targets, int64_t chunk_modules) {
        fprop(true, x, w, out, channels, img_size, filter_size, padding, stride, groups, modules_x, conns,
              scale_targets, chunk_modules);
      },
      "x"_a, "w"_a, "out"_a, "channels"_a, "img_size"_a, "filter_size"_a, "padding"_a, "stride"_a, "groups"_a,
      "modules_x"_a, "conns"_a = py::none(), "scale_targets"_a = 0.0f, "chunk_modules"_a = 0,
      (std::string("local (unshared) forward of one input (engine.md §3.5): out (F*M, N) <- scale_targets*out + "
                   "local(x, w). w (M*Cg*K*K, F), row (m*Cg + c')*K*K + ky*K + kx. Biases are unshared: "
                   "local_add_bias.\n") +
       geometry_doc)
          .c_str());

  m.def(
      "local_add_bias", [](const py::array& out, const py::array& b) { add_bias(out, b, false); }, "out"_a, "b"_a,
      "out (F*M, N) += b (F*M, 1), one bias per (filter, module) (local layers' biases are unshared).");

  m.def(
      "local_bprop_acts",
      [](const py::array& dy, const py::array& w, const py::array& dx, int64_t channels, int64_t img_size,
         int64_t filter_size, int64_t padding, int64_t stride, int64_t groups, int64_t modules_x,
         const py::object& conns, float scale_targets, int64_t chunk_modules) {
        bprop_acts(true, dy, w, dx, channels, img_size, filter_size, padding, stride, groups, modules_x, conns,
                   scale_targets, chunk_modules);
      },
      "dy"_a, "w"_a, "dx"_a, "channels"_a, "img_size"_a, "filter_size"_a, "padding"_a, "stride"_a, "groups"_a,
      "modules_x"_a, "conns"_a = py::none(), "scale_targets"_a = 0.0f, "chunk_modules"_a = 0,
      (std::string("local backward to the input: dx (C*S*S, N) <- scale_targets*dx + sum over filters and "
                   "modules of w[m] * dy. w (M*Cg*K*K, F), dy (F*M, N).\n") +
       geometry_doc)
          .c_str());

  m.def(
      "local_bprop_weights",
      [](const py::array& x, const py::array& dy, const py::array& inc, int64_t channels, int64_t img_size,
         int64_t filter_size, int64_t padding, int64_t stride, int64_t groups, int64_t modules_x,
         float scale_output, const py::object& conns, float scale_targets, int64_t chunk_modules) {
        WeightArgs a = weight_args(true, x, dy, inc, "inc", channels, img_size, filter_size, padding, stride, groups,
                                   modules_x, conns, chunk_modules);
        py::gil_scoped_release release;
        cpu::local_bprop_weights(a.p, a.x, a.dy, a.g, scale_output, scale_targets, scratch());
      },
      "x"_a, "dy"_a, "inc"_a, "channels"_a, "img_size"_a, "filter_size"_a, "padding"_a, "stride"_a, "groups"_a,
      "modules_x"_a, "scale_output"_a, "conns"_a = py::none(), "scale_targets"_a = 0.0f, "chunk_modules"_a = 0,
      (std::string("local weight increment (engine.md §3.5, §4.2): inc (M*Cg*K*K, F) <- scale_targets*inc + "
                   "scale_output * sum_n x-patch * dy, per module. The release's path is scale_targets = momW "
                   "(1 for later contributions) and scale_output = epsW/N. x (C*S*S, N), dy (F*M, N).\n") +
       geometry_doc)
          .c_str());

  m.def(
      "local_bprop_bias",
      [](const py::array& dy, const py::array& gb, float scale, float scale_targets) {
        bprop_bias(dy, gb, false, scale, scale_targets);
      },
      "dy"_a, "gb"_a, "scale"_a, "scale_targets"_a = 0.0f,
      "local bias gradient: gb (F*M, 1) <- scale_targets*gb + scale*sum_n dy (F*M, N). Pass scale = 1/N.");
}

}  // namespace alexnet::bind
