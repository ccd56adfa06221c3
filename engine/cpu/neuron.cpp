// neuron: engine.md §3.11 (the twelve types), §13 item 7 (nrelu noise).
// Layout: x, y, noise, dy, dx are (D, N), case fastest (§1.2); the kernels are
// element-wise, so only the element count matters.
// Accumulate-or-overwrite: forward overwrites Y; backward
// dX <- scale_targets*dX + dY*f' through blend() (§1.4).
//
// Floating point: the release used __expf/__logf/__fdividef (§7.1); here they
// are std::exp, std::log and true division (parity class "close only", §7.3).
// Each formula is evaluated left to right as written in the comments below; no
// FMA contraction (-ffp-contract=off). relu/nrelu/brelu/abs/square/linear/ident
// use only +, *, comparisons and are bit-exact with any IEEE float32 reference
// that evaluates in the same order.
//
// Threads: every output element is computed by one thread from its own inputs,
// so results do not depend on the thread count.
#include "alexnet/cpu/neuron.h"
#include "alexnet/cpu/cost.h"  // crossent2_logistic_bprop, the fused gradient
#include "alexnet/cpu/layer.h"

#include <cmath>

namespace alexnet::cpu {

namespace {

constexpr int64_t kParallelMin = 1 << 15;  // below this, threads cost more than they save

// y[i] = f(i) for every element.
template <class F>
void map_out(int64_t count, float* y, F f) {
#pragma omp parallel for schedule(static) if (count >= kParallelMin)
  for (int64_t i = 0; i < count; ++i) y[i] = f(i);
}

// The tanh of drelu, written as the release computes it: 2/(1 + e^(-2x/a)) - 1.
inline float drelu_tanh(float x, float a) { return 2.0f / (1.0f + std::exp(-2.0f * x / a)) - 1.0f; }

}  // namespace

void neuron_fprop(const NeuronParams& p, ConstMatView x, const float* noise, MatView y) {
  const int64_t count = y.size();
  const float* in = x.data;
  const float a = p.a, b = p.b;
  switch (p.type) {
    case NeuronType::kIdent:
      map_out(count, y.data, [=](int64_t i) { return in[i]; });
      break;
    case NeuronType::kRelu:
      map_out(count, y.data, [=](int64_t i) { return in[i] < 0.0f ? 0.0f : in[i]; });
      break;
    case NeuronType::kNrelu:
      // r = relu(x); y = relu(r + r*eps): noise with standard deviation r, in
      // every pass (§3.11, §13 item 7).
      map_out(count, y.data, [=](int64_t i) {
        const float r = in[i] < 0.0f ? 0.0f : in[i];
        const float v = r + r * noise[i];
        return v < 0.0f ? 0.0f : v;
      });
      break;
    case NeuronType::kBrelu:
      map_out(count, y.data, [=](int64_t i) { return std::fmin(a, std::fmax(0.0f, in[i])); });
      break;
    case NeuronType::kSoftrelu:
      map_out(count, y.data, [=](int64_t i) { return in[i] > 4.0f ? in[i] : std::log(1.0f + std::exp(in[i])); });
      break;
    case NeuronType::kDrelu:
      map_out(count, y.data, [=](int64_t i) { return in[i] - a * drelu_tanh(in[i], a); });
      break;
    case NeuronType::kAbs:
      map_out(count, y.data, [=](int64_t i) { return std::fabs(in[i]); });
      break;
    case NeuronType::kLogistic:
      map_out(count, y.data, [=](int64_t i) { return 1.0f / (1.0f + std::exp(-in[i])); });
      break;
    case NeuronType::kTanh:
      // a*(2/(1 + e^(-2b*x)) - 1), -2b*x evaluated as (-2*b)*x
      map_out(count, y.data, [=](int64_t i) { return a * (2.0f / (1.0f + std::exp(-2.0f * b * in[i])) - 1.0f); });
      break;
    case NeuronType::kSquare:
      map_out(count, y.data, [=](int64_t i) { return in[i] * in[i]; });
      break;
    case NeuronType::kSqrt:
      map_out(count, y.data, [=](int64_t i) { return std::sqrt(in[i]); });
      break;
    case NeuronType::kLinear:
      map_out(count, y.data, [=](int64_t i) { return a * in[i] + b; });
      break;
  }
}

void neuron_bprop(const NeuronParams& p, ConstMatView x, ConstMatView y, ConstMatView dy, MatView dx,
                  float scale_targets) {
  const int64_t count = dx.size();
  const float* in = x.data;
  const float* out = y.data;
  const float* g = dy.data;
  float* gx = dx.data;
  const float a = p.a, b = p.b, st = scale_targets;
  // dX = dY * f'(.): the factor is computed first, then multiplied by dY, for
  // every type (so relu's dY*[y > 0] gives -0 for a negative dY, as a product does).
  auto run = [&](auto factor) {
#pragma omp parallel for schedule(static) if (count >= kParallelMin)
    for (int64_t i = 0; i < count; ++i) gx[i] = blend(gx[i], g[i] * factor(i), st);
  };
  switch (p.type) {
    case NeuronType::kIdent:
      run([](int64_t) { return 1.0f; });
      break;
    case NeuronType::kRelu:
    case NeuronType::kNrelu:  // [out > 0] on the noisy output
      run([=](int64_t i) { return out[i] > 0.0f ? 1.0f : 0.0f; });
      break;
    case NeuronType::kBrelu:
      run([=](int64_t i) { return (out[i] > 0.0f && out[i] < a) ? 1.0f : 0.0f; });
      break;
    case NeuronType::kSoftrelu:
      run([=](int64_t i) {
        if (in[i] > 4.0f) return 1.0f;
        const float e = std::exp(in[i]);
        return e / (1.0f + e);
      });
      break;
    case NeuronType::kDrelu:
      run([=](int64_t i) {
        const float t = drelu_tanh(in[i], a);
        return t * t;
      });
      break;
    case NeuronType::kAbs:  // x > 0 ? 1 : -1, so the factor at x = 0 is -1 (§3.11)
      run([=](int64_t i) { return in[i] > 0.0f ? 1.0f : -1.0f; });
      break;
    case NeuronType::kLogistic:
      run([=](int64_t i) { return out[i] * (1.0f - out[i]); });
      break;
    case NeuronType::kTanh:  // b*(a - y*y/a)
      run([=](int64_t i) { return b * (a - out[i] * out[i] / a); });
      break;
    case NeuronType::kSquare:
      run([=](int64_t i) { return 2.0f * in[i]; });
      break;
    case NeuronType::kSqrt:  // 1/(2y)
      run([=](int64_t i) { return 1.0f / (2.0f * out[i]); });
      break;
    case NeuronType::kLinear:
      run([=](int64_t) { return a; });
      break;
  }
}

}  // namespace alexnet::cpu

// ---- the neuron layer in the CPU net (cpu/layer.h) ----------------------------------------

namespace alexnet::cpu {
namespace {

void forward(const LayerRun& r) {
  float* noise = r.layer.has_noise ? r.store().noise.data() : nullptr;
  if (noise != nullptr && !r.inject_masks)  // nrelu: one N(0,1) draw per element, every pass (§3.11)
    r.draws->normal(noise, r.spec().outputs * r.n);
  neuron_fprop(r.layer.neuron, r.in(0), noise, r.out());
}

void backward(const LayerRun& r) {
  single_input_backward(r, [&](MatView dx, float st) {
    if (r.layer.fused_crossent2) {  // §3.11: the crossent2 above's gradient coeff*(t - y); its own dY is ignored
      const LayerPlan& cost = r.plan_of(r.layer.consumers[0]);
      crossent2_logistic_bprop(r.acts_of(cost.spec.inputs[0]), r.out(), dx, cost.spec.coeff, st);
    } else {
      neuron_bprop(r.layer.neuron, r.in(0), r.out(), r.dy(), dx, st);
    }
  });
}

const bool registered = register_layer("neuron", {forward, backward});

}  // namespace
}  // namespace alexnet::cpu
