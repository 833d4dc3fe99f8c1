"""Benchmark reports: report.md / report.csv / report.json and the PNG plots, from per-model records."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from leansr.bench.stats import spearman
from leansr.bench.timing import SPREAD_WARNING
from leansr.atomic import atomic_path

# Cost measures correlated with runtime, by record key -> label.
COST_METRICS = {
    "params": "params",
    "macs": "MACs",
    "activations": "activations",
    "peak_memory_mb": "memory",
    "conv": "#conv",
}
MIN_MODELS_FOR_SROCC = 3

_CSV_COLUMNS = (
    ("name", lambda r: r["name"]),
    ("params", lambda r: r["params"]),
    ("gmacs", lambda r: _fixed(r["macs"] / 1e9, 4)),
    ("challenge_gflops", lambda r: _fixed(r["challenge"]["flops"] / 1e9, 4)),
    ("activations_m", lambda r: _fixed(r["activations"] / 1e6, 4)),
    ("conv", lambda r: r["conv"]),
    ("challenge_conv", lambda r: r["challenge"]["conv"]),
    ("peak_memory_mb", lambda r: _fixed(r["peak_memory_mb"], 2)),
    ("runtime_median_ms", lambda r: _fixed(r["runtime_ms"]["median"], 3)),
    ("runtime_iqr_ms", lambda r: _fixed(r["runtime_ms"]["iqr"], 3)),
    ("threads", lambda r: r["threads"]),
    ("device", lambda r: r["device"]),
    ("psnr_y", lambda r: _fixed(r.get("psnr_y"), 4)),
    ("ssim_y", lambda r: _fixed(r.get("ssim_y"), 4)),
)


@dataclass
class BenchReport:
    records: list[dict[str, Any]]
    machine: dict[str, Any]
    command: str
    notes: list[str] = field(default_factory=list)  # skipped models, noisy timings, ...


def runtime_srocc(records: Sequence[dict[str, Any]]) -> dict[str, float] | None:
    """SROCC of each cost measure against median runtime; None with fewer than 3 models."""
    if len(records) < MIN_MODELS_FOR_SROCC:
        return None
    runtime = [r["runtime_ms"]["median"] for r in records]
    return {key: spearman([r[key] for r in records], runtime) for key in COST_METRICS}


def srocc_matrix(records: Sequence[dict[str, Any]]) -> tuple[list[str], list[list[float]]]:
    columns = {label: [r[key] for r in records] for key, label in COST_METRICS.items()}
    columns["runtime"] = [r["runtime_ms"]["median"] for r in records]
    labels = list(columns)
    return labels, [[spearman(columns[a], columns[b]) for b in labels] for a in labels]


def write_report(report: BenchReport, out_dir: Path) -> list[Path]:
    """Write every output into `out_dir`; returns the paths written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [_write_json(report.records, out_dir / "report.json"), _write_csv(report.records, out_dir / "report.csv")]
    plots, plot_notes = _write_plots(report.records, out_dir)
    written += plots
    with atomic_path(out_dir / "report.md") as tmp:
        tmp.write_text(render_markdown(report, [p.name for p in plots], plot_notes))
    return [out_dir / "report.md", *written]


def write_json(records: Sequence[dict[str, Any]], path: Path) -> Path:
    return _write_json(records, path)


def _write_json(records: Sequence[dict[str, Any]], path: Path) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(list(records), indent=2) + "\n")
    return path


def _write_csv(records: Sequence[dict[str, Any]], path: Path) -> Path:
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow([name for name, _ in _CSV_COLUMNS])
            for record in records:
                writer.writerow([value(record) for _, value in _CSV_COLUMNS])
    return path


def _write_plots(records: Sequence[dict[str, Any]], out_dir: Path) -> tuple[list[Path], list[str]]:
    from leansr.bench.plots import plot_correlation_heatmap, plot_quality_vs_cost  # matplotlib: only to draw

    written, notes = [], []
    rated = [r for r in records if r.get("psnr_y") is not None]
    if rated:
        names, psnr = [display_name(r) for r in rated], [r["psnr_y"] for r in rated]
        runtime = [r["runtime_ms"]["median"] for r in rated]
        gmacs = [r["macs"] / 1e9 for r in rated]
        where = _plot_subject(rated)
        written.append(plot_quality_vs_cost(names, runtime, psnr, xlabel="runtime per LR input [ms] (median)",
                                            title=f"PSNR-Y vs runtime: {where}", path=out_dir / "psnr_vs_runtime.png"))
        written.append(plot_quality_vs_cost(names, gmacs, psnr, xlabel="GMACs per LR input",
                                            title=f"PSNR-Y vs MACs: {where}", path=out_dir / "psnr_vs_macs.png"))
    else:
        notes.append("No PSNR plots: no dataset was given (`--dataset DIR`), so there is no PSNR to plot.")
    if len(records) >= MIN_MODELS_FOR_SROCC:
        labels, matrix = srocc_matrix(records)
        written.append(plot_correlation_heatmap(labels, matrix, title="Spearman rank correlation (SROCC)",
                                                path=out_dir / "srocc.png"))
    else:
        notes.append(f"No SROCC heat map: it needs at least {MIN_MODELS_FOR_SROCC} models.")
    return written, notes


