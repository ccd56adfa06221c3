// The parameters of every operation, shared by both backends (STYLE.md habit
// 13): plain structs that the net plan (net_plan.h) fills from a LayerSpec and
// the per-op bindings fill from their arguments, the index rules both kinds of
// kernel use, and the checks of each struct (habit 14).
//
// A check_* function throws std::invalid_argument("<field>: <why>"), naming the
// struct field (which is also the per-op binding's argument name); the plan
// prefixes "layer '<name>': ". The kernels assume checked parameters: nothing
// here or in a kernel may divide by zero, read outside an image, or loop
// forever on a struct that passed its check.
//
// Layouts (engine.md §1.2, §1.3) and the shape alphabet of STYLE.md habit 2:
// images (C, S, S, N) case fastest; conv outputs (F, MX, MX, N).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <string_view>
#include <vector>

// Index rules that CUDA kernels call too are host-and-device functions.
#if defined(__CUDACC__)
#define ALEXNET_HOST_DEVICE __host__ __device__
#else
#define ALEXNET_HOST_DEVICE
#endif

namespace alexnet {

// Largest image side, channel count or filter count the checks accept: products
// of three of them stay far inside int64 (and S*S inside int32 where a kernel
// indexes with it).
inline constexpr int64_t kMaxSide = 46340;        // floor(sqrt(2^31 - 1))
inline constexpr int64_t kMaxCount = 2147483647;  // 2^31 - 1

// ---- conv and local (engine.md §3.4, §3.5) -----------------------------------------

// Geometry of one input of a conv or local layer.
struct ConvParams {
  int64_t channels = 0;         // C, channels of this input image
  int64_t img_size = 0;         // S (square images only)
  int64_t filter_size = 0;      // K
  int64_t padding = 0;          // p >= 0 as written in the cfg (the release passed -p to its kernels)
  int64_t stride = 1;           // st
  int64_t modules_x = 0;        // MX = 1 + ceil((2p + S - K) / st); MY = MX
  int64_t filters = 0;          // F, all groups together
  int64_t groups = 1;           // G; filter f is in group f / (F/G)
  int64_t filter_channels = 0;  // Cg: C/G when dense, filterChannels with random sparsity
  // (G·Cg,) channel table for random sparse connectivity: filter channel c' of
  // group g reads image channel conns[g·Cg + c']. nullptr means dense groups:
  // channel g·Cg + c'. Host memory for the CPU kernels, device memory for CUDA's.
  const int32_t* conns = nullptr;
  // Most modules lowered at once (0 = chosen from a memory budget). It changes
  // the shapes of the products and so the rounding, nothing else; tests set it
  // small to exercise the chunk loop.
  int64_t chunk_modules = 0;

