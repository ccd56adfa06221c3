// CUDA normalisation layers (engine.md §3.7–§3.10): rnorm (rnorm.cu), cnorm
// (cnorm.cu), cmrnorm (cmrnorm.cu), with the semantics and float order of
// engine/cpu/{rnorm,cnorm,cmrnorm}.cpp: one thread per element, window sums in
// the CPU's order, D^(−β) by powf (exact library call, not __powf) and IEEE
// division. All matrices (rows, N), DEVICE memory. Forward overwrites; backward
// blends into dx (§1.4). scratch receives A = (−2αβ)·δY·Y/D; dx must not
// overlap scratch.
#pragma once

#include "alexnet/core/matrix.h"
#include "alexnet/core/op_params.h"
#include "alexnet/cuda/launch.h"

namespace alexnet::cuda {

void rnorm_fprop(const Launch& l, const SpatialNormParams& p, ConstMatView x, MatView y, MatView denoms);
void rnorm_bprop(const Launch& l, const SpatialNormParams& p, ConstMatView x, ConstMatView y,
                 ConstMatView denoms, ConstMatView dy, MatView dx, MatView scratch, float scale_targets);

void cnorm_fprop(const Launch& l, const SpatialNormParams& p, ConstMatView x, MatView y, MatView denoms,
                 MatView mean_diffs);
void cnorm_bprop(const Launch& l, const SpatialNormParams& p, ConstMatView mean_diffs, ConstMatView y,
                 ConstMatView denoms, ConstMatView dy, MatView dx, MatView scratch, float scale_targets);

void cmrnorm_fprop(const Launch& l, const CrossMapNormParams& p, ConstMatView x, MatView y, MatView denoms);
void cmrnorm_bprop(const Launch& l, const CrossMapNormParams& p, ConstMatView x, ConstMatView y,
                   ConstMatView denoms, ConstMatView dy, MatView dx, MatView scratch, float scale_targets);

namespace norm_detail {
// Shared by rnorm.cu and cnorm.cu (and the prelim by cmrnorm.cu).
void norm_prelim(const Launch& l, float alpha, float beta, ConstMatView y, ConstMatView denoms, ConstMatView dy,
                 MatView scratch);
void spatial_norm_rows(const Launch& l, const SpatialNormParams& p, ConstMatView src, ConstMatView numer,
                       MatView y, MatView denoms);
void spatial_norm_undo(const Launch& l, const SpatialNormParams& p, ConstMatView src, ConstMatView a,
                       ConstMatView denoms, ConstMatView dy, MatView dx, float scale_targets);
}  // namespace norm_detail

}  // namespace alexnet::cuda
