"""`leansr bench` end to end on tiny models: report files, their keys, skips, deploy, checkpoints, datasets."""

import csv
import functools
import json

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from leansr import create_model, list_models, save_checkpoint
from leansr import registry
from leansr.cli import main
from leansr.context import GLOBAL
from leansr.models.base import SRModel

FAST = ["--repeats", "2", "--warmup", "0", "--input-size", "16", "16", "--threads", "1"]
KEYS = {"name", "params", "macs", "activations", "conv", "peak_memory_mb", "runtime_ms", "threads", "device"}


class ToySR(SRModel):
    """conv 3->c, ReLU, conv c->3*s*s, pixel shuffle: MACs 27c + 9c*3s^2 per LR pixel."""

    def __init__(self, *, scale: int = 4, img_range: float = 1.0, channels: int = 4) -> None:
        super().__init__(scale=scale, img_range=img_range)
        self.body = nn.Conv2d(3, channels, 3, padding=1)
        self.tail = nn.Conv2d(channels, 3 * scale * scale, 3, padding=1)
        self.shuffle = nn.PixelShuffle(scale)

    def forward_sr(self, x: torch.Tensor) -> torch.Tensor:
        return self.shuffle(self.tail(torch.relu(self.body(x))))


def _info(name, constructor, scales):
    preset = registry.Preset(scales=scales)
    return registry.ModelInfo(name, registry.Family(name, constructor, {name: preset}, lambda hp: GLOBAL), preset)


@pytest.fixture
def toys(monkeypatch):
    """Three toy models registered for this test only (the registry is restored afterwards)."""
    for channels in (2, 4, 8):
        name = f"toy_c{channels}"
        info = _info(name, functools.partial(ToySR, channels=channels), (2, 4))
        monkeypatch.setitem(registry._MODELS, name, info)
    return [f"toy_c{c}" for c in (2, 4, 8)]


def _read(out):
    records = json.loads((out / "report.json").read_text())
    with open(out / "report.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return records, rows, (out / "report.md").read_text()


def test_reports_have_the_contract_keys_and_hand_computed_counts(tmp_path, toys, capsys):
    out = tmp_path / "bench"
    assert main(["bench", "--models", "toy_*", *FAST, "-o", str(out), "--json", str(tmp_path / "r.json")]) == 0
    records, rows, markdown = _read(out)
    assert [r["name"] for r in records] == toys == [row["name"] for row in rows]
    for record, channels in zip(records, (2, 4, 8)):
        assert KEYS <= record.keys() and "psnr_y" not in record
        assert record["params"] == 27 * channels + channels + 9 * channels * 48 + 48
        assert record["macs"] == 256 * (27 * channels + 9 * channels * 48)
        assert record["activations"] == 256 * (channels + 48) and record["conv"] == 2
        assert record["challenge"]["flops"] == record["macs"]  # torch.relu is functional: no extra FLOPs
        assert {"median", "iqr"} <= record["runtime_ms"].keys() and record["runtime_ms"]["repeats"] == 2
        assert record["threads"] == 1 and record["device"] == "cpu" and record["peak_memory_mb"] > 0
    assert json.loads((tmp_path / "r.json").read_text()) == records
    assert (out / "srocc.png").stat().st_size > 1000
    assert "No PSNR plots" in markdown and "torch" in markdown and "threads: 1" in markdown
    assert "| params |" in markdown and "SROCC" in markdown


def test_models_without_the_scale_are_skipped_with_a_note(tmp_path, toys, capsys, monkeypatch):
    out = tmp_path / "bench"
    assert main(["bench", "--models", "toy_c2", "toy_c4", *FAST, "--scale", "3", "-o", str(out)]) == 2
    assert "not x3" in capsys.readouterr().err  # nothing measurable: a clear error, no reports
    constructor = registry._MODELS["toy_c4"].constructor
    monkeypatch.setitem(registry._MODELS, "toy_c4", _info("toy_c4", constructor, (2, 3)))
    assert main(["bench", "--models", "toy_c2", "toy_c4", *FAST, "--scale", "3", "-o", str(out)]) == 0
    records, _, markdown = _read(out)
    assert [r["name"] for r in records] == ["toy_c4"] and records[0]["scale"] == 3
    assert "toy_c2 skipped" in markdown and "needs at least 3 models" in markdown


def test_checkpoint_files_are_benchmarked_under_their_stem(tmp_path, toys):
    paths = []
    for name in toys[:2]:
        paths.append(save_checkpoint(create_model(name, scale=2), tmp_path / f"{name}_x2.safetensors"))
    out = tmp_path / "bench"
    assert main(["bench", "--weights", *map(str, paths), *FAST, "-o", str(out)]) == 0
    records, _, _ = _read(out)
    assert [(r["name"], r["scale"]) for r in records] == [("toy_c2_x2", 2), ("toy_c4_x2", 2)]


def test_dataset_adds_psnr_and_pareto_plots(tmp_path, toys):
    hr = tmp_path / "hr"
    hr.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(hr / f"img{i}.png")
    out = tmp_path / "bench"
    assert main(["bench", "--models", "toy_*", *FAST, "--dataset", str(hr), "-o", str(out)]) == 0
    records, rows, markdown = _read(out)
    for record in records:
        assert np.isfinite(record["psnr_y"]) and -1 <= record["ssim_y"] <= 1  # random weights and images
        assert record["dataset_images"] == 2 and record["dataset_runtime_ms_per_image"] > 0
    assert all(row["psnr_y"] for row in rows)
    for plot in ("psnr_vs_runtime.png", "psnr_vs_macs.png"):
        assert (out / plot).stat().st_size > 1000 and plot in markdown


def test_deployed_form_by_default_training_form_on_request(tmp_path):
    if "ecbsr_m4c8" not in list_models():
        pytest.skip("ecbsr_m4c8 is not registered in the zoo")
    params = {}
    for flag in ([], ["--no-deploy"]):
        out = tmp_path / ("train" if flag else "deploy")
        assert main(["bench", "--models", "ecbsr_m4c8", *FAST, *flag, "-o", str(out)]) == 0
        (record,) = json.loads((out / "report.json").read_text())
        params[bool(flag)] = (record["params"], record["deployed"], record["conv"])
    assert params[False] == (3624, True, 6)  # one 3x3 conv per ECB once fused
    assert params[True][0] > params[False][0] and params[True][1] is False and params[True][2] > 6


def test_bad_arguments_are_one_line_errors(tmp_path, capsys):
    assert main(["bench", "--models", "no_such_model_*", "--out", str(tmp_path)]) == 2
    assert main(["bench", "--weights", str(tmp_path / "missing.pth"), "--out", str(tmp_path)]) == 2
    assert main(["bench", "--models", "*", "--repeats", "0", "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err.count("leansr: error:") == 3
