// Greedy furthest point sampling on the CPU, one cloud per OpenMP task (pointnet2_ops semantics: start index given,
// each next sample is the arg-max of the running min squared distance, ties to the lowest index).
#include <limits>
#include <vector>

#include "common.h"
#include "kernels.h"

namespace pointbench {
namespace {

// Updates md[i] = min(md[i], |p_i - q|^2) over the padded cloud and returns the first index of the largest md.
// Lane l of a block handles indices = l (mod L); a strict '>' keeps each lane's earliest maximum, and the final
// merge prefers the lowest index among equal lane maxima, so the result is the global first arg-max.
template <typename T>
int64_t update_argmax(const SoA<T>& p, T* md, T qx, T qy, T qz) {
  using V = typename Simd<T>::V;
  using I = typename Simd<T>::I;
  constexpr int L = Simd<T>::L;
  V best = V{} - T(1);
  I besti = I{};
  I ids = lane_ids<T>();
  for (int64_t i0 = 0; i0 < p.padded; i0 += L, ids += L) {
    const V d = sqdist(load<V>(p.x.data() + i0), load<V>(p.y.data() + i0), load<V>(p.z.data() + i0), qx, qy, qz);
    const V old = load<V>(md + i0);
    const V v = old < d ? old : d;
    store(md + i0, v);
    const auto gt = v > best;
    best = gt ? v : best;
    besti = gt ? ids : besti;
  }
  T top = best[0];
  int64_t topi = besti[0];
  for (int l = 1; l < L; ++l) {
    if (best[l] > top || (best[l] == top && besti[l] < topi)) {
      top = best[l];
      topi = besti[l];
    }
  }
  return topi;
}

template <typename T>
void fps_one(const T* xyz, int64_t n, int64_t m, int64_t start, int64_t* out, SoA<T>& p, std::vector<T>& md) {
  p.load(xyz, n);
  md.assign(p.padded, std::numeric_limits<T>::infinity());
  int64_t cur = start;
  for (int64_t i = 0; i < m; ++i) {
    out[i] = cur;
    if (i + 1 < m) cur = update_argmax(p, md.data(), p.x[cur], p.y[cur], p.z[cur]);
  }
}

}  // namespace

template <typename T>
void fps_cpu(const T* xyz, int64_t b, int64_t n, int64_t m, int64_t start, int64_t* out, int threads) {
#pragma omp parallel num_threads(team_size(b * n * m, threads))
  {
    SoA<T> p;
    std::vector<T> md;
#pragma omp for schedule(dynamic, 1)
    for (int64_t bi = 0; bi < b; ++bi) fps_one(xyz + bi * n * 3, n, m, start, out + bi * m, p, md);
  }
}

template void fps_cpu<float>(const float*, int64_t, int64_t, int64_t, int64_t, int64_t*, int);
template void fps_cpu<double>(const double*, int64_t, int64_t, int64_t, int64_t, int64_t*, int);

}  // namespace pointbench
