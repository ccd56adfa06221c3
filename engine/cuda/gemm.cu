// Matrix products of the CUDA backend (alexnet/cuda/gemm.h): engine.md §3.2
// (fc), §3.4/§3.5 (conv and local through lowering).
//
// Layout: every matrix row-major, as in the CPU engine's alexnet::sgemm.
// cuBLAS is column-major, so C = op(A)·op(B) (row-major) is computed as the
// column-major Cᵀ = op(B)ᵀ·op(A)ᵀ: the operands are passed swapped (B first)
// with the same transpose flags and leading dimensions (a row-major matrix with
// row stride ld is the column-major transpose with leading dimension ld).
// beta == 0 overwrites C without reading it (cuBLAS's documented rule, and the
// built-in kernel's), the engine's scale_targets == 0 (§1.4).
//
// cuBLAS is opened with dlopen at run time, never linked: a module built with
// cuBLAS then still imports, and runs on the CPU, where libcublas is absent
// (docs/cuda.md). Its math mode is CUBLAS_PEDANTIC_MATH: float32 throughout,
// no TF32 and no reduced-precision emulation, whatever NVIDIA_TF32_OVERRIDE
// says (STYLE.md habit 9). Atomics stay disallowed (cuBLAS's default), one
// stream per handle: cuBLAS then gives the same bits run to run on one GPU model.
//
// The built-in kernel (16×16 shared-memory tiles, one output per thread, one
// float32 accumulator summed over k in increasing order, no FMA) is simple and
// deterministic, and much slower than cuBLAS; it exists for builds without
// cuBLAS and when asked for by name.
#include <dlfcn.h>

#include <mutex>
#include <stdexcept>

#include "alexnet/cuda/gemm.h"
#include "alexnet_build_config.h"  // ALEXNET_HAVE_CUBLAS, ALEXNET_CUBLAS_LIBRARY_PATH
#include "common.cuh"

#if ALEXNET_HAVE_CUBLAS
#include <cublas_v2.h>
#endif

