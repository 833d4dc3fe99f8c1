"""leansr: efficient single-image super-resolution."""

from leansr.checkpoint import load_model, save_checkpoint
from leansr.errors import LeansrError
from leansr.layers.reparam import Reparameterizable, reparameterize_model
from leansr.registry import create_model, list_models, register_model

__version__ = "0.1.0"

__all__ = [
    "LeansrError",
    "Reparameterizable",
    "create_model",
    "list_models",
    "load_model",
    "register_model",
    "reparameterize_model",
    "save_checkpoint",
]
