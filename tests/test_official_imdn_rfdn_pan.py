"""IMDN, AIM 2019 IMDN, E-RFDN and PAN: official checkpoints load by layout and reproduce official outputs."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from conftest import shared_path
from torch import nn

from leansr import load_model
from leansr.checkpoint import read_state_dict
from leansr.registry import _DETECTORS, detect
from leansr.errors import CheckpointError
from leansr.models.imdn import IMDB

OURS = ("imdn", "imdn_aim2019", "rfdn", "pan")
PAN_HP = {"channels": 40, "up_channels": 24, "num_blocks": 16, "img_range": 1.0}
IMDN_HP = {"channels": 64, "num_blocks": 6, "img_range": 1.0}
# (origin folder, file, arch, hparams, parameter count: exact where the brief/paper gives it, else in K)
CASES = [
    ("Zheng222-IMDN", "IMDN_x2.pth", "imdn", {"scale": 2, **IMDN_HP}, "694K"),
    ("Zheng222-IMDN", "IMDN_x3.pth", "imdn", {"scale": 3, **IMDN_HP}, "703K"),
    ("Zheng222-IMDN", "IMDN_x4.pth", "imdn", {"scale": 4, **IMDN_HP}, 715_176),
    (
        "ofsoundof-NTIRE2022_ESR",
        "imdn_baseline.pth",
        "imdn_aim2019",
        {"scale": 4, "channels": 64, "num_blocks": 8, "img_range": 1.0},
        893_936,
    ),
    (
        "njulj-RFDN",
        "RFDN_AIM.pth",
        "rfdn_e",
        {"scale": 4, "channels": 50, "num_blocks": 4, "img_range": 255.0},
        "433K",
    ),
    ("zhaohengyuan1-PAN", "PANx2_DF2K.pth", "pan", {"scale": 2, **PAN_HP}, "261K"),
    ("zhaohengyuan1-PAN", "PANx3_DF2K.pth", "pan", {"scale": 3, **PAN_HP}, "261K"),
    ("zhaohengyuan1-PAN", "PANx4_DF2K.pth", "pan", {"scale": 4, **PAN_HP}, 272_419),
]


def _neutral_copy(tmp_path, folder: str, name: str):
    copy = tmp_path / "weights.bin"
    shutil.copyfile(shared_path("weights", folder, name), copy)
    return copy


@pytest.mark.reference
@pytest.mark.parametrize("folder,name,arch,hparams,params", CASES, ids=[c[1] for c in CASES])
def test_official_checkpoint_reproduces_official_output(tmp_path, folder, name, arch, hparams, params):
    reference = np.load(shared_path("reference", "official_outputs", name.rsplit(".", 1)[0] + ".npz"))
    model = load_model(_neutral_copy(tmp_path, folder, name))
    assert (model.arch, model.hparams) == (arch, hparams)
    count = sum(p.numel() for p in model.model.parameters())
    assert count == params if isinstance(params, int) else f"{round(count / 1000)}K" == params
    lr = torch.from_numpy(reference["lr"]).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        sr = model(lr)[0].numpy()
    assert sr.shape == reference["sr"].shape
    assert np.abs(sr - reference["sr"]).max() <= 1e-4


@pytest.mark.reference
@pytest.mark.parametrize("folder,name,arch,hparams,params", CASES, ids=[c[1] for c in CASES])
def test_detection_under_the_official_name_agrees(folder, name, arch, hparams, params):
    detection = detect(read_state_dict(shared_path("weights", folder, name))[0])
    assert (detection.arch, detection.hparams, detection.deployed) == (arch, hparams, False)
    # Only PAN x2/x3 need the probe run (same shapes), and the detection says so.
    assert bool(detection.notes) == (arch == "pan" and hparams["scale"] != 4)


@pytest.mark.reference
@pytest.mark.parametrize("folder,name", [c[:2] for c in CASES[2:5] + CASES[6:7]], ids=str)
def test_one_altered_tensor_shape_is_refused(tmp_path, folder, name):
    state, _ = read_state_dict(shared_path("weights", folder, name))
    key = list(state)[len(state) // 2]
    state[key] = torch.zeros(state[key].shape[0] + 1, *state[key].shape[1:])
    path = tmp_path / "altered.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match="does not fit|unrecognised"):
        load_model(path)


@pytest.mark.reference
def test_other_families_are_not_claimed():
    weights = shared_path("weights")
    mine = {"Zheng222-IMDN", "ofsoundof-NTIRE2022_ESR", "njulj-RFDN", "zhaohengyuan1-PAN"}
    others = [p for p in sorted(weights.glob("*/*")) if p.parent.name not in mine]
    assert others, "expected checkpoints of other families under shared/weights"
    for path in others:
        state, _ = read_state_dict(path)
        claims = [f.name for fn, f in _DETECTORS.items() if f.name in OURS and fn(state) is not None]
        assert not claims, f"{path.name} claimed by {claims}"


def test_imdb_builds_its_3x3_convolutions_through_the_factory():
    built = []

    def conv3x3(cin: int, cout: int) -> nn.Module:
        built.append((cin, cout))
        return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1))

    block = IMDB(32, conv3x3=conv3x3)
    assert built == [(32, 32), (24, 32), (24, 32), (24, 8)]
    assert {"c1.0.weight", "c4.0.weight", "cca.conv_du.0.weight"} <= block.state_dict().keys()
    x = torch.rand(1, 32, 9, 9)
    assert block(x).shape == x.shape
