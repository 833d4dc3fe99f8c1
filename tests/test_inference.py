"""Tiled inference, the OOM fallback, the channels-last fast path, colour layouts and model resolution."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from conftest import shared_path

from leansr import create_model, list_models, load_model, save_checkpoint
from leansr.color import rgb_to_ycbcr, ycbcr_to_rgb
from leansr.data.image_io import Image, read_image
from leansr.data.imresize import bicubic_degrade, imresize
from leansr.errors import LeansrError
from leansr.engine import upscale_image, upscale_tensor
from leansr.loading import resolve_model
from leansr.runtime import prepare_for_inference as prepare_model
from leansr.runtime import resolve_device

GRAY_LEVEL = 1 / 255


class LocalNet(nn.Module):
    """Random conv net seeing 3 LR pixels each side: under 3/8 of a 16-pixel overlap, so tiling is exact."""

    def __init__(self, scale: int = 2, channels: int = 3) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.scale, self.in_channels = scale, channels
        self.body = nn.Sequential(
            nn.Conv2d(channels, 16, 3, padding=1), nn.ReLU(),
            nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(),
            nn.Conv2d(16, channels * scale * scale, 3, padding=1), nn.PixelShuffle(scale),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x) + nn.functional.interpolate(x, scale_factor=self.scale, mode="nearest")


class OomAbove(nn.Module):
    """Raises CUDA's out-of-memory error for tiles larger than `limit` pixels a side (fault injection)."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit, self.sizes = limit, []

    def forward(self, x: Tensor) -> Tensor:
        self.sizes.append(max(x.shape[-2:]))
        if max(x.shape[-2:]) > self.limit:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (injected)")
        return nn.functional.interpolate(x, scale_factor=2, mode="nearest")


def _eager(model: nn.Module, x: Tensor) -> Tensor:
    with torch.no_grad():
        return model(x.contiguous())


@pytest.mark.parametrize("tile", [17, 40, 64, 500])
@pytest.mark.parametrize("size", [(37, 53), (64, 64)])
def test_tiling_is_exact_for_a_model_seeing_less_than_the_margin(tile: int, size: tuple[int, int]) -> None:
    model = LocalNet().eval()  # sees 3 LR pixels; an 8-pixel overlap gives no weight to the outer 3
    x = torch.rand(1, 3, *size)
    out = upscale_tensor(model, x, tile=tile, tile_overlap=8)
    ref = _eager(model, x)
    assert out.shape == ref.shape
    assert (out - ref).abs().max().item() <= 1e-5


def test_tiling_stays_within_one_gray_level_for_a_zoo_model() -> None:
    # FMEN-S (random weights, zoo architecture): its receptive field (dozens of pixels) exceeds the overlap.
    model = create_model("fmen_s", scale=2).eval()
    x = torch.rand(1, 3, 45, 70)
    ref = _eager(model, x).clamp(0, 1)
    for tile in (34, 48):
        out = upscale_tensor(model, x, tile=tile, tile_overlap=16).clamp(0, 1)
        assert (out - ref).abs().max().item() <= GRAY_LEVEL


def test_single_tile_is_bit_identical_and_output_is_channels_last() -> None:
    model = LocalNet().eval()
    x = torch.rand(1, 3, 20, 30)
    out = upscale_tensor(model, x, tile=0)
    with torch.no_grad():
        assert torch.equal(out, model(x.contiguous(memory_format=torch.channels_last)))
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert upscale_tensor(model, x, tile=100).equal(out)  # tile larger than the image: one tile


