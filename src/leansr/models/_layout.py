"""Helpers for checkpoint detectors: the exact tensor names a registered model would hold."""

from __future__ import annotations

import re
from typing import Any, Callable, Iterable

import torch

from leansr.errors import LeansrError
from leansr.registry import create_model


def layout_keys(arch: str, **hparams: Any) -> set[str]:
    """State-dict keys of `create_model(arch, **hparams)`, built on the meta device (no memory, no init).

    Empty when those hyper-parameters cannot be built (e.g. an unsupported scale): nothing can match then.
    """
    try:
        with torch.device("meta"):
            return set(create_model(arch, **hparams).state_dict())
    except (LeansrError, ValueError, RuntimeError):
        return set()


def numbered(keys: Iterable[str], pattern: str) -> list[int]:
    """Sorted distinct integers captured by `pattern` (one group, full match) over the keys."""
    regex = re.compile(pattern)
    return sorted({int(m.group(1)) for k in keys if (m := regex.fullmatch(k))})


Replacement = str | Callable[[re.Match[str]], str]


def renamed(state_dict: dict[str, Any], rules: list[tuple[str, Replacement]]) -> dict[str, Any]:
    """Keys rewritten by the first matching (regex, replacement) rule; other keys kept as they are.

    A replacement is an `re.sub` template or a function of the match (e.g. to shift 1-based indices).
    """
    compiled = [(re.compile(pattern), repl) for pattern, repl in rules]
    out = {}
    for key, value in state_dict.items():
        for regex, repl in compiled:
            new, hits = regex.subn(repl, key, count=1)
            if hits:
                key = new
                break
        out[key] = value
    return out


def shapes_match(constructor: Callable[..., torch.nn.Module], hparams: dict[str, Any], state_dict: dict) -> bool:
    """Whether `constructor(**hparams)` (built on the meta device) holds exactly these keys and shapes."""
    with torch.device("meta"):  # shapes only: no memory, no initialisation
        expected = constructor(**hparams).state_dict()
    return expected.keys() == state_dict.keys() and all(
        expected[key].shape == state_dict[key].shape for key in expected
    )
