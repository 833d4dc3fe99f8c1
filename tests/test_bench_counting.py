"""Op-level and challenge-convention counting, and CPU peak memory, on networks computable by hand."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from leansr.bench.counting import count_model, count_params
from leansr.bench.memory import peak_memory_bytes


class Mixed(nn.Module):
    """Every MAC kernel the counter must see, as modules and as functional calls. Input 1x3x6x6."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)  # module conv, with bias
        self.depthwise = nn.Parameter(torch.randn(8, 1, 3, 3))  # F.conv2d, groups=8
        self.grouped = nn.Conv2d(8, 8, 1, groups=2)  # 2 groups of 4 -> 4
        self.up = nn.ConvTranspose2d(8, 4, 4, stride=2, padding=1)  # 6x6 -> 12x12
        self.linear = nn.Linear(4, 5)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.conv(x))
        x = F.conv2d(x, self.depthwise, padding=1, groups=8)
        x = self.up(self.grouped(x))
        y = self.linear(x.permute(0, 2, 3, 1))  # (1, 12, 12, 5)
        z = y @ y.transpose(-1, -2)  # (1, 12, 12, 12)
        return torch.einsum("bhij,bhjk->bhik", z, z)


# By hand, per output element: conv 3*3*3=27 x 8*36 outputs; depthwise 9 x 8*36; grouped 4 x 8*36;
# transposed: each *input* element 4*4*4=64 x 8*36 inputs; linear 4 x 144*5; matmul 5 x 12*12*12; einsum 12 x 1728.
CONV = 27 * 288 + 9 * 288 + 4 * 288 + 64 * 288
MATMUL = 4 * 720 + 5 * 1728 + 12 * 1728
ACTIVATIONS = 288 + 288 + 288 + 4 * 144


@pytest.mark.parametrize("device", ["meta", "cpu"])
def test_op_level_counts_every_mac_kernel(device):
    counts = count_model(Mixed(), (1, 3, 6, 6), device=device)
    assert counts.device == device
    assert counts.ops.macs == CONV + MATMUL
    assert counts.ops.macs_by_op["convolution"] == CONV
    assert counts.ops.activations == ACTIVATIONS
    assert counts.ops.conv == 4


def test_challenge_convention_hooks_modules_only():
    counts = count_model(Mixed(), (1, 3, 6, 6)).challenge
    # nn.Conv2d x2 and nn.ConvTranspose2d (from its *output* size: 144 * 4*4 * 8*4); the functional
    # depthwise conv and the matmuls are invisible; nn.ReLU adds its 288 outputs; nn.Linear is counted
    # from shape[0]*shape[1]*out.shape[1] = 1*12*12 on this 4-D input, as the script does.
    assert counts.macs == 27 * 288 + 4 * 288 + 144 * 16 * 32 + 288 + 144
    assert counts.activations == 288 + 288 + 4 * 144
    assert counts.conv == 3


def test_batch_norm_and_leaky_relu_in_challenge_count():
    model = nn.Sequential(nn.Conv2d(1, 2, 1, bias=False), nn.BatchNorm2d(2), nn.LeakyReLU(0.1)).eval()
    counts = count_model(model, (1, 1, 4, 4))
    assert counts.ops.macs == 32  # BN and LeakyReLU are not MACs
    assert counts.challenge.macs == 32 + 2 * 32 + 32


def test_attention_kernel_counted():
    class Attention(nn.Module):
        def forward(self, x):
            return F.scaled_dot_product_attention(x, x, x)

    counts = count_model(Attention(), (2, 3, 10, 8))  # batch 2, 3 heads, 10 tokens, dim 8
    assert counts.ops.macs == 2 * 3 * 10 * 10 * (8 + 8)


def test_functional_matmul_family_counted():
    class Products(nn.Module):
        def forward(self, x):  # x: (2, 3, 4)
            a = torch.baddbmm(torch.zeros(2, 3, 3), x, x.transpose(1, 2))  # 2*3*3 outputs x 4
            b = torch.addmm(torch.zeros(3, 5), x[0], torch.ones(4, 5))  # 15 outputs x 4
            c = torch.mv(x[1], torch.ones(4))  # 3 outputs x 4
            return a.sum() + b.sum() + c.sum()

    assert count_model(Products(), (2, 3, 4)).ops.macs == 18 * 4 + 15 * 4 + 3 * 4


def test_params_count_shared_parameters_once():
    conv = nn.Conv2d(2, 2, 3)
    model = nn.Sequential(conv, conv, nn.Conv2d(2, 1, 1, bias=False))
    assert count_params(model) == 2 * 2 * 9 + 2 + 2
    counts = count_model(model, (1, 2, 9, 9))
    assert counts.ops.conv == 3  # the shared conv runs twice
    assert counts.ops.macs == 18 * 49 * 2 + 18 * 25 * 2 + 2 * 25


def test_meta_counting_falls_back_to_cpu_for_unmovable_tensors():
    class Offset(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 1, 1)
            self.offset = torch.ones(1)  # a plain attribute, not a buffer: stays on CPU under .to("meta")

        def forward(self, x):
            return self.conv(x) + self.offset

    counts = count_model(Offset(), (1, 1, 3, 3))
    assert counts.device == "cpu"
    assert counts.ops.macs == 9


class TwoConvs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.b = nn.Conv2d(8, 8, 3, padding=1, bias=False)

    def forward(self, x):
        y = F.relu(self.a(x))  # a's output dies once relu returns
        y.mul_(2)  # in place: no new storage
        return self.b(y.view(1, 8, 16, 16))  # a view: no new storage


def test_cpu_peak_memory_tracks_live_storages():
    model, x = TwoConvs(), torch.rand(1, 3, 16, 16)
    resident = (8 * 3 * 9 + 8 * 8 * 9) * 4 + x.numel() * 4
    feature = 8 * 16 * 16 * 4
    peak, method = peak_memory_bytes(model, x)
    assert "dispatch" in method
    # At most two 8x16x16 float maps are alive at once (conv a + relu, then relu + conv b).
    assert peak == resident + 2 * feature


def test_cpu_peak_memory_frees_intermediates():
    chain = nn.Sequential(*(nn.Conv2d(4, 4, 1, bias=False) for _ in range(6)))
    peak, _ = peak_memory_bytes(chain, torch.rand(1, 4, 8, 8))
    resident = 6 * 16 * 4 + 4 * 64 * 4
    assert peak == resident + 2 * 4 * 64 * 4  # never more than input-of-layer + output-of-layer


@pytest.mark.cuda
def test_cuda_peak_memory_uses_the_allocator():
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    model = TwoConvs().cuda()
    peak, method = peak_memory_bytes(model, torch.rand(1, 3, 16, 16, device="cuda"))
    assert method == "torch.cuda.max_memory_allocated" and peak > 0
