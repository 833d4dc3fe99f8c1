"""The ARM edge score of an 8-bit RGB patch: mean absolute 3x3 Laplacian of its gray image, as OpenCV does it.

OpenCV is the reference (the official code calls it): gray by `cvtColor(RGB2GRAY)` (fixed-point 0.299/0.587/0.114,
rounded), `Laplacian(CV_16S, ksize=3)`, whose kernel is [[2,0,2],[0,-8,0],[2,0,2]] with reflect-101 borders inside
the patch, then `convertScaleAbs` (|v| saturated to 255) and the mean over the patch.
"""

from __future__ import annotations

import cv2
import numpy as np


def edge_score(patch_rgb_u8: np.ndarray) -> float:
    """Edge score of one HxWx3 uint8 RGB patch (the official `util.laplacian(x).mean()`)."""
    gray = cv2.cvtColor(np.ascontiguousarray(patch_rgb_u8), cv2.COLOR_RGB2GRAY)
    return float(cv2.convertScaleAbs(cv2.Laplacian(gray, cv2.CV_16S, ksize=3)).mean())


def edge_scores(lr_rgb_u8: np.ndarray, origins: list[tuple[int, int]], size: int) -> np.ndarray:
    """Scores of the `size` x `size` patches at (top, left) `origins`, each filtered on its own."""
    return np.array([edge_score(lr_rgb_u8[t:t + size, l:l + size]) for t, l in origins], dtype=np.float64)
