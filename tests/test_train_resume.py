"""Trainer: exact resume, fused export, run-folder contents, CLI smoke."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml
from train_helpers import tiny_config, write_images

from leansr.checkpoint import read_state_dict
from leansr.loading import load_model
from leansr.cli import main
from leansr.layers.reparam import is_reparameterized
from leansr.train import checkpoints
from leansr.train.guards import SpikeRecovery, TrainingDiverged
from leansr.train.trainer import Trainer


@pytest.fixture(scope="module")
def train_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hr")
    write_images(folder, count=3, size=(48, 56))
    return folder


def _weights(trainer):
    return {**trainer.model.state_dict(), **{f"ema.{k}": v for k, v in trainer.ema.module.state_dict().items()}}


def test_stop_and_resume_equals_a_straight_run(train_dir, tmp_path):
    config = tiny_config(train_dir, tmp_path / "straight")
    straight = Trainer(config, tmp_path / "straight")
    straight.train()

    run = tmp_path / "interrupted"
    first = Trainer(tiny_config(train_dir, run), run)
    first.train(max_steps=5)  # checkpoints at 3 (periodic) and 5 (on stop)
    assert [i for i, _ in checkpoints.list_checkpoints(run)] == [3, 5]
    # As after `kill -9` between checkpoints: the newest checkpoint is lost, the log ran ahead.
    checkpoints.list_checkpoints(run)[-1][1].unlink()
    logged = [json.loads(line)["iter"] for line in (run / "log.jsonl").read_text().splitlines()]
    assert logged == [2, 4, 5]
    resumed = Trainer(tiny_config(train_dir, run), run, resume=True)
    assert resumed.iteration == 3
    assert [json.loads(line)["iter"] for line in (run / "log.jsonl").read_text().splitlines()] == [2]
    resumed.train()  # crosses from the L1 stage into the L2 stage (new optimizer)
    assert resumed.iteration == straight.iteration == 9
    a, b = _weights(straight), _weights(resumed)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert straight.optimizer.state_dict()["state"].keys() == resumed.optimizer.state_dict()["state"].keys()


def test_resume_with_per_tensor_learning_rates(train_dir, tmp_path):
    extra = ("stage1.lr_scale=weight_rms",)
    straight = Trainer(tiny_config(train_dir, tmp_path / "straight", *extra), tmp_path / "straight")
    straight.train()
    run = tmp_path / "interrupted"
    Trainer(tiny_config(train_dir, run, *extra), run).train(max_steps=3)
    resumed = Trainer(tiny_config(train_dir, run, *extra), run, resume=True)
    assert len(resumed.optimizer.param_groups) > 2
    resumed.train()
    assert resumed.iteration == straight.iteration
    a, b = _weights(straight), _weights(resumed)
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_resume_inside_the_second_stage(train_dir, tmp_path):
    straight = Trainer(tiny_config(train_dir, tmp_path / "a"), tmp_path / "a")
    straight.train()
    partial = Trainer(tiny_config(train_dir, tmp_path / "b"), tmp_path / "b")
    partial.train(max_steps=7)
    resumed = Trainer(tiny_config(train_dir, tmp_path / "b"), tmp_path / "b", resume=True)
    assert (resumed.iteration, resumed.stage.loss) == (7, "l2")
    resumed.train()
    assert all(torch.equal(x, y) for x, y in zip(_weights(straight).values(), _weights(resumed).values()))


def test_run_folder_and_fused_export(train_dir, tmp_path):
    run = tmp_path / "run"
    trainer = Trainer(tiny_config(train_dir, run, "keep_checkpoints=1"), run)
    trainer.train()
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["model"]["name"] == "ecbsr_m4c8" and saved["stage1"]["iters"] == 6
    assert [i for i, _ in checkpoints.list_checkpoints(run)] == [9]
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert {r["event"] for r in records} == {"train"} and records[-1]["iter"] == 9
    assert (run / "curves.png").stat().st_size > 0
    branched, fused = load_model(run / "model.safetensors"), load_model(run / "model_fused.safetensors")
    assert not is_reparameterized(branched.model) and is_reparameterized(fused.model)
    assert read_state_dict(run / "model_fused.safetensors")[1]["deployed"] is True
    x = torch.rand(1, 3, 12, 10)
    with torch.no_grad():
        torch.testing.assert_close(fused(x), branched(x), atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(branched(x), trainer.ema.module.cpu()(x), atol=0, rtol=0)


def test_resume_without_checkpoints_is_an_error(train_dir, tmp_path):
    from leansr.errors import LeansrError

    with pytest.raises(LeansrError, match="nothing to resume"):
        Trainer(tiny_config(train_dir, tmp_path), tmp_path, resume=True)


def test_cli_trains_validates_and_resumes(train_dir, tmp_path, capsys):
    val = tmp_path / "val"
    write_images(val, count=1, size=(32, 36), seed=5)
    run = tmp_path / "cli"
    args = ["train", "model.name=ecbsr_m4c8", "model.args.in_channels=3", "model.args.img_range=1.0",
            f"data.train={train_dir}", f"data.val={val}", "data.patch_size=8", "data.batch_size=2",
            "data.workers=1", "stage1.iters=4", "val_every=2", "log_every=1", "-o", str(run)]
    assert main([*args, "--max-steps", "2"]) == 0
    assert main(args) == 2  # the folder already holds a run
    assert "already holds a run" in capsys.readouterr().err
    assert main(["train", "--resume", str(run)]) == 0
    vals = [r for r in map(json.loads, (run / "log.jsonl").read_text().splitlines()) if r["event"] == "val"]
    assert [r["iter"] for r in vals] == [2, 4] and all(r["psnr"]["val"] > 10 for r in vals)
    assert (run / "checkpoints" / "best.pt").is_file() and (run / "model_fused.safetensors").is_file()
    assert main(["train", "stage1.lr=fast"]) == 2
    assert "stage1.lr expects float, got 'fast'" in capsys.readouterr().err


def _cli(run, train_dir, *extra):
    return [sys.executable, "-m", "leansr", "train", "model.name=ecbsr_m4c8", "model.args.in_channels=3",
            f"data.train={train_dir}", "data.patch_size=8", "data.batch_size=4", "data.workers=1",
            "stage1.iters=60", "checkpoint_every=5", "log_every=5", "threads=1", *extra, "-o", str(run)]


def _wait_for_checkpoint(run, process, at_least):
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and process.poll() is None:
        found = checkpoints.list_checkpoints(run)
        if found and found[-1][0] >= at_least:
            return
        time.sleep(0.2)
    pytest.fail("no checkpoint appeared in time")


@pytest.mark.slow
def test_kill_9_then_resume_matches_a_straight_run(train_dir, tmp_path):
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    subprocess.run(_cli(straight, train_dir), check=True, capture_output=True, timeout=300)
    process = subprocess.Popen(_cli(killed, train_dir), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait_for_checkpoint(killed, process, 10)
    process.kill()  # SIGKILL: no chance to write anything more
    process.wait()
    assert not (killed / "model.safetensors").exists()
    subprocess.run([sys.executable, "-m", "leansr", "train", "--resume", str(killed)], check=True,
                   capture_output=True, timeout=300)
    a, b = read_state_dict(straight / "model.safetensors")[0], read_state_dict(killed / "model.safetensors")[0]
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_sigterm_checkpoints_and_exits_cleanly(train_dir, tmp_path):
    run = tmp_path / "run"
    process = subprocess.Popen(_cli(run, train_dir, "checkpoint_every=1000"), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while not (run / "log.jsonl").is_file() and time.monotonic() < deadline:
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 0, err[-1000:]
    assert "stopped at iteration" in err
    assert len(checkpoints.list_checkpoints(run)) == 1


def test_channels_last_batches_train_the_same_model(train_dir, tmp_path):
    layouts = []
    runs = {}
    for flag in ("true", "false"):
        trainer = Trainer(tiny_config(train_dir, tmp_path / flag, f"channels_last={flag}"), tmp_path / flag)
        handle = trainer.model.register_forward_pre_hook(
            lambda module, inputs: layouts.append(inputs[0].is_contiguous(memory_format=torch.channels_last)
                                                  and not inputs[0].is_contiguous()))
        trainer.train()
        handle.remove()
        runs[flag] = trainer.model.state_dict()
    assert layouts[0] and not layouts[-1]  # the layout really changed between the two runs
    for key, value in runs["true"].items():
        assert torch.allclose(value, runs["false"][key], atol=1e-5), key  # only rounding differs


def test_a_loss_spike_skips_its_step_and_resumes_the_same(train_dir, tmp_path):
    extra = ("stage1.iters=30", "skip_loss_spikes=10", "checkpoint_every=100")
    trainer = Trainer(tiny_config(train_dir, tmp_path / "run", *extra), tmp_path / "run")
    forward_backward = trainer._forward_backward

    def spiking(lr_img, hr_img):  # the loss of step 25 as if the model had exploded on that batch
        loss, sr = forward_backward(lr_img, hr_img)
        return (loss * 1e6 if trainer.iteration == 25 else loss), sr

    trainer._forward_backward = spiking
    trainer.train(max_steps=25)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.train(max_steps=1)
    assert trainer.spikes.skipped == 1
    assert all(torch.equal(before[k], v) for k, v in trainer.model.state_dict().items())
    trainer.train(max_steps=1)
    assert not all(torch.equal(before[k], v) for k, v in trainer.model.state_dict().items())
    assert trainer.spikes.skipped == 1
    resumed = Trainer(tiny_config(train_dir, tmp_path / "run", *extra), tmp_path / "run", resume=True)
    assert resumed.spikes.state_dict() == trainer.spikes.state_dict()


def test_spike_recovery_restores_a_snapshot_older_than_the_last_kept_step():
    state = {"value": 0}
    recovery = SpikeRecovery(lambda: state["value"], lambda value: state.update(value=value))
    for iteration in range(1, 201):  # snapshots at 1, 100, 200; the last two are kept
        state["value"] = iteration
        recovery.after_step(iteration, skipped=False)
    state["value"] = "broken"  # step 200 was kept and broke the model: its snapshot may hold it
    for iteration in range(201, 200 + SpikeRecovery.STREAK):
        assert recovery.after_step(iteration, skipped=True) is None
    assert recovery.after_step(200 + SpikeRecovery.STREAK, skipped=True) == 100
    assert state["value"] == 100
    for attempt in range(2, SpikeRecovery.MAX_ROLLBACKS + 2):  # it breaks again and again
        recovery.after_step(300 + attempt, skipped=False)
        skips = [recovery.after_step(400 + attempt + i, skipped=True) for i in range(SpikeRecovery.STREAK - 1)]
        assert skips == [None] * (SpikeRecovery.STREAK - 1)
        if attempt <= SpikeRecovery.MAX_ROLLBACKS:
            assert recovery.after_step(500 + attempt, skipped=True) == 100
        else:
            with pytest.raises(TrainingDiverged, match="spike for 20 steps in a row"):
                recovery.after_step(500 + attempt, skipped=True)


def test_spike_recovery_without_an_older_snapshot_stops_in_one_line():
    recovery = SpikeRecovery(lambda: "state", lambda value: None)
    recovery.after_step(1, skipped=False)  # the only snapshot is of the step that broke the model
    for iteration in range(2, 1 + SpikeRecovery.STREAK):
        recovery.after_step(iteration, skipped=True)
    with pytest.raises(TrainingDiverged, match="since iteration 1"):
        recovery.after_step(1 + SpikeRecovery.STREAK, skipped=True)


def test_a_step_that_breaks_the_model_is_rolled_back(train_dir, tmp_path):
    """Without the rollback every later loss is a spike, every step is skipped, and the broken model is
    what the run writes (a 30-minute GhostSR run did exactly that)."""
    extra = ("stage1.iters=60", "stage2.iters=0", "skip_loss_spikes=10", "checkpoint_every=100")
    trainer = Trainer(tiny_config(train_dir, tmp_path / "run", *extra), tmp_path / "run")
    forward_backward = trainer._forward_backward

    def breaking(lr_img, hr_img):  # step 31 is kept, and its update wrecks the weights
        loss, sr = forward_backward(lr_img, hr_img)
        if trainer.iteration == 30:
            with torch.no_grad():
                for p in trainer.model.parameters():
                    p.add_(5.0)
        return loss, sr

    trainer._forward_backward = breaking
    trainer.train()
    records = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    rollbacks = [r for r in records if r["event"] == "rollback"]
    assert rollbacks == [{"event": "rollback", "iter": 31 + SpikeRecovery.STREAK, "restored": 1, "last_kept": 31}]
    assert trainer.spikes.skipped == SpikeRecovery.STREAK
    assert max(p.abs().max().item() for p in trainer.model.parameters()) < 4.0
    assert [r for r in records if r["event"] == "train"][-1]["loss"] < 1.0
