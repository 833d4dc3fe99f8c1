"""Which widths of an ARM supernet one training step runs.

`cost2` is the official rule (chenbong/ARM-Net): one width per step, drawn with probability C_j^2 / sum C_k^2
(C = the width's cost; bicubic is never trained), so the full width gets most steps (CARN: 0.07/0.29/0.64).
`sandwich` (universally slimmable networks): the widest and the narrowest width every step plus one between,
the narrower ones distilled in place from the widest one's output when `distill` is on.
"""

from __future__ import annotations

import random

from leansr.arm.costs import route_costs
from leansr.models.arm import SlimmableSR


def step_widths(model: SlimmableSR, sampling: str, seed: int, iteration: int) -> list[int]:
    """Widths for this step, widest first when several; a function of (seed, iteration) for exact resume."""
    rng = random.Random(seed * 1_000_003 + iteration)
    widths = list(model.widths)
    if sampling == "cost2":
        costs = route_costs(model)
        return rng.choices(widths, weights=[costs[w].official_flops ** 2 for w in widths])
    middle = widths[1:-1]
    return [widths[-1], *([widths[0]] if len(widths) > 1 else []), *([rng.choice(middle)] if middle else [])]
