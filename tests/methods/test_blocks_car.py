"""CAR transformer: the block-causal mask (by hand and functionally: a token never sees a later scale), the
prefix rules, KV-cached decoding equal to uncached decoding and to teacher forcing, the CFG ramp by hand, the
AdaLN init, and input validation."""

from __future__ import annotations

import pytest
import torch

from methods.blocks.car import CARTransformer, block_causal_mask, cfg_logits

SCALES = [1, 2, 4]  # T = 7, inputs for T - 1 = 6 slots


def _car(prefix_dim: int = 0, qk_norm: bool = True) -> CARTransformer:
    """A small CAR with every parameter redrawn (the default init zeroes the AdaLN gates, which would hide leaks)."""
    car = CARTransformer(16, 32, 2, 4, SCALES, cond_dim=8, in_dim=12, prefix_dim=prefix_dim, qk_norm=qk_norm)
    with torch.no_grad():
        for p in car.parameters():
            p.normal_(0, 0.2)
    return car.eval()


def test_mask_by_hand_with_a_prefix() -> None:
    expected = torch.tensor(
        [
            [1, 0, 0, 0],  # prefix: prefix only
            [1, 1, 0, 0],  # scale 0 (1 token)
            [1, 1, 1, 1],  # scale 1 (2 tokens)
            [1, 1, 1, 1],
        ],
        dtype=torch.bool,
    )
    assert torch.equal(block_causal_mask([1, 2], prefix=1), expected)
    assert torch.equal(block_causal_mask([2]), torch.ones(2, 2, dtype=torch.bool))


def test_mask_never_lets_a_token_see_a_later_scale() -> None:
    scales, prefix = [1, 3, 5], 2
    mask = block_causal_mask(scales, prefix)
    levels = [-1] * prefix + [s for s, n in enumerate(scales) for _ in range(n)]
    assert mask.shape == (prefix + 9, prefix + 9)
    for q, lq in enumerate(levels):
        for k, lk in enumerate(levels):
            assert bool(mask[q, k]) == (lk <= lq), (q, k)


@pytest.mark.parametrize("qk_norm", [True, False])
def test_perturbing_a_scale_leaves_earlier_scales_unchanged(qk_norm: bool) -> None:
    car = _car(qk_norm=qk_norm)
    cond, inputs = torch.randn(2, 8), torch.randn(2, 6, 12)
    bounds = [0, 1, 3, 7]  # slot ranges of the scales
    with torch.no_grad():
        base = car(inputs, cond)
        assert base.shape == (2, 7, 16)
        for j in (1, 2):
            moved = inputs.clone()
            moved[:, bounds[j] - 1 : bounds[j + 1] - 1] += 1.0  # scale j's inputs (inputs start at slot 1)
            out = car(moved, cond)
            torch.testing.assert_close(out[:, : bounds[j]], base[:, : bounds[j]], atol=1e-6, rtol=0)
            assert not torch.allclose(out[:, bounds[j] :], base[:, bounds[j] :], atol=1e-3)


def test_the_functional_check_detects_a_full_mask() -> None:
    """Without the block-causal mask, perturbing scale 2 does change scale 0's outputs: the check above can fail."""
    car = _car()
    cond, inputs = torch.randn(2, 8), torch.randn(2, 6, 12)
    moved = inputs.clone()
    moved[:, 2:] += 1.0

    def hidden(x: torch.Tensor) -> torch.Tensor:
        tokens = torch.cat([car.embed_scale(0, cond, None), car.embed_scale(1, cond, x[:, :2]),
                            car.embed_scale(2, cond, x[:, 2:])], dim=1)  # fmt: skip
        return car.run_blocks(tokens, cond, torch.ones(7, 7, dtype=torch.bool))

    with torch.no_grad():
        assert not torch.allclose(hidden(moved)[:, 0], hidden(inputs)[:, 0], atol=1e-3)


def test_prefix_conditions_every_scale_and_is_not_in_the_logits() -> None:
    car = _car(prefix_dim=6)
    cond, inputs, prefix = torch.randn(2, 8), torch.randn(2, 6, 12), torch.randn(2, 5, 6)
    with torch.no_grad():
        out = car(inputs, cond, prefix)
        assert out.shape == (2, 7, 16)
        other = car(inputs, cond, prefix + 1.0)
        assert not torch.allclose(out[:, 0], other[:, 0], atol=1e-3)
        moved = inputs.clone()
        moved[:, 2:] += 1.0  # the prefix does not see the scales, so scales 0-1 still ignore scale 2
        torch.testing.assert_close(car(moved, cond, prefix)[:, :3], out[:, :3], atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="prefix_dim=0"):
        _car()(inputs, cond, prefix)


