// Exact bucketed furthest point sampling (the bucket / kd-tree idea of QuickFPS, Han et al., IEEE TCAD 2023).
//
// Each cloud is split once into kd-tree leaves of at most kLeafPoints points (near-median splits on the widest axis,
// branch-free partitions around a sample median). Every leaf keeps its bounding box and the largest running
// min-distance md of its points (`top`, with the lowest original index holding it). After a new sample q, a leaf
// whose box distance to q is >= its `top` is skipped: no point in it can change. The next sample is the largest leaf
// maximum, ties to the lowest original index.
//
// Why the result is bit-for-bit the brute-force one: distances use the same formula, (dx*dx + dy*dy) + dz*dz with
// dx = p - q, without FMA contraction (-ffp-contract=off). The box distance is the same formula on per-axis gaps
// g = max(lo - q, q - hi, 0). IEEE rounding is monotone and symmetric (fl(-a) = -fl(a)), so for every point p in
// the box fl(g) <= |fl(p - q)| on each axis, and then fl(g*g) <= fl(dx*dx) and the rounded sums keep the order:
// the computed box distance never exceeds the computed |p - q|^2 (infinities included). So when box >= top, every
// point of the leaf has |p - q|^2 >= top >= md and min(md, |p - q|^2) = md: skipping changes no md. Updated leaves
// use the brute-force update, so md holds the brute-force values at every step, and the argmax uses the same
// order (value, then lowest original index). Clouds with a non-finite coordinate (NaN compares break the
// argument) are left to the brute-force kernel. With skip_origin, the points near the origin (fps.h) start at
// md = -inf like pads: the skip test (box >= top) still holds for them, and a leaf holding only such points gets
// top = -1 from the update and is never a maximum unless every point is skipped (then index 0, its first slot).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "common.h"
#include "fps.h"

