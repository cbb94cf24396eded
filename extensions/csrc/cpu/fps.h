// Pieces shared by the brute-force (fps.cpp) and the bucketed (fps_bucket.cpp) furthest point sampling kernels.
#pragma once

#include <cstdint>
#include <limits>
#include <type_traits>
#include <vector>

#include "common.h"

namespace pointbench {

// pointnet2_ops' quirk (erikwijmans/Pointnet2_PyTorch sampling_gpu.cu L100-101): with skip_origin, a point whose
// squared norm (x*x + y*y) + z*z, in T, is <= 1e-3 as a double is never picked after the first sample. Such points
// start at md = -inf, which min() keeps and no arg-max picks over a finite distance; with nothing else left, the
// lowest index with the largest md (index 0 when every point is skipped) repeats, as the kernel's besti = 0 does.
constexpr double kSkipOriginMag2 = 1e-3;

template <typename T>
inline bool near_origin(T x, T y, T z) {
  T mag = x * x + y * y;
  mag = mag + z * z;
  return static_cast<double>(mag) <= kSkipOriginMag2;
}

// Initial running min-distance of a point: +inf, or -inf for a point skip_origin leaves out.
template <typename T>
inline T initial_md(T x, T y, T z, bool skip_origin) {
  return skip_origin && near_origin(x, y, z) ? -std::numeric_limits<T>::infinity()
                                             : std::numeric_limits<T>::infinity();
}

// Position and value of a maximum.
template <typename T>
struct ArgMax {
  int64_t index;
  T value;
};

// Largest value of v and the lowest id among the lanes holding it (branch-free: a max, then a min over the ties).
template <typename T>
inline ArgMax<T> lane_max(const typename Simd<T>::V& v, const typename Simd<T>::I& ids) {
  T top = v[0];
  for (int l = 1; l < Simd<T>::L; ++l) top = v[l] > top ? v[l] : top;
  int64_t id = std::numeric_limits<int64_t>::max();
  for (int l = 0; l < Simd<T>::L; ++l) id = v[l] == top && ids[l] < id ? ids[l] : id;
  return {id, top};
}

// Updates md[i] = min(md[i], |p_i - q|^2) for i < padded (a multiple of the SIMD width) and returns the first
// position of the largest md and that md (from a register: reading it back from md right after the vector stores
// would stall on store forwarding). Lane l handles positions = l (mod L); a strict '>' keeps each lane's earliest
// maximum, and the merge prefers the lowest position among equal lane maxima, so the result is the global first
// arg-max.
template <typename T>
ArgMax<T> update_argmax(const T* x, const T* y, const T* z, T* md, int64_t padded, T qx, T qy, T qz) {
  using V = typename Simd<T>::V;
  using I = typename Simd<T>::I;
  constexpr int L = Simd<T>::L;
  V best = V{} - T(1);
  I besti = I{};
  I ids = lane_ids<T>();
  for (int64_t i0 = 0; i0 < padded; i0 += L, ids += L) {
    const V d = sqdist(load<V>(x + i0), load<V>(y + i0), load<V>(z + i0), qx, qy, qz);
    const V old = load<V>(md + i0);
    const V v = old < d ? old : d;
    store(md + i0, v);
    const auto gt = v > best;
    best = gt ? v : best;
    besti = gt ? ids : besti;
  }
  return lane_max<T>(best, besti);
}

// Integer type of one lane of Simd<T>::I (int32 for float, int64 for double); original indices of the bucketed
// kernel are stored in it, which is enough since clouds have fewer than 2^31 points (checked by the bindings).
template <typename T>
using LaneInt = typename std::conditional<sizeof(T) == 4, int32_t, int64_t>::type;

// A point and its original index, as moved around while the kd-tree is built.
template <typename T>
struct BuildPoint {
  T x, y, z;
  LaneInt<T> index;
};

// One cloud partitioned into kd-tree leaves ("buckets"). Points are stored leaf by leaf, each leaf in increasing
// original index and padded to a multiple of the SIMD width (pads: md = -inf, never a maximum, never updated
// to anything else). Per leaf (structure of arrays, padded to a multiple of the SIMD width with empty leaves whose
// `top` is -inf): bounding box, largest md of its points (`top`) and the lowest original index holding it (`arg`).
template <typename T>
struct BucketCloud {
  std::vector<T> x, y, z, md;
  std::vector<LaneInt<T>> orig;
  std::vector<T> lox, loy, loz, hix, hiy, hiz, top;
  std::vector<LaneInt<T>> arg;
  std::vector<int64_t> first, count;     // first slot of each leaf and its padded point count
  int64_t leaves = 0;                    // number of real leaves
  std::vector<BuildPoint<T>> pts;        // build scratch: the points, permuted by the kd-tree splits
  std::vector<BuildPoint<T>> scratch;    // build scratch: partition buffer
  std::vector<LaneInt<T>> leaf_of;       // build scratch: leaf of each original index
  std::vector<int64_t> cursor;           // build scratch: next free slot of each leaf
};

// fps_cpu uses the bucketed kernel for clouds of at least kBucketMinPoints points sampled down to at least
// kBucketMinSamples points. Measured (one thread, uniform clouds): building the buckets costs about as much as
// 100-200 brute-force steps, so the bucketed kernel is slower below ~200 samples at any N, 1.2-1.3x faster at
// 256 samples from 2048 points and 2-2.5x faster from 512 samples out of 4096 points on.
constexpr int64_t kBucketMinPoints = 2048;
constexpr int64_t kBucketMinSamples = 256;

// Bucketed exact FPS of one (n, 3) cloud into out[0:m]; identical to the brute-force result. Returns false, having
// written nothing, for clouds it does not handle (a non-finite coordinate): the caller then runs the brute force.
template <typename T>
bool fps_bucket_one(const T* xyz, int64_t n, int64_t m, int64_t start, bool skip_origin, int64_t* out,
                    BucketCloud<T>& c);

}  // namespace pointbench
