"""Start an `arm_plain` supernet from a trained plain network: a deployed RGB ECBSR (such as the default
model) or an `arm_plain` supernet (to deepen it or change its widths).

The full width of the result computes exactly what the given network does. An ECBSR's hidden channels are
reordered, most important first, so that each narrow width (a prefix of the channels) starts from the channels
that matter most: the importance of channel c after conv i is ||W_i[c]|| * ||W_{i+1}[:, c]|| (what enters times
what leaves). Permuting the outputs of conv i, its bias and PReLU slopes together with the inputs of conv i+1
changes nothing at full width. A supernet keeps its order (its prefixes are trained). `extra_blocks` inserts
identity layers before the last conv (a centred delta kernel, zero bias, PReLU slope 1): exact at every width,
since a prefix of an identity is an identity, and free capacity for the fine-tune. A full width above the
given network's channels (up to twice) widens it: each new channel copies an old one but feeds nothing yet
(zero weights out of it), so every width, the new full width included, computes what the given network's
widths did until the fine-tune trains them.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from leansr.errors import LeansrError
from leansr.layers.reparam import reparameterize_model
from leansr.models.arm_plain import ARMPlain
from leansr.models.ecbsr import ECBSR
from leansr.registry import create_model


def supernet_from_plain(plain: nn.Module, widths: tuple[int, ...], *, extra_blocks: int = 0) -> ARMPlain:
    """A supernet whose full width computes what `plain` does (channels sorted by importance if an ECBSR)."""
    if extra_blocks < 0:
        raise LeansrError(f"extra blocks must be 0 or more, not {extra_blocks}")
    convs, slopes = _plain_layers(plain)
    weights = [c.weight.detach().clone() for c in convs]
    biases = [c.bias.detach().clone() for c in convs]
    slopes = [s.detach().clone() for s in slopes]
    if not isinstance(plain, ARMPlain):
        for i in range(len(weights) - 1):
            order = _importance(weights[i], weights[i + 1]).argsort(descending=True)
            weights[i], biases[i], slopes[i] = weights[i][order], biases[i][order], slopes[i][order]
            weights[i + 1] = weights[i + 1][:, order]
    channels = weights[0].shape[0]
    if widths and widths[-1] > channels:
        weights, biases, slopes = _widen(weights, biases, slopes, widths[-1])
        channels = widths[-1]
    for _ in range(extra_blocks):
        weights.insert(-1, nn.init.dirac_(weights[0].new_empty(channels, channels, 3, 3)))
        biases.insert(-1, biases[0].new_zeros(channels))
        slopes.append(slopes[0].new_ones(channels))
    supernet = create_model("arm_plain", scale=plain.scale, channels=channels, num_blocks=len(weights) - 2,
                            widths=list(widths)).to(weights[0].dtype)
    with torch.no_grad():
        for conv, weight, bias in zip(supernet.convs, weights, biases):
            conv.weight.copy_(weight)
            conv.bias.copy_(bias)
        for act, slope in zip(supernet.acts, slopes):
            act.weight.copy_(slope)
    return supernet


def _widen(weights: list[Tensor], biases: list[Tensor], slopes: list[Tensor],
           channels: int) -> tuple[list[Tensor], list[Tensor], list[Tensor]]:
    """Hidden layers grown to `channels`: each new channel a copy of an old one (the most important first),
    with zero weights out of it, so it starts from a trained feature and needs no random seed."""
    old, last = weights[0].shape[0], len(weights) - 1
    if channels > 2 * old:
        raise LeansrError(f"a supernet of {old} channels can grow to {2 * old} at most, not {channels}")
    source = torch.arange(channels - old)  # the old channel each new one copies
    grown_weights, grown_biases = [], []
    for i, (weight, bias) in enumerate(zip(weights, biases)):
        grown = torch.cat([weight, weight.new_zeros(weight.shape[0], channels - old, *weight.shape[2:])], 1) \
            if i > 0 else weight  # old and copied channels alike read no new channel
        if i < last:
            grown, bias = torch.cat([grown, grown[source]]), torch.cat([bias, bias[source]])
        grown_weights.append(grown)
        grown_biases.append(bias)
    return grown_weights, grown_biases, [torch.cat([s, s[source]]) for s in slopes]


def _importance(incoming: Tensor, outgoing: Tensor) -> Tensor:
    return incoming.flatten(1).norm(dim=1) * outgoing.transpose(0, 1).flatten(1).norm(dim=1)


def _plain_layers(plain: nn.Module) -> tuple[list[nn.Conv2d], list[Tensor]]:
    if isinstance(plain, ARMPlain):
        return list(plain.convs), [a.weight for a in plain.acts]
    if not isinstance(plain, ECBSR):
        raise LeansrError("a supernet can be made from an ECBSR (plain 3x3 convolutions once deployed) or an "
                          f"arm_plain supernet only, not {getattr(plain, 'arch', type(plain).__name__)}")
    if not plain.deployed:
        plain = reparameterize_model(plain)  # a fused copy; the caller's model is left as it is
    if plain.in_channels != 3 or plain.img_range != 1.0:
        raise LeansrError("the plain model must take RGB on 0-1 (as the default model), "
                          f"not {plain.in_channels} channel(s) on 0-{plain.img_range:g}")
    layers = list(plain.backbone)
    acts = [layer.act for layer in layers[:-1]]
    if not all(isinstance(a, nn.PReLU) and a.weight.numel() == layer.conv.out_channels
               for a, layer in zip(acts, layers)):
        raise LeansrError("the plain model must use per-channel PReLU activations")
    return [layer.conv for layer in layers], [a.weight for a in acts]
