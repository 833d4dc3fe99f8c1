"""Training reliability: one run per folder, divergence, every setting checked, data checked up front,
checkpoints at stage ends and on stop, output errors as one line (issue 9: items 2, 4, 8, 11, 12, 13, 15)."""

from __future__ import annotations

import errno
import json
import logging
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from train_helpers import tiny_config, write_images

from leansr.cli import main
from leansr.errors import LeansrError
from leansr.train import checkpoints
from leansr.train.config import load_config
from leansr.train.guards import TrainingDiverged
from leansr.train.trainer import Trainer

BASE = ["model.name=ecbsr_m4c8", "model.args.in_channels=3", "model.args.img_range=1.0", "data.patch_size=8",
        "data.batch_size=2", "data.workers=0", "stage1.iters=3", "log_every=1", "val_every=0"]


@pytest.fixture(scope="module")
def train_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hr")
    write_images(folder, count=3, size=(48, 56))
    return folder


def _strict_json(line: str):
    def refuse(token):
        raise ValueError(f"non-standard JSON token {token}")

    return json.loads(line, parse_constant=refuse)


# -- item 2: one run per folder ------------------------------------------------------------------------------
def test_second_run_into_a_locked_folder_is_refused(train_dir, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    # Another process holds the lock, as a concurrent `leansr train -o run` would.
    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, os, sys, time\n"
        f"fd = os.open({str(run / '.lock')!r}, os.O_RDWR | os.O_CREAT)\n"
        "fcntl.lockf(fd, fcntl.LOCK_EX)\nos.write(fd, b'4242')\nprint('locked', flush=True)\ntime.sleep(60)\n")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert main(["train", *BASE, f"data.train={train_dir}", "-o", str(run)]) == 2
        err = capsys.readouterr().err
        assert "in use by another training run (pid 4242)" in err and err.count("\n") == 1
        assert not (run / "config.yaml").exists() and not (run / "log.jsonl").exists()
    finally:
        holder.kill()
        holder.wait()
    # The holder is gone (as after kill -9): its lock went with it.
    assert main(["train", *BASE, f"data.train={train_dir}", "-o", str(run)]) == 0


