"""Every re-parameterizable block and every registered model holding one: fused == unfused (float64, eval).

Blocks are found as the subclasses of `Reparameterizable` defined in leansr; each needs an example in
`BLOCK_EXAMPLES` (a missing one fails `test_every_block_has_an_example`). Models come from the registry:
every model holding a `Reparameterizable` after `create_model` is covered with its default hyper-parameters.
"""

from __future__ import annotations

from typing import Callable

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import leansr
from leansr import cli
from leansr.layers import Reparameterizable, is_reparameterized
from leansr.layers.acb import ACB
from leansr.layers.conv_bn import ConvBN
from leansr.layers.ecb import ECB
from leansr.layers.fusion_check import randomize, relative_error
from leansr.layers.kernel_basis import KernelBasisConv2d
from leansr.registry import list_models

SIZES = [(1, 1), (7, 5), (16, 16), (9, 13)]
TOL = 1e-10

Example = Callable[[], tuple[nn.Module, int]]  # -> (block, input channels)


def _grown_kernel_basis() -> tuple[nn.Module, int]:
    block = KernelBasisConv2d(4, 6, 3, stages=(2,))
    block.add_stage(3)
    return block, 4


def _fmen_examples() -> dict[str, list[Example]]:
    # FMEN's blocks live in another family's files; referenced by name so this file imports without them.
    return {
        "leansr.layers.rrrb.RRRB": [lambda: (_cls("leansr.layers.rrrb", "RRRB")(4), 4)],
        "leansr.layers.hfab.HFAB": [lambda: (_cls("leansr.layers.hfab", "HFAB")(8, 4, 1), 8)],
    }


