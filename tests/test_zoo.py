"""Every registered model: forward shape, gradients, checkpoint round trip (parametrized over the registry)."""

import pytest
import torch

from leansr import create_model, list_models, load_model, save_checkpoint
from leansr.registry import get_model_info

CASES = [(name, scale) for name in list_models() for scale in get_model_info(name).scales]


def _input(model, h=7, w=10, dtype=torch.float32):
    torch.manual_seed(0)
    return torch.rand(1, model.in_channels, h, w, dtype=dtype)


@pytest.mark.parametrize("name,scale", CASES, ids=[f"{n}-x{s}" for n, s in CASES])
def test_forward_shape_and_range_interface(name, scale):
    model = create_model(name, scale=scale).eval()
    x = _input(model)
    with torch.no_grad():
        y = model(x)
    assert y.shape == (1, model.in_channels, 7 * scale, 10 * scale)
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("name", list_models())
def test_gradients_reach_every_parameter(name):
    model = create_model(name).train()
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        pytest.skip(f"{name} has no trainable parameters")
    model(_input(model, 8, 8)).abs().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"no gradient for {missing[:5]}"


@pytest.mark.parametrize("name", list_models())
def test_checkpoint_round_trip(tmp_path, name):
    torch.manual_seed(1)
    model = create_model(name).eval()
    with torch.no_grad():  # non-trivial weights so a wrong load would show
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    path = save_checkpoint(model, tmp_path / f"{name}.safetensors")
    loaded = load_model(path)
    assert loaded.arch == name and loaded.hparams == model.hparams
    x = _input(model)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
