"""Our counts equal the NTIRE 2022 / AIM 2020 official efficiency tables at their printed precision.

Figures from ../shared/reference/published.md (LR 256x256, x4), restated here so the test needs only model
construction. "FLOPs" there are the challenge script's count (`challenge`), which the op-level MACs
bound from below (they leave out the script's one "FLOP" per ReLU-module output element).
"""

import pytest
import torch

from leansr import create_model, list_models, reparameterize_model
from leansr.bench.counting import count_model

# name: (params [M] or exact, challenge GFLOPs, activations [M], #conv or None when unpublished)
PUBLISHED = {
    "imdn_aim2019": ("0.894", "58.53", "154.14", 43),
    "rfdn_e": ("0.433", "27.10", "112.03", 64),
    "fmen_s": ("0.341", "22.28", "72.09", 34),
    "rlfn_ntire": ("0.317", "19.70", "80.05", 39),
    "msrresnet": (1_517_571, "166.36", "292.55", None),
}


def _counts(name):
    if name not in list_models():
        pytest.skip(f"{name} is not registered in the zoo")
    model = reparameterize_model(create_model(name, scale=4).eval())  # the deployed form was measured
    return count_model(model, (1, model.in_channels, 256, 256))


@pytest.mark.parametrize("name", list(PUBLISHED))
def test_matches_official_table(name):
    params, flops, activations, conv = PUBLISHED[name]
    counts = _counts(name)
    assert counts.device == "meta"  # counted without arithmetic
    measured_params = counts.params if isinstance(params, int) else f"{counts.params / 1e6:.3f}"
    assert measured_params == params
    assert f"{counts.challenge.macs / 1e9:.2f}" == flops
    assert f"{counts.challenge.activations / 1e6:.2f}" == activations
    if conv is not None:
        assert counts.challenge.conv == conv


@pytest.mark.parametrize("name", list(PUBLISHED))
def test_op_level_agrees_with_challenge_on_module_convolutions(name):
    counts = _counts(name)
    # These networks run every convolution as an nn.Conv2d and have no matmul, so both conventions see
    # the same convolutions; the challenge FLOPs only add ReLU-module output elements.
    assert counts.ops.activations == counts.challenge.activations
    assert counts.ops.conv == counts.challenge.conv
    assert set(counts.ops.macs_by_op) == {"convolution"}
    assert counts.ops.macs <= counts.challenge.macs


def test_meta_and_cpu_counts_agree_on_a_zoo_model():
    if "rlfn_ntire" not in list_models():
        pytest.skip("rlfn_ntire is not registered in the zoo")
    torch.manual_seed(0)
    model = reparameterize_model(create_model("rlfn_ntire", scale=4).eval())  # ESA: strided conv, pooling
    real = count_model(model, (1, 3, 32, 32), device="cpu")
    meta = count_model(model, (1, 3, 32, 32))
    assert real.device == "cpu" and meta.device == "meta"
    assert (real.ops, real.challenge) == (meta.ops, meta.challenge)
