"""Fusion maths for structural re-parameterization: pure functions on (weight, bias) pairs.

Every function takes and returns `ConvParams = (weight, bias)` with `weight` shaped
(out, in, kh, kw) for a dense convolution (`conv_params` densifies grouped kernels unless told not to)
and `bias` shaped (out,).
Results are computed in the dtype/device of the inputs and never alias them. Kernel sizes are odd and
convolutions use "same" padding (k // 2), stride 1, dilation 1.

Border exactness. A branch that runs a 1x1 (or any per-channel affine, e.g. a BatchNorm) BEFORE a padded
k x k convolution fuses exactly only if the training form pads the intermediate feature map with the value
the first stage produces for a zero input (its bias / shift) instead of zeros: the fused convolution sees
zero-padded input, which the first stage would have mapped to that bias. `pad_with_bias` is that padding;
`merge_sequential(first, second)` is the matching weight merge. A k x k convolution FOLLOWED by a 1x1 or
by a per-channel affine (conv -> BN) needs nothing special.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

ConvParams = tuple[Tensor, Tensor]

SOBEL_X = ((1.0, 0.0, -1.0), (2.0, 0.0, -2.0), (1.0, 0.0, -1.0))
SOBEL_Y = ((1.0, 2.0, 1.0), (0.0, 0.0, 0.0), (-1.0, -2.0, -1.0))
LAPLACIAN = ((0.0, 1.0, 0.0), (1.0, -4.0, 1.0), (0.0, 1.0, 0.0))


def conv_params(conv: nn.Conv2d, *, dense: bool = True) -> ConvParams:
    """(weight, bias) of a stride-1 conv; a missing bias becomes zeros.

    `dense=False` keeps a grouped kernel as it is (fine for per-output-channel folds such as `fold_bn`).
    """
    if conv.stride != (1, 1) or conv.dilation != (1, 1):
        raise ValueError("only stride-1, dilation-1 convolutions can be fused")
    if conv.padding != tuple(k // 2 for k in conv.kernel_size):
        raise ValueError(f"conv padding {conv.padding} is not 'same' for kernel {conv.kernel_size}")
    weight = grouped_to_dense(conv.weight.detach(), conv.groups if dense else 1)
    bias = conv.bias.detach().clone() if conv.bias is not None else weight.new_zeros(weight.shape[0])
    return weight, bias


def grouped_to_dense(weight: Tensor, groups: int) -> Tensor:
    """Expand a grouped kernel (out, in/groups, kh, kw) into the block-diagonal dense kernel."""
    if groups == 1:
        return weight.clone()
    out_ch, in_per_group, kh, kw = weight.shape
    out_per_group = out_ch // groups
    dense = weight.new_zeros(out_ch, in_per_group * groups, kh, kw)
    for g in range(groups):
        rows = slice(g * out_per_group, (g + 1) * out_per_group)
        cols = slice(g * in_per_group, (g + 1) * in_per_group)
        dense[rows, cols] = weight[rows]
    return dense


def batchnorm_affine(bn: nn.BatchNorm2d) -> tuple[Tensor, Tensor]:
    """Per-channel (scale, shift) that eval-mode `bn` applies: y = scale * x + shift."""
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError("a BatchNorm without running statistics cannot be folded")
    std = torch.sqrt(bn.running_var.detach() + bn.eps)
    gamma = bn.weight.detach() if bn.weight is not None else torch.ones_like(std)
    beta = bn.bias.detach() if bn.bias is not None else torch.zeros_like(std)
    scale = gamma / std
    return scale, beta - bn.running_mean.detach() * scale


def fold_affine(params: ConvParams, scale: Tensor, shift: Tensor) -> ConvParams:
    """Conv followed by a per-output-channel affine y = scale * conv(x) + shift."""
    weight, bias = params
    return weight * scale.reshape(-1, 1, 1, 1), bias * scale + shift


def fold_bn(params: ConvParams, bn: nn.BatchNorm2d) -> ConvParams:
    """Conv -> eval-mode BatchNorm as one conv."""
    return fold_affine(params, *batchnorm_affine(bn))


def affine_as_conv1x1(scale: Tensor, shift: Tensor) -> ConvParams:
    """A per-channel affine as a diagonal 1x1 conv (for affine -> conv chains via `merge_sequential`)."""
    return torch.diag(scale).reshape(scale.numel(), scale.numel(), 1, 1), shift.clone()


def pad_kernel(weight: Tensor, size: int | tuple[int, int]) -> Tensor:
    """Centre a (.., kh, kw) kernel in a larger odd size with zeros: 1x1, 1x3, 3x1 -> 3x3 etc.

    Exact because a centred kernel with 'same' padding sees the same inputs as the small one did.
    """
    th, tw = (size, size) if isinstance(size, int) else size
    kh, kw = weight.shape[-2:]
    if (th - kh) % 2 or (tw - kw) % 2 or th < kh or tw < kw:
        raise ValueError(f"cannot centre a {kh}x{kw} kernel in {th}x{tw}")
    ph, pw = (th - kh) // 2, (tw - kw) // 2
    return F.pad(weight, (pw, pw, ph, ph))


def identity_params(channels: int, kernel_size: int = 3, *, like: Tensor) -> ConvParams:
    """The identity map as a dense k x k conv (a centred 1 on the diagonal), zero bias."""
    weight = like.new_zeros(channels, channels, kernel_size, kernel_size)
    centre = kernel_size // 2
    weight[torch.arange(channels), torch.arange(channels), centre, centre] = 1.0
    return weight, like.new_zeros(channels)


def add_branches(*branches: ConvParams) -> ConvParams:
    """Parallel branches summed: kernels centred in the largest size, then added."""
    if not branches:
        raise ValueError("need at least one branch")
    height = max(w.shape[-2] for w, _ in branches)
    width = max(w.shape[-1] for w, _ in branches)
    weight = sum(pad_kernel(w, (height, width)) for w, _ in branches)
    bias = sum(b for _, b in branches)
    return weight, bias


def merge_sequential(first: ConvParams, second: ConvParams) -> ConvParams:
    """`second(first(x))` as one conv; one of the two must be 1x1.

    1x1 -> k x k is exact at borders only when `first`'s output is padded with its bias (`pad_with_bias`);
    k x k -> 1x1 is always exact.
    """
    (w1, b1), (w2, b2) = first, second
    if w1.shape[-2:] == (1, 1):
        weight = torch.einsum("omhw,mi->oihw", w2, w1[:, :, 0, 0])
        bias = b2 + torch.einsum("omhw,m->o", w2, b1)
    elif w2.shape[-2:] == (1, 1):
        weight = torch.einsum("om,mihw->oihw", w2[:, :, 0, 0], w1)
        bias = b2 + w2[:, :, 0, 0] @ b1
    else:
        raise ValueError("merge_sequential needs a 1x1 conv on one side")
    return weight, bias


def fixed_kernel_params(kernel: Tensor, scale: Tensor, bias: Tensor) -> ConvParams:
    """A depthwise conv with one fixed kernel (Sobel, Laplacian) scaled per channel, as a dense conv."""
    channels = scale.numel()
    depthwise = scale.reshape(channels, 1, 1, 1) * kernel.to(scale).expand(channels, 1, *kernel.shape)
    return grouped_to_dense(depthwise, channels), bias.clone()


def pad_with_bias(x: Tensor, value: Tensor, padding: int = 1) -> Tensor:
    """Pad NCHW `x` on all sides with a per-channel constant (training side of the 1x1 -> k x k trick)."""
    n, c, h, w = x.shape
    out = value.reshape(1, c, 1, 1).expand(n, c, h + 2 * padding, w + 2 * padding).clone()
    out[:, :, padding : padding + h, padding : padding + w] = x
    return out


def to_conv(params: ConvParams, *, groups: int = 1) -> nn.Conv2d:
    """A new plain nn.Conv2d (same padding) holding `params`; `groups` for a grouped kernel."""
    weight, bias = params
    out_ch, in_per_group, kh, kw = weight.shape
    conv = nn.Conv2d(
        in_per_group * groups, out_ch, (kh, kw), padding=(kh // 2, kw // 2), groups=groups,
        device=weight.device, dtype=weight.dtype,
    )
    with torch.no_grad():
        conv.weight.copy_(weight)
        conv.bias.copy_(bias)
    return conv
