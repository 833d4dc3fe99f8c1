"""Shared test fixtures: the read-only ../shared folder, deterministic small torch runs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

SHARED = Path(__file__).resolve().parents[2] / "shared"

# Two xdist workers share two cores; more threads per worker only thrash.
torch.set_num_threads(1)


def shared_path(*parts: str) -> Path:
    """A path under ../shared, or skip the test with the reason when it is absent."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"needs ../shared/{'/'.join(parts)} (official weights/data), absent in this checkout")
    return path


@pytest.fixture
def shared() -> Path:
    return shared_path()


@pytest.fixture(autouse=True)
def _seeded_torch() -> None:
    # Each test draws the same random tensors on every run and worker, so a tolerance that holds once holds in CI.
    torch.manual_seed(0)
