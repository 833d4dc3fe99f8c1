"""PSNR and SSIM as the SR literature computes them (MATLAB conventions), in float64.

Images are numpy arrays on the 0-255 scale (uint8 or float), HxW, HxWx1 or HxWx3 RGB. Metrics run on the
BT.601 luma Y (the default) or on all channels, after cropping `border` pixels from every edge. Two Y
conventions are in use and differ by up to ~0.1 dB at x2:
  "rounded" — MATLAB `rgb2ycbcr` on uint8 images, Y rounded to 8 bits (official benchmark numbers);
  "float"   — Y kept in floating point (BasicSR/mmsr logs, e.g. the PAN authors').
A one-channel image counts as R = G = B, so its Y is 16 + 219 v / 255.
"""

from __future__ import annotations

import math
from typing import Literal

import cv2
import numpy as np

from leansr.color import BT601_MATRIX, BT601_OFFSET

YConvention = Literal["rounded", "float"]
Y_CONVENTIONS = ("rounded", "float")
# MATLAB rgb2ycbcr, Y row: offset 16, coefficients for R, G, B on the 0-255 scale (sum 219).
_Y_OFFSET = BT601_OFFSET[0]
_Y_COEFFS = np.array(BT601_MATRIX[0]) / 255.0
_SSIM_C1 = (0.01 * 255.0) ** 2
_SSIM_C2 = (0.03 * 255.0) ** 2


def rgb_to_y(img: np.ndarray, convention: YConvention = "rounded") -> np.ndarray:
    """BT.601 luma (16-235 range) of an RGB or gray image on the 0-255 scale, HxW float64."""
    if convention not in Y_CONVENTIONS:
        raise ValueError(f"unknown Y convention {convention!r}; use one of {Y_CONVENTIONS}")
    rgb = _as_hwc(img)
    if rgb.shape[2] == 1:
        rgb = np.repeat(rgb, 3, axis=2)
    elif rgb.shape[2] != 3:
        raise ValueError(f"expected an RGB or gray image, got {rgb.shape[2]} channels")
    y = rgb @ _Y_COEFFS + _Y_OFFSET
    # MATLAB's uint8 output rounds half away from zero; Y is positive here.
    return np.floor(y + 0.5) if convention == "rounded" else y


def psnr(
    a: np.ndarray,
    b: np.ndarray,
    *,
    border: int = 0,
    channels: Literal["y", "rgb"] = "y",
    y_convention: YConvention = "rounded",
) -> float:
    """Peak signal-to-noise ratio in dB for peak 255; inf for identical images."""
    x, y = _prepare(a, b, border, channels, y_convention)
    mse = float(np.mean((x - y) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(255.0**2 / mse)


def ssim(
    a: np.ndarray,
    b: np.ndarray,
    *,
    border: int = 0,
    channels: Literal["y", "rgb"] = "y",
    y_convention: YConvention = "rounded",
) -> float:
    """Wang et al. SSIM: 11x11 Gaussian window (sigma 1.5), valid region only; channel mean for RGB."""
    x, y = _prepare(a, b, border, channels, y_convention)
    if min(x.shape[:2]) < 11:
        raise ValueError(f"SSIM needs at least 11x11 pixels after the border crop, got {x.shape[:2]}")
    return float(np.mean([_ssim_plane(x[..., c], y[..., c]) for c in range(x.shape[2])]))


def _ssim_plane(x: np.ndarray, y: np.ndarray) -> float:
    g = cv2.getGaussianKernel(11, 1.5)
    window = g @ g.T

    def local_mean(img: np.ndarray) -> np.ndarray:
        # cv2 filters 'same'; dropping 5 pixels each side leaves MATLAB's filter2(..., 'valid').
        return cv2.filter2D(img, -1, window, borderType=cv2.BORDER_REFLECT)[5:-5, 5:-5]

    mu_x, mu_y = local_mean(x), local_mean(y)
    var_x = local_mean(x * x) - mu_x**2
    var_y = local_mean(y * y) - mu_y**2
    cov = local_mean(x * y) - mu_x * mu_y
    num = (2 * mu_x * mu_y + _SSIM_C1) * (2 * cov + _SSIM_C2)
    den = (mu_x**2 + mu_y**2 + _SSIM_C1) * (var_x + var_y + _SSIM_C2)
    return float(np.mean(num / den))


def _prepare(
    a: np.ndarray, b: np.ndarray, border: int, channels: str, y_convention: YConvention
) -> tuple[np.ndarray, np.ndarray]:
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} vs {b.shape}")
    if channels == "y":
        x, y = rgb_to_y(a, y_convention)[..., None], rgb_to_y(b, y_convention)[..., None]
    elif channels == "rgb":
        x, y = _as_hwc(a), _as_hwc(b)
    else:
        raise ValueError(f"channels must be 'y' or 'rgb', not {channels!r}")
    if border:
        x, y = x[border:-border, border:-border], y[border:-border, border:-border]
    if x.size == 0:
        raise ValueError(f"border {border} leaves no pixels of a {a.shape[0]}x{a.shape[1]} image")
    return x, y


def _as_hwc(img: np.ndarray) -> np.ndarray:
    img = np.asarray(img, dtype=np.float64)
    if img.ndim == 2:
        return img[..., None]
    if img.ndim != 3:
        raise ValueError(f"expected an HxW or HxWxC image, got shape {img.shape}")
    return img
