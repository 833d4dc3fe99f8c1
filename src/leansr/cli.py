"""`leansr` command line: one sub-command a module under `leansr.commands`.

A sub-command's module (and so torch) is imported only when that sub-command runs, so `leansr --help` and
`leansr --version` answer at once.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from importlib import import_module

from leansr import __version__

# name: (module with `register(subparsers)` adding parsers with `func=run(args) -> int`, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "list": ("zoo", "registered models, their scales and the official checkpoints they load"),
    "convert": ("zoo", "convert a checkpoint (official .pth or ours) to leansr safetensors"),
    "deploy": ("deploy", "fuse re-parameterizable blocks into plain convolutions, exactly"),
    "export": ("export", "write a checkpoint as ONNX (re-parameterized, verified by onnxruntime)"),
    "quantize": ("quantize", "int8 post-training quantization for CPU (ONNX with QDQ, run by onnxruntime)"),
    "train": ("train", "train a model from folders of HR images (CPU, one GPU, or torchrun DDP)"),
    "data": ("data", "training data tools"),
    "bench": ("bench", "params, MACs, activations, #conv, memory, runtime (and PSNR) per model"),
    "evaluate": ("evaluate", "PSNR/SSIM (Y, BT.601) on HR folders, LR made by MATLAB-style bicubic"),
    "upscale": ("upscale", "super-resolve images (files or folders) into an output folder"),
    "ghost": ("ghost", "convert a model to GhostSR (shift ghost features) and fine-tune it by distillation"),
    "arm": ("arm", "ARM supernets: calibrate the edge-to-quality routing table"),
}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The full parser (every sub-command's module imported), or that of sub-command `only`."""
    parser = argparse.ArgumentParser(prog="leansr", description="Efficient single-image super-resolution.")
    parser.add_argument("--version", action="version", version=f"leansr {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    modules = dict.fromkeys(m for name, (m, _) in COMMANDS.items() if only in (None, name))
    for module in modules:
        import_module(f"leansr.commands.{module}").register(sub)
    return parser


def _overview() -> argparse.ArgumentParser:
    """The top-level parser without importing any sub-command: for --help, --version and typos."""
    parser = argparse.ArgumentParser(prog="leansr", description="Efficient single-image super-resolution.")
    parser.add_argument("--version", action="version", version=f"leansr {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Exit codes: 0 done, 1 an output could not be written, 2 bad input or options, 130 interrupted,
    141 broken pipe, 143 terminated."""
    from_shell = argv is None
    argv = sys.argv[1:] if argv is None else list(argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    if command not in COMMANDS:
        _overview().parse_args(argv)  # prints help, the version, or the usage error, and exits
    if from_shell:
        _restart_with_huge_pages(argv)
    args = build_parser(command).parse_args(argv)
    from leansr.errors import LeansrError, OutputError
    from leansr.runtime import tune_allocator

    tune_allocator()
    previous = signal.signal(signal.SIGTERM, _terminate)  # so `finally` blocks remove temp files
    try:
        return int(args.func(args) or 0)
    except OutputError as exc:
        print(f"leansr: error: {exc}", file=sys.stderr)
        return 1
    except LeansrError as exc:
        print(f"leansr: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("leansr: interrupted", file=sys.stderr)
        return 130
    except Terminated:
        print("leansr: terminated", file=sys.stderr)
        return 143
    except BrokenPipeError:  # `leansr list | head`: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except OSError as exc:  # a folder that cannot be made, a read-only file system, a full disk, ...
        print(f"leansr: error: {describe_os_error(exc)}", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGTERM, previous)


HUGE_PAGES = "glibc.malloc.hugetlb=1"


def _restart_with_huge_pages(argv: list[str]) -> None:
    """Re-run this process once with glibc's transparent-huge-page malloc (read only at process start).

    SR activations are tens to hundreds of MB, which glibc maps fresh for every op; faulting them in 4 KiB
    pages made a 960x720 RLFN forward take 6.5 s, with huge pages 4.0 s (same numbers, same process
    otherwise). Only for commands started from a shell, on Linux, and once (the variable marks the re-run).
    """
    tunables = os.environ.get("GLIBC_TUNABLES", "")
    if not sys.platform.startswith("linux") or "glibc.malloc.hugetlb" in tunables or os.environ.get(
            "LEANSR_NO_HUGE_PAGES"):
        return
    os.environ["GLIBC_TUNABLES"] = f"{tunables}:{HUGE_PAGES}" if tunables else HUGE_PAGES
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execv(sys.executable, [sys.executable, "-m", "leansr", *argv])
    except OSError:
        return  # keep going without huge pages


class Terminated(BaseException):
    """SIGTERM, raised where the program is so that cleanup runs (BaseException: no `except Exception`)."""


def _terminate(signum, frame) -> None:
    raise Terminated()


def describe_os_error(exc: OSError) -> str:
    """One line: what failed, on which path ("No space left on device: out/x.png")."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    return f"{reason}: {exc.filename}" if exc.filename else reason


if __name__ == "__main__":
    sys.exit(main())
