// Bindings of the pooling and simple image/vector layers: pool (engine.md §3.6),
// quant (§6),
// nailbed (§3.17), blur (§3.18), href (§3.19), concat (§3.15), eltsum (§3.13),
// eltmax (§3.14). Thin: parameters and arrays are checked here, with messages
// naming the argument; the engine assumes valid input.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>
#include <vector>

#include "alexnet/cpu/blur.h"
#include "alexnet/cpu/concat.h"
#include "alexnet/cpu/eltwise.h"
#include "alexnet/cpu/href.h"
#include "alexnet/cpu/nailbed.h"
#include "alexnet/cpu/pool.h"
#include "alexnet/cpu/quant.h"
#include "checks.h"

namespace alexnet::bind {

namespace {

// Byte ranges of two (already checked, contiguous) arrays.
bool overlaps(const py::array& a, const py::array& b) {
  const char* a0 = static_cast<const char*>(a.data());
  const char* b0 = static_cast<const char*>(b.data());
  return a.nbytes() > 0 && b.nbytes() > 0 && a0 < b0 + b.nbytes() && b0 < a0 + a.nbytes();
}

// Kernels that read neighbouring pixels need outputs apart from their inputs.
void check_apart(const py::array& out, const char* out_name, const py::array& in, const char* in_name) {
  if (overlaps(out, in))
    throw py::value_error(std::string(out_name) + ": must not share memory with " + in_name);
}

// Element-wise kernels may work in place (same buffer) but not on a shifted overlap.
void check_apart_or_same(const py::array& out, const char* out_name, const py::array& in, const char* in_name) {
  if (overlaps(out, in) && !(out.data() == in.data() && out.nbytes() == in.nbytes()))
    throw py::value_error(std::string(out_name) + ": must be the same array as " + in_name +
                          " or not share memory with it");
}

// The parameter structs, checked by the net plan's checks (core/op_params.h).
PoolParams pool_params(const std::string& mode, bool do_max, int64_t channels, int64_t img_size, int64_t size_x,
                       int64_t start, int64_t stride, int64_t outputs_x) {
  PoolParams p;
  if (mode == "max") {
    p.kind = PoolKind::kMax;
  } else if (mode == "maxabs") {
    p.kind = PoolKind::kMaxAbs;
  } else if (mode == "avg") {
    p.kind = PoolKind::kAvg;
  } else if (mode == "rand") {
    // §3.6: with doMax it is max pooling; without, the project's reconstruction (pool_rand_fprop)
    p.kind = do_max ? PoolKind::kMax : PoolKind::kRand;
  } else {
    throw py::value_error("mode: must be 'max', 'maxabs', 'avg' or 'rand' (got '" + mode + "')");
  }
  p.channels = channels;
  p.img_size = img_size;
  p.size_x = size_x;
  p.start = start;
  p.stride = stride;
  p.outputs_x = outputs_x;
  check_pool_params(p);
  return p;
}

NailbedParams nailbed_params(int64_t channels, int64_t img_size, int64_t stride) {
  const NailbedParams p{channels, img_size, stride};
  check_nailbed_params(p);
  return p;
}

BlurParams blur_params(const py::array& filter, int64_t channels, int64_t img_size) {
  check_array(filter, "filter", {-1});
  BlurParams p;
  p.channels = channels;
  p.img_size = img_size;
  p.filter = static_cast<const float*>(filter.data());
  p.filter_size = filter.shape(0);
  check_blur_params(p, p.filter);
  return p;
}

}  // namespace

void register_pool_ops(py::module_& m) {
  // ---- pool (§3.6) ----
  m.def(
      "pool_fprop",
      [](py::array x, py::array y, const std::string& mode, int64_t channels, int64_t img_size, int64_t size_x,
         int64_t start, int64_t stride, int64_t outputs_x, float scale_targets, bool do_max) {
        check_scale_targets(scale_targets);
        const PoolParams p = pool_params(mode, do_max, channels, img_size, size_x, start, stride, outputs_x);
        if (p.kind == PoolKind::kRand)
          throw py::value_error("mode: 'rand' without do_max pools the pixels its picks name: call "
                                "pool_rand_fprop (engine.md §3.6, a reconstruction)");
        ConstMatView xv = cmat(x, "x", channels * img_size * img_size);
        MatView yv = mat(y, "y", channels * outputs_x * outputs_x, xv.cols);
        check_apart(y, "y", x, "x");
        py::gil_scoped_release release;
        cpu::pool_fprop(p, xv, yv, scale_targets);
      },
      py::arg("x"), py::arg("y"), py::arg("mode"), py::arg("channels"), py::arg("img_size"), py::arg("size_x"),
      py::arg("start"), py::arg("stride"), py::arg("outputs_x"), py::arg("scale_targets") = 0.0f,
      py::arg("do_max") = false,
      "Pooling forward (engine.md §3.6): y (C*OX*OX, N) <- scale_targets*y + pool(x (C*S*S, N)), "
      "images (C, S, S, N) case fastest, OX = outputs_x. mode: 'max' (fmax from -2e38, NaN ignored), "
      "'maxabs' (largest |value|, sign kept, later pixel wins ties), 'avg' (sum / in-image pixel count), "
      "'rand' (only with do_max=True, where it is max). Window (oy, ox) covers rows and columns "
      "[start + o*stride, start + o*stride + size_x) clipped to the image; start may be negative. "
      "do_max is read only for 'rand'.");
  m.def(
      "pool_bprop",
      [](py::array x, py::array y, py::array dy, py::array dx, const std::string& mode, int64_t channels,
         int64_t img_size, int64_t size_x, int64_t start, int64_t stride, int64_t outputs_x, float scale_targets,
         bool do_max) {
        check_scale_targets(scale_targets);
        const PoolParams p = pool_params(mode, do_max, channels, img_size, size_x, start, stride, outputs_x);
        ConstMatView xv = cmat(x, "x", channels * img_size * img_size);
        ConstMatView yv = cmat(y, "y", channels * outputs_x * outputs_x, xv.cols);
        ConstMatView dyv = cmat(dy, "dy", yv.rows, xv.cols);
        MatView dxv = mat(dx, "dx", xv.rows, xv.cols);
        check_apart(dx, "dx", x, "x");
        check_apart(dx, "dx", y, "y");
        check_apart(dx, "dx", dy, "dy");
        py::gil_scoped_release release;
        cpu::pool_bprop(p, xv, yv, dyv, dxv, scale_targets);
      },
      py::arg("x"), py::arg("y"), py::arg("dy"), py::arg("dx"), py::arg("mode"), py::arg("channels"),
      py::arg("img_size"), py::arg("size_x"), py::arg("start"), py::arg("stride"), py::arg("outputs_x"),
      py::arg("scale_targets") = 0.0f, py::arg("do_max") = false,
      "Pooling backward (engine.md §3.6): dx (C*S*S, N) <- scale_targets*dx + routed dy (C*OX*OX, N). "
      "x (C*S*S, N) and y (C*OX*OX, N) are the forward's input and output (shape-checked, read only by "
      "max/maxabs/rand). max, maxabs and rand: every pixel equal to its window's pooled value gets that "
      "window's full dy (ties duplicated, overlapping windows add). avg: each window adds dy*(1/area).");

  m.def(
      "pool_rand_fprop",
      [](py::array x, py::array picks, py::array y, int64_t channels, int64_t img_size, int64_t size_x,
         int64_t start, int64_t stride, int64_t outputs_x, float scale_targets) {
        check_scale_targets(scale_targets);
        const PoolParams p = pool_params("rand", false, channels, img_size, size_x, start, stride, outputs_x);
        ConstMatView xv = cmat(x, "x", channels * img_size * img_size);
        ConstMatView kv = cmat(picks, "picks", channels * outputs_x * outputs_x, xv.cols);
        MatView yv = mat(y, "y", kv.rows, xv.cols);
        check_apart(y, "y", x, "x");
        check_apart(y, "y", picks, "picks");
        check_pool_picks(p, kv.data, kv.cols);
        py::gil_scoped_release release;
        cpu::pool_rand_fprop(p, xv, kv.data, yv, scale_targets);
      },
      py::arg("x"), py::arg("picks"), py::arg("y"), py::arg("channels"), py::arg("img_size"), py::arg("size_x"),
      py::arg("start"), py::arg("stride"), py::arg("outputs_x"), py::arg("scale_targets") = 0.0f,
      "pool=rand without doMax (engine.md §3.6; the release's kernel was never published, this is the "
      "project's reconstruction): y (C*OX*OX, N) <- scale_targets*y + x at position picks[c,oy,ox,n] of "
      "window (oy, ox)'s clipped pixels in raster order (row k // width, column k % width). picks: whole "
      "numbers in [0, window area). Its backward is pool_bprop(mode='rand'), max-undo.");
  m.def(
      "pool_rand_pick", [](double u, int64_t area) { return pool_rand_pick(u, area); }, py::arg("u"),
      py::arg("area"), "The pick floor(u*area) (at most area - 1) that the nets draw from u in [0, 1).");

  // ---- quant (§6, quantF/quantB = half: a reconstruction) ----
  m.def(
      "quant_copy",
      [](py::array x, py::array y, bool half, float scale_targets) {
        check_scale_targets(scale_targets);
        ConstMatView xv = cmat(x, "x");
        MatView yv = mat(y, "y", xv.rows, xv.cols);
        check_apart_or_same(y, "y", x, "x");
        py::gil_scoped_release release;
        cpu::quant_copy(xv, yv, half, scale_targets);
      },
      py::arg("x"), py::arg("y"), py::arg("half"), py::arg("scale_targets") = 0.0f,
      "The quant layer (engine.md §6; the release's convQuantizeHalf was never published, this is the "
      "project's reconstruction): y (D, N) <- scale_targets*y + (x rounded to IEEE half, round to nearest "
      "even, back to float32, when half; else x).");

  // ---- nailbed (§3.17) ----
  m.def(
      "nailbed_geometry",
      [](int64_t img_size, int64_t stride) {
        const NailbedParams p = nailbed_params(1, img_size, stride);
        return py::make_tuple(nailbed_outputs_x(p), nailbed_start(p));
      },
      py::arg("img_size"), py::arg("stride"),
      "(outputs_x, start) of a nailbed layer: ceil(S/stride), floor((S - stride*(outputs_x-1))/2).");
  m.def(
      "nailbed_fprop",
      [](py::array x, py::array y, int64_t channels, int64_t img_size, int64_t stride, float scale_targets) {
        check_scale_targets(scale_targets);
        const NailbedParams p = nailbed_params(channels, img_size, stride);
        const int64_t ox = nailbed_outputs_x(p);
        ConstMatView xv = cmat(x, "x", channels * img_size * img_size);
        MatView yv = mat(y, "y", channels * ox * ox, xv.cols);
        check_apart(y, "y", x, "x");
        py::gil_scoped_release release;
        cpu::nailbed_fprop(p, xv, yv, scale_targets);
      },
      py::arg("x"), py::arg("y"), py::arg("channels"), py::arg("img_size"), py::arg("stride"),
      py::arg("scale_targets") = 0.0f,
      "Nailbed forward (engine.md §3.17): y[c,oy,ox,n] (C*OX*OX, N) <- scale_targets*y + "
      "x[c, start + oy*stride, start + ox*stride, n] (x: C*S*S, N); see nailbed_geometry.");
  m.def(
      "nailbed_bprop",
      [](py::array dy, py::array dx, int64_t channels, int64_t img_size, int64_t stride, float scale_targets) {
        check_scale_targets(scale_targets);
        const NailbedParams p = nailbed_params(channels, img_size, stride);
        const int64_t ox = nailbed_outputs_x(p);
        ConstMatView dyv = cmat(dy, "dy", channels * ox * ox);
        MatView dxv = mat(dx, "dx", channels * img_size * img_size, dyv.cols);
        check_apart(dx, "dx", dy, "dy");
        py::gil_scoped_release release;
        cpu::nailbed_bprop(p, dyv, dxv, scale_targets);
      },
      py::arg("dy"), py::arg("dx"), py::arg("channels"), py::arg("img_size"), py::arg("stride"),
      py::arg("scale_targets") = 0.0f,
      "Nailbed backward (engine.md §3.17): dx (C*S*S, N) <- scale_targets*dx + dy (C*OX*OX, N) scattered "
      "onto the sampled pixels; other pixels get 0 (overwrite) or keep their value (add).");

  // ---- blur (§3.18) ----
  m.def(
      "blur_pass",
      [](py::array x, py::array y, py::array filter, int64_t channels, int64_t img_size, bool horizontal,
         float scale_targets) {
        check_scale_targets(scale_targets);
        const BlurParams p = blur_params(filter, channels, img_size);
        ConstMatView xv = cmat(x, "x", channels * img_size * img_size);
        MatView yv = mat(y, "y", xv.rows, xv.cols);
        check_apart(y, "y", x, "x");
        py::gil_scoped_release release;
        cpu::blur_pass(p, horizontal, xv, yv, scale_targets);
      },
      py::arg("x"), py::arg("y"), py::arg("filter"), py::arg("channels"), py::arg("img_size"),
      py::arg("horizontal"), py::arg("scale_targets") = 0.0f,
      "One blur pass (engine.md §3.18) along rows (horizontal) or columns: y (C*S*S, N) <- "
      "scale_targets*y + sum_k x[j + k - r]*filter[k], zero outside the image. filter: (K,) float32, "
      "K odd, symmetric.");
  m.def(
      "blur_fprop",
      [](py::array x, py::array y, py::array scratch, py::array filter, int64_t channels, int64_t img_size,
         float scale_targets) {
        check_scale_targets(scale_targets);
        const BlurParams p = blur_params(filter, channels, img_size);
        ConstMatView xv = cmat(x, "x", channels * img_size * img_size);
        MatView yv = mat(y, "y", xv.rows, xv.cols);
        MatView sv = mat(scratch, "scratch", xv.rows, xv.cols);
        check_apart(y, "y", x, "x");
        check_apart(scratch, "scratch", x, "x");
        check_apart(scratch, "scratch", y, "y");
        py::gil_scoped_release release;
        cpu::blur_fprop(p, xv, sv, yv, scale_targets);
      },
      py::arg("x"), py::arg("y"), py::arg("scratch"), py::arg("filter"), py::arg("channels"), py::arg("img_size"),
      py::arg("scale_targets") = 0.0f,
      "Blur forward (engine.md §3.18): horizontal pass of x (C*S*S, N) into scratch (same shape, "
      "overwritten), then vertical pass into y (same shape) with scale_targets. filter: (K,) float32, K "
      "odd, symmetric (the release's tap-2r shortcut is then exact).");
  m.def(
      "blur_bprop",
      [](py::array dy, py::array dx, py::array scratch, py::array filter, int64_t channels, int64_t img_size,
         float scale_targets) {
        check_scale_targets(scale_targets);
        const BlurParams p = blur_params(filter, channels, img_size);
        ConstMatView dyv = cmat(dy, "dy", channels * img_size * img_size);
        MatView dxv = mat(dx, "dx", dyv.rows, dyv.cols);
        MatView sv = mat(scratch, "scratch", dyv.rows, dyv.cols);
        check_apart(dx, "dx", dy, "dy");
        check_apart(scratch, "scratch", dy, "dy");
        check_apart(scratch, "scratch", dx, "dx");
        py::gil_scoped_release release;
        cpu::blur_bprop(p, dyv, sv, dxv, scale_targets);
      },
      py::arg("dy"), py::arg("dx"), py::arg("scratch"), py::arg("filter"), py::arg("channels"),
      py::arg("img_size"), py::arg("scale_targets") = 0.0f,
      "Blur backward (engine.md §3.18): the forward's two passes applied to dy (C*S*S, N), giving dx "
      "(same shape) with scale_targets; scratch (same shape) is overwritten.");

  // ---- href (§3.19) ----
  m.def(
      "href_fprop",
      [](py::array x, py::array y, int64_t channels, int64_t img_size, float scale_targets) {
        check_scale_targets(scale_targets);
        const HrefParams p{channels, img_size};
        check_href_params(p);
        ConstMatView xv = cmat(x, "x", channels * img_size * img_size);
        MatView yv = mat(y, "y", xv.rows, xv.cols);
        check_apart(y, "y", x, "x");
        py::gil_scoped_release release;
        cpu::href_fprop(p, xv, yv, scale_targets);
      },
      py::arg("x"), py::arg("y"), py::arg("channels"), py::arg("img_size"), py::arg("scale_targets") = 0.0f,
      "Horizontal reflection (engine.md §3.19): y[c,y,x,n] (C*S*S, N) <- scale_targets*y + x[c,y,S-1-x,n].");
  m.def(
      "href_bprop",
      [](py::array dy, py::array dx, int64_t channels, int64_t img_size, float scale_targets) {
        check_scale_targets(scale_targets);
        const HrefParams p{channels, img_size};
        check_href_params(p);
        ConstMatView dyv = cmat(dy, "dy", channels * img_size * img_size);
        MatView dxv = mat(dx, "dx", dyv.rows, dyv.cols);
        check_apart(dx, "dx", dy, "dy");
        py::gil_scoped_release release;
        cpu::href_bprop(p, dyv, dxv);  // scale_targets ignored on purpose (§13 item 8)
      },
      py::arg("dy"), py::arg("dx"), py::arg("channels"), py::arg("img_size"), py::arg("scale_targets") = 0.0f,
      "Reflection backward (engine.md §3.19): dx[c,y,x,n] (C*S*S, N) <- dy[c,y,S-1-x,n]. ALWAYS "
      "overwrites: scale_targets is accepted and ignored, as in the release (engine.md §13 item 8).");

  // ---- concat (§3.15) ----
  m.def(
      "concat_fprop",
      [](py::array x, py::array y, int64_t offset) {
        MatView yv = mat(y, "y");
        ConstMatView xv = cmat(x, "x", -1, yv.cols);
        if (offset < 0 || offset + xv.rows > yv.rows)
          throw py::value_error("offset: rows [" + std::to_string(offset) + ", " + std::to_string(offset + xv.rows) +
                                ") do not fit in y's " + std::to_string(yv.rows) + " rows");
        check_apart(y, "y", x, "x");
        py::gil_scoped_release release;
        cpu::concat_fprop(xv, yv, offset);
      },
      py::arg("x"), py::arg("y"), py::arg("offset"),
      "Concatenation forward (engine.md §3.15): y[offset : offset + Di] (of D, N) <- x (Di, N), "
      "overwriting that slice only.");
  m.def(
      "concat_bprop",
      [](py::array dy, py::array dx, int64_t offset, float scale_targets) {
        check_scale_targets(scale_targets);
        ConstMatView dyv = cmat(dy, "dy");
        MatView dxv = mat(dx, "dx", -1, dyv.cols);
        if (offset < 0 || offset + dxv.rows > dyv.rows)
          throw py::value_error("offset: rows [" + std::to_string(offset) + ", " +
                                std::to_string(offset + dxv.rows) + ") do not fit in dy's " +
                                std::to_string(dyv.rows) + " rows");
        check_apart(dx, "dx", dy, "dy");
        py::gil_scoped_release release;
        cpu::concat_bprop(dyv, dxv, offset, scale_targets);
      },
      py::arg("dy"), py::arg("dx"), py::arg("offset"), py::arg("scale_targets") = 0.0f,
      "Concatenation backward (engine.md §3.15): dx (Di, N) <- scale_targets*dx + dy[offset : offset + Di] "
      "(dy: D, N).");

  // ---- eltsum (§3.13) ----
  m.def(
      "eltsum_fprop",
      [](py::array x, py::array y, float coeff, float scale_targets) {
        check_scale_targets(scale_targets);
        ConstMatView xv = cmat(x, "x");
        MatView yv = mat(y, "y", xv.rows, xv.cols);
        check_apart_or_same(y, "y", x, "x");
        py::gil_scoped_release release;
        cpu::eltsum_fprop(xv, yv, coeff, scale_targets);
      },
      py::arg("x"), py::arg("y"), py::arg("coeff"), py::arg("scale_targets") = 0.0f,
      "Element-wise sum, one input (engine.md §3.13): y (D, N) <- scale_targets*y + coeff*x (D, N). The "
      "layer passes 0 for its first input and 1 for the others. y may be x itself.");
  m.def(
      "eltsum_bprop",
      [](py::array dy, py::array dx, float coeff, float scale_targets) {
        check_scale_targets(scale_targets);
        ConstMatView dyv = cmat(dy, "dy");
        MatView dxv = mat(dx, "dx", dyv.rows, dyv.cols);
        check_apart_or_same(dx, "dx", dy, "dy");
        py::gil_scoped_release release;
        cpu::eltsum_bprop(dyv, dxv, coeff, scale_targets);
      },
      py::arg("dy"), py::arg("dx"), py::arg("coeff"), py::arg("scale_targets") = 0.0f,
      "Element-wise sum backward for one input (engine.md §3.13): dx (D, N) <- scale_targets*dx + coeff*dy.");

  // ---- eltmax (§3.14) ----
  m.def(
      "eltmax_fprop",
      [](const std::vector<py::array>& xs, py::array y) {
        if (xs.size() < 2)
          throw py::value_error("xs: eltmax needs at least 2 inputs (got " + std::to_string(xs.size()) + ")");
        MatView yv = mat(y, "y");
        std::vector<ConstMatView> views;
        std::vector<std::string> names;
        for (size_t i = 0; i < xs.size(); ++i) names.push_back("xs[" + std::to_string(i) + "]");
        for (size_t i = 0; i < xs.size(); ++i) {
          views.push_back(cmat(xs[i], names[i].c_str(), yv.rows, yv.cols));
          check_apart_or_same(y, "y", xs[i], names[i].c_str());
        }
        py::gil_scoped_release release;
        cpu::eltmax_fprop(views.data(), static_cast<int64_t>(views.size()), yv);
      },
      py::arg("xs"), py::arg("y"),
      "Element-wise max (engine.md §3.14), overwriting y (D, N): y = max(xs[1], xs[0]), then "
      "y = max(y, xs[i]) for i >= 2, with max(a, b) = a > b ? a : b. xs: list of >= 2 (D, N) arrays; y "
      "may be one of them.");
  m.def(
      "eltmax_bprop",
      [](py::array x, py::array y, py::array dy, py::array dx, float scale_targets) {
        check_scale_targets(scale_targets);
        ConstMatView xv = cmat(x, "x");
        ConstMatView yv = cmat(y, "y", xv.rows, xv.cols);
        ConstMatView dyv = cmat(dy, "dy", xv.rows, xv.cols);
        MatView dxv = mat(dx, "dx", xv.rows, xv.cols);
        check_apart_or_same(dx, "dx", x, "x");
        check_apart_or_same(dx, "dx", y, "y");
        check_apart_or_same(dx, "dx", dy, "dy");
        py::gil_scoped_release release;
        cpu::eltmax_bprop(xv, yv, dyv, dxv, scale_targets);
      },
      py::arg("x"), py::arg("y"), py::arg("dy"), py::arg("dx"), py::arg("scale_targets") = 0.0f,
      "Element-wise max backward for one input (engine.md §3.14): dx (D, N) <- scale_targets*dx + "
      "dy*[x == y]; every input equal to the max gets the full dy. x, y, dy, dx: (D, N).");
}

}  // namespace alexnet::bind
