"""A persistent on-disk cache for `--compile`, so a second run loads compiled kernels instead of rebuilding.

Inductor's FX graph cache is on by default but lives in /tmp (per user, wiped at reboot); we point it at the
user cache folder unless `TORCHINDUCTOR_CACHE_DIR` is set already.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV = "TORCHINDUCTOR_CACHE_DIR"


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "leansr" / "inductor"


def enable_persistent_cache() -> Path:
    """Set inductor's cache folder (read at each compile) unless the user chose one, and return it."""
    import torch._inductor.config as inductor_config
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir as inductor_default

    # Inductor writes its /tmp default into the variable once it has looked: that one is not a user's choice.
    if os.environ.get(ENV) in (None, os.path.abspath(inductor_default())):
        os.environ[ENV] = str(default_cache_dir())
    inductor_config.fx_graph_cache = True  # the default in recent releases; explicit for older ones
    path = Path(os.environ[ENV])
    path.mkdir(parents=True, exist_ok=True)
    return path
