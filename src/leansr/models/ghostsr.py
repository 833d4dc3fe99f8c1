"""GhostSR versions of zoo models: chosen 3x3 convs of a base model become ghost convs (`leansr.layers.ghost`).

A *pair* is a producer conv and the one conv (the *consumer*) that reads its output, possibly through an
activation and a concatenation. Only producers whose output channels feed nothing but their consumer are
converted: their channel order is then free (the consumer's input columns follow it). Convs whose outputs
add into a residual trunk (RLFB `c3_r`, residual-block `conv2`, EDSR `body.N.body.2`), split into
distilled/remaining parts (IMDN `c1..c3`), or feed channel attention (IMDN `c4` with CCA) keep fixed
channel positions and are left as they are.

Which convs, per family:
- RLFB (RLFN, RLFN-S, RLFN_ntire): `c1_r -> c2_r`, `c2_r -> c3_r` (LeakyReLU between: shift foldable).
- EDSR blocks and MSRResNet / residual blocks: `conv1 -> conv2` (ReLU: foldable).
- FMEN deployed: each ERB `conv1 -> conv2` and in each HFAB `squeeze -> first ERB`, `last ERB -> excitate`
  (LeakyReLU: foldable).
- ECBSR deployed (our default models): every conv but the last `-> next conv` (per-channel PReLU: its
  slopes are permuted with the channels; foldable only with `tie_slopes`, where each ghost channel takes its
  source's slope).
- E-RFDN (RFDB) and IMDN AIM 2019 (IMDB without CCA): `c4 -> c5` (1x1 on the concatenation, at offset 3/4).

`trunk=True` also makes the convs that write into a residual trunk ghost convs:
- RLFN: each block's `c3_r` (output added to the block input). Sound for a pretrained model because every
  block's trunk space can take its own channel order: it is written by the previous block's `c5` and ESA
  `conv4` (or by `conv_1` and `conv_2`, the long skip, for block 1) and read by this block's `c1_r` and `c5`
  and the previous ESA's `conv1` (or the upsampler). The pair lists those as `rows` / `cols`: they follow the
  ghost conv's channel order. Its least-squares consumer is the block's `c5`.
- EDSR / residual blocks: every block adds into one shared trunk, so one channel order would have to suit all
  blocks; these pairs have no consumer and are only for training from scratch (the paper's EDSR-GhostSR, both
  3x3 convs of every block ghosted, as the official code).
"""

from __future__ import annotations

import inspect
from typing import Any, Callable

import torch
from torch import nn

from leansr.context import Context
from leansr.errors import LeansrError
from leansr.layers.ghost import SELECTIONS, GhostConv, GhostFedConv, SharedSlopePReLU, offset
from leansr.layers.hfab import DeployedHFAB
from leansr.layers.reparam import reparameterize_model
from leansr.layers.residual_block_nobn import ResidualBlockNoBN
from leansr.layers.rrrb import ERB, RepConv
from leansr.models.ecbsr import ECBSR
from leansr.models.edsr import EDSRBlock
from leansr.models.imdn import IMDB
from leansr.models.rfdn import RFDB
from leansr.models.rlfn import RLFN

# producer, consumer, act (per-channel act module or None), offset, fold[, rows, cols, tie_act, ratio]
Pair = dict[str, Any]


def _pair(producer: str, consumer: str | None, *, act: str | None = None, offset: int = 0, fold: bool = True,
          rows: list[str] | None = None, cols: list[str] | None = None, tie_act: bool = False) -> Pair:
    """`rows` / `cols`: further convs whose output rows / input columns follow the producer's channel order;
    `tie_act`: the per-channel `act` becomes a `SharedSlopePReLU` (ghosts use their sources' slopes)."""
    pair = {"producer": producer, "consumer": consumer, "act": act, "offset": offset, "fold": fold}
    if rows or cols:
        pair.update(rows=list(rows or []), cols=list(cols or []))
    if tie_act:
        pair["tie_act"] = True
    return pair


