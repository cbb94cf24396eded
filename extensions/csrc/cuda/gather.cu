// Gather (gather_points / group_points) and three-point interpolation on the GPU, one thread per output element;
// backward passes scatter with atomicAdd.
#include "common.cuh"
#include "kernels.cuh"

namespace pointbench {
namespace {

constexpr int kThreads = 256;

template <typename T>
__global__ void gather_fwd_kernel(const T* __restrict__ feat, const int64_t* __restrict__ idx, int64_t b, int64_t n,
                                  int64_t c, int64_t m, T* __restrict__ out) {
  const int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (e >= b * m * c) return;
  const int64_t q = e / c, ch = e % c;
  out[e] = feat[((q / m) * n + idx[q]) * c + ch];
}

template <typename T>
__global__ void gather_bwd_kernel(const T* __restrict__ grad_out, const int64_t* __restrict__ idx, int64_t b,
                                  int64_t n, int64_t c, int64_t m, T* __restrict__ grad_feat) {
  const int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (e >= b * m * c) return;
  const int64_t q = e / c, ch = e % c;
  atomicAdd(grad_feat + ((q / m) * n + idx[q]) * c + ch, grad_out[e]);
}

template <typename T>
__global__ void interpolate_fwd_kernel(const T* __restrict__ feat, const int64_t* __restrict__ idx,
                                       const T* __restrict__ weight, int64_t b, int64_t n, int64_t c, int64_t m,
                                       T* __restrict__ out) {
  const int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (e >= b * m * c) return;
  const int64_t q = e / c, ch = e % c;
  const T* base = feat + (q / m) * n * c + ch;
  out[e] = weight[3 * q] * base[idx[3 * q] * c] + weight[3 * q + 1] * base[idx[3 * q + 1] * c] +
           weight[3 * q + 2] * base[idx[3 * q + 2] * c];
}

template <typename T>
__global__ void interpolate_bwd_feat_kernel(const T* __restrict__ grad_out, const int64_t* __restrict__ idx,
                                            const T* __restrict__ weight, int64_t b, int64_t n, int64_t c, int64_t m,
                                            T* __restrict__ grad_feat) {
  const int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (e >= b * m * c) return;
  const int64_t q = e / c, ch = e % c;
  T* base = grad_feat + (q / m) * n * c + ch;
  for (int t = 0; t < 3; ++t) atomicAdd(base + idx[3 * q + t] * c, weight[3 * q + t] * grad_out[e]);
}

template <typename T>
__global__ void interpolate_bwd_weight_kernel(const T* __restrict__ grad_out, const T* __restrict__ feat,
                                              const int64_t* __restrict__ idx, int64_t b, int64_t n, int64_t c,
                                              int64_t m, T* __restrict__ grad_weight) {
  const int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (e >= b * m * 3) return;
  const int64_t q = e / 3;
  const T* src = feat + ((q / m) * n + idx[e]) * c;
  const T* g = grad_out + q * c;
  T dot = 0;
  for (int64_t ch = 0; ch < c; ++ch) dot += g[ch] * src[ch];
  grad_weight[e] = dot;
}

}  // namespace

template <typename T>
cudaError_t gather_fwd_cuda(const T* feat, const int64_t* idx, int64_t b, int64_t n, int64_t c, int64_t m, T* out,
                            cudaStream_t stream) {
  if (b * m * c == 0) return cudaSuccess;
  gather_fwd_kernel<T><<<blocks_for(b * m * c, kThreads), kThreads, 0, stream>>>(feat, idx, b, n, c, m, out);
  return cudaGetLastError();
}

template <typename T>
cudaError_t gather_bwd_cuda(const T* grad_out, const int64_t* idx, int64_t b, int64_t n, int64_t c, int64_t m,
                            T* grad_feat, cudaStream_t stream) {
  if (b * m * c == 0) return cudaSuccess;
  gather_bwd_kernel<T><<<blocks_for(b * m * c, kThreads), kThreads, 0, stream>>>(grad_out, idx, b, n, c, m,
                                                                                  grad_feat);
  return cudaGetLastError();
}

template <typename T>
cudaError_t interpolate_fwd_cuda(const T* feat, const int64_t* idx, const T* weight, int64_t b, int64_t n, int64_t c,
                                 int64_t m, T* out, cudaStream_t stream) {
  if (b * m * c == 0) return cudaSuccess;
  interpolate_fwd_kernel<T><<<blocks_for(b * m * c, kThreads), kThreads, 0, stream>>>(feat, idx, weight, b, n, c, m,
                                                                                       out);
  return cudaGetLastError();
}

// grad_feat must be zero on entry.
template <typename T>
cudaError_t interpolate_bwd_cuda(const T* grad_out, const T* feat, const int64_t* idx, const T* weight, int64_t b,
                                 int64_t n, int64_t c, int64_t m, T* grad_feat, T* grad_weight, cudaStream_t stream) {
  if (b * m == 0) return cudaSuccess;
  if (c > 0) {
    interpolate_bwd_feat_kernel<T><<<blocks_for(b * m * c, kThreads), kThreads, 0, stream>>>(grad_out, idx, weight,
                                                                                              b, n, c, m, grad_feat);
  }
  interpolate_bwd_weight_kernel<T><<<blocks_for(b * m * 3, kThreads), kThreads, 0, stream>>>(grad_out, feat, idx, b,
                                                                                              n, c, m, grad_weight);
  return cudaGetLastError();
}

#define POINTBENCH_INSTANTIATE(T)                                                                                    \
  template cudaError_t gather_fwd_cuda<T>(const T*, const int64_t*, int64_t, int64_t, int64_t, int64_t, T*,          \
                                          cudaStream_t);                                                             \
  template cudaError_t gather_bwd_cuda<T>(const T*, const int64_t*, int64_t, int64_t, int64_t, int64_t, T*,          \
                                          cudaStream_t);                                                             \
  template cudaError_t interpolate_fwd_cuda<T>(const T*, const int64_t*, const T*, int64_t, int64_t, int64_t,        \
                                               int64_t, T*, cudaStream_t);                                           \
  template cudaError_t interpolate_bwd_cuda<T>(const T*, const T*, const int64_t*, const T*, int64_t, int64_t,       \
                                               int64_t, int64_t, T*, T*, cudaStream_t);
POINTBENCH_INSTANTIATE(float)
POINTBENCH_INSTANTIATE(double)
#undef POINTBENCH_INSTANTIATE

}  // namespace pointbench
