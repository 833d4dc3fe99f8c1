"""MSRResNet: size of the AIM 2020 baseline, BasicSR/KAIR checkpoint layouts, BasicSR's computation."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import shared_path

from leansr import create_model, load_model
from leansr.checkpoint import read_state_dict
from leansr.models.msrresnet import detect_msrresnet


def _randomized(scale: int, **hparams) -> torch.nn.Module:
    torch.manual_seed(scale)
    model = create_model("msrresnet", scale=scale, **hparams).eval()
    with torch.no_grad():  # non-trivial weights so a wrong load or a wrong order would show
        for p in model.parameters():
            p.copy_(0.05 * torch.randn_like(p))
    return model


def _basicsr_forward(sd: dict[str, torch.Tensor], x: torch.Tensor, scale: int) -> torch.Tensor:
    """BasicSR's MSRResNet.forward written out with functional ops on its own key names."""

    def conv(name, t):
        return F.conv2d(t, sd[f"{name}.weight"], sd[f"{name}.bias"], padding=1)

    out = F.leaky_relu(conv("conv_first", x), 0.1)
    block = 0
    while f"body.{block}.conv1.weight" in sd:
        out = out + conv(f"body.{block}.conv2", F.relu(conv(f"body.{block}.conv1", out)))
        block += 1
    stages = ["upconv1", "upconv2"] if scale == 4 else ["upconv1"]
    for stage in stages:
        out = F.leaky_relu(F.pixel_shuffle(conv(stage, out), 2 if scale == 4 else scale), 0.1)
    out = conv("conv_last", F.leaky_relu(conv("conv_hr", out), 0.1))
    return out + F.interpolate(x, scale_factor=scale, mode="bilinear", align_corners=False)


def test_x4_has_the_aim2020_baseline_parameter_count():
    model = create_model("msrresnet", scale=4)
    assert sum(p.numel() for p in model.parameters()) == 1_517_571


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_forward_is_basicsr_msrresnet(scale):
    model = _randomized(scale, channels=8, num_blocks=2)
    x = torch.rand(1, 3, 6, 7)
    with torch.no_grad():
        expected = _basicsr_forward(model.state_dict(), x, scale)
        assert torch.allclose(model(x), expected, atol=1e-6)


def test_global_skip_is_bilinear_upsampling():
    model = create_model("msrresnet", scale=3, channels=8, num_blocks=1).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        x = torch.rand(1, 3, 5, 5)
        expected = F.interpolate(x, scale_factor=3, mode="bilinear", align_corners=False)
        assert torch.equal(model(x), expected)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_basicsr_checkpoint_loads(tmp_path, scale):
    model = _randomized(scale, channels=16, num_blocks=3)
    path = tmp_path / "net_g_latest.pth"
    torch.save({"params": model.state_dict()}, path)  # how BasicSR saves its networks
    loaded = load_model(path)
    assert loaded.arch == "msrresnet"
    assert loaded.hparams == {"scale": scale, "img_range": 1.0, "channels": 16, "num_blocks": 3}
    x = torch.rand(1, 3, 5, 6)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_default_size_basicsr_checkpoint_loads(tmp_path):
    model = _randomized(4)
    path = tmp_path / "MSRResNet_x4.pth"
    torch.save(model.state_dict(), path)
    loaded = load_model(path)
    assert loaded.hparams == model.hparams
    assert all(torch.equal(a, b) for a, b in zip(loaded.model.state_dict().values(), model.state_dict().values()))


def test_kair_aim2020_layout_loads(tmp_path):
    # KAIR's MSRResNet1 (cszn/KAIR models/network_msrresnet.py) names the trunk recon_trunk and HRconv.
    model = _randomized(4, channels=8, num_blocks=2)
    renamed = {
        k.replace("body.", "recon_trunk.").replace("conv_hr.", "HRconv."): v
        for k, v in model.state_dict().items()
    }
    path = tmp_path / "msrresnet_x4_psnr.pth"
    torch.save(renamed, path)
    loaded = load_model(path)
    x = torch.rand(1, 3, 4, 4)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_inconsistent_state_dicts_are_not_claimed():
    state = create_model("msrresnet", scale=2, channels=8, num_blocks=2).state_dict()
    assert detect_msrresnet(dict(state)) is not None
    assert detect_msrresnet({k: v for k, v in state.items() if k != "conv_hr.bias"}) is None
    five_x = {**state, "upconv1.weight": torch.zeros(8 * 25, 8, 3, 3), "upconv1.bias": torch.zeros(200)}
    assert detect_msrresnet(five_x) is None


@pytest.mark.reference
@pytest.mark.parametrize(
    "folder,name",
    [
        ("Zheng222-IMDN", "IMDN_x4.pth"),
        ("ofsoundof-NTIRE2022_ESR", "imdn_baseline.pth"),
        ("njulj-RFDN", "RFDN_AIM.pth"),
        ("zhaohengyuan1-PAN", "PANx4_DF2K.pth"),
        ("NJU-Jet-FMEN", "test_weights.pt"),
        ("bytedance-RLFN", "rlfn_x4.pth"),
        ("chenbong-ARM-Net", "arm-carn.pth"),
        ("chenbong-ARM-Net", "arm-fsrcnn.pth"),
    ],
)
def test_other_families_are_not_claimed(folder, name):
    state, _ = read_state_dict(shared_path("weights", folder, name))
    assert detect_msrresnet({k.removeprefix("module."): v for k, v in state.items()}) is None
