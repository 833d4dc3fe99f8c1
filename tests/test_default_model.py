"""The packaged default models that `leansr upscale` uses when no model is named."""

import pytest

from conftest import shared_path
from leansr import LeansrError, create_model
from leansr.loading import resolve_model
from leansr.metrics.evaluate import evaluate_model


@pytest.mark.parametrize("scale", [2, 4])
def test_packaged_default_is_a_deployed_trained_model(scale):
    model = resolve_model(None, None, scale)
    assert (model.arch, model.scale, model.deployed) == ("ecbsr_m10c32", scale, True)


def test_scales_without_a_packaged_model_fall_back_to_bicubic():
    assert resolve_model(None, None, 3).arch == "bicubic"


@pytest.mark.reference
@pytest.mark.parametrize("scale", [2, 4])
def test_default_beats_bicubic_by_two_db_on_set5(scale):
    set5 = shared_path("data", "Set5")
    ours = evaluate_model(resolve_model(None, None, scale), set5, scale=scale).psnr_y
    bicubic = evaluate_model(create_model("bicubic", scale=scale), set5, scale=scale).psnr_y
    assert ours - bicubic >= 2.0, (ours, bicubic)


def test_a_bare_name_finds_a_packaged_checkpoint_unless_a_file_has_it(tmp_path, monkeypatch):
    assert resolve_model("default_x2", None, None).scale == 2
    monkeypatch.chdir(tmp_path)
    (tmp_path / "default_x2").write_bytes(b"not a checkpoint")
    with pytest.raises(LeansrError):  # the local file wins, and it is broken
        resolve_model("default_x2", None, None)
    with pytest.raises(LeansrError, match="no_such_model"):
        resolve_model("no_such_model", None, None)


def test_packaged_arm_supernet_carries_its_routing_table():
    from leansr.arm.table import stored_table
    from leansr.loading import packaged_checkpoint

    arm = resolve_model("arm_x4", None, None)
    assert (arm.arch, arm.scale, arm.model.widths) == ("arm_plain", 4, (16, 32, 48))
    table = stored_table(packaged_checkpoint("arm_x4"))
    assert table is not None and table.routes == (0, 16, 32, 48)


@pytest.mark.reference
def test_packaged_arm_supernet_full_width_is_at_least_the_default_model():
    set5 = shared_path("data", "Set5")
    arm = evaluate_model(resolve_model("arm_x4", None, None), set5, scale=4).psnr_y
    default = evaluate_model(resolve_model(None, None, 4), set5, scale=4).psnr_y
    assert arm >= default, (arm, default)


def test_packaged_ghost_default_is_folded_and_cheaper():
    from leansr.bench.counting import count_model
    from leansr.layers.ghost import FoldedShiftConv

    ghost = resolve_model("default_x4_ghost", None, None)
    assert (ghost.arch, ghost.scale, ghost.deployed) == ("ghostsr", 4, True)
    assert ghost.model.hparams["base"] == "ecbsr_m10c32" and ghost.model.hparams["fold"]
    assert sum(isinstance(m, FoldedShiftConv) for m in ghost.model.modules()) == 11  # every conv but the first
    default = resolve_model(None, None, 4)
    macs = [count_model(m.model, (1, 3, 32, 32)).ops.macs for m in (ghost, default)]
    assert macs[0] < 0.4 * macs[1], macs


@pytest.mark.reference
def test_packaged_ghost_default_is_within_0_15_db_of_the_default_on_set5():
    set5 = shared_path("data", "Set5")
    ghost = evaluate_model(resolve_model("default_x4_ghost", None, None), set5, scale=4).psnr_y
    default = evaluate_model(resolve_model(None, None, 4), set5, scale=4).psnr_y
    assert default - 0.15 <= ghost < default, (ghost, default)
