"""Training configuration: dataclasses with commented defaults, YAML files and typed `key=value` overrides.

A value given on the command line is parsed by the type of the field it sets (never evaluated), so
`optim.lr=oops` or `data.patchsize=48` fails with one sentence naming the key.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from leansr.errors import LeansrError


@dataclass
class ModelConfig:
    name: str = "ecbsr_m4c16"  # a registered model (`leansr list`)
    scale: int = 4
    args: dict[str, Any] = field(default_factory=dict)  # extra constructor arguments, typed by its signature
    # Re-parameterizable models train in their branched form; true trains the fused (plain) form directly,
    # several times faster on CPU at some cost in accuracy. The exported model is the same either way.
    train_fused: bool = False
    init: str = ""  # checkpoint whose weights start the run (fine-tuning; official layouts too); "" = random
    # Simulate `leansr quantize`'s int8 rounding (all convs but the first and last) in every forward, so that
    # the trained weights quantize with little loss: quantization-aware fine-tuning of a trained model.
    quant_aware: bool = False


@dataclass
class DataConfig:
    train: list[str] = field(default_factory=list)  # HR folders (recursive); DIV2K / `data prepare` LR used if found
    val: list[str] = field(default_factory=list)  # HR folders scored with `evaluate_model` (e.g. Set5)
    patch_size: int = 64  # LR patch side; the HR patch is patch_size * scale
    batch_size: int = 16  # total over all processes; each DDP rank takes batch_size / world_size
    workers: int = 2  # DataLoader worker processes (0 = load in the main process)
    flip: bool = True  # random horizontal and vertical flips
    rot90: bool = True  # random 90-degree rotations (transpose)
    use_prepared_lr: bool = True  # use paired LR folders when found; False = always bicubic on the fly
    cache: bool = False  # keep decoded images in RAM (one copy per loading process; best with workers=0)


@dataclass
class StageConfig:
    loss: str = "l1"  # l1 | l2
    iters: int = 0  # optimizer steps in this stage (0 = skip the stage)
    lr: float = 5e-4  # Adam learning rate after warm-up
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    weight_decay: float = 0.0
    schedule: str = "multistep"  # multistep | cosine | constant
    warmup_iters: int = 0  # linear warm-up from 0 to lr
    milestones: list[int] = field(default_factory=list)  # multistep: iterations (within the stage) to decay at
    gamma: float = 0.5  # multistep decay factor
    min_lr: float = 1e-7  # cosine floor
    grad_clip: float = 0.0  # max global grad norm (0 = off)
    # none | weight_rms: each weight tensor (biases keep lr) gets lr * its RMS / the median RMS of the model's
    # weight tensors, at the stage's start. For models whose folded weights span orders of magnitude (deployed
    # FMEN-S: attention weights ~1e-7 to 1e-5 beside ~0.4), where Adam's step of about lr on every weight is ruinous.
    lr_scale: str = "none"
    # Fuse the re-parameterizable blocks (ACB, ECB, kernel bases, ...) before this stage and train the plain
    # network from then on (FIMDN: AC training, then fine-tune the fused 3x3 network).
    reparameterize: bool = False


@dataclass
class BasisStageConfig:
    bases: int = 0  # first stage only: basis kernels each kernel-basis conv starts with (N0)
    add_bases: int = 0  # later stages: new Xavier-uniform bases per conv; all then re-weighted 1/N_t
    iters: int = 0  # optimizer steps of this stage


@dataclass
class KernelBasisConfig:
    # The kernel-basis schedule (AIM 2020, UESTC-MediaLab), for models with a `basis_stages` argument:
    # e.g. [{bases: 3, iters: 1000}, {add_bases: 2, iters: 500}]. It replaces stage1.iters: each basis stage
    # trains with stage1's loss, fresh Adam and schedule over its own iters; stage2 follows. Empty = off.
    stages: list[BasisStageConfig] = field(default_factory=list)


@dataclass
class DistillConfig:
    teacher: str = ""  # checkpoint whose outputs on the LR patches are targets ("" = train on HR only)
    hr_weight: float = 0.0  # with a teacher: loss = (1 - hr_weight) * loss(teacher) + hr_weight * loss(HR)


@dataclass
class SupernetConfig:
    # Only for ARM supernets (arm_*): which widths each step trains.
    sampling: str = "cost2"  # cost2: one width a step, p ~ cost^2 (official) | sandwich: widest, narrowest, one more
    distill: bool = True  # sandwich: narrower widths learn the widest one's output (in-place distillation)


@dataclass
class TrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    # L1 from scratch, then an optional L2 fine-tune with a fresh optimizer (the AIM 2020 / NTIRE 2022 recipes).
    stage1: StageConfig = field(default_factory=lambda: StageConfig(loss="l1", iters=1000))
    stage2: StageConfig = field(default_factory=lambda: StageConfig(loss="l2", iters=0, lr=2e-5))
    distill: DistillConfig = field(default_factory=DistillConfig)
    supernet: SupernetConfig = field(default_factory=SupernetConfig)
    kernel_basis: KernelBasisConfig = field(default_factory=KernelBasisConfig)
    ema_decay: float = 0.999  # EMA of weights (0 = off); validation and export use the EMA weights
    amp: str = "none"  # none | bf16 | fp16 (autocast on GPU; fp16 adds a GradScaler)
    device: str = "auto"  # auto | cpu | cuda
    seed: int = 0
    log_every: int = 50  # iterations between JSON log lines
    val_every: int = 1000  # iterations between validations (0 = only at the end)
    checkpoint_every: int = 1000  # iterations between training checkpoints
    keep_checkpoints: int = 2  # most recent training checkpoints kept (best.pt is kept besides)
    threads: int = 0  # torch CPU threads (0 = leave torch's default)
    channels_last: bool = True  # on CPU, batches in channels-last layout: oneDNN's faster convs (~1.2x steps)
    time_limit_min: float = 0.0  # stop with a checkpoint after this many minutes of one session (0 = none)
    # Skip the optimizer step of a batch whose loss exceeds this multiple of the median of the last 100 kept
    # steps (0 = off). One rare patch on which a model explodes (a converted GhostSR model on saturated
    # content) otherwise fills Adam's second moments and slows every later step, gradient clipping or not.
    # With it on, 20 spikes in a row (a kept step broke the model) roll back to a snapshot (guards.SpikeRecovery).
    skip_loss_spikes: float = 0.0
    output: str = "runs/{model}_x{scale}"  # run folder; {model} and {scale} are filled in


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> TrainConfig:
    """Defaults, then the YAML file (if any), then `key=value` overrides, checked against the field types."""
    config = TrainConfig()
    if path is not None:
        try:
            raw = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        except UnicodeDecodeError:
            raise LeansrError(f"config {path} is not UTF-8 text") from None
        except OSError as exc:
            raise LeansrError(f"cannot read config {path}: {exc.strerror or exc}") from None
        except yaml.YAMLError as exc:
            detail = " ".join(str(exc).split())
            raise LeansrError(f"config {path} is not valid YAML: {detail}") from None
        if not isinstance(raw, dict):
            raise LeansrError(f"config {path} must be a mapping of sections")
        _merge(config, raw, prefix="")
    for item in overrides:
        apply_override(config, item)
    validate(config)
    return config


def apply_override(config: TrainConfig, item: str) -> None:
    key, sep, text = item.partition("=")
    if not sep or not key:
        raise LeansrError(f"override {item!r} is not KEY=VALUE (e.g. stage1.lr=1e-3)")
    *parents, leaf = key.strip().split(".")
    target: Any = config
    for i, part in enumerate(parents):
        if isinstance(target, dict):  # model.args.<name>: below a free-form mapping
            raise LeansrError(f"unknown config key {key!r}")
        if not dataclasses.is_dataclass(target) or part not in _field_types(target):
            raise LeansrError(f"unknown config key {'.'.join(parents[: i + 1])!r}")
        target = getattr(target, part)
    if isinstance(target, dict):
        if parents != ["model", "args"]:
            raise LeansrError(f"unknown config key {key!r}")
        target[leaf] = _parse_model_arg(config.model.name, leaf, text)
        return
    types = _field_types(target)
    if leaf not in types:
        raise LeansrError(f"unknown config key {key!r}; valid keys here: {', '.join(types)}")
    setattr(target, leaf, parse_value(text, types[leaf], key))


def parse_value(text: str, tp: Any, key: str) -> Any:
    """Parse command-line text as type `tp` (int, float, bool, str, list[...], dict)."""
    text = text.strip()
    origin = typing.get_origin(tp)
    if origin is list:
        (item_type,) = typing.get_args(tp)
        body = text[1:-1] if text.startswith("[") and text.endswith("]") else text
        return [parse_value(t, item_type, key) for t in body.split(",") if t.strip()]
    if tp is bool:
        lowered = text.lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise LeansrError(f"{key} expects true or false, got {text!r}")
    if tp is int or tp is float:
        try:
            return tp(text)
        except ValueError:
            raise LeansrError(f"{key} expects {tp.__name__}, got {text!r}") from None
    if tp is str or tp is Any:
        return text
    raise LeansrError(f"{key} cannot be set from the command line")


def validate(config: TrainConfig) -> None:
    """Every setting checked now, with one sentence naming it, rather than hours later or never."""
    from leansr.registry import get_model_info

    info = get_model_info(config.model.name)
    if info.scales and config.model.scale not in info.scales:
        raise LeansrError(f"model {config.model.name} supports scales {list(info.scales)}, not {config.model.scale}")
    for name in ("stage1", "stage2"):
        _validate_stage(name, getattr(config, name))
    _validate_kernel_basis(config)
    if config.stage1.iters + config.stage2.iters == 0:
        raise LeansrError("nothing to train: stage1.iters and stage2.iters are both 0")
    if config.amp not in ("none", "bf16", "fp16"):
        raise LeansrError(f"amp must be none, bf16 or fp16, not {config.amp!r}")
    if config.device not in ("auto", "cpu", "cuda") and not _is_cuda_index(config.device):
        raise LeansrError(f"device must be auto, cpu, cuda or cuda:N, not {config.device!r}")
    data = config.data
    if data.patch_size < 4 or data.batch_size < 1:
        raise LeansrError("data.patch_size must be >= 4 and data.batch_size >= 1")
    if not 0.0 <= config.distill.hr_weight <= 1.0:
        raise LeansrError("distill.hr_weight must be in [0, 1]")
    if not (math.isfinite(config.skip_loss_spikes) and (config.skip_loss_spikes == 0 or config.skip_loss_spikes > 1)):
        raise LeansrError("skip_loss_spikes must be 0 (off) or a factor above 1")
    if not (math.isfinite(config.time_limit_min) and config.time_limit_min >= 0):
        raise LeansrError("time_limit_min must be >= 0")
    if data.workers < 0:
        raise LeansrError(f"data.workers must be >= 0 (0 loads in the main process), not {data.workers}")
    if config.supernet.sampling not in ("cost2", "sandwich"):
        raise LeansrError(f"supernet.sampling must be cost2 or sandwich, not {config.supernet.sampling!r}")
    if not (math.isfinite(config.ema_decay) and 0.0 <= config.ema_decay < 1.0):
        raise LeansrError("ema_decay must be in [0, 1)")
    for key in ("log_every", "checkpoint_every", "keep_checkpoints"):
        if getattr(config, key) < 1:
            raise LeansrError(f"{key} must be at least 1, not {getattr(config, key)}")
    for key in ("val_every", "threads"):
        if getattr(config, key) < 0:
            raise LeansrError(f"{key} must be >= 0 (0 = {'only at the end' if key == 'val_every' else 'default'})")
    _check_model_builds(config)


def _validate_stage(name: str, stage: StageConfig) -> None:
    if stage.loss not in ("l1", "l2"):
        raise LeansrError(f"{name}.loss must be l1 or l2, not {stage.loss!r}")
    if stage.lr_scale not in ("none", "weight_rms"):
        raise LeansrError(f"{name}.lr_scale must be none or weight_rms, not {stage.lr_scale!r}")
    if stage.schedule not in ("multistep", "cosine", "constant"):
        raise LeansrError(f"{name}.schedule must be multistep, cosine or constant, not {stage.schedule!r}")
    if stage.iters < 0 or stage.warmup_iters < 0:
        raise LeansrError(f"{name}: iters and warmup_iters must be >= 0")
    if not (math.isfinite(stage.lr) and stage.lr > 0):
        raise LeansrError(f"{name}.lr must be a positive finite number, not {stage.lr}")
    if len(stage.betas) != 2 or not all(math.isfinite(b) and 0.0 <= b < 1.0 for b in stage.betas):
        raise LeansrError(f"{name}.betas must be two numbers in [0, 1), e.g. [0.9, 0.999], not {stage.betas}")
    for key in ("weight_decay", "min_lr", "grad_clip"):
        value = getattr(stage, key)
        if not (math.isfinite(value) and value >= 0):
            raise LeansrError(f"{name}.{key} must be a finite number >= 0, not {value}")
    if not (math.isfinite(stage.gamma) and stage.gamma > 0):
        raise LeansrError(f"{name}.gamma must be a positive finite number, not {stage.gamma}")
    if any(m < 0 for m in stage.milestones):
        raise LeansrError(f"{name}.milestones must be >= 0, not {stage.milestones}")


def _is_cuda_index(device: str) -> bool:
    prefix, _, index = device.partition(":")
    return prefix == "cuda" and index.isdigit()


def _check_model_builds(config: TrainConfig) -> None:
    """Build the model on the meta device (no memory): bad model.args (e.g. an unknown activation) fail now."""
    import torch

    from leansr.registry import create_model, get_model_info

    kwargs: dict[str, Any] = dict(config.model.args)
    if "scale" in inspect.signature(get_model_info(config.model.name).constructor).parameters:
        kwargs["scale"] = config.model.scale
    try:
        with torch.device("meta"):
            create_model(config.model.name, **kwargs)
    except LeansrError:
        raise
    except Exception as exc:  # the constructor's own check, e.g. "act must be one of ..."
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise LeansrError(f"model.args do not build {config.model.name}: {detail}") from None


def _validate_kernel_basis(config: TrainConfig) -> None:
    """Check `kernel_basis.stages`; record N0 in `model.args.basis_stages` and the total in `stage1.iters`."""
    stages = config.kernel_basis.stages
    if not stages:
        return
    if stages[0].bases < 1 or stages[0].add_bases:
        raise LeansrError("kernel_basis.stages[0] must set bases >= 1 (the starting number) and no add_bases")
    for i, stage in enumerate(stages[1:], start=1):
        if stage.add_bases < 1 or stage.bases:
            raise LeansrError(f"kernel_basis.stages[{i}] must set add_bases >= 1 and no bases")
    if min(stage.iters for stage in stages) < 1:
        raise LeansrError("every kernel_basis stage needs iters >= 1")
    if config.model.train_fused:
        raise LeansrError("model.train_fused=true trains no kernel bases; it cannot follow kernel_basis.stages")
    from leansr.registry import get_model_info

    if "basis_stages" not in inspect.signature(get_model_info(config.model.name).constructor).parameters:
        raise LeansrError(f"model {config.model.name} has no kernel-basis convolutions (no basis_stages argument)")
    start = [stages[0].bases]
    if config.model.args.get("basis_stages") not in (None, start):
        raise LeansrError(f"model.args.basis_stages must be {start} (kernel_basis.stages[0].bases) or unset")
    config.model.args["basis_stages"] = start
    config.stage1.iters = sum(stage.iters for stage in stages)


def to_dict(config: TrainConfig) -> dict[str, Any]:
    return dataclasses.asdict(config)


def save_config(config: TrainConfig, path: Path) -> None:
    from leansr.atomic import atomic_path

    with atomic_path(path) as tmp:
        tmp.write_text(yaml.safe_dump(to_dict(config), sort_keys=False))


def _merge(target: Any, raw: dict[str, Any], prefix: str) -> None:
    types = _field_types(target)
    for key, value in raw.items():
        where = f"{prefix}{key}"
        if key not in types:
            raise LeansrError(f"unknown config key {where!r}; valid keys here: {', '.join(types)}")
        current = getattr(target, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise LeansrError(f"config key {where!r} must be a mapping")
            _merge(current, value, prefix=f"{where}.")
        else:
            setattr(target, key, _check_yaml_value(value, types[key], where))


def _check_yaml_value(value: Any, tp: Any, key: str) -> Any:
    """YAML already typed the value; accept it if it fits the field (ints are fine for floats)."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise LeansrError(f"{key} expects a mapping, got {value!r}")
        item = tp()
        _merge(item, value, prefix=f"{key}.")
        return item
    if origin is list:
        (item_type,) = typing.get_args(tp)
        items = value if isinstance(value, list) else [value]
        return [_check_yaml_value(v, item_type, key) for v in items]
    if origin is dict:
        if not isinstance(value, dict):
            raise LeansrError(f"{key} expects a mapping")
        return dict(value)
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if tp is str and isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return str(value)
    if tp is Any or (isinstance(value, tp) and not (tp is int and isinstance(value, bool))):
        return value
    raise LeansrError(f"{key} expects {getattr(tp, '__name__', tp)}, got {value!r}")


def _parse_model_arg(model_name: str, name: str, text: str) -> Any:
    """Model arguments are typed by the model constructor's own annotations."""
    from leansr.registry import get_model_info

    constructor = get_model_info(model_name).constructor
    target = constructor.__init__ if inspect.isclass(constructor) else constructor
    hints = typing.get_type_hints(target)
    if name not in inspect.signature(constructor).parameters:
        raise LeansrError(f"model {model_name} has no argument {name!r}")
    tp = hints.get(name, str)
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        tp = next(t for t in typing.get_args(tp) if t is not type(None))
    if typing.get_origin(tp) is tuple:
        tp = list[typing.get_args(tp)[0]]
    return parse_value(text, tp, f"model.args.{name}")


def _field_types(obj: Any) -> dict[str, Any]:
    return typing.get_type_hints(type(obj))
