"""`leansr ghost`: convert a pretrained model to GhostSR and fine-tune it by distillation from the original."""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

from leansr.errors import LeansrError

RUN_INFO = "ghost.json"  # in the run folder: what `--resume` needs beyond the training config


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "ghost",
        help="convert a model to GhostSR (shift-generated ghost features) and fine-tune it",
        description="Convert W's convertible 3x3 convs to ghost convs (k-means intrinsic filters, data-chosen "
        "shifts, least-squares refit on patches of DIR), fine-tune by distillation from W with the training "
        "machinery of `leansr train`, and write the deployed model to OUT. The quick recipe fits --minutes "
        "(default 15); the full one runs for hours and continues with --resume RUN_DIR.",
    )
    p.add_argument("--weights", type=Path, required=True, metavar="W", help="pretrained checkpoint to convert")
    p.add_argument("--ratio", type=float, default=0.5, metavar="R",
                   help="share of intrinsic channels, in (0, 1) (default 0.5)")
    p.add_argument("--ratio-at", action="append", default=[], metavar="PATTERN=R",
                   help="another ratio for the convs whose path matches the glob PATTERN (first match wins; "
                   "repeatable), e.g. 'block_[12].*=0.6'")
    p.add_argument("--channel-multiple", type=int, default=1, metavar="M",
                   help="round each conv's intrinsic channels up to a multiple of M (16 suits oneDNN on CPU: "
                   "it computes 16 output channels at a time; default 1)")
    p.add_argument("--data", nargs="+", required=True, metavar="DIR",
                   help="HR image folders: calibration patches and fine-tuning data")
    p.add_argument("-o", "--output", type=Path, required=True, metavar="OUT", help="deployed model to write")
    p.add_argument("--recipe", choices=("quick", "full"),
                   help="quick (default) or full; a resumed run keeps the recipe it started with")
    p.add_argument("--minutes", type=float, help="wall-clock budget, conversion included (quick: default 15)")
    p.add_argument("--iters", type=int,
                   help="fine-tuning steps (default: quick fits --minutes, full 20000; 0: convert only); "
                   "with --resume: the new total")
    p.add_argument("--run-dir", type=Path, help="training run folder (default: OUT's name + '.run' beside it)")
    p.add_argument("--resume", type=Path, metavar="RUN_DIR", help="continue an interrupted run, then write OUT")
    p.add_argument("--val", nargs="*", default=[], metavar="DIR", help="HR folders scored at the end")
    p.add_argument("--shifts", choices=("axis", "all"), default="axis",
                   help="candidate shifts: axis (fold into 3x4 kernels; default) or all 9")
    p.add_argument("--per-channel", action="store_true", help="one shift per ghost channel (no folding)")
    p.add_argument("--no-fold", dest="fold", action="store_false",
                   help="keep ghost channels as tensors instead of folding each shift into the next 3x3 conv "
                   "(folded: fewer MACs and faster on CPU; needs one shift per layer, i.e. ratio >= 0.5, and ties "
                   "a per-channel PReLU's ghost slopes to their sources)")
    p.add_argument("--no-trunk", action="store_true", help="leave convs that write into a residual trunk alone")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    p.add_argument("--force", action="store_true", help="overwrite OUT if it exists")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    _check(args)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    import torch

    from leansr.train.trainer import Trainer

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    wall, cpu = time.perf_counter(), time.process_time()
    run_dir = args.resume or args.run_dir or args.output.with_name(args.output.name + ".run")
    args.recipe = (_saved_recipe(args.resume) if args.resume else None) or args.recipe or "quick"
    if args.resume is not None:
        config = _resumed_config(args.resume)
        if args.minutes is not None:
            config.time_limit_min = args.minutes
        if args.iters is not None:  # a longer (or shorter) schedule from here on
            config.stage1.iters = args.iters
        trainer = Trainer(config, run_dir, resume=True)
    else:
        config = _convert_and_configure(args, run_dir, wall)
        if config is None:  # --iters 0: the converted model as it is
            _write(args, run_dir / "converted.safetensors", (0, 0), run_dir, wall, cpu)
            return 0
        trainer = Trainer(config, run_dir)
    trainer.train()
    if trainer.iteration < trainer.total_iters:
        trainer.export()  # stopped by the time limit: deploy what we have
    _write(args, run_dir / "model.safetensors", (trainer.iteration, trainer.total_iters), run_dir, wall, cpu)
    if trainer.iteration < trainer.total_iters:
        print(f"unfinished: continue with `leansr ghost --resume {run_dir} --weights {args.weights} "
              f"--data {' '.join(args.data)} -o {args.output} --force`")
    return 0


