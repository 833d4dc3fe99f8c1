"""MATLAB-style bicubic resize: hand-derived weights, borders, numpy/torch agreement, benchmark LR."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import shared_path
from leansr.data.imresize import bicubic_degrade, cubic, imresize, mod_crop, resize_weights

# Keys' cubic (a = -0.5) at distances 0.25, 0.75, 1.25, 1.75, worked out by hand.
K025, K075, K125, K175 = 0.8671875, 0.2265625, -0.0703125, -0.0234375


def test_cubic_kernel_values():
    x = np.array([0.0, 0.25, 0.75, 1.0, 1.25, 1.75, 2.0, 2.5])
    assert np.allclose(cubic(x), [1, K025, K075, 0, K125, K175, 0, 0])
    assert np.allclose(cubic(-x), cubic(x))


def test_upscale_x2_interior_and_border_weights():
    m = resize_weights(10, 20, 2.0)
    # Output 4 (1-based) samples input position 2.25: taps at inputs 1..4.
    assert np.allclose(m[3, :4], [K125, K025, K075, K175])
    assert np.allclose(m[3, 4:], 0)
    # Output 1 samples 0.75: taps at 0 and -1 mirror onto inputs 1 and 2.
    assert np.allclose(m[0, :3], [K075 + K025, K175 + K125, 0])
    assert np.allclose(m.sum(axis=1), 1.0)


def test_downscale_x2_is_antialiased():
    m = resize_weights(16, 8, 0.5)
    half = [0.5 * K175, 0.5 * K125, 0.5 * K075, 0.5 * K025]
    # Output 3 samples input position 5.5: eight taps, inputs 2..9, the widened kernel.
    assert np.allclose(m[2, 1:9], half + half[::-1])
    assert np.allclose(m.sum(axis=1), 1.0)
    plain = resize_weights(16, 8, 0.5, antialias=False)
    assert np.count_nonzero(plain[2]) == 4


@pytest.mark.parametrize("scale", [0.25, 1 / 3, 0.6, 1.5, 2.0, 3.0, 4.0])
def test_constant_image_stays_constant_and_size_is_ceil(scale):
    img = np.full((23, 17, 3), 0.37)
    out = imresize(img, scale)
    assert out.shape == (int(np.ceil(23 * scale - 1e-9)), int(np.ceil(17 * scale - 1e-9)), 3)
    assert np.allclose(out, 0.37)


def test_scale_one_is_identity_and_output_shape_mode():
    rng = np.random.default_rng(0)
    img = rng.random((9, 11))
    assert np.array_equal(imresize(img, 1.0), img)
    out = imresize(img, output_shape=(18, 22))
    assert np.allclose(out, imresize(img, 2.0))
    with pytest.raises(ValueError):
        imresize(img, 2.0, output_shape=(18, 22))
    with pytest.raises(ValueError):
        imresize(img)


def test_separable_matches_explicit_matrices():
    rng = np.random.default_rng(1)
    img = rng.random((12, 10))
    expected = resize_weights(12, 4, 1 / 3) @ img @ resize_weights(10, 4, 1 / 3).T
    assert np.allclose(imresize(img, 1 / 3), expected)


def test_torch_matches_numpy_and_is_differentiable():
    rng = np.random.default_rng(2)
    img = rng.random((13, 15, 3)).astype(np.float32)
    ref = imresize(img.astype(np.float64), 0.5)
    x = torch.from_numpy(img).permute(2, 0, 1)[None].clone().requires_grad_(True)
    out = imresize(x, 0.5)
    assert out.shape == (1, 3, 7, 8) and out.dtype == torch.float32
    assert np.allclose(out[0].permute(1, 2, 0).detach().numpy(), ref, atol=1e-5)
    out.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    chw = imresize(x[0].detach().double(), 3.0)
    assert chw.shape == (3, 39, 45) and chw.dtype == torch.float64


def test_numpy_dtypes():
    img = np.arange(64, dtype=np.uint8).reshape(8, 8)
    assert imresize(img, 0.5).dtype == np.float64
    assert imresize(img.astype(np.float32), 0.5).dtype == np.float32


def test_mod_crop():
    img = np.zeros((10, 13, 3))
    assert mod_crop(img, 4).shape == (8, 12, 3)
    assert mod_crop(torch.zeros(1, 3, 10, 13), 3).shape == (1, 3, 9, 12)


def test_bicubic_degrade_rounds_and_clips():
    rng = np.random.default_rng(3)
    hr = rng.integers(0, 256, (26, 30, 3), dtype=np.uint8)
    lr = bicubic_degrade(hr, 4)
    assert lr.dtype == np.uint8 and lr.shape == (6, 7, 3)
    exact = imresize(hr[:24, :28].astype(np.float64), 0.25)
    assert np.abs(lr - np.clip(exact, 0, 255)).max() <= 0.5 + 1e-9
    with pytest.raises(TypeError):
        bicubic_degrade(hr.astype(np.float32), 4)


@pytest.mark.reference
@pytest.mark.parametrize("dataset", ["Set5", "Set14"])
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_matches_reference_bicubic_lr(dataset, scale):
    ref_dir = shared_path("reference", "bicubic_lr", f"{dataset}_x{scale}")
    hr_dir = shared_path("data", dataset)
    same = total = 0
    for ref_file in sorted(ref_dir.glob("*.png")):
        ref = np.asarray(Image.open(ref_file))
        lr = bicubic_degrade(np.asarray(Image.open(hr_dir / ref_file.name)), scale)
        if lr.ndim == 2:  # the reference stores grayscale bridge.png as RGB with equal channels
            lr = np.repeat(lr[..., None], 3, axis=2)
        assert lr.shape == ref.shape, ref_file.name
        diff = np.abs(lr.astype(np.int16) - ref)
        assert diff.max() <= 1, ref_file.name
        same += int((diff == 0).sum())
        total += diff.size
    assert same / total >= 0.99
