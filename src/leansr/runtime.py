"""Where and how models run: device resolution, precision policy, thread count, allocator, compilation.

One home for these decisions, so `upscale`, `evaluate`, `bench` and `train` behave alike.
"""

from __future__ import annotations

import contextlib
import ctypes
import sys
import time
from typing import Iterator, Literal

import torch
from torch import Tensor, nn

from leansr.deploy.compile_cache import enable_persistent_cache
from leansr.errors import LeansrError

Precision = Literal["fp32", "fp16", "bf16"]
PRECISIONS: dict[str, torch.dtype] = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
MAX_THREADS = 256


def resolve_device(name: str | None) -> torch.device:
    """`auto`/None: CUDA when available, else CPU. Asking for an unavailable device is one clear error."""
    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise LeansrError(f"unknown device {name!r}; use cpu, cuda, cuda:N or auto") from None
    if device.type not in ("cpu", "cuda"):
        raise LeansrError(f"device {name!r} is not supported; use cpu, cuda, cuda:N or auto")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise LeansrError(f"--device {name} was requested but no CUDA device is available; use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise LeansrError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) present")
    return device


def resolve_precision(precision: str, device: torch.device, notice=None) -> Precision:
    """The precision to run: fp16 on CPU falls back to fp32 (it is about 2.6x slower there), with a notice."""
    if precision not in PRECISIONS:
        raise LeansrError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    if precision == "fp16" and device.type == "cpu":
        message = "fp16 is slower than fp32 on CPU (no native kernels); running fp32 instead"
        (notice or _stderr)(message)
        return "fp32"
    return precision  # type: ignore[return-value]


def autocast(device: torch.device, precision: Precision) -> contextlib.AbstractContextManager:
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=PRECISIONS[precision])


@contextlib.contextmanager
def threads(count: int | None) -> Iterator[None]:
    """Run with `count` intra-op threads (None: leave as is), restoring the caller's setting afterwards.

    Leaving a changed count behind oversubscribes OpenMP in the caller's later work (90x slower once).
    """
    if count is None:
        yield
        return
    check_threads(count)
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def check_threads(count: int) -> None:
    if not 1 <= count <= MAX_THREADS:
        raise LeansrError(f"thread count must be between 1 and {MAX_THREADS}, not {count}")


def tune_allocator() -> bool:
    """Keep freed multi-MB buffers in glibc's heap instead of returning them to the OS.

    Fresh mmap'd pages cost about 1.3 us per 4 KiB page to touch on a VM; with these settings the default
    path ran 10-23% faster (performance_notes.md). Same effect as MALLOC_MMAP_THRESHOLD_ and friends. (glibc
    caps that threshold at 32 MB. Switching mmap off altogether made a 52 MB concatenation 3.6x faster but
    no whole forward measurably faster, and it raised the peak RSS of a tiled 2048x2048 upscale by a third:
    freed heap memory fragments. Not done.)
    Returns whether it applied (glibc only).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt  # glibc's soname; find_library would spawn ldconfig
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_top_pad, m_mmap_threshold = -1, -2, -3
    ok = mallopt(m_mmap_threshold, 32 << 20) and mallopt(m_trim_threshold, 1 << 30)
    return bool(ok and mallopt(m_top_pad, 256 << 20))


def model_device(model: nn.Module | object) -> torch.device:
    """Where a module's parameters (or buffers) live; CPU for parameter-free callables."""
    inner = getattr(model, "model", model)
    if isinstance(inner, nn.Module):
        for tensor in (*inner.parameters(), *inner.buffers()):
            return tensor.device
    return torch.device("cpu")


def prepare_for_inference(model: nn.Module, device: torch.device | str = "cpu", *, compiled: bool = False) -> nn.Module:
    """Eval mode on `device` with channels-last weights (in place; numerically the same model)."""
    model = model.eval().to(device=device, memory_format=torch.channels_last)
    return CompiledModel(model) if compiled else model


class CompiledModel(nn.Module):
    """`torch.compile` of a model with inductor's freezing on for its calls; other attributes are the model's.

    Fuses convolutions with their activations and the element-wise tails; about 1.5-2x faster on CPU after a
    warm-up of seconds (cached kernels) to a minute per input shape.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.cache_dir = enable_persistent_cache()  # kernels kept between runs
        self.compiled = torch.compile(model)
        self.warmup_s, self.shapes = 0.0, set()  # first call of each input shape: compile (or cache load) + run

    def forward(self, x: Tensor) -> Tensor:
        first = tuple(x.shape) not in self.shapes
        start = time.perf_counter()
        # Freezing is a global inductor setting that `torch.compile(options=...)` does not pass on; it is read
        # whenever a new input shape compiles.
        with torch._inductor.config.patch(freezing=True):
            out = self.compiled(x)
        if first:
            self.shapes.add(tuple(x.shape))
            self.warmup_s += time.perf_counter() - start
        return out

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self._modules["model"], name)


def _stderr(message: str) -> None:
    print(f"leansr: {message}", file=sys.stderr)
