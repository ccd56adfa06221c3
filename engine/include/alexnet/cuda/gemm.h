// Matrix products of the CUDA backend: cuBLAS SGEMM when this build found
// cuBLAS and it loads at run time, else (only when asked, or when the build had
// no cuBLAS) a built-in tiled SGEMM kernel. See engine/cuda/gemm.cu.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "alexnet/cuda/launch.h"

namespace alexnet::cuda {

// Opens libcublas (dlopen) from the first loadable of `candidates` (paths the
// Python side found, e.g. in the nvidia-cublas wheel), then the library this
// build was configured with, then the plain soname. Idempotent. Returns false
// with the reasons in *message when none loads or the build has no cuBLAS;
// true with the path in *message.
bool load_cublas(const std::vector<std::string>& candidates, std::string* message);

// One device's GEMM engine. kind "cublas" needs load_cublas to have succeeded;
// "builtin" is the built-in kernel; "auto" is cublas when this build has
// cuBLAS headers (failing if it does not load) and builtin otherwise.
class Gemm {
 public:
  Gemm(int device, cudaStream_t stream, const std::string& kind);
  ~Gemm();
  Gemm(const Gemm&) = delete;
  Gemm& operator=(const Gemm&) = delete;
  const std::string& name() const { return name_; }

  // Row-major, batched: for b < batch,
  //   C_b (m x n) <- alpha * op(A_b) * op(B_b) + beta * C_b,  X_b = X + b * stride_x,
  // op(X) = X or X^T; lda/ldb/ldc are the row strides as stored. beta == 0
  // overwrites C without reading it (engine.md §1.4). Device pointers.
  void sgemm(const Launch& l, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
             const float* a, int64_t lda, int64_t stride_a, const float* b, int64_t ldb, int64_t stride_b,
             float beta, float* c, int64_t ldc, int64_t stride_c, int64_t batch = 1) const;

 private:
  int device_ = 0;
  cudaStream_t stream_ = nullptr;
  void* handle_ = nullptr;  // cublasHandle_t, or nullptr for the built-in kernel
  std::string name_;
};

}  // namespace alexnet::cuda
