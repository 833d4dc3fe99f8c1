"""`leansr train`: train a zoo model from HR folders (CPU, one GPU, or DDP under torchrun)."""

from __future__ import annotations

import argparse
import logging
import signal
from pathlib import Path

from leansr.errors import LeansrError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a model (single process, or `torchrun --nproc_per_node=N -m leansr train ...` for DDP)",
        description="Settings: defaults < CONFIG (YAML) < KEY=VALUE overrides, e.g. "
        "`leansr train -o runs/x configs/ecbsr.yaml data.train=DIR stage1.iters=2000` "
        "(options go before or after all settings, not between them).",
    )
    p.add_argument("settings", nargs="*", metavar="CONFIG|KEY=VALUE",
                   help="a YAML recipe (first, optional) and dotted KEY=VALUE overrides")
    p.add_argument("-o", "--output", type=Path, help="run folder (default: the config's `output`)")
    p.add_argument("--resume", type=Path, metavar="RUN_DIR",
                   help="continue a run from its newest checkpoint with its saved config.yaml")
    p.add_argument("--max-steps", type=int, help="stop (with a checkpoint) after this many steps")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from leansr.train.config import load_config
    from leansr.train.trainer import Trainer, resolve_run_dir

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    config_file, overrides = _split_settings(args.settings)
    if args.resume is not None:
        saved = args.resume / "config.yaml"
        if config_file is not None or not saved.is_file():
            raise LeansrError(f"--resume takes the run's own {saved}; give overrides only, no CONFIG")
        config = load_config(saved, overrides)
        run_dir = args.resume
    else:
        config = load_config(config_file, overrides)
        run_dir = args.output or resolve_run_dir(config)
        if (run_dir / "checkpoints").is_dir() and any((run_dir / "checkpoints").iterdir()):
            raise LeansrError(f"{run_dir} already holds a run; pass --resume {run_dir} or another --output")
    if not config.data.train:
        raise LeansrError("no training data: set data.train=FOLDER (HR images) or put it in the config")
    trainer = Trainer(config, run_dir, resume=args.resume is not None)
    out = trainer.train(max_steps=args.max_steps)
    if trainer.dist.is_main:
        print(f"run folder: {out}")
    # Ctrl-C: the checkpoint is written, but the run did not finish; say so to scripts (SIGTERM stays 0).
    return 130 if trainer.stop_signal == signal.SIGINT else 0


def _split_settings(settings: list[str]) -> tuple[Path | None, list[str]]:
    config_file = None
    overrides = []
    for i, item in enumerate(settings):
        if "=" in item:
            overrides.append(item)
        elif i == 0:
            config_file = Path(item)
        else:
            raise LeansrError(f"{item!r} is not KEY=VALUE (only the first setting may be a config file)")
    return config_file, overrides
