"""One training run per run folder: an advisory lock held for the life of the run.

A POSIX record lock (`lockf`) vanishes with its process, so a run killed with `kill -9` never leaves a stale
lock behind, and unlike `flock` it is not shared with forked DataLoader workers, which may outlive the run's
release of it by a moment.
"""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path

from leansr.errors import LeansrError

LOCK_NAME = ".lock"


class RunLock:
    """Exclusive lock on `run_dir/.lock`; a second holder is refused with one sentence."""

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / LOCK_NAME
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> "RunLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EACCES, errno.EAGAIN):
                os.close(fd)
                raise
            holder = os.read(fd, 32).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise LeansrError(
                f"{self.path.parent} is in use by another training run (pid {holder}); "
                "wait for it to finish or choose another -o"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the lock; the file stays (harmless, reused next time)
            self._fd = None


def remove_stale_temp_files(run_dir: Path) -> list[Path]:
    """Temp files (`.NAME.XXXX.tmp`) a killed run left in the run folder; call only while holding the lock."""
    found = []
    for folder in (run_dir, run_dir / "checkpoints"):
        if folder.is_dir():
            found += [p for p in folder.glob(".*.tmp") if p.is_file()]
    for path in found:
        path.unlink(missing_ok=True)
    return found
