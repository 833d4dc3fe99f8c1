"""Run an ONNX super-resolution model through onnxruntime as if it were a leansr model.

`OnnxModel` takes and returns 0-1 NCHW float tensors and carries what the tiler, metrics and bench read from
a model (`scale`, `in_channels`, `arch`, ...), so `upscale`, `evaluate` and `bench` run it unchanged. Files we
export carry that in their metadata (`METADATA_KEYS`); a foreign file needs the scale from the user.
Only onnxruntime is needed here (not the `onnx` package), so a deployment can skip the export tools.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from leansr.errors import CheckpointError, LeansrError

FORMAT_KEY = "leansr_format_version"
FORMAT_VERSION = 1
# Written by `leansr export`/`quantize` as ONNX metadata_props (strings); hparams is JSON; int8 files have
# `quantization` instead of `verified_max_abs_diff`.
METADATA_KEYS = (FORMAT_KEY, "arch", "scale", "in_channels", "out_channels", "input_range", "leansr_version",
                 "precision", "hparams", "dynamic_hw", "verified_max_abs_diff", "source", "quantization")
_ORT_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16}


def is_onnx_file(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() == ".onnx"


class OnnxModel(nn.Module):
    """An onnxruntime session behind the call signature of a leansr model (CPU execution).

    A module without parameters, so `.eval()`, `.to()` and forward hooks work as for a PyTorch model.
    """

    def __init__(self, path: Path, session: Any, meta: dict[str, str], scale: int) -> None:
        super().__init__()
        self.path, self.session, self.metadata = path, session, meta
        inp = session.get_inputs()[0]
        self._input_name, self._input_dtype = inp.name, _ORT_DTYPES.get(inp.type)
        if self._input_dtype is None:
            raise CheckpointError(f"{path} takes {inp.type} input; only float and float16 images are supported")
        self._fixed_hw = tuple(inp.shape[2:]) if all(isinstance(d, int) for d in inp.shape[2:]) else None
        self._fixed_batch = inp.shape[0] if inp.shape and isinstance(inp.shape[0], int) else None
        self.scale = scale
        self.in_channels = int(meta.get("in_channels") or _static(inp.shape, 1) or 3)
        self.out_channels = int(meta.get("out_channels") or self.in_channels)
        self.arch = meta.get("arch", f"onnx:{path.stem}")
        self.hparams = json.loads(meta.get("hparams", "{}"))
        self.precision = meta.get("precision", "fp32")
        self.img_range = 1.0  # inputs and outputs are 0-1 whatever the graph does inside
        self.deployed = True

    def forward(self, x: Tensor) -> Tensor:
        n, _, h, w = x.shape
        if x.device.type == "meta":  # shape-only passes (operation counting) never reach onnxruntime
            return torch.empty((n, self.out_channels, h * self.scale, w * self.scale), device="meta")
        if self._fixed_hw is not None and (h, w) != self._fixed_hw:
            raise LeansrError(f"{self.path.name} was exported for {self._fixed_hw[0]}x{self._fixed_hw[1]} inputs "
                              f"only, not {h}x{w}; export it with --dynamic")
        feed = np.ascontiguousarray(x.detach().float().cpu().numpy(), dtype=self._input_dtype)
        # A graph with a fixed batch of one takes the engine's batches of tiles one at a time.
        parts = [feed] if self._fixed_batch in (None, n) else [feed[i:i + 1] for i in range(n)]
        out = np.concatenate([self._run(part, h, w) for part in parts])
        return torch.from_numpy(np.asarray(out, dtype=np.float32)).to(x.device)

    def _run(self, feed: np.ndarray, h: int, w: int) -> np.ndarray:
        try:
            return self.session.run(None, {self._input_name: feed})[0]
        except Exception as exc:  # onnxruntime's own exception types; the first line says what failed
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise LeansrError(f"onnxruntime failed on a {h}x{w} input of {self.path.name}: {first}") from None

    def extra_repr(self) -> str:
        return f"{self.path.name}, arch={self.arch}, x{self.scale}, {self.precision}"


def load_onnx_model(path: str | os.PathLike, *, scale: int | None = None,
                    threads: int | None = None) -> OnnxModel:
    """An `OnnxModel` for `path`; `scale` is required for files without leansr metadata."""
    path = Path(path)
    session = create_session(path, threads=threads)
    meta = dict(session.get_modelmeta().custom_metadata_map)
    if FORMAT_KEY in meta:
        own = int(meta["scale"])
        if scale is not None and scale != own:
            raise LeansrError(f"{path} is an x{own} model, which conflicts with --scale {scale}")
        scale = own
    elif scale is None:
        raise LeansrError(f"{path} is an ONNX file without leansr metadata; pass --scale N to say what it upscales")
    return OnnxModel(path, session, meta, int(scale))


def create_session(source: Path | bytes, *, threads: int | None = None) -> Any:
    """A CPU onnxruntime session for a file or serialized model, with PyTorch's thread count (so that
    `--threads` and benches mean the same for both)."""
    import onnxruntime as ort

    if isinstance(source, Path) and not source.is_file():
        raise CheckpointError(f"ONNX model {source} does not exist or is not a file")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only: its warnings about unused initializers are noise here
    try:
        model = source if isinstance(source, bytes) else str(source)
        return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    except Exception as exc:
        detail = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        name = "the exported model" if isinstance(source, bytes) else source
        raise CheckpointError(f"cannot read ONNX model {name}: {detail}") from None


def _static(shape: list[Any], axis: int) -> int | None:
    return shape[axis] if len(shape) > axis and isinstance(shape[axis], int) else None
