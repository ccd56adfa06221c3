// CUDA neurons: engine.md §3.11 (the twelve types), §13 item 7 (nrelu noise);
// the formulas and evaluation order of engine/cpu/neuron.cpp.
// Layout (DEVICE memory): x, y, noise, dy, dx are (D, N), case fastest;
// element-wise, so only the element count matters.
// Accumulate-or-overwrite: the forward overwrites y; the backward writes
// dX = blend(dX, dY·f'(.), scale_targets) (§1.4).
// Floating point: expf, logf, sqrtf (exact library versions, not the release's
// __expf/__logf/__fdividef) and IEEE division, no FMA: relu, nrelu, brelu, abs,
// square, linear and ident are bit-identical to the CPU; the others are "close
// only" (CUDA's expf/logf are within 2 ulp, glibc's within 1).
#include "alexnet/cuda/neuron.h"
#include "alexnet/cuda/cost.h"  // crossent2_logistic_bprop, the fused gradient
#include "layer.h"
#include "common.cuh"

namespace alexnet::cuda {

namespace {


// drelu's tanh as the release wrote it: 2/(1 + e^(−2x/a)) − 1.
__device__ __forceinline__ float drelu_tanh(float x, float a) { return 2.0f / (1.0f + expf(-2.0f * x / a)) - 1.0f; }

__device__ __forceinline__ float forward_value(NeuronType t, float x, float eps, float a, float b) {
  switch (t) {
    case NeuronType::kIdent: return x;
    case NeuronType::kRelu: return x < 0.0f ? 0.0f : x;
    case NeuronType::kNrelu: {  // r = relu(x); relu(r + r·eps), in every pass (§3.11)
      const float r = x < 0.0f ? 0.0f : x;
      const float v = r + r * eps;
      return v < 0.0f ? 0.0f : v;
    }
    case NeuronType::kBrelu: return fminf(a, fmaxf(0.0f, x));
    case NeuronType::kSoftrelu: return x > 4.0f ? x : logf(1.0f + expf(x));
    case NeuronType::kDrelu: return x - a * drelu_tanh(x, a);
    case NeuronType::kAbs: return fabsf(x);
    case NeuronType::kLogistic: return 1.0f / (1.0f + expf(-x));
    case NeuronType::kTanh: return a * (2.0f / (1.0f + expf(-2.0f * b * x)) - 1.0f);
    case NeuronType::kSquare: return x * x;
    case NeuronType::kSqrt: return sqrtf(x);
    case NeuronType::kLinear: return a * x + b;
  }
  return 0.0f;
}

// f'(.) from the input x or the output y, as §3.11's "uses" column says.
__device__ __forceinline__ float backward_factor(NeuronType t, float x, float y, float a, float b) {
  switch (t) {
    case NeuronType::kIdent: return 1.0f;
    case NeuronType::kRelu:
    case NeuronType::kNrelu: return y > 0.0f ? 1.0f : 0.0f;
    case NeuronType::kBrelu: return (y > 0.0f && y < a) ? 1.0f : 0.0f;
    case NeuronType::kSoftrelu: {
      if (x > 4.0f) return 1.0f;
      const float e = expf(x);
      return e / (1.0f + e);
    }
    case NeuronType::kDrelu: {
      const float t2 = drelu_tanh(x, a);
      return t2 * t2;
    }
    case NeuronType::kAbs: return x > 0.0f ? 1.0f : -1.0f;
    case NeuronType::kLogistic: return y * (1.0f - y);
    case NeuronType::kTanh: return b * (a - y * y / a);
    case NeuronType::kSquare: return 2.0f * x;
    case NeuronType::kSqrt: return 1.0f / (2.0f * y);
    case NeuronType::kLinear: return a;
  }
  return 0.0f;
}

__global__ void neuron_fprop_kernel(NeuronParams p, const float* x, const float* noise, float* y,
                                    int64_t total) {
  for (int64_t i = grid_start(); i < total; i += grid_step())
    y[i] = forward_value(p.type, x[i], noise != nullptr ? noise[i] : 0.0f, p.a, p.b);
}

__global__ void neuron_bprop_kernel(NeuronParams p, const float* x, const float* y, const float* dy, float* dx,
                                    int64_t total, float st) {
  // The factor first, then dY·factor (a product, so relu gives −0 for a negative dY, as on the CPU).
  for (int64_t i = grid_start(); i < total; i += grid_step())
    dx[i] = blend_d(dx[i], dy[i] * backward_factor(p.type, x[i], y[i], p.a, p.b), st);
}

}  // namespace

void neuron_fprop(const Launch& l, const NeuronParams& p, ConstMatView x, const float* noise, MatView y) {
  const int64_t total = y.size();
  if (total <= 0) return;
  neuron_fprop_kernel<<<grid_for(total), kThreads, 0, l.stream>>>(p, x.data, noise, y.data, total);
  check_launch(l, "neuron_fprop_kernel");
}

void neuron_bprop(const Launch& l, const NeuronParams& p, ConstMatView x, ConstMatView y, ConstMatView dy,
                  MatView dx, float scale_targets) {
  const int64_t total = dx.size();
  if (total <= 0) return;
  neuron_bprop_kernel<<<grid_for(total), kThreads, 0, l.stream>>>(p, x.data, y.data, dy.data, dx.data, total,
                                                                  scale_targets);
  check_launch(l, "neuron_bprop_kernel");
}

}  // namespace alexnet::cuda

// ---- the neuron layer in the CUDA net (layer.h) -----------------------------------------------

namespace alexnet::cuda {
namespace {

void forward(const LayerRun& r) {
  LayerStore& B = r.store;
  if (B.noise != nullptr && !r.inject_masks) {  // nrelu: one N(0,1) draw per element, every pass (§3.11)
    const int64_t count = r.spec().outputs * r.n;
    r.draws->normal(B.draws.data(), count);
    check(cudaMemcpyAsync(B.noise, B.draws.data(), static_cast<size_t>(count) * sizeof(float), cudaMemcpyHostToDevice,
                          r.lc.stream),
          "cudaMemcpyAsync of nrelu noise (layer '" + r.spec().name + "')");
  }
  r.op("fprop", [&] { neuron_fprop(r.lc, r.layer.neuron, r.in(0), B.noise, r.out()); });
}

void backward(const LayerRun& r) {
  if (!r.wants(0)) return;
  if (r.layer.fused_crossent2) {  // §3.11: the crossent2 above's gradient coeff*(t - y); its own dY is ignored
    const LayerPlan& cost = r.plan_of(r.layer.consumers[0]);
    const ConstMatView targets(r.acts_here(cost.spec.inputs[0]), r.spec().outputs, r.n);
    r.contribute(0, "bprop_crossent2", [&](MatView dx, float st) {
      crossent2_logistic_bprop(r.lc, targets, r.out(), dx, cost.spec.coeff, st);
    });
  } else {
    r.contribute(0, "bprop", [&](MatView dx, float st) {
      neuron_bprop(r.lc, r.layer.neuron, r.in(0), r.out(), r.dy(), dx, st);
    });
  }
}

const bool registered = register_layer("neuron", {forward, backward});

}  // namespace
}  // namespace alexnet::cuda
