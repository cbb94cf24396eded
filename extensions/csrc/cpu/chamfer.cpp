// Chamfer distance on the CPU: both directed nearest-neighbour terms with their arg-mins, and the backward pass
// that routes gradients through the saved arg-mins. Never materialises the (N, M) distance matrix.
#include <limits>
#include <vector>

#include "common.h"
#include "kernels.h"

namespace pointbench {
namespace {

// Nearest point of the padded cloud p to q: writes the squared distance and the lowest index among ties (lane
// minima with a strict '<', merged preferring the lower index).
template <typename T>
void nearest(const SoA<T>& p, T qx, T qy, T qz, T* dist, int64_t* index) {
  using V = typename Simd<T>::V;
  using I = typename Simd<T>::I;
  constexpr int L = Simd<T>::L;
  V best = V{} + std::numeric_limits<T>::infinity();
  I besti = I{};
  I ids = lane_ids<T>();
  for (int64_t i0 = 0; i0 < p.padded; i0 += L, ids += L) {
    const V d = sqdist(V{} + qx, V{} + qy, V{} + qz, load<V>(p.x.data() + i0), load<V>(p.y.data() + i0),
                       load<V>(p.z.data() + i0));
    const auto lt = d < best;
    best = lt ? d : best;
    besti = lt ? ids : besti;
  }
  T top = best[0];
  int64_t topi = besti[0];
  for (int l = 1; l < L; ++l) {
    if (best[l] < top || (best[l] == top && besti[l] < topi)) {
      top = best[l];
      topi = besti[l];
    }
  }
  *dist = top;
  *index = topi;
}

// Directed pass: for each of the b * n query points, its nearest neighbour in the matching reference cloud.
template <typename T>
void directed(const T* query, const T* ref, int64_t b, int64_t n, int64_t m, T* dist, int64_t* index, int threads) {
  for_each_query(ref, b, n, m, threads, [&](int64_t, int64_t q, const SoA<T>& p) {
    nearest(p, query[3 * q], query[3 * q + 1], query[3 * q + 2], dist + q, index + q);
  });
}

template <typename T>
void accumulate(T* grad, const T* p, const T* q, T g) {
  for (int d = 0; d < 3; ++d) grad[d] += T(2) * g * (p[d] - q[d]);
}

}  // namespace

template <typename T>
void chamfer_fwd_cpu(const T* a, const T* bb, int64_t b, int64_t n, int64_t m, T* d_ab, int64_t* i_ab, T* d_ba,
                     int64_t* i_ba, int threads) {
  directed(a, bb, b, n, m, d_ab, i_ab, threads);
  directed(bb, a, b, m, n, d_ba, i_ba, threads);
}

// grad_a and grad_b must be zero on entry. d/dp |p - q|^2 = 2 (p - q); each directed term touches its query point
// and the point it matched. Scatters stay inside one cloud, so the batch is the unit of parallel work.
template <typename T>
void chamfer_bwd_cpu(const T* a, const T* bb, int64_t b, int64_t n, int64_t m, const T* g_ab, const int64_t* i_ab,
                     const T* g_ba, const int64_t* i_ba, T* grad_a, T* grad_b, int threads) {
#pragma omp parallel for num_threads(team_size(b * (n + m) * 8, threads)) schedule(dynamic, 1)
  for (int64_t bi = 0; bi < b; ++bi) {
    const T* pa = a + bi * n * 3;
    const T* pb = bb + bi * m * 3;
    T* ga = grad_a + bi * n * 3;
    T* gb = grad_b + bi * m * 3;
    for (int64_t i = 0; i < n; ++i) {
      const int64_t j = i_ab[bi * n + i];
      const T g = g_ab[bi * n + i];
      accumulate(ga + 3 * i, pa + 3 * i, pb + 3 * j, g);
      accumulate(gb + 3 * j, pb + 3 * j, pa + 3 * i, g);
    }
    for (int64_t j = 0; j < m; ++j) {
      const int64_t i = i_ba[bi * m + j];
      const T g = g_ba[bi * m + j];
      accumulate(gb + 3 * j, pb + 3 * j, pa + 3 * i, g);
      accumulate(ga + 3 * i, pa + 3 * i, pb + 3 * j, g);
    }
  }
}

template void chamfer_fwd_cpu<float>(const float*, const float*, int64_t, int64_t, int64_t, float*, int64_t*, float*,
                                     int64_t*, int);
template void chamfer_fwd_cpu<double>(const double*, const double*, int64_t, int64_t, int64_t, double*, int64_t*,
                                      double*, int64_t*, int);
template void chamfer_bwd_cpu<float>(const float*, const float*, int64_t, int64_t, int64_t, const float*,
                                     const int64_t*, const float*, const int64_t*, float*, float*, int);
template void chamfer_bwd_cpu<double>(const double*, const double*, int64_t, int64_t, int64_t, const double*,
                                      const int64_t*, const double*, const int64_t*, double*, double*, int);

}  // namespace pointbench
