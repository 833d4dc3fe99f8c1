"""leansr: efficient single-image super-resolution.

The public names load on first use (PEP 562), so `leansr --help` starts without importing torch.
"""

from importlib import import_module
from typing import TYPE_CHECKING

__version__ = "0.1.0"

_EXPORTS = {
    "Context": "leansr.context",
    "LeansrError": "leansr.errors",
    "ModelDescriptor": "leansr.loading",
    "Reparameterizable": "leansr.layers.reparam",
    "TileSettings": "leansr.engine",
    "create_model": "leansr.registry",
    "list_models": "leansr.registry",
    "load_model": "leansr.loading",
    "register_model": "leansr.registry",
    "reparameterize_model": "leansr.layers.reparam",
    "save_checkpoint": "leansr.checkpoint",
    "upscale_image": "leansr.engine",
    "upscale_tensor": "leansr.engine",
}
__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from leansr.checkpoint import save_checkpoint
    from leansr.context import Context
    from leansr.engine import TileSettings, upscale_image, upscale_tensor
    from leansr.errors import LeansrError
    from leansr.layers.reparam import Reparameterizable, reparameterize_model
    from leansr.loading import ModelDescriptor, load_model
    from leansr.registry import create_model, list_models, register_model


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'leansr' has no attribute {name!r}")
    value = getattr(import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value
