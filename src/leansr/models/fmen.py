"""FMEN and FMEN-S (Du et al., CVPRW 2022; NTIRE 2022 efficient SR, 2nd place), training form.

    head -> warm-up (conv, HFAB) -> [ERB -> HFAB] x down_blocks -> lr_conv -> (+ head) -> conv -> shuffle

Module names follow NJU-Jet/FMEN (`train_fmen.py` / `test_fmen.py`), so `reparameterize_model` turns a
training-form model into exactly the official deployed layout (`ERBs.N.conv1.rep_conv.weight`, ...) and
the official `test_weights.pt` loads into it unchanged. Weights expect the 0-255 range (EDSR framework,
no mean shift).
"""

from __future__ import annotations

import math
from typing import Any

from torch import Tensor, nn

from leansr.errors import LeansrError
from leansr.layers.hfab import HFAB
from leansr.layers.rrrb import ERB
from leansr.models._layout import Detection, StateDict, numbered, renamed
from leansr.models.base import SRModel

WARMUP_MID_REDUCTION = 4  # the official warm-up HFAB is 4 channels narrower than the others


def _conv3x3(in_channels: int, out_channels: int) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, padding=1)


class FMEN(SRModel):
    """FMEN family; the defaults are FMEN-S, the official NTIRE 2022 entry (341,066 deployed parameters).

    `warmup_erbs` / `attention_erbs`: ERBs inside the warm-up HFAB / each body HFAB (official
    `up_blocks = [warmup_erbs] + [attention_erbs] * down_blocks`); expand ratios are the RRRB widenings
    of trunk and attention-branch ERBs (training form only; deployed they vanish).
    """

    def __init__(
        self,
        *,
        scale: int = 4,
        img_range: float = 255.0,
        n_feats: int = 50,
        mid_feats: int = 16,
        down_blocks: int = 4,
        warmup_erbs: int = 2,
        attention_erbs: int = 1,
        backbone_expand_ratio: int = 2,
        attention_expand_ratio: int = 2,
    ) -> None:
        super().__init__(scale=scale, img_range=img_range, in_channels=3)
        if mid_feats <= WARMUP_MID_REDUCTION:
            raise LeansrError(f"FMEN needs mid_feats > {WARMUP_MID_REDUCTION}, got {mid_feats}")
        self.head = _conv3x3(3, n_feats)
        self.warmup = nn.Sequential(
            _conv3x3(n_feats, n_feats),
            HFAB(n_feats, mid_feats - WARMUP_MID_REDUCTION, warmup_erbs, attention_expand_ratio),
        )
        self.ERBs = nn.ModuleList(ERB(n_feats, backbone_expand_ratio) for _ in range(down_blocks))
        self.HFABs = nn.ModuleList(
            HFAB(n_feats, mid_feats, attention_erbs, attention_expand_ratio) for _ in range(down_blocks)
        )
        self.lr_conv = _conv3x3(n_feats, n_feats)
        self.tail = nn.Sequential(_conv3x3(n_feats, 3 * scale * scale), nn.PixelShuffle(scale))

    def forward_sr(self, x: Tensor) -> Tensor:
        shallow = self.head(x)
        h = self.warmup(shallow)
        for erb, hfab in zip(self.ERBs, self.HFABs):
            h = hfab(erb(h))
        return self.tail(self.lr_conv(h) + shallow)


# The NTIRE 2022 challenge repository ships the same deployed network with other list names:
# ofsoundof/NTIRE2022_ESR, models/team03_fmen.py: `self.basic_blocks` (ERBs) and `self.hfabs` (HFABs).
_NTIRE_RENAMES = [(r"^basic_blocks\.", "ERBs."), (r"^hfabs\.", "HFABs.")]
_REQUIRED_KEYS = (
    "head.weight",
    "warmup.0.weight",
    "warmup.1.squeeze.weight",
    "HFABs.0.squeeze.weight",
    "lr_conv.weight",
    "tail.0.weight",
)


def detect_fmen(state_dict: StateDict) -> Detection | None:
    """Official deployed FMEN (NJU-Jet or NTIRE 2022 layout) or a training-form FMEN state dict."""
    notes, layout = [], "NJU-Jet/FMEN"
    if any(k.startswith(("basic_blocks.", "hfabs.")) for k in state_dict):
        state_dict = renamed(state_dict, _NTIRE_RENAMES)
        notes.append("NTIRE 2022 challenge layout (basic_blocks/hfabs) renamed to ERBs/HFABs")
        layout = "ofsoundof/NTIRE2022_ESR"
    if not all(k in state_dict for k in _REQUIRED_KEYS):
        return None
    deployed = "ERBs.0.conv1.rep_conv.weight" in state_dict
    if deployed == ("ERBs.0.conv1.expand_conv.weight" in state_dict):
        return None
    hparams = _infer_hparams(state_dict, deployed)
    if hparams is None:
        return None
    return Detection("fmen", hparams, state_dict, deployed=deployed, notes=notes, layout=layout)


def _infer_hparams(sd: StateDict, deployed: bool) -> dict[str, Any] | None:
    n_feats, in_channels = sd["head.weight"].shape[:2]
    scale = math.isqrt(sd["tail.0.weight"].shape[0] // 3)
    mid_feats = sd["HFABs.0.squeeze.weight"].shape[0]
    if in_channels != 3 or 3 * scale * scale != sd["tail.0.weight"].shape[0]:
        return None
    if sd["warmup.1.squeeze.weight"].shape[0] != mid_feats - WARMUP_MID_REDUCTION:
        return None
    conv = "rep_conv" if deployed else "expand_conv"
    down_blocks = len(numbered(sd, r"HFABs\.(\d+)\.squeeze\.weight"))
    erb_pattern = rf"\.convs\.(\d+)\.conv1\.{conv}\.weight"
    body = {len(numbered(sd, rf"HFABs\.{i}{erb_pattern}")) for i in range(down_blocks)}
    if len(body) != 1:
        return None  # per-block ERB counts differ; not a configuration this family builds
    hparams: dict[str, Any] = {
        "scale": scale,
        "img_range": 255.0,
        "n_feats": n_feats,
        "mid_feats": mid_feats,
        "down_blocks": down_blocks,
        "warmup_erbs": len(numbered(sd, rf"warmup\.1{erb_pattern}")),
        "attention_erbs": body.pop(),
    }
    if not deployed:
        hparams["backbone_expand_ratio"] = sd["ERBs.0.conv1.expand_conv.weight"].shape[0] // n_feats
        for prefix, width in (("warmup.1", mid_feats - WARMUP_MID_REDUCTION), ("HFABs.0", mid_feats)):
            attention = sd.get(f"{prefix}.convs.0.conv1.expand_conv.weight")
            if attention is not None:
                hparams["attention_expand_ratio"] = attention.shape[0] // width
                break
    return hparams
