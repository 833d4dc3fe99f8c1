"""Training ARM supernets with `leansr train`: width sampling (official cost^2, sandwich) and resume."""

from __future__ import annotations

from collections import Counter

import pytest
import torch
from train_helpers import write_images

from leansr import create_model
from leansr.train.config import load_config
from leansr.train.supernet import step_widths
from leansr.train.trainer import Trainer



def tiny_config(train_dir, out, *extra):
    """A 16-channel FSRCNN supernet on 8-px LR patches: a step takes milliseconds."""
    return load_config(None, [
        "model.name=arm_fsrcnn", "model.args.channels=16", "model.args.widths=[8,12,16]", "model.scale=4",
        f"data.train={train_dir}", "data.patch_size=8", "data.batch_size=4", "data.workers=0",
        "stage1.iters=6", "stage1.lr=1e-3", "stage1.schedule=cosine", "stage2.iters=0", "ema_decay=0.9",
        "log_every=2", "val_every=0", "checkpoint_every=3", f"output={out}", *extra,
    ])


@pytest.fixture(scope="module")
def train_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hr")
    write_images(folder, count=3, size=(48, 56))
    return folder


def test_official_sampling_follows_squared_costs():
    model = create_model("arm_carn")
    drawn = Counter(step_widths(model, "cost2", 0, i)[0] for i in range(4000))
    share = {w: drawn[w] / 4000 for w in model.widths}
    # C = 380 / 772 / 1155 MFLOPs: p = C^2 / sum C^2 = 0.07 / 0.29 / 0.64
    assert share[36] == pytest.approx(0.068, abs=0.02) and share[64] == pytest.approx(0.64, abs=0.03)
    assert step_widths(model, "cost2", 0, 7) == step_widths(model, "cost2", 0, 7)  # exact resume
    assert step_widths(model, "sandwich", 0, 3)[:2] == [64, 36] and step_widths(model, "sandwich", 0, 3)[2] == 52


@pytest.mark.parametrize("sampling", ["cost2", "sandwich"])
def test_supernet_trains_every_width_and_resumes_exactly(train_dir, tmp_path, sampling):
    extra = [f"supernet.sampling={sampling}"]
    straight = Trainer(tiny_config(train_dir, tmp_path / "a", *extra), tmp_path / "a")
    before = {k: v.clone() for k, v in straight.model.state_dict().items()}
    straight.train()
    after = straight.model.state_dict()
    # Filters only the narrowest width uses still learned; the bicubic route has no weights.
    assert not torch.equal(before["head_conv.0.weight"][:8], after["head_conv.0.weight"][:8])
    run = tmp_path / "b"
    Trainer(tiny_config(train_dir, run, *extra), run).train(max_steps=4)
    resumed = Trainer(tiny_config(train_dir, run, *extra), run, resume=True)
    resumed.train()
    for key, value in straight.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key
