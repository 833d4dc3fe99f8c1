"""Training data: aligned LR/HR crops, augmentation, DIV2K/prepared pairing, resumable order, bad files."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from train_helpers import write_images

from leansr.cli import main
from leansr.data.imresize import bicubic_degrade
from leansr.data.image_io import read_rgb_uint8
from leansr.train.data import (
    PatchDataset,
    StreamSampler,
    bicubic_patch,
    collect_samples,
)


def _hr(seed=0, shape=(64, 80)):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (*shape, 3), dtype=np.uint8)


@pytest.mark.parametrize("y, x", [(0, 0), (5, 7), (8, 12), (3, 0)])  # corners, interior, far borders
def test_on_the_fly_lr_equals_the_crop_of_the_whole_images_lr(y, x):
    hr = _hr()
    whole = bicubic_degrade(hr, 4)
    hr_patch, lr_patch = bicubic_patch(hr, y, x, 8, 4)
    assert hr_patch.shape == (32, 32, 3)
    np.testing.assert_array_equal(hr_patch, hr[4 * y : 4 * y + 32, 4 * x : 4 * x + 32])
    diff = np.abs(lr_patch.astype(int) - whole[y : y + 8, x : x + 8].astype(int))
    assert diff.max() <= 1 and diff.mean() < 0.01  # only float round-off at .5 ties may differ


def _interior_matches(lr: torch.Tensor, hr: torch.Tensor, scale: int) -> float:
    """Max |LR - bicubic(HR)| on 0-255 away from the patch border, where the two must agree."""
    hr_u8 = (hr.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    lr_u8 = (lr.permute(1, 2, 0).numpy() * 255).round().astype(np.int64)
    made = bicubic_degrade(hr_u8, scale).astype(np.int64)
    return float(np.abs(made - lr_u8)[2:-2, 2:-2].max())


@pytest.mark.parametrize("prepared", [False, True])
def test_patches_are_aligned_after_augmentation(tmp_path, prepared):
    write_images(tmp_path / "src", count=2, size=(96, 100))
    if prepared:
        assert main(["data", "prepare", str(tmp_path / "src"), "-o", str(tmp_path / "prep"), "--scale", "4",
                     "--sub-image", "48", "--step", "40"]) == 0
        folder = tmp_path / "prep" / "HR"
    else:
        folder = tmp_path / "src"
    samples = collect_samples([str(folder)], 4)
    assert all((s.lr is not None) == prepared for s in samples)
    dataset = PatchDataset(samples, scale=4, patch_size=8, flip=True, rot90=True)
    for seed in range(12):  # covers flips and transposes
        lr, hr = dataset[(seed % len(samples), seed)]
        assert lr.shape == (3, 8, 8) and hr.shape == (3, 32, 32) and lr.dtype == torch.float32
        assert _interior_matches(lr, hr, 4) <= 1
    again = dataset[(1, 5)]
    assert torch.equal(again[0], dataset[(1, 5)][0])  # a sample is a pure function of its key


def test_prepared_sub_images_are_cut_from_the_whole_lr(tmp_path):
    src = write_images(tmp_path / "src", count=1, size=(100, 92))[0]
    main(["data", "prepare", str(tmp_path / "src"), "-o", str(tmp_path / "prep"), "--scale", "4",
          "--sub-image", "48", "--step", "40"])
    hr_files = sorted((tmp_path / "prep" / "HR").glob("*.png"))
    assert len(hr_files) == 3 * 3  # rows start at 0, 40 and 52 (flush end); columns at 0, 40 and 44
    whole_hr = read_rgb_uint8(src)[:100, :92]
    whole_lr = bicubic_degrade(whole_hr, 4)
    last = read_rgb_uint8(tmp_path / "prep" / "LR_bicubic" / "X4" / f"{hr_files[-1].stem}x4.png")
    np.testing.assert_array_equal(last, whole_lr[-12:, -12:])


def test_div2k_layout_pairs_lr_files(tmp_path):
    write_images(tmp_path / "DIV2K_train_HR", count=2, size=(32, 32))
    lr_dir = tmp_path / "DIV2K_train_LR_bicubic" / "X4"
    write_images(lr_dir, count=1, size=(8, 8))
    (lr_dir / "img0.png").rename(lr_dir / "img0x4.png")
    samples = collect_samples([str(tmp_path / "DIV2K_train_HR")], 4)
    assert [s.lr.name if s.lr else None for s in samples] == ["img0x4.png", None]
    assert all(s.lr is None for s in collect_samples([str(tmp_path / "DIV2K_train_HR")], 4,
                                                      use_prepared_lr=False))


def test_unreadable_image_is_reported_once_and_skipped(tmp_path, caplog):
    write_images(tmp_path, count=1, size=(40, 40))
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not a png at all")
    samples = collect_samples([str(tmp_path)], 4)
    dataset = PatchDataset(samples, scale=4, patch_size=8, flip=False, rot90=False)
    bad_index = [s.hr for s in samples].index(bad)
    with caplog.at_level(logging.WARNING, logger="leansr.train"):
        for seed in range(3):
            lr, _ = dataset[(bad_index, seed)]
            assert lr.shape == (3, 8, 8)
    assert sum("broken.png" in r.message for r in caplog.records) == 1


def test_stream_resumes_exactly_and_shards_over_ranks():
    def batches(sampler, n):
        it = iter(sampler)
        return [next(it) for _ in range(n)]

    full = batches(StreamSampler(5, 4, seed=1), 6)
    assert batches(StreamSampler(5, 4, seed=1, start=3), 3) == full[3:]
    shards = [batches(StreamSampler(5, 4, seed=1, rank=r, world_size=2), 6) for r in range(2)]
    assert [a + b for a, b in zip(*shards)] == full
    # every epoch is a permutation: positions 0..4 and 5..9 each visit all images once
    flat = [index for batch in full for index, _ in batch]
    assert sorted(flat[:5]) == sorted(flat[5:10]) == list(range(5))
    assert len({seed for batch in full for _, seed in batch}) == 24