def _plot_subject(records: Sequence[dict[str, Any]]) -> str:
    """"Set5, x4, 256x256 LR input": what the plotted PSNR and costs were measured on."""
    dataset = Path(str(records[0].get("dataset", "?"))).name
    scales = "/".join(f"x{s}" for s in sorted({int(r["scale"]) for r in records}))
    h, w = records[0]["input_size"]
    return f"{dataset}, {scales}, cost at {h}x{w} LR"


def progress_header(record: dict[str, Any]) -> str:
    head = f"{'model':<28} {'params':>10} {'GMACs':>8} {'runtime ms':>11}"
    return head + "".join(f" {('PSNR ' + name)[:12]:>12}" for name in record.get("datasets", {}))


def progress_row(record: dict[str, Any]) -> str:
    """One line per measured model, printed while the next one runs."""
    row = (f"{display_name(record)[:28]:<28} {record['params']:>10,} {record['macs'] / 1e9:>8.2f} "
           f"{record['runtime_ms']['median']:>11.2f}")
    return row + "".join(f" {v['psnr_y']:>12.2f}" for v in record.get("datasets", {}).values())


def render_markdown(report: BenchReport, plot_names: Sequence[str], plot_notes: Sequence[str]) -> str:
    lines = ["# leansr bench", "", f"Command: `{report.command}`", "", "## Machine and settings", ""]
    lines += [f"- {key}: {value}" for key, value in report.machine.items()]
    lines += ["", "## Results", "", *metrics_table(report.records), ""]
    lines += [
        "MACs: every multiply-accumulate kernel counted at the aten level (convolutions, matmuls, linears, "
        "functional or module). Challenge GFLOPs: the AIM/NTIRE script's count (nn.Conv2d/ConvTranspose2d/"
        "Linear MACs plus one per ReLU-family module output element). Activations: elements of every "
        "convolution output. Runtime: median and interquartile range over the repeats. See docs/metrics.md.",
        "",
    ]
    srocc = runtime_srocc(report.records)
    lines += ["## Rank correlation with runtime (SROCC)", ""]
    if srocc is None:
        lines += [f"Not computed: needs at least {MIN_MODELS_FOR_SROCC} models, got {len(report.records)}.", ""]
    else:
        lines += ["| measure | SROCC vs runtime |", "|---|---|"]
        lines += [f"| {COST_METRICS[key]} | {value:.3f} |" for key, value in srocc.items()]
        lines += [""]
    lines += ["## Plots", ""]
    lines += [f"- `{name}`" for name in plot_names] + [f"- {note}" for note in plot_notes] + [""]
    notes = list(report.notes) + _noisy_notes(report.records)
    if notes:
        lines += ["## Notes", "", *[f"- {note}" for note in notes], ""]
    return "\n".join(lines)


def metrics_table(records: Sequence[dict[str, Any]]) -> list[str]:
    """The markdown results table (also used for docs)."""
    with_psnr = any(r.get("psnr_y") is not None for r in records)
    datasets = list(dict.fromkeys(name for r in records for name in r.get("datasets", {})))
    header = ("| model | params [M] | GMACs | challenge GFLOPs | acts [M] | #conv | peak mem [MB] "
              "| runtime [ms] | IQR [ms] |")
    rule = "|---|---|---|---|---|---|---|---|---|"
    if len(datasets) > 1:
        header += "".join(f" PSNR-Y {d} | SSIM-Y {d} |" for d in datasets)
        rule += "---|---|" * len(datasets)
    elif with_psnr:
        header, rule = header + " PSNR-Y | SSIM-Y |", rule + "---|---|"
    rows = [header, rule]
    for r in records:
        flag = " (!)" if r.get("runtime_noisy") else ""
        row = (f"| {display_name(r)} | {r['params'] / 1e6:.3f} | {r['macs'] / 1e9:.2f} "
               f"| {r['challenge']['flops'] / 1e9:.2f} | {r['activations'] / 1e6:.2f} | {r['conv']} "
               f"| {r['peak_memory_mb']:.1f} | {r['runtime_ms']['median']:.2f}{flag} "
               f"| {r['runtime_ms']['iqr']:.2f} |")
        if len(datasets) > 1:
            for d in datasets:
                m = r.get("datasets", {}).get(d, {})
                row += f" {_fixed(m.get('psnr_y'), 2) or '-'} | {_fixed(m.get('ssim_y'), 4) or '-'} |"
        elif with_psnr:
            row += f" {_fixed(r.get('psnr_y'), 2) or '-'} | {_fixed(r.get('ssim_y'), 4) or '-'} |"
        rows.append(row)
    return rows


def display_name(record: dict[str, Any]) -> str:
    """The model's name, with its architecture when they differ (checkpoint stems)."""
    arch = record.get("arch", record["name"])
    return record["name"] if arch == record["name"] else f"{record['name']} [{arch}]"


def _noisy_notes(records: Sequence[dict[str, Any]]) -> list[str]:
    return [
        f"(!) {r['name']}: runtime spread IQR/median = {r['runtime_ms']['iqr'] / r['runtime_ms']['median']:.0%} "
        f"> {SPREAD_WARNING:.0%}; the machine was busy or the repeats too few."
        for r in records
        if r.get("runtime_noisy")
    ]


def _fixed(value: float | None, digits: int) -> str:
    return "" if value is None else f"{value:.{digits}f}"
