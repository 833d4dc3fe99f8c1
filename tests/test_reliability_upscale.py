"""Reliability of `leansr upscale` and of loading: nothing replaced, nothing left behind, hostile files refused."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image as PILImage

from leansr import create_model, load_model, save_checkpoint
from leansr.atomic import atomic_path
from leansr.cli import Terminated, main
from leansr.data import image_io
from leansr.data.image_io import read_image
from leansr.errors import CheckpointError

BICUBIC_X2 = ["--model", "bicubic", "--scale", "2"]


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    path = folder / "a.png"
    PILImage.fromarray(np.random.default_rng(0).integers(0, 256, (12, 16, 3), dtype=np.uint8)).save(path)
    return path


def _err_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


# --- outputs: claimed exclusively, never replaced, nothing left behind -----------------------------------

def test_an_output_that_appears_meanwhile_is_not_replaced(photo: Path, tmp_path: Path, monkeypatch, capsys):
    out = tmp_path / "out"
    real_write = image_io.write_pixels

    def another_run_got_there_first(path, *args, **kwargs):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_bytes(b"the other run's result")
        return real_write(path, *args, **kwargs)

    monkeypatch.setattr("leansr.commands.upscale.write_pixels", another_run_got_there_first)
    assert main(["upscale", str(photo), "-o", str(out), *BICUBIC_X2]) == 1
    assert "appeared while it was being made" in _err_line(capsys)
    assert (out / "a_x2.png").read_bytes() == b"the other run's result"
    assert [p.name for p in out.iterdir()] == ["a_x2.png"]  # no temp file left


def test_two_concurrent_runs_into_one_folder_keep_every_result(tmp_path: Path):
    folder = tmp_path / "in"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for i in range(6):
        PILImage.fromarray(rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    out = tmp_path / "out"
    command = [sys.executable, "-m", "leansr", "upscale", str(folder), "-o", str(out), *BICUBIC_X2]
    runs = [subprocess.Popen(command, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    errors = [run.communicate(timeout=120)[1] for run in runs]
    assert all("Traceback" not in e for e in errors)
    assert sorted(p.name for p in out.iterdir()) == [f"{i}_x2.png" for i in range(6)]
    for i in range(6):
        assert read_image(out / f"{i}_x2.png").pixels.shape == (80, 100, 3)


def test_rerun_skips_finished_outputs_and_completes_the_rest(photo: Path, tmp_path: Path, capsys):
    PILImage.fromarray(np.zeros((10, 10, 3), np.uint8)).save(photo.parent / "b.png")
    out = tmp_path / "out"
    assert main(["upscale", str(photo), "-o", str(out), *BICUBIC_X2]) == 0
    first = (out / "a_x2.png").stat().st_mtime_ns
    capsys.readouterr()
    assert main(["upscale", str(photo.parent), "-o", str(out), *BICUBIC_X2]) == 0
    assert "1 done already; --overwrite to redo" in capsys.readouterr().err
    assert (out / "a_x2.png").stat().st_mtime_ns == first and (out / "b_x2.png").is_file()


def test_sigterm_during_a_write_leaves_no_temp_file(photo: Path, tmp_path: Path, monkeypatch, capsys):
    def terminated_mid_write(tmp, *args, **kwargs):
        Path(tmp).write_bytes(b"half")
        raise Terminated()

    monkeypatch.setattr(image_io, "_write_cv2", terminated_mid_write)
    out = tmp_path / "out"
    assert main(["upscale", str(photo), "-o", str(out), *BICUBIC_X2]) == 143
    assert "terminated" in capsys.readouterr().err
    assert list(out.iterdir()) == []


def test_a_real_sigterm_is_handled_like_ctrl_c(tmp_path: Path):
    script = ("import os, signal, sys\nfrom leansr.cli import main\nimport leansr.commands.upscale as u\n"
              "u.run = lambda args: os.kill(os.getpid(), signal.SIGTERM)\n"
              "sys.exit(main(['upscale', 'x.png', '-o', 'out']))\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 143 and "terminated" in result.stderr and "Traceback" not in result.stderr


def test_failed_final_rename_leaves_no_complete_temp_file(tmp_path: Path, monkeypatch):
    def failing_replace(src, dst):
        raise OSError("rename failed")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError):
        with atomic_path(tmp_path / "x.bin") as tmp:
            tmp.write_bytes(b"complete")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("suffix", ["/../../x", "../x", "a/b", "..", "x\\..\\y"])
def test_suffix_cannot_leave_the_output_folder(photo: Path, tmp_path: Path, capsys, suffix: str):
    assert main(["upscale", str(photo), "-o", str(tmp_path / "out"), *BICUBIC_X2, "--suffix", suffix]) == 2
    assert "--suffix" in _err_line(capsys)
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob("*x*.png"))


# --- everyday habits: one file, recursion, pipes, outscale, ext --------------------------------------------

def test_single_input_to_a_file_name(photo: Path, tmp_path: Path):
    target = tmp_path / "result.png"
    assert main(["upscale", str(photo), "-o", str(target), *BICUBIC_X2]) == 0
    assert read_image(target).pixels.shape == (24, 32, 3)


def test_recursive_keeps_sub_folders(photo: Path, tmp_path: Path):
    nested = photo.parent / "sub" / "deeper"
    nested.mkdir(parents=True)
    PILImage.fromarray(np.zeros((8, 8, 3), np.uint8)).save(nested / "c.png")
    out = tmp_path / "out"
    assert main(["upscale", str(photo.parent), "-o", str(out), *BICUBIC_X2]) == 0
    assert not (out / "sub").exists()
    assert main(["upscale", str(photo.parent), "-o", str(out), "--recursive", *BICUBIC_X2]) == 0
    assert (out / "sub" / "deeper" / "c_x2.png").is_file()


def test_stdin_to_stdout(photo: Path):
    result = subprocess.run([sys.executable, "-m", "leansr", "upscale", "-", "-o", "-", *BICUBIC_X2],
                            input=photo.read_bytes(), capture_output=True)
    assert result.returncode == 0, result.stderr
    assert PILImage.open(io.BytesIO(result.stdout)).size == (32, 24)


def test_outscale_and_ext(photo: Path, tmp_path: Path):
    out = tmp_path / "out"
    assert main(["upscale", str(photo), "-o", str(out), *BICUBIC_X2, "--outscale", "1.5", "--ext", "jpg"]) == 0
    assert PILImage.open(out / "a_x1.5.jpg").size == (24, 18)


@pytest.mark.parametrize("options,message", [
    (["--outscale", "0"], "above 0"),
    (["--max-memory", "lots"], "size like 2G"),
    (["--max-memory", "1M"], "at least 16M"),
])
def test_bad_new_options_exit_2_with_one_line(photo: Path, tmp_path: Path, capsys, options, message):
    with pytest.raises(SystemExit) as exit_info:
        main(["upscale", str(photo), "-o", str(tmp_path / "o"), *options])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


# --- hostile or broken checkpoints ----------------------------------------------------------------------

def test_non_finite_weights_are_refused_naming_the_tensor(tmp_path: Path):
    model = create_model("rlfn_s", scale=2)
    with torch.no_grad():
        model.conv_2.weight[0, 0, 0, 0] = float("nan")
    path = save_checkpoint(model, tmp_path / "nan.safetensors")
    with pytest.raises(CheckpointError, match="non-finite value.*conv_2.weight"):
        load_model(path)
    torch.save(model.state_dict(), tmp_path / "inf.pth")
    with pytest.raises(CheckpointError, match="non-finite"):
        load_model(tmp_path / "inf.pth")


def test_non_finite_output_is_an_error_not_an_image(photo: Path, tmp_path: Path, monkeypatch, capsys):
    model = create_model("ecbsr_m4c8", scale=2, in_channels=3)
    path = save_checkpoint(model, tmp_path / "m.safetensors")
    monkeypatch.setattr("leansr.models.ecbsr.ECBSR.forward_sr", lambda self, x: torch.full(
        (x.shape[0], x.shape[1], x.shape[2] * 2, x.shape[3] * 2), float("nan")))
    assert main(["upscale", str(photo), "-o", str(tmp_path / "out"), "--weights", str(path)]) == 1
    assert "non-finite" in _err_line(capsys)
    assert not list((tmp_path / "out").glob("*.png")) if (tmp_path / "out").exists() else True


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the memory peak from /proc (Linux)")
def test_oversized_layer_is_refused_before_allocating(tmp_path: Path):
    state = create_model("rlfn_ntire").state_dict()
    state["conv_1.weight"] = torch.zeros(3000, 3, 3, 3)
    state["conv_1.bias"] = torch.zeros(3000)
    torch.save(state, tmp_path / "big.pth")
    # The peak of this process's own memory (VmHWM): ru_maxrss would also count the pytest worker it was
    # forked from, which rusage carries across exec, and made this test depend on what ran before it.
    script = ("import sys\nfrom leansr import load_model\n"
              "try:\n    load_model(sys.argv[1])\nexcept Exception as e:\n    print(type(e).__name__, e)\n"
              "print([l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')][0])\n")
    result = subprocess.run([sys.executable, "-c", script, str(tmp_path / "big.pth")], capture_output=True,
                            text=True, check=True)
    message, peak_kib = result.stdout.rsplit("\n", 2)[-3], int(result.stdout.split()[-1])
    assert message.startswith("CheckpointError")
    assert peak_kib < 1.5 * 2**20  # well under the ~6 GB a 3000-channel RLFN would take


@pytest.mark.parametrize("hparams", [{"channels": 300000}, {"mid_channels": -4}, {"num_blocks": "six"},
                                     {"no_such_argument": 1}])
def test_hostile_metadata_is_refused_in_one_sentence(tmp_path: Path, hparams):
    from safetensors.torch import save_file

    model = create_model("rlfn_s", scale=2)
    meta = {"arch": "rlfn_s", "hparams": {**model.hparams, **hparams}, "scale": 2}
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "m.safetensors"),
              metadata={"leansr": json.dumps(meta)})
    with pytest.raises(CheckpointError) as info:
        load_model(tmp_path / "m.safetensors")
    assert "\n" not in str(info.value)


def test_unknown_arch_in_metadata_is_one_sentence(tmp_path: Path):
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(1)}, str(tmp_path / "m.safetensors"),
              metadata={"leansr": json.dumps({"arch": "gpt5", "hparams": {}})})
    with pytest.raises(CheckpointError, match="'gpt5' checkpoint, a model this version of leansr does not know"):
        load_model(tmp_path / "m.safetensors")
