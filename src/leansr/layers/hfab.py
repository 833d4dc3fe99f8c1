"""FMEN's high-frequency attention block (HFAB): training form with BatchNorm, and its deployed form.

Training form (NJU-Jet/FMEN `train_fmen.py`):

    a = sigmoid(BN3(excitate(padBN2(act(ERBs(act(squeeze(padBN1(x)))))))));  return a * x

where `squeeze` and `excitate` are unpadded 3x3 convolutions and padBN = BatchNorm followed by a 1-pixel
border (below). Deployed: BN1 folds into `squeeze`, BN2 and BN3 into `excitate`, the ERBs into 3x3 convs,
leaving the official deployed block: squeeze -> act -> ERBs -> act -> excitate -> sigmoid -> multiply.

Why the border value. Eval-mode BN is a per-channel affine y = a*x + b (a = gamma/sqrt(var+eps),
b = beta - mean*a). Folding it into the next 3x3 conv (W, c) gives W' = W*a (per input channel) and
c' = c + sum(W*b). The fused conv zero-pads x; through the BN a zero input becomes b, so the training form
must pad y with b = BN(0). Padding y with zeros instead would correspond to padding x with -b/a, which
no plain zero-padded convolution reproduces, and the fusion would be wrong along every image border.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from leansr.layers.fusion import (
    affine_as_conv1x1,
    batchnorm_affine,
    fold_bn,
    merge_sequential,
    pad_with_bias,
    to_conv,
)
from leansr.layers.reparam import Reparameterizable, reparameterize_model
from leansr.layers.rrrb import ERB, lrelu, unpadded_conv_params


class BorderPaddedBatchNorm(nn.BatchNorm2d):
    """BatchNorm2d whose output gains a 1-pixel border equal to what it maps a zero input to.

    The border uses the statistics this very forward normalises with: running statistics in eval mode
    (then the block fuses exactly), batch statistics in training mode. The official code pads with running
    statistics even while training; using the batch ones keeps the training-time function equal to
    "zero-padded input through the BN-folded convolution" in both modes. In eval mode the two agree.
    """

    def forward(self, x: Tensor) -> Tensor:
        return pad_with_bias(super().forward(x), self.zero_response(x))

    def zero_response(self, x: Tensor) -> Tensor:
        """Per-channel output of this BatchNorm for an input of 0, under the statistics used for `x`."""
        if self.training or self.running_mean is None or self.running_var is None:
            var, mean = torch.var_mean(x, dim=(0, 2, 3), unbiased=False)
        else:
            mean, var = self.running_mean, self.running_var
        scale = torch.rsqrt(var + self.eps)
        if self.weight is not None:
            scale = scale * self.weight
        shift = -mean * scale
        return shift + self.bias if self.bias is not None else shift


class DeployedHFAB(nn.Module):
    """Deployed HFAB, layout of the official `test_fmen.py`: squeeze, convs (fused ERBs), excitate."""

    def __init__(self, squeeze: nn.Conv2d, convs: nn.Module, excitate: nn.Conv2d) -> None:
        super().__init__()
        self.squeeze = squeeze
        self.convs = convs
        self.excitate = excitate

    def forward(self, x: Tensor) -> Tensor:
        out = lrelu(self.convs(lrelu(self.squeeze(x))))
        return torch.sigmoid(self.excitate(out)) * x


class HFAB(Reparameterizable):
    """High-frequency attention block, training form (BatchNorm in the attention branch)."""

    def __init__(self, channels: int, mid_channels: int, n_erbs: int, ratio: int = 2) -> None:
        super().__init__()
        self.bn1 = BorderPaddedBatchNorm(channels)
        self.squeeze = nn.Conv2d(channels, mid_channels, 3, padding=0)  # input padded by bn1
        self.convs = nn.Sequential(*(ERB(mid_channels, ratio) for _ in range(n_erbs)))
        self.bn2 = BorderPaddedBatchNorm(mid_channels)
        self.excitate = nn.Conv2d(mid_channels, channels, 3, padding=0)  # input padded by bn2
        self.bn3 = nn.BatchNorm2d(channels)

    def forward(self, x: Tensor) -> Tensor:
        out = lrelu(self.convs(lrelu(self.squeeze(self.bn1(x)))))
        return torch.sigmoid(self.bn3(self.excitate(self.bn2(out)))) * x

    def fuse(self) -> DeployedHFAB:
        bn1 = affine_as_conv1x1(*batchnorm_affine(self.bn1))
        bn2 = affine_as_conv1x1(*batchnorm_affine(self.bn2))
        squeeze = merge_sequential(bn1, unpadded_conv_params(self.squeeze))
        excitate = fold_bn(merge_sequential(bn2, unpadded_conv_params(self.excitate)), self.bn3)
        return DeployedHFAB(to_conv(squeeze), reparameterize_model(self.convs), to_conv(excitate))
