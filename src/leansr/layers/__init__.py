"""Shared building blocks, one concept a file."""

from leansr.layers.reparam import Reparameterizable, is_reparameterized, reparameterize_model

__all__ = ["Reparameterizable", "is_reparameterized", "reparameterize_model"]
