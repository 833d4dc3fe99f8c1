"""`--compile` keeps inductor's kernels in a persistent folder and reports its warm-up."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from leansr.deploy.compile_cache import ENV, default_cache_dir, enable_persistent_cache


def test_cache_goes_to_the_user_cache_folder_unless_set(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv(ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "leansr" / "inductor"
    assert enable_persistent_cache() == default_cache_dir() and default_cache_dir().is_dir()
    monkeypatch.setenv(ENV, str(tmp_path / "mine"))
    assert enable_persistent_cache() == tmp_path / "mine"


_RUN = """
import sys, torch
from leansr import create_model
from leansr.engine import upscale_tensor
from leansr.runtime import prepare_for_inference as prepare_model
torch.set_num_threads(1)
model = prepare_model(create_model("rlfn_s", scale=2), compiled=True)
upscale_tensor(model, torch.rand(1, 3, 24, 24))
print(len(model.shapes))
"""


@pytest.mark.slow
def test_second_process_compiles_from_the_disk_cache(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    env = {"TORCHINDUCTOR_CACHE_DIR": str(cache), "PATH": "/usr/bin:/bin", "PYTHONPATH": ":".join(sys.path)}
    kernels = []
    for _ in range(2):
        run = subprocess.run([sys.executable, "-c", _RUN], env=env, capture_output=True, text=True, check=True)
        assert run.stdout.split() == ["1"]  # one input shape, compiled once
        kernels.append(sorted(cache.rglob("*.so")))
    # Counted, not timed: the second process builds no C++ kernel, it loads every one the first process built.
    assert kernels[0] and kernels[1] == kernels[0]
