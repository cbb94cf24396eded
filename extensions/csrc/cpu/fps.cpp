// Greedy furthest point sampling on the CPU, one cloud per OpenMP task (pointnet2_ops semantics: start index given,
// each next sample is the arg-max of the running min squared distance, ties to the lowest index). Large clouds with
// many samples go to the exact bucketed kernel (fps_bucket.cpp, same indices), the others to the brute-force scan.
// skip_origin: pointnet2_ops' quirk, see near_origin in fps.h.
#include <limits>
#include <vector>

#include "common.h"
#include "fps.h"
#include "kernels.h"

namespace pointbench {
namespace {

template <typename T>
void fps_one(const T* xyz, int64_t n, int64_t m, int64_t start, bool skip_origin, int64_t* out, SoA<T>& p,
             std::vector<T>& md) {
  p.load(xyz, n);
  md.resize(p.padded);
  for (int64_t i = 0; i < p.padded; ++i) md[i] = initial_md(p.x[i], p.y[i], p.z[i], skip_origin);  // pads: as point 0
  int64_t cur = start;
  for (int64_t i = 0; i < m; ++i) {
    out[i] = cur;
    if (i + 1 < m) {
      cur = update_argmax(p.x.data(), p.y.data(), p.z.data(), md.data(), p.padded, p.x[cur], p.y[cur],
                          p.z[cur]).index;
    }
  }
}

}  // namespace

template <typename T>
void fps_cpu(const T* xyz, int64_t b, int64_t n, int64_t m, int64_t start, bool skip_origin, int64_t* out,
             int threads) {
#pragma omp parallel num_threads(team_size(b * n * m, threads))
  {
    SoA<T> p;
    std::vector<T> md;
    BucketCloud<T> buckets;
#pragma omp for schedule(dynamic, 1)
    for (int64_t bi = 0; bi < b; ++bi) {
      const T* cloud = xyz + bi * n * 3;
      const bool bucketed = n >= kBucketMinPoints && m >= kBucketMinSamples;
      if (bucketed && fps_bucket_one(cloud, n, m, start, skip_origin, out + bi * m, buckets)) continue;
      fps_one(cloud, n, m, start, skip_origin, out + bi * m, p, md);
    }
  }
}

template void fps_cpu<float>(const float*, int64_t, int64_t, int64_t, int64_t, bool, int64_t*, int);
template void fps_cpu<double>(const double*, int64_t, int64_t, int64_t, int64_t, bool, int64_t*, int);

}  // namespace pointbench
