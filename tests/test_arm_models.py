"""ARM supernets: prefix slicing, official checkpoints and reference outputs at every width."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import shared_path

from leansr import create_model, load_model
from leansr.checkpoint import read_state_dict, save_checkpoint
from leansr.registry import detect
from leansr.errors import LeansrError
from leansr.arm.from_plain import supernet_from_plain
from leansr.layers.slimmable import SlimConv2d

OFFICIAL = {"arm-fsrcnn": ("arm_fsrcnn", (16, 36, 56)), "arm-carn": ("arm_carn", (36, 52, 64))}


def _official(stem: str):
    return shared_path("weights", "chenbong-ARM-Net", f"{stem}.pth")


@pytest.mark.reference
@pytest.mark.parametrize("stem", sorted(OFFICIAL))
def test_official_supernet_matches_reference_at_every_width(tmp_path, stem):
    neutral = tmp_path / "weights.pth"  # detected by layout, not by name
    shutil.copyfile(_official(stem), neutral)
    model = load_model(neutral).model
    arch, widths = OFFICIAL[stem]
    assert (model.arch, model.widths) == (arch, widths)
    for width in widths:
        suffix = "" if width == widths[-1] else f"@{width}"
        ref = np.load(shared_path("reference", "official_outputs", f"{stem}{suffix}.npz"))
        lr = torch.from_numpy(ref["lr"]).permute(2, 0, 1)[None].float() / 255.0
        with torch.no_grad():
            sr = model.forward_width(lr, width)[0].numpy()
        assert np.abs(sr - ref["sr"]).max() <= 1e-5, (stem, width)
    with torch.no_grad():  # the plain forward is the full width
        assert torch.equal(model(lr), model.forward_width(lr, widths[-1]))


@pytest.mark.reference
@pytest.mark.parametrize("stem", sorted(OFFICIAL))
def test_detection_and_round_trip_keep_the_widths(tmp_path, stem):
    state, _ = read_state_dict(_official(stem))
    found = detect(state)
    assert found.arch == OFFICIAL[stem][0] and tuple(found.hparams["widths"]) == OFFICIAL[stem][1]
    model = load_model(_official(stem)).model
    again = load_model(save_checkpoint(model, tmp_path / "m.safetensors")).model
    assert again.widths == model.widths
    x = torch.rand(1, 3, 12, 12)
    with torch.no_grad():
        assert torch.equal(again.forward_width(x, model.widths[0]), model.forward_width(x, model.widths[0]))


def test_slim_conv_uses_weight_prefixes_for_concat_and_groups():
    torch.manual_seed(0)
    fuse = SlimConv2d(128, 64, 1)
    a, b = torch.rand(1, 36, 5, 5), torch.rand(1, 36, 5, 5)
    out = fuse(torch.cat([a, b], 1), 36 / 64)
    expected = F.conv2d(torch.cat([a, b], 1), fuse.weight[:36, :72], fuse.bias[:36])
    assert torch.allclose(out, expected, atol=1e-6)
    grouped = SlimConv2d(64, 64, 3, padding=1, groups=4)
    x = torch.rand(1, 36, 6, 6)
    out = grouped(x, 36 / 64)  # 4 groups of 9 channels: filters 0..35, each seeing 9 inputs
    expected = F.conv2d(x, grouped.weight[:36, :9], grouped.bias[:36], padding=1, groups=4)
    assert out.shape == (1, 36, 6, 6) and torch.allclose(out, expected, atol=1e-6)


def test_sliced_srresnet_equals_a_narrow_msrresnet_with_prefix_weights():
    torch.manual_seed(0)
    supernet = create_model("arm_srresnet", num_blocks=2, widths=(16, 32, 64)).eval()
    narrow = create_model("msrresnet", channels=16, num_blocks=2).eval()
    full = supernet.state_dict()
    renames = {"recon_trunk.": "body.", "HRconv.": "conv_hr."}
    state = {}
    for key, target in narrow.state_dict().items():
        source = key
        for new, old in ((v, k) for k, v in renames.items()):
            source = source.replace(new, old)
        state[key] = full[source][tuple(slice(0, n) for n in target.shape)]
    narrow.load_state_dict(state)
    x = torch.rand(1, 3, 10, 10)
    with torch.no_grad():
        assert torch.allclose(supernet.forward_width(x, 16), narrow(x), atol=1e-5)


@pytest.mark.parametrize("arch", ["arm_fsrcnn", "arm_carn", "arm_srresnet", "arm_plain"])
def test_every_route_upscales_and_bicubic_is_width_zero(arch):
    model = create_model(arch, **({"num_blocks": 2} if arch in ("arm_srresnet", "arm_plain") else {})).eval()
    x = torch.rand(2, 3, 8, 8)
    with torch.no_grad():
        outs = {w: model.forward_width(x, w) for w in model.routes}
    assert all(o.shape == (2, 3, 32, 32) for o in outs.values())
    bicubic = F.interpolate(x, scale_factor=4, mode="bicubic", align_corners=False)
    assert torch.equal(outs[0], bicubic)
    assert not torch.allclose(outs[model.widths[0]], outs[model.widths[-1]])


def test_a_width_the_supernet_lacks_is_one_sentence():
    model = create_model("arm_fsrcnn")
    with pytest.raises(LeansrError, match="has widths 16, 36, 56 .0 = bicubic., not 20"):
        model.forward_width(torch.rand(1, 3, 8, 8), 20)
    with pytest.raises(LeansrError, match="widths must ascend"):
        create_model("arm_carn", widths=(52, 36, 64))


def _plain_ecbsr(seed: int = 0):
    torch.manual_seed(seed)
    model = create_model("ecbsr_m4c16", in_channels=3, img_range=1.0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)  # PReLU slopes and biases differ per channel
    return model.eval()


def test_supernet_from_a_plain_model_is_that_model_at_full_width_in_float64():
    plain = _plain_ecbsr().double()
    supernet = supernet_from_plain(plain, (8, 16)).eval()
    assert supernet.arch == "arm_plain" and supernet.widths == (8, 16)
    x = torch.rand(2, 3, 12, 10, dtype=torch.float64)
    with torch.no_grad():
        assert torch.allclose(supernet(x), plain(x), atol=1e-12)
        assert supernet.forward_width(x, 8).shape == (2, 3, 48, 40)
    incoming = supernet.convs[0].weight.flatten(1).norm(dim=1)
    outgoing = supernet.convs[1].weight.transpose(0, 1).flatten(1).norm(dim=1)
    importance = incoming * outgoing
    assert torch.all(importance[:-1] >= importance[1:]), "channels are sorted most important first"


def test_supernet_needs_a_plain_rgb_prelu_model():
    with pytest.raises(LeansrError, match="from an ECBSR"):
        supernet_from_plain(create_model("msrresnet", num_blocks=1), (16, 64))
    with pytest.raises(LeansrError, match="extra blocks"):
        supernet_from_plain(_plain_ecbsr(), (8, 16), extra_blocks=-1)
    with pytest.raises(LeansrError, match="RGB on 0-1"):
        supernet_from_plain(create_model("ecbsr_m4c16"), (8, 16))


def test_a_supernet_deepened_by_identity_layers_is_unchanged_at_every_width_in_float64():
    supernet = supernet_from_plain(_plain_ecbsr().double(), (8, 16)).eval()
    with torch.no_grad():
        for act in supernet.acts:
            act.weight.add_(torch.rand_like(act.weight))
    deeper = supernet_from_plain(supernet, (4, 8, 16), extra_blocks=2).eval()
    assert len(deeper.convs) == len(supernet.convs) + 2 and deeper.widths == (4, 8, 16)
    x = torch.rand(1, 3, 9, 11, dtype=torch.float64)
    with torch.no_grad():
        for width in (8, 16):
            assert torch.allclose(deeper.forward_width(x, width), supernet.forward_width(x, width), atol=1e-12)
    assert torch.equal(deeper.convs[1].weight, supernet.convs[1].weight), "a supernet keeps its channel order"


def test_a_supernet_widened_past_its_channels_is_unchanged_at_every_width_and_trains_the_new_ones():
    supernet = supernet_from_plain(_plain_ecbsr().double(), (8, 16)).eval()
    wider = supernet_from_plain(supernet, (8, 16, 24), extra_blocks=1).eval()
    assert wider.widths == (8, 16, 24) and wider.convs[1].weight.shape[:2] == (24, 24)
    x = torch.rand(1, 3, 9, 11, dtype=torch.float64)
    with torch.no_grad():
        for width in (8, 16):
            assert torch.allclose(wider.forward_width(x, width), supernet.forward_width(x, width), atol=1e-12)
        assert torch.allclose(wider.forward_width(x, 24), supernet.forward_width(x, 16), atol=1e-12)
    assert torch.equal(wider.convs[1].weight[16:, :16], wider.convs[1].weight[:8, :16]), "copies of the first"
    with pytest.raises(LeansrError, match="can grow to 32 at most"):
        supernet_from_plain(supernet, (8, 16, 40))
    wider.forward_width(x, 24).square().mean().backward()
    assert wider.convs[-1].weight.grad[:, 16:].abs().sum() > 0, "the weights out of the new channels learn"