namespace alexnet::cuda {

namespace {

#if ALEXNET_HAVE_CUBLAS
// The cuBLAS entry points the engine calls, resolved from the opened library.
struct CublasApi {
  bool loaded = false;
  std::string path;
  int version[3] = {0, 0, 0};
  decltype(&cublasCreate_v2) create = nullptr;
  decltype(&cublasDestroy_v2) destroy = nullptr;
  decltype(&cublasSetStream_v2) set_stream = nullptr;
  decltype(&cublasSetMathMode) set_math_mode = nullptr;
  decltype(&cublasSgemm_v2) sgemm = nullptr;
  decltype(&cublasSgemmStridedBatched) sgemm_batched = nullptr;
  decltype(&cublasGetProperty) get_property = nullptr;
};

CublasApi& api() {
  static CublasApi instance;
  return instance;
}

std::mutex& api_mutex() {
  static std::mutex m;
  return m;
}

template <class F>
bool resolve(void* lib, const char* name, F* out, std::string* why) {
  void* symbol = dlsym(lib, name);
  if (symbol == nullptr) {
    *why = std::string("no symbol ") + name;
    return false;
  }
  *out = reinterpret_cast<F>(symbol);
  return true;
}

// Opens one candidate; on success fills api() (the library stays open for the
// life of the process, as handles made from it may).
bool try_open(const std::string& path, std::string* why) {
  void* lib = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (lib == nullptr) {
    const char* err = dlerror();
    *why = err ? err : "dlopen failed";
    return false;
  }
  CublasApi a;
  const bool ok = resolve(lib, "cublasCreate_v2", &a.create, why) &&
                  resolve(lib, "cublasDestroy_v2", &a.destroy, why) &&
                  resolve(lib, "cublasSetStream_v2", &a.set_stream, why) &&
                  resolve(lib, "cublasSetMathMode", &a.set_math_mode, why) &&
                  resolve(lib, "cublasSgemm_v2", &a.sgemm, why) &&
                  resolve(lib, "cublasSgemmStridedBatched", &a.sgemm_batched, why) &&
                  resolve(lib, "cublasGetProperty", &a.get_property, why);
  if (!ok) {
    dlclose(lib);
    return false;
  }
  const libraryPropertyType parts[3] = {MAJOR_VERSION, MINOR_VERSION, PATCH_LEVEL};
  for (int i = 0; i < 3; ++i) {
    if (a.get_property(parts[i], &a.version[i]) != CUBLAS_STATUS_SUCCESS) {
      *why = "cublasGetProperty failed";
      dlclose(lib);
      return false;
    }
  }
  if (a.version[0] != CUBLAS_VER_MAJOR) {
    *why = "it is cuBLAS " + std::to_string(a.version[0]) + ", this build was compiled against cuBLAS " +
           std::to_string(CUBLAS_VER_MAJOR);
    dlclose(lib);
    return false;
  }
  a.loaded = true;
  a.path = path;
  api() = a;
  return true;
}

void check_cublas(cublasStatus_t status, const std::string& what) {
  if (status != CUBLAS_STATUS_SUCCESS)
    throw std::runtime_error("cuBLAS error in " + what + ": status " + std::to_string(static_cast<int>(status)));
}
#endif  // ALEXNET_HAVE_CUBLAS

constexpr int kTile = 16;

// Built-in SGEMM, row-major. Block (kTile, kTile) computes a kTile×kTile tile
// of C_z, z = batch0 + blockIdx.z; thread (tx, ty) owns C[row, col] with
// row = blockIdx.y·kTile + ty, col = blockIdx.x·kTile + tx. Each step stages
// op(A)[row tile, k0..k0+kTile) and op(B)[k0..k0+kTile), col tile) in shared
// memory (zeros outside the matrices); every thread passes every __syncthreads.
__global__ void sgemm_tiled(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
                            int64_t lda, int64_t sa, const float* b, int64_t ldb, int64_t sb, float beta, float* c,
                            int64_t ldc, int64_t sc, int64_t batch0) {
  __shared__ float as[kTile][kTile + 1];
  __shared__ float bs[kTile][kTile + 1];
  const int64_t z = batch0 + blockIdx.z;
  a += z * sa;
  b += z * sb;
  c += z * sc;
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int64_t row = static_cast<int64_t>(blockIdx.y) * kTile + ty;
  const int64_t col = static_cast<int64_t>(blockIdx.x) * kTile + tx;
  float acc = 0.0f;
  for (int64_t k0 = 0; k0 < k; k0 += kTile) {
    const int64_t ka = k0 + tx;  // column of op(A) this thread stages
    as[ty][tx] = (row < m && ka < k) ? (ta ? a[ka * lda + row] : a[row * lda + ka]) : 0.0f;
    const int64_t kb = k0 + ty;  // row of op(B) this thread stages
    bs[ty][tx] = (kb < k && col < n) ? (tb ? b[col * ldb + kb] : b[kb * ldb + col]) : 0.0f;
    __syncthreads();
    const int64_t steps = k - k0 < kTile ? k - k0 : kTile;
    for (int64_t kk = 0; kk < steps; ++kk) acc = acc + as[ty][kk] * bs[kk][tx];
    __syncthreads();
  }
  if (row < m && col < n) {
    float* out = c + row * ldc + col;
    const float r = alpha * acc;
    *out = beta == 0.0f ? r : beta * *out + r;
  }
}

// C_z <- beta·C_z (0 when beta == 0, C not read): the empty product (k == 0).
__global__ void scale_matrix(int64_t m, int64_t n, float beta, float* c, int64_t ldc, int64_t sc, int64_t batch) {
  const int64_t total = m * n * batch;
  for (int64_t i = grid_start(); i < total; i += grid_step()) {
    const int64_t z = i / (m * n), r = (i / n) % m, col = i % n;
    float* out = c + z * sc + r * ldc + col;
    *out = beta == 0.0f ? 0.0f : beta * *out;
  }
}

}  // namespace

bool load_cublas(const std::vector<std::string>& candidates, std::string* message) {
#if ALEXNET_HAVE_CUBLAS
  std::lock_guard<std::mutex> lock(api_mutex());
  if (api().loaded) {
    *message = api().path;
    return true;
  }
  std::vector<std::string> order = candidates;
  const std::string built = ALEXNET_CUBLAS_LIBRARY_PATH;
  if (!built.empty()) order.push_back(built);
  order.push_back("libcublas.so." + std::to_string(CUBLAS_VER_MAJOR));
  std::string reasons;
  for (const std::string& path : order) {
    std::string why;
    if (try_open(path, &why)) {
      *message = path;
      return true;
    }
    reasons += (reasons.empty() ? "" : "; ") + path + ": " + why;
  }
  *message = "cuBLAS could not be loaded (" + reasons + ")";
  return false;
#else
  (void)candidates;
  *message = "this build has no cuBLAS (it was not found when the engine was built)";
  return false;
#endif
}

Gemm::Gemm(int device, cudaStream_t stream, const std::string& kind) : device_(device), stream_(stream) {
  if (kind != "auto" && kind != "cublas" && kind != "builtin")
    throw std::invalid_argument("gemm must be 'auto', 'cublas' or 'builtin' (got '" + kind + "')");
  if (kind == "builtin") {
    name_ = "built-in tiled SGEMM (chosen)";
    return;
  }
#if ALEXNET_HAVE_CUBLAS
  std::string message;
  if (!load_cublas({}, &message))
    throw std::runtime_error(message +
                             ". Install it (pip install nvidia-cublas), or choose the built-in GEMM by name "
                             "(gemm='builtin'; much slower)");
  check(cudaSetDevice(device_), "cudaSetDevice (cuBLAS handle)");
  cublasHandle_t handle = nullptr;
  check_cublas(api().create(&handle), "cublasCreate");
  handle_ = handle;
  check_cublas(api().set_stream(handle, stream_), "cublasSetStream");
  check_cublas(api().set_math_mode(handle, CUBLAS_PEDANTIC_MATH), "cublasSetMathMode");
  name_ = "cuBLAS " + std::to_string(api().version[0]) + "." + std::to_string(api().version[1]) + "." +
          std::to_string(api().version[2]) + " (" + api().path + "), pedantic float32 math, no TF32";
#else
  if (kind == "cublas") throw std::runtime_error("gemm='cublas': this build has no cuBLAS");
  name_ = "built-in tiled SGEMM (this build has no cuBLAS)";
#endif
}

Gemm::~Gemm() {
#if ALEXNET_HAVE_CUBLAS
  if (handle_ != nullptr) {
    cudaSetDevice(device_);  // no throwing from a destructor; a failure here leaks one handle
    api().destroy(static_cast<cublasHandle_t>(handle_));
  }
#endif
}

void Gemm::sgemm(const Launch& l, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                 const float* a, int64_t lda, int64_t stride_a, const float* b, int64_t ldb, int64_t stride_b,
                 float beta, float* c, int64_t ldc, int64_t stride_c, int64_t batch) const {
  if (m <= 0 || n <= 0 || batch <= 0) return;
  if (k <= 0) {
    const int64_t total = m * n * batch;
    scale_matrix<<<grid_for(total), kThreads, 0, l.stream>>>(m, n, beta, c, ldc, stride_c, batch);
    check_launch(l, "scale_matrix (empty product)");
    return;
  }
#if ALEXNET_HAVE_CUBLAS
  if (handle_ != nullptr) {
    const int64_t limit = int64_t{1} << 31;
    if (m >= limit || n >= limit || k >= limit || lda >= limit || ldb >= limit || ldc >= limit || batch >= limit)
      throw std::length_error(std::string("sgemm for layer '") + l.layer + "': a dimension exceeds cuBLAS's int");
    cublasHandle_t h = static_cast<cublasHandle_t>(handle_);
    const cublasOperation_t op_b = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, op_a = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
    const std::string what = std::string("cublasSgemm for layer '") + l.layer + "'";
    if (batch == 1) {
      check_cublas(api().sgemm(h, op_b, op_a, static_cast<int>(n), static_cast<int>(m), static_cast<int>(k), &alpha,
                               b, static_cast<int>(ldb), a, static_cast<int>(lda), &beta, c, static_cast<int>(ldc)),
                   what);
    } else {
      check_cublas(api().sgemm_batched(h, op_b, op_a, static_cast<int>(n), static_cast<int>(m), static_cast<int>(k),
                                       &alpha, b, static_cast<int>(ldb), stride_b, a, static_cast<int>(lda), stride_a,
                                       &beta, c, static_cast<int>(ldc), stride_c, static_cast<int>(batch)),
                   what);
    }
    return;
  }
#endif
  const int64_t tiles_m = (m + kTile - 1) / kTile, tiles_n = (n + kTile - 1) / kTile;
  if (tiles_m > 65535 || tiles_n >= (int64_t{1} << 31))
    throw std::length_error(std::string("built-in sgemm for layer '") + l.layer + "': matrix too large");
  for (int64_t z0 = 0; z0 < batch; z0 += 65535) {  // gridDim.z is at most 65535
    const int64_t nz = batch - z0 < 65535 ? batch - z0 : 65535;
    const dim3 grid(static_cast<unsigned>(tiles_n), static_cast<unsigned>(tiles_m), static_cast<unsigned>(nz));
    const dim3 block(kTile, kTile);
    sgemm_tiled<<<grid, block, 0, l.stream>>>(trans_a, trans_b, m, n, k, alpha, a, lda, stride_a, b, ldb, stride_b,
                                              beta, c, ldc, stride_c, z0);
    check_launch(l, "sgemm_tiled");
  }
}

}  // namespace alexnet::cuda
