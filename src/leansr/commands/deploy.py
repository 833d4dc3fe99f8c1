"""`leansr deploy`: fuse a training-time checkpoint's re-parameterizable blocks into plain convolutions."""

from __future__ import annotations

import argparse
import copy
from pathlib import Path

from torch import nn

from leansr.checkpoint import read_state_dict, save_checkpoint
from leansr.commands.options import add_hidden_alias, check_output_path
from leansr.loading import load_model
from leansr.errors import LeansrError
from leansr.layers.fusion_check import fusion_error
from leansr.layers.reparam import Reparameterizable, reparameterize_model

# Fusion is exact maths; a float64 check on a small input only has rounding to absorb.
_CHECK_SIZE = (11, 8)
_CHECK_TOLERANCE = 1e-8


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "deploy",
        help="fuse re-parameterizable blocks (ECB, ACB, ConvBN, ...) and write the deployed checkpoint",
        description="Load a checkpoint (official or leansr), fuse every re-parameterizable block into plain "
        "convolutions, check the fused model against the unfused one, and write leansr safetensors with "
        "deployed: true. An already deployed checkpoint, or one without such blocks, is left alone and "
        "nothing is written.",
    )
    p.add_argument("--weights", type=Path, required=True, metavar="IN", help="training-time checkpoint")
    p.add_argument(
        "-o", "--output", type=Path, required=True, metavar="OUT", help="deployed checkpoint to write"
    )
    p.add_argument("--overwrite", action="store_true", help="overwrite OUT if it exists (never IN)")
    add_hidden_alias(p, "--force", "overwrite", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    source, target = args.weights, args.output
    if target.resolve() == source.resolve():
        raise LeansrError("the output must differ from the input; deploy never overwrites its input")
    check_output_path(target)
    model = load_model(source).model
    blocks = sum(isinstance(m, Reparameterizable) for m in model.modules())
    deployed = bool(getattr(model, "deployed", False))
    if deployed or blocks == 0:
        state = "is already deployed" if deployed else "has no re-parameterizable blocks"
        hint = " (`leansr convert` re-saves it in leansr format)" if _is_foreign(source) else ""
        print(f"{source} ({model.arch}) {state}; nothing to do, {target} not written{hint}")
        return 0
    if target.exists() and not args.overwrite:
        raise LeansrError(f"{target} exists; pass --overwrite to replace it")
    fused, error = fuse_checked(model)
    save_checkpoint(fused, target, extra={"deployed_from": source.name})
    print(
        f"wrote {target} ({model.arch}, x{model.scale}): fused {blocks} blocks, "
        f"{_params(model):,} -> {_params(fused):,} parameters, max relative error {error:.1e}"
    )
    return 0


def fuse_checked(model: nn.Module) -> tuple[nn.Module, float]:
    """The deployed model, fused in float64 and rounded once to the model's dtype, and its float64 error."""
    dtype = next(model.parameters()).dtype
    reference = copy.deepcopy(model).double()
    fused = reparameterize_model(reference)
    shape = (1, int(getattr(model, "in_channels", 3)), *_CHECK_SIZE)
    error = fusion_error(reference, fused, shape)
    if not error <= _CHECK_TOLERANCE:
        raise LeansrError(f"fused model differs from the original (relative error {error:.2e}); not written")
    return fused.to(dtype), error


def _is_foreign(path: Path) -> bool:
    """True for a foreign (official) checkpoint, which carries no leansr metadata."""
    return read_state_dict(path)[1] is None


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
