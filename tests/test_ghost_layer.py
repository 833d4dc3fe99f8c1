"""GhostSR layer: slicing shift, deployed and folded forms against the training form, in float64."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from leansr.layers.fusion_check import randomize, relative_error
from leansr.layers.ghost import (
    NUM_DIRECTIONS,
    DeployedGhostConv,
    FoldedShiftConv,
    GhostConv,
    GhostFedConv,
    SharedSlopePReLU,
    intrinsic_channels,
    offset,
    set_temperature,
    shift,
)
from leansr.layers.reparam import reparameterize_model

DIRECTIONS = range(NUM_DIRECTIONS)


def _rand(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_shift_matches_official_one_hot_depthwise_conv(direction: int) -> None:
    x = _rand(2, 3, 7, 6)
    kernel = F.one_hot(torch.tensor(direction), NUM_DIRECTIONS).double().view(1, 1, 3, 3).repeat(3, 1, 1, 1)
    assert torch.equal(shift(x, direction), F.conv2d(x, kernel, padding=1, groups=3))
    dy, dx = offset(direction)
    assert shift(x, direction)[0, 0, 3, 3] == x[0, 0, 3 + dy, 3 + dx]


def test_intrinsic_channels_and_ratio_bounds() -> None:
    assert intrinsic_channels(48, 0.5) == 24
    assert intrinsic_channels(46, 0.5) == 23
    assert intrinsic_channels(10, 0.25) == 3
    for bad in (0.0, 1.0, -0.5, 1.5):
        with pytest.raises(ValueError):
            intrinsic_channels(8, bad)


@pytest.mark.parametrize("ratio", [0.5, 0.3, 0.75])
@pytest.mark.parametrize("per_channel", [False, True])
def test_deployed_slicing_equals_training_form(ratio: float, per_channel: bool) -> None:
    ghost = randomize(GhostConv(5, 8, ratio=ratio, per_channel=per_channel))
    fused = reparameterize_model(ghost)
    assert isinstance(fused, DeployedGhostConv)
    assert not any(isinstance(m, nn.Conv2d) and m.groups > 1 for m in fused.modules())  # no depthwise shift
    x = _rand(2, 5, 9, 7)
    with torch.no_grad():
        assert relative_error(fused(x), ghost(x)) < 1e-12
    if per_channel:
        assert len(set(ghost.directions())) > 1  # random logits: the test really mixes directions


def test_deployed_directions_survive_state_dict() -> None:
    ghost = GhostConv(4, 6, direction=2).double().eval()
    fused = ghost.fuse()
    other = GhostConv(4, 6, direction=7).double().eval().fuse()
    other.load_state_dict(fused.state_dict())
    x = _rand(1, 4, 6, 6)
    assert torch.equal(other(x), fused(x))


def _chain(direction_1: int, direction_2: int, act: nn.Module) -> nn.Sequential:
    """ghost -> act -> ghost (fed, folded input) -> act -> fed 3x3 conv, all folds on."""
    first = GhostConv(4, 8, direction=direction_1)
    second = GhostConv(8, 6, ratio=0.5, direction=direction_2)
    third = GhostFedConv(6, 5, intrinsic=second.intrinsic, direction=direction_2)
    first.fold_output = True
    second.fold_input = (first.intrinsic, direction_1)
    second.fold_output = True
    return nn.Sequential(first, act, second, act, third)


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_folded_equals_unfolded_borders_included(direction: int) -> None:
    chain = _chain(direction, (direction * 5 + 3) % NUM_DIRECTIONS, nn.LeakyReLU(0.05))
    randomize(chain, seed=direction)
    for m in chain.modules():  # randomize scrambles the logits; restore the directions the folds assume
        if isinstance(m, GhostConv):
            m.set_direction(m.fold_input[1] if m.fold_input else direction)
    chain[2].set_direction((direction * 5 + 3) % NUM_DIRECTIONS)
    chain.double()
    fused = reparameterize_model(chain)
    assert isinstance(fused[2], FoldedShiftConv) and isinstance(fused[4], FoldedShiftConv)
    assert fused[0].out_channels == chain[0].intrinsic  # the producer emits intrinsic channels only
    for size in ((9, 7), (3, 3), (1, 5)):
        x = _rand(2, 4, *size, seed=1)
        with torch.no_grad():
            expected, actual = chain(x), fused(x)
        assert actual.shape == expected.shape
        assert relative_error(actual, expected) < 1e-12, size


def test_fold_with_more_ghosts_than_intrinsics() -> None:
    producer = GhostConv(3, 10, ratio=0.3, direction=6)
    producer.fold_output = True
    consumer = GhostFedConv(10, 4, intrinsic=producer.intrinsic, direction=6)
    chain = randomize(nn.Sequential(producer, nn.ReLU(), consumer))
    producer.set_direction(6)
    chain.double()
    x = _rand(1, 3, 8, 8)
    with torch.no_grad():
        assert relative_error(reparameterize_model(chain)(x), chain(x)) < 1e-12


@pytest.mark.parametrize("direction", [1, 3, 5, 7])
def test_shared_slope_prelu_lets_the_shift_fold_exactly(direction: int) -> None:
    """A per-channel PReLU whose ghosts use their sources' slopes: still the PReLU it replaces unfolded, and
    the shift folds through it into the next conv, borders included (float64)."""
    producer = GhostConv(3, 8, ratio=0.5, direction=direction)
    act = SharedSlopePReLU(producer.intrinsic, producer.ghosts)
    chain = randomize(nn.Sequential(producer, act, nn.Conv2d(8, 5, 3, padding=1)), seed=direction)
    producer.set_direction(direction)
    with torch.no_grad():
        act.weight.copy_(torch.linspace(-0.5, 0.8, producer.intrinsic))
    chain.double()
    x = _rand(2, 3, 7, 6, seed=2)
    unfolded = reparameterize_model(chain)
    assert isinstance(unfolded[1], nn.PReLU) and unfolded[1].num_parameters == 8
    plain = nn.PReLU(8).double()
    with torch.no_grad():
        plain.weight.copy_(act.weight[[0, 1, 2, 3, 0, 1, 2, 3]])
        assert relative_error(unfolded(x), chain[2](plain(chain[0](x)))) < 1e-12
    producer.fold_output, act.folded = True, True
    chain[2] = randomize(GhostFedConv(8, 5, intrinsic=producer.intrinsic, direction=direction), seed=9).double()
    folded = reparameterize_model(chain)
    assert isinstance(folded[2], FoldedShiftConv) and folded[1].num_parameters == producer.intrinsic
    for size in ((7, 6), (1, 4)):
        x = _rand(2, 3, *size, seed=3)
        with torch.no_grad():
            assert relative_error(folded(x), chain(x)) < 1e-12, size


def test_hard_selection_is_one_hot_with_straight_through_gradient() -> None:
    torch.manual_seed(0)
    ghost = GhostConv(3, 4).train()
    out = ghost(torch.rand(1, 3, 6, 6))
    ghosts = out[:, ghost.intrinsic :]
    # Forward value: each ghost is an exact shift of its source (a one-hot selection).
    y = ghost.primary(torch.rand(1, 3, 6, 6))
    assert ghosts.shape == y.shape
    assert torch.isfinite(ghost._selection()).all()
    assert sorted(ghost._selection().detach().flatten().tolist())[-2:] == [0.0, 1.0]
    out.square().sum().backward()
    assert ghost.shift_logits.grad is not None and ghost.shift_logits.grad.abs().sum() > 0


def test_soft_selection_temperature() -> None:
    torch.manual_seed(0)
    ghost = GhostConv(3, 4, selection="soft").train()
    set_temperature(ghost, 0.5)
    assert ghost.tau == 0.5
    weights = ghost._selection()
    assert torch.allclose(weights.sum(1), torch.ones(1))
    assert (weights > 0).all()  # soft: every direction contributes
    ghost(torch.rand(1, 3, 5, 5)).sum().backward()
    assert ghost.shift_logits.grad.abs().sum() > 0


def test_frozen_direction_training_uses_slicing_and_matches_eval() -> None:
    ghost = randomize(GhostConv(3, 6, direction=1, selection="fixed"))
    ghost.set_direction(1)
    assert not ghost.shift_logits.requires_grad
    x = _rand(1, 3, 5, 5)
    with torch.no_grad():
        trained = ghost.train()(x)
        evaluated = ghost.eval()(x)
    assert relative_error(trained, evaluated) < 1e-12


def test_padding_shift_for_exporters_equals_the_slicing_shift():
    from leansr.layers.ghost import shift, shifted_by_padding

    x = torch.rand(2, 3, 5, 7, dtype=torch.float64)
    for direction in range(9):
        assert torch.equal(shifted_by_padding(x, direction), shift(x, direction))


def test_below_half_each_copy_has_its_own_direction() -> None:
    ghost = randomize(GhostConv(4, 12, ratio=0.34, selection="fixed")).double()  # 5 intrinsic, 7 ghosts
    assert (ghost.intrinsic, ghost.ghosts, ghost.shift_logits.shape[0]) == (5, 7, 2)
    ghost.set_direction([3, 5])
    x = _rand(1, 4, 7, 8)
    with torch.no_grad():
        y = ghost.primary(x)
        sliced = ghost.train()(x)  # fixed selection trains on the slicing path
        official = ghost.eval()(x)  # the one-hot depthwise conv
        deployed = reparameterize_model(ghost)(x)
    assert relative_error(sliced, official) < 1e-12 and relative_error(deployed, official) < 1e-12
    assert torch.equal(official[:, 5:10], shift(y, 3)) and torch.equal(official[:, 10:], shift(y[:, :2], 5))


def test_copies_with_different_shifts_refuse_to_fold() -> None:
    producer = GhostConv(3, 10, ratio=0.3, direction=[6, 6, 2])
    producer.fold_output = True
    with pytest.raises(ValueError, match="fold"):
        producer.fuse()
