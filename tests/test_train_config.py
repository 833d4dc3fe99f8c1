"""Training config: YAML + typed overrides, schedules with warm-up, EMA."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

from leansr.errors import LeansrError
from leansr.train.config import StageConfig, load_config, save_config
from leansr.train.ema import ModelEMA
from leansr.train.schedule import lr_factor, param_groups


def test_overrides_are_typed_by_field(tmp_path):
    config = load_config(None, ["stage1.lr=2e-3", "data.patch_size=32", "data.flip=false",
                                "data.train=a,b", "stage1.milestones=[10,20]", "model.name=ecbsr_m4c8"])
    assert config.stage1.lr == 2e-3 and isinstance(config.stage1.lr, float)
    assert config.data.patch_size == 32 and config.data.flip is False
    assert config.data.train == ["a", "b"] and config.stage1.milestones == [10, 20]


def test_model_args_are_typed_by_the_constructor():
    config = load_config(None, ["model.name=ecbsr_m4c8", "model.args.in_channels=3", "model.args.img_range=1"])
    assert config.model.args == {"in_channels": 3, "img_range": 1.0}
    with pytest.raises(LeansrError, match="no argument 'width'"):
        load_config(None, ["model.name=ecbsr_m4c8", "model.args.width=3"])


@pytest.mark.parametrize("item, message", [
    ("stage1.lrr=1", "unknown config key 'stage1.lrr'"),
    ("stag1.lr=1", "unknown config key 'stag1'"),
    ("stage1.iters=ten", "stage1.iters expects int, got 'ten'"),
    ("data.flip=maybe", "data.flip expects true or false"),
    ("stage1.lr", "is not KEY=VALUE"),
    ("amp=fp8", "amp must be none, bf16 or fp16"),
    ("stage1.loss=huber", "stage1.loss must be l1 or l2"),
    ("stage1.lr_scale=adaptive", "stage1.lr_scale must be none or weight_rms"),
    ("skip_loss_spikes=0.5", "skip_loss_spikes must be 0"),
])
def test_bad_overrides_give_one_clear_error(item, message):
    with pytest.raises(LeansrError, match=message):
        load_config(None, [item])


def test_yaml_file_then_overrides_and_round_trip(tmp_path):
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump({"model": {"name": "ecbsr_m4c8", "scale": 2},
                                    "stage1": {"lr": 1, "iters": 10}, "seed": 3}))
    config = load_config(path, ["seed=4"])
    assert (config.model.scale, config.stage1.lr, config.stage1.iters, config.seed) == (2, 1.0, 10, 4)
    save_config(config, tmp_path / "saved.yaml")
    assert load_config(tmp_path / "saved.yaml") == config


def test_yaml_errors_name_the_key(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"data": {"patch": 3}}))
    with pytest.raises(LeansrError, match="unknown config key 'data.patch'"):
        load_config(path)
    path.write_text(yaml.safe_dump({"stage1": {"iters": "many"}}))
    with pytest.raises(LeansrError, match="stage1.iters expects int"):
        load_config(path)


def test_warmup_then_cosine_reaches_the_floor():
    stage = StageConfig(iters=100, lr=1e-3, schedule="cosine", warmup_iters=10, min_lr=1e-5)
    f = lr_factor(stage)
    assert [f(i) for i in range(3)] == pytest.approx([0.1, 0.2, 0.3])
    assert f(9) == pytest.approx(1.0) and f(10) == pytest.approx(1.0)
    assert f(55) == pytest.approx(0.01 + 0.99 * 0.5)
    assert f(100) == pytest.approx(0.01)
    assert all(f(i) >= f(i + 1) for i in range(10, 100))


def test_multistep_with_warmup():
    stage = StageConfig(iters=100, lr=1e-3, schedule="multistep", warmup_iters=4, milestones=[50, 80], gamma=0.5)
    f = lr_factor(stage)
    assert f(0) == pytest.approx(0.25) and f(49) == 1.0 and f(50) == 0.5 and f(80) == 0.25


def test_weight_rms_scales_each_weight_tensors_lr():
    model = nn.Sequential(nn.Conv2d(2, 4, 3), nn.Conv2d(4, 4, 3), nn.Conv2d(4, 2, 1))
    with torch.no_grad():
        for conv, value in zip(model, (0.1, 1e-5, 0.2)):
            conv.weight.fill_(value)
    stage = StageConfig(lr=1e-3)
    assert [g["lr"] for g in param_groups(model, stage)] == [1e-3]
    stage.lr_scale = "weight_rms"
    groups = param_groups(model, stage)
    assert groups[0]["lr"] == 1e-3 and len(groups[0]["params"]) == 3  # the biases
    assert [g["lr"] for g in groups[1:]] == pytest.approx([1e-3, 1e-7, 2e-3])


def test_ema_matches_the_recurrence():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    ema = ModelEMA(model, decay=0.9)
    expected = model[0].weight.detach().clone()
    for step in range(5):
        with torch.no_grad():
            model[0].weight.add_(1.0)
        model[1].num_batches_tracked += 1
        d = min(0.9, (1 + step) / (10 + step))
        expected = d * expected + (1 - d) * model[0].weight.detach()
        ema.update(model)
    assert torch.allclose(ema.module[0].weight, expected)
    assert int(ema.module[1].num_batches_tracked) == 5  # integer buffers are copied
    assert not any(p.requires_grad for p in ema.module.parameters())
    clone = ModelEMA(model, decay=0.5)
    clone.load_state_dict(ema.state_dict())
    assert clone.decay == 0.9 and clone.updates == 5 and math.isclose(
        float(clone.module[0].weight.sum()), float(ema.module[0].weight.sum()))


@pytest.mark.parametrize("recipe", sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml")),
                         ids=lambda p: p.stem)
def test_shipped_recipes_load(recipe):
    config = load_config(recipe)
    assert config.stage1.iters > 0 and config.stage1.loss == "l1"
