// torch.ops.pointbench_cpu.*: tensor-level wrappers around the raw CPU kernels (see kernels.h for conventions).
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <ATen/ops/zeros_like.h>
#include <torch/library.h>

#include <tuple>

#include "../checks.h"
#include "kernels.h"

namespace pointbench {
namespace {

using at::Tensor;

int threads() { return at::get_num_threads(); }

void check_indices(const Tensor& idx, int64_t n) {
  const int64_t bad = first_bad_index(idx.data_ptr<int64_t>(), idx.numel(), n, threads());
  TORCH_CHECK(bad < 0, "index ", bad, " is out of range for ", n, " points");
}

Tensor fps(const Tensor& xyz_in, int64_t m, int64_t start, bool skip_origin) {
  check_points(xyz_in, "xyz");
  const Tensor xyz = xyz_in.contiguous();
  const int64_t b = xyz.size(0), n = xyz.size(1);
  TORCH_CHECK(m >= 0 && m <= n, "cannot pick ", m, " points from clouds of ", n);
  TORCH_CHECK(m == 0 || (start >= 0 && start < n), "start index ", start, " out of range for ", n, " points");
  Tensor out = at::empty({b, m}, xyz.options().dtype(at::kLong));
  if (b == 0 || m == 0) return out;
  AT_DISPATCH_FLOATING_TYPES(xyz.scalar_type(), "pointbench_fps", [&] {
    fps_cpu<scalar_t>(xyz.data_ptr<scalar_t>(), b, n, m, start, skip_origin, out.data_ptr<int64_t>(), threads());
  });
  return out;
}

std::tuple<Tensor, Tensor> knn(const Tensor& query_in, const Tensor& ref_in, int64_t k) {
  check_points(query_in, "query");
  check_points(ref_in, "ref");
  check_same(query_in, ref_in);
  const Tensor query = query_in.contiguous(), ref = ref_in.contiguous();
  const int64_t b = query.size(0), m = query.size(1), n = ref.size(1);
  TORCH_CHECK(k >= 0 && k <= n, "k=", k, " neighbours asked for but the reference clouds have ", n, " points");
  Tensor idx = at::empty({b, m, k}, query.options().dtype(at::kLong));
  Tensor dist = at::empty({b, m, k}, query.options());
  if (idx.numel() == 0) return {idx, dist};
  AT_DISPATCH_FLOATING_TYPES(query.scalar_type(), "pointbench_knn", [&] {
    knn_cpu<scalar_t>(query.data_ptr<scalar_t>(), ref.data_ptr<scalar_t>(), b, m, n, k, idx.data_ptr<int64_t>(),
                      dist.data_ptr<scalar_t>(), threads());
  });
  return {idx, dist};
}

Tensor ball_query(const Tensor& xyz_in, const Tensor& centers_in, double radius, int64_t k) {
  check_points(xyz_in, "xyz");
  check_points(centers_in, "centers");
  check_same(xyz_in, centers_in);
  const Tensor xyz = xyz_in.contiguous(), centers = centers_in.contiguous();
  const int64_t b = xyz.size(0), n = xyz.size(1), m = centers.size(1);
  Tensor idx = at::zeros({b, m, k}, xyz.options().dtype(at::kLong));
  if (idx.numel() == 0 || n == 0) return idx;
  AT_DISPATCH_FLOATING_TYPES(xyz.scalar_type(), "pointbench_ball_query", [&] {
    ball_query_cpu<scalar_t>(xyz.data_ptr<scalar_t>(), centers.data_ptr<scalar_t>(), b, n, m, k, radius,
                             idx.data_ptr<int64_t>(), threads());
  });
  return idx;
}

std::tuple<Tensor, Tensor, Tensor, Tensor> chamfer_forward(const Tensor& a_in, const Tensor& b_in) {
  check_points(a_in, "a");
  check_points(b_in, "b");
  check_same(a_in, b_in);
  const Tensor a = a_in.contiguous(), bb = b_in.contiguous();
  const int64_t b = a.size(0), n = a.size(1), m = bb.size(1);
  TORCH_CHECK(b == 0 || (n > 0 && m > 0), "chamfer_distance needs non-empty clouds, got ", n, " and ", m);
  Tensor d_ab = at::empty({b, n}, a.options()), d_ba = at::empty({b, m}, a.options());
  Tensor i_ab = at::empty({b, n}, a.options().dtype(at::kLong)), i_ba = at::empty({b, m}, i_ab.options());
  if (b == 0) return {d_ab, d_ba, i_ab, i_ba};
  AT_DISPATCH_FLOATING_TYPES(a.scalar_type(), "pointbench_chamfer", [&] {
    chamfer_fwd_cpu<scalar_t>(a.data_ptr<scalar_t>(), bb.data_ptr<scalar_t>(), b, n, m, d_ab.data_ptr<scalar_t>(),
                              i_ab.data_ptr<int64_t>(), d_ba.data_ptr<scalar_t>(), i_ba.data_ptr<int64_t>(),
                              threads());
  });
  return {d_ab, d_ba, i_ab, i_ba};
}

std::tuple<Tensor, Tensor> chamfer_backward(const Tensor& a_in, const Tensor& b_in, const Tensor& g_ab_in,
                                            const Tensor& i_ab_in, const Tensor& g_ba_in, const Tensor& i_ba_in) {
  const Tensor a = a_in.contiguous(), bb = b_in.contiguous();
  const Tensor g_ab = g_ab_in.contiguous(), g_ba = g_ba_in.contiguous();
  const Tensor i_ab = i_ab_in.contiguous(), i_ba = i_ba_in.contiguous();
  const int64_t b = a.size(0), n = a.size(1), m = bb.size(1);
  Tensor grad_a = at::zeros_like(a), grad_b = at::zeros_like(bb);
  if (b == 0) return {grad_a, grad_b};
  AT_DISPATCH_FLOATING_TYPES(a.scalar_type(), "pointbench_chamfer_backward", [&] {
    chamfer_bwd_cpu<scalar_t>(a.data_ptr<scalar_t>(), bb.data_ptr<scalar_t>(), b, n, m, g_ab.data_ptr<scalar_t>(),
                              i_ab.data_ptr<int64_t>(), g_ba.data_ptr<scalar_t>(), i_ba.data_ptr<int64_t>(),
                              grad_a.data_ptr<scalar_t>(), grad_b.data_ptr<scalar_t>(), threads());
  });
  return {grad_a, grad_b};
}

Tensor gather_forward(const Tensor& feat_in, const Tensor& idx_in) {
  check_float(feat_in, "features", 3);
  check_index(idx_in, "idx", 2);
  TORCH_CHECK(feat_in.size(0) == idx_in.size(0), "batch size mismatch: ", feat_in.size(0), " vs ", idx_in.size(0));
  const Tensor feat = feat_in.contiguous(), idx = idx_in.contiguous();
  const int64_t b = feat.size(0), n = feat.size(1), c = feat.size(2), m = idx.size(1);
  check_indices(idx, n);
  Tensor out = at::empty({b, m, c}, feat.options());
  if (out.numel() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES(feat.scalar_type(), "pointbench_gather", [&] {
    gather_fwd_cpu<scalar_t>(feat.data_ptr<scalar_t>(), idx.data_ptr<int64_t>(), b, n, c, m,
                             out.data_ptr<scalar_t>(), threads());
  });
  return out;
}

Tensor gather_backward(const Tensor& grad_in, const Tensor& idx_in, int64_t n) {
  const Tensor grad = grad_in.contiguous(), idx = idx_in.contiguous();
  const int64_t b = grad.size(0), m = grad.size(1), c = grad.size(2);
  Tensor out = at::zeros({b, n, c}, grad.options());
  if (grad.numel() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES(grad.scalar_type(), "pointbench_gather_backward", [&] {
    gather_bwd_cpu<scalar_t>(grad.data_ptr<scalar_t>(), idx.data_ptr<int64_t>(), b, n, c, m,
                             out.data_ptr<scalar_t>(), threads());
  });
  return out;
}

Tensor interpolate_forward(const Tensor& feat_in, const Tensor& idx_in, const Tensor& weight_in) {
  check_float(feat_in, "features", 3);
  check_index(idx_in, "idx", 3);
  check_float(weight_in, "weight", 3);
  TORCH_CHECK(idx_in.size(2) == 3 && weight_in.sizes() == idx_in.sizes(), "idx and weight must both be (B, M, 3)");
  check_same(feat_in, weight_in);
  const Tensor feat = feat_in.contiguous(), idx = idx_in.contiguous(), weight = weight_in.contiguous();
  const int64_t b = feat.size(0), n = feat.size(1), c = feat.size(2), m = idx.size(1);
  check_indices(idx, n);
  Tensor out = at::empty({b, m, c}, feat.options());
  if (out.numel() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES(feat.scalar_type(), "pointbench_interpolate", [&] {
    interpolate_fwd_cpu<scalar_t>(feat.data_ptr<scalar_t>(), idx.data_ptr<int64_t>(), weight.data_ptr<scalar_t>(), b,
                                  n, c, m, out.data_ptr<scalar_t>(), threads());
  });
  return out;
}

std::tuple<Tensor, Tensor> interpolate_backward(const Tensor& grad_in, const Tensor& feat_in, const Tensor& idx_in,
                                                const Tensor& weight_in) {
  const Tensor grad = grad_in.contiguous(), feat = feat_in.contiguous();
  const Tensor idx = idx_in.contiguous(), weight = weight_in.contiguous();
  const int64_t b = feat.size(0), n = feat.size(1), c = feat.size(2), m = idx.size(1);
  Tensor grad_feat = at::zeros_like(feat), grad_weight = at::zeros_like(weight);
  if (grad.numel() == 0) return {grad_feat, grad_weight};
  AT_DISPATCH_FLOATING_TYPES(feat.scalar_type(), "pointbench_interpolate_backward", [&] {
    interpolate_bwd_cpu<scalar_t>(grad.data_ptr<scalar_t>(), feat.data_ptr<scalar_t>(), idx.data_ptr<int64_t>(),
                                  weight.data_ptr<scalar_t>(), b, n, c, m, grad_feat.data_ptr<scalar_t>(),
                                  grad_weight.data_ptr<scalar_t>(), threads());
  });
  return {grad_feat, grad_weight};
}

}  // namespace
}  // namespace pointbench

TORCH_LIBRARY(pointbench_cpu, lib) {
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