@pytest.mark.parametrize("with_conv", [True, False])
def test_channels_last_tiles_only_for_convolutional_models(with_conv: bool) -> None:
    layouts = []

    class Probe(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Conv2d(3, 3, 1) if with_conv else nn.Identity()

        def forward(self, x: Tensor) -> Tensor:
            layouts.append(x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous())
            return nn.functional.interpolate(self.body(x), scale_factor=2)

    upscale_tensor(Probe().eval(), torch.rand(1, 3, 9, 9))
    assert layouts == [with_conv]


def test_progress_reports_every_tile() -> None:
    calls = []
    upscale_tensor(LocalNet().eval(), torch.rand(1, 3, 50, 50), tile=24, tile_overlap=4,
                   progress=lambda done, total: calls.append((done, total)))
    assert calls == [(i, 9) for i in range(1, 10)]


def test_cuda_oom_halves_the_tile_and_restarts() -> None:
    model = OomAbove(limit=40)
    x = torch.rand(1, 3, 70, 90)
    out = upscale_tensor(model, x, tile=128, tile_overlap=4, device="cpu")
    assert model.sizes[0] == 90 and max(model.sizes[-5:]) <= 40  # 128 -> 64 (still too big) -> 32
    expected = nn.functional.interpolate(x, scale_factor=2, mode="nearest")
    assert torch.allclose(out, expected, atol=1e-6)


def test_cuda_oom_below_the_floor_is_a_clear_error() -> None:
    with pytest.raises(LeansrError, match="out of GPU memory even with 32px tiles"):
        upscale_tensor(OomAbove(limit=10), torch.rand(1, 3, 70, 70), tile=64, tile_overlap=4, device="cpu")


@pytest.mark.parametrize("name", [n for n in list_models() if n != "bicubic"])
def test_fast_path_equals_plain_eager_nchw(name: str) -> None:
    torch.manual_seed(0)
    model = create_model(name, scale=2).eval()
    x = torch.rand(1, 3 if getattr(model, "in_channels", 3) == 3 else 1, 24, 20)
    ref = _eager(model, x)
    out = upscale_tensor(prepare_model(model), x, tile=0)
    assert (out - ref).abs().max().item() <= 1e-5


def test_reduced_precision_returns_float32_close_to_fp32() -> None:
    model = LocalNet().eval()
    x = torch.rand(1, 3, 30, 30)
    out = upscale_tensor(model, x, precision="bf16")
    ref = upscale_tensor(model, x)
    assert out.dtype == torch.float32 and 0 < (out - ref).abs().max().item() <= 2e-2


def test_fp16_on_cpu_runs_fp32_with_a_notice() -> None:
    notices = []
    model, x = LocalNet().eval(), torch.rand(1, 3, 30, 30)
    out = upscale_tensor(model, x, precision="fp16", notice=notices.append)
    assert out.equal(upscale_tensor(model, x)) and "slower than fp32 on CPU" in notices[0]


def test_ycbcr_round_trip_and_matlab_values() -> None:
    rgb = torch.rand(1, 3, 5, 7, dtype=torch.float64)
    assert torch.allclose(ycbcr_to_rgb(rgb_to_ycbcr(rgb)), rgb, atol=1e-12)
    white = rgb_to_ycbcr(torch.ones(1, 3, 1, 1, dtype=torch.float64)).flatten() * 255
    assert torch.allclose(white, torch.tensor([235.0, 128.0, 128.0], dtype=torch.float64), atol=1e-3)


def _bicubic_of(planes: np.ndarray, scale: int) -> np.ndarray:
    return imresize(planes.astype(np.float64), float(scale)).clip(0, 1)


@pytest.mark.parametrize("model_channels", [1, 3])
@pytest.mark.parametrize("colour,alpha", [(3, False), (1, False), (3, True), (1, True)])
def test_image_layouts_match_bicubic_when_the_model_is_bicubic(model_channels: int, colour: int,
                                                               alpha: bool) -> None:
    # Bicubic is linear and keeps constants, so Y + bicubic chroma, gray replication and luma all reduce to
    # plain bicubic of every plane: any mistake in the conversions shows up as a difference.
    model = prepare_model(create_model("bicubic", scale=3, in_channels=model_channels))
    rng = np.random.default_rng(0)
    image = Image(rng.random((23, 31, colour), dtype=np.float32),
                  rng.random((23, 31), dtype=np.float32) if alpha else None, bit_depth=16)
    out = upscale_image(model, image, tile=16, tile_overlap=6)
    assert out.pixels.shape == (69, 93, colour) and out.bit_depth == 16
    np.testing.assert_allclose(out.pixels, _bicubic_of(image.pixels, 3), atol=2e-5)
    if alpha:
        np.testing.assert_allclose(out.alpha, _bicubic_of(image.alpha, 3), atol=2e-5)
    else:
        assert out.alpha is None


def test_y_only_model_sees_luma_only() -> None:
    class Doubler(nn.Module):  # "super-resolves" by nearest upscaling and brightening Y by 10/255
        in_channels, scale = 1, 2

        def forward(self, y: Tensor) -> Tensor:
            assert y.shape[1] == 1
            return nn.functional.interpolate(y, scale_factor=2, mode="nearest") + 10 / 255

    flat = Image(np.full((8, 8, 3), 0.5, dtype=np.float32))
    out = upscale_image(Doubler(), flat, tile=0)
    ycbcr = rgb_to_ycbcr(torch.from_numpy(out.pixels).permute(2, 0, 1)[None].double())
    expected = rgb_to_ycbcr(torch.full((1, 3, 1, 1), 0.5, dtype=torch.float64)).flatten()
    assert torch.allclose(ycbcr[0, :, 3, 3], expected + torch.tensor([10 / 255, 0, 0]).double(), atol=1e-5)


def test_resolve_model_choices(tmp_path) -> None:
    with pytest.raises(LeansrError, match="either --weights or --model"):
        resolve_model("w.pth", "bicubic", None)
    default = resolve_model(None, None, None)
    assert default.scale == 4 and not default.model.training
    assert resolve_model(None, "bicubic", 3).scale == 3
    with pytest.raises(LeansrError, match="needs trained weights"):
        resolve_model(None, "rlfn_s", 2)
    path = save_checkpoint(create_model("ecbsr_m4c8", scale=2), tmp_path / "tiny.safetensors")
    assert resolve_model(str(path), None, None).scale == 2
    with pytest.raises(LeansrError, match="x2 model, which conflicts with --scale 4"):
        resolve_model(str(path), None, 4)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised without CUDA")
def test_cuda_requested_without_cuda_is_a_clear_error() -> None:
    assert resolve_device("auto").type == "cpu"
    with pytest.raises(LeansrError, match="no CUDA device"):
        resolve_device("cuda")


@pytest.mark.reference
@pytest.mark.parametrize("checkpoint", ["NJU-Jet-FMEN/test_weights.pt", "zhaohengyuan1-PAN/PANx4_DF2K.pth"])
def test_default_overlap_keeps_official_models_within_one_gray_level(checkpoint: str) -> None:

    model = load_model(shared_path("weights", *checkpoint.split("/")))
    hr = read_image(shared_path("data", "Set14", "zebra.png")).pixels
    lr = bicubic_degrade(np.round(hr * 255).astype(np.uint8), 4)[:120, :144]
    x = torch.from_numpy(lr).permute(2, 0, 1)[None].float() / 255
    ref = _eager(model, x).clamp(0, 1)
    out = upscale_tensor(model, x, tile=80).clamp(0, 1)  # 3x3 tiles, default overlap
    assert (out - ref).abs().max().item() <= GRAY_LEVEL


@pytest.mark.slow
def test_a_4000x3000_image_upscales_in_bounded_memory() -> None:
    # A fresh process, so its peak RSS is this run's: the 0.54 GiB 8-bit x4 output (quantized row by row, as
    # `leansr upscale` writes it), the input, and the engine's working memory (default budget 2 GiB).
    script = (
        "import resource, numpy as np, torch; torch.set_num_threads(1)\n"
        "from leansr import create_model; from leansr.data.image_io import Image\n"
        "from leansr.engine import upscale_image_quantized\n"
        "image = Image(np.random.default_rng(0).random((3000, 4000, 3), dtype=np.float32))\n"
        "out = upscale_image_quantized(create_model('bicubic', scale=4), image)\n"
        "assert out.data.shape == (12000, 16000, 3)\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    peak_gib = int(result.stdout.split()[-1]) / 2**20
    assert peak_gib < 3.5, f"peak RSS {peak_gib:.2f} GiB"


@pytest.mark.slow
def test_compiled_model_matches_eager_and_keeps_model_attributes() -> None:
    model = create_model("fmen_s", scale=2).eval()
    x = torch.rand(1, 3, 32, 40)
    ref = _eager(model, x)
    compiled = prepare_model(model, compiled=True)
    assert compiled.scale == 2 and compiled.in_channels == 3
    assert (upscale_tensor(compiled, x) - ref).abs().max().item() <= 1e-5
