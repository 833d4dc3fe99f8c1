"""GhostSR conversion of zoo models: shapes, runs, starts near the original, round-trips through our format."""

from __future__ import annotations

import pytest
import torch
from conftest import shared_path

from leansr import LeansrError, create_model, load_model, reparameterize_model, save_checkpoint
import leansr.ghost.convert as ghost_convert
from leansr.ghost.convert import calibration_error, calibration_patches, convert, hardest_patches, kmeans
from leansr.layers.ghost import (DeployedGhostConv, FoldedShiftConv, GhostConv, SharedSlopePReLU, ghost_sources, offset,
                                 per_ghost)
from leansr.models.ghostsr import find_pairs

# (arch, constructor args, deploy before converting): every family with convertible convs.
CONVERTIBLE = [
    ("rlfn_ntire", {}, False),
    ("rlfn_s", {"num_blocks": 2}, False),
    ("msrresnet", {"num_blocks": 2}, False),
    ("edsr_baseline", {"num_blocks": 2}, False),
    ("imdn_aim2019", {"num_blocks": 2}, False),
    ("rfdn_e", {"num_blocks": 2}, False),
    ("fmen_s", {"down_blocks": 2}, True),
    ("ecbsr_m4c8", {"in_channels": 3}, True),
]


def _model(arch: str, args: dict, deploy: bool) -> torch.nn.Module:
    torch.manual_seed(0)
    model = create_model(arch, **args)
    if deploy:
        model.train()(torch.rand(2, model.in_channels, 12, 12))  # non-trivial BN statistics
        fused = reparameterize_model(model.eval())
        fused.arch, fused.hparams = model.arch, model.hparams
        model = fused
    return model.eval()


