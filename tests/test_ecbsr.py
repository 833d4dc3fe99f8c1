"""ECBSR: architecture facts (global residual, Y/RGB) and the official layouts (training form, PlainSR)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import leansr
from leansr.loading import load_detected
from leansr.registry import detect
from leansr.layers import fusion, is_reparameterized
from leansr.layers.fusion_check import randomize, relative_error

# Official names (xindongzhang/ECBSR models/ecb.py) for our ECB parameters.
_OFFICIAL_NAMES = {
    "conv.conv3x3.weight": "conv3x3.weight",
    "conv.conv3x3.bias": "conv3x3.bias",
    "conv.expand3x3.expand.weight": "conv1x1_3x3.k0",
    "conv.expand3x3.expand.bias": "conv1x1_3x3.b0",
    "conv.expand3x3.conv.weight": "conv1x1_3x3.k1",
    "conv.expand3x3.conv.bias": "conv1x1_3x3.b1",
    **{
        f"conv.{ours}.{param}": f"conv1x1_{theirs}.{official}"
        for ours, theirs in (("sobel_x", "sbx"), ("sobel_y", "sby"), ("laplacian", "lpl"))
        for param, official in (
            ("reduce.weight", "k0"), ("reduce.bias", "b0"), ("scale", "scale"), ("bias", "bias")
        )
    },
    "act.weight": "act.weight",
}
_MASKS = {"sbx": fusion.SOBEL_X, "sby": fusion.SOBEL_Y, "lpl": fusion.LAPLACIAN}


def _official_training_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in model.state_dict().items():
        layer, rest = key.split(".", 2)[1], key.split(".", 2)[2]
        name = _OFFICIAL_NAMES[rest]
        out[f"backbone.{layer}.{name}"] = value.reshape(-1, 1, 1, 1) if name.endswith("scale") else value
    for key in [k for k in out if k.endswith(".k0") and "conv1x1_3x3" not in k]:
        channels = out[key].shape[0]
        kernel = torch.tensor(_MASKS[key.split("conv1x1_")[1][:3]], dtype=out[key].dtype)
        out[key.replace(".k0", ".mask")] = kernel.expand(channels, 1, 3, 3).clone()
    return out


def _official_ecb(sd: dict[str, torch.Tensor], prefix: str, x: torch.Tensor) -> torch.Tensor:
    """The official ECB training forward, written from its definition, on the official tensors."""

    def seq(name: str) -> torch.Tensor:
        k0, b0 = sd[f"{prefix}.{name}.k0"], sd[f"{prefix}.{name}.b0"]
        y = fusion.pad_with_bias(F.conv2d(x, k0, b0), b0)
        if name == "conv1x1_3x3":
            return F.conv2d(y, sd[f"{prefix}.{name}.k1"], sd[f"{prefix}.{name}.b1"])
        weight = sd[f"{prefix}.{name}.scale"] * sd[f"{prefix}.{name}.mask"]
        return F.conv2d(y, weight, sd[f"{prefix}.{name}.bias"], groups=weight.shape[0])

    y = F.conv2d(x, sd[f"{prefix}.conv3x3.weight"], sd[f"{prefix}.conv3x3.bias"], padding=1)
    return y + sum(seq(n) for n in ("conv1x1_3x3", "conv1x1_sbx", "conv1x1_sby", "conv1x1_lpl"))


def _official_forward(sd: dict[str, torch.Tensor], layers: int, scale: int, x: torch.Tensor) -> torch.Tensor:
    y = x
    for i in range(layers):
        y = _official_ecb(sd, f"backbone.{i}", y)
        if i < layers - 1:
            y = F.prelu(y, sd[f"backbone.{i}.act.weight"])
    return F.pixel_shuffle(y + x, scale)  # official: backbone(x) + x, x broadcast over s*s channels


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_official_training_layout_loads_and_matches_official_forward(scale: int) -> None:
    # float32 weights, as the loader builds float32 models; both sides then run in float64.
    model = randomize(leansr.create_model("ecbsr_m4c8", scale=scale)).float()
    official = _official_training_dict(model)
    detection = detect(official)
    assert (detection.arch, detection.deployed) == ("ecbsr_m4c8", False)
    assert detection.hparams["scale"] == scale and detection.hparams["in_channels"] == 1
    loaded = load_detected(detection).model.double().eval()
    x = torch.rand(1, 1, 7, 5, dtype=torch.float64) * 255
    with torch.no_grad():
        expected = _official_forward({k: v.double() for k, v in official.items()}, 6, scale, x)
        assert relative_error(loaded.forward_sr(x), expected) <= 1e-12


def test_official_plainsr_layout_loads_deployed() -> None:
    model = randomize(leansr.create_model("ecbsr_m4c16", scale=2))
    fused = leansr.reparameterize_model(model).float()
    plain = {k.replace(".conv.", ".conv3x3."): v for k, v in fused.state_dict().items()}
    detection = detect(plain)
    assert (detection.arch, detection.deployed) == ("ecbsr_m4c16", True)
    loaded = load_detected(detection).model.double().eval()
    assert is_reparameterized(loaded)
    x = torch.rand(1, 1, 9, 13, dtype=torch.float64)
    with torch.no_grad():
        assert relative_error(loaded(x), fused.double()(x)) <= 1e-12
        assert relative_error(loaded(x), model(x)) <= 1e-6  # float32 rounding of the fused weights


def test_unregistered_width_is_not_detected() -> None:
    model = leansr.create_model("ecbsr_m4c8")
    official = _official_training_dict(model)
    official["backbone.0.conv3x3.weight"] = torch.zeros(12, 1, 3, 3)
    with pytest.raises(leansr.LeansrError, match="unrecognised"):
        detect(official)


@pytest.mark.parametrize("in_channels", [1, 3])
@pytest.mark.parametrize("scale", [2, 3])
def test_global_residual_is_nearest_upsampling(in_channels: int, scale: int) -> None:
    model = leansr.create_model("ecbsr_m4c8", scale=scale, in_channels=in_channels).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        x = torch.rand(1, in_channels, 5, 4)
        expected = x.repeat_interleave(scale, dim=2).repeat_interleave(scale, dim=3)
        assert torch.allclose(model(x), expected, atol=1e-6)
    assert model.in_channels == in_channels


def test_identity_branch_only_where_shapes_allow() -> None:
    model = leansr.create_model("ecbsr_m4c8", with_identity=True, in_channels=3)
    flags = [layer.conv.with_identity for layer in model.backbone]
    assert flags == [False] + [True] * 4 + [False]  # head, M=4 inner blocks, tail
