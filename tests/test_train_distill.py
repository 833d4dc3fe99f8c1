"""Trainer options used by `leansr ghost`: model.init, distill.teacher / hr_weight, time_limit_min."""

from __future__ import annotations

import json

import pytest
import torch
from train_helpers import tiny_config, write_images

from leansr import LeansrError, create_model, save_checkpoint
from leansr.train import checkpoints
from leansr.train.trainer import Trainer


@pytest.fixture(scope="module")
def train_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hr")
    write_images(folder, count=2, size=(48, 56))
    return folder


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    torch.manual_seed(3)
    model = create_model("ecbsr_m4c8", in_channels=3, img_range=1.0)
    return save_checkpoint(model, tmp_path_factory.mktemp("t") / "teacher.safetensors")


def _losses(run) -> list[float]:
    return [json.loads(line)["loss"] for line in (run / "log.jsonl").read_text().splitlines()]


@pytest.mark.filterwarnings("ignore:Data has no positive values")  # the loss curve of a zero loss
def test_init_weights_and_teacher_targets(train_dir, teacher, tmp_path) -> None:
    run = tmp_path / "run"
    config = tiny_config(train_dir, run, f"model.init={teacher}", f"distill.teacher={teacher}",
                         "distill.hr_weight=0", "log_every=1", "stage1.iters=1", "stage2.iters=0")
    trainer = Trainer(config, run)
    reference = create_model("ecbsr_m4c8", in_channels=3, img_range=1.0)
    reference.load_state_dict(trainer.teacher.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(trainer.model.state_dict().values(),
                                                 reference.state_dict().values()))
    trainer.train()
    assert _losses(run) == [0.0]  # the student starts as the teacher: nothing to learn from its outputs


def test_hr_weight_mixes_the_hr_loss(train_dir, teacher, tmp_path) -> None:
    run = tmp_path / "mixed"
    config = tiny_config(train_dir, run, f"model.init={teacher}", f"distill.teacher={teacher}",
                         "distill.hr_weight=0.5", "log_every=1", "stage1.iters=1", "stage2.iters=0")
    Trainer(config, run).train()
    assert _losses(run)[0] > 0


def test_init_that_does_not_fit_is_one_sentence(train_dir, tmp_path) -> None:
    other = save_checkpoint(create_model("ecbsr_m4c16", in_channels=3), tmp_path / "other.safetensors")
    config = tiny_config(train_dir, tmp_path / "r", f"model.init={other}")
    with pytest.raises(LeansrError, match="does not fit"):
        Trainer(config, tmp_path / "r")


def test_time_limit_stops_with_a_checkpoint(train_dir, tmp_path) -> None:
    run = tmp_path / "limited"
    trainer = Trainer(tiny_config(train_dir, run, "time_limit_min=1e-9"), run)
    trainer.train()
    assert trainer.iteration == 1 < trainer.total_iters
    assert [i for i, _ in checkpoints.list_checkpoints(run)] == [1]
