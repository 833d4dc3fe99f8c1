"""The model registry: families, their presets (as data), checkpoint detectors and context rules.

A *family* is one constructor with its detectors and the rule giving its `Context` from hyper-parameters;
a *preset* is a named set of hyper-parameters over the constructor's defaults. Everything is listed here,
explicitly (nothing is discovered by scanning folders); `register_model` adds a user's own models.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from torch import nn

from leansr.context import GLOBAL, Context, approximate, local
from leansr.errors import CheckpointError, LeansrError
from leansr.models import (
    arm, arm_plain, bicubic, ecbsr, edsr, fimdn, fmen, ghostsr, imdn, imdn_acb, imdn_kb, latticenet, msrresnet, pan,
    rfdn, rlfn,
)
from leansr.models._layout import Detection, Detector, StateDict

ContextRule = Callable[[Mapping[str, Any]], Context]
ALL_SCALES = (2, 3, 4)


@dataclass(frozen=True)
class Preset:
    overrides: Mapping[str, Any] = field(default_factory=dict)  # over the constructor's defaults
    checkpoints: tuple[str, ...] = ()  # official files this preset loads, for `leansr list`
    scales: tuple[int, ...] = ALL_SCALES


@dataclass(frozen=True)
class Family:
    name: str
    constructor: Callable[..., nn.Module]
    presets: Mapping[str, Preset]
    context: ContextRule
    detectors: tuple[Detector, ...] = ()


@dataclass(frozen=True)
class ModelInfo:
    """One registered model name: its family's constructor and the preset's hyper-parameters."""

    name: str
    family: Family
    preset: Preset

    @property
    def constructor(self) -> Callable[..., nn.Module]:
        return self.family.constructor

    @property
    def scales(self) -> tuple[int, ...]:
        return self.preset.scales

    @property
    def checkpoints(self) -> tuple[str, ...]:
        return self.preset.checkpoints

    def context(self, hparams: Mapping[str, Any]) -> Context:
        return self.family.context(hparams)


def _rule(kind: Callable[..., Context], radius: Callable[[Mapping[str, Any]], int], **extra: int) -> ContextRule:
    return lambda hp: kind(radius(hp), **extra)


ESA_STRIDE = 6  # ESA: a stride-2 conv, then a stride-3 max-pool


# Radii are receptive fields in LR pixels (3x3 convs add one each); tests check them by gradient probes.
_FAMILIES: tuple[Family, ...] = (
    Family("rlfn", rlfn.RLFN, {
        "rlfn": Preset(checkpoints=("rlfn_x2.pth", "rlfn_x4.pth")),
        "rlfn_s": Preset({"channels": 48, "mid_channels": 48}, ("rlfn_s_x2.pth", "rlfn_s_x4.pth")),
        "rlfn_ntire": Preset({"channels": 46, "mid_channels": 48, "num_blocks": 4}, ("rlfn_ntire_x4.pth",)),
    }, _rule(approximate, lambda hp: 20 * hp["num_blocks"] + 2, stride=ESA_STRIDE), (rlfn.detect_rlfn,)),
    Family("imdn", imdn.IMDN, {
        "imdn": Preset(checkpoints=("IMDN_x2.pth", "IMDN_x3.pth", "IMDN_x4.pth")),
    }, lambda hp: GLOBAL, (imdn.detect_imdn,)),
    Family("imdn_aim2019", imdn.IMDNAIM2019, {
        "imdn_aim2019": Preset(checkpoints=("imdn_baseline.pth",)),
    }, _rule(local, lambda hp: 4 * hp["num_blocks"] + 3), (imdn.detect_imdn_aim2019,)),
    Family("imdn_acb", imdn_acb.IMDNACB, {"imdn_acb": Preset()}, lambda hp: GLOBAL),
    # AIM 2020: FIMDN (six 3x3 units a block), UESTC-MediaLab's IMDN (one grouped 3x3 per stage, no attention),
    # LatticeNet (combination coefficients pool the whole map).
    Family("fimdn", fimdn.FIMDN, {"fimdn": Preset()}, _rule(local, lambda hp: 6 * hp["num_blocks"] + 3)),
    Family("imdn_kb", imdn_kb.IMDNKernelBasis, {"imdn_kb": Preset()},
           _rule(local, lambda hp: 4 * hp["num_blocks"] + 3)),
    Family("latticenet", latticenet.LatticeNet, {"latticenet": Preset()}, lambda hp: GLOBAL),
    Family("rfdn", rfdn.RFDN, {
        "rfdn": Preset(),
        "rfdn_e": Preset({"channels": 50, "num_blocks": 4, "img_range": 255.0}, ("RFDN_AIM.pth",)),
    }, _rule(approximate, lambda hp: 30 * hp["num_blocks"] + 2, stride=ESA_STRIDE), (rfdn.detect_rfdn,)),
    Family("pan", pan.PAN, {
        "pan": Preset(checkpoints=("PANx2_DF2K.pth", "PANx3_DF2K.pth", "PANx4_DF2K.pth")),
    }, _rule(local, lambda hp: 2 * hp["num_blocks"] + 4), (pan.detect_pan,)),
    Family("msrresnet", msrresnet.MSRResNet, {"msrresnet": Preset()},
           _rule(local, lambda hp: 2 * hp["num_blocks"] + 3), (msrresnet.detect_msrresnet,)),
    Family("ecbsr", ecbsr.ECBSR, {
        f"ecbsr_m{blocks}c{channels}": Preset({"num_blocks": blocks, "channels": channels})
        for blocks, channels in ((4, 8), (4, 16), (10, 32), (16, 64))
    }, _rule(local, lambda hp: hp["num_blocks"] + 2), (ecbsr.detect_ecbsr,)),
    Family("fmen", fmen.FMEN, {
        "fmen_s": Preset(checkpoints=("test_weights.pt",)),
        # NJU-Jet/FMEN publishes only FMEN-S; the larger FMEN's configuration is our choice.
        "fmen": Preset({"n_feats": 64, "mid_feats": 32, "attention_erbs": 2}),
    }, _rule(local, lambda hp: 6 + 2 * hp["warmup_erbs"] + hp["down_blocks"] * (4 + 2 * hp["attention_erbs"])),
        (fmen.detect_fmen,)),
    Family("bicubic", bicubic.Bicubic, {"bicubic": Preset()}, lambda hp: local(2)),
    Family("edsr", edsr.EDSR, {  # head 1 + 2 a block + body end 1 + upsampler and tail (< 2 LR px)
        "edsr_baseline": Preset(), "edsr": Preset({"channels": 256, "num_blocks": 32, "res_scale": 0.1}),
    }, _rule(local, lambda hp: 2 * hp["num_blocks"] + 4), (edsr.detect_edsr,)),
    Family("ghostsr", ghostsr.ghostsr, {"ghostsr": Preset()}, ghostsr.ghost_context),
    # ARM supernets (slimmable; width 0 = bicubic); radii are those of the full width.
    Family("arm_fsrcnn", arm.ARMFSRCNN, {"arm_fsrcnn": Preset(checkpoints=("arm-fsrcnn.pth",))},
           _rule(local, lambda hp: hp["mapping"] + 5), (arm.detect_arm_fsrcnn,)),
    Family("arm_carn", arm.ARMCARN, {"arm_carn": Preset(checkpoints=("arm-carn.pth",))},
           _rule(local, lambda hp: 22), (arm.detect_arm_carn,)),
    Family("arm_srresnet", arm.ARMSRResNet, {"arm_srresnet": Preset()},
           _rule(local, lambda hp: 2 * hp["num_blocks"] + 4)),
    # Ours: CPU-friendly widths (multiples of 16 beat 24, which oneDNN pads to 32); shipped as arm_x4.
    Family("arm_plain", arm_plain.ARMPlain, {"arm_plain": Preset({"widths": [16, 32]})},
           _rule(local, lambda hp: hp["num_blocks"] + 2)),
)

_MODELS: dict[str, ModelInfo] = {}
_DETECTORS: dict[Detector, Family] = {}


def _add(family: Family) -> None:
    for name in family.presets:
        if name in _MODELS:
            raise ValueError(f"model {name!r} is already registered")
    for name, preset in family.presets.items():
        _MODELS[name] = ModelInfo(name, family, preset)
    for detector in family.detectors:
        _DETECTORS[detector] = family


for _family in _FAMILIES:
    _add(_family)


def register_model(
    name: str,
    *,
    scales: tuple[int, ...] = ALL_SCALES,
    checkpoints: tuple[str, ...] = (),
    context: Context = GLOBAL,
    detectors: tuple[Detector, ...] = (),
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator registering a constructor as a one-preset family; raises on duplicate names.

    `context` defaults to `global`, the safe assumption for tiling a model nobody has analysed.
    """

    def decorate(constructor: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        _add(Family(name, constructor, {name: Preset({}, tuple(checkpoints), tuple(scales))},
                    lambda hp: context, tuple(detectors)))
        return constructor

    return decorate


def get_model_info(name: str) -> ModelInfo:
    try:
        return _MODELS[name]
    except KeyError:
        raise LeansrError(f"unknown model {name!r}; known models: {', '.join(sorted(_MODELS))}") from None


def list_models(pattern: str = "*") -> list[str]:
    """Registered model names matching a shell-style pattern, sorted."""
    return sorted(n for n in _MODELS if fnmatch.fnmatchcase(n, pattern))


def resolve_hparams(name: str, **kwargs: Any) -> dict[str, Any]:
    """The full hyper-parameters `create_model(name, **kwargs)` would use, checked; builds nothing."""
    info = get_model_info(name)
    signature = inspect.signature(info.constructor)
    try:
        bound = signature.bind(**{**info.preset.overrides, **kwargs})
    except TypeError as exc:
        raise LeansrError(f"bad arguments for model {name!r}: {exc}") from None
    bound.apply_defaults()
    for key, value in bound.arguments.items():
        if isinstance(value, int) and not isinstance(value, bool) and (
                value < 0 or value == 0 and key.endswith(("channels", "feats", "scale"))):
            raise LeansrError(f"model {name!r}: {key}={value} is out of range")
    scale = bound.arguments.get("scale")
    if scale is not None and info.scales and scale not in info.scales:
        raise LeansrError(f"model {name!r} supports scales {list(info.scales)}, not {scale}")
    return dict(bound.arguments)


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Build a registered model; its name and resolved hyper-parameters are recorded for checkpoints."""
    info = get_model_info(name)
    hparams = resolve_hparams(name, **kwargs)
    model = info.constructor(**hparams)
    model.arch = name
    model.hparams = hparams
    return model


def model_context(name: str, hparams: Mapping[str, Any]) -> Context:
    return get_model_info(name).context(resolve_hparams(name, **hparams))


def preset_for(family: Family, hparams: Mapping[str, Any]) -> str:
    """The most specific preset of `family` whose hyper-parameters these are (most overrides matched)."""
    matching = [
        (len(preset.overrides), name)
        for name, preset in family.presets.items()
        if all(hparams.get(key) == value for key, value in preset.overrides.items())
    ]
    if not matching:
        raise CheckpointError(
            f"unrecognised {family.name} configuration: it matches none of {', '.join(family.presets)}"
        )
    return max(matching)[1]


def detect(state_dict: StateDict) -> Detection:
    """What the single layout that recognises these tensors found, named by its most specific preset."""
    state_dict = _strip_prefix(state_dict, "module.")
    found = [(family, d) for fn, family in _DETECTORS.items() if (d := fn(state_dict)) is not None]
    if len(found) == 1:
        family, detection = found[0]
        return dataclasses.replace(detection, arch=preset_for(family, detection.hparams))
    sample = ", ".join(list(state_dict)[:4])
    if not found:
        raise CheckpointError(
            f"unrecognised checkpoint layout ({len(state_dict)} tensors, keys like {sample}); "
            f"known layouts: {', '.join(sorted({f.name for f in _DETECTORS.values()}))}"
        )
    raise CheckpointError(f"ambiguous checkpoint layout: matches {', '.join(f.name for f, _ in found)}")


ghostsr.bind_registry(create_model=create_model, constructor_of=lambda name: get_model_info(name).constructor,
                      model_context=model_context)


def _strip_prefix(state_dict: StateDict, prefix: str) -> StateDict:
    if state_dict and all(k.startswith(prefix) for k in state_dict):
        return {k[len(prefix):]: v for k, v in state_dict.items()}
    return state_dict
