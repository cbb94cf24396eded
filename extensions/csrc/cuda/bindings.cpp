// torch.ops.pointbench_cuda.*: tensor-level wrappers around the CUDA launchers (same schemas and conventions as
// torch.ops.pointbench_cpu). Kernels run on the current stream of the inputs' device. Indices are not range-checked
// on the GPU (the front door validates shapes; out-of-range indices are undefined behaviour, as in torch.gather's
// CUDA kernel without device asserts).
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <ATen/ops/zeros_like.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <tuple>

#include "../checks.h"
#include "kernels.cuh"

namespace pointbench {
namespace {

using at::Tensor;

cudaStream_t stream() { return c10::cuda::getCurrentCUDAStream().stream(); }

void check(cudaError_t err, const char* op) {
  TORCH_CHECK(err == cudaSuccess, "pointbench CUDA ", op, " failed: ", cudaGetErrorString(err));
}

Tensor fps(const Tensor& xyz_in, int64_t m, int64_t start, bool skip_origin) {
  check_points(xyz_in, "xyz");
  const c10::cuda::CUDAGuard guard(xyz_in.device());
  const Tensor xyz = xyz_in.contiguous();
  const int64_t b = xyz.size(0), n = xyz.size(1);
  TORCH_CHECK(m >= 0 && m <= n, "cannot pick ", m, " points from clouds of ", n);
  TORCH_CHECK(m == 0 || (start >= 0 && start < n), "start index ", start, " out of range for ", n, " points");
  Tensor out = at::empty({b, m}, xyz.options().dtype(at::kLong));
  Tensor temp = at::empty({b, n}, xyz.options());
  AT_DISPATCH_FLOATING_TYPES(xyz.scalar_type(), "pointbench_fps_cuda", [&] {
    check(fps_cuda<scalar_t>(xyz.data_ptr<scalar_t>(), b, n, m, start, skip_origin, temp.data_ptr<scalar_t>(),
                             out.data_ptr<int64_t>(), stream()), "fps");
  });
  return out;
}

std::tuple<Tensor, Tensor> knn(const Tensor& query_in, const Tensor& ref_in, int64_t k) {
  check_points(query_in, "query");
  check_points(ref_in, "ref");
  check_same(query_in, ref_in);
  const c10::cuda::CUDAGuard guard(query_in.device());
  const Tensor query = query_in.contiguous(), ref = ref_in.contiguous();
  const int64_t b = query.size(0), m = query.size(1), n = ref.size(1);
  TORCH_CHECK(k >= 0 && k <= n, "k=", k, " neighbours asked for but the reference clouds have ", n, " points");
  Tensor idx = at::empty({b, m, k}, query.options().dtype(at::kLong));
  Tensor dist = at::empty({b, m, k}, query.options());
  AT_DISPATCH_FLOATING_TYPES(query.scalar_type(), "pointbench_knn_cuda", [&] {
    check(knn_cuda<scalar_t>(query.data_ptr<scalar_t>(), ref.data_ptr<scalar_t>(), b, m, n, k,
                             idx.data_ptr<int64_t>(), dist.data_ptr<scalar_t>(), stream()), "knn");
  });
  return {idx, dist};
}

Tensor ball_query(const Tensor& xyz_in, const Tensor& centers_in, double radius, int64_t k) {
  check_points(xyz_in, "xyz");
  check_points(centers_in, "centers");
  check_same(xyz_in, centers_in);
  const c10::cuda::CUDAGuard guard(xyz_in.device());
  const Tensor xyz = xyz_in.contiguous(), centers = centers_in.contiguous();
  const int64_t b = xyz.size(0), n = xyz.size(1), m = centers.size(1);
  Tensor idx = at::zeros({b, m, k}, xyz.options().dtype(at::kLong));
  AT_DISPATCH_FLOATING_TYPES(xyz.scalar_type(), "pointbench_ball_query_cuda", [&] {
    check(ball_query_cuda<scalar_t>(xyz.data_ptr<scalar_t>(), centers.data_ptr<scalar_t>(), b, n, m, k, radius,
                                    idx.data_ptr<int64_t>(), stream()), "ball_query");
  });
  return idx;
}

std::tuple<Tensor, Tensor, Tensor, Tensor> chamfer_forward(const Tensor& a_in, const Tensor& b_in) {
  check_points(a_in, "a");
  check_points(b_in, "b");
  check_same(a_in, b_in);
  const c10::cuda::CUDAGuard guard(a_in.device());
  const Tensor a = a_in.contiguous(), bb = b_in.contiguous();
  const int64_t b = a.size(0), n = a.size(1), m = bb.size(1);
  TORCH_CHECK(b == 0 || (n > 0 && m > 0), "chamfer_distance needs non-empty clouds, got ", n, " and ", m);
  Tensor d_ab = at::empty({b, n}, a.options()), d_ba = at::empty({b, m}, a.options());
  Tensor i_ab = at::empty({b, n}, a.options().dtype(at::kLong)), i_ba = at::empty({b, m}, i_ab.options());
  AT_DISPATCH_FLOATING_TYPES(a.scalar_type(), "pointbench_chamfer_cuda", [&] {
    check(chamfer_fwd_cuda<scalar_t>(a.data_ptr<scalar_t>(), bb.data_ptr<scalar_t>(), b, n, m,
                                     d_ab.data_ptr<scalar_t>(), i_ab.data_ptr<int64_t>(), d_ba.data_ptr<scalar_t>(),
                                     i_ba.data_ptr<int64_t>(), stream()), "chamfer_forward");
  });
  return {d_ab, d_ba, i_ab, i_ba};
}

std::tuple<Tensor, Tensor> chamfer_backward(const Tensor& a_in, const Tensor& b_in, const Tensor& g_ab_in,
                                            const Tensor& i_ab_in, const Tensor& g_ba_in, const Tensor& i_ba_in) {
  const c10::cuda::CUDAGuard guard(a_in.device());
  const Tensor a = a_in.contiguous(), bb = b_in.contiguous(), g_ab = g_ab_in.contiguous();
  const Tensor g_ba = g_ba_in.contiguous(), i_ab = i_ab_in.contiguous(), i_ba = i_ba_in.contiguous();
  Tensor grad_a = at::zeros_like(a), grad_b = at::zeros_like(bb);
  AT_DISPATCH_FLOATING_TYPES(a.scalar_type(), "pointbench_chamfer_backward_cuda", [&] {
    check(chamfer_bwd_cuda<scalar_t>(a.data_ptr<scalar_t>(), bb.data_ptr<scalar_t>(), a.size(0), a.size(1),
                                     bb.size(1), g_ab.data_ptr<scalar_t>(), i_ab.data_ptr<int64_t>(),
                                     g_ba.data_ptr<scalar_t>(), i_ba.data_ptr<int64_t>(),
                                     grad_a.data_ptr<scalar_t>(), grad_b.data_ptr<scalar_t>(), stream()),
          "chamfer_backward");
  });
  return {grad_a, grad_b};
}

Tensor gather_forward(const Tensor& feat_in, const Tensor& idx_in) {
  check_float(feat_in, "features", 3);
  check_index(idx_in, "idx", 2);
  TORCH_CHECK(feat_in.size(0) == idx_in.size(0), "batch size mismatch: ", feat_in.size(0), " vs ", idx_in.size(0));
  const c10::cuda::CUDAGuard guard(feat_in.device());
  const Tensor feat = feat_in.contiguous(), idx = idx_in.contiguous();
  const int64_t b = feat.size(0), n = feat.size(1), c = feat.size(2), m = idx.size(1);
  Tensor out = at::empty({b, m, c}, feat.options());
  AT_DISPATCH_FLOATING_TYPES(feat.scalar_type(), "pointbench_gather_cuda", [&] {
    check(gather_fwd_cuda<scalar_t>(feat.data_ptr<scalar_t>(), idx.data_ptr<int64_t>(), b, n, c, m,
                                    out.data_ptr<scalar_t>(), stream()), "gather_forward");
  });
  return out;
}

Tensor gather_backward(const Tensor& grad_in, const Tensor& idx_in, int64_t n) {
  const c10::cuda::CUDAGuard guard(grad_in.device());
  const Tensor grad = grad_in.contiguous(), idx = idx_in.contiguous();
  const int64_t b = grad.size(0), m = grad.size(1), c = grad.size(2);
  Tensor out = at::zeros({b, n, c}, grad.options());
  AT_DISPATCH_FLOATING_TYPES(grad.scalar_type(), "pointbench_gather_backward_cuda", [&] {
    check(gather_bwd_cuda<scalar_t>(grad.data_ptr<scalar_t>(), idx.data_ptr<int64_t>(), b, n, c, m,
                                    out.data_ptr<scalar_t>(), stream()), "gather_backward");
  });
  return out;
}

Tensor interpolate_forward(const Tensor& feat_in, const Tensor& idx_in, const Tensor& weight_in) {
  check_float(feat_in, "features", 3);
  check_index(idx_in, "idx", 3);
  check_float(weight_in, "weight", 3);
  TORCH_CHECK(idx_in.size(2) == 3 && weight_in.sizes() == idx_in.sizes(), "idx and weight must both be (B, M, 3)");
  check_same(feat_in, weight_in);
  const c10::cuda::CUDAGuard guard(feat_in.device());
  const Tensor feat = feat_in.contiguous(), idx = idx_in.contiguous(), weight = weight_in.contiguous();
  const int64_t b = feat.size(0), n = feat.size(1), c = feat.size(2), m = idx.size(1);
  Tensor out = at::empty({b, m, c}, feat.options());
  AT_DISPATCH_FLOATING_TYPES(feat.scalar_type(), "pointbench_interpolate_cuda", [&] {
    check(interpolate_fwd_cuda<scalar_t>(feat.data_ptr<scalar_t>(), idx.data_ptr<int64_t>(),
                                         weight.data_ptr<scalar_t>(), b, n, c, m, out.data_ptr<scalar_t>(),
                                         stream()), "interpolate_forward");
  });
  return out;
}

std::tuple<Tensor, Tensor> interpolate_backward(const Tensor& grad_in, const Tensor& feat_in, const Tensor& idx_in,
                                                const Tensor& weight_in) {
  const c10::cuda::CUDAGuard guard(feat_in.device());
  const Tensor grad = grad_in.contiguous(), feat = feat_in.contiguous();
  const Tensor idx = idx_in.contiguous(), weight = weight_in.contiguous();
  const int64_t b = feat.size(0), n = feat.size(1), c = feat.size(2), m = idx.size(1);
  Tensor grad_feat = at::zeros_like(feat), grad_weight = at::zeros_like(weight);
  AT_DISPATCH_FLOATING_TYPES(feat.scalar_type(), "pointbench_interpolate_backward_cuda", [&] {
    check(interpolate_bwd_cuda<scalar_t>(grad.data_ptr<scalar_t>(), feat.data_ptr<scalar_t>(),
                                         idx.data_ptr<int64_t>(), weight.data_ptr<scalar_t>(), b, n, c, m,
                                         grad_feat.data_ptr<scalar_t>(), grad_weight.data_ptr<scalar_t>(), stream()),
          "interpolate_backward");
  });
  return {grad_feat, grad_weight};
}

}  // namespace
}  // namespace pointbench

