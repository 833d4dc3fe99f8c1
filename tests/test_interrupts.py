"""Ctrl-C (SIGINT to the whole process group, as a terminal sends it) stops long commands within about a
second, with one line and exit 130, leaving no partial output (issue 9: item 18)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image
from train_helpers import write_images

pytestmark = pytest.mark.slow  # each starts a Python process that imports torch


def _images(folder, count, size):
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(folder / f"im{i:03d}.png")
    return folder


def _interrupt_when(command, ready, timeout=240):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                               start_new_session=True)
    deadline = time.monotonic() + timeout
    while not ready() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert process.poll() is None, "finished before it could be interrupted"
    sent = time.monotonic()
    os.killpg(process.pid, signal.SIGINT)
    out, err = process.communicate(timeout=60)
    return process.returncode, time.monotonic() - sent, out, err


def test_ctrl_c_stops_evaluate(tmp_path):
    data = _images(tmp_path / "Set", 400, (96, 96))
    marker = tmp_path / "started"
    command = [sys.executable, "-c", (
        "import sys, pathlib\nfrom leansr.cli import main\n"
        "import leansr.metrics.evaluate as ev\nreal = ev._load_pair\n"
        f"def spy(*a):\n    pathlib.Path({str(marker)!r}).touch()\n    return real(*a)\n"
        "ev._load_pair = spy\n"
        f"sys.exit(main(['evaluate', '--model', 'bicubic', '--scale', '4', '--data', {str(data)!r}]))\n")]
    code, took, _, err = _interrupt_when(command, marker.exists)
    assert code == 130 and took < 3.0, (code, took, err)
    assert err.strip() == "leansr: interrupted"


def test_ctrl_c_stops_data_prepare_and_leaves_nothing(tmp_path):
    src = _images(tmp_path / "src", 200, (256, 256))
    out = tmp_path / "out"
    command = [sys.executable, "-m", "leansr", "data", "prepare", str(src), "-o", str(out), "--scale", "4",
               "--sub-image", "64", "--step", "32", "--workers", "2"]
    code, took, _, err = _interrupt_when(command, lambda: any(out.glob(".prepare.*/HR/*.png")))
    assert code == 130 and took < 3.0, (code, took, err)
    assert err.strip() == "leansr: interrupted"
    assert not out.exists() or list(out.iterdir()) == []


def test_ctrl_c_stops_training_with_a_checkpoint(tmp_path):
    train_dir = tmp_path / "hr"
    write_images(train_dir, count=3, size=(48, 56))
    run = tmp_path / "run"
    command = [sys.executable, "-m", "leansr", "train", "model.name=ecbsr_m4c8", "model.args.in_channels=3",
               f"data.train={train_dir}", "data.patch_size=8", "data.batch_size=4", "data.workers=2",
               "stage1.iters=100000", "checkpoint_every=100000", "log_every=10", "threads=1", "-o", str(run)]
    code, took, _, err = _interrupt_when(command, (run / "log.jsonl").is_file)
    assert code == 130 and took < 5.0, (code, took, err)
    assert "Traceback" not in err and "stopped at iteration" in err
    assert len(list((run / "checkpoints").glob("iter_*.pt"))) == 1
