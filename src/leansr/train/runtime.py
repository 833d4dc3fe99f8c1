"""Process-level helpers of the trainer: autocast and a graceful stop on signals."""

from __future__ import annotations

import signal
from typing import Any

import torch



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
        trainer.stop_signal = signum

    return {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
