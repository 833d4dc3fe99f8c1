"""The AIM 2020 methods: LatticeNet's size, the kernel-basis schedule in `leansr train`, FIMDN's two-stage recipe."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from train_helpers import write_images

import leansr
from leansr.checkpoint import read_state_dict
from leansr.cli import main
from leansr.errors import LeansrError
from leansr.layers.kernel_basis import KernelBasisConv2d
from leansr.layers.reparam import is_reparameterized
from leansr.loading import load_model
from leansr.train import checkpoints
from leansr.train.basis_schedule import grow, kernel_basis_convs
from leansr.train.config import load_config
from leansr.train.trainer import Trainer

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
SCHEDULE = {"stages": [{"bases": 2, "iters": 3}, {"add_bases": 1, "iters": 3}, {"add_bases": 2, "iters": 2}]}


@pytest.fixture(scope="module")
def train_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hr")
    write_images(folder, count=3, size=(48, 56))
    return folder


def _kb_config_file(folder: Path, train_dir: Path, **extra) -> Path:
    raw = {
        "model": {"name": "imdn_kb", "scale": 4, "args": {"channels": 8, "num_blocks": 1, "groups": 2}},
        "data": {"train": [str(train_dir)], "patch_size": 8, "batch_size": 2, "workers": 0},
        "kernel_basis": SCHEDULE,
        "stage1": {"lr": 1e-3, "schedule": "cosine", "warmup_iters": 1},
        "stage2": {"iters": 2},
        "ema_decay": 0.9, "log_every": 2, "val_every": 0, "checkpoint_every": 2, "keep_checkpoints": 4,
        "threads": 1, **extra,
    }
    path = folder / "kb.yaml"
    folder.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(raw))
    return path


def _weights(trainer: Trainer) -> dict[str, torch.Tensor]:
    return {**trainer.model.state_dict(), **{f"ema.{k}": v for k, v in trainer.ema.module.state_dict().items()}}


# ---- models --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("scale,published", [(2, 756), (3, 765), (4, 777)])
def test_latticenet_default_matches_the_paper_size(scale, published):
    model = leansr.create_model("latticenet", scale=scale)
    assert round(sum(p.numel() for p in model.parameters()) / 1000) == published  # paper, Table: K params


def test_fimdn_forms_deploy_to_one_layout():
    keys = set()
    for conv in ("acb", "plain", "basis"):
        model = leansr.create_model("fimdn", channels=16, num_blocks=2, conv=conv)
        keys.add(tuple(leansr.reparameterize_model(model).state_dict()))
    assert len(keys) == 1
    with pytest.raises(ValueError, match="conv must be one of"):
        leansr.create_model("fimdn", conv="ecb")


# ---- kernel-basis growth ---------------------------------------------------------------------------------


def test_xavier_bases_and_uniform_reweighting():
    conv = KernelBasisConv2d(6, 12, 3, stages=(3,), groups=3, init="xavier")
    bound = (6.0 / (2 * 9 + 12 * 9)) ** 0.5  # Xavier fans of one (12, 6/3, 3, 3) kernel
    assert conv.bases[0].abs().max() <= bound and conv.bases[0].abs().max() > 0.8 * bound
    assert torch.equal(conv.coefficients[0], torch.full((3,), 1 / 3))
    conv.add_stage(2, freeze_previous=False)
    conv.reweight_uniform()
    assert conv.stages == (3, 2) and all(torch.all(c == 1 / 5) for c in conv.coefficients)
    assert all(p.requires_grad for p in conv.parameters())


def test_grow_is_deterministic_and_records_the_layout():
    a = leansr.create_model("imdn_kb", channels=8, num_blocks=1, groups=2, basis_stages=[2])
    b = leansr.create_model("imdn_kb", channels=8, num_blocks=1, groups=2, basis_stages=[2])
    b.load_state_dict(a.state_dict())
    x = torch.rand(1, 3, 6, 7)
    before = a(x)
    torch.manual_seed(123)
    assert grow(a, [2, 1, 2], seed=5) and not grow(a, [2, 1, 2], seed=5)  # idempotent
    torch.manual_seed(456)  # the global RNG plays no part
    grow(b, [2, 1], seed=5)
    grow(b, [2, 1, 2], seed=5)
    assert all(torch.equal(a.state_dict()[k], v) for k, v in b.state_dict().items())
    assert all(conv.stages == (2, 1, 2) for conv in kernel_basis_convs(a))
    assert a.hparams["basis_stages"] == [2, 1, 2]
    assert not torch.allclose(a(x), before)  # new random bases and 1/N re-weighting change the function
    with pytest.raises(LeansrError, match="do not fit"):
        grow(a, [3, 1], seed=5)


# ---- config --------------------------------------------------------------------------------------------


def test_schedule_config(tmp_path, train_dir):
    config = load_config(_kb_config_file(tmp_path, train_dir))
    assert [s.iters for s in config.kernel_basis.stages] == [3, 3, 2] and config.kernel_basis.stages[1].add_bases == 1
    assert config.stage1.iters == 8 and config.model.args["basis_stages"] == [2]
    bad = {
        "kernel_basis.stages[0] must set bases": {"kernel_basis": {"stages": [{"add_bases": 2, "iters": 3}]}},
        "must set add_bases >= 1": {"kernel_basis": {"stages": [{"bases": 2, "iters": 3}, {"bases": 1, "iters": 1}]}},
        "no kernel-basis convolutions": {"model": {"name": "imdn"}},
        "expects a mapping": {"kernel_basis": {"stages": [3]}},
    }
    for message, change in bad.items():
        raw = yaml.safe_load(_kb_config_file(tmp_path, train_dir).read_text())
        raw.update(change)
        (tmp_path / "bad.yaml").write_text(yaml.safe_dump(raw))
        with pytest.raises(LeansrError, match=re.escape(message)):
            load_config(tmp_path / "bad.yaml")


def test_schedule_needs_kernel_basis_convs(tmp_path, train_dir):
    fimdn_acb = {"name": "fimdn", "scale": 4, "args": {"channels": 8, "num_blocks": 1, "conv": "acb"}}
    config = load_config(_kb_config_file(tmp_path, train_dir, model=fimdn_acb))
    with pytest.raises(LeansrError, match="kernel-basis ones"):
        Trainer(config, tmp_path / "r")


# ---- training ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dropped", [1, 3], ids=["resume-mid-stage-2", "resume-in-stage-1-then-grow"])
def test_schedule_resume_is_bit_identical(tmp_path, train_dir, dropped):
    path = _kb_config_file(tmp_path, train_dir)
    straight = Trainer(load_config(path), tmp_path / "straight")
    straight.train()
    run = tmp_path / "interrupted"
    Trainer(load_config(path), run).train(max_steps=5)  # stage 2 of the schedule runs iterations 3-5
    found = checkpoints.list_checkpoints(run)
    assert [i for i, _ in found] == [2, 3, 4, 5]  # periodic, end of basis stage 1, periodic, on stop
    for _, file in found[-dropped:]:  # as after kill -9 between checkpoints
        file.unlink()
    resumed = Trainer(load_config(path), run, resume=True)
    assert resumed.iteration == {1: 4, 3: 2}[dropped]
    resumed.train()
    a, b = _weights(straight), _weights(resumed)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert all(conv.stages == (2, 1, 2) for conv in kernel_basis_convs(resumed.model))
    exported = load_model(run / "model.safetensors")
    assert exported.hparams["basis_stages"] == [2, 1, 2]
    assert is_reparameterized(load_model(run / "model_fused.safetensors").model)


def test_deploy_merges_the_grown_bases(tmp_path, train_dir, capsys):
    path = _kb_config_file(tmp_path, train_dir, stage2={"iters": 0})
    run = tmp_path / "run"
    assert main(["train", str(path), "-o", str(run)]) == 0
    target = tmp_path / "deployed.safetensors"
    assert main(["deploy", "--weights", str(run / "model.safetensors"), "-o", str(target)]) == 0
    assert "fused" in capsys.readouterr().out
    trained, deployed = load_model(run / "model.safetensors"), load_model(target)
    assert deployed.deployed and not any(isinstance(m, KernelBasisConv2d) for m in deployed.model.modules())
    x = torch.rand(1, 3, 9, 8)
    with torch.no_grad():
        torch.testing.assert_close(deployed(x), trained(x), atol=1e-5, rtol=1e-4)


def test_fimdn_two_stage_recipe_runs_end_to_end(tmp_path, train_dir):
    tiny = ["model.args.channels=8", "model.args.num_blocks=1", f"data.train={train_dir}", "data.patch_size=8",
            "data.batch_size=2", "data.workers=0", "stage1.iters=4", "stage1.milestones=[2]", "stage2.iters=3",
            "stage2.milestones=[1]", "val_every=0", "checkpoint_every=2", "log_every=1", "threads=1"]
    straight = Trainer(load_config(CONFIGS / "fimdn.yaml", tiny), tmp_path / "a")
    assert not is_reparameterized(straight.model)
    straight.train()
    assert is_reparameterized(straight.model) and is_reparameterized(straight.ema.module)
    partial = Trainer(load_config(CONFIGS / "fimdn.yaml", tiny), tmp_path / "b")
    partial.train(max_steps=3)
    resumed = Trainer(load_config(CONFIGS / "fimdn.yaml", tiny), tmp_path / "b", resume=True)
    resumed.train()  # crosses the fusion
    a, b = _weights(straight), _weights(resumed)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    exported = load_model(tmp_path / "a" / "model.safetensors")
    assert exported.deployed and is_reparameterized(exported.model)
    assert not (tmp_path / "a" / "model_fused.safetensors").exists()


def test_resume_fused_stage_with_cli(tmp_path, train_dir):
    args = ["train", str(CONFIGS / "fimdn.yaml"), "model.args.channels=8", "model.args.num_blocks=1",
            f"data.train={train_dir}", "data.patch_size=8", "data.batch_size=2", "data.workers=0",
            "stage1.iters=2", "stage2.iters=3", "checkpoint_every=1", "val_every=0", "-o", str(tmp_path / "r")]
    assert main([*args, "--max-steps", "4"]) == 0  # stops inside the fused stage
    assert main(["train", "--resume", str(tmp_path / "r")]) == 0
    assert load_model(tmp_path / "r" / "model.safetensors").deployed


@pytest.mark.slow
def test_kill_9_mid_basis_stage_then_resume_is_bit_identical(tmp_path, train_dir):
    schedule = {"stages": [{"bases": 2, "iters": 20}, {"add_bases": 2, "iters": 40}, {"add_bases": 1, "iters": 10}]}
    path = _kb_config_file(tmp_path, train_dir, kernel_basis=schedule, checkpoint_every=5, stage2={"iters": 0})

    def cli(run):
        return [sys.executable, "-m", "leansr", "train", str(path), "-o", str(run)]

    subprocess.run(cli(tmp_path / "straight"), check=True, capture_output=True, timeout=300)
    killed = tmp_path / "killed"
    process = subprocess.Popen(cli(killed), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and process.poll() is None:
        found = checkpoints.list_checkpoints(killed)
        if found and found[-1][0] >= 30:  # inside the second basis stage (iterations 21-60)
            break
        time.sleep(0.05)
    process.kill()
    process.wait()
    assert not (killed / "model.safetensors").exists(), "the run finished before it could be killed"
    subprocess.run([sys.executable, "-m", "leansr", "train", "--resume", str(killed)], check=True,
                   capture_output=True, timeout=300)
    a = read_state_dict(tmp_path / "straight" / "model.safetensors")[0]
    b = read_state_dict(killed / "model.safetensors")[0]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
