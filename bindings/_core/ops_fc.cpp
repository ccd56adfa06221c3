// Bindings of fc (engine.md §3.2), the weight update and constraints (§4.2),
// the learning-rate schedules (§4.3) and the BLAS wrapper.
#include <pybind11/pybind11.h>

#include <stdexcept>
#include <string>

#include "alexnet/cpu/blas.h"
#include "alexnet/cpu/fc.h"
#include "alexnet/core/schedule.h"
#include "alexnet/core/op_params.h"
#include "alexnet/cpu/update.h"
#include "checks.h"

namespace alexnet::bind {

namespace {

void same_size(const py::array& a, const char* an, const py::array& b, const char* bn) {
  if (a.size() != b.size())
    throw py::value_error(std::string(bn) + ": expected " + std::to_string(a.size()) + " elements like " + an +
                          ", got " + std::to_string(b.size()));
}

}  // namespace

void register_fc_ops(py::module_& m) {
  m.def(
      "sgemm",
      [](py::array a, py::array b, py::array c, bool trans_a, bool trans_b, float alpha, float beta) {
        ConstMatView av = cmat(a, "a"), bv = cmat(b, "b");
        MatView cv = mat(c, "c");
        const int64_t mm = trans_a ? av.cols : av.rows, k = trans_a ? av.rows : av.cols;
        const int64_t kb = trans_b ? bv.cols : bv.rows, nn = trans_b ? bv.rows : bv.cols;
        if (k != kb) throw py::value_error("b: inner dimensions of a and b differ");
        if (cv.rows != mm || cv.cols != nn) throw py::value_error("c: shape does not match op(a) @ op(b)");
        py::gil_scoped_release release;
        cpu::sgemm(trans_a, trans_b, mm, nn, k, alpha, av.data, av.cols, bv.data, bv.cols, beta, cv.data, cv.cols);
      },
      py::arg("a"), py::arg("b"), py::arg("c"), py::arg("trans_a") = false, py::arg("trans_b") = false,
      py::arg("alpha") = 1.0f, py::arg("beta") = 0.0f,
      "c <- alpha * op(a) @ op(b) + beta * c through the engine's BLAS (beta 0 overwrites).");

  m.def(
      "fc_fprop",
      [](py::array x, py::array wt, py::array y, float scale_targets) {
        check_scale_targets(scale_targets);
        ConstMatView xv = cmat(x, "x");
        ConstMatView wv = cmat(wt, "wt", -1, xv.rows);
        MatView yv = mat(y, "y", wv.rows, xv.cols);
        py::gil_scoped_release release;
        cpu::fc_fprop(xv, wv, yv, scale_targets);
      },
      py::arg("x"), py::arg("wt"), py::arg("y"), py::arg("scale_targets") = 0.0f,
      "y (Dout, N) <- scale_targets*y + wt (Dout, Din) @ x (Din, N). wt is the release's Fortran "
      "(Din, Dout) matrix as C order, i.e. W.T.");
  m.def(
      "fc_add_bias",
      [](py::array b, py::array y) {
        MatView yv = mat(y, "y");
        check_array(b, "b", {yv.rows});
        const float* bp = static_cast<const float*>(py::array(b).data());
        py::gil_scoped_release release;
        cpu::fc_add_bias(bp, yv);
      },
      py::arg("b"), py::arg("y"), "y[o, n] += b[o]");
  m.def(
      "fc_bprop_acts",
      [](py::array dy, py::array wt, py::array dx, float scale_targets) {
        check_scale_targets(scale_targets);
        ConstMatView dyv = cmat(dy, "dy");
        ConstMatView wv = cmat(wt, "wt", dyv.rows, -1);
        MatView dxv = mat(dx, "dx", wv.cols, dyv.cols);
        py::gil_scoped_release release;
        cpu::fc_bprop_acts(dyv, wv, dxv, scale_targets);
      },
      py::arg("dy"), py::arg("wt"), py::arg("dx"), py::arg("scale_targets") = 0.0f,
      "dx (Din, N) <- scale_targets*dx + wt.T @ dy (Dout, N)");
  m.def(
      "fc_bprop_weights",
      [](py::array x, py::array dy, py::array inc_t, float scale, float mom) {
        ConstMatView xv = cmat(x, "x");
        ConstMatView dyv = cmat(dy, "dy", -1, xv.cols);
        MatView iv = mat(inc_t, "inc_t", dyv.rows, xv.rows);
        py::gil_scoped_release release;
        cpu::fc_bprop_weights(xv, dyv, iv, scale, mom);
      },
      py::arg("x"), py::arg("dy"), py::arg("inc_t"), py::arg("scale"), py::arg("mom"),
      "inc_t (Dout, Din) <- mom*inc_t + scale * dy @ x.T  (scale = eps/N; mom 0 overwrites)");
  m.def(
      "fc_bprop_bias",
      [](py::array dy, py::array gb, float scale, float scale_targets) {
        check_scale_targets(scale_targets);
        ConstMatView dyv = cmat(dy, "dy");
        check_array(gb, "gb", {dyv.rows}, true);
        float* gp = static_cast<float*>(py::array(gb).mutable_data());
        py::gil_scoped_release release;
        cpu::fc_bprop_bias(dyv, gp, scale, scale_targets);
      },
      py::arg("dy"), py::arg("gb"), py::arg("scale"), py::arg("scale_targets") = 0.0f,
      "gb[o] <- scale_targets*gb[o] + scale * sum_n dy[o, n]");

  m.def(
      "update_increment",
      [](py::array inc, py::array grad, float eps, float mom) {
        check_array(inc, "inc", {-1}, true);
        check_array(grad, "grad", {-1});
        same_size(inc, "inc", grad, "grad");
        float* ip = static_cast<float*>(py::array(inc).mutable_data());
        const float* gp = static_cast<const float*>(py::array(grad).data());
        const int64_t n = py::array(inc).size();
        py::gil_scoped_release release;
        cpu::update_increment(ip, gp, n, eps, mom);
      },
      py::arg("inc"), py::arg("grad"), py::arg("eps"), py::arg("mom"),
      "inc <- mom*inc + eps*grad (1-D views: pass arr.reshape(-1))");
  m.def(
      "update_decay_and_step",
      [](py::array w, py::array inc, float eps, float wc) {
        check_array(w, "w", {-1}, true);
        check_array(inc, "inc", {-1}, true);
        same_size(w, "w", inc, "inc");
        float* wp = static_cast<float*>(py::array(w).mutable_data());
        float* ip = static_cast<float*>(py::array(inc).mutable_data());
        const int64_t n = py::array(w).size();
        py::gil_scoped_release release;
        cpu::update_decay_and_step(wp, ip, n, eps, wc);
      },
      py::arg("w"), py::arg("inc"), py::arg("eps"), py::arg("wc"),
      "if wc > 0: inc <- inc + (-wc*eps)*w; then w <- w + inc (1-D views)");
  m.def(
      "constrain_max_norm",
      [](py::array w, float bound, bool columns) {
        MatView wv = mat(w, "w");
        py::gil_scoped_release release;
        if (columns)
          cpu::constrain_max_norm(wv.data, wv.cols, wv.rows, 1, wv.cols, bound);
        else
          cpu::constrain_max_norm(wv.data, wv.rows, wv.cols, wv.cols, 1, bound);
      },
      py::arg("w"), py::arg("bound"), py::arg("columns"),
      "Clip the L2 norm of each column (columns=True) or row of w to bound (wball x fan-in).");
  m.def(
      "constrain_filter_spread",
      [](py::array w, float norm_min, float norm_max) {
        MatView wv = mat(w, "w");
        check_filter_spread(norm_min, norm_max);
        py::gil_scoped_release release;
        cpu::constrain_filter_spread(wv.data, wv.rows, wv.cols, norm_min, norm_max);
      },
      py::arg("w"), py::arg("norm_min"), py::arg("norm_max"),
      "wcNormMin/Max on the columns of a conv weight matrix (Cg*K*K, F), as written (engine.md §3.4).");

  m.def(
      "schedule_rate",
      [](const std::string& type, double base, double progress, double tgt_factor, double noise_stdev,
         int num_steps, double z) {
        Schedule s;
        try {
          s.type = schedule_type(type);
        } catch (const std::invalid_argument& e) {
          throw py::value_error(std::string("type: ") + e.what());
        }
        s.tgt_factor = tgt_factor;
        s.noise_stdev = noise_stdev;
        s.num_steps = num_steps;
        check_schedule(s);  // the net plan's check (core/schedule.h)
        return schedule_rate(s, base, progress) * schedule_noise_factor(s, z);
      },
      py::arg("type"), py::arg("base"), py::arg("progress"), py::arg("tgt_factor") = 1.0,
      py::arg("noise_stdev") = 0.0, py::arg("num_steps") = 1, py::arg("z") = 0.0,
      "Learning rate at progress p (engine.md §4.3); z is the N(0,1) draw for the noise factor.");
}

}  // namespace alexnet::bind
