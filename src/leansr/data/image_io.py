"""Image files in and out: float 0-1 pixels, alpha kept apart, 8/16-bit and grayscale preserved.

Pillow decodes everything except 16-bit colour, which it can only narrow to 8 bits; those files (PNG/TIFF)
go through OpenCV, minding its BGR order. EXIF orientation is applied, palette/CMYK/YCbCr files become RGB,
and every failure is an `ImageError` naming the file. Writes are atomic (temp file beside it, then rename).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image as PILImage
from PIL import UnidentifiedImageError

from leansr.atomic import atomic_path
from leansr.data.imresize import quantize_uint8
from leansr.errors import ImageError

# Reading refuses larger images (Pillow's own decompression-bomb threshold, about 9459 x 9459).
MAX_PIXELS = 89_478_485
READ_FORMATS = {"PNG", "JPEG", "MPO", "BMP", "TIFF", "WEBP"}
WRITE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".bmp": "BMP", ".tif": "TIFF",
                 ".tiff": "TIFF", ".webp": "WEBP"}
IMAGE_SUFFIXES = frozenset(WRITE_FORMATS)  # what folders are searched for, by every command
SIXTEEN_BIT_FORMATS = {"PNG", "TIFF"}
# Refused rather than silently cut to their first frame, as GIF is refused altogether.
_MULTI_FRAME_FORMATS = {"PNG": "an animated PNG", "WEBP": "an animated WebP", "TIFF": "a multi-page TIFF"}
_NO_ALPHA_FORMATS = {"JPEG", "BMP"}
_TO_RGB_MODES = {"P": "RGB", "PA": "RGBA", "CMYK": "RGB", "YCbCr": "RGB", "LAB": "RGB", "HSV": "RGB",
                 "RGBX": "RGB", "RGBa": "RGBA", "La": "LA", "1": "L"}
_KEYED_ALPHA_MODES = {"P": "RGBA", "RGB": "RGBA", "L": "LA"}


@dataclass
class Image:
    """pixels: float32 HxWxC on 0-1, C in {1, 3}; alpha: float32 HxW on 0-1 or None."""

    pixels: np.ndarray
    alpha: np.ndarray | None = None
    bit_depth: int = 8
    format: str | None = None  # Pillow's name of the source format, e.g. "PNG"
    icc_profile: bytes | None = None  # kept only when the pixels are still in the source colour space

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def channels(self) -> int:
        return int(self.pixels.shape[2])


def read_image(path: str | os.PathLike) -> Image:
    """Decode an image file; raises ImageError with one sentence naming the file."""
    path = Path(path)
    if not path.is_file():
        raise ImageError(f"image {path} does not exist or is not a file")
    if path.stat().st_size == 0:
        raise ImageError(f"image {path} is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", PILImage.DecompressionBombWarning)
            with PILImage.open(path) as im:
                return _decode(path, im)
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError(f"{path} is not an image file of a supported format") from None
    except (PILImage.DecompressionBombError, PILImage.DecompressionBombWarning):
        raise ImageError(f"{path} is too large to decode safely (over {MAX_PIXELS} pixels)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ImageError(f"{path} is truncated or corrupt ({detail})") from None


def list_images(folder: str | os.PathLike, *, recursive: bool = False, what: str = "image folder") -> list[Path]:
    """Image files in `folder` (and its sub-folders with `recursive`), sorted; ImageError if none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ImageError(f"{what} {folder} does not exist or is not a folder")
    files = sorted(p for p in folder.glob("**/*" if recursive else "*")
                   if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise ImageError(f"{what} {folder} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return files


def read_rgb_uint8(path: str | os.PathLike) -> np.ndarray:
    """HxWx3 uint8 for the benchmark and training protocols: gray repeated to RGB, alpha dropped."""
    pixels = read_image(path).pixels
    if pixels.shape[2] == 1:
        pixels = np.repeat(pixels, 3, axis=2)
    return quantize_uint8(pixels.astype(np.float64) * 255.0)


def write_image(path: str | os.PathLike, image: Image, *, quality: int = 95, exclusive: bool = False) -> Path:
    """Encode by the suffix of `path`; 16-bit kept in PNG/TIFF; alpha re-attached where the format holds it.

    JPEG and BMP (as Pillow reads it) hold no alpha, so it is dropped there; 16-bit images are narrowed to
    8 bits for JPEG/BMP/WebP; 16-bit gray with alpha is written as 16-bit RGBA (the codecs lack 16-bit LA).
    `exclusive`: never replace an existing file (ImageError if one appeared since the caller checked).
    """
    fmt = format_for(path)
    _check_pixels(image)
    alpha = None if fmt in _NO_ALPHA_FORMATS else image.alpha
    planes = image.pixels if alpha is None else np.concatenate([image.pixels, alpha[..., None]], axis=2)
    data = _quantize(planes, output_bits(image.bit_depth, fmt))
    return write_pixels(path, data, colour=image.channels, icc_profile=image.icc_profile, quality=quality,
                        exclusive=exclusive)


def format_for(path: str | os.PathLike) -> str:
    fmt = WRITE_FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        raise ImageError(f"cannot write {path}: unknown suffix; use one of {', '.join(sorted(WRITE_FORMATS))}")
    return fmt


def output_bits(bit_depth: int, fmt: str) -> int:
    """The bit depth a file of `fmt` keeps: 16 only where the format holds it."""
    return 16 if bit_depth == 16 and fmt in SIXTEEN_BIT_FORMATS else 8


def write_pixels(
    path: str | os.PathLike, data: np.ndarray, *, colour: int, icc_profile: bytes | None = None,
    quality: int = 95, exclusive: bool = False,
) -> Path:
    """Encode quantized HxWxC pixels (colour planes, then alpha if C > colour) atomically.

    8-bit PNGs go through OpenCV (several times faster than Pillow at its default level), unless an ICC
    profile must be kept; 16-bit colour and alpha through OpenCV; everything else through Pillow.
    """
    path = Path(path)
    fmt = format_for(path)
    if fmt in _NO_ALPHA_FORMATS:
        data = data[..., :colour]
    sixteen = data.dtype == np.uint16
    try:
        with atomic_path(path, exclusive=exclusive) as tmp:
            if sixteen and data.shape[2] > 1:
                _write_cv2(tmp, ".png" if fmt == "PNG" else ".tif", data, colour)
            elif fmt == "PNG" and not icc_profile and data.shape[2] != 2:
                _write_cv2(tmp, ".png", data, colour)
            else:
                _write_pillow(tmp, fmt, data, icc_profile, quality)
    except FileExistsError:
        raise ImageError(f"{path} appeared while it was being made (another run?); not replaced") from None
    except OSError as exc:
        raise ImageError(f"cannot write {path}: {exc.strerror or exc}") from None
    return path


def _decode(path: Path, im: PILImage.Image) -> Image:
    if im.format not in READ_FORMATS:
        raise ImageError(f"{path} is a {im.format} image; supported: PNG, JPEG, BMP, TIFF, WebP")
    frames = int(getattr(im, "n_frames", 1))
    # MPO (camera JPEGs) carries a preview as a second frame: the first is the photo, so it is exempt.
    if frames > 1 and im.format in _MULTI_FRAME_FORMATS:
        raise ImageError(f"{path} holds {frames} frames ({_MULTI_FRAME_FORMATS[im.format]}); only single images "
                         "are supported: extract the frames first (e.g. with ffmpeg)")
    width, height = im.size
    if width * height > MAX_PIXELS:
        raise ImageError(f"{path} is too large to decode safely ({width}x{height} pixels)")
    orientation = int(im.getexif().get(0x0112, 1))
    layout = _sixteen_bit_layout(path, im)
    if layout is not None:
        image = _read_cv2_16bit(path, gray_alpha=layout == "gray+alpha")
    else:
        image = _from_pillow(path, im)
    image.pixels = apply_orientation(image.pixels, orientation)
    if image.alpha is not None:
        image.alpha = apply_orientation(image.alpha, orientation)
    image.format = im.format
    return image


def _from_pillow(path: Path, im: PILImage.Image) -> Image:
    im.load()
    icc = im.info.get("icc_profile")
    mode = im.mode
    if "transparency" in im.info and mode in _KEYED_ALPHA_MODES:
        im = im.convert(_KEYED_ALPHA_MODES[mode])  # palette/colour-key transparency becomes alpha
    elif mode in _TO_RGB_MODES:
        im = im.convert(_TO_RGB_MODES[mode])
        icc = None if mode in ("CMYK", "YCbCr", "LAB", "HSV") else icc
    if im.mode.startswith("I") or im.mode == "F":
        return _from_high_depth_gray(path, im, icc)
    if im.mode not in ("L", "LA", "RGB", "RGBA"):
        raise ImageError(f"{path} has unsupported pixel mode {im.mode}")
    data = np.asarray(im, dtype=np.float32) / 255.0
    if data.ndim == 2:
        data = data[..., None]
    colour = 1 if im.mode in ("L", "LA") else 3
    alpha = data[..., colour] if data.shape[2] > colour else None
    return Image(np.ascontiguousarray(data[..., :colour]), alpha, 8, icc_profile=icc)


def _from_high_depth_gray(path: Path, im: PILImage.Image, icc: bytes | None) -> Image:
    if im.mode == "F":
        raise ImageError(f"{path} holds floating-point samples, which are not supported")
    data = np.asarray(im).astype(np.float64)
    if im.mode == "I" and (data.min() < 0 or data.max() > 65535):
        raise ImageError(f"{path} holds 32-bit samples, which are not supported")
    pixels = (data / 65535.0).astype(np.float32)[..., None]
    return Image(pixels, None, 16, icc_profile=icc)


def _sixteen_bit_layout(path: Path, im: PILImage.Image) -> str | None:
    """"colour" or "gray+alpha" for 16-bit files Pillow would silently narrow to 8 bits, else None."""
    if im.format == "PNG":
        with open(path, "rb") as f:
            header = f.read(26)
        # IHDR: byte 24 = bit depth; byte 25 = colour type (2 RGB, 4 gray+alpha, 6 RGBA).
        if len(header) == 26 and header[24] == 16 and header[25] in (2, 4, 6):
            return "gray+alpha" if header[25] == 4 else "colour"
    elif im.format == "TIFF":
        bits = im.tag_v2.get(258, (8,))
        bits = bits if isinstance(bits, tuple) else (bits,)
        if len(bits) >= 2 and max(bits) == 16:
            return "gray+alpha" if len(bits) == 2 else "colour"
    return None


def _read_cv2_16bit(path: Path, *, gray_alpha: bool) -> Image:
    data = cv2.imdecode(np.fromfile(path, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if data is None or data.dtype != np.uint16 or data.ndim != 3:
        raise ImageError(f"{path} is a 16-bit colour image that OpenCV could not decode")
    data = data.astype(np.float32) / 65535.0
    alpha = data[..., -1] if data.shape[2] in (2, 4) else None
    if gray_alpha:
        pixels = data[..., :1]
    else:
        pixels = data[..., 2::-1]  # BGR -> RGB
    return Image(np.ascontiguousarray(pixels), alpha, 16)


def apply_orientation(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """Turn stored pixels (HxW[xC]) upright according to the EXIF orientation tag (1-8)."""
    transpose = (1, 0) + tuple(range(2, pixels.ndim))
    ops = {
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1],
        5: lambda a: a.transpose(transpose),
        6: lambda a: a[::-1].transpose(transpose),
        7: lambda a: a[::-1, ::-1].transpose(transpose),
        8: lambda a: a[:, ::-1].transpose(transpose),
    }
    op = ops.get(orientation)
    return pixels if op is None else np.ascontiguousarray(op(pixels))


def _check_pixels(image: Image) -> None:
    p = image.pixels
    if p.ndim != 3 or p.shape[2] not in (1, 3) or min(p.shape[:2]) < 1:
        raise ImageError(f"cannot write pixels of shape {p.shape}: expected HxWx1 or HxWx3")
    if image.alpha is not None and image.alpha.shape != p.shape[:2]:
        raise ImageError(f"alpha of shape {image.alpha.shape} does not match pixels {p.shape[:2]}")
    if image.bit_depth not in (8, 16):
        raise ImageError(f"bit depth must be 8 or 16, not {image.bit_depth}")


def _quantize(values: np.ndarray, bits: int) -> np.ndarray:
    top = 65535.0 if bits == 16 else 255.0
    out = np.empty(values.shape, np.uint16 if bits == 16 else np.uint8)
    # Row blocks of ~16 M values: a full-size float temporary of a 16000x12000 output would cost 2.3 GB.
    step = max(1, (1 << 24) // max(1, values[0].size))
    for start in range(0, values.shape[0], step):
        block = np.nan_to_num(values[start:start + step], copy=True)
        np.clip(block, 0.0, 1.0, out=block)
        block *= top
        block += 0.5
        np.floor(block, out=block)
        out[start:start + step] = block
    return out


def _write_pillow(tmp: Path, fmt: str, data: np.ndarray, icc_profile: bytes | None, quality: int) -> None:
    if data.dtype == np.uint16:  # grayscale without alpha: Pillow holds it as I;16
        im = PILImage.fromarray(data[..., 0])
    else:
        im = PILImage.fromarray(data[..., 0] if data.shape[2] == 1 else data)
    options: dict[str, object] = {}
    if fmt in ("JPEG", "WEBP"):
        options["quality"] = quality
    if icc_profile and fmt != "BMP":
        options["icc_profile"] = icc_profile
    im.save(tmp, format=fmt, **options)


def _write_cv2(tmp: Path, suffix: str, data: np.ndarray, colour: int) -> None:
    """OpenCV wants BGR(A); gray with alpha becomes RGBA (its codecs lack two-channel images)."""
    colour_planes = data[..., :colour]
    if colour == 1 and data.shape[2] > 1:
        colour_planes = np.repeat(colour_planes, 3, axis=2)
    bgr = colour_planes[..., ::-1] if colour_planes.shape[2] == 3 else colour_planes
    planes = bgr if data.shape[2] == colour else np.concatenate([bgr, data[..., colour:]], axis=2)
    ok, encoded = cv2.imencode(suffix, np.ascontiguousarray(planes))
    if not ok:
        raise OSError("OpenCV could not encode the image")
    tmp.write_bytes(encoded.tobytes())