def _write(args: argparse.Namespace, trained: Path, steps: tuple[int, int], run_dir: Path, wall: float,
           cpu: float) -> None:
    from leansr.ghost import finetune

    deployed, error = finetune.deploy_ghost(trained, fold=args.fold)
    wall_s, cpu_s = time.perf_counter() - wall, time.process_time() - cpu
    extra = {"recipe": args.recipe, "iterations": steps[0], "planned_iterations": steps[1],
             "source": args.weights.name, "wall_s": round(wall_s, 1), "cpu_s": round(cpu_s, 1),
             "fold_check_error": error}
    finetune.write_deployed(deployed, args.output, extra)
    print(f"wrote {args.output}: {steps[0]}/{steps[1]} fine-tuning steps, "
          f"{wall_s / 60:.1f} min wall, {cpu_s / 60:.1f} min CPU (all threads); run folder {run_dir}")


def _check(args: argparse.Namespace) -> None:
    if not 0.0 < args.ratio < 1.0:
        raise LeansrError(f"--ratio must be in (0, 1), got {args.ratio}")
    _layer_ratios(args.ratio_at)  # malformed items fail before any work
    if args.channel_multiple < 1:
        raise LeansrError(f"--channel-multiple must be >= 1, got {args.channel_multiple}")
    if args.minutes is not None and not args.minutes > 0:
        raise LeansrError(f"--minutes must be > 0, got {args.minutes}")
    if args.iters is not None and args.iters < 0:
        raise LeansrError(f"--iters must be >= 0 (0: convert only), got {args.iters}")
    if args.output.exists() and not args.force:
        raise LeansrError(f"{args.output} exists; pass --force to overwrite it")
    if args.resume is not None and not (args.resume / "config.yaml").is_file():
        raise LeansrError(f"nothing to resume: {args.resume} has no config.yaml")
    for folder in args.data:
        if not Path(folder).is_dir():
            raise LeansrError(f"--data folder {folder} does not exist")


def _layer_ratios(items: list[str]) -> dict[str, float]:
    ratios = {}
    for item in items:
        pattern, _, value = item.rpartition("=")
        try:
            ratios[pattern] = float(value)
        except ValueError:
            raise LeansrError(f"--ratio-at takes PATTERN=R with R a number, got {item!r}") from None
        if not pattern:
            raise LeansrError(f"--ratio-at takes PATTERN=R, got {item!r}")
    return ratios


def _saved_recipe(run_dir: Path) -> str | None:
    """The recipe a run folder was started with (None for folders written before this was recorded)."""
    try:
        return json.loads((run_dir / RUN_INFO).read_text())["recipe"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _resumed_config(run_dir: Path):  # noqa: ANN202
    from leansr.train.config import load_config

    return load_config(run_dir / "config.yaml")


def _convert_and_configure(args: argparse.Namespace, run_dir: Path, start: float):  # noqa: ANN202
    from leansr.checkpoint import save_checkpoint
    from leansr.loading import load_model
    from leansr.ghost import finetune
    from leansr.ghost.convert import calibration_error, convert_calibrated

    if (run_dir / "checkpoints").is_dir() and any((run_dir / "checkpoints").iterdir()):
        raise LeansrError(f"{run_dir} already holds a run; pass --resume {run_dir} or another --run-dir")
    minutes = args.minutes if args.minutes is not None else (15.0 if args.recipe == "quick" else 0.0)
    original = load_model(args.weights).model
    ghost, calibration = convert_calibrated(
        original, args.data, ratio=args.ratio, per_channel=args.per_channel, selection="fixed",
        shifts=args.shifts, trunk=not args.no_trunk, layer_ratios=_layer_ratios(args.ratio_at),
        multiple=args.channel_multiple, tie_slopes=args.fold and not args.per_channel)
    print(f"converted {original.arch}: {calibration_error(original, ghost, calibration):.2f} dB to the original "
          f"on the calibration patches, directions {ghost.hparams['directions']}")
    init = save_checkpoint(ghost, run_dir / "converted.safetensors")
    (run_dir / RUN_INFO).write_text(json.dumps({"recipe": args.recipe}))
    if args.iters == 0:
        return None
    iters = args.iters or finetune.default_iters(args.recipe)
    left = minutes - (time.perf_counter() - start) / 60 - 0.5 if minutes else 0.0  # 0.5 min: export, deploy
    if minutes and left <= 0:
        raise LeansrError(f"conversion used the whole --minutes {minutes:g} budget; nothing left to fine-tune")
    if not iters:
        iters = finetune.steps_for(left, finetune.probe_step_seconds(ghost, original, args.recipe))
    return finetune.train_config(args.recipe, ghost, init=init, teacher=args.weights, data=args.data,
                                 val=args.val, run_dir=run_dir, threads=args.threads, minutes=max(left, 0.0),
                                 iters=iters)
