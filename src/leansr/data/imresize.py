"""MATLAB-compatible `imresize` (bicubic, antialiased when shrinking) for numpy arrays and torch tensors.

Each axis is resized by a dense (out x in) weight matrix built with MATLAB's rules: cubic kernel (a = -0.5),
kernel widened by 1/scale when shrinking, sample positions `u = x/scale + (1 - 1/scale)/2`, weights normalised
to sum to 1 per output pixel, and out-of-range taps mirrored symmetrically (`[1..n, n..1]`). Applying the
matrices with matmul keeps one code path for numpy (float64, as MATLAB) and torch (any device and dtype,
differentiable). The benchmark LR protocol (`bicubic_degrade`) rounds to 8 bits as MATLAB does for uint8.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Sequence, TypeVar

import numpy as np
import torch

Array = TypeVar("Array", np.ndarray, torch.Tensor)
_KERNEL_WIDTH = 4.0  # support of the cubic kernel, in input pixels


def cubic(x: np.ndarray) -> np.ndarray:
    """Keys' cubic convolution kernel with a = -0.5 (MATLAB's 'bicubic')."""
    ax = np.abs(x)
    ax2, ax3 = ax * ax, ax * ax * ax
    near = (1.5 * ax3 - 2.5 * ax2 + 1.0) * (ax <= 1)
    far = (-0.5 * ax3 + 2.5 * ax2 - 4.0 * ax + 2.0) * ((ax > 1) & (ax <= 2))
    return near + far


@lru_cache(maxsize=64)
def resize_weights(in_len: int, out_len: int, scale: float, antialias: bool = True) -> np.ndarray:
    """The (out_len, in_len) float64 matrix MATLAB's imresize applies along one axis (read-only)."""
    shrink_aa = antialias and scale < 1
    kernel_width = _KERNEL_WIDTH / scale if shrink_aa else _KERNEL_WIDTH
    x = np.arange(1, out_len + 1, dtype=np.float64)  # MATLAB's 1-based output coordinates
    u = x / scale + 0.5 * (1.0 - 1.0 / scale)
    left = np.floor(u - kernel_width / 2.0)
    taps = int(math.ceil(kernel_width)) + 2
    idx = left[:, None] + np.arange(taps)[None, :]
    dist = u[:, None] - idx
    weights = scale * cubic(scale * dist) if shrink_aa else cubic(dist)
    weights /= weights.sum(axis=1, keepdims=True)
    # Symmetric border: index sequence 1..n, n..1 repeated (0-based below).
    m = np.mod(idx.astype(np.int64) - 1, 2 * in_len)
    mirrored = np.where(m < in_len, m, 2 * in_len - 1 - m)
    matrix = np.zeros((out_len, in_len), dtype=np.float64)
    rows = np.broadcast_to(np.arange(out_len)[:, None], mirrored.shape)
    np.add.at(matrix, (rows, mirrored), weights)
    matrix.setflags(write=False)
    return matrix


def output_size(in_len: int, scale: float) -> int:
    # MATLAB uses ceil(scale * n); the tolerance keeps e.g. (1/3) * 255 from rounding up to 86 by float noise.
    return int(math.ceil(scale * in_len - 1e-9))


def imresize(
    img: Array,
    scale: float | Sequence[float] | None = None,
    *,
    output_shape: Sequence[int] | None = None,
    antialias: bool = True,
) -> Array:
    """Resize like MATLAB `imresize(img, scale, 'bicubic')`; float result, unrounded.

    numpy: HxW or HxWxC (computed in float64; float inputs keep their dtype). torch: (..., H, W), e.g. NCHW
    or CHW, in the tensor's dtype on its device (integer tensors become float32). Give `scale` (a factor, or
    (h, w) factors; 0.25 shrinks 4x) or `output_shape` (h, w), not both.
    """
    is_torch = isinstance(img, torch.Tensor)
    if not is_torch and not isinstance(img, np.ndarray):
        raise TypeError(f"imresize takes a numpy array or torch tensor, not {type(img).__name__}")
    h_axis = img.ndim - 2 if is_torch else 0
    if img.ndim < 2 or (not is_torch and img.ndim > 3):
        raise ValueError(f"cannot resize an array of shape {tuple(img.shape)}")
    in_shape = (int(img.shape[h_axis]), int(img.shape[h_axis + 1]))
    scales, out_shape = _resolve_geometry(in_shape, scale, output_shape)
    # MATLAB resizes the dimension with the smallest scale first (ties: rows first).
    order = sorted(range(2), key=lambda a: scales[a])
    out = _as_float(img)
    for axis in order:
        if scales[axis] == 1.0 and out_shape[axis] == in_shape[axis]:
            continue
        matrix = resize_weights(in_shape[axis], out_shape[axis], scales[axis], antialias)
        out = _apply(out, matrix, h_axis + axis)
    return out


