"""`leansr` command line: one sub-command a module under `leansr.commands`."""

from __future__ import annotations

import argparse
import signal
import sys

from leansr.commands import arm, bench, data, deploy, evaluate, train, upscale, zoo
from leansr.errors import LeansrError
from leansr.runtime import tune_allocator

# Each module has `register(subparsers)`, which adds its parser(s) with `func=run(args) -> int`.
COMMANDS = (zoo, deploy, train, data, bench, evaluate, upscale, arm)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="leansr", description="Efficient single-image super-resolution.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMANDS:
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    tune_allocator()
    previous = signal.signal(signal.SIGTERM, _terminate)  # so `finally` blocks remove temp files
    try:
        return int(args.func(args) or 0)
    except LeansrError as exc:
        print(f"leansr: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("leansr: interrupted", file=sys.stderr)
        return 130
    except Terminated:
        print("leansr: terminated", file=sys.stderr)
        return 143
    finally:
        signal.signal(signal.SIGTERM, previous)


class Terminated(BaseException):
    """SIGTERM, raised where the program is so that cleanup runs (BaseException: no `except Exception`)."""


def _terminate(signum, frame) -> None:
    raise Terminated()


if __name__ == "__main__":
    sys.exit(main())
