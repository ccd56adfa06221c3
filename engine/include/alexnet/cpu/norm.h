// The three normalisation layers of the CPU engine (engine.md §3.7–§3.10):
// spatial response normalisation `rnorm` (rnorm.cpp), cross-map response
// normalisation `cmrnorm`, AlexNet's LRN (cmrnorm.cpp), and contrast
// normalisation `cnorm` (cnorm.cpp). One header for the three because they share
// the window rule and cnorm reuses rnorm's arithmetic, as the release does.
//
// Layout (engine.md §1.2): every matrix is (C·S·S, N) row-major, i.e. an image
// tensor (C, H, W, N) with the case index fastest; S = H = W.
//
// α is the coefficient AFTER the cfg reader's rewriting (§3.7): scale/size for
// cmrnorm, scale/size² for rnorm and cnorm. The kernels never divide by size.
//
// Forward always overwrites its outputs (a norm layer has one input, so the
// release only ever calls it with scaleTargets = 0, §1.4). Backward writes δX
// through blend() (matrix.h): scale_targets = 0 overwrites without reading.
//
// Parity class "close only" (§7.3): the release used __powf for D^(−β) and
// __fdividef for the prelim's division; this engine uses std::pow on floats
// (libm's powf) and true IEEE division. Window sums follow §7.2 exactly.
#pragma once

#include <cstdint>

#include "alexnet/core/matrix.h"
#include "alexnet/core/op_params.h"  // the params structs and norm_window

namespace alexnet::cpu {

// ---------------------------------------------------------------------------
// rnorm and cnorm (spatial windows, same channel). engine.md §3.8, §3.10.

// Y = X · D^(−β), D = 1 + α·Σ_{W(y,x)} X² (constant 1 hard-coded, §3.8).
// x, y, denoms: (C·S·S, N). denoms receives D for the backward.
void rnorm_fprop(const SpatialNormParams& p, ConstMatView x, MatView y, MatView denoms);

// δX (+)= X · Σ_{adjoint window} A + δY · D^(−β), with A = (−2αβ)·δY·Y/D.
// x, y, denoms, dy, dx, scratch: (C·S·S, N). A is written into `scratch`.
// The release wrote A over the layer's own output Y (engine.md §13 item 9);
// passing scratch.data == y.data reproduces that (y is read only at the element
// being written, so the aliasing is safe) and destroys Y. dx must not overlap
// scratch.
void rnorm_bprop(const SpatialNormParams& p, ConstMatView x, ConstMatView y, ConstMatView denoms, ConstMatView dy,
                 MatView dx, MatView scratch, float scale_targets);

// cnorm forward (§3.10, as written, §13 item 12): μ = mean of X over the clipped
// window (valid count), Dm = X − μ (stored in mean_diffs), D = 1 + α·Σ_W Dm²,
// Y = X · D^(−β) with the RAW input X as numerator.
// x, y, denoms, mean_diffs: (C·S·S, N).
void cnorm_fprop(const SpatialNormParams& p, ConstMatView x, MatView y, MatView denoms, MatView mean_diffs);

// cnorm backward, as written: rnorm's backward with X replaced by Dm, i.e.
// δX (+)= Dm · Σ_{adjoint window} A + δY · D^(−β). The dependence of μ on X is
// ignored, so this is not the exact gradient of cnorm_fprop (§13 item 12).
// Same scratch/aliasing rules as rnorm_bprop.
void cnorm_bprop(const SpatialNormParams& p, ConstMatView mean_diffs, ConstMatView y, ConstMatView denoms,
                 ConstMatView dy, MatView dx, MatView scratch, float scale_targets);

// ---------------------------------------------------------------------------
// cmrnorm (windows across channels, same pixel). engine.md §3.9.

// Y = X · D^(−β), D = minDiv + α·Σ_{f'∈W(f)} X[f']² summed in increasing f'.
// x, y, denoms: (F·P, N), P = pixels per map (any P >= 1; square not required).
void cmrnorm_fprop(const CrossMapNormParams& p, ConstMatView x, MatView y, MatView denoms);

// δX[f] (+)= X[f] · Σ_{f' : f ∈ W(f')} A[f'] + δY[f] · D[f]^(−β), A = (−2αβ)·δY·Y/D,
// f' increasing. No minDiv: the stored D carries it. Same scratch/aliasing rules
// as rnorm_bprop (the release wrote A over Y).
void cmrnorm_bprop(const CrossMapNormParams& p, ConstMatView x, ConstMatView y, ConstMatView denoms, ConstMatView dy,
                   MatView dx, MatView scratch, float scale_targets);

// ---------------------------------------------------------------------------
// Pieces shared by the three .cpp files (not layer entry points).
namespace norm_detail {

// Cases per tile of the backward's window sums: a fixed stack array, so the
// backward allocates nothing.
constexpr int64_t kCaseTile = 256;

// scratch = ((−2αβ)·δY)·Y / D element by element (left to right, IEEE
// division where the release used __fdividef). All (rows, N).
void norm_prelim(float alpha, float beta, ConstMatView y, ConstMatView denoms, ConstMatView dy, MatView scratch);

// Spatial forward rows: D = 1 + α·Σ_W src², Y = numer · D^(−β).
// rnorm: src = numer = X; cnorm: src = Dm, numer = X.
void spatial_norm_rows(const SpatialNormParams& p, ConstMatView src, ConstMatView numer, MatView y, MatView denoms);

// Spatial backward second pass: δX (+)= src · Σ_{adjoint window} a + δY · D^(−β).
// rnorm: src = X; cnorm: src = Dm.
void spatial_norm_undo(const SpatialNormParams& p, ConstMatView src, ConstMatView a, ConstMatView denoms,
                       ConstMatView dy, MatView dx, float scale_targets);

}  // namespace norm_detail

}  // namespace alexnet::cpu
