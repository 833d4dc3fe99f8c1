"""One flag name per meaning, options checked before work, outputs that cannot be written as one line with
exit 1 (issue 9: items 11, 12, 17, 18)."""

from __future__ import annotations

import errno
import json
import os

import numpy as np
import pytest
from PIL import Image

from leansr import __version__, create_model, save_checkpoint
from leansr.cli import main

FAST = ["--repeats", "1", "--warmup", "0", "--input-size", "8", "8", "--threads", "1", "--quiet"]


def _images(folder, count=2, size=(24, 24), seed=0):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(folder / f"img{i}.png")
    return folder


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("leansr: error: ") and "Traceback" not in err, err
    return err


def test_version(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0 and capsys.readouterr().out.strip() == f"leansr {__version__}"


@pytest.fixture
def checkpoint(tmp_path):
    return save_checkpoint(create_model("ecbsr_m4c8", scale=2, in_channels=3), tmp_path / "m.safetensors")


def test_convert_takes_o_and_overwrite_with_old_spellings_hidden(checkpoint, tmp_path, capsys):
    out = tmp_path / "c.safetensors"
    assert main(["convert", str(checkpoint), "-o", str(out)]) == 0
    assert main(["convert", str(checkpoint), "-o", str(out)]) == 2
    assert "pass --overwrite" in _one_error_line(capsys)
    assert main(["convert", str(checkpoint), "-o", str(out), "--overwrite"]) == 0
    assert main(["convert", str(checkpoint), str(out), "--force"]) == 0  # the old spelling still works
    assert main(["convert", str(checkpoint)]) == 2
    assert "give the output file once" in _one_error_line(capsys)
    from leansr.cli import build_parser

    helptext = build_parser("convert")._subparsers._group_actions[0].choices["convert"].format_help()
    assert "--overwrite" in helptext and "--force" not in helptext


def test_bench_repeatable_dataset_and_output_flag(tmp_path, capsys):
    a, b = _images(tmp_path / "SetA"), _images(tmp_path / "SetB", size=(20, 28), seed=1)
    out = tmp_path / "bench"
    assert main(["bench", "--models", "bicubic", *FAST, "--scale", "2", "--dataset", str(a), "--dataset", str(b),
                 "-o", str(out)]) == 0
    (record,) = json.loads((out / "report.json").read_text())
    assert set(record["datasets"]) == {"SetA", "SetB"} and record["psnr_y"] == record["datasets"]["SetA"]["psnr_y"]
    markdown = (out / "report.md").read_text()
    assert "PSNR-Y SetA" in markdown and "PSNR-Y SetB" in markdown
    printed = capsys.readouterr().out
    assert "bicubic" in printed and "PSNR SetA" in printed  # the row printed as the model finished


@pytest.mark.parametrize("options, message", [
    (["--input-size", "100000", "100000"], "is too large to benchmark"),
    (["--device", "mps"], "--device must be auto, cpu, cuda or cuda:N"),
    (["--device", "tpu:0"], "--device must be"),
    (["--scale", "0"], "--scale must be between 1 and 16"),
    (["--threads", "-3"], "--threads must be at least 1"),
])
def test_bench_refuses_impossible_options_before_work(tmp_path, capsys, options, message):
    args = ["bench", "--models", "bicubic", "--repeats", "1", "--warmup", "0", "--quiet", *options,
            "-o", str(tmp_path / "b")]
    assert main(args) == 2
    assert message in _one_error_line(capsys)
    assert not (tmp_path / "b").exists()


def test_bench_threads_huge_is_capped_with_one_note(tmp_path, capsys):
    args = ["bench", "--models", "bicubic", "--repeats", "1", "--warmup", "0", "--input-size", "8", "8",
            "--threads", "100000", "--quiet", "-o", str(tmp_path / "b")]
    assert main(args) == 0
    (record,) = json.loads((tmp_path / "b" / "report.json").read_text())
    assert 1 <= record["threads"] <= 4 * len(os.sched_getaffinity(0))
    assert "--threads 100000 capped to" in capsys.readouterr().err


def test_hr_smaller_than_the_scale(tmp_path, capsys):
    tiny = _images(tmp_path / "tiny", count=1, size=(3, 3))
    assert main(["evaluate", "--model", "bicubic", "--scale", "4", "--data", str(tiny), "--quiet"]) == 2
    assert "is too small for x4" in _one_error_line(capsys)
    assert main(["bench", "--models", "bicubic", *FAST, "--dataset", str(tiny), "-o", str(tmp_path / "b")]) == 2
    assert "is too small for x4" in _one_error_line(capsys)


def test_evaluate_output_flag_and_device(tmp_path, capsys):
    data = _images(tmp_path / "Set")
    out = tmp_path / "r.json"
    assert main(["evaluate", "--model", "bicubic", "--scale", "2", "--data", str(data), "-o", str(out)]) == 0
    assert json.loads(out.read_text())["scale"] == 2
    assert main(["evaluate", "--model", "bicubic", "--scale", "2", "--data", str(data), "--device", "mps"]) == 2
    _one_error_line(capsys)


# -- outputs that cannot be written: one line, exit 1, nothing partial --------------------------------------
@pytest.fixture
def afile(tmp_path):
    path = tmp_path / "afile"
    path.write_text("not a folder")
    return path


def test_output_under_a_file_is_exit_1_before_any_work(checkpoint, afile, tmp_path, capsys):
    data = _images(tmp_path / "Set")
    cases = [
        ["evaluate", "--model", "bicubic", "--scale", "2", "--data", str(data), "-o", str(afile / "r.json")],
        ["bench", "--models", "bicubic", *FAST, "-o", str(afile / "sub")],
        ["bench", "--models", "bicubic", *FAST, "-o", str(tmp_path / "b"), "--json", str(afile / "x.json")],
        ["convert", str(checkpoint), "-o", str(afile / "sub" / "c.safetensors")],
        ["deploy", "--weights", str(checkpoint), "-o", str(afile / "d.safetensors")],
        ["data", "prepare", str(data), "-o", str(afile / "sub"), "--scale", "2", "--sub-image", "8", "--step", "8"],
    ]
    for args in cases:
        assert main(args) == 1, args
        assert str(afile) in _one_error_line(capsys)
    assert afile.read_text() == "not a folder" and not (tmp_path / "b").exists()


def test_output_that_is_a_folder_is_refused(checkpoint, tmp_path, capsys):
    folder = tmp_path / "taken"
    folder.mkdir()
    assert main(["convert", str(checkpoint), "-o", str(folder), "--overwrite"]) == 1
    assert "it is a folder" in _one_error_line(capsys)


def test_disk_full_while_writing_leaves_no_partial_file(checkpoint, tmp_path, monkeypatch, capsys):
    import safetensors.torch

    def full(tensors, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"half")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), filename)

    monkeypatch.setattr(safetensors.torch, "save_file", full)
    out = tmp_path / "out"
    out.mkdir()
    assert main(["convert", str(checkpoint), "-o", str(out / "c.safetensors")]) == 1
    assert "No space left on device" in _one_error_line(capsys)
    assert list(out.iterdir()) == []


