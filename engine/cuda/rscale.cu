// CUDA rscale: random rescale and crop, engine.md §3.22; the semantics of
// engine/cpu/rscale.cpp. The draws are the CPU net's (one per pass, from the
// net's generator on the host, rscale_draw of op_params.h), uploaded to the
// layer's "draws" buffer, or read back from it when injected. Training and
// gradient-check passes resample and crop (resize.cu's kernels); test passes copy
// the input unchanged, as written (§13 item 5), which needs img_size == tgt_size.
// Layout (DEVICE memory): x (C, S, S, N), y (C, tgt, tgt, N). Overwrites y; no backward.
#include <string>

#include "alexnet/cuda/resize.h"
#include "layer.h"

namespace alexnet::cuda {
namespace {

void forward(const LayerRun& r) {
  const RscaleParams& p = r.layer.rscale;
  LayerStore& B = r.store;
  if (r.pass == PassType::Test) {  // §13 item 5: copied unchanged, as written
    if (p.img_size != p.tgt_size)
      fail_layer(r.spec(), "an rscale test pass copies its input unchanged (engine.md §13 item 5, kept as written), "
                           "which needs img_size == tgt_size (got " + std::to_string(p.img_size) + " and " +
                           std::to_string(p.tgt_size) + ")");
    r.op("copy", [&] {
      check(cudaMemcpyAsync(r.out().data, r.in(0).data, static_cast<size_t>(r.in(0).size()) * sizeof(float),
                            cudaMemcpyDeviceToDevice, r.lc.stream),
            "copying the input of rscale layer '" + r.spec().name + "'");
    });
    return;
  }
  const size_t bytes = static_cast<size_t>(kRscaleDraws) * sizeof(float);
  RscaleDraw d;
  if (r.inject_masks) {
    r.devices.copy_out(B.dev, B.draws.data(), B.pass_draws, bytes, "reading the draws of layer '" + r.spec().name + "'");
    checked(r.spec(), [&] { d = rscale_load(p, B.draws.data()); });
  } else {
    double u[kRscaleDraws];
    r.draws->uniform(u, kRscaleDraws);
    d = rscale_draw(p, u);
    rscale_store(d, B.draws.data());
    r.devices.copy_in(B.dev, B.pass_draws, B.draws.data(), bytes, "the draws of layer '" + r.spec().name + "'");
  }
  r.op("fprop", [&] { rscale_fprop(r.lc, p, d, r.in(0), r.out()); });
}

const bool registered = register_layer("rscale", {forward, nullptr});  // no backward (§3.22)

}  // namespace
}  // namespace alexnet::cuda
