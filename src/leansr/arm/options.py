"""ARM options shared by `leansr upscale` and `leansr evaluate`: which routing, and running it on an image."""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from leansr.arm.budget import COSTS, check_budget, run_budget, run_width
from leansr.arm.costs import PATCH, route_costs
from leansr.arm.official import RoutedResult, check_k, psnr_rgb_official, round_half_up, run_official
from leansr.arm.table import QualityTable, load_table, stored_table
from leansr.data.image_io import Image, write_pixels
from leansr.engine import QuantizedImage
from leansr.errors import LeansrError

ROUTES = ("official", "budget")
Router = Callable[[np.ndarray], RoutedResult]
# Route tints for --route-map: bicubic green, then yellow, orange, red for the widest.
_TINTS = [(0, 200, 0), (255, 220, 0), (255, 140, 0), (230, 0, 0), (160, 0, 160), (0, 90, 255)]


def add_route_arguments(parser: argparse.ArgumentParser, *, route_map: bool = False) -> None:
    g = parser.add_argument_group("ARM supernets (arm_fsrcnn, arm_carn, arm_srresnet, arm_plain)")
    g.add_argument("--route", metavar="NAME", help="official: the authors' per-patch routing (needs --k, --lut); "
                   "budget: ours, implied by --budget")
    g.add_argument("--k", type=float, help="official routing: eta = k x the full width's cost")
    g.add_argument("--lut", type=Path, metavar="FILE", help="edge-to-quality table (the official "
                   "arm_official_lut.json or ours; default: the one calibrated into the checkpoint)")
    g.add_argument("--budget", type=float, metavar="F",
                   help="our routing: at most F (0-1] x the cost of the full width on the whole image")
    g.add_argument("--cost", choices=COSTS, default="macs", help="budget in true MACs or in time measured "
                   "on this device (default macs)")
    g.add_argument("--width", metavar="W|full", help="run the whole image at one width (0 = bicubic)")
    if route_map:
        g.add_argument("--route-map", type=Path, metavar="FILE.png",
                       help="also write the result with each patch tinted by its route")


def make_router(args: argparse.Namespace, model: Any, weights: str | Path | None) -> Router | None:
    """The routing the options ask for, or None for a plain forward; one-sentence errors for bad input."""
    route = args.route if args.route is not None else ("budget" if args.budget is not None else None)
    if route is None and args.width is None:
        given = [f"--{n}" for n in ("k", "lut") if getattr(args, n) is not None]
        if given or getattr(args, "route_map", None) is not None:
            raise LeansrError(f"{', '.join(given) or '--route-map'} needs --route official, --budget or --width")
        return None
    if not hasattr(model, "forward_width"):
        raise LeansrError(f"routing needs an ARM supernet (arm_fsrcnn, arm_carn, arm_srresnet, arm_plain), "
                          f"not {getattr(model, 'arch', type(model).__name__)}")
    if args.width is not None:
        if route is not None:
            raise LeansrError("--width runs one width for the whole image; it does not combine with routing")
        width = model.widths[-1] if args.width == "full" else _int_width(args.width)
        model.check_width(width)
        return lambda lr: run_width(model, lr, width)
    if route not in ROUTES:
        raise LeansrError(f"unknown route {route!r}; use one of {', '.join(ROUTES)}")
    if route == "official":
        if args.k is None or args.budget is not None:
            raise LeansrError("--route official takes --k K (and --lut FILE), not --budget")
        check_k(args.k)
        table = _table(args.lut, model, weights)
        return lambda lr: run_official(model, lr, table, args.k)
    if args.budget is None or args.k is not None:
        raise LeansrError("--route budget takes --budget F, not --k")
    check_budget(args.budget)
    table = _table(args.lut, model, weights)
    return lambda lr: run_budget(model, lr, table, args.budget, cost=args.cost)


