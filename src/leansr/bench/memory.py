"""Peak memory of one forward: the CUDA allocator's peak, or on CPU the peak of live tensor storage.

CUDA: `torch.cuda.max_memory_allocated` after `reset_peak_memory_stats`, with the model and input already
resident (as the challenges measured). CPU has no allocator statistics, so a dispatch mode records every
tensor an op returns, groups them by storage, and frees a storage's bytes when the last tensor viewing it
is garbage-collected (weakref finalizers); the peak of that running sum plus the bytes of weights, buffers
and input is reported. Scratch buffers private to a kernel (e.g. oneDNN workspaces) are invisible to it.
"""

from __future__ import annotations

import gc
import weakref
from typing import Any, Iterable

import torch
from torch import Tensor, nn
from torch.utils._pytree import tree_leaves

from leansr.bench.dispatch import LeafOpMode

MIB = 1024**2  # the challenges' "MB"


def peak_memory_bytes(model: nn.Module, x: Tensor) -> tuple[int, str]:
    """Peak bytes of one forward of `model(x)` on x's device, and how it was measured."""
    if x.device.type == "cuda":
        return _cuda_peak(model, x), "torch.cuda.max_memory_allocated"
    return _tracked_peak(model, x), "live tensor storage (dispatch-mode tracking)"


def _cuda_peak(model: nn.Module, x: Tensor) -> int:
    torch.cuda.synchronize(x.device)
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(x.device)
    with torch.inference_mode():
        out = model(x)
    torch.cuda.synchronize(x.device)
    del out
    return int(torch.cuda.max_memory_allocated(x.device))


def _tracked_peak(model: nn.Module, x: Tensor) -> int:
    resident = [*model.parameters(), *model.buffers(), x]
    gc.collect()
    tracker = LiveStorageTracker(resident)
    with torch.inference_mode(), tracker:
        out = model(x)
    del out
    return _storage_bytes(resident) + tracker.peak


def _storage_bytes(tensors: Iterable[Tensor]) -> int:
    seen: dict[int, int] = {}
    for t in tensors:
        storage = t.untyped_storage()
        seen[storage.data_ptr()] = storage.nbytes()
    return sum(seen.values())


class StorageLedger:
    """Running and peak bytes of the storages that ops returned and that some tracked tensor still views.

    Shared by the dispatch-level tracker below and the engine's lighter torch-function-level one.
    """

    def __init__(self, resident: Iterable[Tensor]) -> None:
        self._resident = {t.untyped_storage().data_ptr() for t in resident}
        self._views: dict[int, int] = {}  # storage address -> live tensors viewing it
        self._sizes: dict[int, int] = {}
        self._tracked: set[int] = set()  # ids of tensors already counted (in-place ops return their input)
        self.live = 0
        self.peak = 0

    def track_all(self, out: Any) -> None:
        for t in tree_leaves(out):
            if isinstance(t, Tensor) and id(t) not in self._tracked:
                self._track(t)

    def _track(self, t: Tensor) -> None:
        storage = t.untyped_storage()
        address = storage.data_ptr()
        if address in self._resident or storage.nbytes() == 0 or t.device.type == "meta":
            return
        self._tracked.add(id(t))
        weakref.finalize(t, self._release, id(t), address)
        if address not in self._views:
            self._views[address] = 0
            self._sizes[address] = storage.nbytes()
            self.live += storage.nbytes()
            self.peak = max(self.peak, self.live)
        self._views[address] += 1

    def _release(self, tensor_id: int, address: int) -> None:
        self._tracked.discard(tensor_id)
        self._views[address] -= 1
        if self._views[address] == 0:
            del self._views[address]
            self.live -= self._sizes.pop(address)


class LiveStorageTracker(LeafOpMode):
    """The ledger fed by every leaf aten op (decomposed composites included)."""

    def __init__(self, resident: Iterable[Tensor]) -> None:
        super().__init__()
        self.ledger = StorageLedger(resident)

    @property
    def peak(self) -> int:
        return self.ledger.peak

    def observe(self, func: Any, args: tuple, kwargs: dict, out: Any) -> None:
        self.ledger.track_all(out)
