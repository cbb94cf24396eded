// k nearest neighbours and ball query on the GPU. kNN: one thread per query, the reference cloud streamed through
// shared-memory tiles, each thread keeping its k best in a sorted list (insertion after equal distances, so the
// lowest index wins ties); the (M, N) distance matrix is never stored. Ball query: one thread per centre with an
// early exit after k hits.
#include "common.cuh"
#include "kernels.cuh"

namespace pointbench {
namespace {

constexpr int kThreads = 256;
constexpr int kTile = 256;

// Inserts (d, j) into the sorted list (dist, idx)[0:k] when it beats the current worst; returns the new worst.
template <typename T>
__device__ __forceinline__ T insert(T* dist, int64_t* idx, int64_t k, T d, int64_t j) {
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

template <typename T>
__global__ void knn_kernel(const T* __restrict__ query, const T* __restrict__ ref, int64_t m, int64_t n, int64_t k,
                           int64_t* __restrict__ idx, T* __restrict__ dist) {
  __shared__ T tile[kTile * 3];
  const int64_t bi = blockIdx.y;
  const int64_t q = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  const bool active = q < m;
  ref += bi * n * 3;
  const int64_t row = (bi * m + (active ? q : 0)) * k;
  T qx = 0, qy = 0, qz = 0, worst = infinity<T>();
  if (active) {
    qx = query[(bi * m + q) * 3];
    qy = query[(bi * m + q) * 3 + 1];
    qz = query[(bi * m + q) * 3 + 2];
    for (int64_t s = 0; s < k; ++s) dist[row + s] = infinity<T>();
  }
  for (int64_t t0 = 0; t0 < n; t0 += kTile) {
    const int64_t count = n - t0 < kTile ? n - t0 : kTile;
    for (int64_t s = threadIdx.x; s < count * 3; s += blockDim.x) tile[s] = ref[t0 * 3 + s];
    __syncthreads();
    for (int64_t s = 0; active && s < count; ++s) {
      const T d = sqdist(qx, qy, qz, tile[3 * s], tile[3 * s + 1], tile[3 * s + 2]);
      if (d < worst) worst = insert(dist + row, idx + row, k, d, t0 + s);
    }
    __syncthreads();
  }
}

template <typename T>
__global__ void ball_query_kernel(const T* __restrict__ xyz, const T* __restrict__ centers, int64_t b, int64_t n,
                                  int64_t m, int64_t k, T r2, int64_t* __restrict__ idx) {
  const int64_t q = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (q >= b * m) return;
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

}  // namespace

template <typename T>
cudaError_t knn_cuda(const T* query, const T* ref, int64_t b, int64_t m, int64_t n, int64_t k, int64_t* idx, T* dist,
                     cudaStream_t stream) {
  if (b == 0 || m == 0 || k == 0) return cudaSuccess;
  const dim3 grid(blocks_for(m, kThreads), static_cast<unsigned int>(b));
  knn_kernel<T><<<grid, kThreads, 0, stream>>>(query, ref, m, n, k, idx, dist);
  return cudaGetLastError();
}

template <typename T>
cudaError_t ball_query_cuda(const T* xyz, const T* centers, int64_t b, int64_t n, int64_t m, int64_t k,
                            double radius, int64_t* idx, cudaStream_t stream) {
  if (b * m == 0 || k == 0 || n == 0) return cudaSuccess;
  const T r2 = static_cast<T>(radius * radius);
  ball_query_kernel<T><<<blocks_for(b * m, kThreads), kThreads, 0, stream>>>(xyz, centers, b, n, m, k, r2, idx);
  return cudaGetLastError();
}

template cudaError_t knn_cuda<float>(const float*, const float*, int64_t, int64_t, int64_t, int64_t, int64_t*, float*,
                                     cudaStream_t);
template cudaError_t knn_cuda<double>(const double*, const double*, int64_t, int64_t, int64_t, int64_t, int64_t*,
                                      double*, cudaStream_t);
template cudaError_t ball_query_cuda<float>(const float*, const float*, int64_t, int64_t, int64_t, int64_t, double,
                                            int64_t*, cudaStream_t);
template cudaError_t ball_query_cuda<double>(const double*, const double*, int64_t, int64_t, int64_t, int64_t, double,
                                             int64_t*, cudaStream_t);

}  // namespace pointbench
