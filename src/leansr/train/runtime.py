"""Process-level helpers of the trainer: device choice, autocast, Y conversion, graceful stop on signals."""

from __future__ import annotations

import signal
from typing import Any

import torch

from leansr.errors import LeansrError


def rgb_to_y(x: torch.Tensor) -> torch.Tensor:
    """BT.601 luma on 0-1 (MATLAB rgb2ycbcr's Y / 255), for Y-only models."""
    weights = x.new_tensor([65.481, 128.553, 24.966]).view(1, 3, 1, 1)
    return (x * weights).sum(1, keepdim=True).add(16.0).div(255.0)


def pick_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise LeansrError("device=cuda but no CUDA device is available")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def autocast(device: torch.device, amp: str) -> Any:
    if amp == "none" or device.type != "cuda":
        return torch.autocast(device.type, enabled=False)
    return torch.autocast("cuda", dtype=torch.bfloat16 if amp == "bf16" else torch.float16)


def install_stop_handlers(trainer: Any) -> dict[int, Any]:
    """First Ctrl-C or SIGTERM: finish the current step, checkpoint and stop; a second one interrupts at once."""

    def handler(signum: int, frame: Any) -> None:
        if trainer.stop_requested:
            raise KeyboardInterrupt
        trainer.stop_requested = True

    return {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
