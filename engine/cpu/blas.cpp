// sgemm through OpenBLAS (scipy-openblas32 wheel, whose symbols carry a
// "scipy_" prefix). See blas.h.
#include "alexnet/blas.h"

#include <stdexcept>

#include "cblas.h"  // scipy_openblas32's header: scipy_cblas_sgemm, scipy_openblas_*

namespace alexnet {

void sgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
           int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  if (m <= 0 || n <= 0) return;
  if (k <= 0) {  // an empty product: C <- beta * C, with beta == 0 overwriting
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) c[i * ldc + j] = beta == 0.0f ? 0.0f : beta * c[i * ldc + j];
    return;
  }
  const int64_t limit = int64_t{1} << 31;
  if (m >= limit || n >= limit || k >= limit || lda >= limit || ldb >= limit || ldc >= limit)
    throw std::length_error("sgemm: dimension exceeds the 32-bit BLAS interface");
  scipy_cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
                    static_cast<blasint>(m), static_cast<blasint>(n), static_cast<blasint>(k), alpha, a,
                    static_cast<blasint>(lda), b, static_cast<blasint>(ldb), beta, c, static_cast<blasint>(ldc));
}

std::string blas_name() { return std::string("OpenBLAS (scipy-openblas32): ") + scipy_openblas_get_config(); }

void set_blas_threads(int threads) { scipy_openblas_set_num_threads(threads); }

int blas_threads() { return scipy_openblas_get_num_threads(); }

}  // namespace alexnet
