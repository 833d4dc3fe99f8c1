"""`data prepare` never mixes or ingests its own output; multi-frame images are refused, not cut to one frame
(issue 9: items 5, 6, 11, 18)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from train_helpers import write_images

from leansr.cli import main
from leansr.data.image_io import read_image
from leansr.errors import ImageError

PREP = ["--scale", "2", "--sub-image", "16", "--step", "16", "--quiet"]


def _prepare(source, out, *extra):
    return main(["data", "prepare", str(source), "-o", str(out), *PREP, *extra])


def _names(folder):
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def test_rerun_into_a_non_empty_output_needs_overwrite_which_clears_it(tmp_path, capsys):
    src = tmp_path / "src"
    write_images(src, count=2, size=(32, 32))
    out = tmp_path / "out"
    assert _prepare(src, out) == 0
    first = _names(out)
    assert len(first) == 2 * 4 * 2  # 2 images x 4 sub-images x (HR + LR)
    (src / "img1.png").unlink()
    assert _prepare(src, out) == 2
    assert "is not empty; pass --overwrite" in capsys.readouterr().err
    assert _names(out) == first
    assert _prepare(src, out, "--overwrite") == 0
    assert len(_names(out)) == 1 * 4 * 2 and not any("img1" in n for n in _names(out))  # nothing stale


def test_overwrite_never_clears_a_folder_it_did_not_make(tmp_path, capsys):
    src = tmp_path / "src"
    write_images(src, count=1, size=(32, 32))
    out = tmp_path / "home"
    out.mkdir()
    (out / "thesis.tex").write_text("precious")
    assert _prepare(src, out, "--overwrite") == 2
    assert "did not write (thesis.tex)" in capsys.readouterr().err
    assert (out / "thesis.tex").read_text() == "precious"


def test_output_inside_the_source_is_never_read(tmp_path):
    src = tmp_path / "src"
    write_images(src, count=2, size=(32, 32))
    out = src / "prepared"
    assert _prepare(src, out) == 0
    assert _prepare(src, out, "--overwrite") == 0  # the second run must not ingest the first run's PNGs
    hr = _names(out / "HR")
    assert len(hr) == 2 * 4 and all(n.startswith("img") for n in hr)


def test_source_inside_the_output_is_refused(tmp_path, capsys):
    out = tmp_path / "out"
    src = out / "photos"
    write_images(src, count=1, size=(32, 32))
    assert _prepare(src, out, "--overwrite") == 2
    assert "lies inside the output" in capsys.readouterr().err
    assert (src / "img0.png").is_file()


def test_a_failure_part_way_leaves_the_output_as_it_was(tmp_path, monkeypatch, capsys):
    from leansr.commands import data

    src = tmp_path / "src"
    write_images(src, count=3, size=(32, 32))
    out = tmp_path / "out"
    assert _prepare(src, out) == 0
    before = {n: (out / n).read_bytes() for n in _names(out)}
    real_save = data._save_png

    def disk_full_on_the_second_image(pixels, path):
        if "img1" in path.name:
            raise OSError(28, "No space left on device", str(path))
        real_save(pixels, path)

    monkeypatch.setattr(data, "_save_png", disk_full_on_the_second_image)  # forked workers inherit it
    assert _prepare(src, out, "--overwrite") == 1
    err = capsys.readouterr().err
    assert err.startswith("leansr: error: No space left on device") and err.count("\n") == 1
    assert {n: (out / n).read_bytes() for n in _names(out)} == before  # the earlier output is untouched
    assert not list(out.glob(".prepare.*"))


def test_bad_numbers_are_one_line(tmp_path, capsys):
    src = tmp_path / "src"
    write_images(src, count=1, size=(32, 32))
    assert main(["data", "prepare", str(src), "-o", str(tmp_path / "o"), "--workers", "0"]) == 2
    assert "--workers must be between 1 and 256" in capsys.readouterr().err


# -- multi-frame images ------------------------------------------------------------------------------------
def _frames(count=3, size=(8, 10)):
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)) for _ in range(count)]


@pytest.mark.parametrize("suffix, kind", [(".png", "an animated PNG"), (".webp", "an animated WebP"),
                                          (".tif", "a multi-page TIFF")])
def test_multi_frame_images_are_refused_in_one_line(tmp_path, suffix, kind):
    path = tmp_path / f"anim{suffix}"
    first, *rest = _frames()
    first.save(path, save_all=True, append_images=rest, **({"lossless": True} if suffix == ".webp" else {}))
    with pytest.raises(ImageError, match=f"holds 3 frames \\({kind}\\)"):
        read_image(path)


@pytest.mark.parametrize("suffix", [".png", ".webp", ".tif"])
def test_single_frame_files_of_the_same_formats_still_read(tmp_path, suffix):
    path = tmp_path / f"one{suffix}"
    _frames(1)[0].save(path, **({"lossless": True} if suffix == ".webp" else {}))
    assert read_image(path).pixels.shape == (8, 10, 3)


def test_training_warns_about_an_animated_image_and_skips_it(tmp_path, capsys):
    src = tmp_path / "src"
    write_images(src, count=1, size=(32, 32))
    first, *rest = _frames(2, (32, 32))
    first.save(src / "anim.png", save_all=True, append_images=rest)
    assert _prepare(src, tmp_path / "out") == 0
    assert "skipped" in capsys.readouterr().out and len(_names(tmp_path / "out" / "HR")) == 4
