"""What checkpoint detectors share: the detection record and helpers over tensor names and shapes.

Detectors are plain functions `fn(state_dict) -> Detection | None` living beside their model family; the
registry lists them. They judge by key names and shapes only, building models on the meta device.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import torch
from torch import Tensor

from leansr.errors import LeansrError

StateDict = dict[str, Tensor]


@dataclass
class Detection:
    """What a detector recognised: the model, its hyper-parameters, weights renamed to our layout.

    Detectors name their family's base model; `leansr.registry.detect` refines it to the most specific
    preset whose hyper-parameters match (e.g. rlfn -> rlfn_ntire).
    """

    arch: str
    hparams: dict[str, Any]
    state_dict: StateDict  # keys renamed to our module layout
    deployed: bool = False
    notes: list[str] = field(default_factory=list)
    layout: str = ""  # the checkpoint layout recognised, e.g. "NTIRE 2022 challenge"


Detector = Callable[[StateDict], "Detection | None"]


def layout_keys(constructor: Callable[..., torch.nn.Module], **hparams: Any) -> set[str]:
    """State-dict keys of `constructor(**hparams)`, built on the meta device (no memory, no init).

    Empty when those hyper-parameters cannot be built (e.g. an unsupported scale): nothing can match then.
    """
    try:
        with torch.device("meta"):
            return set(constructor(**hparams).state_dict())
    except (LeansrError, ValueError, RuntimeError, TypeError):
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
    try:
        with torch.device("meta"):  # shapes only: no memory, no initialisation
            expected = constructor(**hparams).state_dict()
    except (LeansrError, ValueError, RuntimeError, TypeError):
        return False
    return expected.keys() == state_dict.keys() and all(
        expected[key].shape == state_dict[key].shape for key in expected
    )
