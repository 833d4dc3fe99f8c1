"""The tiling engine: a pure plan, a batched executor, an assembler; `upscale_tensor` is the simple entry."""

from leansr.engine.assemble import Assembler, QuantizedSink, TensorSink
from leansr.engine.executor import run_batches
from leansr.engine.memory import MemoryProfile, profile_memory
from leansr.engine.plan import TilePlan, Window, cheapest_plan, plan_tiles, whole_plan
from leansr.engine.run import (
    ApproximateTilingWarning,
    QuantizedImage,
    context_of,
    plan_for,
    upscale_array,
    upscale_image,
    upscale_image_quantized,
    upscale_tensor,
)
from leansr.engine.settings import DEFAULT_CPU_MEMORY, DEFAULT_OVERLAP, MIN_TILE, TileSettings

__all__ = [
    "DEFAULT_CPU_MEMORY", "DEFAULT_OVERLAP", "MIN_TILE", "ApproximateTilingWarning", "Assembler",
    "MemoryProfile", "QuantizedImage", "QuantizedSink", "TensorSink", "TilePlan", "TileSettings", "Window",
    "cheapest_plan", "context_of", "plan_for", "plan_tiles", "profile_memory", "run_batches", "upscale_array",
    "upscale_image", "upscale_image_quantized", "upscale_tensor", "whole_plan",
]
