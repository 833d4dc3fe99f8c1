"""`leansr quantize`: int8 QDQ ONNX from a checkpoint and calibration images; loading it; bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image as PILImage

from conftest import shared_path
from leansr import create_model, load_model, save_checkpoint
from leansr.cli import main
from leansr.deploy.onnx_export import probe_image
from leansr.deploy.onnx_model import METADATA_KEYS, OnnxModel
from leansr.metrics.evaluate import evaluate_model

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")


@pytest.fixture
def calib(tmp_path: Path) -> Path:
    folder = tmp_path / "calib"
    folder.mkdir()
    for i in range(4):
        image = probe_image(3, 40, 48, seed=10 + i)[0].permute(1, 2, 0).numpy()
        PILImage.fromarray((image * 255).round().astype(np.uint8)).save(folder / f"{i}.png")
    return folder


@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    return save_checkpoint(create_model("rlfn_ntire", scale=2).eval(), tmp_path / "w.safetensors")


def _quantize(checkpoint: Path, calib: Path, out: Path, *extra: str) -> int:
    small = ["--calib-images", "3", "--calib-size", "32"]  # keeps each calibration to a second or two
    return main(["quantize", "--weights", str(checkpoint), "--calib", str(calib), "-o", str(out), *small, *extra])


def test_int8_file_loads_runs_and_stays_close_to_fp32(checkpoint: Path, calib: Path, tmp_path: Path,
                                                       capsys) -> None:
    out = tmp_path / "q.onnx"
    assert _quantize(checkpoint, calib, out) == 0
    assert "int8" in capsys.readouterr().out
    proto = onnx.load(str(out))
    props = {p.key: p.value for p in proto.metadata_props}
    assert props["precision"] == "int8" and props["arch"] == "rlfn_ntire" and props["scale"] == "2"
    assert set(METADATA_KEYS) - set(props) == {"verified_max_abs_diff"}
    int8_weights = [t for t in proto.graph.initializer if t.data_type == onnx.TensorProto.INT8 and len(t.dims) == 4]
    assert int8_weights, "no int8 convolution weights"
    assert any(len(t.dims) == 1 and t.dims[0] > 1 for t in proto.graph.initializer
               if t.data_type == onnx.TensorProto.FLOAT and t.name.endswith("_scale")), "weights not per channel"
    quantized = load_model(out).model
    assert isinstance(quantized, OnnxModel)
    x = probe_image(3, 33, 29, seed=3)
    with torch.inference_mode():
        reference = load_model(checkpoint).model(x).clamp(0, 1)
        mse = (quantized(x).clamp(0, 1) - reference).pow(2).mean().item()
    assert 10 * np.log10(1 / mse) > 30


def test_first_and_last_convs_stay_float_by_default(checkpoint: Path, calib: Path, tmp_path: Path) -> None:
    out = tmp_path / "q.onnx"
    assert _quantize(checkpoint, calib, out) == 0
    graph = onnx.load(str(out)).graph
    producers = {o: n for n in graph.node for o in n.output}
    convs = [n for n in graph.node if n.op_type == "Conv"]
    float_weight = [n.name for n in convs if n.input[1] not in producers]  # fed by a float initializer
    assert float_weight == [convs[0].name, convs[-1].name]
    assert _quantize(checkpoint, calib, out, "--force", "--keep-float", "none") == 0
    graph = onnx.load(str(out)).graph
    producers = {o: n for n in graph.node for o in n.output}
    assert all(n.input[1] in producers for n in graph.node if n.op_type == "Conv")


def test_upscale_and_evaluate_take_the_int8_file(checkpoint: Path, calib: Path, tmp_path: Path) -> None:
    out = tmp_path / "q.onnx"
    assert _quantize(checkpoint, calib, out) == 0
    assert main(["upscale", str(calib / "0.png"), "-o", str(tmp_path / "up"), "--weights", str(out)]) == 0
    assert np.asarray(PILImage.open(tmp_path / "up" / "0_x2.png")).shape == (80, 96, 3)
    int8, fp32 = (evaluate_model(load_model(w).model, calib, scale=2).psnr_y for w in (out, checkpoint))
    assert abs(int8 - fp32) < 1  # an untrained model: only the agreement means anything


def test_empty_calibration_folder_is_one_line(checkpoint: Path, tmp_path: Path, capsys) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    assert _quantize(checkpoint, empty, tmp_path / "q.onnx") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no images" in err and "empty" in err
    assert not (tmp_path / "q.onnx").exists()


def test_unknown_float_layer_is_one_line(checkpoint: Path, calib: Path, tmp_path: Path, capsys) -> None:
    assert _quantize(checkpoint, calib, tmp_path / "q.onnx", "--keep-float", "first,block_9.c1") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "block_9.c1: no such layer" in err


@pytest.mark.reference
@pytest.mark.slow
def test_official_rlfn_int8_loses_little_on_set14(tmp_path: Path) -> None:
    weights = shared_path("weights", "bytedance-RLFN", "rlfn_ntire_x4.pth")
    set14, train = shared_path("data", "Set14"), shared_path("data", "train")
    out = tmp_path / "q.onnx"
    assert main(["quantize", "--weights", str(weights), "--calib", str(train), "-o", str(out)]) == 0
    fp32 = evaluate_model(load_model(weights).model, set14, scale=4).psnr_y
    int8 = evaluate_model(load_model(out).model, set14, scale=4).psnr_y
    assert fp32 - int8 < 1.0  # a guard against broken calibration; measured losses are in docs/benchmarks.md
