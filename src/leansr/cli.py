"""`leansr` command line: one sub-command a module under `leansr.commands`."""

from __future__ import annotations

import argparse
import sys

from leansr.commands import bench, data, deploy, evaluate, ghost, train, upscale, zoo
from leansr.errors import LeansrError

# Each module has `register(subparsers)`, which adds its parser(s) with `func=run(args) -> int`.
COMMANDS = (zoo, deploy, train, data, bench, evaluate, upscale, ghost)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="leansr", description="Efficient single-image super-resolution.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMANDS:
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except LeansrError as exc:
        print(f"leansr: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("leansr: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