def _calibration(channels: int = 3, n: int = 3, size: int = 14) -> torch.Tensor:
    return torch.rand(n, channels, size, size, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("arch,args,deploy", CONVERTIBLE, ids=[c[0] for c in CONVERTIBLE])
def test_convert_keeps_shapes_runs_and_round_trips(tmp_path, arch, args, deploy) -> None:
    model = _model(arch, args, deploy)
    ghost = convert(model, _calibration(model.in_channels), ratio=0.5)
    pairs = [p for p in find_pairs(model, trunk=True) if p["consumer"] is not None]
    assert sum(isinstance(m, GhostConv) for m in ghost.modules()) == len(pairs) > 0
    x = _calibration(model.in_channels, n=1, size=9)
    with torch.no_grad():
        assert ghost(x).shape == model(x).shape
        assert torch.isfinite(ghost(x)).all()
    path = save_checkpoint(ghost, tmp_path / "ghost.safetensors")
    loaded = load_model(path)
    assert loaded.arch == "ghostsr" and loaded.hparams == ghost.hparams
    with torch.no_grad():
        assert torch.equal(loaded(x), ghost(x))


def _duplicate_filters(model: torch.nn.Module, pairs: list[dict]) -> None:
    """Make every producer's second half of filters (and biases, PReLU slopes) copy its first half."""
    with torch.no_grad():
        for pair in pairs:
            conv = model.get_submodule(pair["producer"])
            half = conv.out_channels // 2
            conv.weight[half:] = conv.weight[:half]
            conv.bias[half:] = conv.bias[:half]
            if pair["act"]:
                slopes = model.get_submodule(pair["act"]).weight
                slopes[half:] = slopes[:half]


@pytest.mark.parametrize("arch,args,deploy", [
    ("rlfn_ntire", {"num_blocks": 2}, False),  # inner pairs and trunk pairs (rows/cols of the whole trunk)
    ("msrresnet", {"num_blocks": 2}, False),
    ("rfdn", {"num_blocks": 1}, False),  # consumer columns at an offset in a concatenation
    ("ecbsr_m4c8", {"in_channels": 3}, True),  # per-channel PReLU slopes follow the channels
    ("fmen_s", {"down_blocks": 2}, True),  # deployed ERBs and attention branches
])
def test_duplicated_filters_convert_exactly(arch, args, deploy) -> None:
    """Ghost = plain copy of a duplicate filter: clustering, permutations and trunk orders must be exact."""
    model = _model(arch, args, deploy)
    pairs = [p for p in find_pairs(model, trunk=True) if p["consumer"] is not None]
    _duplicate_filters(model, pairs)
    ghost = convert(model, _calibration(model.in_channels), ratio=0.5, shifts=(4,), refit=False)
    if arch == "rlfn_ntire":
        assert sum(1 for p in ghost.hparams["pairs"] if "rows" in p) == 2
    x = _calibration(model.in_channels, n=1, size=9)
    with torch.no_grad():
        assert (ghost(x) - model(x)).abs().max() <= 1e-4 * model(x).abs().max()


def test_converted_rlfn_starts_close_and_deploys_folded(tmp_path) -> None:
    model = _model("rlfn_ntire", {"num_blocks": 2}, False)
    calibration = _calibration(n=4, size=20)
    ghost = convert(model, calibration, ratio=0.5)
    assert all(d in (1, 3, 4, 5, 7) for d in ghost.hparams["directions"])  # axis shifts by default
    # Refitting the consumers must beat merely dropping the ghost filters' consumer columns.
    assert calibration_error(model, ghost, calibration) > 30
    inner = convert(model, calibration, ratio=0.5, trunk=False)
    folded = create_model("ghostsr", **{**inner.hparams, "fold": True})
    folded.load_state_dict(inner.state_dict())
    deployed = reparameterize_model(folded.eval())
    assert any(isinstance(m, FoldedShiftConv) for m in deployed.modules())
    assert not any(isinstance(m, DeployedGhostConv) for m in deployed.modules())  # every RLFB pair folds
    x = _calibration(n=1, size=11)
    with torch.no_grad():
        assert (deployed(x) - inner(x)).abs().max() < 1e-4
    path = save_checkpoint(deployed, tmp_path / "deployed.safetensors")
    with torch.no_grad():
        assert torch.equal(load_model(path)(x), deployed(x))


def test_unfolded_deployed_round_trip(tmp_path) -> None:
    model = _model("msrresnet", {"num_blocks": 2}, False)
    ghost = convert(model, _calibration(), ratio=0.5, shifts="all")
    deployed = reparameterize_model(ghost)
    assert any(isinstance(m, DeployedGhostConv) for m in deployed.modules())
    path = save_checkpoint(deployed, tmp_path / "d.safetensors")
    x = _calibration(n=1, size=9)
    with torch.no_grad():
        assert torch.equal(load_model(path)(x), deployed(x))


def test_no_convertible_conv_and_bad_ratio() -> None:
    with pytest.raises(LeansrError, match="no convertible conv"):
        convert(_model("imdn", {"num_blocks": 2}, False), _calibration())
    with pytest.raises(LeansrError, match="no convertible conv"):
        convert(_model("ecbsr_m4c8", {}, False), _calibration(1))  # training-form ECBs are not plain convs
    for ratio in (0.0, 1.0, 1.5):
        with pytest.raises(LeansrError, match="ratio"):
            convert(_model("msrresnet", {"num_blocks": 1}, False), _calibration(), ratio=ratio)


def test_kmeans_finds_separated_clusters() -> None:
    generator = torch.Generator().manual_seed(0)
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]], dtype=torch.float64)
    points = torch.cat([c + 0.1 * torch.randn(5, 2, generator=generator, dtype=torch.float64) for c in centres])
    labels, centroids = kmeans(points, 3, torch.Generator().manual_seed(0))
    assert len(set(labels.tolist())) == 3
    for block in labels.view(3, 5):
        assert len(set(block.tolist())) == 1


@pytest.mark.reference
def test_default_model_converts() -> None:
    from pathlib import Path

    import leansr

    weights = Path(leansr.__file__).parent / "weights" / "default_x4.safetensors"
    model = load_model(weights).model
    ghost = convert(model, _calibration(n=2, size=16))
    assert ghost.hparams["base"] == "ecbsr_m10c32" and ghost.hparams["base_deployed"]
    assert calibration_error(model, ghost, _calibration(n=2, size=16)) > 25


@pytest.mark.reference
def test_official_rlfn_ntire_converts_close() -> None:
    path = shared_path("weights", "bytedance-RLFN", "rlfn_ntire_x4.pth")
    images = [str(shared_path("data", "train"))]
    model = load_model(path).model
    calibration = calibration_patches(images, 4, count=8, size=32)
    held_out = calibration_patches(images, 4, count=4, size=32, seed=100)
    fitted = calibration_error(model, convert(model, calibration), held_out)
    bare = calibration_error(model, convert(model, calibration, refit=False), held_out)
    assert fitted > 30 and fitted > bare + 10


