// Argument checks shared by the CPU and CUDA bindings (the Python front door validates shapes first; these are the
// last line of defence for direct torch.ops calls).
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

namespace pointbench {

inline void check_points(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.dim() == 3 && t.size(2) == 3, name, " must be (B, N, 3), got ", t.sizes());
  TORCH_CHECK(t.size(1) < (int64_t(1) << 31), name, " has more than 2^31 points per cloud");
  TORCH_CHECK(t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble, name,
              " must be float32 or float64, got ", t.scalar_type());
}

inline void check_float(const at::Tensor& t, const char* name, int64_t dim) {
  TORCH_CHECK(t.dim() == dim, name, " must have ", dim, " dimensions, got ", t.sizes());
  TORCH_CHECK(t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble, name,
              " must be float32 or float64, got ", t.scalar_type());
}

inline void check_index(const at::Tensor& t, const char* name, int64_t dim) {
  TORCH_CHECK(t.dim() == dim, name, " must have ", dim, " dimensions, got ", t.sizes());
  TORCH_CHECK(t.scalar_type() == at::kLong, name, " must be int64, got ", t.scalar_type());
}

inline void check_same(const at::Tensor& a, const at::Tensor& b) {
  TORCH_CHECK(a.scalar_type() == b.scalar_type(), "dtype mismatch: ", a.scalar_type(), " vs ", b.scalar_type());
  TORCH_CHECK(a.device() == b.device(), "device mismatch: ", a.device(), " vs ", b.device());
  TORCH_CHECK(a.size(0) == b.size(0), "batch size mismatch: ", a.size(0), " vs ", b.size(0));
}

}  // namespace pointbench
