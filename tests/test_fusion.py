"""The fusion maths against the unfused computation, in float64 on odd, even and 1-pixel inputs."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from leansr.layers import fusion

torch.manual_seed(0)
SIZES = [(1, 1), (7, 5), (16, 16), (9, 13)]
TOL = 1e-10


def _conv(params: fusion.ConvParams, x: torch.Tensor) -> torch.Tensor:
    weight, bias = params
    return F.conv2d(x, weight, bias, padding=(weight.shape[-2] // 2, weight.shape[-1] // 2))


def _rand(out_ch: int, in_ch: int, kh: int, kw: int) -> fusion.ConvParams:
    return torch.randn(out_ch, in_ch, kh, kw, dtype=torch.float64), torch.randn(out_ch, dtype=torch.float64)


def _random_bn(channels: int) -> nn.BatchNorm2d:
    bn = nn.BatchNorm2d(channels).double().eval()
    with torch.no_grad():
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.2, 3.0)
        bn.weight.normal_()
        bn.bias.normal_()
    return bn


def _assert_close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    rel = (actual - expected).abs().max() / expected.abs().max().clamp_min(1e-300)
    assert rel <= TOL, f"relative error {rel:.3e}"


@pytest.mark.parametrize("size", SIZES)
def test_fold_bn_matches_conv_then_bn(size: tuple[int, int]) -> None:
    params, bn = _rand(5, 4, 3, 3), _random_bn(5)
    x = torch.randn(2, 4, *size, dtype=torch.float64)
    _assert_close(_conv(fusion.fold_bn(params, bn), x), bn(_conv(params, x)))


def test_fold_bn_without_affine() -> None:
    bn = nn.BatchNorm2d(3, affine=False).double().eval()
    bn.running_mean.normal_()
    bn.running_var.uniform_(0.5, 2.0)
    params, x = _rand(3, 2, 1, 1), torch.randn(1, 2, 4, 4, dtype=torch.float64)
    _assert_close(_conv(fusion.fold_bn(params, bn), x), bn(_conv(params, x)))


def test_fold_bn_refuses_batch_statistics() -> None:
    with pytest.raises(ValueError, match="running statistics"):
        fusion.batchnorm_affine(nn.BatchNorm2d(3, track_running_stats=False))


@pytest.mark.parametrize("shape", [(1, 1), (1, 3), (3, 1), (3, 3)])
@pytest.mark.parametrize("size", SIZES)
def test_pad_kernel_keeps_same_padding_output(shape: tuple[int, int], size: tuple[int, int]) -> None:
    params = _rand(3, 2, *shape)
    padded = (fusion.pad_kernel(params[0], 3), params[1])
    x = torch.randn(1, 2, *size, dtype=torch.float64)
    _assert_close(_conv(padded, x), _conv(params, x))


def test_pad_kernel_rejects_uncentred() -> None:
    with pytest.raises(ValueError):
        fusion.pad_kernel(torch.zeros(1, 1, 2, 2), 3)


@pytest.mark.parametrize("size", SIZES)
def test_add_branches_and_identity(size: tuple[int, int]) -> None:
    a, b, c = _rand(4, 4, 3, 3), _rand(4, 4, 1, 3), _rand(4, 4, 1, 1)
    x = torch.randn(2, 4, *size, dtype=torch.float64)
    identity = fusion.identity_params(4, 3, like=x)
    expected = _conv(a, x) + _conv(b, x) + _conv(c, x) + x
    _assert_close(_conv(fusion.add_branches(a, b, c, identity), x), expected)


@pytest.mark.parametrize("size", SIZES)
def test_merge_1x1_then_3x3_with_bias_padding(size: tuple[int, int]) -> None:
    first, second = _rand(6, 3, 1, 1), _rand(4, 6, 3, 3)
    x = torch.randn(2, 3, *size, dtype=torch.float64)
    mid = fusion.pad_with_bias(F.conv2d(x, *first), first[1])
    _assert_close(_conv(fusion.merge_sequential(first, second), x), F.conv2d(mid, *second))


@pytest.mark.parametrize("size", SIZES)
def test_merge_3x3_then_1x1(size: tuple[int, int]) -> None:
    first, second = _rand(6, 3, 3, 3), _rand(4, 6, 1, 1)
    x = torch.randn(1, 3, *size, dtype=torch.float64)
    _assert_close(_conv(fusion.merge_sequential(first, second), x), _conv(second, _conv(first, x)))


def test_merge_needs_a_1x1_side() -> None:
    with pytest.raises(ValueError, match="1x1"):
        fusion.merge_sequential(_rand(2, 2, 3, 3), _rand(2, 2, 3, 3))


@pytest.mark.parametrize("size", SIZES)
def test_bn_before_padded_conv_via_affine_merge(size: tuple[int, int]) -> None:
    bn, conv = _random_bn(3), _rand(4, 3, 3, 3)
    scale, shift = fusion.batchnorm_affine(bn)
    x = torch.randn(2, 3, *size, dtype=torch.float64)
    expected = F.conv2d(fusion.pad_with_bias(bn(x), shift), *conv)
    fused = fusion.merge_sequential(fusion.affine_as_conv1x1(scale, shift), conv)
    _assert_close(_conv(fused, x), expected)


@pytest.mark.parametrize("kernel", [fusion.SOBEL_X, fusion.SOBEL_Y, fusion.LAPLACIAN])
def test_fixed_kernel_branch_is_scaled_depthwise(kernel: tuple) -> None:
    k = torch.tensor(kernel, dtype=torch.float64)
    scale, bias = torch.randn(5, dtype=torch.float64), torch.randn(5, dtype=torch.float64)
    x = torch.randn(1, 5, 7, 5, dtype=torch.float64)
    depthwise = (scale.reshape(5, 1, 1, 1) * k).reshape(5, 1, 3, 3)
    expected = F.conv2d(x, depthwise, bias, padding=1, groups=5)
    _assert_close(_conv(fusion.fixed_kernel_params(k, scale, bias), x), expected)


def test_conv_params_of_grouped_conv_without_bias() -> None:
    conv = nn.Conv2d(4, 6, 3, padding=1, groups=2, bias=False).double()
    x = torch.randn(1, 4, 9, 13, dtype=torch.float64)
    _assert_close(_conv(fusion.conv_params(conv), x), conv(x))
    _assert_close(fusion.to_conv(fusion.conv_params(conv))(x), conv(x))


def test_conv_params_rejects_strided() -> None:
    with pytest.raises(ValueError, match="stride"):
        fusion.conv_params(nn.Conv2d(2, 2, 3, padding=1, stride=2))


def test_pad_with_bias_borders_and_interior() -> None:
    x = torch.randn(2, 3, 4, 5, dtype=torch.float64)
    value = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    out = fusion.pad_with_bias(x, value)
    assert out.shape == (2, 3, 6, 7)
    assert torch.equal(out[:, :, 1:-1, 1:-1], x)
    for c in range(3):
        border = torch.cat([out[:, c, 0], out[:, c, -1], out[:, c, :, 0], out[:, c, :, -1]], dim=-1)
        assert torch.all(border == value[c])


def test_grouped_kernel_stays_grouped() -> None:
    conv = nn.Conv2d(4, 6, 3, padding=1, groups=2).double()
    params = fusion.conv_params(conv, dense=False)
    assert params[0].shape == conv.weight.shape
    x = torch.randn(1, 4, 7, 5, dtype=torch.float64)
    _assert_close(fusion.to_conv(params, groups=2)(x), conv(x))
