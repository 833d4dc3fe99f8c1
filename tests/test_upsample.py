"""Pixel-shuffle helpers."""

from __future__ import annotations

import pytest
import torch

from leansr.layers.upsample import repeat_channels


@pytest.mark.parametrize("channels_last", [False, True])
def test_repeat_channels_equals_repeat_interleave_in_the_inputs_layout(channels_last: bool) -> None:
    x = torch.rand(2, 3, 5, 4)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    out = repeat_channels(x, 16)
    assert torch.equal(out, x.repeat_interleave(16, dim=1))
    assert out.is_contiguous(memory_format=torch.channels_last) == channels_last
