// CUDA launchers of the pointbench point ops (raw pointers, no torch headers; see ../cpu/kernels.h for the
// conventions, which are identical: channels-last, int64 indices, squared distances, lowest index on ties).
// Every launcher enqueues on `stream` and returns the launch status.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace pointbench {

// skip_origin: after the first sample, never pick a point with |p|^2 <= 1e-3 (pointnet2_ops' quirk, fps.cu).
template <typename T>
cudaError_t fps_cuda(const T* xyz, int64_t b, int64_t n, int64_t m, int64_t start, bool skip_origin, T* temp,
                     int64_t* out, cudaStream_t stream);

template <typename T>
cudaError_t knn_cuda(const T* query, const T* ref, int64_t b, int64_t m, int64_t n, int64_t k, int64_t* idx, T* dist,
                     cudaStream_t stream);

template <typename T>
cudaError_t ball_query_cuda(const T* xyz, const T* centers, int64_t b, int64_t n, int64_t m, int64_t k,
                            double radius, int64_t* idx, cudaStream_t stream);

template <typename T>
cudaError_t chamfer_fwd_cuda(const T* a, const T* bb, int64_t b, int64_t n, int64_t m, T* d_ab, int64_t* i_ab,
                             T* d_ba, int64_t* i_ba, cudaStream_t stream);

template <typename T>
cudaError_t chamfer_bwd_cuda(const T* a, const T* bb, int64_t b, int64_t n, int64_t m, const T* g_ab,
                             const int64_t* i_ab, const T* g_ba, const int64_t* i_ba, T* grad_a, T* grad_b,
                             cudaStream_t stream);

template <typename T>
cudaError_t gather_fwd_cuda(const T* feat, const int64_t* idx, int64_t b, int64_t n, int64_t c, int64_t m, T* out,
                            cudaStream_t stream);

template <typename T>
cudaError_t gather_bwd_cuda(const T* grad_out, const int64_t* idx, int64_t b, int64_t n, int64_t c, int64_t m,
                            T* grad_feat, cudaStream_t stream);

template <typename T>
cudaError_t interpolate_fwd_cuda(const T* feat, const int64_t* idx, const T* weight, int64_t b, int64_t n, int64_t c,
                                 int64_t m, T* out, cudaStream_t stream);

template <typename T>
cudaError_t interpolate_bwd_cuda(const T* grad_out, const T* feat, const int64_t* idx, const T* weight, int64_t b,
                                 int64_t n, int64_t c, int64_t m, T* grad_feat, T* grad_weight, cudaStream_t stream);

}  // namespace pointbench
