// How many OpenMP threads the CPU net uses for its next step: the cores that
// other processes leave free, measured, never more than OpenMP's maximum.
//
// Why: the engine's worker threads meet at a barrier after every parallel
// loop. When a neighbour process holds one of the cores, one worker is
// descheduled and the others wait for it at every barrier, so a step on 2
// shared cores can take several times as long as on 1 free core
// (bench/bench_shared_cores.py). Results never depend on the thread count
// (every parallel loop splits its work by the data's extent, not by threads),
// so the count may change from step to step.
//
// How: at the start of each forward, once at least kWindowSeconds have passed
// since the last decision, the busy time of the cores this process may run on
// (/proc/stat, Linux) minus this process's own CPU time, over the wall time,
// gives the cores the neighbours used. The next steps use the rest, at least
// one. Elsewhere than Linux, or with ALEXNET_ADAPTIVE_THREADS=0, the count
// stays OpenMP's maximum (OMP_NUM_THREADS).
#pragma once

#include <map>
#include <string>

namespace alexnet::cpu {

// Called when a CPU net is built: starts the first measure, so that the first
// steps already use the free cores.
void start_thread_measure();

// Called by the CPU net before each forward; sets omp_set_num_threads for the
// calling thread and returns the count chosen.
int threads_for_next_step();

// The controller's state, for info() and the bench: "threads", "threads_max",
// "threads_adaptive", "neighbour_cores" (the last measure).
std::map<std::string, std::string> thread_info();

}  // namespace alexnet::cpu
