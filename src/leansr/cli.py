"""`leansr` command line: one sub-command a module under `leansr.commands`."""

from __future__ import annotations

import argparse
import sys

from leansr.commands import bench, data, deploy, evaluate, train, upscale, zoo
from leansr.errors import LeansrError, OutputError

# Each module has `register(subparsers)`, which adds its parser(s) with `func=run(args) -> int`.
COMMANDS = (zoo, deploy, train, data, bench, evaluate, upscale)


def build_parser() -> argparse.ArgumentParser:
    from leansr import __version__

    parser = argparse.ArgumentParser(prog="leansr", description="Efficient single-image super-resolution.")
    parser.add_argument("--version", action="version", version=f"leansr {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMANDS:
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Exit codes: 0 done, 1 an output could not be written, 2 bad input or options, 130 interrupted."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except OutputError as exc:
        print(f"leansr: error: {exc}", file=sys.stderr)
        return 1
    except LeansrError as exc:
        print(f"leansr: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a folder that cannot be made, a read-only file system, a full disk, ...
        print(f"leansr: error: {describe_os_error(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("leansr: interrupted", file=sys.stderr)
        return 130


def describe_os_error(exc: OSError) -> str:
    """One line: what failed, on which path ("No space left on device: out/x.png")."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    return f"{reason}: {exc.filename}" if exc.filename else reason


if __name__ == "__main__":
    sys.exit(main())
