// The CUDA net's device plumbing (devices.h).
#include "devices.h"

#include <algorithm>
#include <stdexcept>

namespace alexnet::cuda {

Devices::Devices(int num_gpus, const std::string& gemm) {
  int visible = 0;
  const cudaError_t probe = cudaGetDeviceCount(&visible);
  if (probe != cudaSuccess)
    throw std::runtime_error(std::string("no usable CUDA device: ") + cudaGetErrorString(probe));
  if (visible < 1) throw std::runtime_error("no usable CUDA device: the CUDA runtime reports none");
  const int n = num_gpus > 0 ? std::min(num_gpus, visible) : visible;
  devices_.resize(static_cast<size_t>(n));
  for (int d = 0; d < n; ++d) {
    Device& D = devices_[static_cast<size_t>(d)];
    D.id = d;
    check(cudaSetDevice(d), "cudaSetDevice " + std::to_string(d));
    check(cudaStreamCreateWithFlags(&D.stream, cudaStreamNonBlocking), "cudaStreamCreateWithFlags");
    check(cudaEventCreateWithFlags(&D.order, cudaEventDisableTiming), "cudaEventCreateWithFlags");
    D.gemm = std::make_unique<Gemm>(d, D.stream, gemm);
  }
  for (int a = 0; a < n; ++a)  // peer access where the hardware has it; copies work without it too
    for (int b = 0; b < n; ++b) {
      if (a == b) continue;
      int can = 0;
      check(cudaDeviceCanAccessPeer(&can, a, b), "cudaDeviceCanAccessPeer");
      if (!can) continue;
      check(cudaSetDevice(a), "cudaSetDevice");
      const cudaError_t e = cudaDeviceEnablePeerAccess(b, 0);
      if (e == cudaErrorPeerAccessAlreadyEnabled)
        cudaGetLastError();  // clears the error this call leaves behind
      else
        check(e, "cudaDeviceEnablePeerAccess");
    }
}

Devices::~Devices() {
  // No throwing here: errors while freeing are ignored (the process keeps going).
  for (Timing& t : timings_) {
    cudaSetDevice(t.dev);
    if (t.start) cudaEventDestroy(t.start);
    if (t.stop) cudaEventDestroy(t.stop);
  }
  for (Device& d : devices_) {
    cudaSetDevice(d.id);
    if (d.stream) cudaStreamSynchronize(d.stream);
    d.gemm.reset();
    if (d.order) cudaEventDestroy(d.order);
    if (d.stream) cudaStreamDestroy(d.stream);
  }
  for (auto& [dev, ptr] : allocations_) {
    cudaSetDevice(dev);
    cudaFree(ptr);
  }
}

void Devices::set(int d) const { check(cudaSetDevice(devices_.at(static_cast<size_t>(d)).id), "cudaSetDevice"); }

void* Devices::alloc_bytes(int d, int64_t bytes, const std::string& what) {
  if (bytes <= 0) return nullptr;
  set(d);
  void* p = nullptr;
  check(cudaMalloc(&p, static_cast<size_t>(bytes)), "cudaMalloc of " + std::to_string(bytes) + " bytes for " + what);
  allocations_.emplace_back(devices_[static_cast<size_t>(d)].id, p);
  allocated_ += bytes;
  check(cudaMemsetAsync(p, 0, static_cast<size_t>(bytes), devices_[static_cast<size_t>(d)].stream),
        "cudaMemsetAsync for " + what);
  return p;
}

std::vector<int64_t> Devices::used_bytes() const {
  std::vector<int64_t> used;
  for (const Device& d : devices_) {
    check(cudaSetDevice(d.id), "cudaSetDevice");
    size_t free_b = 0, total_b = 0;
    check(cudaMemGetInfo(&free_b, &total_b), "cudaMemGetInfo");
    used.push_back(static_cast<int64_t>(total_b - free_b));
  }
  return used;
}

void Devices::order(int from, int to) {
  if (from == to) return;
  Device& F = devices_[static_cast<size_t>(from)];
  set(from);
  check(cudaEventRecord(F.order, F.stream), "cudaEventRecord (device order)");
  set(to);
  check(cudaStreamWaitEvent(devices_[static_cast<size_t>(to)].stream, F.order, 0), "cudaStreamWaitEvent (device order)");
}

void Devices::copy_between(const float* src, int from, float* dst, int to, int64_t floats, const std::string& what) {
  if (floats <= 0) return;
  order(from, to);
  set(to);
  const Device& T = devices_[static_cast<size_t>(to)];
  check(cudaMemcpyPeerAsync(dst, T.id, src, devices_[static_cast<size_t>(from)].id,
                            static_cast<size_t>(floats) * sizeof(float), T.stream),
        "cudaMemcpyPeerAsync " + what);
  order(to, from);
}

void Devices::copy_in(int d, void* dst, const void* src, size_t bytes, const std::string& what) {
  set(d);
  const cudaStream_t stream = devices_[static_cast<size_t>(d)].stream;
  // On the device's stream, after earlier work there (a non-blocking stream is
  // not ordered with the legacy default stream of a plain cudaMemcpy).
  check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream), "cudaMemcpyAsync (" + what + ")");
  check(cudaStreamSynchronize(stream), what);
}

void Devices::copy_out(int d, void* dst, const void* src, size_t bytes, const std::string& what) {
  set(d);
  const cudaStream_t stream = devices_[static_cast<size_t>(d)].stream;
  check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream), "cudaMemcpyAsync (" + what + ")");
  check(cudaStreamSynchronize(stream), what);
}

void Devices::sync_all(const std::string& what) const {
  for (const Device& d : devices_) {
    check(cudaSetDevice(d.id), "cudaSetDevice");
    check(cudaStreamSynchronize(d.stream), what + " (device " + std::to_string(d.id) + ")");
  }
}

void Devices::start_timing(Timing& t) {
  const cudaStream_t stream = devices_[static_cast<size_t>(t.dev)].stream;
  check(cudaEventCreate(&t.start), "cudaEventCreate");
  check(cudaEventCreate(&t.stop), "cudaEventCreate");
  check(cudaEventRecord(t.start, stream), "cudaEventRecord");
}

void Devices::stop_timing(Timing& t) {
  set(t.dev);
  check(cudaEventRecord(t.stop, devices_[static_cast<size_t>(t.dev)].stream), "cudaEventRecord");
  timings_.push_back(t);
}

void Devices::collect(std::map<std::string, std::vector<double>>& layer_seconds,
                      std::map<std::string, double>& kernel_seconds) {
  std::vector<Timing> pending;
  pending.swap(timings_);
  for (Timing& t : pending) {
    check(cudaSetDevice(t.dev), "cudaSetDevice");
    check(cudaEventSynchronize(t.stop), "cudaEventSynchronize (layer '" + t.layer + "', " + t.op + ")");
    float ms = 0.0f;
    check(cudaEventElapsedTime(&ms, t.start, t.stop), "cudaEventElapsedTime");
    auto& entry = layer_seconds[t.layer];
    entry.resize(3, 0.0);
    entry[static_cast<size_t>(t.slot)] += ms / 1000.0;
    kernel_seconds[t.op] += ms / 1000.0;
    cudaEventDestroy(t.start);
    cudaEventDestroy(t.stop);
  }
}

}  // namespace alexnet::cuda
