// Chamfer distance on the GPU: a tiled directed nearest-neighbour kernel (one thread per query point, the other
// cloud streamed through shared memory, as in GRNet's chamfer_dist) run in both directions, and a backward pass
// that scatters through the saved arg-mins with atomicAdd. Memory is O(B (N + M)).
#include "common.cuh"
#include "kernels.cuh"

namespace pointbench {
namespace {

constexpr int kThreads = 256;
constexpr int kTile = 512;

template <typename T>
__global__ void nearest_kernel(const T* __restrict__ query, const T* __restrict__ ref, int64_t n, int64_t m,
                               T* __restrict__ dist, int64_t* __restrict__ index) {
  __shared__ T tile[kTile * 3];
  const int64_t bi = blockIdx.y;
  const int64_t q = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  const bool active = q < n;
  ref += bi * m * 3;
  const int64_t qg = (bi * n + (active ? q : 0)) * 3;
  const T qx = query[qg], qy = query[qg + 1], qz = query[qg + 2];
  T best = infinity<T>();
  int64_t besti = 0;
  for (int64_t t0 = 0; t0 < m; t0 += kTile) {
    const int64_t count = m - t0 < kTile ? m - t0 : kTile;
    for (int64_t s = threadIdx.x; s < count * 3; s += blockDim.x) tile[s] = ref[t0 * 3 + s];
    __syncthreads();
    for (int64_t s = 0; s < count; ++s) {
      const T d = sqdist(qx, qy, qz, tile[3 * s], tile[3 * s + 1], tile[3 * s + 2]);
      if (d < best) {
        best = d;
        besti = t0 + s;
      }
    }
    __syncthreads();
  }
  if (active) {
    dist[bi * n + q] = best;
    index[bi * n + q] = besti;
  }
}

// For every query point i of a directed term: grad_q[i] += 2 g (q_i - r_j), grad_r[j] -= 2 g (q_i - r_j).
template <typename T>
__global__ void directed_backward_kernel(const T* __restrict__ query, const T* __restrict__ ref, int64_t b, int64_t n,
                                         int64_t m, const T* __restrict__ grad, const int64_t* __restrict__ index,
                                         T* __restrict__ grad_query, T* __restrict__ grad_ref) {
  const int64_t q = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (q >= b * n) return;
  const int64_t r = (q / n) * m + index[q];
  const T g = T(2) * grad[q];
  for (int d = 0; d < 3; ++d) {
    const T diff = query[q * 3 + d] - ref[r * 3 + d];
    atomicAdd(grad_query + q * 3 + d, g * diff);
    atomicAdd(grad_ref + r * 3 + d, -g * diff);
  }
}

}  // namespace

template <typename T>
cudaError_t chamfer_fwd_cuda(const T* a, const T* bb, int64_t b, int64_t n, int64_t m, T* d_ab, int64_t* i_ab,
                             T* d_ba, int64_t* i_ba, cudaStream_t stream) {
  if (b == 0) return cudaSuccess;
  const dim3 grid_a(blocks_for(n, kThreads), static_cast<unsigned int>(b));
  nearest_kernel<T><<<grid_a, kThreads, 0, stream>>>(a, bb, n, m, d_ab, i_ab);
  const dim3 grid_b(blocks_for(m, kThreads), static_cast<unsigned int>(b));
  nearest_kernel<T><<<grid_b, kThreads, 0, stream>>>(bb, a, m, n, d_ba, i_ba);
  return cudaGetLastError();
}

// grad_a and grad_b must be zero on entry.
template <typename T>
cudaError_t chamfer_bwd_cuda(const T* a, const T* bb, int64_t b, int64_t n, int64_t m, const T* g_ab,
                             const int64_t* i_ab, const T* g_ba, const int64_t* i_ba, T* grad_a, T* grad_b,
                             cudaStream_t stream) {
  if (b == 0) return cudaSuccess;
  directed_backward_kernel<T><<<blocks_for(b * n, kThreads), kThreads, 0, stream>>>(a, bb, b, n, m, g_ab, i_ab,
                                                                                     grad_a, grad_b);
  directed_backward_kernel<T><<<blocks_for(b * m, kThreads), kThreads, 0, stream>>>(bb, a, b, m, n, g_ba, i_ba,
                                                                                     grad_b, grad_a);
  return cudaGetLastError();
}

template cudaError_t chamfer_fwd_cuda<float>(const float*, const float*, int64_t, int64_t, int64_t, float*, int64_t*,
                                             float*, int64_t*, cudaStream_t);
template cudaError_t chamfer_fwd_cuda<double>(const double*, const double*, int64_t, int64_t, int64_t, double*,
                                              int64_t*, double*, int64_t*, cudaStream_t);
template cudaError_t chamfer_bwd_cuda<float>(const float*, const float*, int64_t, int64_t, int64_t, const float*,
                                             const int64_t*, const float*, const int64_t*, float*, float*,
                                             cudaStream_t);
template cudaError_t chamfer_bwd_cuda<double>(const double*, const double*, int64_t, int64_t, int64_t, const double*,
                                              const int64_t*, const double*, const int64_t*, double*, double*,
                                              cudaStream_t);

}  // namespace pointbench
