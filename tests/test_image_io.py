"""Image reading/writing over the formats, modes and failure cases users meet."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image as PILImage

from leansr.data import image_io
from leansr.data.image_io import Image, apply_orientation, read_image, write_image
from leansr.errors import ImageError


def _rgb8(h: int = 6, w: int = 8, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_png_rgb_round_trip(tmp_path):
    data = _rgb8()
    PILImage.fromarray(data).save(tmp_path / "a.png")
    img = read_image(tmp_path / "a.png")
    assert img.pixels.dtype == np.float32 and img.pixels.shape == (6, 8, 3)
    assert img.bit_depth == 8 and img.alpha is None and img.format == "PNG"
    assert np.array_equal(np.round(img.pixels * 255).astype(np.uint8), data)
    write_image(tmp_path / "b.png", img)
    assert np.array_equal(np.asarray(PILImage.open(tmp_path / "b.png")), data)


@pytest.mark.parametrize("suffix", [".bmp", ".tif", ".webp", ".jpg"])
def test_other_formats_round_trip(tmp_path, suffix):
    data = np.full((8, 8, 3), (200, 40, 90), dtype=np.uint8)  # flat colour: lossy codecs stay close
    write_image(tmp_path / f"a{suffix}", Image(data.astype(np.float32) / 255))
    back = read_image(tmp_path / f"a{suffix}")
    assert back.pixels.shape == (8, 8, 3)
    assert np.abs(back.pixels * 255 - data).max() <= (4 if suffix in (".jpg", ".webp") else 0.5)


def test_grayscale_stays_grayscale(tmp_path):
    data = _rgb8()[..., 0]
    PILImage.fromarray(data, "L").save(tmp_path / "g.png")
    img = read_image(tmp_path / "g.png")
    assert img.pixels.shape == (6, 8, 1)
    write_image(tmp_path / "out.png", img)
    out = PILImage.open(tmp_path / "out.png")
    assert out.mode == "L" and np.array_equal(np.asarray(out), data)


def test_rgba_alpha_kept_apart_and_reattached(tmp_path):
    data = np.dstack([_rgb8(), np.arange(48, dtype=np.uint8).reshape(6, 8) * 5])
    PILImage.fromarray(data, "RGBA").save(tmp_path / "a.png")
    img = read_image(tmp_path / "a.png")
    assert img.pixels.shape == (6, 8, 3) and img.alpha.shape == (6, 8)
    write_image(tmp_path / "b.png", img)
    assert np.array_equal(np.asarray(PILImage.open(tmp_path / "b.png")), data)
    for suffix in (".jpg", ".bmp"):  # no alpha in these
        write_image(tmp_path / f"b{suffix}", img)
        assert PILImage.open(tmp_path / f"b{suffix}").mode == "RGB"
    write_image(tmp_path / "b.webp", img)
    assert read_image(tmp_path / "b.webp").alpha is not None


def test_gray_alpha(tmp_path):
    data = np.dstack([_rgb8()[..., 0], np.full((6, 8), 128, np.uint8)])
    PILImage.fromarray(data, "LA").save(tmp_path / "la.png")
    img = read_image(tmp_path / "la.png")
    assert img.pixels.shape == (6, 8, 1) and np.allclose(img.alpha, 128 / 255)
    write_image(tmp_path / "out.png", img)
    assert PILImage.open(tmp_path / "out.png").mode == "LA"
    write_image(tmp_path / "out.bmp", img)
    assert PILImage.open(tmp_path / "out.bmp").mode == "L"


def test_palette_with_and_without_transparency(tmp_path):
    pal = PILImage.fromarray(_rgb8()).convert("P", palette=PILImage.Palette.ADAPTIVE, colors=8)
    pal.save(tmp_path / "p.png")
    expected = np.asarray(pal.convert("RGB"))
    img = read_image(tmp_path / "p.png")
    assert img.alpha is None and np.array_equal(np.round(img.pixels * 255), expected)
    pal.save(tmp_path / "pt.png", transparency=0)
    img = read_image(tmp_path / "pt.png")
    index = np.asarray(pal)
    assert img.alpha is not None and np.array_equal(img.alpha == 0, index == 0)


def test_colour_key_transparency_becomes_alpha(tmp_path):
    data = _rgb8()
    PILImage.fromarray(data).save(tmp_path / "rgb.png", transparency=tuple(int(v) for v in data[0, 0]))
    img = read_image(tmp_path / "rgb.png")
    assert img.alpha is not None and img.alpha[0, 0] == 0 and img.pixels.shape[2] == 3
    PILImage.fromarray(data[..., 0]).save(tmp_path / "l.png", transparency=int(data[0, 0, 0]))
    img = read_image(tmp_path / "l.png")
    assert img.alpha is not None and img.alpha[0, 0] == 0 and img.pixels.shape[2] == 1


def test_cmyk_jpeg_becomes_rgb(tmp_path):
    PILImage.fromarray(_rgb8()).convert("CMYK").save(tmp_path / "c.jpg")
    img = read_image(tmp_path / "c.jpg")
    assert img.pixels.shape == (6, 8, 3) and img.icc_profile is None


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_matches_pillow(tmp_path, orientation):
    data = _rgb8(6, 10)
    exif = PILImage.Exif()
    exif[0x0112] = orientation
    PILImage.fromarray(data).save(tmp_path / "o.png", exif=exif)
    upright = np.asarray(PILImage.open(tmp_path / "o.png").transpose(_PIL_OPS[orientation])
                         if orientation in _PIL_OPS else PILImage.open(tmp_path / "o.png"))
    img = read_image(tmp_path / "o.png")
    assert np.array_equal(np.round(img.pixels * 255).astype(np.uint8), upright)


_PIL_OPS = {2: PILImage.Transpose.FLIP_LEFT_RIGHT, 3: PILImage.Transpose.ROTATE_180,
            4: PILImage.Transpose.FLIP_TOP_BOTTOM, 5: PILImage.Transpose.TRANSPOSE,
            6: PILImage.Transpose.ROTATE_270, 7: PILImage.Transpose.TRANSVERSE,
            8: PILImage.Transpose.ROTATE_90}


def test_exif_rotated_jpeg(tmp_path):
    exif = PILImage.Exif()
    exif[0x0112] = 6  # stored landscape, shown rotated 90 degrees clockwise
    PILImage.fromarray(np.zeros((16, 32, 3), np.uint8)).save(tmp_path / "r.jpg", exif=exif)
    assert read_image(tmp_path / "r.jpg").pixels.shape == (32, 16, 3)


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_16bit_rgb_round_trip(tmp_path, suffix):
    data = np.random.default_rng(1).integers(0, 65536, (5, 7, 3), dtype=np.uint16)
    cv2.imwrite(str(tmp_path / f"a{suffix}"), data[..., ::-1])  # OpenCV writes BGR
    img = read_image(tmp_path / f"a{suffix}")
    assert img.bit_depth == 16 and img.pixels.shape == (5, 7, 3)
    assert np.array_equal(np.round(img.pixels.astype(np.float64) * 65535).astype(np.uint16), data)
    write_image(tmp_path / f"b{suffix}", img)
    back = cv2.imread(str(tmp_path / f"b{suffix}"), cv2.IMREAD_UNCHANGED)
    assert back.dtype == np.uint16 and np.array_equal(back[..., ::-1], data)


def test_16bit_rgba_and_gray(tmp_path):
    rgba = np.random.default_rng(2).integers(0, 65536, (4, 5, 4), dtype=np.uint16)
    cv2.imwrite(str(tmp_path / "a.png"), rgba[..., [2, 1, 0, 3]])
    img = read_image(tmp_path / "a.png")
    assert img.bit_depth == 16 and np.allclose(img.alpha * 65535, rgba[..., 3], atol=0.5)
    gray = rgba[..., 0]
    PILImage.fromarray(gray).save(tmp_path / "g.png")
    img = read_image(tmp_path / "g.png")
    assert img.bit_depth == 16 and img.pixels.shape == (4, 5, 1)
    write_image(tmp_path / "g2.png", img)
    assert np.array_equal(cv2.imread(str(tmp_path / "g2.png"), cv2.IMREAD_UNCHANGED), gray)
    write_image(tmp_path / "g2.jpg", img)  # JPEG narrows to 8 bits
    assert np.asarray(PILImage.open(tmp_path / "g2.jpg")).dtype == np.uint8


def _bad_file(tmp_path, kind):
    path = tmp_path / "bad.png"
    if kind == "missing":
        return path
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("this is not an image\n")
    elif kind == "truncated":
        PILImage.fromarray(_rgb8(64, 64)).save(path)
        path.write_bytes(path.read_bytes()[:300])
    elif kind == "gif":
        path = tmp_path / "a.gif"
        PILImage.fromarray(_rgb8()).save(path)
    return path


@pytest.mark.parametrize("kind", ["missing", "empty", "text", "truncated", "gif"])
def test_bad_files_give_one_clear_error(tmp_path, kind):
    path = _bad_file(tmp_path, kind)
    with pytest.raises(ImageError) as info:
        read_image(path)
    message = str(info.value)
    assert path.name in message and "\n" not in message


def test_decompression_bomb_refused(tmp_path, monkeypatch):
    PILImage.fromarray(_rgb8(20, 20)).save(tmp_path / "big.png")
    monkeypatch.setattr(image_io, "MAX_PIXELS", 100)
    with pytest.raises(ImageError, match="too large"):
        read_image(tmp_path / "big.png")
    monkeypatch.setattr(image_io, "MAX_PIXELS", 10**9)
    monkeypatch.setattr(PILImage, "MAX_IMAGE_PIXELS", 100)  # Pillow's own guard, warning and error
    with pytest.raises(ImageError, match="too large"):
        read_image(tmp_path / "big.png")


def test_write_is_atomic_and_checks_suffix(tmp_path):
    img = Image(np.zeros((4, 4, 3), np.float32))
    with pytest.raises(ImageError, match="unknown suffix"):
        write_image(tmp_path / "a.xyz", img)
    with pytest.raises(ImageError):
        write_image(tmp_path / "a.png", Image(np.zeros((4, 4, 2), np.float32)))
    write_image(tmp_path / "ok.png", img)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ok.png"]


def test_apply_orientation_on_2d():
    a = np.arange(6).reshape(2, 3)
    assert np.array_equal(apply_orientation(a, 6), np.rot90(a, -1))
    assert np.array_equal(apply_orientation(a, 8), np.rot90(a, 1))
    assert apply_orientation(a, 1) is a


def _raw_png(pixels: np.ndarray, colour_type: int) -> bytes:
    """A minimal PNG (no filtering) for layouts Pillow and OpenCV cannot write, e.g. 16-bit gray+alpha."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    h, w = pixels.shape[:2]
    ihdr = struct.pack(">IIBBBBB", w, h, 16, colour_type, 0, 0, 0)
    rows = b"".join(b"\x00" + pixels[y].astype(">u2").tobytes() for y in range(h))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def test_16bit_gray_alpha(tmp_path):
    data = np.random.default_rng(4).integers(0, 65536, (3, 4, 2), dtype=np.uint16)
    (tmp_path / "la16.png").write_bytes(_raw_png(data, colour_type=4))
    img = read_image(tmp_path / "la16.png")
    assert img.bit_depth == 16 and img.pixels.shape == (3, 4, 1)
    assert np.array_equal(np.round(img.pixels[..., 0].astype(np.float64) * 65535), data[..., 0])
    assert np.array_equal(np.round(img.alpha.astype(np.float64) * 65535), data[..., 1])
