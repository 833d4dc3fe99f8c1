"""EDSR in the zoo: published sizes, official key layout, and the paper's EDSR-GhostSR parameter count."""

from __future__ import annotations

import torch

from leansr import create_model, load_model
from leansr.bench.counting import count_params
from leansr.registry import detect


def test_published_parameter_counts() -> None:
    with torch.device("meta"):
        assert count_params(create_model("edsr_baseline", scale=4)) == 1_517_571  # EDSR-PyTorch baseline x4
        assert round(count_params(create_model("edsr", scale=2)) / 1e6, 2) == 40.73  # GhostSR paper, EDSR x2
        # GhostSR paper: EDSR x2 with both convs of every block ghosted, ratio 0.5: 21.85M parameters.
        ghost = create_model("ghostsr", scale=2, base="edsr", trunk=True)
        assert round(count_params(ghost) / 1e6, 2) == 21.85


def _official_state_dict(arch: str, scale: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    state = create_model(arch, scale=scale).state_dict()
    mean = torch.tensor([0.4488, 0.4371, 0.4040]) * 255
    state["sub_mean.weight"] = torch.eye(3).view(3, 3, 1, 1)
    state["sub_mean.bias"] = -mean
    state["add_mean.weight"] = torch.eye(3).view(3, 3, 1, 1)
    state["add_mean.bias"] = mean
    return state


def test_official_layout_detected_for_each_scale(tmp_path) -> None:
    for scale in (2, 3, 4):
        detection = detect(_official_state_dict("edsr_baseline", scale))
        assert detection.arch == "edsr_baseline" and detection.hparams["scale"] == scale
        assert detection.hparams["res_scale"] == 1.0
    path = tmp_path / "edsr_baseline_x3.pt"
    torch.save(_official_state_dict("edsr_baseline", 3), path)
    model = load_model(path)
    x = torch.rand(1, 3, 6, 5)
    with torch.no_grad():
        assert model(x).shape == (1, 3, 18, 15)


def test_mean_shift_matches_official_sub_add_mean() -> None:
    """A zero body maps the input through head/tail only; the mean is removed and added back."""
    model = create_model("edsr_baseline", scale=2, num_blocks=1).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
    x = torch.rand(1, 3, 4, 4)
    with torch.no_grad():
        out = model(x)  # all convs zero: output is the mean (0-1 scale) everywhere
    expected = torch.tensor([0.4488, 0.4371, 0.4040]).view(1, 3, 1, 1).expand_as(out)
    assert torch.allclose(out, expected, atol=1e-6)
