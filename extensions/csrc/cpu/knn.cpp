// Brute-force k nearest neighbours and ball query on the CPU. Distances are streamed into one row buffer per query
// and a sorted list keeps the k best, so memory is O(N) per thread, never O(M * N).
#include <algorithm>
#include <cstring>
#include <limits>
#include <utility>
#include <vector>

#include "common.h"
#include "kernels.h"

namespace pointbench {
namespace {

// Inserts (d, j) into the ascending list (dist, idx)[0:k] in place of its last entry. Equal distances stay ahead
// of the newcomer, whose index is the largest so far, so ties keep the lowest indices first.
template <typename T>
inline T insert(T* dist, int64_t* idx, int64_t k, T d, int64_t j) {
  int64_t p = k - 1;
  while (p > 0 && dist[p - 1] > d) {
    dist[p] = dist[p - 1];
    idx[p] = idx[p - 1];
    --p;
  }
  dist[p] = d;
  idx[p] = j;
  return dist[k - 1];
}

// The k smallest (distance, index) pairs of row[0:n], ascending (lexicographic order: lowest index on ties), by
// insertion. Only a distance strictly below the current k-th one can enter. Used when n is small next to k.
template <typename T>
void select_k_insertion(const T* row, int64_t n, int64_t k, T* dist, int64_t* idx) {
  for (int64_t j = 0; j < k; ++j) dist[j] = std::numeric_limits<T>::infinity();
  T worst = dist[k - 1];
  for (int64_t j = 0; j < n; ++j) {
    if (row[j] < worst) worst = insert(dist, idx, k, row[j], j);
  }
}

// Same result in O(n): the row's SIMD blocks are dealt round-robin to G accumulators, whose lanes keep the minima of
// G * L >= 2k disjoint groups of entries. The k-th smallest group minimum bounds the k-th smallest distance from
// above (those minima are k distinct entries), so only entries <= the bound are candidates; a partial sort of the
// few candidates by (distance, index) gives the answer (selection, then a sort of the k kept). Falls back to insertion when the row is too short.
template <typename T>
void select_k(const T* row, int64_t n, int64_t k, T* dist, int64_t* idx) {
  using V = typename Simd<T>::V;
  constexpr int L = Simd<T>::L;
  const int64_t groups = (2 * k + L - 1) / L, blocks = n / L;
  if (blocks < groups) return select_k_insertion(row, n, k, dist, idx);
  thread_local std::vector<T> minima;
  thread_local std::vector<std::pair<T, int64_t>> candidates;
  minima.assign(groups * L, std::numeric_limits<T>::infinity());
  for (int64_t b = 0; b < blocks; ++b) {
    T* acc = minima.data() + (b % groups) * L;
    const V v = load<V>(row + b * L), old = load<V>(acc);
    store(acc, v < old ? v : old);
  }
  std::nth_element(minima.begin(), minima.begin() + (k - 1), minima.end());
  const T bound = minima[k - 1];
  candidates.clear();
  for (int64_t b = 0; b < blocks; ++b) {
    if (!any_lane(load<V>(row + b * L) <= bound)) continue;
    for (int64_t j = b * L; j < (b + 1) * L; ++j) {
      if (row[j] <= bound) candidates.emplace_back(row[j], j);
    }
  }
  for (int64_t j = blocks * L; j < n; ++j) {
    if (row[j] <= bound) candidates.emplace_back(row[j], j);
  }
  std::nth_element(candidates.begin(), candidates.begin() + (k - 1), candidates.end());
  std::sort(candidates.begin(), candidates.begin() + k);
  for (int64_t j = 0; j < k; ++j) {
    dist[j] = candidates[j].first;
    idx[j] = candidates[j].second;
  }
}

// row[j] = |q - p_j|^2 for the whole padded cloud.
template <typename T>
void distance_row(const SoA<T>& p, T qx, T qy, T qz, T* row) {
  using V = typename Simd<T>::V;
  for (int64_t j0 = 0; j0 < p.padded; j0 += Simd<T>::L) {
    store(row + j0, sqdist(V{} + qx, V{} + qy, V{} + qz, load<V>(p.x.data() + j0), load<V>(p.y.data() + j0),
                           load<V>(p.z.data() + j0)));
  }
}

}  // namespace

template <typename T>
void knn_cpu(const T* query, const T* ref, int64_t b, int64_t m, int64_t n, int64_t k, int64_t* idx, T* dist,
             int threads) {
  if (k == 0) return;
  for_each_query(ref, b, m, n, threads, [&](int64_t, int64_t q, const SoA<T>& p) {
    thread_local std::vector<T> row;  // one distance row per thread, reused across queries
    row.resize(static_cast<size_t>(p.padded));
    const T* c = query + q * 3;
    distance_row(p, c[0], c[1], c[2], row.data());
    select_k(row.data(), n, k, dist + q * k, idx + q * k);
  });
}

template <typename T>
void ball_query_cpu(const T* xyz, const T* centers, int64_t b, int64_t n, int64_t m, int64_t k, double radius,
                    int64_t* idx, int threads) {
  const T r2 = static_cast<T>(radius * radius);
#pragma omp parallel for num_threads(team_size(b * m * n, threads)) schedule(static)
  for (int64_t q = 0; q < b * m; ++q) {
    const T* c = centers + q * 3;
    const T* p = xyz + (q / m) * n * 3;
    int64_t* out = idx + q * k;
    int64_t found = 0;
    for (int64_t j = 0; j < n && found < k; ++j) {
      if (sqdist(c[0], c[1], c[2], p[3 * j], p[3 * j + 1], p[3 * j + 2]) < r2) out[found++] = j;
    }
    const int64_t fill = found > 0 ? out[0] : 0;  // pointnet2_ops: repeat the first hit, 0 when there is none
    for (int64_t s = found; s < k; ++s) out[s] = fill;
  }
}

template void knn_cpu<float>(const float*, const float*, int64_t, int64_t, int64_t, int64_t, int64_t*, float*, int);
template void knn_cpu<double>(const double*, const double*, int64_t, int64_t, int64_t, int64_t, int64_t*, double*,
                              int);
template void ball_query_cpu<float>(const float*, const float*, int64_t, int64_t, int64_t, int64_t, double, int64_t*,
                                    int);
template void ball_query_cpu<double>(const double*, const double*, int64_t, int64_t, int64_t, int64_t, double,
                                     int64_t*, int);

}  // namespace pointbench
