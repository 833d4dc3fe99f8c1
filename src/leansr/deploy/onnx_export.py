"""`leansr export`: write a model as ONNX, verified by onnxruntime against PyTorch before the file appears.

The legacy TorchScript exporter is used (no onnxscript dependency); shapes the models read at run time (the
ESA's interpolation target, pixel shuffle) stay symbolic with `dynamic=True`. Shape-dependent Python branches
(the ESA's pool window for inputs under 15 px) are traced at a 64 px image, so dynamic models need inputs of
at least 15 px, as the official models do.
"""

from __future__ import annotations

import copy
import io
import json
import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from leansr.atomic import atomic_path
from leansr.deploy.onnx_model import FORMAT_KEY, FORMAT_VERSION, create_session
from leansr.errors import LeansrError
from leansr.layers.reparam import is_reparameterized, reparameterize_model

DEFAULT_OPSET = 17
TOLERANCE = {"fp32": 1e-4, "fp16": 1 / 255}  # max |ONNX - PyTorch fp32| on the 0-1 scale; fp16: one gray level
_TRACE_SIZE = (64, 64)
_CHECK_SIZES = ((64, 64), (45, 71))  # a second, odd shape catches sizes baked in by tracing
INPUT_NAME, OUTPUT_NAME = "lr", "sr"


@dataclass(frozen=True)
class ExportResult:
    path: Path
    max_abs_diff: float
    tolerance: float
    metadata: dict[str, str]


def export_onnx(model: nn.Module, path: str | Path, *, opset: int = DEFAULT_OPSET, dynamic: bool = False,
                fp16: bool = False, input_size: tuple[int, int] = (256, 256), source: str = "") -> ExportResult:
    """Export `model` (re-parameterized first), check it in onnxruntime, then write `path` atomically."""
    precision = "fp16" if fp16 else "fp32"
    reference = deployable(model)
    exported = copy.deepcopy(reference).half() if fp16 else reference
    channels = int(getattr(model, "in_channels", 3))
    trace_hw = _TRACE_SIZE if dynamic else tuple(input_size)
    proto = _trace(exported, probe_image(channels, *trace_hw).to(next(_params_or_buffers(exported)).dtype),
                   opset, dynamic)
    sizes = _CHECK_SIZES if dynamic else (tuple(input_size),)
    diff = verify(reference, proto.SerializeToString(), [probe_image(channels, h, w, seed=i)
                                                         for i, (h, w) in enumerate(sizes)], fp16=fp16)
    tolerance = TOLERANCE[precision]
    if not diff <= tolerance:  # also catches NaN
        raise LeansrError(f"the ONNX model differs from PyTorch by {diff:.2e} (more than {tolerance:.0e}) on the "
                          f"test image; {path} not written")
    meta = model_metadata(model, precision=precision, dynamic=dynamic, diff=diff, source=source)
    set_metadata(proto, meta)
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_bytes(proto.SerializeToString())
    return ExportResult(path, diff, tolerance, meta)


def deployable(model: nn.Module) -> nn.Module:
    """A float32 eval-mode CPU copy in its deployed (re-parameterized) form."""
    model = copy.deepcopy(model).float().cpu().eval()
    return model if is_reparameterized(model) else reparameterize_model(model, inplace=True)


def probe_image(channels: int, height: int, width: int, *, seed: int = 0) -> Tensor:
    """A deterministic 0-1 image with smooth gradients, edges and fine noise (NCHW, float32)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.linspace(0, 1, height)[:, None]
    x = torch.linspace(0, 1, width)[None, :]
    planes = []
    for _ in range(channels):
        a, b, c = torch.rand(3, generator=g).tolist()
        smooth = 0.5 + 0.3 * torch.sin(2 * math.pi * (a * 3 * x + b * 2 * y + c))
        edges = 0.2 * ((x * (4 + 4 * a) + y * (3 + 3 * b)) % 1 > 0.5).float()
        planes.append(smooth + edges - 0.1 + 0.05 * torch.randn(height, width, generator=g))
    return torch.stack(planes)[None].clamp(0, 1)


def verify(reference: nn.Module, onnx_bytes: bytes, images: list[Tensor], *, fp16: bool = False) -> float:
    """Largest |onnxruntime - PyTorch| over `images` (PyTorch in float32)."""
    session = create_session(onnx_bytes)
    name = session.get_inputs()[0].name
    worst = 0.0
    with torch.inference_mode():
        for image in images:
            expected = reference(image).float().numpy()
            feed = image.numpy().astype(np.float16 if fp16 else np.float32)
            got = np.asarray(session.run(None, {name: feed})[0], dtype=np.float32)
            if got.shape != expected.shape:
                return float("inf")
            worst = max(worst, float(np.abs(got - expected).max()))
    return worst


def model_metadata(model: nn.Module, *, precision: str, dynamic: bool, diff: float, source: str) -> dict[str, str]:
    from leansr import __version__

    in_channels = int(getattr(model, "in_channels", 3))
    return {
        FORMAT_KEY: str(FORMAT_VERSION),
        "arch": str(getattr(model, "arch", type(model).__name__)),
        "scale": str(int(model.scale)),
        "in_channels": str(in_channels),
        "out_channels": str(int(getattr(model, "out_channels", in_channels))),
        "input_range": "0-1",  # the graph takes and returns 0-1 images; img_range is handled inside
        "leansr_version": __version__,
        "precision": precision,
        "hparams": json.dumps(getattr(model, "hparams", {})),
        "dynamic_hw": "true" if dynamic else "false",
        "verified_max_abs_diff": f"{diff:.3e}",
        "source": source,
    }


def set_metadata(proto, meta: dict[str, str]) -> None:
    """Replace the model's metadata_props with `meta` (quantizing copies the fp32 export's props)."""
    del proto.metadata_props[:]
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value


def _trace(model: nn.Module, sample: Tensor, opset: int, dynamic: bool):
    import onnx

    axes = {INPUT_NAME: {0: "batch", 2: "height", 3: "width"},
            OUTPUT_NAME: {0: "batch", 2: "out_height", 3: "out_width"}} if dynamic else None
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the exporter's deprecation and tracer notes are not the user's
            torch.onnx.export(model, (sample,), buffer, dynamo=False, opset_version=opset,
                              input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], dynamic_axes=axes)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise LeansrError(f"cannot export {getattr(model, 'arch', 'the model')} to ONNX (opset {opset}): "
                          f"{first}") from None
    return onnx.load_model_from_string(buffer.getvalue())


def _params_or_buffers(model: nn.Module):
    yield from model.parameters()
    yield from model.buffers()
    yield torch.empty(0)  # parameter-free models trace in float32
