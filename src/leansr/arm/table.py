"""Edge -> quality tables: per edge-score bin, the mean quality each route reaches on calibration patches.

One class for both sources: the official LUT files (`arm_official_lut.json`: mean per-patch PSNR per bin,
key "0" = bicubic, then ascending width; the routes' costs in ARM's FLOPs) and our calibration, which also
keeps the mean MSE per bin (what image PSNR depends on). Lookup is the official nearest bin centre.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from leansr.errors import LeansrError

_OFFICIAL_KEYS = {"arm_fsrcnn": "fsrcnn", "arm_carn": "carn", "arm_srresnet": "srresnet"}
_COST_TOLERANCE = 0.01  # official FLOPs also count the PReLU weights (4 "FLOPs" in FSRCNN)


@dataclass
class QualityTable:
    centers: np.ndarray  # (bins,) edge-score bin centres
    psnr: np.ndarray  # (routes, bins) mean per-patch PSNR, route 0 = bicubic
    counts: np.ndarray  # (bins,) calibration patches per bin
    mse: np.ndarray | None = None  # (routes, bins) mean per-patch MSE (0-255 scale); ours only
    official_costs: tuple[float, ...] | None = None  # ARM FLOPs per 32x32 patch, per route
    routes: tuple[int, ...] | None = None  # widths (0 = bicubic) when known
    source: str = ""

    def bins(self, scores: np.ndarray) -> np.ndarray:
        """Nearest bin centre of each score (first on ties, as `np.argmin`)."""
        scores = np.asarray(scores, dtype=np.float64)
        return np.abs(self.centers[None, :] - scores[:, None]).argmin(axis=1)

    def predict_mse(self, scores: np.ndarray) -> np.ndarray:
        """(routes, patches) expected MSE (0-255 scale) from the smoothed table, interpolated between centres.

        Official tables hold mean PSNR only; their MSE is taken as 255^2 / 10^(PSNR/10) per bin.
        """
        mse = self._smoothed_mse
        scores = np.asarray(scores, dtype=np.float64)
        return np.stack([np.interp(scores, self.centers, row) for row in mse])

    @cached_property
    def _smoothed_mse(self) -> np.ndarray:
        mse = self.mse if self.mse is not None else 255.0**2 * 10.0 ** (-self.psnr / 10.0)
        return smoothed(mse, np.maximum(self.counts, 1))

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"edge_bin_centers": self.centers.tolist(), "patch_count_per_bin": self.counts.tolist(),
                               "mean_psnr_per_bin": {str(i): row.tolist() for i, row in enumerate(self.psnr)}}
        if self.mse is not None:
            out["mean_mse_per_bin"] = {str(i): row.tolist() for i, row in enumerate(self.mse)}
        if self.official_costs is not None:
            out["cost_list_flops_per_32x32_patch"] = list(self.official_costs)
        if self.routes is not None:
            out["routes"] = list(self.routes)
        return out

    @classmethod
    def from_json(cls, d: dict[str, Any], source: str = "") -> QualityTable:
        try:
            psnr = _rows(d["mean_psnr_per_bin"])
            mse = _rows(d["mean_mse_per_bin"]) if "mean_mse_per_bin" in d else None
            costs = d.get("cost_list_flops_per_32x32_patch")
            table = cls(np.asarray(d["edge_bin_centers"], np.float64), psnr,
                        np.asarray(d.get("patch_count_per_bin", [0] * psnr.shape[1])), mse,
                        None if costs is None else tuple(float(c) for c in costs),
                        tuple(d["routes"]) if "routes" in d else None, source)
        except (KeyError, TypeError, ValueError) as exc:
            raise LeansrError(f"{source or 'table'} is not an ARM edge-to-quality table ({exc})") from None
        if table.psnr.shape[1] != table.centers.size:
            raise LeansrError(f"{source}: {table.psnr.shape[1]} values per route for {table.centers.size} bins")
        return table

    def check_fits(self, arch: str, routes: tuple[int, ...], official_costs: list[float]) -> None:
        """Refuse a table made for another model: route count, widths, and official costs must agree."""
        name = f"{self.source or 'the table'}"
        if self.psnr.shape[0] != len(routes):
            raise LeansrError(f"{name} has {self.psnr.shape[0]} routes, but {arch} has {len(routes)} "
                              f"({', '.join(map(str, routes))}); it was made for another model")
        if self.routes is not None and tuple(self.routes) != tuple(routes):
            raise LeansrError(f"{name} is for widths {list(self.routes)}, not {arch}'s {list(routes)}")
        if self.official_costs is not None:
            ours, theirs = np.asarray(official_costs), np.asarray(self.official_costs)
            if np.any(np.abs(ours - theirs) > _COST_TOLERANCE * np.maximum(ours, 1.0)):
                raise LeansrError(f"{name} lists costs {[round(c / 1e6, 1) for c in theirs]} MFLOPs per patch, "
                                  f"{arch} has {[round(c / 1e6, 1) for c in ours]}: it is for another model")


def smoothed(mse: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """MSE made non-decreasing in edge score (weighted isotonic fit) and non-increasing in width.

    High-edge bins hold few patches and are noisy; a wider subnet is never expected to do worse than a
    narrower one (nor than bicubic: flat patches are where bicubic can win, and there it is also free).
    """
    rows = np.stack([_isotonic(row, weights) for row in mse])
    return np.minimum.accumulate(rows, axis=0)


def _isotonic(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Pool-adjacent-violators: the weighted least-squares non-decreasing fit."""
    blocks: list[list[float]] = []  # [mean, weight, length]
    for v, wt in zip(values.tolist(), weights.tolist()):
        blocks.append([v, float(wt), 1])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            (m2, w2, n2), (m1, w1, n1) = blocks.pop(), blocks.pop()
            blocks.append([(m1 * w1 + m2 * w2) / (w1 + w2), w1 + w2, n1 + n2])
    return np.concatenate([np.full(n, m) for m, _, n in blocks])


def _rows(by_route: dict[str, list[float]]) -> np.ndarray:
    return np.asarray([by_route[str(i)] for i in range(len(by_route))], dtype=np.float64)


def load_table(path: str | os.PathLike, arch: str) -> QualityTable:
    """A table from a JSON file: one table, or the official file holding several (keyed fsrcnn/carn/...)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise LeansrError(f"LUT file {path} does not exist") from None
    except (OSError, ValueError) as exc:
        raise LeansrError(f"cannot read LUT file {path}: {exc}") from None
    if not isinstance(data, dict):
        raise LeansrError(f"{path} is not an ARM edge-to-quality table")
    if "mean_psnr_per_bin" not in data:
        key = _OFFICIAL_KEYS.get(arch, arch)
        if key not in data:
            raise LeansrError(f"{path} has tables for {', '.join(sorted(data))}, none for {arch}")
        data = data[key]
    return QualityTable.from_json(data, source=str(path))


TABLE_KEY = "arm_table"  # where our checkpoints keep the calibrated table (metadata "extra")


def stored_table(path: str | os.PathLike) -> QualityTable | None:
    """The calibrated table in a leansr safetensors checkpoint's metadata, if any (reads the header only)."""
    path = Path(path)
    if path.suffix != ".safetensors":
        return None
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            raw = (f.metadata() or {}).get("leansr")
    except Exception:  # noqa: BLE001 - unreadable files are reported by the checkpoint loader
        return None
    extra = json.loads(raw).get("extra", {}) if raw else {}
    return QualityTable.from_json(extra[TABLE_KEY], source=f"{path} (calibrated)") if TABLE_KEY in extra else None
