"""Parameters, MACs, activations and #conv of one forward pass, counted two ways.

`ops`: every multiply-accumulate kernel the forward runs (convolution, transposed convolution, mm/addmm/bmm/
baddbmm, matrix-vector, scaled-dot-product attention), counted at the aten level, so functional calls
(`F.conv2d`, `x @ w`, `einsum`) count as much as modules. Bias additions and element-wise ops are not MACs.

`challenge`: the AIM 2020 / NTIRE 2022 script (`utils/model_summary.py`), which hooks module classes only:
nn.Conv2d / nn.ConvTranspose2d MACs (computed from the *output* size, also for transposed convolutions),
nn.Linear, plus one "FLOP" per output element of nn.ReLU/PReLU/ELU/LeakyReLU/ReLU6 modules and two per
element of affine nn.BatchNorm2d. Activations and #conv: outputs of nn.Conv2d / nn.ConvTranspose2d modules.
"""

from __future__ import annotations

import copy
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import Tensor, nn
from torch.utils._pytree import tree_leaves

from leansr.bench.dispatch import LeafOpMode

aten = torch.ops.aten


@dataclass
class OpCounts:
    macs: int = 0  # the challenge convention adds element-wise "FLOPs"; see the module docstring
    activations: int = 0  # elements of every convolution output
    conv: int = 0  # convolution calls
    macs_by_op: Counter = field(default_factory=Counter)


@dataclass
class ModelCounts:
    params: int
    ops: OpCounts  # op-level count: every MAC kernel, modules or functional
    challenge: OpCounts  # module hooks, as the challenges' script counted
    device: str  # where the counting forward ran ("meta" needs no memory and no arithmetic)


def count_params(model: nn.Module) -> int:
    """All parameters, shared ones once (as the challenges counted: `sum(p.numel() for p in parameters())`)."""
    return sum(p.numel() for p in model.parameters())


def count_model(model: nn.Module, input_shape: tuple[int, ...], *, device: str = "meta") -> ModelCounts:
    """Count one forward on a zero input of `input_shape` (NCHW); tries the meta device, else the model's own."""
    params = count_params(model)
    if device == "meta":
        try:
            counted = copy.deepcopy(model).to("meta")
            ops, challenge = _count_forward(counted, torch.zeros(input_shape, device="meta"))
            return ModelCounts(params, ops, challenge, "meta")
        except Exception:  # noqa: BLE001 - any failure is retried for real below, which raises if genuine
            pass  # e.g. a tensor attribute that is not a buffer stays on CPU under .to("meta")
    real = _model_device(model) if device == "meta" else torch.device(device)
    ops, challenge = _count_forward(model, torch.zeros(input_shape, device=real))
    return ModelCounts(params, ops, challenge, str(real))


def _model_device(model: nn.Module) -> torch.device:
    tensor = next(iter(model.parameters()), None)
    return tensor.device if tensor is not None else torch.device("cpu")


def _count_forward(model: nn.Module, x: Tensor) -> tuple[OpCounts, OpCounts]:
    counter = OpCounter()
    challenge = OpCounts()
    handles = [m.register_forward_hook(_challenge_hook(challenge)) for m in model.modules()]
    try:
        with torch.inference_mode(), counter:
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    return counter.counts, challenge


class OpCounter(LeafOpMode):
    """Accumulates MACs per aten kernel, and activations/#conv of every convolution."""

    def __init__(self) -> None:
        super().__init__()
        self.counts = OpCounts()

    def observe(self, func: Any, args: tuple, kwargs: dict, out: Any) -> None:
        rule = _MAC_RULES.get(func.overloadpacket)
        if rule is None:
            return
        macs = rule(args, out)
        self.counts.macs += macs
        self.counts.macs_by_op[func.overloadpacket.__name__] += macs
        if func.overloadpacket in _CONVOLUTIONS:
            self.counts.activations += out.numel()
            self.counts.conv += 1


def _conv_macs(args: tuple, out: Tensor) -> int:
    x, weight, transposed = args[0], args[1], bool(args[6])
    # weight is (C_out, C_in/g, *k), or (C_in, C_out/g, *k) when transposed: each output (resp. input)
    # element takes weight[0].numel() multiply-adds.
    per_element = weight[0].numel()
    return (x.numel() if transposed else out.numel()) * per_element


def _mm_macs(args: tuple, out: Tensor) -> int:
    a, b = args[-2], args[-1]  # addmm/baddbmm lead with the added tensor
    return out.numel() * a.shape[-1] if b.dim() > 1 else a.numel()


def _attention_macs(args: tuple, out: Any) -> int:
    q, k, v = args[:3]
    batch = math.prod(q.shape[:-2])
    # Q K^T then (softmax) V.
    return batch * q.shape[-2] * k.shape[-2] * (q.shape[-1] + v.shape[-1])


def _packets(*names: str) -> list:
    return [getattr(aten, n) for n in names if hasattr(aten, n)]


_CONVOLUTIONS = set(_packets("convolution", "_convolution"))
_MAC_RULES: dict[Any, Callable[[tuple, Any], int]] = {
    **{p: _conv_macs for p in _CONVOLUTIONS},
    **{p: _mm_macs for p in _packets("mm", "addmm", "bmm", "baddbmm", "mv", "addmv", "dot")},
    **{
        p: _attention_macs
        for p in _packets(
            "_scaled_dot_product_flash_attention_for_cpu",
            "_scaled_dot_product_flash_attention",
            "_scaled_dot_product_efficient_attention",
            "_scaled_dot_product_cudnn_attention",
        )
    },
}

_CHALLENGE_CONVS = (nn.Conv2d, nn.ConvTranspose2d)
_CHALLENGE_ACTS = (nn.ReLU, nn.PReLU, nn.ELU, nn.LeakyReLU, nn.ReLU6)


def _challenge_hook(counts: OpCounts) -> Callable[[nn.Module, tuple, Any], None]:
    def hook(module: nn.Module, inputs: tuple, output: Any) -> None:
        if isinstance(module, _CHALLENGE_CONVS):
            out = output
            positions = out.shape[0] * math.prod(out.shape[2:])
            per_position = math.prod(module.kernel_size) * module.in_channels * (module.out_channels // module.groups)
            counts.macs += positions * per_position
            counts.activations += out.numel()
            counts.conv += 1
        elif isinstance(module, _CHALLENGE_ACTS):
            counts.macs += sum(t.numel() for t in tree_leaves(output) if isinstance(t, Tensor))
        elif isinstance(module, nn.Linear):
            counts.macs += _challenge_linear(inputs[0], output)
        elif isinstance(module, nn.BatchNorm2d):
            counts.macs += output.numel() * (2 if module.affine else 1)

    return hook


def _challenge_linear(x: Tensor, out: Tensor) -> int:
    # The script reads shape[0] * shape[1] * out.shape[1]: exact for (N, C) inputs, not for (N, L, C).
    if x.dim() == 1:
        return x.shape[0] * out.shape[0]
    return x.shape[0] * x.shape[1] * out.shape[1]
