"""RLFN family against the official bytedance/RLFN checkpoints and reference outputs."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from conftest import shared_path

from leansr import create_model, load_model
from leansr.checkpoint import read_state_dict
from leansr.models.rlfn import detect_rlfn

# checkpoint stem -> (registered name, expected hyper-parameters)
OFFICIAL = {
    "rlfn_x2": ("rlfn", dict(scale=2, channels=52, mid_channels=52, num_blocks=6)),
    "rlfn_x4": ("rlfn", dict(scale=4, channels=52, mid_channels=52, num_blocks=6)),
    "rlfn_s_x2": ("rlfn_s", dict(scale=2, channels=48, mid_channels=48, num_blocks=6)),
    "rlfn_s_x4": ("rlfn_s", dict(scale=4, channels=48, mid_channels=48, num_blocks=6)),
    "rlfn_ntire_x4": ("rlfn_ntire", dict(scale=4, channels=46, mid_channels=48, num_blocks=4)),
}
OTHER_FAMILIES = [
    ("Zheng222-IMDN", "IMDN_x4.pth"),
    ("ofsoundof-NTIRE2022_ESR", "imdn_baseline.pth"),
    ("njulj-RFDN", "RFDN_AIM.pth"),
    ("zhaohengyuan1-PAN", "PANx4_DF2K.pth"),
    ("NJU-Jet-FMEN", "test_weights.pt"),
    ("chenbong-ARM-Net", "arm-fsrcnn.pth"),
    ("chenbong-ARM-Net", "arm-carn.pth"),
]


def _official(stem: str):
    return shared_path("weights", "bytedance-RLFN", f"{stem}.pth")


def _reference_max_error(model: torch.nn.Module, stem: str) -> float:
    reference = np.load(shared_path("reference", "official_outputs", f"{stem}.npz"))
    lr = torch.from_numpy(reference["lr"]).permute(2, 0, 1)[None].float() / 255.0
    with torch.no_grad():
        sr = model(lr)[0].numpy()
    assert sr.shape == reference["sr"].shape
    return float(np.abs(sr - reference["sr"]).max())


@pytest.mark.reference
@pytest.mark.parametrize("stem", sorted(OFFICIAL))
def test_official_checkpoint_reproduces_reference_output(stem):
    model = load_model(_official(stem))
    assert _reference_max_error(model, stem) <= 1e-4


@pytest.mark.reference
@pytest.mark.parametrize("stem", sorted(OFFICIAL))
def test_detection_ignores_the_file_name(tmp_path, stem):
    neutral = tmp_path / "weights.pth"
    shutil.copyfile(_official(stem), neutral)
    model = load_model(neutral)
    arch, expected = OFFICIAL[stem]
    assert model.arch == arch
    assert model.hparams == {**expected, "img_range": 255.0, "esa_channels": 16}
    assert model.input_range == 255.0 and model.scale == expected["scale"]


@pytest.mark.reference
def test_ntire_challenge_key_layout_loads(tmp_path):
    # Key names of RLFN_cut in ofsoundof/NTIRE2022_ESR models/team04_rlfn.py.
    official = torch.load(_official("rlfn_ntire_x4"), map_location="cpu", weights_only=True)
    renamed = {}
    for key, value in official.items():
        head, _, rest = key.partition(".")
        head = {"conv_1": "fea_conv", "conv_2": "LR_conv"}.get(head, head)
        renamed[f"{head.replace('block_', 'B')}.{rest}"] = value
    assert "B4.esa.conv4.weight" in renamed and "fea_conv.bias" in renamed
    path = tmp_path / "team04_rlfn.pth"
    torch.save(renamed, path)
    model = load_model(path)
    assert model.arch == "rlfn_ntire"
    assert _reference_max_error(model, "rlfn_ntire_x4") <= 1e-4


@pytest.mark.reference
@pytest.mark.parametrize("folder,name", OTHER_FAMILIES)
def test_other_families_are_not_claimed(folder, name):
    state, _ = read_state_dict(shared_path("weights", folder, name))
    assert detect_rlfn({k.removeprefix("module."): v for k, v in state.items()}) is None


def test_truncated_or_reshaped_rlfn_is_not_claimed():
    state = create_model("rlfn_ntire").state_dict()
    assert detect_rlfn(dict(state)) is not None
    missing = {k: v for k, v in state.items() if not k.startswith("block_2.esa.")}
    assert detect_rlfn(missing) is None
    odd_scale = {**state, "upsampler.0.weight": torch.zeros(47, 46, 3, 3)}
    assert detect_rlfn(odd_scale) is None


def _parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_parameter_counts_match_the_papers():
    assert _parameters(create_model("rlfn", scale=4)) == 543_740  # RLFN paper, x4
    ntire = create_model("rlfn_ntire")
    assert round(_parameters(ntire) / 1e6, 3) == 0.317  # NTIRE 2022 ESR report
    convs = sum(isinstance(m, torch.nn.Conv2d) for m in ntire.modules())
    assert convs == 39  # "#Conv" column of the same report


def test_presets_differ_only_in_width_and_depth():
    small, pruned = create_model("rlfn_s", scale=2), create_model("rlfn_ntire")
    assert (small.conv_1.out_channels, small.num_blocks) == (48, 6)
    assert (pruned.block_1.c1_r.out_channels, pruned.num_blocks) == (48, 4)
    assert pruned.conv_1.out_channels == 46


@pytest.mark.parametrize("size", [(1, 1), (5, 9), (14, 15)])
def test_inputs_smaller_than_the_attention_window_work(size):
    model = create_model("rlfn_ntire").eval()
    with torch.no_grad():
        out = model(torch.rand(1, 3, *size))
    assert out.shape == (1, 3, size[0] * 4, size[1] * 4) and torch.isfinite(out).all()
