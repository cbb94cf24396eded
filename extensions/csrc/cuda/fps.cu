// Furthest point sampling on the GPU: one block per cloud (pointnet2_ops design). Each thread strides over the
// points updating the running min distance in `temp`, keeps its own arg-max, and a shared-memory tree reduction
// picks the block's arg-max, ties to the lowest index. Start index is an argument. skip_origin reproduces
// pointnet2_ops' quirk (erikwijmans/Pointnet2_PyTorch sampling_gpu.cu L100-101): a point whose squared norm, in T,
// is <= 1e-3 as a double starts at temp = -inf instead of +inf, so min() keeps it there and it is never picked over
// a finite distance; when every point is skipped, besti = 0 wins (as in the kernel). Same rule as the CPU's fps.h.
#include "common.cuh"
#include "kernels.cuh"

namespace pointbench {
namespace {

template <typename T>
__device__ __forceinline__ void take_if_better(T& v, int64_t& i, T ov, int64_t oi) {
  if (ov > v || (ov == v && oi < i)) {
    v = ov;
    i = oi;
  }
}

constexpr double kSkipOriginMag2 = 1e-3;

template <typename T>
__device__ __forceinline__ T initial_md(T x, T y, T z, bool skip_origin) {
  const T mag = add_rn(add_rn(mul_rn(x, x), mul_rn(y, y)), mul_rn(z, z));
  return skip_origin && static_cast<double>(mag) <= kSkipOriginMag2 ? -infinity<T>() : infinity<T>();
}

template <typename T, int BS>
__global__ void fps_kernel(const T* __restrict__ xyz, int64_t n, int64_t m, int64_t start, bool skip_origin,
                           T* __restrict__ temp, int64_t* __restrict__ out) {
  __shared__ T sval[BS];
  __shared__ int64_t sidx[BS];
  const int tid = threadIdx.x;
  xyz += blockIdx.x * n * 3;
  temp += blockIdx.x * n;
  out += blockIdx.x * m;
  for (int64_t k = tid; k < n; k += BS) temp[k] = initial_md(xyz[k * 3], xyz[k * 3 + 1], xyz[k * 3 + 2], skip_origin);
  int64_t cur = start;
  if (tid == 0) out[0] = cur;
  for (int64_t j = 1; j < m; ++j) {
    const T qx = xyz[cur * 3], qy = xyz[cur * 3 + 1], qz = xyz[cur * 3 + 2];
    T best = T(-1);
    int64_t besti = 0;
    for (int64_t k = tid; k < n; k += BS) {
      const T d = sqdist(xyz[k * 3], xyz[k * 3 + 1], xyz[k * 3 + 2], qx, qy, qz);
      const T v = temp[k] < d ? temp[k] : d;
      temp[k] = v;
      if (v > best) {
        best = v;
        besti = k;
      }
    }
    sval[tid] = best;
    sidx[tid] = besti;
    __syncthreads();
    for (int s = BS / 2; s > 0; s >>= 1) {
      if (tid < s) take_if_better(sval[tid], sidx[tid], sval[tid + s], sidx[tid + s]);
      __syncthreads();
    }
    cur = sidx[0];
    if (tid == 0) out[j] = cur;
    __syncthreads();  // everyone has read sidx[0] before the next round overwrites it
  }
}

template <typename T, int BS>
void launch(const T* xyz, int64_t b, int64_t n, int64_t m, int64_t start, bool skip_origin, T* temp, int64_t* out,
            cudaStream_t s) {
  fps_kernel<T, BS><<<static_cast<unsigned int>(b), BS, 0, s>>>(xyz, n, m, start, skip_origin, temp, out);
}

}  // namespace

template <typename T>
cudaError_t fps_cuda(const T* xyz, int64_t b, int64_t n, int64_t m, int64_t start, bool skip_origin, T* temp,
                     int64_t* out, cudaStream_t stream) {
  if (b == 0 || m == 0) return cudaSuccess;
  if (n > 256) {
    launch<T, 512>(xyz, b, n, m, start, skip_origin, temp, out, stream);
  } else if (n > 64) {
    launch<T, 128>(xyz, b, n, m, start, skip_origin, temp, out, stream);
  } else {
    launch<T, 32>(xyz, b, n, m, start, skip_origin, temp, out, stream);
  }
  return cudaGetLastError();
}

template cudaError_t fps_cuda<float>(const float*, int64_t, int64_t, int64_t, int64_t, bool, float*, int64_t*,
                                     cudaStream_t);
template cudaError_t fps_cuda<double>(const double*, int64_t, int64_t, int64_t, int64_t, bool, double*, int64_t*,
                                      cudaStream_t);

}  // namespace pointbench
