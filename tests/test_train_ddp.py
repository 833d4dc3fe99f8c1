"""DDP on CPU: two gloo processes stay in sync and match a single process with the same total batch."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest
import torch
import torch.multiprocessing as mp
from train_helpers import tiny_config, write_images

from leansr.train.trainer import Trainer


# With the per-tensor learning rates and the spike check (its loss all-reduce) on, as the ghost recipes run.
RECIPE = ("stage1.iters=4", "stage2.iters=0", "device=cpu", "stage1.lr_scale=weight_rms", "skip_loss_spikes=20")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_main(rank: int, world_size: int, port: int, train_dir, run_dir, out_dir) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    trainer = Trainer(tiny_config(train_dir, run_dir, *RECIPE), run_dir)
    trainer.train()
    torch.save({"model": trainer.model.state_dict(), "ema": trainer.ema.module.state_dict()},
               out_dir / f"rank{rank}.pt")


def test_two_cpu_ranks_stay_in_sync_and_match_one_process(tmp_path):
    train_dir = tmp_path / "hr"
    write_images(train_dir, count=3, size=(48, 56))
    mp.spawn(_rank_main, args=(2, _free_port(), train_dir, tmp_path / "ddp", tmp_path), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    for part in ("model", "ema"):
        for key, value in ranks[0][part].items():
            assert torch.equal(value, ranks[1][part][key]), f"{part}.{key} differs between ranks"

    single = Trainer(tiny_config(train_dir, tmp_path / "one", *RECIPE), tmp_path / "one")
    single.train()
    for key, value in single.model.state_dict().items():
        torch.testing.assert_close(ranks[0]["model"][key], value, atol=1e-5, rtol=1e-4, msg=key)
    # Only rank 0 wrote the run folder.
    assert (tmp_path / "ddp" / "model_fused.safetensors").is_file()
    assert len((tmp_path / "ddp" / "log.jsonl").read_text().splitlines()) == 2


@pytest.mark.slow
def test_torchrun_cli(tmp_path):
    """The documented command: `torchrun --nproc_per_node=2 -m leansr train ...` (gloo on CPU)."""
    train_dir = tmp_path / "hr"
    write_images(train_dir, count=3, size=(48, 56))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={_free_port()}",
           "-m", "leansr", "train", "model.name=ecbsr_m4c8", "model.args.in_channels=3", f"data.train={train_dir}",
           "data.patch_size=8", "data.batch_size=4", "data.workers=0", "stage1.iters=3", "threads=1",
           "-o", str(tmp_path / "run")]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.count("run folder:") == 1  # rank 0 only
    assert (tmp_path / "run" / "model_fused.safetensors").is_file()
