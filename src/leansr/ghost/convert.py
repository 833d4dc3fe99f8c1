"""Convert a pretrained zoo model to GhostSR so that it starts close to the original.

Per convertible pair (producer -> consumer, `leansr.models.ghostsr.find_pairs`), in forward order:

1. Intrinsic filters. The producer's filters (rows of its weight, flattened) are clustered by k-means into
   `ceil(ratio * C)` clusters (k-means++ seeding, fixed seed, Lloyd iterations); each cluster keeps the member
   nearest its centroid. Nearest-to-centroid rather than the centroid itself keeps a real pretrained filter
   (its bias and its place in the consumer stay meaningful). Clusters are ordered largest first.
2. Ghost slots. Ghost i copies intrinsic i (mod the intrinsic count); each slot takes the unused
   non-intrinsic filter nearest to that intrinsic, so the consumer's input columns follow the filters:
   column j of the new consumer is the old column of the filter now at position j. Per-channel activations
   (PReLU) are permuted the same way.
3. Direction. Per layer: the shift whose least-squares refit of the consumer leaves the smallest error on the
   calibration patches (for large consumers, over 1024 inputs, the shift that best reproduces the replaced
   filters' responses). Below ratio 0.5 each copy of the intrinsic features gets its own, distinct shift,
   chosen greedily copy by copy the same way. Per channel: the response match, channel by channel.
4. Refit. The consumer (its intrinsic rows, if it is itself a ghost conv) is refit by ridge least squares on
   its actual inputs in the partly converted model against the original model's outputs, pulled towards the
   permuted initial weights. Where ghosts are plain shifts of their sources at the consumer's input, the fit
   gives each tap position around a source one weight, shared by the source and its ghosts (`_tied_taps`).

`convert_calibrated` runs all this twice: the second time with the patches the first result fitted worst
added to the calibration patches.
"""

from __future__ import annotations

import fnmatch
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from leansr.errors import LeansrError
from leansr.layers.ghost import (NUM_DIRECTIONS, GhostConv, ghost_sources, intrinsic_channels, offset, per_ghost,
                                 shift)
from leansr.models.ghostsr import Pair, find_pairs
from leansr.registry import create_model

KMEANS_ITERS = 30
# 16 calibration patches and 24,000 fitted pixels overfit: RLFN_ntire at ratio 0.33 reached 36.0 dB to the original
# on them and -45 dB on Set14 patches; 64 and 96,000 give 34.3 and 30.7 dB (ratio 0.5: 31.5 -> 32.1 dB held out).
CALIBRATION_PATCHES = 64
MINING_POOL = 1024  # augmented patches searched for those the first conversion fits worst
MINED_PATCHES = 16  # of them added to the calibration patches for the second conversion
MAX_LS_ROWS = 96_000  # calibration pixels per least-squares fit (random subset)
MAX_SEARCH_ROWS = 6_000  # fewer while comparing shifts: only the ranking matters there
MAX_LS_SEARCH_INPUTS = 1024  # above this many consumer inputs, pick the shift by matching responses instead
# Ridge toward the permuted initial weights, relative to the mean diagonal of A^T A. 1e-2 tamed one patch on
# which the converted RLFN_ntire exploded, but the ratio-0.33 fine-tune then met a worse one and diverged;
# see docs/benchmarks.md (GhostSR).
RIDGE = 1e-3
TIE_GHOST_TAPS = True
SHIFT_SETS = {"axis": (1, 3, 4, 5, 7), "all": tuple(range(NUM_DIRECTIONS))}


