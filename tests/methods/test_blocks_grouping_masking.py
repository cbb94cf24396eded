"""Patch grouping (FPS + kNN + centring) and the two patch masks."""

from __future__ import annotations

import pytest
import torch

from bench.errors import BenchError
from methods.blocks.grouping import PatchGrouper
from methods.blocks.masking import block_mask, num_masked, random_mask

EXACT = "donot_use_mm_for_euclid_dist"


def test_grouping_shapes_and_centring(cloud: torch.Tensor) -> None:
    neighborhood, centers = PatchGrouper(num_group=16, group_size=8)(cloud)
    assert neighborhood.shape == (2, 16, 8, 3) and centers.shape == (2, 16, 3)
    assert centers[:, 0].equal(cloud[:, 0])  # FPS starts at index 0
    # every centre is an input point, and is its own nearest neighbour (offset exactly 0)
    assert torch.equal(neighborhood[:, :, 0], torch.zeros(2, 16, 3))
    absolute = neighborhood + centers.unsqueeze(2)
    dist = torch.cdist(absolute.reshape(2, -1, 3), cloud, compute_mode=EXACT).min(dim=-1).values
    assert dist.max() < 1e-6
    # the K neighbours are the K nearest input points of the centre
    d_all = torch.cdist(centers, cloud, compute_mode=EXACT)  # (B, G, N)
    kth = d_all.topk(8, dim=-1, largest=False).values[..., -1]
    assert (neighborhood.norm(dim=-1).max(dim=-1).values <= kth + 1e-6).all()


@pytest.mark.parametrize(("num_group", "group_size"), [(200, 8), (16, 300)])
def test_grouping_too_few_points(cloud: torch.Tensor, num_group: int, group_size: int) -> None:
    with pytest.raises(BenchError) as err:
        PatchGrouper(num_group, group_size)(cloud)
    message = str(err.value)
    for needle in (
        f"{cloud.shape[1]} points",
        str(num_group),
        str(group_size),
        "`npoints`",
        "`num_group`",
        "`group_size`",
    ):
        assert needle in message


@pytest.mark.parametrize(("ratio", "groups"), [(0.6, 64), (0.6, 128), (0.25, 10), (0.0, 8), (0.9, 7)])
def test_random_mask_exact_count(ratio: float, groups: int) -> None:
    mask = random_mask(5, groups, ratio)
    assert mask.shape == (5, groups) and mask.dtype == torch.bool
    assert mask.sum(dim=1).tolist() == [round(ratio * groups)] * 5


def test_random_mask_is_random_per_sample_and_seeded() -> None:
    torch.manual_seed(1)
    first = random_mask(8, 64, 0.6)
    torch.manual_seed(1)
    again = random_mask(8, 64, 0.6)
    assert first.equal(again)
    assert len({tuple(row.tolist()) for row in first}) == 8


def test_block_mask_masks_nearest_patches() -> None:
    centers = torch.randn(4, 64, 3)
    mask = block_mask(centers, 0.6)
    count = num_masked(0.6, 64)
    assert mask.sum(dim=1).tolist() == [count] * 4
    for sample in range(4):
        pts, m = centers[sample], mask[sample]
        # some masked centre is the anchor: every masked centre is nearer to it than every visible one
        d = torch.cdist(pts[m], pts, compute_mode=EXACT)
        is_anchor = [bool(d[i][m].max() <= d[i][~m].min()) for i in range(count)]
        assert any(is_anchor)


def test_mask_ratio_out_of_range() -> None:
    with pytest.raises(ValueError, match="mask ratio"):
        num_masked(1.5, 64)