def test_evaluate_json_on_a_full_disk(tmp_path, monkeypatch, capsys):
    from pathlib import Path

    data = _images(tmp_path / "Set")
    real_write = Path.write_text

    def full(self, *args, **kwargs):
        if self.name.endswith(".tmp"):
            real_write(self, "{", )
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))
        return real_write(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", full)
    out = tmp_path / "res"
    out.mkdir()
    assert main(["evaluate", "--model", "bicubic", "--scale", "2", "--data", str(data), "-o", str(out / "r.json")]) == 1
    assert "No space left on device" in capsys.readouterr().err
    assert list(out.iterdir()) == []


def test_shell_runs_restart_once_with_huge_page_malloc(monkeypatch):
    from leansr import cli

    calls = []
    monkeypatch.delenv("GLIBC_TUNABLES", raising=False)
    monkeypatch.delenv("LEANSR_NO_HUGE_PAGES", raising=False)
    monkeypatch.setattr(cli.os, "execv", lambda exe, args: calls.append(args))
    monkeypatch.setattr(cli.sys, "platform", "linux")
    cli._restart_with_huge_pages(["list"])
    assert calls and calls[0][1:] == ["-m", "leansr", "list"]
    assert cli.os.environ["GLIBC_TUNABLES"] == cli.HUGE_PAGES
    cli._restart_with_huge_pages(["list"])  # the re-run sees the variable: no second restart
    assert len(calls) == 1
