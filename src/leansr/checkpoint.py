"""Checkpoint files: reading tensors safely, and writing our safetensors format. Nothing else.

Official `.pth` files are read with `torch.load(weights_only=True)`, so a file that needs pickled code is
refused before any of its code runs. Our own format is safetensors with JSON metadata under the key `leansr`.
"""

from __future__ import annotations

import json
import os
import pickle
import re
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import Tensor, nn

from leansr.atomic import atomic_path
from leansr.errors import CheckpointError

StateDict = dict[str, Tensor]
_CONTAINER_KEYS = ("params_ema", "params", "state_dict", "model_state_dict", "net", "model")


def read_state_dict(path: str | os.PathLike) -> tuple[StateDict, dict[str, Any] | None]:
    """Tensors of a checkpoint file and our metadata (None for foreign files)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist or is not a file")
    if _is_safetensors(path):
        return _read_safetensors(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"unsupported GLOBAL (\S+)", str(exc))
        if found is None:
            raise CheckpointError(f"cannot read checkpoint {path}: not a PyTorch state dict") from None
        raise CheckpointError(
            f"refusing {path}: it needs pickled code ({found.group(1)}) to load, which is never executed"
        ) from None
    except Exception as exc:  # truncated zip, not a torch file, ...
        raise CheckpointError(f"cannot read checkpoint {path}: {type(exc).__name__}: {exc}") from None
    return _unwrap(obj, path), None


def checkpoint_metadata(model: nn.Module) -> dict[str, Any]:
    if not getattr(model, "arch", "") or not hasattr(model, "hparams"):
        raise CheckpointError("only models built by leansr.create_model or load_model can be saved")
    return {
        "arch": model.arch,
        "hparams": model.hparams,
        "scale": int(getattr(model, "scale", 0)),
        "img_range": float(getattr(model, "img_range", 1.0)),
        "in_channels": int(getattr(model, "in_channels", 3)),
        "deployed": bool(getattr(model, "deployed", False)),
    }


def save_checkpoint(
    model: nn.Module, path: str | os.PathLike, *, extra: Mapping[str, Any] | None = None
) -> Path:
    """Write safetensors + JSON metadata atomically (temp file, then rename)."""
    from safetensors.torch import save_file

    meta = checkpoint_metadata(model)
    if extra:
        meta["extra"] = dict(extra)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    path = Path(path)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"leansr": json.dumps(meta)})
    return path


def _is_safetensors(path: Path) -> bool:
    if path.suffix == ".safetensors":
        return True
    with open(path, "rb") as f:
        head = f.read(9)
    # safetensors: 8-byte little-endian header size, then a JSON object.
    return len(head) == 9 and head[8:9] == b"{"


def _read_safetensors(path: Path) -> tuple[StateDict, dict[str, Any] | None]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            raw = (f.metadata() or {}).get("leansr")
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:
        raise CheckpointError(f"cannot read safetensors file {path}: {exc}") from None
    meta = json.loads(raw) if raw else None
    if meta is not None and not {"arch", "hparams"} <= meta.keys():
        raise CheckpointError(f"{path} has leansr metadata without arch and hparams")
    return tensors, meta


def _unwrap(obj: Any, path: Path) -> StateDict:
    while isinstance(obj, Mapping) and not _is_tensor_dict(obj):
        inner = next((obj[k] for k in _CONTAINER_KEYS if isinstance(obj.get(k), Mapping)), None)
        if inner is None:
            break
        obj = inner
    if not isinstance(obj, Mapping) or not _is_tensor_dict(obj):
        raise CheckpointError(f"{path} holds no state dict of tensors")
    return {k: v for k, v in obj.items() if isinstance(v, Tensor)}


def _is_tensor_dict(obj: Mapping) -> bool:
    return len(obj) > 0 and all(isinstance(k, str) for k in obj) and any(
        isinstance(v, Tensor) for v in obj.values()
    )