def mod_crop(img: Array, scale: int) -> Array:
    """Crop the bottom/right so height and width are multiples of `scale` (numpy HxW[xC] or torch (..., H, W))."""
    h_axis = img.ndim - 2 if isinstance(img, torch.Tensor) else 0
    h, w = img.shape[h_axis], img.shape[h_axis + 1]
    if h < scale or w < scale:
        raise ValueError(f"a {h}x{w} image is smaller than the scale {scale}")
    index = [slice(None)] * img.ndim
    index[h_axis] = slice(0, h - h % scale)
    index[h_axis + 1] = slice(0, w - w % scale)
    return img[tuple(index)]


def bicubic_degrade(hr_uint8: np.ndarray, scale: int) -> np.ndarray:
    """The benchmark LR: HR cropped to a multiple of `scale`, MATLAB-bicubic shrunk, rounded to uint8."""
    if not isinstance(hr_uint8, np.ndarray) or hr_uint8.dtype != np.uint8:
        raise TypeError("bicubic_degrade takes a uint8 numpy image (HxW or HxWxC)")
    lr = imresize(mod_crop(hr_uint8, scale), 1.0 / scale)
    return quantize_uint8(lr)


def quantize_uint8(img: np.ndarray) -> np.ndarray:
    """Clip to 0-255 and round half up, as MATLAB's conversion to uint8 does for non-negative values."""
    return np.floor(np.clip(img, 0.0, 255.0) + 0.5).astype(np.uint8)


def _resolve_geometry(
    in_shape: tuple[int, int],
    scale: float | Sequence[float] | None,
    output_shape: Sequence[int] | None,
) -> tuple[tuple[float, float], tuple[int, int]]:
    if (scale is None) == (output_shape is None):
        raise ValueError("give exactly one of scale and output_shape")
    if scale is not None:
        pair = (float(scale), float(scale)) if np.isscalar(scale) else tuple(float(s) for s in scale)
        if len(pair) != 2 or min(pair) <= 0:
            raise ValueError(f"scale must be a positive number or (h, w) pair, not {scale!r}")
        sizes = (output_size(in_shape[0], pair[0]), output_size(in_shape[1], pair[1]))
        if min(sizes) < 1:
            raise ValueError(f"scale {scale!r} leaves no pixels of a {in_shape[0]}x{in_shape[1]} image")
        return (pair[0], pair[1]), sizes
    sizes = tuple(int(n) for n in output_shape)
    if len(sizes) != 2 or min(sizes) < 1:
        raise ValueError(f"output_shape must be two positive sizes, not {output_shape!r}")
    return (sizes[0] / in_shape[0], sizes[1] / in_shape[1]), (sizes[0], sizes[1])


def _as_float(img: Array) -> Array:
    if isinstance(img, torch.Tensor):
        return img if img.is_floating_point() else img.float()
    return img if img.dtype in (np.float32, np.float64) else img.astype(np.float64)


def _apply(img: Array, matrix: np.ndarray, axis: int) -> Array:
    """Contract `axis` of img with the matrix's input dimension (out = matrix @ img along that axis)."""
    if isinstance(img, torch.Tensor):
        m = torch.tensor(matrix, dtype=img.dtype, device=img.device)
        return m @ img if axis == img.ndim - 2 else img @ m.T
    out = np.tensordot(matrix, img.astype(np.float64, copy=False), axes=(1, axis))
    return np.moveaxis(out, 0, axis).astype(img.dtype, copy=False)
