"""Explicit model registry: names map to constructors; nothing is discovered by scanning folders."""

from __future__ import annotations

import fnmatch
import inspect
from dataclasses import dataclass
from typing import Any, Callable

from torch import nn

from leansr.errors import LeansrError


@dataclass(frozen=True)
class ModelInfo:
    name: str
    constructor: Callable[..., nn.Module]
    scales: tuple[int, ...]
    checkpoints: tuple[str, ...]  # official checkpoint files this model loads, for `leansr list`
    summary: str


_MODELS: dict[str, ModelInfo] = {}


def register_model(
    name: str,
    *,
    scales: tuple[int, ...],
    checkpoints: tuple[str, ...] = (),
    summary: str = "",
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator registering a model constructor (class or function) under `name`."""

    def decorate(constructor: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _MODELS:
            raise ValueError(f"model {name!r} is already registered")
        _MODELS[name] = ModelInfo(name, constructor, tuple(scales), tuple(checkpoints), summary)
        return constructor

    return decorate


def get_model_info(name: str) -> ModelInfo:
    _ensure_zoo_loaded()
    try:
        return _MODELS[name]
    except KeyError:
        raise LeansrError(f"unknown model {name!r}; known models: {', '.join(sorted(_MODELS))}") from None


def list_models(pattern: str = "*") -> list[str]:
    """Registered model names matching a shell-style pattern, sorted."""
    _ensure_zoo_loaded()
    return sorted(n for n in _MODELS if fnmatch.fnmatchcase(n, pattern))


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Build a registered model; the resolved hyper-parameters are recorded on it for checkpoints."""
    info = get_model_info(name)
    signature = inspect.signature(info.constructor)
    try:
        bound = signature.bind(**kwargs)
    except TypeError as exc:
        raise LeansrError(f"bad arguments for model {name!r}: {exc}") from None
    bound.apply_defaults()
    if "scale" in bound.arguments and info.scales and bound.arguments["scale"] not in info.scales:
        raise LeansrError(
            f"model {name!r} supports scales {list(info.scales)}, not {bound.arguments['scale']}"
        )
    model = info.constructor(**bound.arguments)
    model.arch = name
    model.hparams = dict(bound.arguments)
    return model


def _ensure_zoo_loaded() -> None:
    # The zoo registers itself on import; importing here keeps `leansr.registry` import-cycle free.
    import leansr.models  # noqa: F401
