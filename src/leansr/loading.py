"""From a checkpoint (or a built model) to a `ModelDescriptor`: the model and everything known about it.

Every check happens before memory is committed: hyper-parameters are validated, the model is built on the
meta device and its tensor names and shapes compared with the file's, so a hostile file claiming 300000
channels costs nothing; weights must be finite.
"""

from __future__ import annotations

import inspect
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import Tensor, nn

from leansr.checkpoint import StateDict, read_state_dict
from leansr.context import GLOBAL, Context
from leansr.deploy.onnx_model import is_onnx_file, load_onnx_model
from leansr.errors import CheckpointError, LeansrError
from leansr.layers.reparam import reparameterize_model
from leansr.models._layout import Detection
from leansr.registry import create_model, detect, get_model_info, model_context, resolve_hparams

MAX_PARAMETERS = 500_000_000  # far above any efficient-SR model; refuses metadata claiming absurd sizes


@dataclass(frozen=True)
class Source:
    """Where a model came from: a file (or None), its format and the checkpoint layout recognised."""

    path: str | None
    format: str  # "safetensors (leansr)", "pth", "state dict", "built"
    layout: str = ""


@dataclass
class ModelDescriptor:
    """A loaded model and its facts; calling the descriptor runs the model (0-1 NCHW in and out)."""

    model: nn.Module
    arch: str
    scale: int
    in_channels: int
    out_channels: int
    input_range: float  # the pixel range the weights expect; the model itself takes 0-1
    hparams: dict[str, Any]
    deployed: bool
    source: Source
    context: Context
    notes: tuple[str, ...] = field(default=())

    def __call__(self, x: Tensor) -> Tensor:
        return self.model(x)

    def to(self, device: torch.device | str) -> ModelDescriptor:
        self.model.to(device)
        return self

    @property
    def device(self) -> torch.device:
        return next((t.device for t in (*self.model.parameters(), *self.model.buffers())), torch.device("cpu"))

    @classmethod
    def of(cls, model: nn.Module, *, source: Source | None = None, notes: tuple[str, ...] = ()) -> ModelDescriptor:
        """Describe a model built by `create_model` (or loaded), from what it records."""
        arch = getattr(model, "arch", "")
        if not arch:
            raise LeansrError("only models built by leansr.create_model or load_model can be described")
        hparams = dict(model.hparams)
        in_channels = int(getattr(model, "in_channels", 3))
        return cls(
            model=model, arch=arch, scale=int(model.scale), in_channels=in_channels,
            out_channels=int(getattr(model, "out_channels", in_channels)),
            input_range=float(getattr(model, "img_range", 1.0)), hparams=hparams,
            deployed=bool(getattr(model, "deployed", False)), source=source or Source(None, "built"),
            context=model_context(arch, hparams), notes=notes,
        )


def load_model(
    checkpoint: str | os.PathLike | Mapping[str, Tensor], *, device: str | torch.device = "cpu",
    scale: int | None = None,
) -> ModelDescriptor:
    """Build the model a checkpoint describes (the file name is ignored) and load its weights; eval mode.

    A `.onnx` file runs in onnxruntime instead; `scale` is needed only for ONNX files not made by leansr.
    A bare name that is no file, such as `arm_x4`, names a checkpoint packaged with leansr.
    """
    if not isinstance(checkpoint, Mapping):
        checkpoint = packaged_checkpoint(checkpoint)
    if not isinstance(checkpoint, Mapping) and is_onnx_file(checkpoint):  # leansr export/quantize output
        return _onnx_descriptor(checkpoint, scale)
    if isinstance(checkpoint, Mapping):
        state_dict, meta, origin = dict(checkpoint), None, Source(None, "state dict")
    else:
        state_dict, meta = read_state_dict(checkpoint)
        origin = Source(str(checkpoint), "safetensors (leansr)" if meta is not None else "pth")
    name = str(checkpoint) if origin.path else "the state dict"
    if meta is not None:
        arch, hparams, deployed, notes, layout = _from_metadata(meta, name)
    else:
        found = detect(state_dict)
        arch, hparams, deployed, notes, layout = found.arch, found.hparams, found.deployed, found.notes, found.layout
        state_dict = found.state_dict
    _check_finite(state_dict, name)
    model = _build(arch, hparams, deployed, state_dict, name)
    source = Source(origin.path, origin.format, layout or ("leansr" if meta is not None else ""))
    return ModelDescriptor.of(model.to(device).eval(), source=source, notes=tuple(notes))


def packaged_checkpoint(name: str | os.PathLike) -> str | os.PathLike:
    """`weights/NAME.safetensors` of the package for a bare NAME that is not a file here; else `name`."""
    packaged = _packaged(str(name))
    if Path(name).exists() or os.sep in str(name) or not packaged.is_file():
        return name
    return Path(str(packaged))  # the package is installed as files (pyproject package-data)


def _packaged(name: str) -> Any:
    """The package's `weights/NAME.safetensors` (an importlib Traversable; it may not exist)."""
    return resources.files("leansr") / "weights" / f"{name}.safetensors"


def _onnx_descriptor(path: str | os.PathLike, scale: int | None) -> ModelDescriptor:
    model = load_onnx_model(path, scale=scale)
    try:
        context = model_context(model.arch, model.hparams)
    except LeansrError:  # a foreign file: nothing known about its receptive field
        context = GLOBAL
    return ModelDescriptor(
        model=model, arch=model.arch, scale=model.scale, in_channels=model.in_channels,
        out_channels=model.out_channels, input_range=1.0, hparams=model.hparams, deployed=True,
        source=Source(str(path), "onnx", model.precision), context=context,
    )


