"""Hostile or broken checkpoint files get one sentence of ours; `leansr train` checkpoints load everywhere
(issue 9: items 10 and 14)."""

from __future__ import annotations

import json
import random

import pytest
import torch
from safetensors.torch import save_file
from train_helpers import tiny_config, write_images

from leansr import create_model, load_model
from leansr.checkpoint import read_state_dict
from leansr.cli import main
from leansr.errors import CheckpointError
from leansr.train import checkpoints
from leansr.train.trainer import Trainer

_TORCH_ADVICE = "weights_only"


def _write(path, data: bytes):
    path.write_bytes(data)
    return path


def _noise(size: int) -> bytes:
    return random.Random(size).randbytes(size)


def _tiny_tensors():
    model = create_model("ecbsr_m4c8", scale=2, in_channels=3)
    return {k: v.contiguous() for k, v in model.state_dict().items()}


def _leansr_safetensors(path, meta):
    save_file(_tiny_tensors(), str(path), metadata={"leansr": meta if isinstance(meta, str) else json.dumps(meta)})
    return path


GOOD_META = {"format_version": 1, "arch": "ecbsr_m4c8", "hparams": {"scale": 2, "in_channels": 3}}


@pytest.mark.parametrize("name, make, message", [
    ("empty.pth", lambda p: _write(p, b""), "is empty"),
    # Seeded noise, first byte fixed: one random file in 256 would start with the pickle marker 0x80.
    ("random.pth", lambda p: _write(p, b"R" + _noise(4095)), "is not a PyTorch or safetensors checkpoint"),
    ("random_pickle.pth", lambda p: _write(p, b"\x80" + _noise(4095)), "cannot read checkpoint"),
    ("zeros.pth", lambda p: _write(p, bytes(1 << 20)), "is not a PyTorch or safetensors checkpoint"),
    ("text.pth", lambda p: _write(p, b"hello"), "is not a PyTorch or safetensors checkpoint"),
    ("zip_header_only.pth", lambda p: _write(p, b"PK\x03\x04" + bytes(60)), "the file is"),
    ("empty_dict.pth", lambda p: torch.save({}, p), "holds no state dict of tensors"),
    ("list.pth", lambda p: torch.save([1, 2], p), "holds no state dict of tensors"),
    ("tensor.pth", lambda p: torch.save(torch.zeros(3), p), "holds no state dict of tensors"),
    ("fake.safetensors", lambda p: _write(p, b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all"),
     "cannot read safetensors file"),
    ("meta_not_json.safetensors", lambda p: _leansr_safetensors(p, "{arch: oops"), "not valid JSON"),
    ("meta_list.safetensors", lambda p: _leansr_safetensors(p, [1, 2]), "without arch and hparams"),
    ("meta_arch_int.safetensors", lambda p: _leansr_safetensors(p, {**GOOD_META, "arch": 5}),
     "arch must be a name"),
    ("meta_hparams_list.safetensors", lambda p: _leansr_safetensors(p, {**GOOD_META, "hparams": [1]}),
     "hparams a mapping"),
    ("meta_hparams_nested.safetensors",
     lambda p: _leansr_safetensors(p, {**GOOD_META, "hparams": {"scale": {"x": 1}}}), "supports scales"),
    ("meta_deployed_str.safetensors", lambda p: _leansr_safetensors(p, {**GOOD_META, "deployed": "yes"}),
     "deployed must be true or false"),
    ("meta_unknown_act.safetensors",
     lambda p: _leansr_safetensors(p, {**GOOD_META, "hparams": {"scale": 2, "in_channels": 3, "act": "gelu"}}),
     "act must be one of"),
    ("meta_unknown_arg.safetensors",
     lambda p: _leansr_safetensors(p, {**GOOD_META, "hparams": {"scale": 2, "colour": 3}}), "bad arguments"),
    ("meta_unknown_arch.safetensors", lambda p: _leansr_safetensors(p, {**GOOD_META, "arch": "nope"}),
     "a model this version of leansr does not know"),
])
def test_broken_files_get_one_sentence_of_ours(tmp_path, capsys, name, make, message):
    path = tmp_path / name
    make(path)
    with pytest.raises(Exception) as info:
        load_model(path)
    assert message in str(info.value)
    assert "\n" not in str(info.value) and _TORCH_ADVICE not in str(info.value)
    # The same through the CLI: one line, exit 2, nothing written.
    out = tmp_path / "out.safetensors"
    assert main(["convert", str(path), str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and _TORCH_ADVICE not in err
    assert not out.exists()


def test_the_good_metadata_loads(tmp_path):
    model = load_model(_leansr_safetensors(tmp_path / "ok.safetensors", GOOD_META))
    assert model.arch == "ecbsr_m4c8" and model.scale == 2


# -- training checkpoints ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("run")
    train_dir, val = base / "hr", base / "val"
    write_images(train_dir, count=3, size=(48, 56))
    write_images(val, count=1, size=(32, 36), seed=3)
    run = base / "run"
    trainer = Trainer(tiny_config(train_dir, run, f"data.val={val}", "val_every=3"), run)
    trainer.train()
    return run, trainer, val


def test_training_checkpoints_load_with_ema_weights(finished_run):
    run, trainer, _ = finished_run
    found = checkpoints.list_checkpoints(run)
    assert found and (run / "checkpoints" / "best.pt").is_file()
    last = found[-1][1]
    tensors, meta = read_state_dict(last)
    assert meta["arch"] == "ecbsr_m4c8" and meta["weights"] == "ema" and meta["iteration"] == 9
    loaded = load_model(last)
    assert loaded.arch == "ecbsr_m4c8" and loaded.scale == 4 and not loaded.model.training
    ema = trainer.ema.module.state_dict()
    assert all(torch.equal(v, ema[k].cpu()) for k, v in loaded.model.state_dict().items())
    best = load_model(run / "checkpoints" / "best.pt")
    assert best.arch == "ecbsr_m4c8"


def test_training_checkpoint_without_ema_gives_the_training_weights(tmp_path):
    train_dir = tmp_path / "hr"
    write_images(train_dir, count=2, size=(40, 40))
    run = tmp_path / "run"
    trainer = Trainer(tiny_config(train_dir, run, "ema_decay=0", "stage2.iters=0"), run)
    trainer.train()
    model = load_model(checkpoints.list_checkpoints(run)[-1][1]).model
    weights = trainer.model.state_dict()
    assert all(torch.equal(v, weights[k]) for k, v in model.state_dict().items())


def test_best_checkpoint_evaluates_converts_and_deploys(finished_run, tmp_path, capsys):
    run, _, val = finished_run
    best = run / "checkpoints" / "best.pt"
    assert main(["evaluate", "--weights", str(best), "--data", str(val), "--json", str(tmp_path / "r.json")]) == 0
    assert json.loads((tmp_path / "r.json").read_text())["model"] == "ecbsr_m4c8"
    assert main(["convert", str(best), str(tmp_path / "best.safetensors")]) == 0
    assert load_model(tmp_path / "best.safetensors").arch == "ecbsr_m4c8"
    assert main(["deploy", "--weights", str(best), "-o", str(tmp_path / "fused.safetensors")]) == 0
    assert load_model(tmp_path / "fused.safetensors").deployed


def test_training_checkpoint_with_a_hostile_config_is_refused(tmp_path):
    path = tmp_path / "iter_00000001.pt"
    torch.save({"iteration": 1, "model": _tiny_tensors(), "config": {"model": {"name": 7, "scale": 2}}}, path)
    with pytest.raises(CheckpointError, match="model section is malformed"):
        load_model(path)
    torch.save({"iteration": 1, "model": {"a": 1}, "config": {"model": {"name": "x"}}}, path)
    with pytest.raises(CheckpointError, match="lacks its model or config"):
        load_model(path)
    torch.save({"iteration": 1, "model": _tiny_tensors(),
                "config": {"model": {"name": "ecbsr_m4c8", "scale": 2, "args": {"act": "evil"}}}}, path)
    with pytest.raises(CheckpointError, match="act must be one of"):
        load_model(path)