def convert(
    model: nn.Module,
    calibration: Tensor,
    *,
    ratio: float = 0.5,
    per_channel: bool = False,
    selection: str = "hard",
    shifts: str | tuple[int, ...] = "axis",
    refit: bool = True,
    trunk: bool = True,
    layer_ratios: dict[str, float] | None = None,
    multiple: int = 1,
    tie_slopes: bool = False,
    seed: int = 0,
) -> nn.Module:
    """A `ghostsr` model built from `model` (made by `create_model`/`load_model`), fitted on `calibration`.

    `calibration`: LR patches (N, C, h, w) on the 0-1 scale. `shifts`: "axis" (the 4 one-pixel moves along
    rows or columns, and no move) or "all" 9. Axis shifts fold into 3x4 / 4x3 kernels, diagonal ones into
    4x4 kernels, which cost a third more: on RLFN_ntire a folded ratio-0.5 model is 0.60x the MACs with
    axis shifts and 0.68x with diagonal ones (a tuple of direction indices also works). `refit=False` skips
    the least-squares steps (shifts then chosen by matching responses): the bare clustering and permutation,
    for comparison. `trunk`: also the convs that write into a residual trunk where that is sound (RLFN's
    `c3_r`; `leansr.models.ghostsr`).
    `layer_ratios` and `multiple`: per-layer intrinsic counts, see `set_layer_ratios`. `tie_slopes`: a
    per-channel PReLU after a ghost conv gives each ghost its source's slope, so the shift folds (ECBSR).
    """
    candidates = SHIFT_SETS.get(shifts) if isinstance(shifts, str) else tuple(shifts)
    if not candidates or not all(0 <= d < NUM_DIRECTIONS for d in candidates):
        raise LeansrError(f"shifts must be one of {', '.join(SHIFT_SETS)} or directions 0..8, got {shifts!r}")
    if not 0.0 < ratio < 1.0:
        raise LeansrError(f"--ratio must be in (0, 1), got {ratio}")
    if getattr(model, "arch", None) in (None, "ghostsr"):
        raise LeansrError("convert a zoo model loaded with load_model (not an already converted GhostSR model)")
    model = model.float().eval()
    # Trunk convs only where each trunk space can take its own channel order (RLFN); see find_pairs.
    pairs = [p for p in find_pairs(model, trunk=trunk, tie_slopes=tie_slopes) if p["consumer"] is not None]
    if not pairs:
        raise LeansrError(f"{model.arch} has no convertible conv (no 3x3 conv whose output channels are free)")
    pairs = _in_forward_order(model, pairs, calibration[:1])
    set_layer_ratios(model, pairs, ratio, layer_ratios or {}, multiple)
    base_args = {k: v for k, v in model.hparams.items() if k != "scale"}
    ghost = create_model(
        "ghostsr", scale=model.scale, base=model.arch, base_args=base_args,
        base_deployed=bool(getattr(model, "deployed", False)), ratio=ratio, per_channel=per_channel,
        selection=selection, pairs=pairs,
    ).eval()
    _copy_unchanged(model, ghost)
    generator = torch.Generator().manual_seed(seed)
    targets = _module_outputs(model, [p["consumer"] for p in pairs] + [p["producer"] for p in pairs],
                              calibration)
    rows: dict[str, list[int]] = {}
    orders: dict[str, list[int | None]] = {}
    for pair in pairs:
        weight = model.get_submodule(pair["producer"]).weight.detach()
        rows[pair["producer"]], orders[pair["producer"]] = _choose_filters(weight, ghost, pair, generator)
    row_order = _install(model, ghost, pairs, rows, orders)
    directions = []
    for pair in pairs:  # forward order: each fit sees the already converted layers before it
        directions.append(_choose_direction(ghost, pair, orders[pair["producer"]], targets, row_order,
                                            calibration, generator, candidates, search=refit))
        if refit:
            _refit_consumer(ghost, pair, targets, row_order, calibration, generator)
    ghost.hparams["directions"] = directions
    return ghost


def set_layer_ratios(model: nn.Module, pairs: list[Pair], ratio: float, layer_ratios: dict[str, float],
                     multiple: int) -> None:
    """Give a pair its own `ratio` where it differs from the model's: the first of `layer_ratios` (glob
    pattern on the producer's path -> ratio) that matches it, and intrinsic counts rounded up to a multiple
    of `multiple`. A pair with more ghosts than intrinsic channels keeps its own PReLU slopes: its copies
    shift differently, so tying them (`tie_act`) would cost capacity and never let it fold.

    Why a multiple: oneDNN computes a CPU conv's output channels in blocks (16 here), so RLFN_ntire's 48->24
    costs what 48->32 does: rounding 24 up to 32 costs the producer nothing (a folded consumer does read
    more), and going down to 16 saves time.
    """
    if multiple < 1:
        raise LeansrError(f"the channel multiple must be >= 1, got {multiple}")
    for pattern, value in layer_ratios.items():
        if not 0.0 < value < 1.0:
            raise LeansrError(f"the ratio for {pattern} must be in (0, 1), got {value}")
        if not any(fnmatch.fnmatchcase(p["producer"], pattern) for p in pairs):
            names = ", ".join(p["producer"] for p in pairs)
            raise LeansrError(f"{pattern} matches none of the convertible convs ({names})")
    for pair in pairs:
        channels = model.get_submodule(pair["producer"]).out_channels
        own = next((v for k, v in layer_ratios.items() if fnmatch.fnmatchcase(pair["producer"], k)), ratio)
        intrinsic = math.ceil(intrinsic_channels(channels, own) / multiple) * multiple
        if intrinsic >= channels:
            raise LeansrError(f"{pair['producer']}: ratio {own} with channel multiple {multiple} keeps all "
                              f"{channels} channels intrinsic (no ghosts); lower its ratio or the multiple")
        if intrinsic != intrinsic_channels(channels, ratio):
            pair["ratio"] = intrinsic / channels
        if pair.get("tie_act") and channels - intrinsic > intrinsic:  # copies shift differently: never folds
            del pair["tie_act"]
            pair["fold"] = False


