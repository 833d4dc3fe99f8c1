"""Progress bars for long commands: on stderr, and only where someone watches (a terminal, no --quiet)."""

from __future__ import annotations

import sys
from typing import Any, Iterable

from tqdm import tqdm


def progress(iterable: Iterable[Any] | None = None, *, quiet: bool = False, **kwargs: Any) -> tqdm:
    # disable=None lets tqdm switch itself off when stderr is not a TTY (pipes, logs, CI).
    return tqdm(iterable, file=sys.stderr, disable=True if quiet else None, dynamic_ncols=True, **kwargs)


def add_quiet_flag(parser: Any) -> None:
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
