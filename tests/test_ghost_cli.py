"""`leansr ghost`: bad input gets one line; a tiny convert + fine-tune + deploy run writes a loadable model."""

from __future__ import annotations

import pytest
import torch
from train_helpers import write_images

from leansr import create_model, load_model, save_checkpoint
from leansr.checkpoint import read_state_dict
from leansr.cli import main
from leansr.layers.ghost import DeployedGhostConv, FoldedShiftConv


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hr")
    write_images(folder, count=2, size=(200, 208))
    return folder


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    torch.manual_seed(0)
    model = create_model("msrresnet", channels=8, num_blocks=2)
    return save_checkpoint(model, tmp_path_factory.mktemp("w") / "tiny.safetensors")


def _one_line_error(capsys, argv: list[str], fragment: str) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and fragment in err[0], err


def test_bad_input_is_one_line(capsys, tmp_path, data_dir, weights) -> None:
    base = ["ghost", "--weights", str(weights), "--data", str(data_dir), "-o", str(tmp_path / "o.safetensors")]
    _one_line_error(capsys, [*base, "--ratio", "0"], "--ratio must be in (0, 1)")
    _one_line_error(capsys, [*base, "--ratio", "1.5"], "--ratio must be in (0, 1)")
    _one_line_error(capsys, [*base, "--minutes", "0"], "--minutes must be > 0")
    _one_line_error(capsys, [*base, "--ratio-at", "conv1"], "--ratio-at takes PATTERN=R")
    _one_line_error(capsys, [*base, "--ratio-at", "*=x"], "--ratio-at takes PATTERN=R with R a number")
    _one_line_error(capsys, [*base, "--channel-multiple", "0"], "--channel-multiple must be >= 1")
    _one_line_error(capsys, [*base, "--ratio-at", "nothing.*=0.5", "--iters", "0"], "matches none")
    no_ghost = save_checkpoint(create_model("imdn", num_blocks=1), tmp_path / "imdn.safetensors")
    _one_line_error(capsys, ["ghost", "--weights", str(no_ghost), "--data", str(data_dir),
                             "-o", str(tmp_path / "o.safetensors")], "no convertible conv")
    assert not (tmp_path / "o.safetensors").exists()


def test_tiny_quick_run_writes_a_deployed_model_and_resumes(capsys, tmp_path, data_dir, weights) -> None:
    out = tmp_path / "ghost.safetensors"
    argv = ["ghost", "--weights", str(weights), "--data", str(data_dir), "-o", str(out),
            "--iters", "2", "--threads", "1"]
    assert main(argv) == 0
    model = load_model(out).model
    assert model.arch == "ghostsr" and model.deployed
    assert model.hparams["fold"] and len(model.hparams["directions"]) == 2
    assert any(isinstance(m, FoldedShiftConv) for m in model.modules())
    meta = read_state_dict(out)[1]
    assert meta["extra"]["iterations"] == 2 and meta["extra"]["cpu_s"] >= 0
    x = torch.rand(1, 3, 9, 10)
    with torch.no_grad():
        assert model(x).shape == (1, 3, 36, 40)
    run_dir = tmp_path / "ghost.safetensors.run"
    assert (run_dir / "converted.safetensors").is_file() and (run_dir / "model.safetensors").is_file()
    # A finished run resumes to the same end and rewrites OUT (with --force only).
    assert main([*argv[:-4], "--resume", str(run_dir)]) == 2
    assert main([*argv[:-4], "--resume", str(run_dir), "--force", "--recipe", "full"]) == 0
    assert "2/2 fine-tuning steps" in capsys.readouterr().out
    assert read_state_dict(out)[1]["extra"]["recipe"] == "quick"  # a resumed run keeps its recipe
    # The same run deployed unfolded: ghost channels as tensors, the same function.
    unfolded = tmp_path / "unfolded.safetensors"
    assert main([*argv[:-5], str(unfolded), "--resume", str(run_dir), "--no-fold"]) == 0
    plain = load_model(unfolded).model
    assert not plain.hparams["fold"] and any(isinstance(m, DeployedGhostConv) for m in plain.modules())
    with torch.no_grad():
        assert (plain(x) - model(x)).abs().max() < 1e-5


def test_iters_zero_writes_the_converted_model(tmp_path, data_dir, weights) -> None:
    out = tmp_path / "converted.safetensors"
    assert main(["ghost", "--weights", str(weights), "--data", str(data_dir), "-o", str(out), "--iters", "0"]) == 0
    assert read_state_dict(out)[1]["extra"]["iterations"] == 0
    assert load_model(out).arch == "ghostsr"

