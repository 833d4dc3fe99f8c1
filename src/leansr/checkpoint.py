"""Checkpoint files: reading tensors safely, and writing our safetensors format. Nothing else.

Official `.pth` files are read with `torch.load(weights_only=True)`, so a file that needs pickled code is
refused before any of its code runs. Our own format is safetensors with JSON metadata under the key `leansr`.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import warnings
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import Tensor, nn

from leansr.atomic import atomic_path
from leansr.errors import CheckpointError, OutputError

StateDict = dict[str, Tensor]
_CONTAINER_KEYS = ("params_ema", "params", "state_dict", "model_state_dict", "net", "model")


def read_state_dict(path: str | os.PathLike) -> tuple[StateDict, dict[str, Any] | None]:
    """Tensors of a checkpoint file and our metadata (None for foreign files).

    `leansr train` checkpoints (`iter_*.pt`, `best.pt`) give their EMA weights (the training weights when
    EMA was off) and metadata rebuilt from the run's stored config.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist or is not a file")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {path} is empty")
    if _is_safetensors(path):
        return _read_safetensors(path)
    _check_torch_magic(path)
    obj = _torch_load(path)
    training = training_checkpoint_weights(obj, path)
    if training is not None:
        return training
    return _unwrap(obj, path), None


def _check_torch_magic(path: Path) -> None:
    """torch.save writes a zip archive (or, before PyTorch 1.6, a pickle); refuse anything else unread."""
    with open(path, "rb") as f:
        head = f.read(4)
    if head[:4] != b"PK\x03\x04" and head[:1] != b"\x80":
        raise CheckpointError(f"{path} is not a PyTorch or safetensors checkpoint")


def _torch_load(path: Path) -> Any:
    # Torch's own messages advise weights_only=False (unsafe) and are many lines; each case gets ours.
    try:
        with warnings.catch_warnings():  # e.g. "Detected pickle protocol 200": noise before our sentence
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"unsupported GLOBAL (\S+)", str(exc))
        if found is None:
            raise CheckpointError(f"cannot read checkpoint {path}: not a PyTorch state dict") from None
        raise CheckpointError(
            f"refusing {path}: it needs pickled code ({found.group(1)}) to load, which is never executed"
        ) from None
    except MemoryError:
        raise CheckpointError(f"cannot read checkpoint {path}: it needs more memory than is available") from None
    except Exception as exc:  # truncated zip, legacy tar, corrupt pickle stream, ...
        reason = "truncated or corrupt" if isinstance(exc, (EOFError, RuntimeError)) else "corrupt"
        raise CheckpointError(f"cannot read checkpoint {path}: the file is {reason} ({type(exc).__name__})") from None


def training_checkpoint_weights(obj: Any, path: Path) -> tuple[StateDict, dict[str, Any]] | None:
    """(weights, metadata) of a `leansr train` checkpoint, else None. EMA weights when the run kept them."""
    if not (isinstance(obj, Mapping) and isinstance(obj.get("config"), Mapping) and "iteration" in obj):
        return None
    model_cfg = obj["config"].get("model")
    ema = obj.get("ema")
    weights = ema.get("module") if isinstance(ema, Mapping) else obj.get("model")
    if not isinstance(model_cfg, Mapping) or not isinstance(weights, Mapping) or not _is_tensor_dict(weights):
        raise CheckpointError(f"{path} looks like a leansr training checkpoint but lacks its model or config")
    name, scale, args = model_cfg.get("name"), model_cfg.get("scale"), model_cfg.get("args", {})
    if not isinstance(name, str) or type(scale) is not int or not isinstance(args, Mapping):
        raise CheckpointError(f"{path}: the training config's model section is malformed")
    hparams = dict(args)
    if "scale" in _constructor_parameters(name):
        hparams["scale"] = scale
    meta = {"arch": name, "hparams": hparams, "deployed": bool(model_cfg.get("train_fused", False)),
            "iteration": int(obj["iteration"]), "weights": "ema" if isinstance(ema, Mapping) else "model"}
    return {k: v for k, v in weights.items() if isinstance(v, Tensor)}, _checked_meta(meta, path)


def _constructor_parameters(name: str) -> Mapping[str, Any]:
    import inspect

    from leansr.registry import get_model_info

    return inspect.signature(get_model_info(name).constructor).parameters


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
    try:
        with atomic_path(path) as tmp:
            save_file(tensors, str(tmp), metadata={"leansr": json.dumps(meta)})
    except OSError:
        raise
    except Exception as exc:  # safetensors reports a full disk as SafetensorError("... IoError ...")
        raise OutputError(f"cannot write {path}: {str(exc).splitlines()[0][:200]}") from None
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
        detail = str(exc).splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"cannot read safetensors file {path}: {detail}") from None
    if not raw:
        return tensors, None
    try:
        meta = json.loads(raw)
    except ValueError:
        raise CheckpointError(f"{path} has leansr metadata that is not valid JSON") from None
    return tensors, _checked_meta(meta, path)


def _checked_meta(meta: Any, path: Path) -> dict[str, Any]:
    """Our metadata with the types everything downstream relies on; one sentence for whatever is off."""
    if not isinstance(meta, dict) or not {"arch", "hparams"} <= meta.keys():
        raise CheckpointError(f"{path} has leansr metadata without arch and hparams")
    if not isinstance(meta["arch"], str) or not isinstance(meta["hparams"], dict):
        raise CheckpointError(f"{path} has malformed leansr metadata: arch must be a name and hparams a mapping")
    if not all(isinstance(k, str) and _plain_value(v) for k, v in meta["hparams"].items()):
        raise CheckpointError(f"{path} has malformed leansr metadata: hparams must map names to plain values")
    if not isinstance(meta.get("deployed", False), bool):
        raise CheckpointError(f"{path} has malformed leansr metadata: deployed must be true or false")
    return meta


def _plain_value(value: Any) -> bool:
    if isinstance(value, (list, tuple)):
        return all(_plain_value(v) for v in value)
    if isinstance(value, dict):  # e.g. ghostsr's base-model arguments and converted-conv pairs
        return all(isinstance(k, str) and _plain_value(v) for k, v in value.items())
    return value is None or isinstance(value, (bool, int, float, str))


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