def test_pairs_are_fitted_in_execution_order() -> None:
    """FMEN lists all ERBs before all HFABs, but runs them interleaved: fits must follow execution."""
    from leansr.ghost.convert import _in_forward_order

    model = _model("fmen_s", {"down_blocks": 2}, True)
    order = [p["producer"] for p in _in_forward_order(model, find_pairs(model), _calibration(n=1, size=8))]
    assert order.index("HFABs.0.squeeze") < order.index("ERBs.1.conv1.rep_conv")
    assert order.index("ERBs.0.conv1.rep_conv") < order.index("HFABs.0.squeeze")


def test_below_half_ratio_gets_distinct_shifts_per_copy(tmp_path) -> None:
    model = _model("rlfn_ntire", {"num_blocks": 1}, False)
    calibration = _calibration(n=3, size=16)
    ghost = convert(model, calibration, ratio=0.33)  # 46/48 channels -> 16 intrinsic, two copies each
    directions = ghost.hparams["directions"]
    assert all(isinstance(d, list) and len(d) == 2 and d[0] != d[1] for d in directions)
    assert calibration_error(model, ghost, calibration) > 25
    deployed = reparameterize_model(ghost)
    x = _calibration(n=1, size=9)
    with torch.no_grad():
        assert (deployed(x) - ghost(x)).abs().max() < 1e-4
    path = save_checkpoint(deployed, tmp_path / "third.safetensors")
    with torch.no_grad():
        assert torch.equal(load_model(path)(x), deployed(x))


def _tied_gaps(ghost: torch.nn.Module, producer: str, consumer: str) -> list[float]:
    """For each ghost channel tap whose source position the consumer also reads directly: the largest
    difference between the two weights (tied fits make them equal)."""
    module = ghost.get_submodule(producer)
    weight = ghost.get_submodule(consumer).primary.weight.detach()
    directions = per_ghost(module.directions(), module.intrinsic, module.ghosts)
    gaps = []
    for slot, (source, direction) in enumerate(zip(ghost_sources(module.intrinsic, module.ghosts), directions)):
        dy, dx = offset(direction)
        for ky in range(max(0, -dy), min(3, 3 - dy)):
            for kx in range(max(0, -dx), min(3, 3 - dx)):
                ghost_tap = weight[:, module.intrinsic + slot, ky, kx]
                gaps.append(float((ghost_tap - weight[:, source, ky + dy, kx + dx]).abs().max()))
    return gaps


def test_consumer_fit_ties_ghost_taps_to_their_source(monkeypatch) -> None:
    model = _model("rlfn_ntire", {"num_blocks": 1}, False)
    calibration = _calibration(n=3, size=16)
    ghost = convert(model, calibration, ratio=0.33)
    assert max(_tied_gaps(ghost, "block_1.c1_r", "block_1.c2_r")) < 1e-5
    monkeypatch.setattr(ghost_convert, "TIE_GHOST_TAPS", False)  # the free fit: the same positions differ
    free = convert(model, calibration, ratio=0.33)
    assert max(_tied_gaps(free, "block_1.c1_r", "block_1.c2_r")) > 1e-2


@pytest.mark.slow
@pytest.mark.reference
def test_official_rlfn_ntire_at_a_third_generalizes_to_other_images() -> None:
    """With 16 calibration patches the ratio-0.33 fits overfit (-45 dB on Set14 patches); the default must not."""
    model = load_model(shared_path("weights", "bytedance-RLFN", "rlfn_ntire_x4.pth")).model
    calibration = calibration_patches([str(shared_path("data", "train"))], 4)
    held_out = calibration_patches([str(shared_path("data", "Set14"))], 4, count=8, seed=7)
    assert calibration_error(model, convert(model, calibration, ratio=0.33), held_out) > 28


def test_hardest_patches_are_where_the_conversion_deviates_most() -> None:
    original = torch.nn.Conv2d(3, 3, 1)
    converted = torch.nn.Sequential(original, torch.nn.ReLU())  # differs only where the conv output is negative
    pool = torch.rand(8, 3, 5, 5, generator=torch.Generator().manual_seed(0))
    pool[[2, 6]] *= -1
    pool[6] *= 2
    with torch.no_grad():
        original.weight.copy_(torch.eye(3).view(3, 3, 1, 1))
        original.bias.zero_()
    hardest = hardest_patches(original, converted, pool, 2)
    assert torch.equal(hardest, pool[[6, 2]])