def _in_forward_order(model: nn.Module, pairs: list[Pair], x: Tensor) -> list[Pair]:
    """Pairs sorted by when their producer runs (module order is not execution order, e.g. FMEN's ERBs and
    HFABs interleave); each least-squares fit must see every earlier layer already converted."""
    order: dict[str, int] = {}

    def seen(path: str):  # noqa: ANN202
        def hook(module: nn.Module, inputs: tuple, output: Tensor) -> None:
            order.setdefault(path, len(order))

        return hook

    handles = [model.get_submodule(p["producer"]).register_forward_hook(seen(p["producer"])) for p in pairs]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    return sorted(pairs, key=lambda p: order[p["producer"]])


# -- weights -------------------------------------------------------------------------------------------------
def _copy_unchanged(model: nn.Module, ghost: nn.Module) -> None:
    """Every tensor whose key exists in both models (all but the producers')."""
    source = model.state_dict()
    target = ghost.state_dict()
    shared = {k: v for k, v in source.items() if k in target and target[k].shape == v.shape}
    ghost.load_state_dict(shared, strict=False)


def _choose_filters(weight: Tensor, ghost: nn.Module, pair: Pair, generator: torch.Generator
                    ) -> tuple[list[int], list[int | None]]:
    """(intrinsic filter indices, old filter index at each new output position or None)."""
    module: GhostConv = ghost.get_submodule(pair["producer"])
    vectors = weight.flatten(1).double()
    labels, centroids = kmeans(vectors, module.intrinsic, generator)
    clusters = sorted(range(module.intrinsic), key=lambda c: -int((labels == c).sum()))
    intrinsic = []
    for c in clusters:
        members = (labels == c).nonzero().flatten()
        nearest = members[(vectors[members] - centroids[c]).norm(dim=1).argmin()]
        intrinsic.append(int(nearest))
    unused = [i for i in range(weight.shape[0]) if i not in set(intrinsic)]
    order: list[int | None] = list(intrinsic)
    for source in ghost_sources(module.intrinsic, module.ghosts):
        if not unused:
            order.append(None)
            continue
        distances = (vectors[unused] - vectors[intrinsic[source]]).norm(dim=1)
        order.append(unused.pop(int(distances.argmin())))
    return intrinsic, order


