"""Benchmark evaluation: the protocol on tiny folders, the CLI, and the official/published numbers."""

from __future__ import annotations

import csv
import json
import math
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image as PILImage

from conftest import shared_path
from leansr.loading import load_model
from leansr.cli import main
from leansr.data.imresize import bicubic_degrade, imresize, mod_crop, quantize_uint8
from leansr.errors import CheckpointError, LeansrError
from leansr.metrics import psnr, ssim
from leansr.metrics.evaluate import evaluate_model
from leansr.registry import create_model


@pytest.fixture
def hr_folder(tmp_path) -> Path:
    folder = tmp_path / "Tiny"
    folder.mkdir()
    rng = np.random.default_rng(0)
    smooth = imresize(rng.random((10, 12, 3)) * 255, output_shape=(38, 45))  # not a multiple of 2 or 3
    PILImage.fromarray(quantize_uint8(smooth)).save(folder / "a.png")
    PILImage.fromarray(quantize_uint8(smooth[..., 1])).save(folder / "gray.png")
    return folder


def _expected(hr_file: Path, scale: int) -> dict[str, float]:
    """The protocol by hand: replicate gray, mod-crop, bicubic LR, bicubic SR, rounded Y metrics."""
    hr = np.asarray(PILImage.open(hr_file).convert("RGB"))
    hr = mod_crop(hr, scale)
    sr = quantize_uint8(imresize(bicubic_degrade(hr, scale).astype(np.float64), float(scale)))
    return {"psnr_y": psnr(sr, hr, border=scale), "ssim_y": ssim(sr, hr, border=scale)}


@pytest.mark.parametrize("scale", [2, 3])
def test_evaluate_model_follows_the_protocol(hr_folder, scale):
    result = evaluate_model(create_model("bicubic", scale=scale), hr_folder, scale=scale)
    assert set(result.to_json()) == {"psnr_y", "ssim_y", "psnr_rgb", "per_image"}
    assert set(result.per_image) == {"a.png", "gray.png"}
    for name, metrics in result.per_image.items():
        expected = _expected(hr_folder / name, scale)
        assert metrics.psnr_y == pytest.approx(expected["psnr_y"], abs=0.02)
        assert metrics.ssim_y == pytest.approx(expected["ssim_y"], abs=1e-3)
    assert result.psnr_y == pytest.approx(np.mean([m.psnr_y for m in result.per_image.values()]))
    assert 15 < result.psnr_rgb < result.psnr_y + 5


def test_paired_lr_and_float_convention(hr_folder, tmp_path):
    lr_folder = tmp_path / "lr"
    lr_folder.mkdir()
    for hr_file in hr_folder.iterdir():
        hr = np.asarray(PILImage.open(hr_file).convert("RGB"))
        PILImage.fromarray(bicubic_degrade(hr, 2)).save(lr_folder / hr_file.name)
    model = create_model("bicubic", scale=2)
    made = evaluate_model(model, hr_folder, scale=2)
    paired = evaluate_model(model, hr_folder, scale=2, lr_dir=lr_folder)
    assert paired.per_image == made.per_image
    unrounded = evaluate_model(model, hr_folder, scale=2, y_convention="float")
    assert unrounded.psnr_y != pytest.approx(made.psnr_y, abs=1e-4)


def test_y_only_model_gets_bicubic_chroma(hr_folder):
    # Bicubic on Y with bicubic CbCr is bicubic on RGB: resizing is linear and YCbCr affine.
    rgb = evaluate_model(create_model("bicubic", scale=2), hr_folder, scale=2)
    y_only = evaluate_model(create_model("bicubic", scale=2, in_channels=1), hr_folder, scale=2)
    assert y_only.psnr_y == pytest.approx(rgb.psnr_y, abs=0.01)


def test_scale_mismatch_and_bad_folders(hr_folder, tmp_path):
    model = create_model("bicubic", scale=2)
    with pytest.raises(LeansrError, match="x2, not x4"):
        evaluate_model(model, hr_folder, scale=4)
    with pytest.raises(LeansrError, match="no images"):
        evaluate_model(model, _empty(tmp_path), scale=2)
    with pytest.raises(LeansrError, match="does not exist"):
        evaluate_model(model, tmp_path / "absent", scale=2)
    model.train()
    evaluate_model(model, hr_folder, scale=2)
    assert model.training  # mode restored for callers that validate during training


def _empty(tmp_path: Path) -> Path:
    folder = tmp_path / "empty"
    folder.mkdir()
    (folder / "notes.txt").write_text("no images here")
    return folder


