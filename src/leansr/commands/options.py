"""Option checks shared by the sub-commands: one sentence for a value that cannot work, before any work."""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path

from leansr.errors import LeansrError

_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")
# torch.set_num_threads(100000) crashes the process; more threads than 4x the cores only thrash.
THREADS_PER_CORE_CAP = 4


def check_device_name(name: str, flag: str = "--device") -> str:
    """auto, cpu, cuda or cuda:N; anything else (mps, tpu, typos) is refused before torch sees it."""
    if not _DEVICE.match(name):
        raise LeansrError(f"{flag} must be auto, cpu, cuda or cuda:N, not {name!r}")
    return name


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def capped_threads(requested: int | None) -> tuple[int, str | None]:
    """(threads to use, a note when the request was capped); None = all usable cores."""
    if requested is None or requested == 0:
        return usable_cores(), None
    if requested < 1:
        raise LeansrError("--threads must be at least 1")
    from leansr.runtime import MAX_THREADS

    cap = min(THREADS_PER_CORE_CAP * usable_cores(), MAX_THREADS)
    if requested > cap:
        return cap, f"--threads {requested} capped to {cap} ({THREADS_PER_CORE_CAP} per usable core)"
    return requested, None


def add_hidden_alias(parser: argparse.ArgumentParser, old: str, dest: str, **kwargs) -> None:
    """An old spelling of an option (e.g. --force for --overwrite): still accepted, no longer in --help."""
    parser.add_argument(old, dest=dest, default=argparse.SUPPRESS, help=argparse.SUPPRESS, **kwargs)


def check_output_path(path: Path, *, folder: bool = False) -> None:
    """Fail before the work, not after it: the nearest existing ancestor must be a writable folder."""
    from leansr.errors import OutputError

    target = Path(path)
    if target.exists() and (target.is_dir() != folder):
        kind = "a folder" if target.is_dir() else "a file"
        raise OutputError(f"cannot write {target}: it is {kind}")
    ancestor = target.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise OutputError(f"cannot write {target}: {ancestor} is a file, not a folder")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write {target}: {ancestor} is not writable")
