"""PSNR/SSIM: hand-computed cases, the two Y conventions, border crop, SSIM against an explicit loop."""

from __future__ import annotations

import math

import numpy as np
import pytest

from leansr.metrics import psnr, rgb_to_y, ssim


def test_rgb_to_y_matlab_values():
    colours = np.array([[[0, 0, 0], [255, 255, 255], [255, 0, 0], [0, 255, 0], [0, 0, 255]]], np.uint8)
    # 16 + 65.481 = 81.481, 16 + 128.553 = 144.553, 16 + 24.966 = 40.966
    assert np.array_equal(rgb_to_y(colours), [[16, 235, 81, 145, 41]])
    assert np.allclose(rgb_to_y(colours, "float"), [[16, 235, 81.481, 144.553, 40.966]])
    gray = np.array([[10]], np.uint8)
    assert np.allclose(rgb_to_y(gray, "float"), 16 + 219 * 10 / 255)
    with pytest.raises(ValueError):
        rgb_to_y(colours, "nearest")


def test_identical_images():
    img = np.random.default_rng(0).integers(0, 256, (20, 20, 3), dtype=np.uint8)
    assert psnr(img, img) == math.inf
    assert ssim(img, img) == pytest.approx(1.0)


def test_known_mse_gives_known_psnr():
    a = np.zeros((20, 20, 3), np.uint8)
    b = np.full((20, 20, 3), 10, np.uint8)
    assert psnr(a, b, channels="rgb") == pytest.approx(10 * math.log10(255**2 / 100))
    # Y: 16 vs 16 + 219 * 10 / 255 = 24.588..., which rounds to 25.
    assert psnr(a, b) == pytest.approx(10 * math.log10(255**2 / 81))
    assert psnr(a, b, y_convention="float") == pytest.approx(10 * math.log10(255**2 / (219 * 10 / 255) ** 2))


def test_border_is_cropped():
    a = np.full((30, 30, 3), 100, np.uint8)
    b = a.copy()
    b[:2] = 0
    b[:, -2:] = 0
    assert psnr(a, b, border=2) == math.inf
    assert psnr(a, b, border=1) < 30
    with pytest.raises(ValueError):
        psnr(a, b, border=15)


def test_ssim_of_constant_images():
    a = np.full((16, 16, 3), 100, np.uint8)
    b = np.full((16, 16, 3), 110, np.uint8)
    c1 = (0.01 * 255) ** 2
    expected = (2 * 100 * 110 + c1) / (100**2 + 110**2 + c1)  # no variance: the contrast term is 1
    assert ssim(a, b, channels="rgb") == pytest.approx(expected)


def test_ssim_matches_explicit_window_loop():
    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, (14, 15)).astype(np.float64)
    b = np.clip(a + rng.normal(0, 20, a.shape), 0, 255)
    coords = np.arange(11) - 5
    g = np.exp(-(coords**2) / (2 * 1.5**2))
    w = np.outer(g, g) / np.outer(g, g).sum()
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    values = []
    for i in range(a.shape[0] - 10):
        for j in range(a.shape[1] - 10):
            x, y = a[i:i + 11, j:j + 11], b[i:i + 11, j:j + 11]
            mx, my = (w * x).sum(), (w * y).sum()
            vx, vy = (w * (x - mx) ** 2).sum(), (w * (y - my) ** 2).sum()
            cov = (w * (x - mx) * (y - my)).sum()
            values.append((2 * mx * my + c1) * (2 * cov + c2) / ((mx**2 + my**2 + c1) * (vx + vy + c2)))
    assert ssim(a, b, channels="rgb") == pytest.approx(np.mean(values), abs=1e-9)


def test_conventions_differ_and_rgb_is_channel_mean():
    rng = np.random.default_rng(2)
    a = rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-3, 4, a.shape), 0, 255).astype(np.uint8)
    assert psnr(a, b) != pytest.approx(psnr(a, b, y_convention="float"), abs=1e-3)
    per_channel = [ssim(a[..., c], b[..., c], channels="rgb") for c in range(3)]
    assert ssim(a, b, channels="rgb") == pytest.approx(np.mean(per_channel))


def test_shape_mismatch_and_small_images_rejected():
    with pytest.raises(ValueError, match="shape"):
        psnr(np.zeros((4, 4)), np.zeros((4, 5)))
    with pytest.raises(ValueError, match="11x11"):
        ssim(np.zeros((12, 12)), np.zeros((12, 12)), border=1)
