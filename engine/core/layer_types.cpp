// The table of layer types (layer_types.h): one row per type, each after its
// plan function. A plan function runs after net_plan.cpp's generic checks
// (known type, unique name, earlier inputs, input count, outputs >= 1 or 0 for
// a cost) and checks the rest of the spec, with the op checks of op_params.h,
// before any backend sees the layer.
#include "alexnet/core/layer_types.h"

#include <cmath>
#include <stdexcept>
#include <string>

#include "alexnet/core/multisoftmax.h"
#include "alexnet/core/net_plan.h"

namespace alexnet {

namespace {

std::string str(int64_t v) { return std::to_string(v); }

[[noreturn]] void fail(const LayerPlan& L, const std::string& why) { fail_layer(L.spec, why); }

// Layers whose output has the shape of their single input.
void same_as_input(const LayerPlan& L) {
  if (L.input_sizes[0] != L.spec.outputs)
    fail(L, "outputs: must equal the input's size " + str(L.input_sizes[0]) + " (got " + str(L.spec.outputs) + ")");
}

// The single input is an image (C, S, S) of the spec's channels and img_size.
void image_input(const LayerPlan& L) {
  const int64_t want = L.spec.channels * L.spec.img_size * L.spec.img_size;
  if (want != L.input_sizes[0])
    fail(L, "input size does not match its geometry: channels*img_size^2 = " + str(want) + ", the input has " +
                str(L.input_sizes[0]));
}

void check_finite(const LayerPlan& L, const char* name, float v) {
  if (!std::isfinite(v)) fail(L, std::string(name) + ": must be a finite number");
}

// ---- data (§3.1) ------------------------------------------------------------------------

void plan_data(Plan&, LayerPlan& L) {
  if (L.spec.data_idx < 0) fail(L, "data_idx: must be >= 0 (got " + std::to_string(L.spec.data_idx) + ")");
}

// ---- conv (§3.4), local (§3.5), fc (§3.2) ------------------------------------------------

// The checked geometry of every input of a conv or local layer.
void plan_geometry(LayerPlan& L, bool conv) {
  const LayerSpec& s = L.spec;
  if (s.conv.size() != s.inputs.size()) fail(L, "needs one conv geometry per input");
  for (size_t i = 0; i < s.conv.size(); ++i) {
    const ConvInputSpec& c = s.conv[i];
    ConvParams p;
    p.channels = c.channels;
    p.img_size = c.img_size;
    p.filter_size = c.filter_size;
    p.padding = c.padding;
    p.stride = c.stride;
    p.modules_x = s.modules_x;
    p.filters = s.filters;
    p.groups = c.groups;
    p.filter_channels = c.filter_channels;
    if (!c.conns.empty()) {
      if (c.groups < 1 || c.filter_channels < 1 ||
          static_cast<int64_t>(c.conns.size()) != c.groups * c.filter_channels)
        fail(L, "connection table must have groups*filterChannels entries");
      p.conns = c.conns.data();
    }
    checked(s, [&] { check_conv_params(p); });
    if (conv) checked(s, [&] { check_partial_sum(p, s.partial_sum); });
    if (p.channels * p.img_size * p.img_size != L.input_sizes[i]) fail(L, "input size does not match its geometry");
    L.conv.push_back(p);
  }
  if (s.filters * s.modules_x * s.modules_x != s.outputs) fail(L, "outputs != filters * modules");
}

void plan_conv(Plan& P, LayerPlan& L) {
  plan_geometry(L, true);
  WeightLayout w;
  for (const ConvParams& p : L.conv) {
    w.rows.push_back(p.rows_per_group());  // (Cg*K*K, F), filter index fastest
    w.cols.push_back(p.filters);
    UpdateRule norm;  // max-norm of each filter: a column
    norm.blocks = 1, norm.vectors = p.filters, norm.length = p.rows_per_group(), norm.vector_stride = 1;
    norm.element_stride = p.filters;
    w.max_norm.push_back(norm);
  }
  w.shape_rule = "conv weight matrix must be (filterChannels*K*K, filters)";
  w.gradient = true;
  w.filter_spread = true;
  w.biases = L.spec.shared_biases ? L.spec.filters : L.spec.outputs;
  P.plan_weights(L, w);
}

void plan_local(Plan& P, LayerPlan& L) {
  plan_geometry(L, false);
  WeightLayout w;
  for (const ConvParams& p : L.conv) {
    const int64_t per_module = p.rows_per_group();
    w.rows.push_back(p.modules() * per_module);  // (M*Cg*K*K, F): one filter bank per module
    w.cols.push_back(p.filters);
    UpdateRule norm;  // max-norm of each (module, filter) vector, module by module
    norm.blocks = p.modules(), norm.block_stride = per_module * p.filters, norm.vectors = p.filters;
    norm.length = per_module, norm.vector_stride = 1, norm.element_stride = p.filters;
    w.max_norm.push_back(norm);
  }
  w.shape_rule = "local weight matrix must be (modules*filterChannels*K*K, filters)";
  w.biases = L.spec.outputs;
  P.plan_weights(L, w);
}

void plan_fc(Plan& P, LayerPlan& L) {
  WeightLayout w;
  for (int64_t din : L.input_sizes) {
    w.rows.push_back(din);  // (Din, Dout), Fortran order: (Dout, Din) row-major in memory
    w.cols.push_back(L.spec.outputs);
    UpdateRule norm;  // max-norm of each output unit: a contiguous row of the storage
    norm.blocks = 1, norm.vectors = L.spec.outputs, norm.length = din, norm.vector_stride = din;
    norm.element_stride = 1;
    w.max_norm.push_back(norm);
  }
  w.shape_rule = "fc weight matrix must be (inputs, outputs)";
  w.fortran = true;
  w.biases = L.spec.outputs;
  P.plan_weights(L, w);
}

// ---- treefc (§3.3) ---------------------------------------------------------------------------

void plan_treefc(Plan& P, LayerPlan& L) {
  const LayerSpec& s = L.spec;
  try {
    L.tree = make_label_tree(s.tree, s.tree_root, s.outputs);
  } catch (const std::invalid_argument& e) {
    fail(L, std::string("tree: ") + e.what() + " (treefc's outputs are the tree's leaves, one per class)");
  }
  if (!s.share_layer.empty() && s.share_layer[0] >= 0) fail(L, "weightSource: a treefc layer cannot share weights");
  if (!s.sched_w.empty() && (s.sched_w[0].type != ScheduleType::Default || s.sched_w[0].noise_stdev != 0.0))
    fail(L, "schedW: the tree update (§3.3) has no learning-rate schedule");
  if (!s.wball_normed.empty() && s.wball_normed[0] > 0.0f)
    fail(L, "wball: the tree update (§3.3) applies no max-norm constraint");
  WeightLayout w;
  w.rows.push_back(L.input_sizes[0]);  // (Din, nodes), Fortran order: one contiguous vector per node
  w.cols.push_back(L.tree.nodes);
  w.max_norm.push_back(UpdateRule{});
  w.shape_rule = "treefc weight matrix must be (inputs, nodes of the tree)";
  w.fortran = true;
  w.gradient = true;  // the leaves' gradient, then each inner node's (the sum of its children's)
  w.biases = s.outputs;
  P.plan_weights(L, w);
  for (UpdateRule& r : P.update_rules)
    if (r.matrix == L.weights[0]) r.tree = true;
}

// ---- pool (§3.6) --------------------------------------------------------------------------

void plan_pool(Plan&, LayerPlan& L) {
  const LayerSpec& s = L.spec;
  PoolParams& p = L.pool;
  if (s.pool == "max") p.kind = PoolKind::kMax;
  else if (s.pool == "maxabs") p.kind = PoolKind::kMaxAbs;
  else if (s.pool == "avg") p.kind = PoolKind::kAvg;
  else if (s.pool == "rand") p.kind = PoolKind::kRand;  // without doMax (with it the spec says "max")
  else fail(L, "pool '" + s.pool + "' is not supported (max, maxabs, avg, rand)");
  p.channels = s.channels;
  p.img_size = s.img_size;
  p.size_x = s.size_x;
  p.start = s.start;
  p.stride = s.stride;
  p.outputs_x = s.outputs_x;
  checked(s, [&] { check_pool_params(p); });
  image_input(L);
  if (p.channels * p.outputs_x * p.outputs_x != s.outputs)
    fail(L, "outputs: expected channels*outputs_x^2 = " + str(p.channels * p.outputs_x * p.outputs_x) + " (got " +
                str(s.outputs) + ")");
  L.has_mask = p.kind == PoolKind::kRand;  // its picks, the "mask" buffer (drawn or injected)
}

// ---- rnorm (§3.8), cnorm (§3.10), cmrnorm (§3.9) --------------------------------------------

void plan_spatial_norm(LayerPlan& L) {
  const LayerSpec& s = L.spec;
  L.spatial = {s.channels, s.img_size, s.size, s.alpha, s.beta};
  checked(s, [&] { check_spatial_norm_params(L.spatial); });
  image_input(L);
  same_as_input(L);
  L.has_denoms = L.has_scratch = true;
}

void plan_rnorm(Plan&, LayerPlan& L) { plan_spatial_norm(L); }

void plan_cnorm(Plan&, LayerPlan& L) {
  plan_spatial_norm(L);
  L.has_mean_diffs = true;
}

void plan_cmrnorm(Plan&, LayerPlan& L) {
  const LayerSpec& s = L.spec;
  CrossMapNormParams& p = L.crossmap;
  p.channels = s.channels;
  p.size = s.size;
  p.alpha = s.alpha;
  p.beta = s.beta;
  p.min_div = s.min_div;
  p.blocked = s.blocked;
  checked(s, [&] { check_cross_map_norm_params(p); });
  same_as_input(L);
  if (s.outputs % p.channels != 0) fail(L, "cmrnorm channels must divide the outputs");
  L.has_denoms = L.has_scratch = true;
}

// ---- neuron (§3.11), softmax (§3.12), hs (§3.16) ---------------------------------------------

void plan_neuron(Plan&, LayerPlan& L) {
  const NeuronInfo* info = find_neuron(L.spec.neuron);
  if (!info) fail(L, "unknown neuron '" + L.spec.neuron + "'");
  L.neuron = {info->type, L.spec.neuron_a, L.spec.neuron_b};
  checked(L.spec, [&] { check_neuron_params(L.neuron); });
  same_as_input(L);
  L.has_noise = info->type == NeuronType::kNrelu;
}

void plan_softmax(Plan&, LayerPlan& L) { same_as_input(L); }

void plan_hs(Plan&, LayerPlan& L) {
  checked(L.spec, [&] { check_keep(L.spec.keep); });
  same_as_input(L);
  L.has_mask = true;
}

// ---- eltsum (§3.13), eltmax (§3.14), concat (§3.15) -------------------------------------------

void inputs_of_one_size(const LayerPlan& L) {
  for (size_t i = 0; i < L.input_sizes.size(); ++i)
    if (L.input_sizes[i] != L.spec.outputs)
      fail(L, "input " + str(static_cast<int64_t>(i)) + " has " + str(L.input_sizes[i]) + " values per case, outputs " +
                  str(L.spec.outputs) + ": " + L.spec.type + " needs inputs of one size");
}

void plan_eltsum(Plan&, LayerPlan& L) {
  inputs_of_one_size(L);
  const LayerSpec& s = L.spec;
  if (!s.coeffs.empty() && s.coeffs.size() != s.inputs.size())
    fail(L, "coeffs: needs one coefficient per input (" + str(static_cast<int64_t>(s.inputs.size())) + "), got " +
                str(static_cast<int64_t>(s.coeffs.size())));
  for (float c : s.coeffs) check_finite(L, "coeffs", c);
}

void plan_eltmax(Plan&, LayerPlan& L) { inputs_of_one_size(L); }

void plan_concat(Plan&, LayerPlan& L) {
  int64_t total = 0;
  for (int64_t size : L.input_sizes) total += size;
  if (total != L.spec.outputs)
    fail(L, "outputs: must be the sum of the inputs' sizes " + str(total) + " (got " + str(L.spec.outputs) + ")");
}

// ---- nailbed (§3.17), blur (§3.18), href (§3.19) ----------------------------------------------

void plan_nailbed(Plan&, LayerPlan& L) {
  const LayerSpec& s = L.spec;
  L.nailbed = {s.channels, s.img_size, s.stride};
  checked(s, [&] { check_nailbed_params(L.nailbed); });
  image_input(L);
  const int64_t ox = nailbed_outputs_x(L.nailbed);
  if (s.channels * ox * ox != s.outputs)
    fail(L, "outputs: expected channels*ceil(img_size/stride)^2 = " + str(s.channels * ox * ox) + " (got " +
                str(s.outputs) + ")");
}

void plan_blur(Plan&, LayerPlan& L) {
  const LayerSpec& s = L.spec;
  L.blur.channels = s.channels;
  L.blur.img_size = s.img_size;
  L.blur.filter = s.filter.data();
  L.blur.filter_size = static_cast<int64_t>(s.filter.size());
  checked(s, [&] { check_blur_params(L.blur, s.filter.data()); });
  image_input(L);
  same_as_input(L);
  L.has_blur_tmp = true;
}

void plan_href(Plan&, LayerPlan& L) {
  L.href = {L.spec.channels, L.spec.img_size};
  checked(L.spec, [&] { check_href_params(L.href); });
  image_input(L);
  same_as_input(L);
}

// ---- resize (§3.20), rgb2yuv and rgb2lab (§3.21), rscale (§3.22) --------------------------------

// The four have no backward (the release's layer.py forbids gradient consumers below
// them): a matrix that learns at or below the input would silently get no gradient.
void no_gradient_below(const Plan& P, const LayerPlan& L) {
  std::vector<int> stack(L.spec.inputs.begin(), L.spec.inputs.end());
  std::vector<bool> seen(static_cast<size_t>(L.index), false);
  while (!stack.empty()) {
    const int li = stack.back();
    stack.pop_back();
    if (seen[static_cast<size_t>(li)]) continue;
    seen[static_cast<size_t>(li)] = true;
    const LayerPlan& B = P.layers[static_cast<size_t>(li)];
    bool learns = B.bias >= 0 && P.matrices[static_cast<size_t>(B.bias)].eps_base > 0.0f;
    for (int m : B.weights) learns = learns || P.matrices[static_cast<size_t>(m)].eps_base > 0.0f;
    if (learns)
      fail(L, "inputs: a " + L.spec.type + " layer has no backward (engine.md " + L.type->spec + "), but layer '" +
                  B.spec.name + "' below it learns (epsW or epsB > 0) and would never get a gradient");
    for (int in : B.spec.inputs) stack.push_back(in);
  }
}

void plan_resize(Plan& P, LayerPlan& L) {
  const LayerSpec& s = L.spec;
  if (!(s.scale >= 0.5 && s.scale <= 2.0))
    fail(L, "scale: must be in [0.5, 2] (the cfg's scale), got " + std::to_string(s.scale));
  L.resize.channels = s.channels;
  L.resize.img_size = s.img_size;
  L.resize.tgt_size = resize_target_size(s.img_size, s.scale);
  L.resize.scale = static_cast<float>(s.scale);
  checked(s, [&] { check_resize_params(L.resize); });
  image_input(L);
  const int64_t t = L.resize.tgt_size;
  if (s.channels * t * t != s.outputs)
    fail(L, "outputs: expected channels*floor(img_size/scale)^2 = " + str(s.channels * t * t) + " (got " +
                str(s.outputs) + ")");
  no_gradient_below(P, L);
}

void plan_color(Plan& P, LayerPlan& L) {
  if (L.spec.channels != 3)
    fail(L, "channels: " + L.spec.type + " converts three channels (R, G, B), got " + str(L.spec.channels));
  L.color = {L.spec.img_size, L.spec.type == "rgb2lab" && L.spec.center};
  checked(L.spec, [&] { check_color_params(L.color); });
  image_input(L);
  same_as_input(L);
  no_gradient_below(P, L);
}

void plan_rscale(Plan& P, LayerPlan& L) {
  const LayerSpec& s = L.spec;
  L.rscale = {s.channels, s.img_size, s.tgt_size, s.max_scale};
  checked(s, [&] { check_rscale_params(L.rscale); });
  image_input(L);
  if (s.channels * s.tgt_size * s.tgt_size != s.outputs)
    fail(L, "outputs: expected channels*tgt_size^2 = " + str(s.channels * s.tgt_size * s.tgt_size) + " (got " +
                str(s.outputs) + ")");
  L.draw_count = kRscaleDraws;
  no_gradient_below(P, L);
}

// ---- quant (§6: quantF/quantB = half across devices, a reconstruction) --------------------------
// Not a cfg type: original/reconstructions.py inserts one between a producer with
// quantF or quantB = half and its consumers on another gpu (docs/fidelity.md).

void plan_quant(Plan&, LayerPlan& L) { same_as_input(L); }

// ---- cost layers (§3.23–§3.30) ----------------------------------------------------------------

void plan_logreg(Plan& P, LayerPlan& L) {
  if (L.input_sizes[0] != 1) fail(L, "cost.logreg takes labels and a softmax: its first input must be 1 row of labels");
  checked(L.spec, [&] { check_topk(L.spec.topk); });
  check_finite(L, "coeff", L.spec.coeff);
  L.cost_terms = 3 * P.max_cases;  // per case: log p of the label, top-1 credit, top-k credit
}

void plan_sum2(Plan&, LayerPlan& L) {
  check_finite(L, "coeff", L.spec.coeff);
  L.cost_terms = L.input_sizes[0];  // per row: the sum of its squares
}

// Costs of targets against predictions: two inputs of one size.
void plan_targets_and_predictions(const LayerPlan& L) {
  if (L.input_sizes[0] != L.input_sizes[1])
    fail(L, L.spec.type + " takes targets and predictions of one size: " + str(L.input_sizes[0]) + " and " +
                str(L.input_sizes[1]) + " values per case");
  check_finite(L, "coeff", L.spec.coeff);
}

void plan_crossent(Plan& P, LayerPlan& L) {
  plan_targets_and_predictions(L);
  L.cost_terms = 2 * P.max_cases;  // per case: sum_i t_i*safelog(y_i), and its correct credit
}

void plan_crossent2(Plan&, LayerPlan& L) {
  plan_targets_and_predictions(L);
  L.cost_terms = L.input_sizes[1];  // per row
}

void plan_rflickr(Plan&, LayerPlan& L) {
  plan_targets_and_predictions(L);
  L.cost_terms = L.input_sizes[1];  // per row
}

void plan_gsum2(Plan&, LayerPlan& L) {
  if (L.input_sizes[0] != 1) fail(L, "cost.gsum2 takes gates and x: its first input must be 1 row of gates");
  check_finite(L, "coeff", L.spec.coeff);
  L.cost_terms = L.input_sizes[1];  // per row of x
}

void plan_tica(Plan& P, LayerPlan& L) {
  L.tica = {L.spec.channels, L.spec.img_size, L.spec.size_x};
  checked(L.spec, [&] { check_tica_params(L.tica); });
  image_input(L);
  check_finite(L, "coeff", L.spec.coeff);
  L.cost_terms = L.input_sizes[0];  // per row: the sum of A over the cases
  // A for the backward's window sums: a double per element (the CPU holds its float32 values in doubles)
  L.work_bytes = L.input_sizes[0] * P.max_cases * static_cast<int64_t>(sizeof(double));
}

void plan_msm(Plan& P, LayerPlan& L) {
  if (L.input_sizes[0] != 1) fail(L, "cost.msm takes labels and energies: its first input must be 1 row of labels");
  L.msm = {L.input_sizes[1], L.spec.set_size};
  checked(L.spec, [&] { check_msm_params(L.msm); });
  check_finite(L, "coeff", L.spec.coeff);
  L.cost_terms = 3 * P.max_cases;  // per case: log p of the label, top-1 credit, top-k credit
  L.work_bytes = msm_chunk_cases(L.msm, P.max_cases) * msm_case_doubles(L.msm) * static_cast<int64_t>(sizeof(double));
}

}  // namespace

const std::vector<LayerType>& layer_types() {
  // name, weights, cost, min inputs, max inputs (-1: any), spec section, plan function
  static const std::vector<LayerType> table = {
      {"data", false, false, 0, 0, "§3.1", plan_data},
      {"conv", true, false, 1, -1, "§3.4", plan_conv},
      {"local", true, false, 1, -1, "§3.5", plan_local},
      {"fc", true, false, 1, -1, "§3.2", plan_fc},
      {"treefc", true, false, 1, 1, "§3.3", plan_treefc},
      {"pool", false, false, 1, 1, "§3.6", plan_pool},
      {"rnorm", false, false, 1, 1, "§3.8", plan_rnorm},
      {"cnorm", false, false, 1, 1, "§3.10", plan_cnorm},
      {"cmrnorm", false, false, 1, 1, "§3.9", plan_cmrnorm},
      {"neuron", false, false, 1, 1, "§3.11", plan_neuron},
      {"softmax", false, false, 1, 1, "§3.12", plan_softmax},
      {"hs", false, false, 1, 1, "§3.16", plan_hs},
      {"eltsum", false, false, 1, -1, "§3.13", plan_eltsum},
      {"eltmax", false, false, 2, -1, "§3.14", plan_eltmax},
      {"concat", false, false, 1, -1, "§3.15", plan_concat},
      {"nailbed", false, false, 1, 1, "§3.17", plan_nailbed},
      {"blur", false, false, 1, 1, "§3.18", plan_blur},
      {"href", false, false, 1, 1, "§3.19", plan_href},
      {"resize", false, false, 1, 1, "§3.20", plan_resize},
      {"rgb2yuv", false, false, 1, 1, "§3.21", plan_color},
      {"rgb2lab", false, false, 1, 1, "§3.21", plan_color},
      {"rscale", false, false, 1, 1, "§3.22", plan_rscale},
      {"quant", false, false, 1, 1, "§6", plan_quant},
      {"cost.logreg", false, true, 2, 2, "§3.23", plan_logreg},
      {"cost.sum2", false, true, 1, 1, "§3.27", plan_sum2},
      {"cost.crossent", false, true, 2, 2, "§3.24", plan_crossent},
      {"cost.crossent2", false, true, 2, 2, "§3.25", plan_crossent2},
      {"cost.rflickr", false, true, 2, 2, "§3.26", plan_rflickr},
      {"cost.gsum2", false, true, 2, 2, "§3.28", plan_gsum2},
      {"cost.tica", false, true, 1, 1, "§3.29", plan_tica},
      {"cost.msm", false, true, 2, 2, "§3.30", plan_msm},
  };
  return table;
}

const LayerType* find_layer_type(std::string_view name) {
  for (const LayerType& t : layer_types())
    if (name == t.name) return &t;
  return nullptr;
}

std::string layer_type_names() {
  std::string names;
  for (const LayerType& t : layer_types()) names += (names.empty() ? "" : ", ") + std::string(t.name);
  return names;
}

}  // namespace alexnet
