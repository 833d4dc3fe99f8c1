"""leansr: efficient single-image super-resolution."""

from leansr.checkpoint import save_checkpoint
from leansr.context import Context
from leansr.engine import TileSettings, upscale_image, upscale_tensor
from leansr.errors import LeansrError
from leansr.layers.reparam import Reparameterizable, reparameterize_model
from leansr.loading import ModelDescriptor, load_model
from leansr.registry import create_model, list_models, register_model

__version__ = "0.1.0"

__all__ = [
    "Context",
    "LeansrError",
    "ModelDescriptor",
    "Reparameterizable",
    "TileSettings",
    "create_model",
    "list_models",
    "load_model",
    "register_model",
    "reparameterize_model",
    "save_checkpoint",
    "upscale_image",
    "upscale_tensor",
]
