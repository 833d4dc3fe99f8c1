"""The authors' adaptive inference (chenbong/ARM-Net `USSR_Model.test_image`), reproduced exactly.

32x32 LR patches at stride 28 from the top-left; the remainder at the right and bottom (up to 27 px) is dropped.
Each patch's edge score picks the nearest bin of the table; the route is `argmax(eta * P - C)` with
`eta = k * C_max` and C the official FLOPs. Each SR patch is clamped and rounded to 8 bits; overlaps are averaged
(strips of 16 HR px by 2, corners by 4). The metric: RGB PSNR of the unrounded merge on the covered region,
4-px shave. Patches of one route run as one batch (the official loop runs batch 1; same numbers up to float
rounding before the 8-bit rounding).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from leansr.arm.batching import run_patches
from leansr.arm.costs import route_costs
from leansr.arm.edge import edge_scores
from leansr.arm.table import QualityTable
from leansr.errors import LeansrError
from leansr.models.arm import SlimmableSR

PATCH, STEP, SHAVE = 32, 28, 4


@dataclass
class RoutedResult:
    sr: np.ndarray  # HxWx3 float64 on 0-255 (the official merge is not re-rounded)
    choices: np.ndarray  # route index per patch, grid rows x cols (official); per tile otherwise
    routes: list[int]  # patches per route: bicubic first, then ascending width
    cost_fraction: float  # executed true MACs / full width on the whole LR image
    runtime_ms: float
    boxes: list[tuple[int, int, int, int]] = field(default_factory=list)  # HR (top, left, h, w) per patch


def grid(h: int, w: int) -> tuple[list[int], list[int]]:
    rows, cols = list(range(0, h - PATCH + 1, STEP)), list(range(0, w - PATCH + 1, STEP))
    if not rows or not cols:
        raise LeansrError(f"a {w}x{h} image is smaller than one {PATCH}x{PATCH} patch of the official routing")
    return rows, cols


def official_choices(table: QualityTable, scores: np.ndarray, k: float) -> np.ndarray:
    """Route index per patch: argmax over routes of eta * predicted PSNR - cost (first on ties)."""
    if table.official_costs is None:
        raise LeansrError(f"{table.source or 'the table'} lists no route costs, which the official routing needs")
    check_k(k)
    costs = np.asarray(table.official_costs, dtype=np.float64)
    eta = k * costs[-1]
    values = eta * table.psnr[:, table.bins(scores)] - costs[:, None]
    return values.argmax(axis=0)


def check_k(k: float) -> float:
    if not (math.isfinite(k) and k > 0):
        raise LeansrError(f"--k must be a positive number, not {k}")
    return k


def run_official(model: SlimmableSR, lr: np.ndarray, table: QualityTable, k: float) -> RoutedResult:
    """Route and run the HxWx3 uint8 RGB `lr` as the official test does."""
    start = time.perf_counter()
    rows, cols = grid(*lr.shape[:2])
    origins = [(t, l) for t in rows for l in cols]
    choices = official_choices(table, edge_scores(lr, origins, PATCH), k)
    x = torch.from_numpy(np.ascontiguousarray(lr)).permute(2, 0, 1).float().div(255.0)
    patches = torch.stack([x[:, t:t + PATCH, l:l + PATCH] for t, l in origins])
    device = next(model.parameters()).device
    s = model.scale
    out = np.zeros((len(origins), PATCH * s, PATCH * s, 3))
    for index, width in enumerate(model.routes):
        chosen = np.flatnonzero(choices == index)
        if chosen.size:
            sr = run_patches(lambda b, w=width: model.forward_width(b, w), patches[chosen], device=device)
            out[chosen] = sr.clamp(0, 1).mul(255).round().permute(0, 2, 3, 1).double().cpu().numpy()
    merged = np.zeros(((rows[-1] + PATCH) * s, (cols[-1] + PATCH) * s, 3))
    count = np.zeros(merged.shape[:2] + (1,))
    boxes = [(t * s, l * s, PATCH * s, PATCH * s) for t, l in origins]
    for (t, l, h, w), patch in zip(boxes, out):
        merged[t:t + h, l:l + w] += patch
        count[t:t + h, l:l + w] += 1
    merged /= count
    runtime_ms = (time.perf_counter() - start) * 1e3
    counts = np.bincount(choices, minlength=len(model.routes))
    return RoutedResult(merged, choices.reshape(len(rows), len(cols)), counts.tolist(),
                        executed_fraction(model, counts, PATCH * PATCH, lr.shape[0] * lr.shape[1]), runtime_ms, boxes)


def executed_fraction(model: SlimmableSR, counts, pixels_per_patch: float, image_pixels: int) -> float:
    """True MACs of the executed patches over those of the full width on the whole image."""
    costs = route_costs(model)
    executed = sum(n * costs[w].macs * pixels_per_patch for n, w in zip(counts, model.routes))
    return float(executed / (costs[model.widths[-1]].macs * image_pixels))


def psnr_rgb_official(sr: np.ndarray, hr: np.ndarray) -> float:
    """The authors' metric: float SR against uint8 HR on the covered region, 4-px shave, all RGB values."""
    h, w = sr.shape[:2]
    a = sr[SHAVE:h - SHAVE, SHAVE:w - SHAVE].astype(np.float64)
    b = hr[:h, :w][SHAVE:h - SHAVE, SHAVE:w - SHAVE].astype(np.float64)
    mse = float(np.mean((a - b) ** 2))
    return 80.0 if mse == 0 else 20 * math.log10(255.0 / math.sqrt(mse))


def round_half_up(sr: np.ndarray) -> np.ndarray:
    return np.floor(np.clip(sr, 0, 255) + 0.5).astype(np.uint8)
