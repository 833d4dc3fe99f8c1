"""The engine and the model contract: plans, exact tiling of local models, contexts, descriptors, imports."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import shared_path
from leansr import create_model, list_models, load_model, save_checkpoint
from leansr.context import local, measured_radius
from leansr.engine import TileSettings, plan_for, plan_tiles, run_batches, upscale_tensor, whole_plan
from leansr.engine.plan import cheapest_plan
from leansr.registry import get_model_info, model_context

GRAY_LEVEL = 1 / 255
LOCAL_MODELS = [n for n in list_models() if model_context(n, {}).kind == "local"]
# Forced tiling needs tiles plus halos smaller than the 160-px photo (the 32-block EDSR's radius is 68).
TILEABLE_MODELS = [n for n in LOCAL_MODELS if model_context(n, {}).radius < 56]


def _small(name: str) -> torch.nn.Module:
    """A registered model at x2, narrowed where the family allows, with random weights."""
    torch.manual_seed(0)
    return create_model(name, scale=2).eval()


def _photo(height: int, width: int, channels: int) -> torch.Tensor:
    """An 8-bit photo crop (examples/coffee.png, CC0), 0-1 NCHW; Y only for one-channel models."""
    from leansr.data.image_io import read_rgb_uint8

    rgb = read_rgb_uint8(Path(__file__).resolve().parents[1] / "examples" / "coffee.png")[:height, :width]
    x = torch.from_numpy(rgb.astype(np.float32) / 255).permute(2, 0, 1)[None]
    return x[:, :1].contiguous() if channels == 1 else x


@pytest.mark.parametrize("name", TILEABLE_MODELS)
def test_forced_small_tiles_equal_untiled_for_every_local_model(name: str) -> None:
    model = _small(name)
    x = _photo(160, 150, model.in_channels)
    plan = plan_tiles(160, 150, model_context(name, model.hparams), 48, overlap=0)
    assert plan.mode == "paste" and plan.window_shape[0] < 160  # really tiled, halo and all
    whole = upscale_tensor(model, x, tile=0)
    tiled = upscale_tensor(model, x, tile=48)
    difference = (tiled - whole).abs().max().item()
    print(f"{name}: max |tiled - untiled| = {difference:.2e} (0-1 scale)")
    assert difference <= 1e-4  # float noise; far below one 8-bit gray level (3.9e-3)
    assert ((tiled.clamp(0, 1) * 255).round() - (whole.clamp(0, 1) * 255).round()).abs().max() <= 1


@pytest.mark.parametrize("name", LOCAL_MODELS)
def test_declared_radius_covers_the_measured_receptive_field(name: str) -> None:
    takes_blocks = "num_blocks" in get_model_info(name).preset.overrides or name in (
        "pan", "msrresnet", "imdn_aim2019")
    model = create_model(name, scale=2, **({"num_blocks": 2} if takes_blocks else {}))
    declared = model_context(name, model.hparams).radius
    assert measured_radius(model, size=2 * declared + 21, channels=model.in_channels) <= declared


def test_plans_cover_the_image_once_and_windows_share_a_shape() -> None:
    for height, width, tile in ((70, 61, 24), (100, 33, 40), (17, 200, 16)):
        plan = plan_tiles(height, width, local(5), tile, overlap=0)
        covered = np.zeros((height, width), int)
        for w in plan.windows:
            covered[w.core_top:w.core_top + w.core_height, w.core_left:w.core_left + w.core_width] += 1
            assert w.top <= w.core_top and w.core_top + w.core_height <= w.top + w.height
            assert w.top >= 0 and w.top + w.height <= height and w.left + w.width <= width
        assert (covered == 1).all() and len({(w.height, w.width) for w in plan.windows}) == 1


def test_cheapest_plan_prefers_whole_images_and_few_pixels() -> None:
    ctx = local(10)
    assert cheapest_plan(100, 100, ctx, lambda p: True, overlap=0, min_tile=8) == whole_plan(100, 100)
    plan = cheapest_plan(2048, 2048, ctx, lambda p: p.window_shape[0] * p.window_shape[1] <= 1200 * 1200,
                         overlap=0, min_tile=32)
    assert plan is not None and plan.mode == "paste" and plan.overcompute <= 1.1
    assert cheapest_plan(100, 100, ctx, lambda p: False, overlap=0, min_tile=32) is None


def test_auto_plan_runs_whole_when_it_fits_and_tiles_when_it_does_not() -> None:
    model = create_model("ecbsr_m4c8", scale=2, in_channels=3).eval()
    x = torch.rand(1, 3, 300, 300)
    plan, _ = plan_for(model, x, TileSettings(), torch.device("cpu"), "fp32")
    assert plan.mode == "whole"
    plan, batch = plan_for(model, x, TileSettings(max_memory=12 << 20), torch.device("cpu"), "fp32")
    assert plan.mode == "paste" and len(plan.windows) > 1 and batch >= 1
    tiled = upscale_tensor(model, x, TileSettings(max_memory=12 << 20))
    assert (tiled - upscale_tensor(model, x, tile=0)).abs().max() <= 1e-5


def test_non_local_models_tile_with_one_notice() -> None:
    model = create_model("imdn", scale=2, channels=16, num_blocks=2).eval()
    notices: list[str] = []
    x = torch.rand(1, 3, 300, 300)
    upscale_tensor(model, x, TileSettings(max_memory=30 << 20), notice=notices.append)
    assert len(notices) == 1 and "not local (global)" in notices[0]


def test_executor_batches_equal_shapes_in_order() -> None:
    calls = []

    def model(x: torch.Tensor) -> torch.Tensor:
        calls.append(x.shape[0])
        return x * 2

    patches = [torch.full((1, 1, 4, 4), float(i)) for i in range(5)] + [torch.zeros(1, 1, 3, 3)]
    outputs = list(run_batches(model, patches, max_batch=2, device=torch.device("cpu")))
    assert calls == [2, 2, 1, 1] and [first for first, _ in outputs] == [0, 2, 4, 5]
    assert torch.cat([o for _, o in outputs[:3]])[:, 0, 0, 0].tolist() == [0, 2, 4, 6, 8]


def test_training_mode_model_runs_in_eval_mode_and_is_restored() -> None:
    model = create_model("fmen_s", scale=2).train()  # BatchNorm: batch statistics would differ per tile
    x = torch.rand(1, 3, 20, 20)
    out = upscale_tensor(model, x)
    assert model.training
    with torch.no_grad():
        assert torch.allclose(out, model.eval()(x), atol=1e-6)


def test_descriptor_describes_and_calls(tmp_path: Path) -> None:
    model = create_model("rlfn_s", scale=2)
    path = save_checkpoint(model, tmp_path / "m.safetensors")
    d = load_model(path)
    assert (d.arch, d.scale, d.in_channels, d.out_channels, d.input_range) == ("rlfn_s", 2, 3, 3, 255.0)
    assert str(d.context).startswith("approximate(") and d.source.format.startswith("safetensors")
    assert not hasattr(d.model, "source") and not hasattr(d.model, "context")
    x = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        assert torch.equal(d(x), d.model(x))


@pytest.mark.reference
def test_rlfn_ntire_default_settings_equal_whole_image_on_a_photo() -> None:
    from leansr.data.image_io import read_image
    from leansr.engine import upscale_image_quantized

    d = load_model(shared_path("weights", "bytedance-RLFN", "rlfn_ntire_x4.pth"))
    plan, _ = plan_for(d, torch.zeros(1, 3, 576, 720), TileSettings(), torch.device("cpu"), "fp32")
    assert plan.mode == "whole"  # a 720x576 photo fits the default budget: never cut by default
    image = read_image(shared_path("data", "train", sorted(p.name for p in shared_path("data", "train").iterdir()
                                                              if p.suffix.lower() in (".png", ".jpg"))[0]))
    image.pixels = np.ascontiguousarray(image.pixels[:144, :180])  # a 180x144 crop keeps the test fast
    default = upscale_image_quantized(d, image).data.astype(int)
    whole = upscale_image_quantized(d, image, tile=0).data.astype(int)
    assert np.abs(default - whole).max() <= 1


def test_package_imports_form_no_cycle() -> None:
    root = Path(__file__).resolve().parents[1] / "src"
    graph: dict[str, set[str]] = {}
    for path in root.rglob("*.py"):
        module = ".".join(path.relative_to(root).with_suffix("").parts).removesuffix(".__init__")
        graph[module] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [f"{node.module}.{a.name}" for a in node.names]
                graph[module] |= {n if n in _modules(root) else node.module for n in names}
            elif isinstance(node, ast.Import):
                graph[module] |= {a.name for a in node.names}
    graph = {m: {d for d in deps if d.startswith("leansr") and d != m} for m, deps in graph.items()}
    cycle = _find_cycle(graph)
    assert cycle is None, " -> ".join(cycle)


def _modules(root: Path) -> set[str]:
    return {".".join(p.relative_to(root).with_suffix("").parts).removesuffix(".__init__") for p in root.rglob("*.py")}


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph.get(node, ())):
            if dep.startswith(node + "."):
                continue  # a package importing its own submodules (its __init__) is not a cycle
            if state.get(dep) == 1:
                return stack[stack.index(dep):] + [dep]
            if dep not in state and (found := visit(dep)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


@pytest.mark.slow
@pytest.mark.reference
@pytest.mark.parametrize("size,limit_gib", [((2000, 1500), 3.0), ((4000, 3000), 4.0)])
def test_rlfn_ntire_upscale_stays_in_bounded_memory(tmp_path: Path, size, limit_gib: float) -> None:
    import subprocess
    import sys

    import cv2

    weights = shared_path("weights", "bytedance-RLFN", "rlfn_ntire_x4.pth")
    photo = tmp_path / "photo.png"
    rng = np.random.default_rng(0)
    cv2.imwrite(str(photo), cv2.GaussianBlur(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8), (5, 5), 2))
    script = ("import resource, sys; from leansr.cli import main\n"
              f"code = main(['upscale', {str(photo)!r}, '-o', {str(tmp_path / 'out')!r}, '--weights', {str(weights)!r}])\n"
              "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss); sys.exit(code)\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    peak_gib = int(result.stdout.split()[-1]) / 2**20
    assert (tmp_path / "out" / "photo_x4.png").is_file()
    assert peak_gib < limit_gib, f"peak RSS {peak_gib:.2f} GiB"