def kmeans(x: Tensor, k: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Lloyd's k-means with k-means++ seeding; every cluster non-empty (refilled with the worst-fit point)."""
    centroids = x[torch.randint(len(x), (1,), generator=generator)]
    while len(centroids) < k:
        d2 = torch.cdist(x, centroids).min(1).values.square()
        pick = torch.multinomial(d2 + 1e-12, 1, generator=generator)
        centroids = torch.cat([centroids, x[pick]])
    for _ in range(KMEANS_ITERS):
        distances = torch.cdist(x, centroids)
        labels = distances.argmin(1)
        for c in range(k):
            members = labels == c
            if not members.any():
                worst = int(distances.min(1).values.argmax())
                labels[worst] = c
                members = labels == c
            centroids[c] = x[members].mean(0)
    return torch.cdist(x, centroids).argmin(1), centroids


def _install(model: nn.Module, ghost: nn.Module, pairs: list[Pair], rows: dict[str, list[int]],
             orders: dict[str, list[int | None]]) -> dict[str, list[int]]:
    """Producers keep their intrinsic rows; the consumer's input columns (and per-channel activations, and a
    trunk's other readers and writers) follow the new channel order; a ghost slot with no filter behind it
    gets a zero column. Returns each changed conv's rows as indices into the original rows."""
    paths = {path for p in pairs for path in (p["producer"], p["consumer"], *p.get("rows", ()), *p.get("cols", ()))}
    weights = {path: model.get_submodule(path).weight.detach().clone() for path in paths}
    row_order = {path: list(range(weight.shape[0])) for path, weight in weights.items()}
    for pair in pairs:
        order = orders[pair["producer"]]
        row_order[pair["producer"]] = rows[pair["producer"]]
        for path in pair.get("rows", ()):
            row_order[path] = [int(i) for i in order]  # a trunk has no missing filter: all slots are filled
        readers = {pair["consumer"]: pair["offset"], **{path: 0 for path in pair.get("cols", ())}}
        for path, start in readers.items():
            weight = weights[path]
            block = weight[:, start : start + len(order)]
            weight[:, start : start + len(order)] = torch.stack(
                [block[:, i] if i is not None else torch.zeros_like(block[:, 0]) for i in order], 1)
        if pair["act"]:
            old = model.get_submodule(pair["act"]).weight.detach()
            intrinsic = rows[pair["producer"]]
            slopes = [old[i if i is not None else intrinsic[s % len(intrinsic)]] for s, i in enumerate(order)]
            if pair.get("tie_act"):  # one slope per source, its ghosts' included
                slopes = slopes[: len(intrinsic)]
            with torch.no_grad():
                ghost.get_submodule(pair["act"]).weight.copy_(torch.stack(slopes))
    for path, weight in weights.items():
        conv = _consumer_conv(ghost, path)
        bias = model.get_submodule(path).bias
        keep = row_order[path]
        with torch.no_grad():
            conv.weight.copy_(weight[keep])
            if bias is not None:
                conv.bias.copy_(bias.detach()[keep])
    return row_order


def _consumer_conv(ghost: nn.Module, path: str) -> nn.Conv2d:
    module = ghost.get_submodule(path)
    return module.primary if isinstance(module, GhostConv) else module


# -- data ----------------------------------------------------------------------------------------------------
class _Stop(Exception):
    pass


@torch.no_grad()
def _module_outputs(model: nn.Module, paths: list[str], x: Tensor) -> dict[str, Tensor]:
    outputs: dict[str, Tensor] = {}
    handles = [model.get_submodule(p).register_forward_hook(_keep(outputs, p)) for p in set(paths)]
    try:
        model(x)
    finally:
        for h in handles:
            h.remove()
    return outputs


def _keep(store: dict[str, Tensor], path: str):  # noqa: ANN202
    def hook(module: nn.Module, inputs: tuple, output: Tensor) -> None:
        store[path] = output.detach().clone()

    return hook


@torch.no_grad()
def _consumer_input(ghost: nn.Module, path: str, x: Tensor) -> Tensor:
    """The input the consumer conv sees in the (partly converted) ghost model; the forward stops there."""
    found: list[Tensor] = []

    def hook(module: nn.Module, inputs: tuple) -> None:
        found.append(inputs[0].detach().clone())
        raise _Stop

    handle = _consumer_conv(ghost, path).register_forward_pre_hook(hook)
    try:
        ghost(x)
    except _Stop:
        pass
    finally:
        handle.remove()
    return found[0]


# -- direction and refit ---------------------------------------------------------------------------------------
def _choose_direction(ghost: nn.Module, pair: Pair, order: list[int | None], targets: dict[str, Tensor],
                      rows: dict[str, list[int]], x: Tensor, generator: torch.Generator,
                      candidates: tuple[int, ...], *, search: bool) -> Any:
    module: GhostConv = ghost.get_submodule(pair["producer"])
    conv = _consumer_conv(ghost, pair["consumer"])
    per_slot = _response_match(targets[pair["producer"]], order, module.intrinsic)[:, list(candidates)]
    if module.per_channel:
        best: Any = [candidates[int(i)] for i in per_slot.argmin(1)]
        module.set_direction(best)
        return best
    chosen = _per_copy(per_slot, module.intrinsic, candidates)
    if search and conv.weight[0].numel() <= MAX_LS_SEARCH_INPUTS:
        for k in range(len(chosen)):  # greedy, one copy at a time, the others held
            errors = {}
            for direction in _free(candidates, chosen[:k] + chosen[k + 1 :]):
                module.set_direction(chosen[:k] + [direction] + chosen[k + 1 :])
                errors[direction] = _fit(ghost, pair, targets, rows, x, generator, max_rows=MAX_SEARCH_ROWS)[2]
            chosen[k] = min(errors, key=errors.get)
    best = chosen[0] if len(chosen) == 1 else chosen
    module.set_direction(best)
    return best


def _per_copy(per_slot: Tensor, intrinsic: int, candidates: tuple[int, ...]) -> list[int]:
    """One direction per copy of the intrinsic features, by summed response error, copies kept distinct."""
    chosen: list[int] = []
    for first in range(0, per_slot.shape[0], intrinsic):
        score = per_slot[first : first + intrinsic].sum(0)
        allowed = _free(candidates, chosen)
        chosen.append(min(allowed, key=lambda d: float(score[candidates.index(d)])))
    return chosen


def _free(candidates: tuple[int, ...], taken: list[int]) -> list[int]:
    """Candidates no other copy uses (a repeated shift would only duplicate channels), or all if none is left."""
    return [d for d in candidates if d not in taken] or list(candidates)


def _response_match(output: Tensor, order: list[int | None], intrinsic: int) -> Tensor:
    """(ghosts, 9): squared error of each shifted source against the filter its ghost slot replaces."""
    ghosts = len(order) - intrinsic
    errors = torch.zeros(ghosts, NUM_DIRECTIONS, dtype=torch.float64)
    for slot, source in enumerate(ghost_sources(intrinsic, ghosts)):
        replaced = order[intrinsic + slot]
        if replaced is None:
            continue
        reference = output[:, replaced].double()
        for direction in range(NUM_DIRECTIONS):
            errors[slot, direction] = (shift(output[:, order[source]].double(), direction) - reference).square().sum()
    return errors


def _fit(ghost: nn.Module, pair: Pair, targets: dict[str, Tensor], rows: dict[str, list[int]], x: Tensor,
         generator: torch.Generator, max_rows: int = MAX_LS_ROWS) -> tuple[Tensor, Tensor | None, float]:
    """Ridge least-squares consumer weights for the current ghost model, and their relative error."""
    conv = _consumer_conv(ghost, pair["consumer"])
    inputs = _consumer_input(ghost, pair["consumer"], x).double()
    target = targets[pair["consumer"]].double()[:, rows[pair["consumer"]]]  # the consumer's rows, reordered
    columns = F.unfold(inputs, conv.kernel_size, padding=conv.padding).transpose(1, 2).flatten(0, 1)
    values = target.flatten(2).transpose(1, 2).flatten(0, 1)
    if len(columns) > max_rows:
        pick = torch.randperm(len(columns), generator=generator)[:max_rows]
        columns, values = columns[pick], values[pick]
    has_bias = conv.bias is not None
    if has_bias:
        columns = torch.cat([columns, torch.ones_like(columns[:, :1])], 1)
    initial = conv.weight.detach().double().flatten(1)
    if has_bias:
        initial = torch.cat([initial, conv.bias.detach().double()[:, None]], 1)
    tie = _tied_taps(ghost, pair, conv, has_bias) if TIE_GHOST_TAPS else None
    if tie is not None:
        columns = columns @ tie
        initial = initial @ tie / tie.square().sum(0)  # the tied weights closest to the initial ones
    gram = columns.T @ columns
    ridge = RIDGE * gram.diagonal().mean().clamp_min(1e-12)
    solution = torch.linalg.solve(gram + ridge * torch.eye(len(gram), dtype=gram.dtype),
                                  columns.T @ values + ridge * initial.T)
    error = float((columns @ solution - values).square().sum() / values.square().sum().clamp_min(1e-30))
    if tie is not None:
        solution = tie @ solution
    weight = solution[: conv.weight[0].numel()].T.reshape(conv.weight.shape)
    bias = solution[-1] if has_bias else None
    return weight, bias, error


def _tied_taps(ghost: nn.Module, pair: Pair, conv: nn.Conv2d, has_bias: bool) -> Tensor | None:
    """(consumer weights, tied weights) map, or None where ghosts are not plain shifts of their sources.

    A consumer tap on a ghost channel reads its source one pixel away, i.e. at a tap position the source's
    own taps (or another copy's) also read, except where the zero fill cuts it off at the border: a free
    fit can tell those taps apart only by the border, a way to overfit. Tied, every position around a
    source gets one weight, split evenly among the channels that read it: the fit sees each source through
    one wider kernel, as the folded form does (RLFN_ntire, ratio 0.33: 30.52 -> 30.66 dB on held-out
    patches; docs/benchmarks.md).
    Only where the activation between the two commutes with the shift (`fold`): a per-channel PReLU or a
    residual added in between makes ghosts more than shifts."""
    module = ghost.get_submodule(pair["producer"])
    if not pair["fold"] or not isinstance(module, GhostConv):
        return None
    kh, kw = conv.kernel_size
    directions = per_ghost(module.directions(), module.intrinsic, module.ghosts)
    sources = ghost_sources(module.intrinsic, module.ghosts)
    keys: dict[tuple[int, int, int], int] = {}
    owner = []  # for each full weight: the key of the tied weight it shares
    for channel in range(conv.in_channels):
        local = channel - pair["offset"]
        ghost_slot = local - module.intrinsic
        for ky in range(kh):
            for kx in range(kw):
                if 0 <= ghost_slot < module.ghosts:
                    dy, dx = offset(directions[ghost_slot])
                    key = (pair["offset"] + sources[ghost_slot], ky + dy, kx + dx)
                else:
                    key = (channel, ky, kx)
                owner.append(keys.setdefault(key, len(keys)))
    owner += [len(keys)] if has_bias else []
    tie = torch.zeros(len(owner), max(owner) + 1, dtype=torch.float64)
    tie[torch.arange(len(owner)), torch.tensor(owner)] = 1.0
    return tie / tie.sum(0, keepdim=True)


def _refit_consumer(ghost: nn.Module, pair: Pair, targets: dict[str, Tensor], rows: dict[str, list[int]],
                    x: Tensor, generator: torch.Generator) -> None:
    weight, bias, _ = _fit(ghost, pair, targets, rows, x, generator)
    conv = _consumer_conv(ghost, pair["consumer"])
    with torch.no_grad():
        conv.weight.copy_(weight.to(conv.weight.dtype))
        if bias is not None:
            conv.bias.copy_(bias.to(conv.bias.dtype))


def calibration_error(original: nn.Module, converted: nn.Module, x: Tensor) -> float:
    """PSNR-like figure: 10 log10(1 / MSE) between the two models' outputs on `x` (0-1 scale)."""
    with torch.no_grad():
        mse = F.mse_loss(converted.eval()(x), original.eval()(x)).item()
    return 10 * math.log10(1.0 / max(mse, 1e-12))


def convert_calibrated(model: nn.Module, folders: list[str], **options: Any) -> tuple[nn.Module, Tensor]:
    """`convert` on calibration patches from `folders`, then again with the `MINED_PATCHES` patches added on
    which that first conversion deviates most from the original, out of `MINING_POOL` flipped and rotated
    ones. Returns the converted model and its calibration patches.

    Why: the fits extrapolate badly to content the calibration patches lack. On RLFN_ntire at ratio 0.33
    about 1 training patch in 100-300 (saturated areas) drove the first conversion's output to ~1e2-1e3 (0-1
    scale); the second one's worst case on contrast-clipped Set14 patches went from 4,802 to 24
    (`benchmarks/bench_ghost_convert.py`), each such patch in fine-tuning being a wasted, harmful step."""
    calibration = calibration_patches(folders, model.scale)
    first = convert(model, calibration, **options)
    pool = calibration_patches(folders, model.scale, count=MINING_POOL, seed=1, augment=True)
    calibration = torch.cat([calibration, hardest_patches(model, first, pool, MINED_PATCHES)])
    return convert(model, calibration, **options), calibration


@torch.no_grad()
def hardest_patches(original: nn.Module, converted: nn.Module, pool: Tensor, count: int) -> Tensor:
    """The `count` patches of `pool` on which `converted` deviates most (mean absolute) from `original`."""
    converted, original = converted.eval(), original.eval()
    deviation = torch.cat([(converted(x) - original(x)).abs().flatten(1).mean(1) for x in pool.split(64)])
    return pool[deviation.argsort(descending=True)[:count]]


def calibration_patches(folders: list[str], scale: int, *, count: int = CALIBRATION_PATCHES, size: int = 48,
                        seed: int = 0, augment: bool = False) -> Tensor:
    """`count` LR patches (bicubic from the HR images in `folders`, or their paired LR), spread over the images;
    `augment`: randomly flipped and rotated."""
    from leansr.train.data import PatchDataset, collect_samples

    samples = collect_samples(folders, scale)
    if not samples:
        raise LeansrError(f"no images found in {', '.join(folders)}")
    # Cached: the mining pool draws ~10 patches per image, each would decode it again.
    dataset = PatchDataset(samples, scale=scale, patch_size=size, flip=augment, rot90=augment, cache=True)
    step = max(1, len(samples) // count)
    return torch.stack([dataset[((i * step) % len(samples), seed + i)][0] for i in range(count)])
