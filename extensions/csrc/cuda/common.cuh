// Device helpers shared by the CUDA kernels: the reference distance formula with explicit round-to-nearest
// arithmetic (no FMA contraction, so values match the PyTorch reference bit for bit) and grid sizing.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace pointbench {

__device__ __forceinline__ float mul_rn(float a, float b) { return __fmul_rn(a, b); }
__device__ __forceinline__ double mul_rn(double a, double b) { return __dmul_rn(a, b); }
__device__ __forceinline__ float add_rn(float a, float b) { return __fadd_rn(a, b); }
__device__ __forceinline__ double add_rn(double a, double b) { return __dadd_rn(a, b); }

// (dx*dx + dy*dy) + dz*dz with dx = a - b, each operation rounded separately.
template <typename T>
__device__ __forceinline__ T sqdist(T ax, T ay, T az, T bx, T by, T bz) {
  const T dx = ax - bx, dy = ay - by, dz = az - bz;
  return add_rn(add_rn(mul_rn(dx, dx), mul_rn(dy, dy)), mul_rn(dz, dz));
}

template <typename T>
__device__ __forceinline__ T infinity();
template <>
__device__ __forceinline__ float infinity<float>() { return __int_as_float(0x7f800000); }
template <>
__device__ __forceinline__ double infinity<double>() { return __longlong_as_double(0x7ff0000000000000LL); }

inline unsigned int blocks_for(int64_t work, int threads) {
  return static_cast<unsigned int>((work + threads - 1) / threads);
}

}  // namespace pointbench