def _ghost_examples() -> dict[str, list[Example]]:
    from leansr.layers.ghost import GhostConv, GhostFedConv, SharedSlopePReLU

    class FoldChain(Reparameterizable):
        """A folded shift exists only between a producer and its consumer, so they fuse together."""

        def __init__(self, direction: int, fed: bool) -> None:
            super().__init__()
            self.producer = GhostConv(4, 6, direction=direction, selection="fixed")
            self.producer.fold_output = True
            if fed:
                self.consumer: nn.Module = GhostFedConv(6, 5, intrinsic=3, direction=direction)
            else:
                self.consumer = GhostConv(6, 8, direction=2, selection="fixed")
                self.consumer.fold_input = (3, direction)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.consumer(torch.relu(self.producer(x)))

        def fuse(self) -> nn.Module:
            return nn.Sequential(self.producer.fuse(), nn.ReLU(), self.consumer.fuse())

    class SlopeChain(Reparameterizable):
        """A tied PReLU between a ghost conv and its consumer: unfolded, or folded with the shift."""

        def __init__(self, direction: int | None) -> None:
            super().__init__()
            folded = direction is not None
            self.producer = GhostConv(4, 6, direction=direction, selection="fixed" if folded else "hard")
            self.act = SharedSlopePReLU(self.producer.intrinsic, self.producer.ghosts)
            self.producer.fold_output = self.act.folded = folded
            self.consumer = GhostFedConv(6, 5, intrinsic=3, direction=direction) if folded else nn.Conv2d(6, 5, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.consumer(self.act(self.producer(x)))

        def fuse(self) -> nn.Module:
            consumer = self.consumer.fuse() if isinstance(self.consumer, GhostFedConv) else self.consumer
            return nn.Sequential(self.producer.fuse(), self.act.fuse(), consumer)

    return {
        "leansr.layers.ghost.SharedSlopePReLU": [lambda d=d: (SlopeChain(d), 4) for d in (None, 1, 5)],
        "leansr.layers.ghost.GhostConv": [
            lambda: (GhostConv(4, 6), 4),
            lambda: (GhostConv(4, 7, ratio=0.3, per_channel=True), 4),
            lambda: (FoldChain(5, fed=False), 4),
        ],
        "leansr.layers.ghost.GhostFedConv": [lambda d=d: (FoldChain(d, fed=True), 4) for d in (1, 4, 5)],
    }


BLOCK_EXAMPLES: dict[str, list[Example]] = {
    "leansr.layers.ecb.ECB": [
        lambda: (ECB(3, 5), 3),
        lambda: (ECB(4, 4, with_identity=True), 4),
        lambda: (ECB(4, 4, depth_multiplier=1.5), 4),
    ],
    "leansr.layers.acb.ACB": [
        lambda: (ACB(4, 6, batch_norm=True), 4),
        lambda: (ACB(4, 6, batch_norm=False), 4),
        lambda: (ACB(3, 3, 5, batch_norm=True), 3),
    ],
    "leansr.layers.conv_bn.ConvBN": [
        lambda: (ConvBN(4, 6, 3), 4),
        lambda: (ConvBN(4, 6, (1, 3)), 4),
        lambda: (ConvBN(4, 6, 3, groups=2), 4),
    ],
    "leansr.layers.kernel_basis.KernelBasisConv2d": [
        lambda: (KernelBasisConv2d(4, 6, 3, stages=(3,)), 4),
        lambda: (KernelBasisConv2d(4, 6, 1, stages=(2, 2), bias=False), 4),
        _grown_kernel_basis,
        lambda: (KernelBasisConv2d(6, 12, 3, stages=(3, 2), groups=3, init="xavier"), 6),
    ],
    **_fmen_examples(),
    **_ghost_examples(),
}


def _cls(module: str, name: str) -> type:
    return getattr(__import__(module, fromlist=[name]), name)


def _qualname(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _block_classes() -> list[type]:
    found, stack = [], list(Reparameterizable.__subclasses__())
    while stack:
        cls = stack.pop()
        stack.extend(cls.__subclasses__())
        if cls.__module__.startswith("leansr."):
            found.append(cls)
    return sorted(set(found), key=_qualname)


def _reparam_models() -> list[str]:
    return [name for name in list_models() if not is_reparameterized(_skeleton(name))]


def _skeleton(name: str) -> nn.Module:
    """Default hyper-parameters, on the meta device where the constructor allows (no memory)."""
    try:
        with torch.device("meta"):
            return leansr.create_model(name)
    except (NotImplementedError, RuntimeError):
        return leansr.create_model(name)


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def count_flops(module: nn.Module, x: torch.Tensor) -> int:
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        module(x)
    return counter.get_total_flops()


def _inputs(channels: int) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return [torch.randn(2, channels, h, w, generator=generator, dtype=torch.float64) for h, w in SIZES]


# ---- blocks ------------------------------------------------------------------------------------------


def test_every_block_has_an_example() -> None:
    missing = [_qualname(c) for c in _block_classes() if _qualname(c) not in BLOCK_EXAMPLES]
    assert not missing, f"add examples to BLOCK_EXAMPLES in tests/test_reparam.py for {missing}"


def _block_cases() -> list:
    present = {_qualname(c) for c in _block_classes()}
    return [
        pytest.param(example, id=f"{name.rsplit('.', 1)[-1]}-{i}")
        for name, examples in BLOCK_EXAMPLES.items()
        if name in present
        for i, example in enumerate(examples)
    ]


@pytest.mark.parametrize("example", _block_cases())
def test_block_fuses_exactly(example: Example) -> None:
    block, channels = example()
    block = randomize(block)
    before = {k: v.clone() for k, v in block.state_dict().items()}
    fused = block.fuse().eval()
    assert is_reparameterized(fused) and not isinstance(fused, Reparameterizable)
    with torch.no_grad():
        for x in _inputs(channels):
            assert relative_error(fused(x), block(x)) <= TOL, f"input {tuple(x.shape)}"
    after = block.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), "fuse() must not modify the block"
    x = _inputs(channels)[2]
    assert count_params(fused) <= count_params(block)
    assert count_flops(fused, x) <= count_flops(block, x)


def test_kernel_basis_new_stage_keeps_function_and_freezes_old() -> None:
    block = randomize(KernelBasisConv2d(3, 4, 3, stages=(2,)))
    x = _inputs(3)[3]
    before = block(x)
    block.add_stage(2)
    assert block.stages == (2, 2)
    assert torch.equal(block(x), before)
    assert not block.bases[0].requires_grad and block.bases[1].requires_grad
    assert block.bases[1].dtype == torch.float64


# ---- models ------------------------------------------------------------------------------------------

REPARAM_MODELS = _reparam_models()


def test_reparam_models_are_discovered() -> None:
    assert {"ecbsr_m4c8", "ecbsr_m16c64", "imdn_acb", "fimdn", "imdn_kb"} <= set(REPARAM_MODELS)


@pytest.mark.parametrize("name", REPARAM_MODELS)
def test_model_fuses_exactly(name: str) -> None:
    model = randomize(leansr.create_model(name))
    fused = leansr.reparameterize_model(model)
    assert is_reparameterized(fused) and fused.deployed and not model.deployed
    assert not is_reparameterized(model), "reparameterize_model must not touch its argument"
    with torch.no_grad():
        for x in _inputs(model.in_channels):
            x = x.abs().clamp(max=1.0)  # models take 0-1 images
            out = fused(x)
            assert out.shape[-2:] == (x.shape[-2] * model.scale, x.shape[-1] * model.scale)
            assert relative_error(out, model(x)) <= TOL, f"input {tuple(x.shape)}"
    x = _inputs(model.in_channels)[0]
    assert count_params(fused) <= count_params(model)
    assert count_flops(fused, x) <= count_flops(model, x)


@pytest.mark.parametrize("name", REPARAM_MODELS)
def test_deployed_checkpoint_round_trip(name: str, tmp_path) -> None:
    model = randomize(leansr.create_model(name)).float()
    fused = leansr.reparameterize_model(model)
    path = leansr.save_checkpoint(fused, tmp_path / "deployed.safetensors")
    loaded = leansr.load_model(path)
    assert loaded.deployed and is_reparameterized(loaded.model)
    assert loaded.model.state_dict().keys() == fused.state_dict().keys()
    x = torch.rand(1, model.in_channels, 9, 13, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert torch.equal(loaded(x), fused(x))


# ---- leansr deploy -----------------------------------------------------------------------------------


def _training_checkpoint(tmp_path, name: str = "ecbsr_m4c8", **hparams) -> tuple:
    model = randomize(leansr.create_model(name, **hparams)).float()
    return model, leansr.save_checkpoint(model, tmp_path / "train.safetensors")


def test_deploy_cli_writes_fused_checkpoint(tmp_path, capsys) -> None:
    model, source = _training_checkpoint(tmp_path, scale=3)
    original_bytes = source.read_bytes()
    target = tmp_path / "out" / "deployed.safetensors"
    assert cli.main(["deploy", "--weights", str(source), "-o", str(target)]) == 0
    assert "wrote" in capsys.readouterr().out
    assert source.read_bytes() == original_bytes
    assert not [p for p in target.parent.iterdir() if p.name.endswith(".tmp")]
    loaded = leansr.load_model(target)
    assert loaded.deployed and is_reparameterized(loaded.model) and loaded.scale == 3
    x = torch.rand(1, 1, 8, 7)
    with torch.no_grad():
        assert relative_error(loaded(x), model(x)) <= 1e-5


def test_deploy_cli_already_deployed_is_a_noop(tmp_path, capsys) -> None:
    _, source = _training_checkpoint(tmp_path)
    deployed = tmp_path / "deployed.safetensors"
    assert cli.main(["deploy", "--weights", str(source), "-o", str(deployed)]) == 0
    again = tmp_path / "again.safetensors"
    assert cli.main(["deploy", "--weights", str(deployed), "-o", str(again)]) == 0
    assert "already deployed" in capsys.readouterr().out
    assert not again.exists()


def test_deploy_cli_model_without_reparam_blocks_is_a_noop(tmp_path, capsys) -> None:
    _, source = _training_checkpoint(tmp_path, "imdn", channels=16, num_blocks=1)
    target = tmp_path / "out.safetensors"
    assert cli.main(["deploy", "--weights", str(source), "-o", str(target)]) == 0
    assert "no re-parameterizable blocks" in capsys.readouterr().out
    assert not target.exists()


def test_deploy_cli_refuses_existing_output_and_input_as_output(tmp_path, capsys) -> None:
    _, source = _training_checkpoint(tmp_path)
    target = tmp_path / "taken.safetensors"
    target.write_bytes(b"keep me")
    assert cli.main(["deploy", "--weights", str(source), "-o", str(target)]) == 2
    assert target.read_bytes() == b"keep me"
    assert cli.main(["deploy", "--weights", str(source), "-o", str(source), "--force"]) == 2
    assert "never overwrites its input" in capsys.readouterr().err
    assert cli.main(["deploy", "--weights", str(source), "-o", str(target), "--force"]) == 0
    assert leansr.load_model(target).deployed


def test_deploy_cli_missing_input(tmp_path, capsys) -> None:
    assert cli.main(["deploy", "--weights", str(tmp_path / "nope.pth"), "-o", str(tmp_path / "o")]) == 2
    assert "does not exist" in capsys.readouterr().err
