"""`leansr export` and running ONNX files: verification, metadata, zoo coverage, the CLI, bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image as PILImage
from torch import nn

from conftest import shared_path
from leansr import LeansrError, create_model, list_models, load_model, save_checkpoint
from leansr.cli import main
from leansr.deploy.onnx_export import TOLERANCE, export_onnx, probe_image
from leansr.deploy.onnx_model import METADATA_KEYS, OnnxModel
from leansr.engine import upscale_tensor
from leansr.layers.reparam import reparameterize_model

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")


def _small(name: str) -> nn.Module:
    model = create_model(name, **({"scale": 2} if name != "bicubic" else {}))
    torch.manual_seed(0)
    with torch.no_grad():  # perturbed (not just initialised) weights, small enough to keep fp32 well conditioned
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    return model.eval()


# bicubic has no weights, so no checkpoint to export
@pytest.mark.parametrize("name", [n for n in list_models() if n != "bicubic"])
def test_every_zoo_model_exports_and_runs_in_onnxruntime(name: str, tmp_path: Path) -> None:
    model = _small(name)
    result = export_onnx(model, tmp_path / "m.onnx", dynamic=True)
    assert result.max_abs_diff <= TOLERANCE["fp32"]
    loaded = load_model(result.path).model
    assert isinstance(loaded, OnnxModel)
    assert (loaded.arch, loaded.scale, loaded.in_channels) == (model.arch, model.scale, model.in_channels)
    x = probe_image(model.in_channels, 23, 37, seed=5)  # a shape neither traced nor verified
    with torch.inference_mode():
        expected = reparameterize_model(model)(x)
    assert torch.allclose(loaded(x), expected, atol=TOLERANCE["fp32"], rtol=0)


@pytest.mark.parametrize("name", ["arm_carn", "arm_fsrcnn", "arm_plain"])
def test_an_arm_width_exports_as_a_plain_model(name: str, tmp_path: Path) -> None:
    supernet = _small(name)
    narrow = supernet.at_width(supernet.widths[0])  # one width of the supernet, as deployed without routing
    result = export_onnx(narrow, tmp_path / "w.onnx", dynamic=True)
    assert result.metadata["arch"] == f"{name}@{supernet.widths[0]}"
    x = probe_image(3, 21, 26, seed=7)
    with torch.inference_mode():
        assert torch.allclose(load_model(result.path).model(x), narrow(x), atol=TOLERANCE["fp32"], rtol=0)


def test_metadata_says_what_the_file_is(tmp_path: Path) -> None:
    model = _small("rlfn_ntire")
    export_onnx(model, tmp_path / "m.onnx", input_size=(32, 40), source="w.pth")
    props = {p.key: p.value for p in onnx.load(str(tmp_path / "m.onnx")).metadata_props}
    assert props["arch"] == "rlfn_ntire" and props["scale"] == "2" and props["input_range"] == "0-1"
    assert (props["in_channels"], props["out_channels"], props["dynamic_hw"]) == ("3", "3", "false")
    assert props["leansr_version"] and props["source"] == "w.pth" and props["precision"] == "fp32"
    assert set(METADATA_KEYS) - set(props) == {"quantization"}
    loaded = load_model(tmp_path / "m.onnx").model
    assert loaded(probe_image(3, 32, 40)).shape == (1, 3, 64, 80)
    with pytest.raises(LeansrError, match="exported for 32x40 inputs only"):
        loaded(probe_image(3, 30, 40))


def test_fp16_export_stays_within_one_gray_level(tmp_path: Path) -> None:
    model = _small("fmen_s")
    result = export_onnx(model, tmp_path / "h.onnx", dynamic=True, fp16=True)
    assert result.metadata["precision"] == "fp16" and result.max_abs_diff <= 1 / 255
    loaded = load_model(result.path).model
    x = probe_image(3, 20, 24)
    with torch.inference_mode():
        assert (loaded(x) - model(x)).abs().max() <= 1 / 255


class _DiffersInOnnx(nn.Module):
    """A model whose exported graph computes something else (what a tracing bug looks like)."""

    scale, in_channels, arch, hparams = 2, 3, "differs", {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        up = nn.functional.interpolate(x, scale_factor=2.0, mode="nearest")
        return up + 0.01 if torch.onnx.is_in_onnx_export() else up


def test_an_unverifiable_export_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    target = tmp_path / "m.onnx"
    with pytest.raises(LeansrError, match="differs from PyTorch by 1.00e-02.*not written"):
        export_onnx(_DiffersInOnnx(), target, dynamic=True)
    assert list(tmp_path.iterdir()) == []
    target.write_bytes(b"keep me")
    with pytest.raises(LeansrError):
        export_onnx(_DiffersInOnnx(), target, dynamic=True)
    assert target.read_bytes() == b"keep me"


def _rgb_folder(folder: Path, size: tuple[int, int] = (30, 41)) -> Path:
    folder.mkdir()
    rng = np.random.default_rng(1)
    smooth = np.kron(rng.integers(0, 256, (size[0] // 3 + 1, size[1] // 3 + 1, 3)), np.ones((3, 3, 1)))
    PILImage.fromarray(smooth[:size[0], :size[1]].astype(np.uint8)).save(folder / "a.png")
    return folder


def test_cli_export_then_upscale_matches_pytorch(tmp_path: Path, capsys) -> None:
    ckpt = save_checkpoint(_small("rlfn_ntire"), tmp_path / "w.safetensors")
    onnx_file = tmp_path / "m.onnx"
    assert main(["export", "--weights", str(ckpt), "-o", str(onnx_file), "--dynamic"]) == 0
    assert "verified in onnxruntime" in capsys.readouterr().out
    inputs = _rgb_folder(tmp_path / "in")
    for weights, out in [(ckpt, "torch"), (onnx_file, "onnx")]:
        assert main(["upscale", str(inputs), "-o", str(tmp_path / out), "--weights", str(weights),
                     "--tile", "20", "--tile-overlap", "4", "--device", "cpu"]) == 0
    a, b = (np.asarray(PILImage.open(tmp_path / d / "a_x2.png"), dtype=int) for d in ("torch", "onnx"))
    assert a.shape == (60, 82, 3) and np.abs(a - b).max() <= 1


def test_cli_refuses_to_overwrite_and_non_onnx_names(tmp_path: Path, capsys) -> None:
    ckpt = save_checkpoint(_small("pan"), tmp_path / "w.safetensors")
    (tmp_path / "m.onnx").write_bytes(b"old")
    assert main(["export", "--weights", str(ckpt), "-o", str(tmp_path / "m.onnx")]) == 2
    assert main(["export", "--weights", str(ckpt), "-o", str(tmp_path / "m.pth")]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 2 and "--force" in errors[0] and "must end in .onnx" in errors[1]
    assert (tmp_path / "m.onnx").read_bytes() == b"old"


def _foreign(tmp_path: Path) -> Path:
    """An ONNX file made without leansr: our export with its metadata stripped."""
    ours = export_onnx(_small("pan"), tmp_path / "ours.onnx", dynamic=True).path
    proto = onnx.load(str(ours))
    del proto.metadata_props[:]
    onnx.save(proto, str(tmp_path / "foreign.onnx"))
    return tmp_path / "foreign.onnx"


def test_foreign_onnx_needs_scale_in_one_line(tmp_path: Path, capsys) -> None:
    foreign = _foreign(tmp_path)
    inputs = _rgb_folder(tmp_path / "in")
    args = ["upscale", str(inputs), "-o", str(tmp_path / "out"), "--weights", str(foreign), "--device", "cpu"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "without leansr metadata" in err and "--scale" in err
    assert main([*args, "--scale", "2"]) == 0
    assert (tmp_path / "out" / "a_x2.png").is_file()


def test_corrupt_onnx_is_one_line(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07garbage, not a protobuf graph" * 10)
    inputs = _rgb_folder(tmp_path / "in")
    assert main(["upscale", str(inputs), "-o", str(tmp_path / "out"), "--weights", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("leansr: error: cannot read ONNX model")


def test_evaluate_and_bench_take_an_onnx_file(tmp_path: Path, capsys) -> None:
    model = _small("fmen_s")
    onnx_file = export_onnx(model, tmp_path / "m.onnx", dynamic=True).path
    hr = _rgb_folder(tmp_path / "hr", (32, 40))
    scores = {}
    for weights in (save_checkpoint(model, tmp_path / "w.safetensors"), onnx_file):
        assert main(["evaluate", "--weights", str(weights), "--data", str(hr), "--device", "cpu",
                     "--json", str(tmp_path / "r.json")]) == 0
        scores[weights.suffix] = capsys.readouterr().out.splitlines()[1]
    assert scores[".onnx"] == scores[".safetensors"]
    assert main(["bench", "--weights", str(onnx_file), "--repeats", "1", "--warmup", "0", "--threads", "1",
                 "--input-size", "24", "24", "--out", str(tmp_path / "bench")]) == 0


OFFICIAL = [("bytedance-RLFN", "rlfn_ntire_x4.pth"), ("NJU-Jet-FMEN", "test_weights.pt"),
            ("Zheng222-IMDN", "IMDN_x4.pth"), ("njulj-RFDN", "RFDN_AIM.pth"), ("zhaohengyuan1-PAN", "PANx4_DF2K.pth")]


@pytest.mark.reference
@pytest.mark.parametrize("owner, file", OFFICIAL + [("", "default")])
def test_official_weights_export_and_match_within_one_gray_level(owner: str, file: str, tmp_path: Path) -> None:
    if file == "default":
        from importlib import resources

        weights = Path(str(resources.files("leansr") / "weights" / "default_x4.safetensors"))
    else:
        weights = shared_path("weights", owner, file)
    model = load_model(weights).model
    onnx_model = load_model(export_onnx(model, tmp_path / "m.onnx", dynamic=True).path).model
    hr = np.asarray(PILImage.open(shared_path("data", "Set5", "baby.png")).convert("RGB"))[:96, :120]
    x = torch.from_numpy(hr.copy()).permute(2, 0, 1)[None].float() / 255
    if model.in_channels == 1:
        x = x.mean(1, keepdim=True)
    kw = {"tile": 64, "tile_overlap": 16}
    with torch.inference_mode():
        a = (upscale_tensor(model, x, **kw).clamp(0, 1) * 255).round()
        b = (upscale_tensor(onnx_model, x, **kw).clamp(0, 1) * 255).round()
    assert (a - b).abs().max() <= 1