def test_a_finished_run_is_not_overwritten_without_resume(train_dir, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", *BASE, f"data.train={train_dir}", "-o", str(run)]) == 0
    before = (run / "model.safetensors").read_bytes()
    assert main(["train", *BASE, f"data.train={train_dir}", "-o", str(run)]) == 2
    assert "already holds a run; pass --resume" in capsys.readouterr().err
    assert (run / "model.safetensors").read_bytes() == before


# -- item 4: divergence --------------------------------------------------------------------------------------
def test_divergence_stops_keeps_the_last_good_checkpoint_and_exports_nothing(train_dir, tmp_path, capsys):
    run = tmp_path / "run"
    args = ["train", *BASE, f"data.train={train_dir}", "stage1.iters=20", "checkpoint_every=1",
            "stage1.lr=1e30", "-o", str(run)]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "training diverged" in err[0]
    assert not (run / "model.safetensors").exists() and not (run / "model_fused.safetensors").exists()
    for _, path in checkpoints.list_checkpoints(run):
        state = torch.load(path, weights_only=True)
        assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    for line in (run / "log.jsonl").read_text().splitlines():
        _strict_json(line)


def test_nan_loss_is_caught_before_anything_is_saved(train_dir, tmp_path, monkeypatch):
    trainer = Trainer(tiny_config(train_dir, tmp_path / "r"), tmp_path / "r")
    with torch.no_grad():
        next(trainer.model.parameters()).fill_(float("nan"))
    with pytest.raises(TrainingDiverged, match="the loss is nan; no checkpoint was written"):
        trainer.train()
    assert checkpoints.list_checkpoints(tmp_path / "r") == []


def test_log_never_holds_nan_tokens(train_dir, tmp_path):
    trainer = Trainer(tiny_config(train_dir, tmp_path / "r"), tmp_path / "r")
    trainer._write_log({"event": "train", "iter": 1, "loss": float("nan"), "lr": float("inf")})
    record = _strict_json(trainer.log_path.read_text().splitlines()[-1])
    assert record["loss"] is None and record["lr"] is None
    trainer._release_lock()


def test_a_log_line_torn_by_kill_9_is_skipped(train_dir, tmp_path):
    run = tmp_path / "r"
    Trainer(tiny_config(train_dir, run), run).train(max_steps=3)
    with open(run / "log.jsonl", "a") as f:
        f.write('{"event": "train", "iter": 4, "lo')  # the process died mid-write
    resumed = Trainer(tiny_config(train_dir, run), run, resume=True)
    resumed.train()
    lines = (run / "log.jsonl").read_text().splitlines()
    assert all(_strict_json(line)["iter"] for line in lines) and (run / "curves.png").is_file()


# -- item 12: every setting checked --------------------------------------------------------------------------
@pytest.mark.parametrize("override, message", [
    ("stage1.betas=[0.9]", "stage1.betas must be two numbers"),
    ("stage2.betas=[0.9,1.5]", "stage2.betas must be two numbers"),
    ("data.workers=-1", "data.workers must be >= 0"),
    ("checkpoint_every=0", "checkpoint_every must be at least 1"),
    ("log_every=0", "log_every must be at least 1"),
    ("keep_checkpoints=0", "keep_checkpoints must be at least 1"),
    ("val_every=-5", "val_every must be >= 0"),
    ("stage1.lr=nan", "stage1.lr must be a positive finite number"),
    ("stage1.lr=inf", "stage1.lr must be a positive finite number"),
    ("stage1.lr=-1", "stage1.lr must be a positive finite number"),
    ("stage1.weight_decay=nan", "stage1.weight_decay must be a finite number >= 0"),
    ("stage1.grad_clip=-1", "stage1.grad_clip must be"),
    ("stage1.gamma=0", "stage1.gamma must be a positive"),
    ("stage1.milestones=[-3]", "stage1.milestones must be >= 0"),
    ("ema_decay=nan", "ema_decay must be in [0, 1)"),
    ("device=mps", "device must be auto, cpu, cuda or cuda:N"),
    ("threads=-2", "threads must be >= 0"),
    ("model.args.act=gelu", "model.args do not build ecbsr_m4c8: act must be one of"),
    ("model.args.in_channels=-3", "in_channels=-3 is out of range"),
    ("model.args.num_channels=8", "model ecbsr_m4c8 has no argument 'num_channels'"),
])
def test_bad_settings_are_refused_in_one_line(override, message, capsys, tmp_path):
    assert main(["train", *BASE, f"data.train={tmp_path}", override, "-o", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "r").exists()


def test_non_utf8_and_broken_yaml_configs(tmp_path, capsys):
    latin = tmp_path / "latin.yaml"
    latin.write_bytes("seed: 1 # caf\xe9\n".encode("latin-1"))
    assert main(["train", str(latin)]) == 2
    assert "is not UTF-8 text" in capsys.readouterr().err
    broken = tmp_path / "broken.yaml"
    broken.write_text("stage1: {iters: [\n")
    assert main(["train", str(broken)]) == 2
    err = capsys.readouterr().err
    assert "is not valid YAML" in err and err.count("\n") == 1
    yaml_act = tmp_path / "act.yaml"
    yaml_act.write_text("model: {name: ecbsr_m4c8, args: {act: swish}}\n")
    assert main(["train", str(yaml_act)]) == 2
    assert "act must be one of" in capsys.readouterr().err


# -- item 15: warnings, stage-end checkpoints, summary --------------------------------------------------------
def test_settings_that_cannot_take_effect_are_warned(train_dir, tmp_path, caplog):
    config = tiny_config(train_dir, tmp_path / "r", "checkpoint_every=16000", "stage1.warmup_iters=50",
                         "stage1.schedule=multistep", "stage1.milestones=[2,400]")
    with caplog.at_level(logging.WARNING, logger="leansr.train"):
        Trainer(config, tmp_path / "r")._release_lock()
    text = caplog.text
    assert "checkpoint_every=16000 exceeds the 9 iterations" in text
    assert "stage1.warmup_iters=50 is not shorter than stage1.iters=6" in text
    assert "stage1.milestones [400] lie beyond" in text


def test_checkpoint_at_each_stage_end_even_without_periodic_ones(train_dir, tmp_path, caplog):
    run = tmp_path / "r"
    trainer = Trainer(tiny_config(train_dir, run, "checkpoint_every=16000", "keep_checkpoints=5"), run)
    with caplog.at_level(logging.INFO, logger="leansr.train"):
        trainer.train()
    assert [i for i, _ in checkpoints.list_checkpoints(run)] == [6, 9]  # end of stage 1, end of stage 2
    summary = next(r.message for r in caplog.records if r.message.startswith("training ecbsr_m4c8 x4"))
    assert "parameters on cpu" in summary and "(6 L1 + 3 L2)" in summary and "3 training images" in summary


def test_stale_temp_files_of_a_killed_run_are_removed(train_dir, tmp_path):
    run = tmp_path / "r"
    Trainer(tiny_config(train_dir, run), run).train(max_steps=3)
    stale = [run / "checkpoints" / ".iter_00000006.pt.abc123.tmp", run / ".config.yaml.x1.tmp"]
    for path in stale:
        path.write_bytes(b"half a checkpoint")
    resumed = Trainer(tiny_config(train_dir, run), run, resume=True)
    assert not any(p.exists() for p in stale) and resumed.iteration == 3
    resumed._release_lock()


# -- item 8: data checked up front ---------------------------------------------------------------------------
def test_bad_validation_image_is_found_before_training(train_dir, tmp_path, capsys):
    val = tmp_path / "val"
    write_images(val, count=2, size=(32, 32))
    (val / "img1.png").write_bytes((val / "img1.png").read_bytes()[:60])  # truncated
    run = tmp_path / "r"
    assert main(["train", *BASE, f"data.train={train_dir}", f"data.val={val}", "-o", str(run)]) == 2
    err = capsys.readouterr().err
    assert "img1.png is truncated or corrupt" in err and err.count("\n") == 1
    assert checkpoints.list_checkpoints(run) == []


def test_tiny_validation_image_and_unusable_training_set(train_dir, tmp_path, capsys):
    val = tmp_path / "val"
    write_images(val, count=1, size=(5, 6))
    assert main(["train", *BASE, f"data.train={train_dir}", f"data.val={val}", "-o", str(tmp_path / "a")]) == 2
    assert "is too small for x4" in capsys.readouterr().err
    small = tmp_path / "small"
    write_images(small, count=2, size=(16, 16))
    assert main(["train", *BASE, f"data.train={small}", "-o", str(tmp_path / "b")]) == 2
    assert "none of the 2 training images is readable and at least 32px" in capsys.readouterr().err


def test_error_in_a_loader_worker_is_one_line(train_dir, tmp_path, monkeypatch, capsys):
    from leansr.train import data

    def broken(self, key):
        raise LeansrError("the disk went away")

    monkeypatch.setattr(data.PatchDataset, "__getitem__", broken)  # forked workers inherit the patch
    args = ["train", *BASE, "data.workers=1", f"data.train={train_dir}", "-o", str(tmp_path / "r")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err == "leansr: error: loading training data failed: the disk went away\n"


# -- item 11: outputs that cannot be written -------------------------------------------------------------------
def test_run_folder_under_a_file_is_one_line_exit_1(train_dir, tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert main(["train", *BASE, f"data.train={train_dir}", "-o", str(afile / "sub")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("leansr: error: ") and err.count("\n") == 1 and str(afile) in err


def test_disk_full_while_checkpointing_leaves_no_temp_file(train_dir, tmp_path, monkeypatch, capsys):
    def full(obj, path, *args, **kwargs):
        with open(path, "wb") as f:
            f.write(b"partial")
        raise RuntimeError("PytorchStreamWriter failed writing file data/3: file write failed")

    monkeypatch.setattr(checkpoints.torch, "save", full)
    run = tmp_path / "r"
    assert main(["train", *BASE, f"data.train={train_dir}", "checkpoint_every=1", "-o", str(run)]) == 1
    err = capsys.readouterr().err
    assert "cannot write checkpoint" in err and "file write failed" in err and err.count("\n") == 1
    assert list((run / "checkpoints").iterdir()) == []


def test_no_space_left_on_export_is_one_line(train_dir, tmp_path, monkeypatch, capsys):
    import safetensors.torch

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp_path / "r" / "model.safetensors"))

    monkeypatch.setattr(safetensors.torch, "save_file", full)
    assert main(["train", *BASE, f"data.train={train_dir}", "-o", str(tmp_path / "r")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("leansr: error: No space left on device: ") and err.count("\n") == 1
    assert not any(p.name.endswith(".tmp") for p in (tmp_path / "r").iterdir())


# -- item 13: SIGTERM to the whole process group (as `timeout 40 leansr train ...`) -------------------------
@pytest.mark.slow
def test_sigterm_to_the_process_group_checkpoints_without_traceback(train_dir, tmp_path):
    run = tmp_path / "run"
    command = [sys.executable, "-m", "leansr", "train", *BASE, f"data.train={train_dir}", "data.workers=2",
               "stage1.iters=100000", "checkpoint_every=100000", "log_every=10", "threads=1", "-o", str(run)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    deadline = time.monotonic() + 240
    while not (run / "log.jsonl").is_file() and time.monotonic() < deadline:
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 0, err[-2000:]
    assert "Traceback" not in err and "stopped at iteration" in err
    assert len(checkpoints.list_checkpoints(run)) == 1


def test_config_validation_runs_without_a_data_folder():
    # load_config alone (no Trainer) already refuses impossible settings
    with pytest.raises(LeansrError, match="betas"):
        load_config(None, ["stage1.betas=[0.9,0.99,0.5]"])
