"""Sub-pixel (pixel-shuffle) upsampler: one 3x3 convolution to out*s*s channels, then PixelShuffle(s)."""

from __future__ import annotations

from torch import nn


class PixelShuffleUpsampler(nn.Sequential):
    """Keys `0.weight`/`0.bias`, as in the IMDN/RFDN `pixelshuffle_block`."""

    def __init__(self, in_channels: int, out_channels: int, scale: int, kernel_size: int = 3) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels * scale * scale, kernel_size, padding=kernel_size // 2),
            nn.PixelShuffle(scale),
        )


def pixel_shuffle_scale(conv_out_channels: int, image_channels: int = 3) -> int | None:
    """The s of a conv feeding PixelShuffle(s) with image_channels*s*s outputs; None if not of that form."""
    ratio, rest = divmod(conv_out_channels, image_channels)
    scale = round(ratio**0.5)
    return scale if rest == 0 and scale >= 1 and scale * scale == ratio else None