def load_detected(detection: Detection, *, device: str | torch.device = "cpu") -> ModelDescriptor:
    """Build and load what a detector found (weights already in our layout)."""
    _check_finite(detection.state_dict, "the state dict")
    model = _build(detection.arch, detection.hparams, detection.deployed, detection.state_dict, "the state dict")
    return ModelDescriptor.of(model.to(device).eval(), source=Source(None, "state dict", detection.layout),
                              notes=tuple(detection.notes))


def _from_metadata(meta: Mapping[str, Any], name: str) -> tuple[str, dict[str, Any], bool, list[str], str]:
    arch, hparams = meta.get("arch"), meta.get("hparams")
    if not isinstance(arch, str) or not isinstance(hparams, dict):
        raise CheckpointError(f"{name} has malformed leansr metadata (arch must be a name, hparams a mapping)")
    try:
        get_model_info(arch)
    except LeansrError:
        raise CheckpointError(f"{name} is a {arch!r} checkpoint, a model this version of leansr does not know") from None
    return arch, dict(hparams), bool(meta.get("deployed", False)), [], "leansr"


def _build(arch: str, hparams: dict[str, Any], deployed: bool, state_dict: StateDict, name: str) -> nn.Module:
    """Validate on the meta device (no memory), then build for real and load strictly."""
    try:
        resolved = resolve_hparams(arch, **hparams)
        with torch.device("meta"):
            skeleton = _maybe_deployed(create_model(arch, **resolved), deployed)
    except LeansrError as exc:
        raise CheckpointError(f"{name}: {exc}") from None
    except Exception as exc:  # a constructor refusing these values (types, ranges)
        raise CheckpointError(f"{name} has hyper-parameters {arch!r} cannot be built with ({exc})") from None
    expected = skeleton.state_dict()
    total = sum(t.numel() for t in expected.values())
    if total > MAX_PARAMETERS:
        raise CheckpointError(f"{name} describes a {arch} of {total:,} parameters, beyond any plausible SR model")
    _check_fits(expected, state_dict, arch, name)
    model = _maybe_deployed(create_model(arch, **resolved), deployed)
    model.load_state_dict(state_dict, strict=True)
    return model


def _maybe_deployed(model: nn.Module, deployed: bool) -> nn.Module:
    return reparameterize_model(model, inplace=True) if deployed else model


def _check_fits(expected: StateDict, state_dict: StateDict, arch: str, name: str) -> None:
    missing = sorted(expected.keys() - state_dict.keys())
    unexpected = sorted(state_dict.keys() - expected.keys())
    wrong = [k for k in expected.keys() & state_dict.keys() if expected[k].shape != state_dict[k].shape]
    if not (missing or unexpected or wrong):
        return
    parts = []
    if missing:
        parts.append(f"missing {', '.join(missing[:3])}{' …' if len(missing) > 3 else ''}")
    if unexpected:
        parts.append(f"unexpected {', '.join(unexpected[:3])}{' …' if len(unexpected) > 3 else ''}")
    if wrong:
        k = sorted(wrong)[0]
        parts.append(f"{k} is {tuple(state_dict[k].shape)}, expected {tuple(expected[k].shape)}")
    raise CheckpointError(f"{name} does not fit {arch}: {'; '.join(parts)}")


def _check_finite(state_dict: StateDict, name: str) -> None:
    for key, tensor in state_dict.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            bad = int((~torch.isfinite(tensor)).sum())
            raise CheckpointError(f"{name} holds {bad} non-finite value(s) (NaN/Inf) in tensor {key}")


def check_finite_output(x: Tensor, what: str = "the model") -> None:
    """A non-finite output is an error, never an image."""
    if not bool(torch.isfinite(x).all()):
        raise LeansrError(f"{what} produced non-finite values (NaN/Inf); its weights or input are broken")



DEFAULT_SCALE = 4


def resolve_model(
    weights: str | os.PathLike | None, model_name: str | None, scale: int | None
) -> ModelDescriptor:
    """The model `leansr upscale` runs: a checkpoint, a parameter-free registered model, or the default.

    The default is the packaged `weights/default_x{scale}.safetensors` when present, else bicubic.
    """
    if weights is not None and model_name is not None:
        raise LeansrError("give either --weights or --model, not both")
    if weights is not None:
        descriptor = load_model(weights, scale=scale)
        if scale is not None and scale != descriptor.scale:
            raise LeansrError(f"{weights} is an x{descriptor.scale} model, which conflicts with --scale {scale}")
        return descriptor
    scale = DEFAULT_SCALE if scale is None else scale
    if model_name is None:
        default = _packaged(f"default_x{scale}")
        if default.is_file():
            with resources.as_file(default) as path:
                return load_model(path)
        model_name = "bicubic"
    info = get_model_info(model_name)
    takes_scale = "scale" in inspect.signature(info.constructor).parameters
    model = create_model(model_name, **({"scale": scale} if takes_scale else {}))
    if getattr(model, "scale", None) != scale:
        raise LeansrError(f"model {model_name!r} does not upscale x{scale}")
    if next(model.parameters(), None) is not None:
        raise LeansrError(f"model {model_name!r} needs trained weights: pass --weights FILE instead of --model")
    return ModelDescriptor.of(model.eval(), source=Source(None, "registered model"))
