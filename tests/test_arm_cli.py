"""ARM on the command line: calibrate, upscale/evaluate with routing, and one-line errors for bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import shared_path
from PIL import Image as PILImage

from leansr import create_model, save_checkpoint
from leansr.arm.table import QualityTable, stored_table
from leansr.cli import main
from leansr.data.image_io import read_image


@pytest.fixture
def supernet(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    return save_checkpoint(create_model("arm_fsrcnn"), tmp_path / "fsrcnn.safetensors")


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    folder = tmp_path / "hr"
    folder.mkdir()
    for i in range(2):
        smooth = np.kron(rng.integers(0, 256, (8, 8, 3)), np.ones((48, 48, 1)))  # 384 x 384
        image = np.clip(smooth + rng.normal(0, 20, smooth.shape) * (np.arange(384) > 192)[:, None], 0, 255)
        PILImage.fromarray(image.astype(np.uint8)).save(folder / f"p{i}.png")
    return folder


def test_calibrate_then_upscale_within_a_budget(tmp_path, supernet, photos):
    calibrated = tmp_path / "cal.safetensors"
    assert main(["arm", "calibrate", "--weights", str(supernet), "--data", str(photos), "-o", str(calibrated),
                 "--bins", "4"]) == 0
    table = stored_table(calibrated)
    assert table is not None and table.routes == (0, 16, 36, 56) and table.mse.shape[0] == 4
    assert table.counts.sum() == 2 * 9  # 96x96 LR: 3x3 tiles of 32 px per image
    out = tmp_path / "out"
    lr = photos / "p0.png"
    assert main(["upscale", str(lr), "-o", str(out), "--weights", str(calibrated), "--budget", "0.5",
                 "--route-map", str(tmp_path / "map.png")]) == 0
    assert read_image(out / "p0_x4.png").pixels.shape == (1536, 1536, 3)
    assert read_image(tmp_path / "map.png").pixels.shape == (1536, 1536, 3)
    as_json = tmp_path / "table.json"
    assert main(["arm", "calibrate", "--weights", str(supernet), "--data", str(photos), "-o", str(as_json),
                 "--hr-scale", "0.5"]) == 0
    shrunk = QualityTable.from_json(json.loads(as_json.read_text()))
    assert shrunk.routes == (0, 16, 36, 56) and shrunk.counts.sum() == 2 * 4  # 48x48 LR: 2x2 tiles


def test_evaluate_json_has_the_routing_fields(tmp_path, supernet, photos):
    report = tmp_path / "r.json"
    assert main(["evaluate", "--weights", str(supernet), "--data", str(photos), "--width", "16",
                 "--json", str(report), "--device", "cpu"]) == 0
    entry = json.loads(report.read_text())["datasets"]["hr"]["per_image"]["p0.png"]
    assert entry["routes"] == [0, 1, 0, 0] and entry["runtime_ms"] > 0
    assert entry["cost_fraction"] == pytest.approx(21.823488 / 49.840128)


@pytest.mark.reference
def test_evaluate_official_route_reports_the_authors_metric(tmp_path):
    weights = shared_path("weights", "chenbong-ARM-Net", "arm-fsrcnn.pth")
    report = tmp_path / "r.json"
    assert main(["evaluate", "--weights", str(weights), "--data", str(shared_path("data", "Set5")),
                 "--lr-dir", str(shared_path("reference", "bicubic_lr", "Set5_x4")), "--route", "official",
                 "--k", "3.45", "--lut", str(shared_path("reference", "arm_official_lut.json")),
                 "--json", str(report), "--device", "cpu"]) == 0
    ours = json.loads(report.read_text())["datasets"]["Set5"]["per_image"]
    theirs = json.loads(shared_path("reference", "arm_official_routing.json").read_text())
    for name, expected in theirs["arm-fsrcnn"]["k=3.45"]["per_image"].items():
        if name.startswith("Set5/"):
            got = ours[name.removeprefix("Set5/")]
            assert got["routes"] == expected["counts"]
            assert abs(got["psnr_rgb_official"] - expected["psnr_rgb"]) < 0.01
            assert abs(got["psnr_y"] - expected["psnr_y"]) < 0.01  # same Y protocol on the covered region
            assert 0 < got["cost_fraction"] and got["runtime_ms"] > 0


def _other_model_lut(path: Path) -> Path:
    table = QualityTable(np.array([1.0, 9.0]), np.full((4, 2), 30.0), np.ones(2),
                         official_costs=(0.0, 380215296.0, 771563520.0, 1154875392.0))  # CARN's costs
    path.write_text(json.dumps(table.to_json()))
    return path


@pytest.mark.parametrize("options,message", [
    (["--route", "fastest", "--budget", "0.5"], "unknown route 'fastest'; use one of official, budget"),
    (["--budget", "1.5"], "--budget must be a fraction in (0, 1]"),
    (["--budget", "0"], "--budget must be a fraction in (0, 1]"),
    (["--route", "official", "--k", "1.3", "--lut", "LUT"], "it is for another model"),
    (["--width", "20"], "this supernet has widths 16, 36, 56 (0 = bicubic), not 20"),
    (["--budget", "0.5"], "routing needs an edge-to-quality table"),
])
def test_bad_routing_input_is_one_line(tmp_path, capsys, supernet, photos, options, message):
    options = [str(_other_model_lut(tmp_path / "lut.json")) if o == "LUT" else o for o in options]
    code = main(["upscale", str(photos / "p0.png"), "-o", str(tmp_path / "out"), "--weights", str(supernet),
                 *options])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and message in err[0], err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_routing_needs_a_supernet(tmp_path, capsys, photos):
    assert main(["evaluate", "--model", "bicubic", "--scale", "4", "--data", str(photos), "--width", "full"]) == 2
    assert "routing needs an ARM supernet" in capsys.readouterr().err


def test_supernet_from_the_default_model_keeps_it_as_the_full_width(tmp_path, capsys):
    out = tmp_path / "init.safetensors"
    assert main(["arm", "supernet", "-o", str(out), "--widths", "8", "32"]) == 0
    from leansr.loading import load_model, resolve_model

    supernet, default = load_model(out), resolve_model(None, None, None)
    assert supernet.arch == "arm_plain" and supernet.model.widths == (8, 32)
    x = torch.rand(1, 3, 20, 16)
    with torch.no_grad():
        assert torch.allclose(supernet.model(x), default.model(x), atol=1e-5)
    assert main(["arm", "supernet", "-o", str(out)]) == 2  # exists: never overwritten without --force
    assert "exists" in capsys.readouterr().err
    deeper = tmp_path / "deeper.safetensors"
    assert main(["arm", "supernet", "--weights", str(out), "--extra-blocks", "1", "-o", str(deeper)]) == 0
    assert len(load_model(deeper).model.convs) == len(supernet.model.convs) + 1
    other = save_checkpoint(create_model("msrresnet", num_blocks=1), tmp_path / "msrresnet.safetensors")
    assert main(["arm", "supernet", "--weights", str(other), "-o", str(tmp_path / "x.safetensors")]) == 2
    assert "from an ECBSR" in capsys.readouterr().err
