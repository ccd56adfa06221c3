// The CPU net's thread count from the cores actually free (cpu/threads.h).
#include "alexnet/cpu/threads.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <mutex>
#include <sstream>
#include <string>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif
#ifdef __linux__
#include <sched.h>
#include <time.h>
#include <unistd.h>
#endif

namespace alexnet::cpu {

namespace {

// A decision averages at least this much wall time: /proc/stat counts in ticks
// (1/100 s per core), so shorter windows would misjudge. The first decision,
// for the first steps of a process, may come sooner.
constexpr double kWindowSeconds = 0.25, kFirstWindowSeconds = 0.05;

struct Sample {
  double wall = 0.0;   // steady clock, seconds
  double busy = 0.0;   // busy seconds of the cores we may run on, summed
  double ours = 0.0;   // this process's CPU seconds
  bool ok = false;
};

class Controller {
 public:
  Controller() {
#ifdef _OPENMP
    max_ = omp_get_max_threads();
#endif
    const char* env = std::getenv("ALEXNET_ADAPTIVE_THREADS");
    adaptive_ = max_ > 1 && !(env != nullptr && std::strcmp(env, "0") == 0);
#ifdef __linux__
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof(set), &set) == 0) {
      for (int c = 0; c < CPU_SETSIZE; ++c)
        if (CPU_ISSET(c, &set)) allowed_.push_back(c);
    }
    ticks_ = static_cast<double>(sysconf(_SC_CLK_TCK));
    if (allowed_.empty() || ticks_ <= 0) adaptive_ = false;
#else
    adaptive_ = false;
#endif
    threads_ = max_;
    last_ = sample();
  }

  int next() {
    std::lock_guard<std::mutex> lock(mutex_);
    // /proc/stat is read only once a window has passed, not at every forward
    if (adaptive_ && (!last_.ok || wall_now() - last_.wall >= (decided_ ? kWindowSeconds : kFirstWindowSeconds))) {
      const Sample now = sample();
      if (!now.ok || !last_.ok) {
        last_ = now;
      } else {  // a whole window since the last decision
        decided_ = true;
        const double wall = now.wall - last_.wall;
        neighbours_ = std::max(0.0, ((now.busy - last_.busy) - (now.ours - last_.ours)) / wall);
        const int cores = static_cast<int>(allowed_.size());
        const int free_cores = cores - static_cast<int>(std::lround(neighbours_));
        threads_ = std::max(1, std::min(max_, free_cores));
        last_ = now;
      }
    }
#ifdef _OPENMP
    omp_set_num_threads(threads_);
#endif
    return threads_;
  }

  std::map<std::string, std::string> info() {
    std::lock_guard<std::mutex> lock(mutex_);
    std::ostringstream n;
    n << neighbours_;
    return {{"threads", std::to_string(threads_)},
            {"threads_max", std::to_string(max_)},
            {"threads_adaptive", adaptive_ ? "yes" : "no"},
            {"neighbour_cores", n.str()}};
  }

 private:
  static double wall_now() {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
  }

  Sample sample() const {
    Sample s;
    s.wall = wall_now();
#ifdef __linux__
    timespec ts{};
    if (clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts) != 0) return s;
    s.ours = static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
    // /proc/stat: "cpuN user nice system idle iowait irq softirq steal ..." in clock ticks.
    std::ifstream stat("/proc/stat");
    std::string line;
    size_t found = 0;
    while (std::getline(stat, line)) {
      if (line.compare(0, 3, "cpu") != 0 || line.size() < 4 || line[3] < '0' || line[3] > '9') continue;
      std::istringstream in(line.substr(3));
      int cpu = -1;
      long long user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0;
      in >> cpu >> user >> nice >> system >> idle >> iowait >> irq >> softirq >> steal;
      if (!in) continue;
      for (int c : allowed_)
        if (c == cpu) {
          s.busy += static_cast<double>(user + nice + system + irq + softirq + steal) / ticks_;
          ++found;
        }
    }
    s.ok = found == allowed_.size();
#endif
    return s;
  }

  std::mutex mutex_;
  int max_ = 1, threads_ = 1;
  bool adaptive_ = false, decided_ = false;
  double ticks_ = 100.0, neighbours_ = 0.0;
  std::vector<int> allowed_;
  Sample last_;
};

Controller& controller() {
  static Controller c;
  return c;
}

}  // namespace

void start_thread_measure() { controller(); }

int threads_for_next_step() { return controller().next(); }

std::map<std::string, std::string> thread_info() { return controller().info(); }

}  // namespace alexnet::cpu
