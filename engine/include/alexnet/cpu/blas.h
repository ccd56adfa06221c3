// Matrix products for the CPU engine, through a well-kept BLAS (OpenBLAS from
// the scipy-openblas32 wheel). Row-major, like every matrix in the engine.
#pragma once

#include <cstdint>
#include <string>

namespace alexnet::cpu {

// C (M x N) <- alpha * op(A) * op(B) + beta * C, all row-major; op(X) = X or X^T.
// lda/ldb/ldc are the row strides of A, B and C as stored. beta == 0 overwrites C.
// Parallel over OpenMP threads, with bits that do not depend on their number
// (fixed output panels, single-threaded OpenBLAS per panel).
void sgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
           int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc);

// Name and version of the BLAS linked in, for build_info().
std::string blas_name();

}  // namespace alexnet::cpu
