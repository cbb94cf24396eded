// Helpers shared by the CPU kernels: padded structure-of-arrays copies, GCC/Clang vector types (one 64-byte block,
// which the compiler maps to one AVX-512 or two AVX2/NEON registers) and the reference distance formula.
#pragma once

#include <cstdint>
#include <cstring>
#include <vector>

namespace pointbench {

constexpr int64_t kBlockBytes = 64;

template <typename T>
struct Simd;

template <>
struct Simd<float> {
  typedef float V __attribute__((vector_size(kBlockBytes)));
  typedef int32_t I __attribute__((vector_size(kBlockBytes)));
  static constexpr int L = 16;
};

template <>
struct Simd<double> {
  typedef double V __attribute__((vector_size(kBlockBytes)));
  typedef int64_t I __attribute__((vector_size(kBlockBytes)));
  static constexpr int L = 8;
};

template <typename V, typename T>
inline V load(const T* p) {
  V v;
  std::memcpy(&v, p, sizeof(V));
  return v;
}

template <typename V, typename T>
inline void store(T* p, V v) {
  std::memcpy(p, &v, sizeof(V));
}

// OpenMP team size for `work` elementary steps: one thread below ~1 ms of work, where waking a team costs more
// than it saves (and, on a loaded machine, can stall for a scheduler tick), else the caller's thread count.
inline int team_size(int64_t work, int threads) { return work < (int64_t(1) << 22) ? 1 : threads; }

// Lane numbers 0, 1, ..., L - 1.
template <typename T>
inline typename Simd<T>::I lane_ids() {
  typename Simd<T>::I ids;
  for (int l = 0; l < Simd<T>::L; ++l) ids[l] = l;
  return ids;
}

// (dx*dx + dy*dy) + dz*dz: the exact operation order of the PyTorch reference (compiled with -ffp-contract=off).
// Works for scalars and for vector types alike.
template <typename T, typename S>
inline T sqdist(T ax, T ay, T az, S bx, S by, S bz) {
  const T dx = ax - bx, dy = ay - by, dz = az - bz;
  T d = dx * dx + dy * dy;
  return d + dz * dz;
}

// One cloud (n, 3) interleaved -> three coordinate arrays padded to a multiple of 16 with copies of point 0. A pad
// is a duplicate of point 0 with a higher index, so lowest-index tie breaking never selects it.
template <typename T>
struct SoA {
  std::vector<T> x, y, z;
  int64_t padded = 0;
  void load(const T* p, int64_t n) {
    padded = (n + 15) / 16 * 16;
    x.resize(padded);
    y.resize(padded);
    z.resize(padded);
    for (int64_t i = 0; i < padded; ++i) {
      const int64_t s = i < n ? i : 0;
      x[i] = p[3 * s];
      y[i] = p[3 * s + 1];
      z[i] = p[3 * s + 2];
    }
  }
};

// True when any lane of a vector comparison mask is set.
template <typename M>
inline bool any_lane(const M& mask) {
  uint64_t words[sizeof(M) / 8];
  std::memcpy(words, &mask, sizeof(M));
  uint64_t acc = 0;
  for (uint64_t w : words) acc |= w;
  return acc != 0;
}

// Runs fn(bi, q, soa_of_cloud_bi) for each of the b * m queries (m per cloud, against clouds of n reference points),
// in parallel, each thread converting a reference cloud to SoA only when its batch index changes.
template <typename T, typename Fn>
void for_each_query(const T* ref, int64_t b, int64_t m, int64_t n, int threads, Fn fn) {
#pragma omp parallel num_threads(team_size(b * m * n, threads))
  {
    SoA<T> p;
    int64_t loaded = -1;
#pragma omp for schedule(static)
    for (int64_t q = 0; q < b * m; ++q) {
      const int64_t bi = q / m;
      if (bi != loaded) {
        p.load(ref + bi * n * 3, n);
        loaded = bi;
      }
      fn(bi, q, p);
    }
  }
}


}  // namespace pointbench