  ALEXNET_HOST_DEVICE int64_t modules() const { return modules_x * modules_x; }
  ALEXNET_HOST_DEVICE int64_t filters_per_group() const { return filters / groups; }
  ALEXNET_HOST_DEVICE int64_t rows_per_group() const { return filter_channels * filter_size * filter_size; }
  // Image channel read by filter channel c' of group g (engine.md §3.4).
  ALEXNET_HOST_DEVICE int64_t channel(int64_t g, int64_t c) const {
    return conns ? conns[g * filter_channels + c] : g * filter_channels + c;
  }
};

// 1 + ceil((2p + S - K) / st), engine.md §3.4: the ceiling gives the implicit
// bottom/right overhang.
int64_t conv_modules_x(int64_t img_size, int64_t filter_size, int64_t padding, int64_t stride);

// Every field, and the connection table's entries when there is one (host
// memory). partial_sum (conv weight gradients, §3.4) must be 0 or divide M.
void check_conv_params(const ConvParams& p);
void check_partial_sum(const ConvParams& p, int64_t partial_sum);

// wcNormMin/wcNormMax of conv filters (§3.4): both finite, min <= max when the
// constraint is on (max > 0).
void check_filter_spread(float norm_min, float norm_max);

// The channel -> (g·Cg + c') table of the input gradient, CSR form: feeds[0..C]
// offsets, then for each channel the pairs that read it, increasing. `cursor`
// is working space. Both vectors keep their capacity, so a caller that keeps
// them allocates once.
void build_conv_feeds(const ConvParams& p, std::vector<int64_t>& feeds, std::vector<int64_t>& cursor);

// ---- pool (§3.6) --------------------------------------------------------------------

// Stable numbering: never renumber (later code may store the value). kRand is
// pool=rand without doMax (rand with doMax is kMax): a reconstruction, see pool_rand_pick.
enum class PoolKind : int32_t { kMax = 0, kMaxAbs = 1, kAvg = 2, kRand = 3 };

// Output (oy, ox) pools rows [start + oy*stride, start + oy*stride + size_x) and
// the same columns, both intersected with [0, img_size): windows are clipped at
// the edges, nothing is padded. `start` may be negative or positive.
struct PoolParams {
  PoolKind kind = PoolKind::kMax;
  int64_t channels = 0;   // C
  int64_t img_size = 0;   // S (= H = W)
  int64_t size_x = 0;     // window side
  int64_t start = 0;      // first window's top/left offset
  int64_t stride = 1;
  int64_t outputs_x = 0;  // OX (= OY)
};

// Sizes >= 1, and every clipped window keeps at least one in-image pixel (an
// empty one would pool nothing: -2e38 for max, 0/0 for avg).
void check_pool_params(const PoolParams& p);

// In-image pixels of window (oy, ox): the clipped rows times the clipped columns.
ALEXNET_HOST_DEVICE inline int64_t pool_window_side(const PoolParams& p, int64_t o) {
  const int64_t first = p.start + o * p.stride;
  const int64_t lo = first > 0 ? first : 0, hi = first + p.size_x < p.img_size ? first + p.size_x : p.img_size;
  return hi - lo;
}

// pool=rand without doMax (§3.6: convLocalRandomPool, kernel not public; a
// reconstruction, docs/fidelity.md): output (c, oy, ox, n) is the input pixel at
// position k of its clipped window, raster order (row k / width, column k % width),
// in every pass type. The picks k are a (C·OX·OX, N) matrix, case fastest, drawn
// on the host from the net's generator (ForwardDraws::pool_picks: one U in [0, 1)
// per output element, in that order, k = floor(U·area)) or injected. Backward is
// max-undo against the chosen value (§3.6).
ALEXNET_HOST_DEVICE inline int64_t pool_rand_pick(double u, int64_t area) {
  const int64_t k = static_cast<int64_t>(u * static_cast<double>(area));
  return k < area ? k : area - 1;
}
// Throws std::invalid_argument("picks: ...") unless every pick (C·OX·OX·n values,
// case fastest) is a whole number in [0, area of its window).
void check_pool_picks(const PoolParams& p, const float* picks, int64_t n_cases);

// ---- quant (§6: quantF/quantB = half, a reconstruction) ----------------------------

// x rounded to IEEE half precision (round to nearest, ties to even; subnormal halves
// kept; beyond 65504 rounding gives ±inf; NaN stays NaN), back in float32. The
// release's convQuantizeHalf was never published (§6); this is the rounding a
// float -> half -> float transfer makes. Integer and float32 operations only, so the
// CPU and CUDA kernels give the same bits.
ALEXNET_HOST_DEVICE inline float round_to_half(float x) {
  uint32_t u;
  memcpy(&u, &x, sizeof u);
  const uint32_t sign = u & 0x80000000u, a = u & 0x7fffffffu;
  if (a >= 0x7f800000u) return x;  // inf, NaN
  uint32_t r;
  if (a >= 0x477ff000u) {  // >= 65520: rounds past the largest half (65504)
    r = sign | 0x7f800000u;
  } else if (a < 0x38800000u) {  // below 2^-14: subnormal halves, multiples of 2^-24
    float m;
    memcpy(&m, &a, sizeof m);
    const float t = m + 0.5f;  // 0.5's ulp is 2^-24: the addition rounds to even for us
    const float q = t - 0.5f;
    memcpy(&r, &q, sizeof r);
    r |= sign;
  } else {  // normal: keep 10 of the 23 mantissa bits, ties to even
    r = sign | ((a + 0x0fffu + ((a >> 13) & 1u)) & ~0x1fffu);
  }
  float y;
  memcpy(&y, &r, sizeof y);
  return y;
}

// ---- rnorm, cnorm, cmrnorm (§3.7–§3.10) ----------------------------------------------

// Clipped window [lo, hi) of length `size` that starts ⌊size/2⌋ before i, in
// [0, n): for even sizes it reaches one further below i than above (§3.8, §3.9).
ALEXNET_HOST_DEVICE inline void norm_window(int64_t i, int64_t size, int64_t n, int64_t* lo, int64_t* hi) {
  const int64_t start = i - size / 2;
  *lo = start > 0 ? start : 0;
  *hi = start + size < n ? start + size : n;
}

// The adjoint of norm_window: the j whose window contains i, i.e.
// [i + ⌊size/2⌋ − size + 1, i + ⌊size/2⌋] clipped to [0, n), as [lo, hi).
ALEXNET_HOST_DEVICE inline void norm_adjoint_window(int64_t i, int64_t size, int64_t n, int64_t* lo, int64_t* hi) {
  const int64_t first = i + size / 2 - size + 1, last = i + size / 2 + 1;
  *lo = first > 0 ? first : 0;
  *hi = last < n ? last : n;
}

// rnorm and cnorm: spatial windows, same channel.
struct SpatialNormParams {
  int64_t channels = 0;  // C
  int64_t img_size = 0;  // S (square images), rows of every matrix = C·S·S
  int64_t size = 0;      // s, window side, 1 <= s <= S
  float alpha = 0.0f;    // scale / s², already rewritten by the cfg reader (§3.7)
  float beta = 0.0f;     // pow
};
void check_spatial_norm_params(const SpatialNormParams& p);

// cmrnorm: windows across channels, same pixel.
struct CrossMapNormParams {
  int64_t channels = 0;  // F; rows of every matrix = F·P with P pixels per map
  int64_t size = 0;      // s, channel window, 1 <= s <= F
  float alpha = 0.0f;    // scale / s, already rewritten (§3.7)
  float beta = 0.0f;     // pow
  float min_div = 1.0f;  // the additive constant of D (cfg `minDiv`, default 1)
  bool blocked = false;  // disjoint blocks [⌊f/s⌋·s, ⌊f/s⌋·s + s) instead of centred windows
};
void check_cross_map_norm_params(const CrossMapNormParams& p);

// ---- neuron (§3.11) -------------------------------------------------------------------

// Stable numbering (the order of the §3.11 table). Never renumber.
enum class NeuronType : int32_t {
  kIdent = 0,
  kRelu = 1,
  kNrelu = 2,
  kBrelu = 3,     // brelu[a]
  kSoftrelu = 4,
  kDrelu = 5,     // drelu[a]
  kAbs = 6,
  kLogistic = 7,
  kTanh = 8,      // tanh[a,b]
  kSquare = 9,
  kSqrt = 10,
  kLinear = 11,   // linear[a,b]
};

// What the backward factor f' is computed from (§3.11 "uses" column).
enum class NeuronUses : int32_t { kNothing = 0, kInput = 1, kOutput = 2 };

struct NeuronInfo {
  NeuronType type;
  const char* name;  // the cfg spelling, as layers.py:parse_neuron returns it
  int num_params;    // numbers in brackets: brelu[a] 1, tanh[a,b] 2, ...
  NeuronUses uses;
};

// The twelve types, in enum order (kNeuronTable[i].type == NeuronType(i)).
inline constexpr int kNumNeuronTypes = 12;
extern const NeuronInfo kNeuronTable[kNumNeuronTypes];

// Looks a cfg name up; nullptr when unknown.
const NeuronInfo* find_neuron(std::string_view name);
const NeuronInfo& neuron_info(NeuronType type);

// a, b are the bracketed numbers in order (brelu[a]: a; tanh[a,b]: a, b; ...);
// unused ones are ignored.
struct NeuronParams {
  NeuronType type = NeuronType::kIdent;
  float a = 0.0f;
  float b = 0.0f;
};
// A known type, finite numbers, and a != 0 where it divides (drelu, tanh).
void check_neuron_params(const NeuronParams& p);

// ---- hs (dropout, §3.16) --------------------------------------------------------------
void check_keep(float keep);  // keep in (0, 1]

// ---- nailbed (§3.17), blur (§3.18), href (§3.19) ---------------------------------------

struct NailbedParams {
  int64_t channels = 0;  // C
  int64_t img_size = 0;  // S
  int64_t stride = 1;    // >= 1 (the release's parser asks > 1; 1 is a plain copy)
};
// §3.17: outputs_x = ceil(S/stride), start = floor((S - stride*(outputs_x-1))/2).
ALEXNET_HOST_DEVICE inline int64_t nailbed_outputs_x(const NailbedParams& p) {
  return (p.img_size + p.stride - 1) / p.stride;
}
ALEXNET_HOST_DEVICE inline int64_t nailbed_start(const NailbedParams& p) {
  return (p.img_size - p.stride * (nailbed_outputs_x(p) - 1)) / 2;  // numerator > 0, so / is floor
}
void check_nailbed_params(const NailbedParams& p);

struct BlurParams {
  int64_t channels = 0;           // C
  int64_t img_size = 0;           // S
  const float* filter = nullptr;  // (K,) taps g_0..g_{K-1}, K odd, symmetric (host or device memory)
  int64_t filter_size = 0;        // K = 2r + 1
};
// `taps` is the filter in host memory (the struct's pointer may be a device one).
void check_blur_params(const BlurParams& p, const float* taps);

struct HrefParams {
  int64_t channels = 0;  // C
  int64_t img_size = 0;  // S
};
void check_href_params(const HrefParams& p);

// ---- resize (§3.20), rgb2yuv and rgb2lab (§3.21), rscale (§3.22) ----------------------------
// None of the four has a backward: the release's layer.py forbids layers that need a
// gradient below them, and the plan refuses an input at or below which something learns.

// Bilinear resize of every (S, S) channel to (T, T), §3.20.
struct ResizeParams {
  int64_t channels = 0;  // C
  int64_t img_size = 0;  // S, >= 2: the clamp to S − 1.01 keeps two columns to blend
  int64_t tgt_size = 0;  // T
  float scale = 1.0f;    // source pixels per target pixel (the cfg's scale, or rscale's factor)
};
// T = floor(S/scale) of the cfg's scale, in double as the cfg reader computes it
// (S = 24, scale = 1.2 gives 20); 0 when scale is not a positive finite number.
int64_t resize_target_size(int64_t img_size, double scale);
// Sizes in range, S >= 2, T >= 1, scale positive and finite.
void check_resize_params(const ResizeParams& p);

// §3.20: c = S/2 − (T/2)·scale, in float32 in that order: the source position of
// target pixel 0, so that the centres of the two images coincide.
ALEXNET_HOST_DEVICE inline float resize_offset(const ResizeParams& p) {
  return static_cast<float>(p.img_size) / 2.0f - static_cast<float>(p.tgt_size) / 2.0f * p.scale;
}

// §3.20: target pixel (ty, tx) of one channel `img` (S, S, N) at case n, c = resize_offset.
// s = clamp(t·scale + c, 0, S − 1.01) per axis; u = floor(sx + 1) − sx weighs the left
// column, w = sy − floor(sy) the lower row; top = u·(v00 − v01) + v01, bottom likewise,
// result w·(bottom − top) + top. Float32, each operation rounded (no FMA).
ALEXNET_HOST_DEVICE inline float resize_sample(const ResizeParams& p, float c, const float* img, int64_t n_cases,
                                               int64_t n, int64_t ty, int64_t tx) {
  const int64_t S = p.img_size;
  const float hi = static_cast<float>(S) - 1.01f;
  float sx = static_cast<float>(tx) * p.scale + c;
  float sy = static_cast<float>(ty) * p.scale + c;
  sx = sx < 0.0f ? 0.0f : (sx > hi ? hi : sx);
  sy = sy < 0.0f ? 0.0f : (sy > hi ? hi : sy);
  const float fx = floorf(sx), fy = floorf(sy);
  const float u = floorf(sx + 1.0f) - sx;
  const float w = sy - fy;
  const int64_t x0 = static_cast<int64_t>(fx), y0 = static_cast<int64_t>(fy);
  const float* row0 = img + (y0 * S + x0) * n_cases + n;
  const float* row1 = row0 + S * n_cases;
  const float v00 = row0[0], v01 = row0[n_cases], v10 = row1[0], v11 = row1[n_cases];
  const float top = u * (v00 - v01) + v01;
  const float bottom = u * (v10 - v11) + v11;
  return w * (bottom - top) + top;
}

// rgb2yuv, rgb2lab: three channels (R, G, B) in, three out (Y, U, V or L, a, b).
struct ColorParams {
  int64_t img_size = 0;  // S
  bool center = false;   // rgb2lab: L − 50
};
void check_color_params(const ColorParams& p);

// rscale, §3.22: in a training pass, rescale to tgt_size + s (s drawn) and crop tgt_size.
struct RscaleParams {
  int64_t channels = 0;    // C
  int64_t img_size = 0;    // S >= tgt_size
  int64_t tgt_size = 0;    // the output side
  double max_scale = 1.0;  // in [1, 2]
};
// The number of scale indices, s = 0 .. num − 1: rescaled sides tgt_size + s up to
// min(floor(tgt_size·max_scale), S) (engine.md is silent on the range; docs/fidelity.md).
int64_t rscale_num_scales(const RscaleParams& p);
void check_rscale_params(const RscaleParams& p);

// The draws of one training pass (one per minibatch, as the release's host rand()).
struct RscaleDraw {
  int64_t scale_index = 0;  // s, with probability ∝ (s+1)²
  float factor = 1.0f;      // uniform in [max(1, S/(R+1)), S/R], R = tgt_size + s
  int64_t crop_y = 0, crop_x = 0;  // each uniform in 0..s (= R − tgt_size)
  int64_t rescaled(const RscaleParams& p) const { return p.tgt_size + scale_index; }
};
// The layer's "draws" buffer: (1, 4) floats = s, factor, crop_y, crop_x.
inline constexpr int64_t kRscaleDraws = 4;
// A draw from four uniforms in [0, 1), in this order: s, factor, crop_y, crop_x.
RscaleDraw rscale_draw(const RscaleParams& p, const double u[kRscaleDraws]);
void rscale_store(const RscaleDraw& d, float* out);
// An injected draw read back: throws std::invalid_argument("draws: ...") unless s is
// in range, the factor positive and finite, and both offsets in 0..s.
RscaleDraw rscale_load(const RscaleParams& p, const float* stored);

// ---- cost.tica (§3.29), cost.msm (§3.30) ------------------------------------------------

struct TicaParams {
  int64_t channels = 0;  // C
  int64_t img_size = 0;  // S
  int64_t size_x = 0;    // s, the window side, 1 <= s <= S (windows as rnorm's, norm_window)
};
void check_tica_params(const TicaParams& p);

struct MsmParams {
  int64_t classes = 0;   // D, the energies' rows, >= 2
  int64_t set_size = 0;  // k, 1 <= k <= D − 1
};
void check_msm_params(const MsmParams& p);

// ---- cost layers (§3.23–§3.28) ---------------------------------------------------------
void check_topk(int64_t topk);  // logreg's topk >= 1

// What cost.logreg reports (§3.23): sums over the minibatch, as the release did.
struct LogregCosts {
  double neg_log_prob;  // -sum_n log p_n[label_n]
  double top1_errors;   // N - sum_n top1_n  (fractional credit 1/#max on ties)
  double topk_errors;   // N - sum_n topk_n  (slots/e on ties)
};

// What cost.crossent reports (§3.24).
struct CrossentCosts {
  double neg_log_lik;  // -sum_n sum_i t_i * safelog(y_i)
  double errors;       // N - sum_n correct_n (1/#max when a maximal class has a positive target)
};

}  // namespace alexnet