def find_pairs(model: nn.Module, *, trunk: bool = False, tie_slopes: bool = False) -> list[Pair]:
    """Convertible (producer, consumer) pairs of a zoo model, in forward order; `trunk`: see the module doc;
    `tie_slopes`: per-channel PReLUs after ghost convs share slopes between ghost and source, which makes
    those pairs foldable (ECBSR)."""
    pairs: list[Pair] = []
    for name, module in model.named_modules():
        p = f"{name}." if name else ""
        if isinstance(module, RLFN):
            pairs += _rlfn_pairs(module, p, trunk)
        elif isinstance(module, ResidualBlockNoBN):
            pairs.append(_pair(f"{p}conv1", f"{p}conv2"))
            pairs += [_pair(f"{p}conv2", None, fold=False)] if trunk else []
        elif isinstance(module, EDSRBlock):
            pairs.append(_pair(f"{p}body.0", f"{p}body.2"))
            pairs += [_pair(f"{p}body.2", None, fold=False)] if trunk else []
        elif isinstance(module, DeployedHFAB) and _plain_erbs(module.convs):
            first, last = f"{p}convs.0.conv1.rep_conv", f"{p}convs.{len(module.convs) - 1}.conv2.rep_conv"
            pairs += [_pair(f"{p}squeeze", first)]
            pairs += [_pair(f"{p}convs.{i}.conv1.rep_conv", f"{p}convs.{i}.conv2.rep_conv")
                      for i in range(len(module.convs))]
            pairs += [_pair(last, f"{p}excitate")]
        elif isinstance(module, ERB) and isinstance(module.conv1, RepConv) and not _inside_hfab(name, model):
            pairs.append(_pair(f"{p}conv1.rep_conv", f"{p}conv2.rep_conv"))
        elif isinstance(module, ECBSR):
            pairs += _ecbsr_pairs(module, p, tie_slopes)
        elif isinstance(module, RFDB):
            pairs.append(_pair(f"{p}c4", f"{p}c5", offset=3 * module.c4.out_channels, fold=False))
        elif isinstance(module, IMDB) and isinstance(module.cca, nn.Identity):
            pairs.append(_pair(f"{p}c4", f"{p}c5", offset=3 * module.distilled, fold=False))
    return [pair for pair in pairs if _plain(model, pair["producer"]) and _plain(model, pair["consumer"])]


def _plain(model: nn.Module, path: str | None) -> bool:
    if path is None:
        return True
    module = model.get_submodule(path)
    return type(module) is nn.Conv2d and module.groups == 1 and module.stride == (1, 1)


def _rlfn_pairs(model: RLFN, p: str, trunk: bool) -> list[Pair]:
    pairs = []
    for k in range(1, model.num_blocks + 1):
        b = f"{p}block_{k}."
        pairs += [_pair(f"{b}c1_r", f"{b}c2_r"), _pair(f"{b}c2_r", f"{b}c3_r")]
        if not trunk:
            continue
        before = f"{p}block_{k - 1}." if k > 1 else None
        writers = [f"{before}c5", f"{before}esa.conv4"] if before else [f"{p}conv_1", f"{p}conv_2"]
        readers = [f"{b}c1_r", f"{b}c5", f"{before}esa.conv1" if before else f"{p}upsampler.0"]
        pairs.append(_pair(f"{b}c3_r", f"{b}c5", fold=False, rows=writers, cols=readers))
    return pairs


def _plain_erbs(convs: nn.Module) -> bool:
    return all(isinstance(erb, ERB) and isinstance(erb.conv1, RepConv) for erb in convs)


def _inside_hfab(name: str, model: nn.Module) -> bool:
    parts = name.split(".")
    return any(isinstance(model.get_submodule(".".join(parts[:i])), DeployedHFAB) for i in range(1, len(parts)))


def _ecbsr_pairs(model: ECBSR, p: str, tie_slopes: bool) -> list[Pair]:
    layers = list(model.backbone)
    pairs = []
    for i in range(len(layers) - 1):
        act = layers[i].act
        per_channel = isinstance(act, nn.PReLU) and act.num_parameters > 1
        tie = per_channel and tie_slopes
        pairs.append(_pair(f"{p}backbone.{i}.conv", f"{p}backbone.{i + 1}.conv",
                           act=f"{p}backbone.{i}.act" if per_channel else None, fold=tie or not per_channel,
                           tie_act=tie))
    return pairs