namespace pointbench {
namespace {

constexpr int64_t kLeafPoints = 128;
constexpr int64_t kPivotSample = 15;

template <typename T>
bool all_finite(const T* xyz, int64_t n) {
  bool ok = true;
  for (int64_t i = 0; i < 3 * n; ++i) ok &= std::isfinite(xyz[i]);
  return ok;
}

// Axis (0, 1, 2) along which the points p[0:count] spread the most.
template <typename T>
int widest_axis(const BuildPoint<T>* p, int64_t count) {
  T lo[3] = {p[0].x, p[0].y, p[0].z}, hi[3] = {p[0].x, p[0].y, p[0].z};
  for (int64_t i = 1; i < count; ++i) {
    lo[0] = std::min(lo[0], p[i].x), hi[0] = std::max(hi[0], p[i].x);
    lo[1] = std::min(lo[1], p[i].y), hi[1] = std::max(hi[1], p[i].y);
    lo[2] = std::min(lo[2], p[i].z), hi[2] = std::max(hi[2], p[i].z);
  }
  int axis = 0;
  for (int a = 1; a < 3; ++a) {
    if (hi[a] - lo[a] > hi[axis] - lo[axis]) axis = a;
  }
  return axis;
}

// Coordinate `axis` of a build point.
template <typename T>
inline T coord(const BuildPoint<T>& p, int axis) {
  return axis == 0 ? p.x : axis == 1 ? p.y : p.z;
}

// Median along `axis` of a strided sample of kPivotSample points of p[0:count].
template <typename T>
T sample_median(const BuildPoint<T>* p, int64_t count, int axis) {
  T sample[kPivotSample];
  for (int64_t s = 0; s < kPivotSample; ++s) sample[s] = coord(p[s * count / kPivotSample], axis);
  std::nth_element(sample, sample + kPivotSample / 2, sample + kPivotSample);
  return sample[kPivotSample / 2];
}

// Branch-free partition of p[0:count] through tmp: points whose coordinate is below the pivot (at most the pivot
// when `inclusive`) first. Each point is written to both ends of the unfilled gap of tmp and only the cursor of its
// side moves, so a stray copy always lands in the gap and is overwritten later. Returns the size of the first part.
template <typename T>
int64_t partition_below(BuildPoint<T>* p, BuildPoint<T>* tmp, int64_t count, int axis, T pivot, bool inclusive) {
  int64_t below = 0, above = 0;
  for (int64_t i = 0; i < count; ++i) {
    const T v = coord(p[i], axis);
    const bool left = inclusive ? v <= pivot : v < pivot;
    tmp[below] = p[i];
    tmp[count - 1 - above] = p[i];
    below += left;
    above += !left;
  }
  std::memcpy(static_cast<void*>(p), tmp, sizeof(BuildPoint<T>) * count);
  return below;
}

// Splits p[0:count] in two along `axis` near its median and returns the size of the first part (0 < size < count).
// The pivot is a sample median; when that split is lopsided (many equal coordinates, skewed data) an exact
// median split is used instead, so the tree depth stays O(log n).
template <typename T>
int64_t split_point(BuildPoint<T>* p, BuildPoint<T>* tmp, int64_t count, int axis) {
  const T pivot = sample_median(p, count, axis);
  int64_t left = partition_below(p, tmp, count, axis, pivot, false);
  if (left < count / 8) left = partition_below(p, tmp, count, axis, pivot, true);
  if (left >= count / 8 && left <= count - count / 8) return left;
  left = count / 2;
  std::nth_element(p, p + left, p + count, [axis](const BuildPoint<T>& a, const BuildPoint<T>& b) {
    return coord(a, axis) < coord(b, axis);
  });
  return left;
}

// Splits c.pts[begin:end] recursively near the median of the widest axis until parts have at most kLeafPoints
// points, numbering the leaves depth first (spatially coherent order): c.leaf_of[original index] = leaf number,
// c.first[leaf] = its number of points.
template <typename T>
void split(BucketCloud<T>& c, int64_t begin, int64_t end) {
  BuildPoint<T>* p = c.pts.data() + begin;
  const int64_t count = end - begin;
  if (count <= kLeafPoints) {
    const int64_t leaf = static_cast<int64_t>(c.first.size());
    for (int64_t i = 0; i < count; ++i) c.leaf_of[p[i].index] = static_cast<LaneInt<T>>(leaf);
    c.first.push_back(count);
    return;
  }
  const int64_t left = begin + split_point(p, c.scratch.data() + begin, count, widest_axis(p, count));
  split(c, begin, left);
  split(c, left, end);
}

// Sizes the per-leaf arrays for the c.first.size() leaves found by split (padded to the SIMD width; pad leaves are
// empty and never win) and turns c.first from leaf sizes into first slots; c.count gets the padded sizes.
template <typename T>
int64_t layout_leaves(BucketCloud<T>& c) {
  constexpr int64_t L = Simd<T>::L;
  const int64_t leaves = static_cast<int64_t>(c.first.size());
  const int64_t padded = (leaves + L - 1) / L * L;
  c.leaves = leaves;
  c.count.assign(padded, 0);
  int64_t slot = 0;
  for (int64_t leaf = 0; leaf < leaves; ++leaf) {
    c.count[leaf] = (c.first[leaf] + L - 1) / L * L;
    c.first[leaf] = slot;
    slot += c.count[leaf];
  }
  c.first.resize(padded, slot);
  for (auto* v : {&c.lox, &c.loy, &c.loz}) v->assign(padded, std::numeric_limits<T>::infinity());
  for (auto* v : {&c.hix, &c.hiy, &c.hiz}) v->assign(padded, -std::numeric_limits<T>::infinity());
  c.top.assign(padded, -std::numeric_limits<T>::infinity());
  c.arg.assign(padded, std::numeric_limits<LaneInt<T>>::max());
  return slot;
}

// Partitions the cloud into leaves and lays them out (see BucketCloud). Points are placed by increasing original
// index, so every leaf is in increasing original index without a sort; md starts at +inf (pads: -inf) and each
// leaf's top is +inf at its first (lowest) original index (the first step updates every leaf, so a skipped point
// there is never taken for a maximum). Pad leaves have top = -inf (never touched, never a maximum) and an empty box.
template <typename T>
void build(const T* xyz, int64_t n, bool skip_origin, BucketCloud<T>& c) {
  c.pts.resize(n);
  c.scratch.resize(n);
  for (int64_t i = 0; i < n; ++i) c.pts[i] = {xyz[3 * i], xyz[3 * i + 1], xyz[3 * i + 2], LaneInt<T>(i)};
  c.leaf_of.resize(n);
  c.first.clear();
  split(c, 0, n);
  const int64_t slots = layout_leaves(c);
  for (auto* v : {&c.x, &c.y, &c.z}) v->assign(slots, T(0));
  c.md.assign(slots, -std::numeric_limits<T>::infinity());
  c.orig.resize(slots);
  c.cursor.assign(c.first.begin(), c.first.end());
  for (int64_t i = 0; i < n; ++i) {
    const int64_t leaf = c.leaf_of[i], s = c.cursor[leaf]++;
    const T* p = xyz + 3 * i;
    c.x[s] = p[0], c.y[s] = p[1], c.z[s] = p[2], c.md[s] = initial_md(p[0], p[1], p[2], skip_origin);
    c.orig[s] = static_cast<LaneInt<T>>(i);
    c.lox[leaf] = std::min(c.lox[leaf], p[0]), c.hix[leaf] = std::max(c.hix[leaf], p[0]);
    c.loy[leaf] = std::min(c.loy[leaf], p[1]), c.hiy[leaf] = std::max(c.hiy[leaf], p[1]);
    c.loz[leaf] = std::min(c.loz[leaf], p[2]), c.hiz[leaf] = std::max(c.hiz[leaf], p[2]);
  }
  for (int64_t leaf = 0; leaf < c.leaves; ++leaf) {
    c.top[leaf] = std::numeric_limits<T>::infinity();
    c.arg[leaf] = c.orig[c.first[leaf]];
  }
}

// Brute-force update of one leaf against q (same arithmetic as the brute-force kernel) and of its top / arg, which
// it also returns (top, arg).
template <typename T>
ArgMax<T> update_leaf(BucketCloud<T>& c, int64_t leaf, T qx, T qy, T qz) {
  const int64_t f = c.first[leaf];
  const ArgMax<T> best = update_argmax(c.x.data() + f, c.y.data() + f, c.z.data() + f, c.md.data() + f,
                                       c.count[leaf], qx, qy, qz);
  c.top[leaf] = best.value;
  c.arg[leaf] = c.orig[f + best.index];  // leaves are in increasing original index: first position = lowest index
  return {c.arg[leaf], best.value};
}

// Per-axis gap between q and the boxes [lo, hi] of one block of leaves: max(lo - q, q - hi, 0).
template <typename V, typename T>
inline V gap(const T* lo, const T* hi, T q) {
  const V below = load<V>(lo) - q, above = q - load<V>(hi);
  const V g = below > above ? below : above;
  return g > T(0) ? g : V{};
}

// Updates every leaf that the new sample q can change and returns the next sample (original index): the largest
// leaf top, ties to the lowest original index.
template <typename T>
int64_t step(BucketCloud<T>& c, T qx, T qy, T qz) {
  using V = typename Simd<T>::V;
  using I = typename Simd<T>::I;
  constexpr int L = Simd<T>::L;
  V best = V{} - std::numeric_limits<T>::infinity();
  I besti = I{} + std::numeric_limits<LaneInt<T>>::max();
  const int64_t blocks = static_cast<int64_t>(c.top.size());
  for (int64_t l0 = 0; l0 < blocks; l0 += L) {
    const V gx = gap<V>(c.lox.data() + l0, c.hix.data() + l0, qx);
    const V gy = gap<V>(c.loy.data() + l0, c.hiy.data() + l0, qy);
    const V gz = gap<V>(c.loz.data() + l0, c.hiz.data() + l0, qz);
    V top = load<V>(c.top.data() + l0);
    I arg = load<I>(c.arg.data() + l0);
    const auto touched = sqdist(gx, gy, gz, T(0), T(0), T(0)) < top;
    if (any_lane(touched)) {
      for (int l = 0; l < L; ++l) {
        if (!touched[l]) continue;
        const ArgMax<T> leaf = update_leaf(c, l0 + l, qx, qy, qz);
        top[l] = leaf.value;  // lane inserts: reloading the block would stall on the scalar stores
        arg[l] = static_cast<LaneInt<T>>(leaf.index);
      }
    }
    const auto better = (top > best) | ((top == best) & (arg < besti));
    best = better ? top : best;
    besti = better ? arg : besti;
  }
  return lane_max<T>(best, besti).index;
}

}  // namespace

template <typename T>
bool fps_bucket_one(const T* xyz, int64_t n, int64_t m, int64_t start, bool skip_origin, int64_t* out,
                    BucketCloud<T>& c) {
  if (!all_finite(xyz, n)) return false;
  build(xyz, n, skip_origin, c);
  int64_t cur = start;
  for (int64_t i = 0; i < m; ++i) {
    out[i] = cur;
    if (i + 1 < m) cur = step(c, xyz[3 * cur], xyz[3 * cur + 1], xyz[3 * cur + 2]);
  }
  return true;
}

template bool fps_bucket_one<float>(const float*, int64_t, int64_t, int64_t, bool, int64_t*, BucketCloud<float>&);
template bool fps_bucket_one<double>(const double*, int64_t, int64_t, int64_t, bool, int64_t*,
                                     BucketCloud<double>&);

}  // namespace pointbench
