"""Patch grouping (Point-MAE ``Group``): FPS centres, kNN neighbourhoods, patches centred on their centre.

Conventions: ``xyz`` is (B, N, 3); FPS starts at index 0 (pointnet2_ops); neighbourhoods are (B, G, K, 3) in the
centre's frame (translated, not rescaled), nearest neighbour first (the centre itself is its own first
neighbour); centres are (B, G, 3) in the input's coordinates. All point ops go through :mod:`extensions.ops`.
"""

from __future__ import annotations

from torch import Tensor, nn

from bench.errors import BenchError
from extensions import ops


class PatchGrouper(nn.Module):
    """Split each cloud into ``num_group`` patches of ``group_size`` points. Has no parameters or buffers."""

    def __init__(self, num_group: int, group_size: int) -> None:
        super().__init__()
        if num_group < 1 or group_size < 1:
            raise BenchError(
                f"patch grouping needs num_group >= 1 and group_size >= 1, got num_group={num_group}, "
                f"group_size={group_size}; fix the config keys `num_group` / `group_size`."
            )
        self.num_group = num_group
        self.group_size = group_size

    def check_points(self, num_points: int, num_group: int | None = None) -> None:
        """Raise a BenchError when clouds of ``num_points`` points are too small for this grouping."""
        groups = num_group or self.num_group
        if num_points >= groups and num_points >= self.group_size:
            return
        raise BenchError(
            f"clouds of {num_points} points are too small for the patch grouping: it picks num_group="
            f"{groups} centres and group_size={self.group_size} neighbours per centre, so every cloud "
            f"needs at least {max(groups, self.group_size)} points. Raise `npoints` (the points loaded "
            "per cloud) or lower `num_group` / `group_size` in the config."
        )

    def forward(self, xyz: Tensor, num_group: int | None = None) -> tuple[Tensor, Tensor]:
        """(B, N, 3) -> (neighborhood (B, G, K, 3) centred on its centre, centers (B, G, 3)); ``num_group``
        overrides G for this call (default: the grouper's own)."""
        if xyz.dim() != 3 or xyz.shape[-1] != 3:
            raise BenchError(f"patch grouping expects point clouds of shape (B, N, 3), got {tuple(xyz.shape)}")
        self.check_points(xyz.shape[1], num_group)
        center_idx = ops.furthest_point_sample(xyz, num_group or self.num_group, start=0)
        centers = ops.gather_points(xyz, center_idx)
        knn_idx, _ = ops.knn(centers, xyz, self.group_size)
        neighborhood = ops.group_points(xyz, knn_idx) - centers.unsqueeze(2)
        return neighborhood, centers

    def extra_repr(self) -> str:
        return f"num_group={self.num_group}, group_size={self.group_size}"
