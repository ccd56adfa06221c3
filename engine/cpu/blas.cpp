// sgemm through OpenBLAS (scipy-openblas32 wheel, whose symbols carry a
// "scipy_" prefix). See blas.h.
//
// Results must not depend on the number of threads (STYLE.md: runs replay bit
// for bit). OpenBLAS's own threading changes the rounding with its thread
// count, and so does splitting a product differently. So OpenBLAS runs
// single-threaded, and a product is cut into output panels whose layout
// depends only on its shape; OpenMP threads take whole panels.
#include "alexnet/cpu/blas.h"

#include <algorithm>
#include <mutex>
#include <stdexcept>

#include "cblas.h"  // scipy_openblas32's header: scipy_cblas_sgemm, scipy_openblas_*

namespace alexnet::cpu {

namespace {

// Panels of a product: about kPanels of them (enough to balance a few
// threads), at least kMinPanel wide, widths a multiple of 16 (whole BLAS
// register tiles). A function of the extent only, never of the thread count.
constexpr int64_t kPanels = 16, kMinPanel = 64, kPanelAlign = 16;

int64_t panel_extent(int64_t extent) {
  const int64_t want = (extent + kPanels - 1) / kPanels;
  const int64_t aligned = (want + kPanelAlign - 1) / kPanelAlign * kPanelAlign;
  return std::max(kMinPanel, aligned);
}

void serial_openblas() {
  static std::once_flag once;
  std::call_once(once, [] { scipy_openblas_set_num_threads(1); });
}

void sgemm_serial(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
                  int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc);

}  // namespace

void sgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
           int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  if (m <= 0 || n <= 0) return;
  serial_openblas();
  if (n >= m) {  // column panels: columns j0.. of op(B) and C
    const int64_t width = panel_extent(n), panels = (n + width - 1) / width;
#pragma omp parallel for schedule(dynamic, 1) if (panels > 1)
    for (int64_t i = 0; i < panels; ++i) {
      const int64_t j0 = i * width, w = std::min(width, n - j0);
      sgemm_serial(trans_a, trans_b, m, w, k, alpha, a, lda, b + (trans_b ? j0 * ldb : j0), ldb, beta, c + j0, ldc);
    }
  } else {  // row panels: rows i0.. of op(A) and C
    const int64_t height = panel_extent(m), panels = (m + height - 1) / height;
#pragma omp parallel for schedule(dynamic, 1) if (panels > 1)
    for (int64_t i = 0; i < panels; ++i) {
      const int64_t i0 = i * height, h = std::min(height, m - i0);
      sgemm_serial(trans_a, trans_b, h, n, k, alpha, a + (trans_a ? i0 : i0 * lda), lda, b, ldb, beta,
                   c + i0 * ldc, ldc);
    }
  }
}

namespace {

void sgemm_serial(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
                  int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
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

}  // namespace

std::string blas_name() { return std::string("OpenBLAS (scipy-openblas32): ") + scipy_openblas_get_config(); }



}  // namespace alexnet::cpu