def _int_width(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise LeansrError(f"--width takes a width of the supernet or 'full', not {text!r}") from None


def _table(lut: Path | None, model: Any, weights: str | Path | None) -> QualityTable:
    table = load_table(lut, model.arch) if lut is not None else (stored_table(weights) if weights else None)
    if table is None:
        raise LeansrError("routing needs an edge-to-quality table: pass --lut FILE or a checkpoint made by "
                          "`leansr arm calibrate`")
    official = [c.official_flops * PATCH * PATCH for c in route_costs(model).values()]
    table.check_fits(model.arch, model.routes, official)
    return table


def evaluation_runner(router: Router, official: bool) -> Callable[[np.ndarray, np.ndarray], tuple]:
    """For `evaluate_model(runner=...)`: 8-bit SR of the covered region, and the per-image routing fields."""

    def run(lr: np.ndarray, hr: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
        result = router(lr)
        extra: dict[str, Any] = {"routes": result.routes, "cost_fraction": result.cost_fraction,
                                 "runtime_ms": result.runtime_ms}
        if official:
            extra["psnr_rgb_official"] = psnr_rgb_official(result.sr, hr)
        return round_half_up(result.sr), extra

    return run


def with_summary(result: dict[str, Any]) -> dict[str, Any]:
    """An evaluation's JSON with dataset-level routing fields: route counts summed, the others averaged."""
    rows = list(result["per_image"].values())
    out: dict[str, Any] = dict(result)
    if rows and "routes" in rows[0]:
        out["routes"] = np.sum([r["routes"] for r in rows], axis=0).tolist()
    for key in ("cost_fraction", "runtime_ms", "psnr_rgb_official"):
        if rows and key in rows[0]:
            out[key] = float(np.mean([r[key] for r in rows]))
    return out


@dataclass
class Routing:
    """What `leansr upscale` runs instead of the engine when routing was asked for."""

    router: Router
    scale: int
    route_map: Path | None = None

    def upscale(self, image: Image, src: Path, *, many: bool = False) -> QuantizedImage:
        """Route an `Image` (8-bit protocol: gray repeated to RGB); keeps gray/alpha layout, 8 bits out."""
        rgb = image.pixels if image.channels == 3 else np.repeat(image.pixels, 3, axis=2)
        result = self.router(np.floor(np.clip(rgb, 0, 1) * 255.0 + 0.5).astype(np.uint8))
        data = round_half_up(result.sr)
        h, w = data.shape[:2]  # the official routing covers less than the whole image
        if image.channels == 1:
            data = np.floor(data.mean(axis=2, keepdims=True) + 0.5).astype(np.uint8)
        if image.alpha is not None:  # bicubic, cut like the pixels
            a = torch.from_numpy(np.ascontiguousarray(image.alpha, dtype=np.float32))[None, None]
            alpha = F.interpolate(a, scale_factor=self.scale, mode="bicubic", align_corners=False)[0, 0, :h, :w]
            data = np.concatenate([data, round_half_up(alpha.numpy()[..., None] * 255.0)], axis=2)
        if self.route_map is not None:
            write_pixels(route_map_path(self.route_map, src, many), round_half_up(route_map(result) * 255.0),
                         colour=3)
        return QuantizedImage(data, image.channels, image.alpha is not None, dataclasses.replace(image, bit_depth=8))


def routing_from_args(args: argparse.Namespace, model: Any, weights: str | Path | None) -> Routing | None:
    router = make_router(args, model, weights)
    return None if router is None else Routing(router, int(model.scale), getattr(args, "route_map", None))


def route_map(result: RoutedResult) -> np.ndarray:
    """The SR image (HxWx3, 0-1) with each patch tinted by its route: bicubic green, wider ever redder."""
    out = round_half_up(result.sr).astype(np.float32) / 255.0
    for (t, l, h, w), route in zip(result.boxes, result.choices.ravel()):
        tint = np.asarray(_TINTS[int(route) % len(_TINTS)], dtype=np.float32) / 255.0
        out[t:t + h, l:l + w] = 0.6 * out[t:t + h, l:l + w] + 0.4 * tint
    return out


def route_map_path(path: Path, source: Path, many: bool) -> Path:
    """FILE.png for one input; FILE_<input stem>.png for each of several."""
    return path.with_name(f"{path.stem}_{source.stem}{path.suffix or '.png'}") if many else path