@pytest.mark.parametrize("with_prefix", [False, True])
def test_cached_steps_equal_uncached_steps_and_teacher_forcing(with_prefix: bool) -> None:
    car = _car(prefix_dim=6)
    cond, inputs = torch.randn(3, 8), torch.randn(3, 6, 12)
    prefix = torch.randn(3, 5, 6) if with_prefix else None
    per_scale = [None, inputs[:, :2], inputs[:, 2:]]
    with torch.no_grad():
        full = car(inputs, cond, prefix)
        for use_cache in (True, False):
            state = car.start(cond, prefix)
            if use_cache and with_prefix:
                assert state.caches[0].k.shape == (3, 4, 5, 8)  # prefix K/V computed once, (B, H, P, D)
            logits = [car.step(state, s, x, use_cache=use_cache) for s, x in enumerate(per_scale)]
            assert [tuple(t.shape) for t in logits] == [(3, 1, 16), (3, 2, 16), (3, 4, 16)]
            torch.testing.assert_close(torch.cat(logits, dim=1), full, atol=1e-5, rtol=1e-5)
            if use_cache:
                assert state.caches[-1].k.shape[2] == (5 if with_prefix else 0) + 7


def test_step_order_and_cache_mixing_are_checked() -> None:
    car = _car()
    cond = torch.randn(2, 8)
    state = car.start(cond)
    with pytest.raises(ValueError, match="expected scale 0, got 1"):
        car.step(state, 1, torch.randn(2, 2, 12))
    with pytest.raises(ValueError, match="scale 0 needs no inputs"):
        car.step(state, 0, torch.randn(2, 1, 12))
    car.step(state, 0, None, use_cache=False)
    with pytest.raises(ValueError, match="KV cache holds 0 scales"):
        car.step(state, 1, torch.randn(2, 2, 12))
    with pytest.raises(ValueError, match=r"inputs of scale 1 must be \(B, 2, 12\)"):
        car.step(state, 1, torch.randn(2, 3, 12), use_cache=False)


def test_cfg_ramp_by_hand() -> None:
    cond, uncond = torch.tensor([1.0, 2.0]), torch.tensor([0.0, 1.0])
    torch.testing.assert_close(cfg_logits(cond, uncond, 0, 3, 2.0), cond)  # t = 0 at the first scale
    torch.testing.assert_close(cfg_logits(cond, uncond, 1, 3, 2.0), torch.tensor([2.0, 3.0]))  # t = 1
    torch.testing.assert_close(cfg_logits(cond, uncond, 2, 3, 2.0), torch.tensor([3.0, 4.0]))  # t = 2: 3c - 2u
    torch.testing.assert_close(cfg_logits(cond, uncond, 0, 1, 1.5), 2.5 * cond - 1.5 * uncond)  # one scale: t = cfg


def test_default_init_starts_every_block_near_identity() -> None:
    car = CARTransformer(16, 32, 2, 4, SCALES, cond_dim=8, in_dim=12).eval()
    for block in car.blocks:
        gates = block.ada_lin[-1].weight.detach()[: 2 * 32]
        assert float(gates.abs().max()) < 1e-5 and float(block.ada_lin[-1].bias.detach().abs().max()) == 0.0
    assert abs(float(car.pos_embed.detach().std()) - (1 / 96) ** 0.5) < 0.03
    cond, inputs = torch.randn(2, 8), torch.randn(2, 6, 12)
    with torch.no_grad():
        tokens = torch.cat([car.embed_scale(0, cond, None), car.embed_scale(1, cond, inputs[:, :2]),
                            car.embed_scale(2, cond, inputs[:, 2:])], dim=1)  # fmt: skip
        torch.testing.assert_close(car(inputs, cond), car.logits(tokens, cond), atol=1e-4, rtol=1e-4)


def test_invalid_settings() -> None:
    with pytest.raises(ValueError, match="scales must be"):
        CARTransformer(16, 32, 2, 4, [], cond_dim=8, in_dim=12)
    with pytest.raises(ValueError, match="vocab >= 2"):
        CARTransformer(1, 32, 2, 4, SCALES, cond_dim=8, in_dim=12)
    with pytest.raises(ValueError, match="inputs must be"):
        _car()(torch.randn(2, 7, 12), torch.randn(2, 8))
