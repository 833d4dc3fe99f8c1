"""FMEN family: exact fusion of RRRB/ERB/HFAB/whole models, official deployed checkpoint, detection."""

import shutil

import numpy as np
import pytest
import torch
from conftest import SHARED, shared_path
from torch import nn

from leansr import create_model, load_model
from leansr.checkpoint import read_state_dict
from leansr.layers.hfab import HFAB, BorderPaddedBatchNorm, DeployedHFAB
from leansr.layers.reparam import is_reparameterized, reparameterize_model
from leansr.layers.rrrb import ERB, RRRB, RepConv
from leansr.models.fmen import detect_fmen
from leansr.registry import detect
from leansr.train.config import StageConfig
from leansr.train.schedule import param_groups

SIZES = [(1, 1), (2, 3), (5, 7), (9, 4)]
OFFICIAL = ("weights", "NJU-Jet-FMEN", "test_weights.pt")
OFFICIAL_PARAMS = 341_066


def _randomize(module: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial weights and BN statistics, float64, eval: the default BN (mean 0, var 1, gamma 1, beta 0)
    maps 0 to 0 and would hide a wrong border value."""
    torch.manual_seed(seed)
    module = module.double().eval()
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.2 * torch.randn_like(p))
        for bn in (m for m in module.modules() if isinstance(m, nn.BatchNorm2d)):
            bn.running_mean.normal_(0.0, 1.0)
            bn.running_var.uniform_(0.3, 3.0)
    return module


def _max_rel_error(train: nn.Module, channels: int) -> float:
    fused = reparameterize_model(train)
    assert is_reparameterized(fused)
    worst = 0.0
    for h, w in SIZES:
        x = torch.randn(2, channels, h, w, dtype=torch.float64)
        with torch.no_grad():
            ref, out = train(x), fused(x)
        assert out.shape == ref.shape
        worst = max(worst, ((out - ref).abs().max() / ref.abs().max()).item())
    return worst


def test_rrrb_fuses_exactly_into_one_conv():
    block = _randomize(RRRB(6, ratio=2))
    fused = block.fuse()
    assert isinstance(fused, RepConv) and isinstance(fused.rep_conv, nn.Conv2d)
    assert fused.rep_conv.kernel_size == (3, 3) and fused.rep_conv.padding == (1, 1)
    assert _max_rel_error(block, 6) <= 1e-10


def test_erb_fuses_exactly_into_the_official_layout():
    block = _randomize(ERB(5, ratio=3), seed=1)
    assert set(reparameterize_model(block).state_dict()) == {
        "conv1.rep_conv.weight", "conv1.rep_conv.bias", "conv2.rep_conv.weight", "conv2.rep_conv.bias",
    }
    assert _max_rel_error(block, 5) <= 1e-10


@pytest.mark.parametrize("n_erbs", [0, 2])
def test_hfab_with_batchnorm_fuses_exactly(n_erbs):
    block = _randomize(HFAB(8, 4, n_erbs), seed=2)
    fused = block.fuse()
    assert isinstance(fused, DeployedHFAB)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fused.modules())
    assert _max_rel_error(block, 8) <= 1e-10


def _after_one_adam_step(model: nn.Module, x: torch.Tensor, lr_scale: str) -> float:
    """Mean change of the output after one Adam step (learning rate 2e-5) on an arbitrary L1 loss."""
    with torch.no_grad():
        before = model(x)
    optimizer = torch.optim.Adam(param_groups(model, StageConfig(lr=2e-5, lr_scale=lr_scale)))
    (model(x) - before.flip(-1)).abs().mean().backward()
    optimizer.step()
    with torch.no_grad():
        return float((model(x) - before).abs().mean())


@pytest.mark.reference
def test_official_fmen_s_trains_only_with_per_tensor_learning_rates():
    """Its folded attention weights are ~1e-7..1e-5 beside ~0.4: Adam's step of about lr on every weight
    destroys the model, unless each tensor's rate follows its scale."""
    x = torch.rand(2, 3, 24, 24, generator=torch.Generator().manual_seed(0))
    assert _after_one_adam_step(load_model(shared_path(*OFFICIAL)).model.float(), x, "none") > 1.0
    assert _after_one_adam_step(load_model(shared_path(*OFFICIAL)).model.float(), x, "weight_rms") < 0.01


def test_zero_border_would_break_the_bn_fold():
    """Control: padding BN output with zeros (not BN(0)) is visibly wrong at the border."""
    block = _randomize(HFAB(6, 4, 0), seed=3)
    fused = block.fuse()
    x = torch.randn(1, 6, 5, 5, dtype=torch.float64)
    with torch.no_grad():
        block.bn1.zero_response = lambda t: torch.zeros(t.shape[1], dtype=t.dtype)
        wrong = block(x)
        right = fused(x)
    assert (wrong - right).abs().max() > 1e-3


def test_training_mode_border_uses_batch_statistics():
    """In training mode the border is BN(0) under the batch statistics the BN normalises with."""
    torch.manual_seed(4)
    bn = BorderPaddedBatchNorm(3).double().train()
    with torch.no_grad():
        bn.weight.uniform_(0.5, 2.0)
        bn.bias.normal_()
    x = torch.randn(2, 3, 4, 5, dtype=torch.float64) * 3 + 1
    y = bn(x)
    mean, var = x.mean(dim=(0, 2, 3)), x.var(dim=(0, 2, 3), unbiased=False)
    expected_border = bn.bias - mean * bn.weight / torch.sqrt(var + bn.eps)
    assert y.shape == (2, 3, 6, 7)
    torch.testing.assert_close(y[0, :, 0, 0], expected_border)
    torch.testing.assert_close(y[1, :, -1, 3], expected_border)


@pytest.mark.parametrize("name", ["fmen_s", "fmen"])
def test_whole_model_fuses_exactly(name):
    model = _randomize(create_model(name, scale=2), seed=5)
    with torch.no_grad():  # the head sees 0-255 inputs; keep activations in a sane range
        model.head.weight.mul_(0.02)
    fused = reparameterize_model(model)
    assert fused.deployed and not model.deployed
    for h, w in [(1, 1), (3, 5), (6, 4)]:
        x = torch.rand(1, 3, h, w, dtype=torch.float64)
        with torch.no_grad():
            ref, out = model(x), fused(x)
        assert out.shape == (1, 3, 2 * h, 2 * w)
        assert ((out - ref).abs().max() / ref.abs().max()).item() <= 1e-10


def test_fused_fmen_s_has_the_official_deployed_size():
    fused = reparameterize_model(create_model("fmen_s"))
    assert sum(p.numel() for p in fused.parameters()) == OFFICIAL_PARAMS


@pytest.mark.reference
def test_fused_fmen_s_matches_the_official_layout_exactly():
    official = torch.load(shared_path(*OFFICIAL), map_location="cpu", weights_only=True)
    fused = reparameterize_model(create_model("fmen_s")).state_dict()
    assert {k: tuple(v.shape) for k, v in fused.items()} == {k: tuple(v.shape) for k, v in official.items()}
    assert sum(v.numel() for v in official.values()) == OFFICIAL_PARAMS


def _official_sr(model: nn.Module) -> tuple[np.ndarray, np.ndarray]:
    ref = np.load(shared_path("reference", "official_outputs", "test_weights.npz"))
    x = torch.from_numpy(ref["lr"]).permute(2, 0, 1)[None].float() / 255.0
    with torch.no_grad():
        return model(x)[0].numpy(), ref["sr"]


@pytest.mark.reference
def test_official_checkpoint_reproduces_official_output(tmp_path):
    source = shared_path(*OFFICIAL)
    neutral = tmp_path / "weights.bin"
    shutil.copyfile(source, neutral)
    for path in (source, neutral):
        model = load_model(path)
        assert model.arch == "fmen_s" and model.deployed and model.scale == 4 and model.input_range == 255.0
        sr, expected = _official_sr(model)
        assert np.abs(sr - expected).max() <= 1e-4


@pytest.mark.reference
def test_ntire_challenge_layout_loads_and_matches(tmp_path):
    official = torch.load(shared_path(*OFFICIAL), map_location="cpu", weights_only=True)
    ntire = {k.replace("ERBs.", "basic_blocks.").replace("HFABs.", "hfabs."): v for k, v in official.items()}
    assert any(k.startswith("basic_blocks.0.conv1.rep_conv") for k in ntire)
    torch.save(ntire, tmp_path / "team03.pth")
    model = load_model(tmp_path / "team03.pth")
    assert model.arch == "fmen_s" and model.deployed
    sr, expected = _official_sr(model)
    assert np.abs(sr - expected).max() <= 1e-4


@pytest.mark.parametrize("name,scale", [("fmen_s", 2), ("fmen", 3)])
def test_training_and_deployed_state_dicts_are_detected(tmp_path, name, scale):
    model = create_model(name, scale=scale, attention_expand_ratio=3).eval()
    for form, sd in (("train", model.state_dict()), ("deployed", reparameterize_model(model).state_dict())):
        assert detect_fmen(sd) is not None
        detection = detect(sd)
        assert detection.arch == name
        assert detection.deployed == (form == "deployed")
        assert detection.hparams["scale"] == scale and detection.hparams["img_range"] == 255.0
        torch.save(sd, tmp_path / f"{form}.pth")
        loaded = load_model(tmp_path / f"{form}.pth")
        x = torch.rand(1, 3, 5, 6)
        with torch.no_grad():
            torch.testing.assert_close(loaded(x), model(x), rtol=1e-4, atol=1e-4)
    assert detect_fmen(model.state_dict()).hparams["attention_expand_ratio"] == 3


@pytest.mark.reference
def test_other_official_checkpoints_are_not_claimed():
    files = [p for p in sorted((SHARED / "weights").glob("*/*")) if p.name != OFFICIAL[-1]]
    if not files:
        pytest.skip("needs ../shared/weights")
    for path in files:
        state_dict, _ = read_state_dict(path)
        assert detect_fmen(state_dict) is None, path.name
