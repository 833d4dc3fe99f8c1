"""ARM routing: edge score, tables, the official protocol against the authors' results, our budget routing."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import shared_path

from leansr import create_model, load_model
from leansr.arm.budget import Plan, choose, execute, run_budget, run_width, spans
from leansr.arm.edge import edge_score
from leansr.arm.official import psnr_rgb_official, run_official
from leansr.arm.table import QualityTable, load_table, smoothed
from leansr.data.image_io import read_rgb_uint8
from leansr.errors import LeansrError

FAST = [("arm-fsrcnn", "k=0.85"), ("arm-fsrcnn", "k=3.45"), ("arm-fsrcnn", "k=4.00")]
SLOW = [("arm-carn", "k=1.30"), ("arm-carn", "k=1.38"), ("arm-carn", "k=1.94")]


def _documented_edge_score(rgb: np.ndarray) -> float:
    """The score as arm_ghostsr.md documents it, written independently of OpenCV."""
    r, g, b = (rgb[..., i].astype(np.int64) for i in range(3))
    gray = (r * 9798 + g * 19235 + b * 3735 + (1 << 14)) >> 15  # OpenCV's fixed-point 0.299/0.587/0.114
    p = np.pad(gray, 1, mode="reflect")  # numpy "reflect" is OpenCV's reflect-101
    lap = 2 * (p[:-2, :-2] + p[:-2, 2:] + p[2:, :-2] + p[2:, 2:]) - 8 * p[1:-1, 1:-1]
    return float(np.minimum(np.abs(lap), 255).mean())


def test_edge_score_is_the_documented_laplacian():
    rng = np.random.default_rng(0)
    for patch in (rng.integers(0, 256, (32, 32, 3), dtype=np.uint8), np.full((32, 32, 3), 7, np.uint8),
                  np.kron(rng.integers(0, 256, (4, 4, 3)), np.ones((8, 8, 1))).astype(np.uint8)):
        assert edge_score(patch) == pytest.approx(_documented_edge_score(patch), abs=1e-12)


def _check_official(stem: str, key: str, names: list[str] | None = None) -> None:
    reference = json.loads(shared_path("reference", "arm_official_routing.json").read_text())[stem][key]
    model = load_model(shared_path("weights", "chenbong-ARM-Net", f"{stem}.pth")).model
    table = load_table(shared_path("reference", "arm_official_lut.json"), model.arch)
    k = float(key.removeprefix("k="))
    for name, expected in reference["per_image"].items():
        if names is not None and name not in names:
            continue
        folder, file = name.split("/")
        lr = read_rgb_uint8(shared_path("reference", "bicubic_lr", f"{folder}_x4", file))
        hr = read_rgb_uint8(shared_path("data", folder, file))
        result = run_official(model, lr, table, k)
        assert result.routes == expected["counts"], name
        assert result.choices.tolist() == expected["choices"], name
        assert list(result.sr.shape[:2]) == expected["covered_hr_shape"], name
        assert abs(psnr_rgb_official(result.sr, hr) - expected["psnr_rgb"]) < 0.01, name


@pytest.mark.reference
@pytest.mark.parametrize("stem,key", FAST)
def test_official_routing_reproduces_the_authors_fsrcnn(stem, key):
    _check_official(stem, key)


@pytest.mark.reference
def test_official_routing_reproduces_the_authors_carn_on_set5():
    _check_official("arm-carn", "k=1.30", [f"Set5/{n}" for n in ("bird.png", "head.png", "woman.png")])


@pytest.mark.slow
@pytest.mark.reference
@pytest.mark.parametrize("stem,key", SLOW)
def test_official_routing_reproduces_the_authors_carn(stem, key):
    _check_official(stem, key)


def test_table_lookup_is_nearest_centre_and_checks_the_model():
    table = QualityTable(np.array([1.0, 3.0, 5.0]), np.zeros((4, 3)), np.ones(3), official_costs=(0, 1, 2, 3))
    assert table.bins(np.array([0.0, 2.0, 2.01, 4.9, 99.0])).tolist() == [0, 0, 1, 2, 2]  # ties: first
    with pytest.raises(LeansrError, match="3 routes"):
        QualityTable(table.centers, np.zeros((3, 3)), np.ones(3)).check_fits("arm_carn", (0, 36, 52, 64), [0] * 4)


@pytest.mark.reference
def test_a_lut_for_another_model_is_refused():
    lut = shared_path("reference", "arm_official_lut.json")
    fsrcnn_table = QualityTable.from_json(json.loads(lut.read_text())["fsrcnn"], source="fsrcnn table")
    with pytest.raises(LeansrError, match="for another model"):
        fsrcnn_table.check_fits("arm_carn", (0, 36, 52, 64), [0.0, 380215296.0, 771563520.0, 1154875392.0])


def test_smoothed_tables_are_monotone_in_edge_and_width():
    mse = np.array([[1.0, 5.0, 4.0, 9.0], [2.0, 3.0, 3.5, 8.0], [0.5, 3.2, 2.0, 9.5]])
    out = smoothed(mse, np.array([1, 1, 3, 1]))
    assert np.all(np.diff(out, axis=1) >= 0) and np.all(np.diff(out, axis=0) <= 0)
    assert out[0].tolist() == [1.0, 4.25, 4.25, 9.0]  # the violating pair pooled by weight


def test_spans_cover_every_pixel_with_equal_windows():
    for length in (7, 48, 49, 130):
        cores, window = spans(length, 48, 2)
        assert window == min(length, 52)
        assert [c.start for c in cores] == list(range(0, length, 48)) and cores[-1].stop == length
        assert all(0 <= c.window <= c.start and c.stop <= c.window + window <= length for c in cores)


def test_choose_meets_the_budget_at_least_loss():
    rng = np.random.default_rng(1)
    mse = np.sort(rng.uniform(1, 100, (4, 50)), axis=0)[::-1]  # wider = lower MSE
    costs = np.array([0.0, 1.0, 2.0, 3.0])
    for limit in (0.0, 30.0, 75.0, 150.0):
        choice = choose(mse, np.ones(50), costs, limit)
        assert costs[choice].sum() <= limit
    assert (choose(mse, np.ones(50), costs, 150.0) == 3).all()


def test_choose_finds_the_best_multiplier_there_is():
    rng = np.random.default_rng(5)
    mse = np.sort(rng.uniform(1, 100, (4, 30)), axis=0)[::-1]
    costs = np.array([0.0, 1.0, 2.0, 3.0])
    loss = mse * np.ones(30)[None, :]
    for limit in (20.0, 45.0, 70.0):
        choice = choose(mse, np.ones(30), costs, limit)
        picks = [np.argmin(loss + lam * costs[:, None], axis=0) for lam in np.geomspace(1e-3, 1e3, 4000)]
        fitting = [loss[p, np.arange(30)].sum() for p in picks if costs[p].sum() <= limit]
        assert costs[choice].sum() <= limit and loss[choice, np.arange(30)].sum() <= min(fitting) + 1e-9


def _tiny_table(model) -> QualityTable:
    centers = np.array([0.0, 50.0, 100.0])
    mse = np.array([[1.0, 60.0, 200.0], [1.0, 40.0, 150.0], [1.0, 35.0, 130.0], [1.0, 33.0, 120.0]])
    return QualityTable(centers, 10 * np.log10(255**2 / mse), np.ones(3), mse, routes=model.routes)


def test_tiles_with_halos_have_no_seams():
    torch.manual_seed(0)
    model = create_model("arm_fsrcnn").eval()
    lr = (np.random.default_rng(2).random((37, 61, 3)) * 255).astype(np.uint8)
    rows, _ = spans(37, 16, 8)
    cols, _ = spans(61, 16, 8)
    # FSRCNN sees 8 LR px around: a halo of 8 is exact, for single tiles as for runs of tiles.
    whole = {w: run_width(model, lr, w).sr for w in (36, 56)}
    for choices in (np.full(12, 3), np.array([3, 2, 2, 3, 2, 3, 3, 3, 3, 2, 2, 2])):
        tiled = execute(model, lr, Plan(rows, cols, 8, 37, 61, choices))
        assert tiled.shape == (148, 244, 3)
        for (r, c), route in zip([(r, c) for r in rows for c in cols], choices):
            core = np.s_[r.start * 4:r.stop * 4, c.start * 4:c.stop * 4]
            assert np.abs(tiled[core] - whole[model.routes[route]][core]).max() <= 1.0  # float, then 8 bits


def test_budget_routing_covers_the_image_within_budget():
    torch.manual_seed(0)
    model = create_model("arm_fsrcnn").eval()
    lr = (np.random.default_rng(3).random((100, 120, 3)) * 255).astype(np.uint8)
    lr[:, :60] = 128  # flat half: bicubic is as good there
    table = _tiny_table(model)
    assert run_budget(model, lr, table, 1.0, tile=48).routes == [0, 0, 0, 9]  # whole image at full width
    cheap = run_budget(model, lr, table, 0.5, tile=16, halo=2)
    assert cheap.sr.shape == (400, 480, 3) and sum(cheap.routes) == 7 * 8
    assert cheap.cost_fraction <= 0.5 and 0 < cheap.routes[0] < 56
    assert (cheap.choices[:, :3] == 0).all() and (cheap.choices[:-1, 4:-1] > 0).all()  # flat: bicubic
    x = torch.from_numpy(lr).permute(2, 0, 1)[None].float() / 255
    bicubic = F.interpolate(x, scale_factor=4, mode="bicubic", align_corners=False)[0].clamp(0, 1)
    bicubic = np.floor(bicubic.permute(1, 2, 0).double().numpy() * 255 + 0.5)
    for (t, l, h, w), route in zip(cheap.boxes, cheap.choices.ravel()):
        if route == 0:
            assert np.array_equal(cheap.sr[t:t + h, l:l + w], bicubic[t:t + h, l:l + w])


def test_time_costs_are_measured_per_route():
    from leansr.arm.timing import call_times, route_times

    model = create_model("arm_fsrcnn").eval()
    times = route_times(model, (20, 20), torch.device("cpu"))
    assert len(times) == 4 and all(t > 0 for t in times) and times[-1] > times[0]
    calls = call_times(model, (20, 20), torch.device("cpu"))
    assert len(calls) == 4 and all(c >= 0 for c in calls)
    lr = (np.random.default_rng(4).random((40, 40, 3)) * 255).astype(np.uint8)
    result = run_budget(model, lr, _tiny_table(model), 0.5, cost="time", tile=16, halo=2)
    assert result.sr.shape == (160, 160, 3) and sum(result.routes) == 9


def test_windows_cover_each_tile_once_and_window_pixels_and_calls_count_them():
    rows, _ = spans(70, 16, 2)
    cols, _ = spans(75, 16, 2)
    rng = np.random.default_rng(0)
    stacked = 0
    for trial in range(40):
        choices = rng.integers(0, 3 if trial < 20 else 2, len(rows) * len(cols))
        plan = Plan(rows, cols, 2, 70, 75, choices, 3)
        grid, seen, expected = choices.reshape(len(rows), len(cols)), np.zeros((len(rows), len(cols))), np.zeros(3)
        sizes = set()
        for win in plan.windows():
            assert (grid[win.top:win.bottom + 1, win.first:win.last + 1] == win.route).all()
            seen[win.top:win.bottom + 1, win.first:win.last + 1] += 1
            top, bottom, left, right = plan.box(win)
            assert top == max(rows[win.top].start - 2, 0) and right == min(cols[win.last].stop + 2, 75)
            expected[win.route] += (bottom - top) * (right - left)
            sizes.add((win.route, bottom - top, right - left))
            stacked += win.bottom > win.top
        assert (seen == 1).all()
        assert np.allclose(plan.window_pixels(), expected)
        assert plan.calls().tolist() == np.bincount([route for route, _, _ in sizes], minlength=3).tolist()
        assert all(np.array_equal(a, b) for a, b in zip(plan.usage(), (plan.window_pixels(), plan.calls())))
    assert stacked > 0  # the two-route trials stack runs
