"""Quantization-aware fine-tuning: the fake int8 rounding, which convs get it, and a run through `leansr train`."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from train_helpers import tiny_config, write_images

from leansr import create_model, load_model, save_checkpoint
from leansr.deploy.qat import (FakeQuantConv2d, fake_quant_activation, fake_quant_weight, quant_aware,
                               strip_fake_quant)
from leansr.train.config import load_config
from leansr.train.trainer import Trainer


def test_weights_round_per_channel_to_int8_with_straight_through_gradients():
    torch.manual_seed(0)
    w = (torch.randn(6, 4, 3, 3) * torch.tensor([1e-3, 0.1, 1, 10, 100, 1e4]).view(6, 1, 1, 1)).requires_grad_()
    q = fake_quant_weight(w)
    scale = w.detach().abs().amax(dim=(1, 2, 3), keepdim=True) / 127
    levels = q.detach() / scale
    assert torch.allclose(levels, levels.round(), atol=1e-3) and levels.abs().max() <= 127 + 1e-3
    assert torch.allclose(q.detach().abs().amax(dim=(1, 2, 3)), w.detach().abs().amax(dim=(1, 2, 3)))
    assert (q.detach() - w.detach()).abs().le(scale / 2 + 1e-6).all()
    q.sum().backward()
    assert torch.equal(w.grad, torch.ones_like(w))


def test_activations_take_at_most_256_levels_with_zero_exact():
    x = (torch.randn(2, 3, 16, 16) * 3 + 1).requires_grad_()
    q = fake_quant_activation(x)
    assert q.detach().unique().numel() <= 256
    assert fake_quant_activation(torch.zeros(1, 1, 2, 2)).eq(0).all()
    relu = torch.relu(x.detach())
    assert fake_quant_activation(relu)[relu == 0].eq(0).all()
    assert (q.detach() - x.detach()).abs().max() <= (x.max() - x.min()).item() / 255 / 2 + 1e-5
    q.sum().backward()
    assert torch.equal(x.grad, torch.ones_like(x))


def test_every_conv_but_the_first_and_last_is_fake_quantized_and_keys_stay():
    torch.manual_seed(0)
    model = create_model("msrresnet", num_blocks=2, channels=16).eval()
    keys = list(model.state_dict())
    x = torch.rand(1, 3, 12, 12)
    with torch.no_grad():
        before = model(x)
    chosen = quant_aware(model, torch.rand(1, 3, 8, 8))
    assert chosen == ["body.0.conv1", "body.0.conv2", "body.1.conv1", "body.1.conv2", "upconv1", "upconv2",
                      "conv_hr"]
    assert type(model.conv_first) is nn.Conv2d and type(model.body[0].conv1) is FakeQuantConv2d
    assert list(model.state_dict()) == keys
    with torch.no_grad():
        after = model(x)
    assert 0 < (after - before).abs().max() < 0.05  # int8 rounding: small, but not nothing
    strip_fake_quant(model)
    with torch.no_grad():
        assert torch.equal(model(x), before)


def test_quant_aware_training_exports_the_plain_model(tmp_path):
    data = tmp_path / "hr"
    write_images(data, count=2, size=(48, 56))
    torch.manual_seed(1)
    start = save_checkpoint(create_model("ecbsr_m4c8", in_channels=3, img_range=1.0), tmp_path / "start.safetensors")
    run = tmp_path / "run"
    config = tiny_config(data, run, "model.train_fused=true", f"model.init={start}", "model.quant_aware=true",
                         f"distill.teacher={start}", "stage2.iters=0", "ema_decay=0")
    trainer = Trainer(config, run)
    assert any(type(m) is FakeQuantConv2d for m in trainer.model.modules())
    trainer.train()
    exported = load_model(run / "model.safetensors").model
    assert not any(type(m) is FakeQuantConv2d for m in exported.modules())
    x = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        assert not torch.allclose(exported(x), load_model(start).model(x))  # trained: the weights moved


@pytest.mark.reference
def test_an_official_checkpoint_starts_a_run(tmp_path):
    from conftest import shared_path

    official = shared_path("weights", "bytedance-RLFN", "rlfn_ntire_x4.pth")
    data = tmp_path / "hr"
    write_images(data, count=1, size=(48, 56))
    config = load_config(None, ["model.name=rlfn_ntire", f"model.init={official}", f"data.train={data}",
                                "data.patch_size=8", "data.workers=0", "stage1.iters=1", f"output={tmp_path}"])
    trainer = Trainer(config, tmp_path / "run")
    reference = load_model(official).model.state_dict()
    assert all(torch.equal(v, reference[k]) for k, v in trainer.model.state_dict().items())
