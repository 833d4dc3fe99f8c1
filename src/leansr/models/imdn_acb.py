"""IMDN with asymmetric convolution blocks (FIMDN-style): each IMDB 3x3 stage is an ACB during training.

The trunk and block are IMDN's (`DistillationSR`, `IMDB`); only the c1..c4 factory changes. After
`reparameterize_model` every ACB is one 3x3 convolution, so the deployed network has exactly IMDN's
layout and cost.
"""

from __future__ import annotations

from functools import partial

from torch import nn

from leansr.layers.acb import ACB
from leansr.models.imdn import IMDB, DistillationSR


def _acb_block(channels: int, *, batch_norm: bool) -> nn.Module:
    return IMDB(channels, conv3x3=partial(ACB, batch_norm=batch_norm))


class IMDNACB(DistillationSR):
    def __init__(
        self,
        *,
        scale: int = 4,
        channels: int = 64,
        num_blocks: int = 6,
        batch_norm: bool = True,
        img_range: float = 1.0,
    ) -> None:
        super().__init__(
            scale=scale,
            img_range=img_range,
            channels=channels,
            num_blocks=num_blocks,
            make_block=partial(_acb_block, batch_norm=batch_norm),
        )
