"""Quantization-aware fine-tuning for `leansr quantize`: int8 fake quantization of the convolutions it quantizes.

`leansr quantize` (onnxruntime static QDQ) rounds each quantized convolution's weights per output channel to
symmetric int8 and its input and output activations per tensor to uint8; post-training, that loses 0.2-0.6 dB
on the zoo's thin layers. Training with `model.quant_aware=true` simulates that rounding in the forward
(straight-through gradients), so the weights learn to tolerate it; quantizing the result then loses less.
Activation ranges are each batch's own, not the calibrated ones (no observer state: checkpoints and `--resume`
are unchanged); the first and last convolutions stay float, as `leansr quantize` keeps them by default. A
fake-quantized conv keeps its parameters and state-dict keys: the trained checkpoint loads as the ordinary model.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

_W_MAX = 127.0  # symmetric int8 weights
_A_LEVELS = 255.0  # uint8 activations


def fake_quant_weight(weight: Tensor) -> Tensor:
    """Per-output-channel symmetric int8 rounding; gradient passes straight through."""
    scale = weight.detach().abs().amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-12) / _W_MAX
    rounded = (weight / scale).round().clamp(-_W_MAX, _W_MAX) * scale
    return weight + (rounded - weight).detach()


def fake_quant_activation(x: Tensor) -> Tensor:
    """Per-tensor uint8 rounding over [min(x, 0), max(x, 0)] (zero exactly representable); straight-through."""
    low, high = x.detach().amin().clamp(max=0), x.detach().amax().clamp(min=0)
    scale = ((high - low) / _A_LEVELS).clamp_min(1e-12)
    zero = (-low / scale).round()
    rounded = ((x / scale).round() + zero).clamp(0, _A_LEVELS).sub(zero) * scale
    return x + (rounded - x).detach()


class FakeQuantConv2d(nn.Conv2d):
    """A Conv2d computing as its int8 QDQ counterpart would (rounded input, weights and output)."""

    def forward(self, x: Tensor) -> Tensor:
        y = F.conv2d(fake_quant_activation(x), fake_quant_weight(self.weight), self.bias, self.stride,
                     self.padding, self.dilation, self.groups)
        return fake_quant_activation(y)


def quant_aware(model: nn.Module, probe: Tensor) -> list[str]:
    """Make every plain conv of `model` but the first and last called on `probe` fake-quantized, in place.

    Returns the names of those convs. Parameters are shared, not copied (the optimizer keeps them).
    """
    order: list[str] = []
    convs = {m: name for name, m in model.named_modules() if type(m) is nn.Conv2d}
    handles = [m.register_forward_hook(lambda m, i, o: order.append(convs[m])) for m in convs]
    try:
        with torch.no_grad():
            model(probe)
    finally:
        for handle in handles:
            handle.remove()
    called = list(dict.fromkeys(order))
    chosen = called[1:-1]
    for name in chosen:
        model.get_submodule(name).__class__ = FakeQuantConv2d
    return chosen


def strip_fake_quant(model: nn.Module) -> nn.Module:
    """Back to plain convolutions (in place): the trained weights are the float model to quantize."""
    for module in model.modules():
        if type(module) is FakeQuantConv2d:
            module.__class__ = nn.Conv2d
    return model
