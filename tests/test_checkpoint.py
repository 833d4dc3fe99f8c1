import os

import pytest
import torch

from leansr import create_model, load_model, save_checkpoint
from leansr.atomic import atomic_path
from leansr.checkpoint import read_state_dict
from leansr.errors import CheckpointError


class _Exploit:
    """Unpickling this would create a marker file; a safe loader must never run it."""

    marker = ""

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_pickled_code_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    _Exploit.marker = str(marker)
    path = tmp_path / "evil.pth"
    torch.save({"conv.weight": torch.zeros(1), "payload": _Exploit()}, path)
    with pytest.raises(CheckpointError, match="pickled code"):
        load_model(path)
    assert not marker.exists()


def test_missing_truncated_and_foreign_files_are_refused(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_model(tmp_path / "absent.pth")
    good = tmp_path / "good.pth"
    torch.save({"w": torch.ones(3)}, good)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(good.read_bytes()[:50])
    with pytest.raises(CheckpointError, match="cannot read"):
        load_model(truncated)
    text = tmp_path / "notes.pth"
    text.write_text("hello")
    with pytest.raises(CheckpointError):
        load_model(text)


def test_unknown_layout_says_what_it_found(tmp_path):
    path = tmp_path / "mystery.pth"
    torch.save({"encoder.layer0.weight": torch.zeros(2, 2)}, path)
    with pytest.raises(CheckpointError, match=r"unrecognised checkpoint layout \(1 tensors, keys like encoder"):
        load_model(path)


def test_container_keys_and_module_prefix_are_unwrapped(tmp_path):
    path = tmp_path / "wrapped.pth"
    state = {"module.a": torch.ones(1)}
    torch.save({"epoch": 3, "params_ema": state}, path)
    tensors, meta = read_state_dict(path)
    assert meta is None and list(tensors) == ["module.a"]


@pytest.mark.parametrize("name", ["bicubic"])
def test_safetensors_round_trip_keeps_metadata(tmp_path, name):
    model = create_model(name, scale=3)
    path = save_checkpoint(model, tmp_path / "m.safetensors")
    loaded = load_model(path)
    assert (loaded.arch, loaded.hparams, loaded.scale) == (model.arch, model.hparams, 3)


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("boom")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]


def test_safetensors_without_our_metadata_goes_through_detection(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "foreign.safetensors"
    save_file({"x.weight": torch.zeros(1)}, str(path))
    with pytest.raises(CheckpointError, match="unrecognised"):
        load_model(path)


def test_atomic_path_gives_umask_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        with atomic_path(tmp_path / "f.bin") as tmp:
            tmp.write_bytes(b"x")
    finally:
        os.umask(old)
    assert (tmp_path / "f.bin").stat().st_mode & 0o777 == 0o644
