"""Atomic file outputs: a temp file beside the target, renamed onto it only when complete.

A leaf module (no leansr imports) so that every writer — images, checkpoints, reports — shares it.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

TEMP_SUFFIX = ".tmp"


class atomic_path:
    """Context manager yielding a temp path beside `path`; renamed onto `path` only on success.

    `exclusive=True` refuses to replace a file that appeared meanwhile (FileExistsError), so two runs
    writing into one folder never replace each other's results: the rename becomes a hard link, which
    fails if the target exists, then the temp name is removed.
    """

    def __init__(self, path: str | os.PathLike, *, exclusive: bool = False) -> None:
        self.path = Path(path)
        self.exclusive = exclusive

    def __enter__(self) -> Path:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=TEMP_SUFFIX, dir=self.path.parent)
        os.close(fd)
        self.tmp = Path(tmp)
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                os.chmod(self.tmp, 0o666 & ~current_umask())  # mkstemp makes 0600; give what open() would
                if self.exclusive:
                    os.link(self.tmp, self.path)  # FileExistsError if another writer got there first
                else:
                    os.replace(self.tmp, self.path)
        finally:
            self.tmp.unlink(missing_ok=True)


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def stale_temp_files(folder: str | os.PathLike, name: str) -> list[Path]:
    """Temp files that an interrupted atomic write of `folder/name` left behind."""
    return sorted(Path(folder).glob(f".{name}.*{TEMP_SUFFIX}"))
