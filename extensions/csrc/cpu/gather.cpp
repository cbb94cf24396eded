// Index-based feature movement on the CPU: gather (used by gather_points and group_points) and three-point
// interpolation, each with its backward scatter. Scatters stay inside one cloud, so they are parallel over the batch.
#include <atomic>

#include "common.h"
#include "kernels.h"

namespace pointbench {

int64_t first_bad_index(const int64_t* idx, int64_t count, int64_t n, int threads) {
  std::atomic<int64_t> bad{-1};
#pragma omp parallel for num_threads(team_size(count, threads)) schedule(static)
  for (int64_t i = 0; i < count; ++i) {
    if (idx[i] < 0 || idx[i] >= n) {
      int64_t expected = -1;
      bad.compare_exchange_strong(expected, idx[i]);
    }
  }
  return bad.load();
}

// out[b, j, :] = feat[b, idx[b, j], :]
template <typename T>
void gather_fwd_cpu(const T* feat, const int64_t* idx, int64_t b, int64_t n, int64_t c, int64_t m, T* out,
                    int threads) {
#pragma omp parallel for num_threads(team_size(b * m * c, threads)) schedule(static)
  for (int64_t q = 0; q < b * m; ++q) {
    const T* src = feat + ((q / m) * n + idx[q]) * c;
    T* dst = out + q * c;
    for (int64_t ch = 0; ch < c; ++ch) dst[ch] = src[ch];
  }
}

// grad_feat (zero on entry)[b, idx[b, j], :] += grad_out[b, j, :]
template <typename T>
void gather_bwd_cpu(const T* grad_out, const int64_t* idx, int64_t b, int64_t n, int64_t c, int64_t m, T* grad_feat,
                    int threads) {
#pragma omp parallel for num_threads(team_size(b * m * c, threads)) schedule(dynamic, 1)
  for (int64_t bi = 0; bi < b; ++bi) {
    for (int64_t j = 0; j < m; ++j) {
      const int64_t q = bi * m + j;
      T* dst = grad_feat + (bi * n + idx[q]) * c;
      const T* src = grad_out + q * c;
      for (int64_t ch = 0; ch < c; ++ch) dst[ch] += src[ch];
    }
  }
}

// out[b, i, :] = sum_t weight[b, i, t] * feat[b, idx[b, i, t], :] for t = 0, 1, 2 (summed in that order).
template <typename T>
void interpolate_fwd_cpu(const T* feat, const int64_t* idx, const T* weight, int64_t b, int64_t n, int64_t c,
                         int64_t m, T* out, int threads) {
#pragma omp parallel for num_threads(team_size(b * m * c * 3, threads)) schedule(static)
  for (int64_t q = 0; q < b * m; ++q) {
    const T* base = feat + (q / m) * n * c;
    const T* f0 = base + idx[3 * q] * c;
    const T* f1 = base + idx[3 * q + 1] * c;
    const T* f2 = base + idx[3 * q + 2] * c;
    const T w0 = weight[3 * q], w1 = weight[3 * q + 1], w2 = weight[3 * q + 2];
    T* dst = out + q * c;
    for (int64_t ch = 0; ch < c; ++ch) dst[ch] = w0 * f0[ch] + w1 * f1[ch] + w2 * f2[ch];
  }
}

// grad_feat (zero on entry) gets weight * grad_out scattered to the three sources; grad_weight[b, i, t] is the dot
// product of grad_out[b, i, :] with feat[b, idx[b, i, t], :].
template <typename T>
void interpolate_bwd_cpu(const T* grad_out, const T* feat, const int64_t* idx, const T* weight, int64_t b, int64_t n,
                         int64_t c, int64_t m, T* grad_feat, T* grad_weight, int threads) {
#pragma omp parallel for num_threads(team_size(b * m * c * 6, threads)) schedule(dynamic, 1)
  for (int64_t bi = 0; bi < b; ++bi) {
    for (int64_t i = 0; i < m; ++i) {
      const int64_t q = bi * m + i;
      const T* g = grad_out + q * c;
      for (int t = 0; t < 3; ++t) {
        const int64_t src = (bi * n + idx[3 * q + t]) * c;
        const T w = weight[3 * q + t];
        T dot = 0;
        for (int64_t ch = 0; ch < c; ++ch) {
          grad_feat[src + ch] += w * g[ch];
          dot += g[ch] * feat[src + ch];
        }
        grad_weight[3 * q + t] = dot;
      }
    }
  }
}

#define POINTBENCH_INSTANTIATE(T)                                                                                    \
  template void gather_fwd_cpu<T>(const T*, const int64_t*, int64_t, int64_t, int64_t, int64_t, T*, int);            \
  template void gather_bwd_cpu<T>(const T*, const int64_t*, int64_t, int64_t, int64_t, int64_t, T*, int);            \
  template void interpolate_fwd_cpu<T>(const T*, const int64_t*, const T*, int64_t, int64_t, int64_t, int64_t, T*,   \
                                       int);                                                                         \
  template void interpolate_bwd_cpu<T>(const T*, const T*, const int64_t*, const T*, int64_t, int64_t, int64_t,      \
                                       int64_t, T*, T*, int);
POINTBENCH_INSTANTIATE(float)
POINTBENCH_INSTANTIATE(double)
#undef POINTBENCH_INSTANTIATE

}  // namespace pointbench
