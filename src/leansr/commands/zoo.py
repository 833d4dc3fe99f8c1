"""`leansr list` and `leansr convert`: what the zoo holds, and official checkpoints to our format."""

from __future__ import annotations

import argparse
from pathlib import Path

from leansr.checkpoint import save_checkpoint
from leansr.commands.options import add_hidden_alias, check_output_path
from leansr.loading import load_model
from leansr.errors import LeansrError
from leansr.registry import get_model_info, list_models


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("list", help="registered models, their scales and the official checkpoints they load")
    p.add_argument("pattern", nargs="?", default="*", help="shell-style name filter (default: all)")
    p.set_defaults(func=run_list)

    p = sub.add_parser("convert", help="convert a checkpoint (official .pth or ours) to leansr safetensors")
    p.add_argument("input", type=Path)
    p.add_argument("output", type=Path, nargs="?", help="the leansr .safetensors file to write (or -o)")
    p.add_argument("-o", "--output", dest="output_option", type=Path, metavar="OUTPUT", help="same as OUTPUT")
    p.add_argument("--overwrite", action="store_true", help="overwrite OUTPUT if it exists")
    add_hidden_alias(p, "--force", "overwrite", action="store_true")
    p.set_defaults(func=run_convert)


def run_list(args: argparse.Namespace) -> int:
    names = list_models(args.pattern)
    if not names:
        raise LeansrError(f"no registered model matches {args.pattern!r}")
    width = max(len(n) for n in names)
    print(f"{'model':<{width}}  scales   official checkpoints")
    for name in names:
        info = get_model_info(name)
        scales = ",".join(str(s) for s in info.scales)
        print(f"{name:<{width}}  {scales:<7}  {', '.join(info.checkpoints) or '-'}")
    return 0


def run_convert(args: argparse.Namespace) -> int:
    if (args.output is None) == (args.output_option is None):
        raise LeansrError("give the output file once: `leansr convert IN OUT` or `leansr convert IN -o OUT`")
    args.output = args.output or args.output_option
    if args.output.exists() and not args.overwrite:
        raise LeansrError(f"{args.output} exists; pass --overwrite to replace it")
    if args.output.resolve() == args.input.resolve():
        raise LeansrError("output must differ from input")
    check_output_path(args.output)
    model = load_model(args.input).model
    save_checkpoint(model, args.output)
    print(f"wrote {args.output} ({model.arch}, x{model.scale}, deployed={model.deployed})")
    return 0