def test_per_layer_ratios_and_channel_multiple(tmp_path) -> None:
    model = _model("rlfn_ntire", {"num_blocks": 2}, False)  # c1_r, c2_r: 48 out; c3_r: 46 out
    ghost = convert(model, _calibration(), ratio=0.33, layer_ratios={"block_1.*": 0.6}, multiple=16, refit=False)
    intrinsic = {p["producer"]: ghost.get_submodule(p["producer"]).intrinsic for p in ghost.hparams["pairs"]}
    assert intrinsic == {"block_1.c1_r": 32, "block_1.c2_r": 32, "block_1.c3_r": 32,
                         "block_2.c1_r": 16, "block_2.c2_r": 16, "block_2.c3_r": 16}
    # Only the layers that differ from the model's ratio carry their own (what the file records).
    assert [p.get("ratio") for p in ghost.hparams["pairs"]] == [2 / 3, 2 / 3, 32 / 46, None, None, None]
    x = _calibration(n=1, size=9)
    deployed = reparameterize_model(ghost)
    with torch.no_grad():
        assert (deployed(x) - ghost(x)).abs().max() < 1e-4
    path = save_checkpoint(deployed, tmp_path / "mixed.safetensors")
    loaded = load_model(path).model
    assert [m.primary.out_channels for m in loaded.modules() if isinstance(m, DeployedGhostConv)] == \
        [32, 32, 32, 16, 16, 16]
    with torch.no_grad():
        assert torch.equal(loaded(x), deployed(x))
    # The multiple alone: 24 of 48 (ratio 0.5) becomes 32, as oneDNN would compute anyway.
    rounded = convert(model, _calibration(), ratio=0.5, multiple=16, refit=False)
    assert {rounded.get_submodule(p["producer"]).intrinsic for p in rounded.hparams["pairs"]} == {32}


def test_bad_per_layer_ratios() -> None:
    model = _model("rlfn_ntire", {"num_blocks": 1}, False)
    with pytest.raises(LeansrError, match="matches none of the convertible convs"):
        convert(model, _calibration(), layer_ratios={"block_9.*": 0.5})
    with pytest.raises(LeansrError, match="must be in"):
        convert(model, _calibration(), layer_ratios={"*": 1.0})
    with pytest.raises(LeansrError, match="no ghosts"):
        convert(model, _calibration(), ratio=0.9, multiple=16)  # 44 of 48 -> 48
    with pytest.raises(LeansrError, match="multiple must be"):
        convert(model, _calibration(), multiple=0)


def test_tied_prelu_slopes_make_ecbsr_fold(tmp_path) -> None:
    model = _model("ecbsr_m4c8", {"in_channels": 3}, True)
    pairs = [p for p in find_pairs(model, tie_slopes=True) if p["consumer"] is not None]
    assert pairs and all(p["fold"] and p["tie_act"] for p in pairs)
    _duplicate_filters(model, pairs)  # duplicate slopes too: tying them loses nothing
    ghost = convert(model, _calibration(), ratio=0.5, shifts=(4,), refit=False, tie_slopes=True)
    x = _calibration(n=1, size=9)
    with torch.no_grad():
        assert (ghost(x) - model(x)).abs().max() <= 1e-4 * model(x).abs().max()
    fitted = convert(model, _calibration(n=4, size=20), ratio=0.5, tie_slopes=True)
    folded = create_model("ghostsr", **{**fitted.hparams, "fold": True})
    folded.load_state_dict(fitted.state_dict())
    deployed = reparameterize_model(folded.eval().double())
    assert sum(isinstance(m, FoldedShiftConv) for m in deployed.modules()) == len(pairs)
    assert not any(isinstance(m, DeployedGhostConv) for m in deployed.modules())
    with torch.no_grad():
        assert (deployed(x.double()) - fitted.double()(x.double())).abs().max() < 1e-10
    path = save_checkpoint(deployed.float(), tmp_path / "folded.safetensors")
    assert load_model(path).hparams["fold"]
    # Below ratio 0.5 the copies shift differently and never fold: slopes stay per channel.
    third = convert(model, _calibration(), ratio=0.33, refit=False, tie_slopes=True)
    assert not any(p.get("tie_act") or p["fold"] for p in third.hparams["pairs"])
    assert not any(isinstance(m, SharedSlopePReLU) for m in third.modules())
