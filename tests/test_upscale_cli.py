"""`leansr upscale` end to end on small images made here: layouts, batches with failures, safety of files."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image as PILImage

from leansr import create_model, save_checkpoint
from leansr.cli import main
from leansr.data import image_io
from leansr.data.image_io import read_image
from leansr.data.imresize import imresize

BICUBIC_X2 = ["--model", "bicubic", "--scale", "2", "--tile", "16", "--tile-overlap", "4"]


def _save(path: Path, array: np.ndarray) -> Path:
    if array.dtype == np.uint16:  # Pillow cannot write 16-bit colour; OpenCV wants BGR
        cv2.imwrite(str(path), array[..., ::-1].copy())
    else:
        PILImage.fromarray(array).save(path)
    return path


@pytest.fixture
def images(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    folder = tmp_path / "in"
    folder.mkdir()
    _save(folder / "rgb.png", rng.integers(0, 256, (21, 30, 3), dtype=np.uint8))
    _save(folder / "gray.png", rng.integers(0, 256, (19, 17), dtype=np.uint8))
    _save(folder / "rgba.png", rng.integers(0, 256, (18, 25, 4), dtype=np.uint8))
    _save(folder / "deep.png", rng.integers(0, 65536, (20, 22, 3), dtype=np.uint16))
    (folder / "notes.txt").write_text("not an image, and not picked up from a folder")
    return folder


def _expected(pixels: np.ndarray, scale: int) -> np.ndarray:
    return imresize(pixels.astype(np.float64), float(scale)).clip(0, 1)


def test_layouts_bit_depth_and_alpha_survive(images: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert main(["upscale", str(images), "-o", str(out), *BICUBIC_X2]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["deep_x2.png", "gray_x2.png", "rgb_x2.png", "rgba_x2.png"]
    for name, channels, alpha, depth in [("rgb", 3, False, 8), ("gray", 1, False, 8),
                                         ("rgba", 3, True, 8), ("deep", 3, False, 16)]:
        src, dst = read_image(images / f"{name}.png"), read_image(out / f"{name}_x2.png")
        assert dst.pixels.shape == (src.height * 2, src.width * 2, channels), name
        assert (dst.alpha is not None) == alpha and dst.bit_depth == depth, name
        step = 1 / (2 ** depth - 1)
        assert np.abs(dst.pixels - _expected(src.pixels, 2)).max() <= step / 2 + 1e-6, name
        if alpha:
            assert np.abs(dst.alpha - _expected(src.alpha, 2)).max() <= step / 2 + 1e-6


def test_y_only_checkpoint_on_an_rgb_image(images: Path, tmp_path: Path, capsys) -> None:
    weights = save_checkpoint(create_model("ecbsr_m4c8", scale=3), tmp_path / "y_only.safetensors")
    out = tmp_path / "out"
    assert main(["upscale", str(images / "rgb.png"), "-o", str(out), "--weights", str(weights),
                 "--format", "jpg"]) == 0
    assert read_image(out / "rgb_x3.jpg").pixels.shape == (63, 90, 3)
    assert "ecbsr_m4c8 x3" in capsys.readouterr().err


def test_a_corrupt_file_fails_alone(images: Path, tmp_path: Path, capsys) -> None:
    (images / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not really a png")
    out = tmp_path / "out"
    assert main(["upscale", str(images), "-o", str(out), *BICUBIC_X2]) == 1
    assert len(list(out.glob("*_x2.png"))) == 4 and not (out / "broken_x2.png").exists()
    err = capsys.readouterr().err
    assert "1 of 5 image(s) failed" in err and "broken.png" in err and "Traceback" not in err


def test_never_overwrites_an_input(images: Path, capsys) -> None:
    before = (images / "rgb.png").read_bytes()
    code = main(["upscale", str(images / "rgb.png"), "-o", str(images), "--suffix", "", *BICUBIC_X2])
    assert code == 2 and "it is one of the inputs" in capsys.readouterr().err
    assert (images / "rgb.png").read_bytes() == before


def test_existing_outputs_need_overwrite(images: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "rgb_x2.png").write_bytes(b"old")
    args = ["upscale", str(images / "rgb.png"), "-o", str(out), *BICUBIC_X2]
    assert main(args) == 0 and "1 done already; --overwrite to redo" in capsys.readouterr().err
    assert (out / "rgb_x2.png").read_bytes() == b"old"
    assert main([*args, "--overwrite"]) == 0
    assert read_image(out / "rgb_x2.png").pixels.shape == (42, 60, 3)


def test_failed_write_leaves_no_partial_file(images: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    def write_half_then_fail(tmp, *args, **kwargs):
        Path(tmp).write_bytes(b"\x89PNG half an image")
        raise OSError("No space left on device")

    monkeypatch.setattr(image_io, "_write_cv2", write_half_then_fail)
    out = tmp_path / "out"
    assert main(["upscale", str(images / "rgb.png"), "-o", str(out), *BICUBIC_X2]) == 1
    assert list(out.iterdir()) == []
    assert "No space left on device" in capsys.readouterr().err


@pytest.mark.parametrize("options,message", [
    (["--tile", "20", "--tile-overlap", "16"], "more than twice the overlap"),
    (["--device", "tpu"], "unknown device"),
    (["--model", "rlfn"], "needs trained weights"),
    (["--weights", "missing.pth"], "does not exist"),
    (["--model", "no_such_model"], "unknown model"),
])
def test_bad_options_are_one_sentence(images: Path, tmp_path: Path, capsys, options, message) -> None:
    assert main(["upscale", str(images / "rgb.png"), "-o", str(tmp_path / "o"), *options]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.parametrize("options", [["--tile", "-3"], ["--scale", "0"], ["--weights", "w", "--model", "m"]])
def test_malformed_arguments_exit_2(images: Path, tmp_path: Path, capsys, options) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["upscale", str(images / "rgb.png"), "-o", str(tmp_path / "o"), *options])
    assert exit_info.value.code == 2 and "Traceback" not in capsys.readouterr().err


def test_missing_input_and_empty_folder(tmp_path: Path, capsys) -> None:
    assert main(["upscale", str(tmp_path / "nope.png"), "-o", str(tmp_path / "o")]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["upscale", str(tmp_path / "empty"), "-o", str(tmp_path / "o")]) == 2
    assert "holds no images" in capsys.readouterr().err


def test_two_inputs_claiming_one_output_are_refused(images: Path, tmp_path: Path, capsys) -> None:
    _save(images / "rgb.bmp", np.zeros((8, 8, 3), dtype=np.uint8))
    code = main(["upscale", str(images / "rgb.png"), str(images / "rgb.bmp"), "-o", str(tmp_path / "o"),
                 "--format", "png", *BICUBIC_X2])
    assert code == 2 and "would both be written" in capsys.readouterr().err
