"""`leansr arm calibrate`: measure a supernet's edge -> quality table on your images and store it with it.
`leansr arm supernet`: start an `arm_plain` supernet from a trained plain network (its full width, exactly)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from leansr.arm.calibrate import DEFAULT_BINS, calibrate
from leansr.arm.from_plain import supernet_from_plain
from leansr.arm.table import TABLE_KEY
from leansr.atomic import atomic_path
from leansr.checkpoint import read_state_dict, save_checkpoint
from leansr.loading import load_model, resolve_model
from leansr.errors import LeansrError
from leansr.data.image_io import list_images


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("arm", help="ARM supernets: calibrate the routing table")
    arm_sub = p.add_subparsers(dest="arm_command", required=True, metavar="ACTION")
    c = arm_sub.add_parser(
        "calibrate",
        help="build the edge-to-quality table of a supernet on HR images (LR made by bicubic on the fly)",
        description="Cut each image's bicubic LR into the tiles `--budget` routing uses, run every width (and "
        "bicubic) on them, and tabulate mean MSE and PSNR per edge-score bin. OUT.safetensors: the "
        "checkpoint with the table in its metadata (used by default by --budget); OUT.json: the table alone.",
    )
    c.add_argument("--weights", type=Path, required=True, help="supernet checkpoint (official .pth or ours)")
    c.add_argument("--data", type=Path, action="append", required=True, help="HR image folder (repeatable)")
    c.add_argument("-o", "--output", type=Path, required=True, metavar="OUT", help=".safetensors or .json")
    c.add_argument("--bins", type=int, default=DEFAULT_BINS, help=f"edge bins, equal counts (default {DEFAULT_BINS})")
    c.add_argument("--hr-scale", type=float, default=1.0, metavar="F",
                   help="shrink each HR by F first (e.g. 0.5 for JPEG photos: removes compression artefacts)")
    c.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's)")
    c.add_argument("--force", action="store_true", help="overwrite OUT if it exists (never the weights)")
    c.set_defaults(func=run_calibrate)
    m = arm_sub.add_parser(
        "supernet",
        help="make an arm_plain supernet from a trained ECBSR (e.g. the default model) to fine-tune",
        description="The full width computes exactly what the given RGB ECBSR does; hidden channels are sorted "
        "most important first so that each narrow width starts from the channels that matter most. Train it "
        "with `leansr train` (model.name=arm_plain, model.init=OUT; see configs/arm_x4.yaml).",
    )
    m.add_argument("--weights", help="a trained RGB ECBSR or arm_plain supernet (default: the default model)")
    m.add_argument("--widths", type=int, nargs="+", default=[16, 32],
                   help="widths, ascending to the full width; a full width above the model's channels widens it "
                   "(exact: the new channels feed nothing until trained)")
    m.add_argument("--extra-blocks", type=int, default=0, metavar="N",
                   help="insert N identity layers before the last conv (exact; capacity for the fine-tune)")
    m.add_argument("-o", "--output", type=Path, required=True, metavar="OUT.safetensors")
    m.add_argument("--force", action="store_true", help="overwrite OUT if it exists")
    m.set_defaults(func=run_supernet)


def run_calibrate(args: argparse.Namespace) -> int:
    if args.output.suffix not in (".safetensors", ".json"):
        raise LeansrError(f"-o must end in .safetensors (checkpoint with table) or .json (table), not {args.output}")
    _check_output(args.weights, args.output, force=args.force, command="calibrate")
    if args.bins < 2:
        raise LeansrError(f"--bins must be at least 2, not {args.bins}")
    if args.threads:
        torch.set_num_threads(args.threads)
    model = load_model(args.weights).model
    if not hasattr(model, "forward_width"):
        raise LeansrError(f"{args.weights} holds {model.arch}, not an ARM supernet (arm_carn, arm_plain, ...)")
    files = [f for folder in args.data for f in list_images(folder)]
    table = calibrate(model, files, bins=args.bins, hr_scale=args.hr_scale,
                      progress=lambda p: print(f"  {p.name}", file=sys.stderr, flush=True))
    if args.output.suffix == ".json":
        with atomic_path(args.output) as tmp:
            tmp.write_text(json.dumps(table.to_json(), indent=1) + "\n")
    else:
        _, meta = read_state_dict(args.weights)
        extra = dict((meta or {}).get("extra", {}))
        extra[TABLE_KEY] = table.to_json()
        save_checkpoint(model, args.output, extra=extra)
    print(f"wrote {args.output}: {model.arch} table of {table.centers.size} bins over "
          f"{int(table.counts.sum())} tiles from {len(files)} image(s)")
    return 0


def run_supernet(args: argparse.Namespace) -> int:
    _check_output(args.weights, args.output, force=args.force, command="`arm supernet`")
    plain = resolve_model(args.weights, None, None).model
    supernet = supernet_from_plain(plain, tuple(args.widths), extra_blocks=args.extra_blocks)
    save_checkpoint(supernet, args.output)
    source = args.weights or "the default model"
    print(f"wrote {args.output}: arm_plain, widths {list(supernet.widths)}, full width = {source}")
    return 0


def _check_output(weights: str | Path | None, output: Path, *, force: bool, command: str) -> None:
    """Refusals before any work: never the input, never an existing file without --force."""
    if weights is not None and Path(weights).exists() and output.resolve() == Path(weights).resolve():
        raise LeansrError(f"the output must differ from the weights; {command} never overwrites its input")
    if output.exists() and not force:
        raise LeansrError(f"{output} exists; pass --force to overwrite it")
