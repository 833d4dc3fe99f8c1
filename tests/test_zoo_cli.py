"""`leansr list` and `leansr convert`."""

import numpy as np
import pytest
import torch

from conftest import shared_path
from leansr import cli, load_model


def test_list_shows_models_scales_and_official_checkpoints(capsys):
    assert cli.main(["list"]) == 0
    rows = {line.split()[0]: line.split()[1:] for line in capsys.readouterr().out.splitlines()[1:]}
    assert rows["rlfn_ntire"][0] == "2,3,4" and "rlfn_ntire_x4.pth" in rows["rlfn_ntire"][1:]
    assert rows["bicubic"][1] == "-"


def test_list_with_a_pattern_that_matches_nothing_fails(capsys):
    assert cli.main(["list", "nothing-*"]) == 2
    assert "no registered model matches" in capsys.readouterr().err


@pytest.mark.reference
def test_convert_official_checkpoint_keeps_outputs(tmp_path, capsys):
    source = shared_path("weights", "bytedance-RLFN", "rlfn_ntire_x4.pth")
    target = tmp_path / "rlfn.safetensors"
    assert cli.main(["convert", str(source), str(target)]) == 0
    assert "rlfn_ntire, x4" in capsys.readouterr().out
    original, converted = load_model(source), load_model(target)
    assert converted.hparams == original.hparams
    x = torch.from_numpy(np.random.default_rng(0).random((1, 3, 12, 9), dtype=np.float32))
    with torch.no_grad():
        assert torch.equal(converted(x), original(x))


def test_convert_refuses_to_overwrite_and_reports_bad_input(tmp_path, capsys):
    existing = tmp_path / "out.safetensors"
    existing.write_bytes(b"keep me")
    bad = tmp_path / "bad.pth"
    bad.write_text("not a checkpoint")
    assert cli.main(["convert", str(bad), str(existing)]) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err
    assert cli.main(["convert", str(bad), str(tmp_path / "new.safetensors"), "--force"]) == 2
    err = capsys.readouterr().err
    assert "is not a PyTorch or safetensors checkpoint" in err and err.count("\n") == 1
    assert existing.read_bytes() == b"keep me" and not (tmp_path / "new.safetensors").exists()
