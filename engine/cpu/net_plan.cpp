// The device-independent part of both nets (net_plan.h): layer types, spec
// checks, kernel parameters from a spec, and the host-side draws.
#include "alexnet/net_plan.h"

#include <stdexcept>

namespace alexnet {

LayerKind layer_kind(const LayerSpec& s) {
  using Kind = LayerKind;
  static const std::map<std::string, Kind> kinds = {
      {"data", Kind::Data},       {"conv", Kind::Conv},       {"local", Kind::Local},
      {"fc", Kind::Fc},           {"pool", Kind::Pool},       {"rnorm", Kind::Rnorm},
      {"cnorm", Kind::Cnorm},     {"cmrnorm", Kind::Cmrnorm}, {"neuron", Kind::Neuron},
      {"softmax", Kind::Softmax}, {"hs", Kind::Dropout},      {"eltsum", Kind::Eltsum},
      {"eltmax", Kind::Eltmax},   {"concat", Kind::Concat},   {"nailbed", Kind::Nailbed},
      {"blur", Kind::Blur},       {"href", Kind::Href},       {"cost.logreg", Kind::Logreg},
      {"cost.sum2", Kind::Sum2},
  };
  auto it = kinds.find(s.type);
  if (it == kinds.end())
    throw std::invalid_argument("layer '" + s.name + "': the engine has no '" + s.type +
                                "' layer (supported: data, conv, local, fc, pool, rnorm, cnorm, cmrnorm, neuron, "
                                "softmax, hs, eltsum, eltmax, concat, nailbed, blur, href, cost.logreg, cost.sum2)");
  return it->second;
}

bool is_weight_kind(LayerKind k) { return k == LayerKind::Conv || k == LayerKind::Local || k == LayerKind::Fc; }

const char* type_name(LayerKind k) {
  using Kind = LayerKind;
  switch (k) {
    case Kind::Data: return "data";
    case Kind::Conv: return "conv";
    case Kind::Local: return "local";
    case Kind::Fc: return "fc";
    case Kind::Pool: return "pool";
    case Kind::Rnorm: return "rnorm";
    case Kind::Cnorm: return "cnorm";
    case Kind::Cmrnorm: return "cmrnorm";
    case Kind::Neuron: return "neuron";
    case Kind::Softmax: return "softmax";
    case Kind::Dropout: return "hs";
    case Kind::Eltsum: return "eltsum";
    case Kind::Eltmax: return "eltmax";
    case Kind::Concat: return "concat";
    case Kind::Nailbed: return "nailbed";
    case Kind::Blur: return "blur";
    case Kind::Href: return "href";
    case Kind::Logreg: return "cost.logreg";
    case Kind::Sum2: return "cost.sum2";
  }
  return "?";
}

void fail_layer(const LayerSpec& s, const std::string& why) {
  throw std::invalid_argument("layer '" + s.name + "': " + why);
}

LayerKind check_layer(const LayerSpec& s, int li, std::map<std::string, int>& index) {
  const LayerKind kind = layer_kind(s);
  if (index.count(s.name)) fail_layer(s, "name used twice");
  index[s.name] = li;
  for (int in : s.inputs)
    if (in < 0 || in >= li) fail_layer(s, "inputs must be earlier layers");
  if (kind != LayerKind::Data && s.inputs.empty()) fail_layer(s, "has no inputs");
  if (!is_cost_kind(kind) && s.outputs < 1) fail_layer(s, "has no outputs");
  return kind;
}

cpu::ConvParams conv_params(const LayerSpec& s, size_t i, int64_t input_size) {
  const ConvInputSpec& c = s.conv[i];
  cpu::ConvParams p;
  p.channels = c.channels;
  p.img_size = c.img_size;
  p.filter_size = c.filter_size;
  p.padding = c.padding;
  p.stride = c.stride;
  p.modules_x = s.modules_x;
  p.filters = s.filters;
  p.groups = c.groups;
  p.filter_channels = c.filter_channels;
  p.conns = c.conns.empty() ? nullptr : c.conns.data();
  if (p.channels * p.img_size * p.img_size != input_size) fail_layer(s, "input size does not match its geometry");
  if (!c.conns.empty() && static_cast<int64_t>(c.conns.size()) != p.groups * p.filter_channels)
    fail_layer(s, "connection table must have groups*filterChannels entries");
  return p;
}

cpu::PoolParams pool_params(const LayerSpec& s) {
  cpu::PoolParams p;
  p.kind = s.pool == "max"      ? cpu::PoolKind::kMax
           : s.pool == "maxabs" ? cpu::PoolKind::kMaxAbs
           : s.pool == "avg"    ? cpu::PoolKind::kAvg
                                : (fail_layer(s, "pool '" + s.pool + "' is not supported (max, maxabs, avg)"),
                                   cpu::PoolKind::kMax);
  p.channels = s.channels;
  p.img_size = s.img_size;
  p.size_x = s.size_x;
  p.start = s.start;
  p.stride = s.stride;
  p.outputs_x = s.outputs_x;
  return p;
}

cpu::SpatialNormParams spatial_norm_params(const LayerSpec& s) {
  return {s.channels, s.img_size, s.size, s.alpha, s.beta};
}

cpu::CrossMapNormParams cross_map_norm_params(const LayerSpec& s) {
  cpu::CrossMapNormParams p;
  p.channels = s.channels;
  p.size = s.size;
  p.alpha = s.alpha;
  p.beta = s.beta;
  p.min_div = s.min_div;
  p.blocked = s.blocked;
  return p;
}

cpu::NeuronParams neuron_params(const LayerSpec& s) {
  const cpu::NeuronInfo* info = cpu::find_neuron(s.neuron);
  if (!info) fail_layer(s, "unknown neuron '" + s.neuron + "'");
  cpu::NeuronParams p;
  p.type = info->type;
  p.a = s.neuron_a;
  p.b = s.neuron_b;
  return p;
}

void check_weight_lists(const LayerSpec& s) {
  const size_t n = s.inputs.size();
  if (s.weight_rows.size() != n || s.weight_cols.size() != n || s.eps_w.size() != n || s.mom_w.size() != n ||
      s.wc.size() != n || s.share_layer.size() != n || s.share_index.size() != n || s.sched_w.size() != n)
    fail_layer(s, "needs one weight shape, sharing entry and learning parameter set per input");
}

WeightParams weight_params(const LayerSpec& s, size_t i) {
  WeightParams w;
  w.rows = s.weight_rows[i];
  w.cols = s.weight_cols[i];
  w.eps_base = s.eps_w[i];
  w.mom = s.mom_w[i];
  w.wc = s.wc[i];
  w.wball = i < s.wball_normed.size() ? s.wball_normed[i] : 0.0f;
  w.norm_min = i < s.wcnorm_min.size() ? s.wcnorm_min[i] : 0.0f;
  w.norm_max = i < s.wcnorm_max.size() ? s.wcnorm_max[i] : 0.0f;
  w.sched = s.sched_w[i];
  w.eps = w.eps_base;
  return w;
}

WeightParams bias_params(const LayerSpec& s) {
  WeightParams b;
  b.rows = s.bias_rows;
  b.cols = s.bias_cols;
  b.eps_base = b.eps = s.eps_b;
  b.mom = s.mom_b;
  b.sched = s.sched_b;
  return b;
}

void ForwardDraws::normal(float* out, int64_t count) {
  for (int64_t i = 0; i < count; ++i) out[i] = normal_(rng_);
}

void ForwardDraws::dropout_mask(float* out, int64_t count, float keep) {
  for (int64_t i = 0; i < count; ++i) out[i] = (1.0 - uniform_(rng_)) < keep ? 1.0f : 0.0f;
}

void check_minibatch(int64_t cases, int64_t max_cases) {
  if (cases < 1 || cases > max_cases)
    throw std::invalid_argument("minibatch of " + std::to_string(cases) + " cases; this net holds 1.." +
                                std::to_string(max_cases));
}

void check_data_rows(const LayerSpec& s, int data_idx, int64_t rows) {
  if (rows != s.outputs)
    throw std::invalid_argument("data matrix " + std::to_string(data_idx) + " has " + std::to_string(rows) +
                                " rows; layer '" + s.name + "' expects " + std::to_string(s.outputs));
}

void fail_no_data_layer(int data_idx) {
  throw std::invalid_argument("no data layer reads matrix " + std::to_string(data_idx));
}

int find_layer(const std::map<std::string, int>& index, const std::string& name) {
  auto it = index.find(name);
  if (it == index.end()) throw std::out_of_range("no layer named '" + name + "'");
  return it->second;
}

}  // namespace alexnet
