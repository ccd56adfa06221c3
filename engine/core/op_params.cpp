// The checks of every operation's parameters (op_params.h), the neuron table,
// and the conv input gradient's channel table. One place for both backends and
// the per-op bindings (STYLE.md habit 14): each message names the field.
#include "alexnet/core/op_params.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

namespace alexnet {

namespace {

[[noreturn]] void fail(const std::string& message) { throw std::invalid_argument(message); }

std::string str(int64_t v) { return std::to_string(v); }

// "<name>: must be >= 1 (got v)" and an upper bound that keeps products in range.
void check_count(const char* name, int64_t v, int64_t hi = kMaxCount) {
  if (v < 1) fail(std::string(name) + ": must be >= 1 (got " + str(v) + ")");
  if (v > hi) fail(std::string(name) + ": must be <= " + str(hi) + " (got " + str(v) + ")");
}

}  // namespace

// ---- conv and local ---------------------------------------------------------------------

int64_t conv_modules_x(int64_t img_size, int64_t filter_size, int64_t padding, int64_t stride) {
  const int64_t span = 2 * padding + img_size - filter_size;
  return 1 + (span + stride - 1) / stride;
}

void check_conv_params(const ConvParams& p) {
  check_count("channels", p.channels);
  check_count("img_size", p.img_size, kMaxSide);
  check_count("filter_size", p.filter_size, kMaxSide);
  if (p.padding < 0)
    fail("padding: must be >= 0 (the cfg's value; the release passed -padding to its kernels), got " +
         str(p.padding));
  if (p.padding > kMaxSide) fail("padding: must be <= " + str(kMaxSide) + " (got " + str(p.padding) + ")");
  check_count("stride", p.stride, kMaxSide);
  check_count("groups", p.groups);
  if (p.filter_size > p.img_size + 2 * p.padding)
    fail("filter_size: K=" + str(p.filter_size) + " exceeds img_size + 2*padding = " +
         str(p.img_size + 2 * p.padding));
  const int64_t want_mx = conv_modules_x(p.img_size, p.filter_size, p.padding, p.stride);
  if (p.modules_x != want_mx)
    fail("modules_x: expected 1 + ceil((2*padding + img_size - filter_size)/stride) = " + str(want_mx) + ", got " +
         str(p.modules_x));
  check_count("filters", p.filters);
  if (p.filters % p.groups != 0)
    fail("filters: " + str(p.filters) + " filters are not divisible by groups=" + str(p.groups));
  check_count("filter_channels", p.filter_channels);
  if (p.conns == nullptr) {
    if (p.groups * p.filter_channels != p.channels)
      fail("filter_channels: dense groups need groups*filter_channels == channels (" + str(p.groups) + "*" +
           str(p.filter_channels) + " != " + str(p.channels) + ")");
  } else {
    const int64_t len = p.groups * p.filter_channels;
    for (int64_t i = 0; i < len; ++i)
      if (p.conns[i] < 0 || p.conns[i] >= p.channels)
        fail("conns: entry " + str(i) + " = " + str(p.conns[i]) + " is not a channel in [0, " + str(p.channels) +
             ")");
  }
  if (p.chunk_modules < 0) fail("chunk_modules: must be >= 0 (0 = automatic), got " + str(p.chunk_modules));
}

void check_partial_sum(const ConvParams& p, int64_t partial_sum) {
  const int64_t m = p.modules();
  if (partial_sum < 0 || (partial_sum > 0 && m % partial_sum != 0))
    fail("partial_sum: must be 0 or divide the " + str(m) + " modules, got " + str(partial_sum));
}

void check_filter_spread(float norm_min, float norm_max) {
  if (!std::isfinite(norm_min) || !std::isfinite(norm_max)) fail("norm_min: wcNormMin and wcNormMax must be finite");
  if (norm_max > 0.0f && norm_min > norm_max) fail("norm_min: larger than norm_max");
}

void build_conv_feeds(const ConvParams& p, std::vector<int64_t>& feeds, std::vector<int64_t>& cursor) {
  const int64_t c_all = p.channels, pairs = p.groups * p.filter_channels;
  feeds.assign(static_cast<size_t>(c_all + 1 + pairs), 0);
  for (int64_t gc = 0; gc < pairs; ++gc)
    ++feeds[static_cast<size_t>(p.channel(gc / p.filter_channels, gc % p.filter_channels) + 1)];
  for (int64_t c = 0; c < c_all; ++c) feeds[static_cast<size_t>(c + 1)] += feeds[static_cast<size_t>(c)];
  cursor.assign(feeds.begin(), feeds.begin() + c_all);
  for (int64_t gc = 0; gc < pairs; ++gc) {
    const int64_t c = p.channel(gc / p.filter_channels, gc % p.filter_channels);
    feeds[static_cast<size_t>(c_all + 1 + cursor[static_cast<size_t>(c)]++)] = gc;
  }
}

// ---- pool ------------------------------------------------------------------------------

void check_pool_params(const PoolParams& p) {
  if (p.kind != PoolKind::kMax && p.kind != PoolKind::kMaxAbs && p.kind != PoolKind::kAvg &&
      p.kind != PoolKind::kRand)
    fail("kind: not a pooling kind (max, maxabs, avg, rand)");
  check_count("channels", p.channels);
  check_count("img_size", p.img_size, kMaxSide);
  check_count("size_x", p.size_x, kMaxSide);
  check_count("stride", p.stride, kMaxSide);
  check_count("outputs_x", p.outputs_x, kMaxSide);
  if (p.start < -kMaxSide || p.start > kMaxSide)
    fail("start: must be in [-" + str(kMaxSide) + ", " + str(kMaxSide) + "] (got " + str(p.start) + ")");
  // Windows are monotone in o, so the first and the last decide whether every
  // clipped window keeps at least one pixel.
  if (p.start + p.size_x <= 0)
    fail("start: the first window [start, start + size_x) = [" + str(p.start) + ", " + str(p.start + p.size_x) +
         ") lies outside the image");
  if (p.start + (p.outputs_x - 1) * p.stride >= p.img_size)
    fail("outputs_x: the last window starts at start + (outputs_x - 1)*stride = " +
         str(p.start + (p.outputs_x - 1) * p.stride) + ", outside the image of side " + str(p.img_size));
}

void check_pool_picks(const PoolParams& p, const float* picks, int64_t n_cases) {
  const int64_t ox_n = p.outputs_x;
  for (int64_t row = 0; row < p.channels * ox_n * ox_n; ++row) {
    const int64_t oy = (row / ox_n) % ox_n, ox = row % ox_n;
    const int64_t area = pool_window_side(p, oy) * pool_window_side(p, ox);
    for (int64_t n = 0; n < n_cases; ++n) {
      const float k = picks[row * n_cases + n];
      if (!(k >= 0.0f && k < static_cast<float>(area) && k == std::floor(k)))
        fail("picks: output " + str(row) + ", case " + str(n) + " picks " + std::to_string(k) +
             ", not a position 0.." + str(area - 1) + " of its window");
    }
  }
}

// ---- norms -----------------------------------------------------------------------------

namespace {
void check_range(const char* name, int64_t v, int64_t lo, int64_t hi, const std::string& hi_text) {
  if (v < lo || v > hi)
    fail(std::string(name) + ": expected " + str(lo) + " <= " + name + " <= " + hi_text + ", got " + str(v));
}
void check_finite(const char* name, float v) {
  if (!std::isfinite(v)) fail(std::string(name) + ": must be a finite number");
}
}  // namespace

void check_spatial_norm_params(const SpatialNormParams& p) {
  check_range("channels", p.channels, 1, kMaxCount, "2^31-1");
  check_range("img_size", p.img_size, 1, kMaxSide, str(kMaxSide));
  check_range("size", p.size, 1, p.img_size, "img_size (" + str(p.img_size) + ")");
  check_finite("alpha", p.alpha);
  check_finite("beta", p.beta);
}

void check_cross_map_norm_params(const CrossMapNormParams& p) {
  check_range("channels", p.channels, 1, kMaxCount, "2^31-1");
  check_range("size", p.size, 1, p.channels, "channels (" + str(p.channels) + ")");
  check_finite("alpha", p.alpha);
  check_finite("beta", p.beta);
  check_finite("min_div", p.min_div);
}

// ---- neuron ----------------------------------------------------------------------------

const NeuronInfo kNeuronTable[kNumNeuronTypes] = {
    {NeuronType::kIdent, "ident", 0, NeuronUses::kNothing},
    {NeuronType::kRelu, "relu", 0, NeuronUses::kOutput},
    {NeuronType::kNrelu, "nrelu", 0, NeuronUses::kOutput},
    {NeuronType::kBrelu, "brelu", 1, NeuronUses::kOutput},
    {NeuronType::kSoftrelu, "softrelu", 0, NeuronUses::kInput},
    {NeuronType::kDrelu, "drelu", 1, NeuronUses::kInput},
    {NeuronType::kAbs, "abs", 0, NeuronUses::kInput},
    {NeuronType::kLogistic, "logistic", 0, NeuronUses::kOutput},
    {NeuronType::kTanh, "tanh", 2, NeuronUses::kOutput},
    {NeuronType::kSquare, "square", 0, NeuronUses::kInput},
    {NeuronType::kSqrt, "sqrt", 0, NeuronUses::kOutput},
    {NeuronType::kLinear, "linear", 2, NeuronUses::kNothing},
};

const NeuronInfo* find_neuron(std::string_view name) {
  for (const NeuronInfo& info : kNeuronTable)
    if (name == info.name) return &info;
  return nullptr;
}

const NeuronInfo& neuron_info(NeuronType type) {
  const auto i = static_cast<int32_t>(type);
  if (i < 0 || i >= kNumNeuronTypes) fail("type: not a neuron type (" + str(i) + ")");
  return kNeuronTable[i];
}

void check_neuron_params(const NeuronParams& p) {
  const NeuronInfo& info = neuron_info(p.type);
  if (!std::isfinite(p.a) || !std::isfinite(p.b))
    fail(std::string("params: neuron '") + info.name + "' needs finite numbers");
  // drelu divides x by a; tanh's backward divides y*y by a.
  if ((p.type == NeuronType::kDrelu || p.type == NeuronType::kTanh) && p.a == 0.0f)
    fail(std::string("params: neuron '") + info.name + "' needs a != 0 (it divides by a)");
}

// ---- hs, nailbed, blur, href, costs ------------------------------------------------------

void check_keep(float keep) {
  if (!(keep > 0.0f && keep <= 1.0f)) fail("keep: must be in (0, 1], got " + std::to_string(keep));
}

void check_nailbed_params(const NailbedParams& p) {
  check_count("channels", p.channels);
  check_count("img_size", p.img_size, kMaxSide);
  check_count("stride", p.stride, kMaxSide);
}

void check_blur_params(const BlurParams& p, const float* taps) {
  check_count("channels", p.channels);
  check_count("img_size", p.img_size, kMaxSide);
  const int64_t k = p.filter_size;
  if (k < 1 || k % 2 == 0) fail("filter: must have an odd number of taps (got " + str(k) + ")");
  if (k > 2 * kMaxSide + 1) fail("filter: must have at most " + str(2 * kMaxSide + 1) + " taps (got " + str(k) + ")");
  for (int64_t i = 0; i < k; ++i)
    if (!std::isfinite(taps[i])) fail("filter: tap " + str(i) + " is not a finite number");
  for (int64_t i = 0; i < k / 2; ++i)
    if (!(taps[i] == taps[k - 1 - i]))
      fail("filter: must be symmetric (tap " + str(i) + " differs from tap " + str(k - 1 - i) +
           "): the release reads only taps 0..K-2 and reuses tap 0 for the last one, and its backward is the "
           "forward pass, the adjoint only for a symmetric filter (engine.md §3.18)");
}

void check_href_params(const HrefParams& p) {
  check_count("channels", p.channels);
  check_count("img_size", p.img_size, kMaxSide);
}

// ---- resize, rgb2yuv/rgb2lab, rscale ----------------------------------------------------

int64_t resize_target_size(int64_t img_size, double scale) {
  if (!(scale > 0.0) || !std::isfinite(scale)) return 0;
  const double t = std::floor(static_cast<double>(img_size) / scale);
  return t < static_cast<double>(kMaxSide) ? static_cast<int64_t>(t) : kMaxSide + 1;
}

void check_resize_params(const ResizeParams& p) {
  check_count("channels", p.channels);
  if (p.img_size < 2 || p.img_size > kMaxSide)
    fail("img_size: must be in 2.." + str(kMaxSide) + " (bilinear sampling clamps to S - 1.01 and blends two "
         "columns), got " + str(p.img_size));
  check_count("tgt_size", p.tgt_size, kMaxSide);
  if (!(p.scale > 0.0f) || !std::isfinite(p.scale))
    fail("scale: must be a positive finite number, got " + std::to_string(p.scale));
}

void check_color_params(const ColorParams& p) { check_count("img_size", p.img_size, kMaxSide); }

int64_t rscale_num_scales(const RscaleParams& p) {
  const double top = std::floor(static_cast<double>(p.tgt_size) * p.max_scale);
  const int64_t largest = top < static_cast<double>(p.img_size) ? static_cast<int64_t>(top) : p.img_size;
  return largest - p.tgt_size + 1;
}

void check_rscale_params(const RscaleParams& p) {
  check_count("channels", p.channels);
  check_count("img_size", p.img_size, kMaxSide);
  check_count("tgt_size", p.tgt_size, kMaxSide);
  if (p.tgt_size > p.img_size)
    fail("tgt_size: the crop of " + str(p.tgt_size) + " must fit in the input image of side " + str(p.img_size));
  if (!(p.max_scale >= 1.0 && p.max_scale <= 2.0))
    fail("max_scale: must be in [1, 2] (the cfg's maxScale), got " + std::to_string(p.max_scale));
}

RscaleDraw rscale_draw(const RscaleParams& p, const double u[kRscaleDraws]) {
  // s with probability (s+1)^2 / sum: the first s whose cumulative weight exceeds u0 * sum.
  const int64_t num = rscale_num_scales(p);
  double total = 0.0;
  for (int64_t s = 0; s < num; ++s) total += static_cast<double>((s + 1) * (s + 1));
  const double target = u[0] * total;
  RscaleDraw d;
  d.scale_index = num - 1;
  double cum = 0.0;
  for (int64_t s = 0; s < num; ++s) {
    cum += static_cast<double>((s + 1) * (s + 1));
    if (target < cum) {
      d.scale_index = s;
      break;
    }
  }
  const double S = static_cast<double>(p.img_size), R = static_cast<double>(d.rescaled(p));
  const double lo = std::max(1.0, S / (R + 1.0)), hi = S / R;
  d.factor = static_cast<float>(lo + u[1] * (hi - lo));
  const double span = static_cast<double>(d.scale_index + 1);  // offsets 0..s
  d.crop_y = std::min(static_cast<int64_t>(u[2] * span), d.scale_index);
  d.crop_x = std::min(static_cast<int64_t>(u[3] * span), d.scale_index);
  return d;
}

void rscale_store(const RscaleDraw& d, float* out) {
  out[0] = static_cast<float>(d.scale_index);
  out[1] = d.factor;
  out[2] = static_cast<float>(d.crop_y);
  out[3] = static_cast<float>(d.crop_x);
}

RscaleDraw rscale_load(const RscaleParams& p, const float* stored) {
  const int64_t num = rscale_num_scales(p);
  auto whole = [](float v, float lo, float hi) { return v >= lo && v <= hi && v == std::floor(v); };
  if (!whole(stored[0], 0.0f, static_cast<float>(num - 1)))
    fail("draws: the scale index must be a whole number in 0.." + str(num - 1) + ", got " +
         std::to_string(stored[0]));
  RscaleDraw d;
  d.scale_index = static_cast<int64_t>(stored[0]);
  d.factor = stored[1];
  if (!(d.factor > 0.0f) || !std::isfinite(d.factor))
    fail("draws: the scale factor must be a positive finite number, got " + std::to_string(stored[1]));
  const float s = static_cast<float>(d.scale_index);
  if (!whole(stored[2], 0.0f, s) || !whole(stored[3], 0.0f, s))
    fail("draws: the crop offsets must be whole numbers in 0.." + str(d.scale_index) + ", got " +
         std::to_string(stored[2]) + ", " + std::to_string(stored[3]));
  d.crop_y = static_cast<int64_t>(stored[2]);
  d.crop_x = static_cast<int64_t>(stored[3]);
  return d;
}

// ---- cost.tica, cost.msm ---------------------------------------------------------------

void check_tica_params(const TicaParams& p) {
  check_count("channels", p.channels);
  check_count("img_size", p.img_size, kMaxSide);
  check_range("size_x", p.size_x, 1, p.img_size, "img_size (" + str(p.img_size) + ")");
}

void check_msm_params(const MsmParams& p) {
  if (p.classes < 2 || p.classes > kMaxCount)
    fail("classes: the energies need 2..2^31-1 rows (got " + str(p.classes) + ")");
  check_range("set_size", p.set_size, 1, p.classes - 1, "classes - 1 (" + str(p.classes - 1) + ")");
  if ((p.classes + 1) * (p.set_size + 1) > (int64_t{1} << 31))
    fail("set_size: the lattice of a case, (classes+1)*(set_size+1) = " + str((p.classes + 1) * (p.set_size + 1)) +
         " doubles, must stay within 2^31");
}

void check_topk(int64_t topk) {
  if (topk < 1) fail("topk: must be >= 1, got " + str(topk));
}

}  // namespace alexnet
