"""GhostSR (Nie et al., arXiv 2101.08525): half the output channels of a conv are shifted copies of the rest.

A ghost conv runs a primary conv to `ceil(ratio * C)` *intrinsic* channels and appends `C - intrinsic`
*ghost* channels, ghost i = intrinsic (i mod intrinsic) shifted by one of the 9 offsets of a 3x3 window
(zero fill); below ratio 0.5 the intrinsic features are copied more than once, each copy with its own
shift. Direction k = 3*r + c (the one-hot position in the official 3x3 kernel) moves content by
(dy, dx) = (r - 1, c - 1): `ghost[i, j] = y[i + dy, j + dx]`; k = 4 is a plain copy.

Training form (`GhostConv`): the official MindSpore code learns one direction per layer as a 3x3 weight,
adds Gumbel noise, takes the one-hot at argmax |w + g| and passes gradients straight through
(`selection="hard"`); the paper's Gumbel-softmax with a temperature (`selection="soft"`, `tau` annealed
by `set_temperature`) is the option, and `selection="fixed"` keeps the initial direction (no learning;
the shift is then a slice in training too). Per-channel directions (one weight per ghost channel) are
optional.

Deployed forms (re-parameterizations, `fuse()`): `DeployedGhostConv` shifts by slicing into the output
buffer, never with a depthwise conv (3-6x slower on CPU). Where a ghost tensor feeds a 3x3 conv through an
activation that maps 0 to 0 and treats a ghost channel as its source (ReLU, LeakyReLU, a PReLU whose
ghosts share their sources' slopes: `SharedSlopePReLU`), the shift is folded into that conv
(`GhostFedConv` -> `FoldedShiftConv`): the producer then emits only its intrinsic channels.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from leansr.layers.reparam import Reparameterizable

NUM_DIRECTIONS = 9
CENTER = 4
SELECTIONS = ("hard", "soft", "fixed")


def offset(direction: int) -> tuple[int, int]:
    """(dy, dx) of a direction index: the ghost at (i, j) is the intrinsic at (i + dy, j + dx)."""
    if not 0 <= direction < NUM_DIRECTIONS:
        raise ValueError(f"direction must be in 0..8, got {direction}")
    return direction // 3 - 1, direction % 3 - 1


def intrinsic_channels(channels: int, ratio: float) -> int:
    if not 0.0 < ratio < 1.0:
        raise ValueError(f"ghost ratio must be in (0, 1), got {ratio}")
    return min(channels, max(1, math.ceil(ratio * channels - 1e-9)))


def _span(size: int, d: int) -> tuple[slice, slice]:
    """(destination, source) slices of a zero-fill shift by d along an axis of `size`."""
    return slice(max(0, -d), size - max(0, d)), slice(max(0, d), size - max(0, -d))


def shift_into(out: Tensor, x: Tensor, direction: int) -> Tensor:
    """Write `x` shifted by `direction` into `out` (same shape): slices only, zeros where nothing lands."""
    dy, dx = offset(direction)
    height, width = x.shape[-2:]
    (rows_dst, rows_src), (cols_dst, cols_src) = _span(height, dy), _span(width, dx)
    out[..., rows_dst, cols_dst] = x[..., rows_src, cols_src]
    if dy:
        out[..., slice(height - dy, None) if dy > 0 else slice(None, -dy), :] = 0
    if dx:
        out[..., slice(width - dx, None) if dx > 0 else slice(None, -dx)] = 0
    return out


def shift(x: Tensor, direction: int) -> Tensor:
    return shift_into(torch.empty_like(x), x, direction)


def shifted_by_padding(x: Tensor, direction: int) -> Tensor:
    """`shift` without writes into a buffer (pad, then crop): what graph exporters such as ONNX follow."""
    dy, dx = offset(direction)
    height, width = x.shape[-2:]
    return F.pad(x, (1, 1, 1, 1))[..., 1 + dy:1 + dy + height, 1 + dx:1 + dx + width]


def ghost_sources(intrinsic: int, ghosts: int) -> list[int]:
    """Which intrinsic channel each ghost copies (cycling when there are more ghosts than intrinsics)."""
    return [i % intrinsic for i in range(ghosts)]


def direction_rows(intrinsic: int, ghosts: int, per_channel: bool) -> int:
    """How many directions a ghost conv learns: one per ghost channel, or one per *copy* of the intrinsic
    features (the official per-layer direction when ratio >= 0.5; below, each further copy gets its own,
    since a second copy with the same shift would only duplicate channels)."""
    return ghosts if per_channel else math.ceil(ghosts / intrinsic)


def per_ghost(directions: list[int], intrinsic: int, ghosts: int) -> list[int]:
    """Expand per-layer/per-copy directions to one per ghost channel."""
    if len(directions) == ghosts:
        return list(directions)
    if len(directions) != math.ceil(ghosts / intrinsic):
        raise ValueError(f"{len(directions)} directions fit neither {ghosts} ghosts nor their copies")
    return [directions[i // intrinsic] for i in range(ghosts)]


def segments(directions: list[int], intrinsic: int, ghosts: int) -> list[tuple[int, int, int]]:
    """(start, stop, direction) runs over the ghost channels, split where a copy of the intrinsic features
    ends, so each run's sources are the contiguous intrinsic channels start % intrinsic onwards."""
    out = []
    for start, stop, direction in _runs(per_ghost(directions, intrinsic, ghosts)):
        while start < stop:
            end = min(stop, (start // intrinsic + 1) * intrinsic)
            out.append((start, end, direction))
            start = end
    return out


def _source(y: Tensor, intrinsic: int, start: int, stop: int) -> Tensor:
    first = start % intrinsic
    return y[:, first : first + stop - start]


class GhostConv(Reparameterizable):
    """Training form: primary conv to the intrinsic channels + learned-direction shifted ghosts.

    `direction` (int, or one per ghost channel) sets the initial direction with logit `strength`;
    `fold_output` / `fold_input` mark fold partners (see `GhostFedConv`), used only by `fuse()`.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        ratio: float = 0.5,
        kernel_size: int = 3,
        bias: bool = True,
        per_channel: bool = False,
        selection: str = "hard",
        direction: int | list[int] | None = None,
        strength: float = 4.0,
    ) -> None:
        super().__init__()
        if selection not in SELECTIONS:
            raise ValueError(f"selection must be one of {SELECTIONS}, got {selection!r}")
        self.out_channels = out_channels
        self.intrinsic = intrinsic_channels(out_channels, ratio)
        self.ghosts = out_channels - self.intrinsic
        self.selection = selection
        self.tau = 1.0  # soft selection temperature; see set_temperature
        self.learn_direction = selection != "fixed"  # False: shift by slicing while training
        self.fold_output = False
        self.fold_input: tuple[int, int] | None = None  # (intrinsic channels of the input, direction)
        self.per_channel = per_channel
        self.primary = nn.Conv2d(in_channels, self.intrinsic, kernel_size, padding=kernel_size // 2, bias=bias)
        rows = direction_rows(self.intrinsic, self.ghosts, per_channel)
        logits = torch.randn(rows, 3, 3) * 0.01
        if self.learn_direction:
            self.shift_logits = nn.Parameter(logits)
        else:  # same state-dict key; a buffer, so neither optimizers nor weight randomizers touch it
            self.register_buffer("shift_logits", logits)
        if direction is not None:
            self.set_direction(direction, strength=strength)

    def set_direction(self, direction: int | list[int], *, strength: float = 4.0) -> None:
        """Make `direction` the argmax (one for all rows, or a list: one per row, see `direction_rows`)."""
        rows = self.shift_logits.shape[0]
        chosen = [direction] * rows if isinstance(direction, int) else list(direction)
        if len(chosen) != rows:
            raise ValueError(f"expected {rows} directions, got {len(chosen)}")
        logits = torch.zeros(rows, NUM_DIRECTIONS)
        logits[torch.arange(rows), torch.tensor(chosen)] = strength
        with torch.no_grad():
            self.shift_logits.copy_(logits.view(rows, 3, 3))

    def directions(self) -> list[int]:
        """The evaluation-time directions: argmax |w| per row (official `argmax |w|`)."""
        if self.shift_logits.is_meta:  # a shape-only skeleton: the checkpoint's buffer sets them
            return [CENTER] * self.shift_logits.shape[0]
        return self.shift_logits.detach().abs().flatten(1).argmax(1).tolist()

    def _selection(self) -> Tensor:
        """(rows, 9) selection weights; one-hot values in eval mode and for hard training selection."""
        w = self.shift_logits.flatten(1)
        if not self.training:
            return F.one_hot(w.detach().abs().argmax(1), NUM_DIRECTIONS).to(w.dtype)
        uniform = torch.rand_like(w).clamp_(1e-20, 1.0 - 1e-7)
        gumbel = -torch.log((-torch.log(uniform)).clamp_min(1e-20))
        if self.selection == "soft":
            return torch.softmax((w + gumbel) / self.tau, dim=1)
        hard = F.one_hot((w + gumbel).abs().argmax(1), NUM_DIRECTIONS).to(w.dtype)
        return hard - w.detach() + w  # straight-through, as the official code

    def forward(self, x: Tensor) -> Tensor:
        y = self.primary(x)
        if self.training and not self.learn_direction:
            return write_ghosts(y, self.out_channels, self.directions())
        # The official form: a depthwise conv with the selection kernel (gradients reach the weights).
        row_of_ghost = per_ghost(list(range(self.shift_logits.shape[0])), self.intrinsic, self.ghosts)
        kernel = self._selection()[row_of_ghost].view(self.ghosts, 1, 3, 3)
        sources = y[:, ghost_sources(self.intrinsic, self.ghosts)] if self.ghosts > self.intrinsic \
            else y[:, : self.ghosts]
        ghosts = F.conv2d(sources, kernel.to(y.dtype), padding=1, groups=self.ghosts)
        return torch.cat([y, ghosts], dim=1)

    def fuse(self) -> nn.Module:
        primary = _copy_conv(self.primary)
        if self.fold_input is not None:
            in_intrinsic, in_direction = self.fold_input
            primary = FoldedShiftConv.from_conv(primary, in_intrinsic, in_direction)
        if self.fold_output:
            if len(set(self.directions())) > 1:
                raise ValueError("a ghost conv whose copies shift differently cannot fold into its consumer")
            return primary
        return DeployedGhostConv(primary, self.out_channels, self.directions())


def _channels_last(y: Tensor) -> bool:
    return y.dim() == 4 and not y.is_contiguous() and y.is_contiguous(memory_format=torch.channels_last)


def write_ghosts(y: Tensor, out_channels: int, directions: list[int]) -> Tensor:
    """`cat([y, ghosts])` written by slicing into one preallocated buffer (no gather, no depthwise conv)."""
    intrinsic = y.shape[1]
    ghosts = out_channels - intrinsic
    # In y's memory format: an NCHW buffer behind a channels-last conv costs two layout conversions a layer.
    out = torch.empty((y.shape[0], out_channels, *y.shape[2:]), dtype=y.dtype, device=y.device,
                      memory_format=torch.channels_last if _channels_last(y) else torch.contiguous_format)
    out[:, :intrinsic] = y
    for start, stop, direction in segments(directions, intrinsic, ghosts):
        shift_into(out[:, intrinsic + start : intrinsic + stop], _source(y, intrinsic, start, stop), direction)
    return out


def _runs(directions: list[int]) -> list[tuple[int, int, int]]:
    """Maximal runs of equal directions as (start, stop, direction)."""
    runs, start = [], 0
    for i in range(1, len(directions) + 1):
        if i == len(directions) or directions[i] != directions[start]:
            runs.append((start, i, directions[start]))
            start = i
    return runs


def _copy_conv(conv: nn.Conv2d) -> nn.Conv2d:
    with torch.device(conv.weight.device):
        new = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, padding=conv.padding,
                        bias=conv.bias is not None, dtype=conv.weight.dtype)
    new.weight = nn.Parameter(conv.weight.detach().clone())
    if conv.bias is not None:
        new.bias = nn.Parameter(conv.bias.detach().clone())
    return new


class DeployedGhostConv(nn.Module):
    """Frozen directions; intrinsic and ghosts written by slicing into one output buffer.

    The directions are a buffer, so a deployed checkpoint carries them (and loading refreshes them).
    """

    def __init__(self, primary: nn.Module, out_channels: int, directions: list[int]) -> None:
        super().__init__()
        self.primary = primary
        self.out_channels = out_channels
        self.register_buffer("direction", torch.tensor(directions, dtype=torch.int64))
        self._directions = list(directions)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:  # noqa: ANN001
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        self._directions = self.direction.tolist()

    def forward(self, x: Tensor) -> Tensor:
        y = self.primary(x)
        if torch.onnx.is_in_onnx_export():  # the exporter mistraces writes into a preallocated buffer
            intrinsic = y.shape[1]
            parts = [shifted_by_padding(_source(y, intrinsic, a, b), d)
                     for a, b, d in segments(self._directions, intrinsic, self.out_channels - intrinsic)]
            return torch.cat([y, *parts], dim=1)
        return write_ghosts(y, self.out_channels, self._directions)


class SharedSlopePReLU(Reparameterizable):
    """PReLU after a ghost conv in which each ghost channel uses its source's slope.

    Then PReLU(cat[y, shift(y)]) = cat[PReLU(y), shift(PReLU(y))] (a zero-fill shift commutes with it), so
    the ghosts stay plain shifts and fold into the next conv like after a ReLU: with one slope per channel
    they would not. `fuse()`: a PReLU over the intrinsic channels when the shift is folded (`folded`, set
    with the fold partners), else over all channels with the slopes repeated.
    """

    def __init__(self, intrinsic: int, ghosts: int, init: float = 0.25) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.full((intrinsic,), init))
        self.register_buffer("index", torch.tensor(list(range(intrinsic)) + ghost_sources(intrinsic, ghosts)),
                             persistent=False)
        self.folded = False

    def forward(self, x: Tensor) -> Tensor:
        return F.prelu(x, self.weight[self.index])

    def fuse(self) -> nn.Module:
        slopes = self.weight.detach() if self.folded else self.weight.detach()[self.index]
        with torch.device(slopes.device):
            act = nn.PReLU(len(slopes), dtype=slopes.dtype)
        act.weight = nn.Parameter(slopes.clone())
        return act


class GhostFedConv(nn.Conv2d, Reparameterizable):
    """A 3x3 conv fed by a ghost tensor (through an activation with f(0) = 0 that treats each ghost channel as
    its source: ReLU, LeakyReLU, `SharedSlopePReLU`).

    It computes exactly what `nn.Conv2d` computes (same keys); `fuse()` folds the producer's shift into
    the kernel so it needs only the intrinsic channels.
    """

    def __init__(self, in_channels: int, out_channels: int, *, intrinsic: int, direction: int,
                 bias: bool = True) -> None:
        nn.Conv2d.__init__(self, in_channels, out_channels, 3, padding=1, bias=bias)
        self.intrinsic = intrinsic
        self.fold_direction = direction

    def fuse(self) -> nn.Module:
        return FoldedShiftConv.from_conv(self, self.intrinsic, self.fold_direction)


class FoldedShiftConv(nn.Module):
    """`conv3x3(cat[a, shift_d(a)])` as one conv on `a` with a (3+|dy|)x(3+|dx|) kernel, exact at borders.

    Folding alone is exact except on one output row/column: the shift drops one input row/column of `a`,
    which the wider kernel would still read there. Those few terms are subtracted by two thin convs.
    """

    def __init__(self, weight: Tensor, bias: Tensor | None, ghost_weight: Tensor, direction: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight)
        self.bias = nn.Parameter(bias) if bias is not None else None
        self.fold_direction = direction
        dy, dx = offset(direction)
        self.pads = (1 + max(-dx, 0), 1 + max(dx, 0), 1 + max(-dy, 0), 1 + max(dy, 0))
        # Only the ghost taps that read the dropped row / column are kept, for the border correction.
        self.edge_row = nn.Parameter(ghost_weight[..., 1 - dy : 2 - dy, :].clone()) if dy else None
        self.edge_col = nn.Parameter(ghost_weight[..., :, 1 - dx : 2 - dx].clone()) if dx else None

    @classmethod
    def from_conv(cls, conv: nn.Conv2d, intrinsic: int, direction: int) -> FoldedShiftConv:
        if conv.kernel_size != (3, 3) or conv.padding != (1, 1) or conv.stride != (1, 1) or conv.groups != 1:
            raise ValueError("only a 3x3, padding-1, stride-1 dense conv can absorb a ghost shift")
        weight = conv.weight.detach()
        ghosts = weight.shape[1] - intrinsic
        ghost_weight = weight.new_zeros(weight.shape[0], intrinsic, 3, 3)
        for ghost, source in enumerate(ghost_sources(intrinsic, ghosts)):
            ghost_weight[:, source] += weight[:, intrinsic + ghost]
        dy, dx = offset(direction)
        top, left = 1 + max(-dy, 0), 1 + max(-dx, 0)
        combined = weight.new_zeros(weight.shape[0], intrinsic, 3 + abs(dy), 3 + abs(dx))
        # Kernel index t reads a[p + t - top]: intrinsic tap a (offset a-1) sits at a-1+top,
        # ghost tap a reads a[p + a-1 + d] and sits at a-1+d+top.
        combined[..., top - 1 : top + 2, left - 1 : left + 2] += weight[:, :intrinsic]
        combined[..., top - 1 + dy : top + 2 + dy, left - 1 + dx : left + 2 + dx] += ghost_weight
        bias = conv.bias.detach().clone() if conv.bias is not None else None
        return cls(combined.clone(), bias, ghost_weight, direction)

    def forward(self, a: Tensor) -> Tensor:
        dy, dx = offset(self.fold_direction)
        if dy == 0 and dx == 0:
            return F.conv2d(a, self.weight, self.bias, padding=1)
        out = F.conv2d(F.pad(a, self.pads), self.weight, self.bias)
        return self._subtract_dropped(out, a, dy, dx)

    def _subtract_dropped(self, out: Tensor, a: Tensor, dy: int, dx: int) -> Tensor:
        """Remove what the folded kernel read from the row/column of `a` that the shift drops."""
        height, width = a.shape[-2:]
        row0 = 0 if dy > 0 else height - 1
        col0 = 0 if dx > 0 else width - 1
        if dy:
            # out[row0, j] read g[1-dy, c] * a[row0, j + c-1 + dx] for every column in frame.
            line = F.conv2d(F.pad(a[..., row0 : row0 + 1, :], (2, 2)), self.edge_row)
            out[..., row0 : row0 + 1, :] -= line[..., 1 + dx : 1 + dx + width]
        if dx:
            column = a[..., :, col0 : col0 + 1]
            if dy:  # the corner is already in the row term
                column = column.clone()
                column[..., row0, :] = 0
            line = F.conv2d(F.pad(column, (0, 0, 2, 2)), self.edge_col)
            out[..., :, col0 : col0 + 1] -= line[..., 1 + dy : 1 + dy + height, :]
        return out


def set_temperature(model: nn.Module, tau: float) -> None:
    """Set the Gumbel-softmax temperature of every ghost conv (soft selection)."""
    for module in model.modules():
        if isinstance(module, GhostConv):
            module.tau = float(tau)


def temperature_at(progress: float, *, start: float = 5.0, end: float = 0.1) -> float:
    """Exponential annealing from `start` to `end` as training progress goes 0 -> 1."""
    progress = min(max(progress, 0.0), 1.0)
    return start * (end / start) ** progress