TORCH_LIBRARY(pointbench_cuda, lib) {
  lib.def("fps(Tensor xyz, int m, int start, bool skip_origin=False) -> Tensor", &pointbench::fps);
  lib.def("knn(Tensor query, Tensor ref, int k) -> (Tensor, Tensor)", &pointbench::knn);
  lib.def("ball_query(Tensor xyz, Tensor centers, float radius, int k) -> Tensor", &pointbench::ball_query);
  lib.def("chamfer_forward(Tensor a, Tensor b) -> (Tensor, Tensor, Tensor, Tensor)", &pointbench::chamfer_forward);
  lib.def("chamfer_backward(Tensor a, Tensor b, Tensor g_ab, Tensor i_ab, Tensor g_ba, Tensor i_ba) -> (Tensor, Tensor)",
          &pointbench::chamfer_backward);
  lib.def("gather_forward(Tensor features, Tensor idx) -> Tensor", &pointbench::gather_forward);
  lib.def("gather_backward(Tensor grad, Tensor idx, int n) -> Tensor", &pointbench::gather_backward);
  lib.def("interpolate_forward(Tensor features, Tensor idx, Tensor weight) -> Tensor",
          &pointbench::interpolate_forward);
  lib.def("interpolate_backward(Tensor grad, Tensor features, Tensor idx, Tensor weight) -> (Tensor, Tensor)",
          &pointbench::interpolate_backward);
}
