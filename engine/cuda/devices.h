// The device plumbing of the CUDA net (net.cpp), kept out of the net's wiring:
// one stream, ordering event, GEMM engine and conv workspace per device; every
// allocation, freed when the net goes; copies between devices ordered after the
// work on both; the events of profile mode; and synchronisation with errors
// that name what was being done. Host code, CUDA runtime API only.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "alexnet/cuda/conv.h"
#include "alexnet/cuda/gemm.h"
#include "alexnet/cuda/launch.h"

namespace alexnet::cuda {

struct Device {
  int id = 0;
  cudaStream_t stream = nullptr;
  cudaEvent_t order = nullptr;  // orders one device's stream after another's
  std::unique_ptr<Gemm> gemm;
  ConvWorkspace ws;  // the conv/local scratch, shared by the device's layers
};

class Devices {
 public:
  // num_gpus: devices to use (0: every visible one; more than visible: all of
  // them). gemm: "auto", "cublas" or "builtin" (gemm.h). Throws
  // std::runtime_error when the runtime sees no device.
  Devices(int num_gpus, const std::string& gemm);
  ~Devices();  // never throws: errors while freeing are ignored
  Devices(const Devices&) = delete;
  Devices& operator=(const Devices&) = delete;

  int count() const { return static_cast<int>(devices_.size()); }
  Device& operator[](int d) { return devices_[static_cast<size_t>(d)]; }
  const Device& operator[](int d) const { return devices_[static_cast<size_t>(d)]; }
  void set(int d) const;  // cudaSetDevice

  // Zeroed device memory on device d, freed with the net; null for 0 bytes.
  void* alloc_bytes(int d, int64_t bytes, const std::string& what);
  float* alloc(int d, int64_t floats, const std::string& what) {
    return static_cast<float*>(alloc_bytes(d, floats * static_cast<int64_t>(sizeof(float)), what));
  }
  // A device copy of a host array, on d's stream after the allocation's memset.
  template <class T>
  T* upload(int d, const std::vector<T>& host, const std::string& what) {
    T* p = static_cast<T*>(alloc_bytes(d, static_cast<int64_t>(host.size() * sizeof(T)), what));
    if (!host.empty()) copy_in(d, p, host.data(), host.size() * sizeof(T), what);
    return p;
  }
  int64_t allocated() const { return allocated_; }
  std::vector<int64_t> used_bytes() const;  // cudaMemGetInfo: total − free, per device

  // Makes `to`'s stream wait for everything issued so far on `from`'s stream.
  void order(int from, int to);
  // dst (on `to`) <- src (on `from`), `floats` values, ordered after the work on
  // both devices so far; later work on either waits for it.
  void copy_between(const float* src, int from, float* dst, int to, int64_t floats, const std::string& what);
  // Host <-> device on d's stream, then wait for it.
  void copy_in(int d, void* dst, const void* src, size_t bytes, const std::string& what);
  void copy_out(int d, void* dst, const void* src, size_t bytes, const std::string& what);
  void sync_all(const std::string& what) const;

  // Runs `launch` (the launches of one operation of `layer` on device d). In
  // profile mode CUDA events around it time it (read by collect); in
  // synchronous mode the stream is synchronised after it, and a fault is
  // reported naming the layer and the operation.
  template <class F>
  void run(int d, const std::string& layer, const std::string& op, int slot, bool profile, bool synchronous,
           F&& launch) {
    set(d);
    Timing t{d, nullptr, nullptr, layer, op, slot};
    if (profile) start_timing(t);
    launch();
    if (profile) stop_timing(t);
    if (synchronous) {
      set(d);
      check(cudaStreamSynchronize(devices_[static_cast<size_t>(d)].stream), "layer '" + layer + "', " + op);
    }
  }
  // Adds the timed operations of the passes run so far: layer_seconds {layer:
  // [forward, backward, update]}, kernel_seconds {"<type>:<operation>": s}.
  void collect(std::map<std::string, std::vector<double>>& layer_seconds,
               std::map<std::string, double>& kernel_seconds);

 private:
  struct Timing {
    int dev;
    cudaEvent_t start, stop;
    std::string layer, op;
    int slot;
  };
  void start_timing(Timing& t);
  void stop_timing(Timing& t);

  std::vector<Device> devices_;
  std::vector<std::pair<int, void*>> allocations_;
  int64_t allocated_ = 0;
  std::vector<Timing> timings_;
};

}  // namespace alexnet::cuda