def test_cli_writes_json(hr_folder, tmp_path, capsys):
    out = tmp_path / "res" / "bicubic.json"
    code = main(["evaluate", "--model", "bicubic", "--scale", "2", "--data", str(hr_folder),
                 "--json", str(out), "--device", "cpu"])
    assert code == 0
    assert "Tiny" in capsys.readouterr().out
    result = json.loads(out.read_text())
    assert set(result) == {"model", "scale", "datasets"}
    assert result["model"] == "bicubic" and result["scale"] == 2
    tiny = result["datasets"]["Tiny"]
    assert set(tiny) == {"psnr_y", "ssim_y", "psnr_rgb", "per_image"}
    assert set(tiny["per_image"]["a.png"]) == {"psnr_y", "ssim_y", "psnr_rgb"}


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--model", "bicubic", "--scale", "2", "--data", "{missing}"], "does not exist"),
        (["--model", "bicubic", "--data", "{data}"], "--model needs --scale"),
        (["--model", "bicubic", "--scale", "5", "--data", "{data}"], "supports scales"),
        (["--weights", "{missing}", "--data", "{data}"], "does not exist"),
    ],
)
def test_cli_errors_are_one_line_exit_2(hr_folder, tmp_path, capsys, argv, message):
    paths = {"missing": str(tmp_path / "nowhere"), "data": str(hr_folder)}
    code = main(["evaluate", *[a.format(**paths) for a in argv], "--device", "cpu"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("leansr: error:") and message in err and "\n" not in err


# ---------------------------------------------------------------- reference numbers (../shared)


@pytest.mark.reference
def test_bicubic_set5_x4_matches_published():
    result = evaluate_model(create_model("bicubic", scale=4), shared_path("data", "Set5"), scale=4)
    assert result.psnr_y == pytest.approx(28.42, abs=0.01)
    assert result.ssim_y == pytest.approx(0.8104, abs=0.001)


def _official_entries() -> list[tuple[str, str]]:
    path = Path(__file__).resolve().parents[2] / "shared" / "reference" / "official_psnr.json"
    if not path.exists():
        return [("(absent)", "Set5")]
    table = json.loads(path.read_text())
    return [(stem, ds) for stem, entry in table.items() if not stem.startswith("_")
            for ds in ("Set5", "Set14", "BSD68") if ds in entry]


def _official_model(stem: str) -> torch.nn.Module:
    name, _, width = stem.partition("@")
    files = sorted(shared_path("weights").glob(f"*/{name}.*"))
    if not files:
        pytest.skip(f"no checkpoint file for {stem} under ../shared/weights")
    try:
        model = load_model(files[0])
    except CheckpointError as exc:
        if "unrecognised checkpoint layout" not in str(exc):
            raise
        pytest.skip(f"no registered model recognises {files[0].name} yet")
    if width:
        if not hasattr(model.model, "at_width"):
            pytest.skip(f"{type(model.model).__name__} has no at_width() for the {stem} sub-network")
        model = model.model.at_width(int(width))
    return model


@pytest.mark.reference
@pytest.mark.parametrize(
    "stem, dataset",
    [pytest.param(s, d, marks=[pytest.mark.slow] if d != "Set5" else [], id=f"{s}-{d}")
     for s, d in _official_entries()],
)
def test_official_checkpoints_reproduce_official_psnr(stem, dataset):
    table = json.loads(shared_path("reference", "official_psnr.json").read_text())
    entry = table[stem]
    model = _official_model(stem)
    result = evaluate_model(model, shared_path("data", dataset), scale=entry["scale"])
    assert result.psnr_y == pytest.approx(entry[dataset]["mean"], abs=0.005)
    assert result.per_image.keys() == entry[dataset]["per_image"].keys()


def _pan_log_means() -> dict[tuple[int, str], float]:
    sums: dict[tuple[int, str], list[float]] = defaultdict(list)
    with open(shared_path("reference", "pan_official_test_logs.csv"), newline="") as f:
        for row in csv.DictReader(f):
            sums[(int(row["scale"]), row["dataset"])].append(float(row["psnr_y"]))
    return {key: float(np.mean(values)) for key, values in sums.items()}


@pytest.mark.reference
@pytest.mark.parametrize(
    "scale, dataset",
    [pytest.param(s, d, marks=[pytest.mark.slow] if d != "Set5" else [], id=f"x{s}-{d}")
     for d in ("Set5", "Set14") for s in (2, 3, 4)],
)
def test_pan_reproduces_authors_logs_with_float_y(scale, dataset):
    logged = _pan_log_means()[(scale, dataset)]
    model = _official_model(f"PANx{scale}_DF2K")
    result = evaluate_model(model, shared_path("data", dataset), scale=scale, y_convention="float")
    assert result.psnr_y == pytest.approx(logged, abs=0.03)
    assert math.isfinite(result.ssim_y)