def ghostsr(
    *,
    scale: int = 4,
    base: str = "edsr_baseline",
    base_args: dict[str, Any] | None = None,
    base_deployed: bool = False,
    ratio: float = 0.5,
    per_channel: bool = False,
    selection: str = "hard",
    pairs: list[Pair] | None = None,
    directions: list[Any] | None = None,
    fold: bool = False,
    trunk: bool = False,
) -> nn.Module:
    """`base` (built with `base_args`, fused first if `base_deployed`) with each pair's producer a ghost conv.

    `pairs` default to every convertible pair (`find_pairs`); a pair's own `ratio` overrides `ratio` for its
    producer (per-layer intrinsic counts, `leansr.ghost.convert.set_layer_ratios`). `directions` (one per
    pair) freeze-start the shifts and, with `fold`, fold them into the consumers when the model is
    re-parameterized.
    """
    if not 0.0 < ratio < 1.0:
        raise LeansrError(f"ghost ratio must be in (0, 1), got {ratio}")
    if selection not in SELECTIONS:
        raise LeansrError(f"selection must be one of {SELECTIONS}, got {selection!r}")
    model = _base_model(base, base_args, scale)
    if base_deployed:
        model = reparameterize_model(model, inplace=True)
    model.deployed = False  # the ghost convs are training form until this model is re-parameterized
    pairs = find_pairs(model, trunk=trunk) if pairs is None else pairs
    if not pairs:
        raise LeansrError(f"{base} has no convertible 3x3 conv (see leansr.models.ghostsr for which convs)")
    if directions is not None and len(directions) != len(pairs):
        raise LeansrError(f"got {len(directions)} directions for {len(pairs)} ghost layers")
    ghosts = {}
    for index, pair in enumerate(pairs):
        direction = None if directions is None else directions[index]
        ghost = _swap_producer(model, pair["producer"], pair.get("ratio", ratio), per_channel, selection, direction)
        ghosts[pair["producer"]] = ghost
        if pair.get("tie_act"):
            _set(model, pair["act"], SharedSlopePReLU(ghost.intrinsic, ghost.ghosts))
    if fold and directions is not None and not per_channel:
        for pair, direction in zip(pairs, directions):
            # A diagonal shift folds into a 4x4 kernel plus border taps: more than the 3x3 conv it replaces.
            if pair["fold"] and pair["consumer"] and isinstance(direction, int) and 0 in offset(direction):
                _fold(model, ghosts[pair["producer"]], pair["consumer"], int(direction))
                if pair.get("tie_act"):
                    model.get_submodule(pair["act"]).folded = True
    return model


# The registry lists this family, so this module cannot import it: the registry hands over what is needed.
_REGISTRY: dict[str, Callable[..., Any]] = {}


def bind_registry(*, create_model: Callable[..., nn.Module], constructor_of: Callable[[str], Callable[..., Any]],
                  model_context: Callable[[str, dict[str, Any]], Context]) -> None:
    _REGISTRY.update(create_model=create_model, constructor_of=constructor_of, model_context=model_context)


def _base_model(base: str, base_args: dict[str, Any] | None, scale: int) -> nn.Module:
    args = dict(base_args or {})
    if "scale" in inspect.signature(_REGISTRY["constructor_of"](base)).parameters:
        args["scale"] = scale
    return _REGISTRY["create_model"](base, **args)


def ghost_context(hparams: dict[str, Any]) -> Context:
    """The base model's context, one LR pixel wider per ghost conv (each shifts by up to one pixel)."""
    args = {**(hparams.get("base_args") or {}), "scale": hparams.get("scale", 4)}
    base = _REGISTRY["model_context"](hparams["base"], args)
    pairs = hparams.get("pairs")
    if pairs is None:
        with torch.device("meta"):
            pairs = find_pairs(_base_model(hparams["base"], hparams.get("base_args"), args["scale"]),
                               trunk=bool(hparams.get("trunk")))
    return Context(base.kind, base.radius + len(pairs), base.stride)


def _swap_producer(model: nn.Module, path: str, ratio: float, per_channel: bool, selection: str,
                   direction: Any) -> GhostConv:
    conv = model.get_submodule(path)
    ghost = GhostConv(conv.in_channels, conv.out_channels, ratio=ratio, kernel_size=conv.kernel_size[0],
                      bias=conv.bias is not None, per_channel=per_channel, selection=selection, direction=direction)
    _set(model, path, ghost)
    return ghost


def _fold(model: nn.Module, producer: GhostConv, consumer_path: str, direction: int) -> None:
    consumer = model.get_submodule(consumer_path)
    producer.fold_output = True
    if isinstance(consumer, GhostConv):
        consumer.fold_input = (producer.intrinsic, direction)
        return
    fed = GhostFedConv(consumer.in_channels, consumer.out_channels, intrinsic=producer.intrinsic,
                       direction=direction, bias=consumer.bias is not None)
    _set(model, consumer_path, fed)


def _set(model: nn.Module, path: str, module: nn.Module) -> None:
    parent, _, leaf = path.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, leaf, module)
