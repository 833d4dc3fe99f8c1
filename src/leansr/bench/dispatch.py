"""A TorchDispatchMode that sees every aten op a forward really runs, however the model calls it.

Composite ops (`conv2d`, `linear`, `matmul`, `einsum`, ...) reach a Python mode undecomposed under
`inference_mode`; they are decomposed here (re-entering the mode) so observers see the leaf kernels
(`convolution`, `mm`, `addmm`, `bmm`, ...) whether the model called a module or a functional.
"""

from __future__ import annotations

from typing import Any

from torch.utils._python_dispatch import TorchDispatchMode


class LeafOpMode(TorchDispatchMode):
    """Runs each op, decomposing composite ones first; subclasses implement `observe` for leaf ops."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001 - torch's signature
        kwargs = kwargs or {}
        with self:
            decomposed = func.decompose(*args, **kwargs)
        if decomposed is not NotImplemented:
            return decomposed
        out = func(*args, **kwargs)
        self.observe(func, args, kwargs, out)
        return out

    def observe(self, func: Any, args: tuple, kwargs: dict, out: Any) -> None:
        raise NotImplementedError
