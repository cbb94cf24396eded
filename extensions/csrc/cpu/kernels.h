// Raw-pointer CPU kernels of the pointbench point ops (no torch headers: they compile in about a second).
//
// Conventions shared by every kernel:
//   * channels-last, contiguous buffers: points (B, N, 3), features (B, N, C), indices int64;
//   * distances are squared Euclidean, computed as (dx*dx + dy*dy) + dz*dz with dx = p - q and no FMA
//     contraction, which is bit-for-bit what the PyTorch reference computes;
//   * ties are broken by the lowest index, so results are deterministic and equal to the reference;
//   * `threads` is the OpenMP team size (the caller passes at::get_num_threads()); work is split over the batch
//     and, where one cloud is large, over its points.
#pragma once

#include <cstdint>

namespace pointbench {

// skip_origin: after the first sample, never pick a point with |p|^2 <= 1e-3 (pointnet2_ops' quirk, fps.h).
template <typename T>
void fps_cpu(const T* xyz, int64_t b, int64_t n, int64_t m, int64_t start, bool skip_origin, int64_t* out,
             int threads);

template <typename T>
void knn_cpu(const T* query, const T* ref, int64_t b, int64_t m, int64_t n, int64_t k, int64_t* idx, T* dist,
             int threads);

template <typename T>
void ball_query_cpu(const T* xyz, const T* centers, int64_t b, int64_t n, int64_t m, int64_t k, double radius,
                    int64_t* idx, int threads);

template <typename T>
void chamfer_fwd_cpu(const T* a, const T* bb, int64_t b, int64_t n, int64_t m, T* d_ab, int64_t* i_ab, T* d_ba,
                     int64_t* i_ba, int threads);

template <typename T>
void chamfer_bwd_cpu(const T* a, const T* bb, int64_t b, int64_t n, int64_t m, const T* g_ab, const int64_t* i_ab,
                     const T* g_ba, const int64_t* i_ba, T* grad_a, T* grad_b, int threads);

template <typename T>
void gather_fwd_cpu(const T* feat, const int64_t* idx, int64_t b, int64_t n, int64_t c, int64_t m, T* out,
                    int threads);

template <typename T>
void gather_bwd_cpu(const T* grad_out, const int64_t* idx, int64_t b, int64_t n, int64_t c, int64_t m, T* grad_feat,
                    int threads);

template <typename T>
void interpolate_fwd_cpu(const T* feat, const int64_t* idx, const T* weight, int64_t b, int64_t n, int64_t c,
                         int64_t m, T* out, int threads);

template <typename T>
void interpolate_bwd_cpu(const T* grad_out, const T* feat, const int64_t* idx, const T* weight, int64_t b, int64_t n,
                         int64_t c, int64_t m, T* grad_feat, T* grad_weight, int threads);

// First entry of idx[0:count] outside [0, n), or -1 when all are valid.
int64_t first_bad_index(const int64_t* idx, int64_t count, int64_t n, int threads);

}  // namespace pointbench
