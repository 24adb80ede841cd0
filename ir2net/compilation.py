"""``torch.compile`` with a clean fallback: when compiling (or running the compiled code)
fails -- no C++ toolchain, an unsupported operation -- the eager function runs instead,
once a warning has said so.  Used for ``train.compile`` and for the fused binarizer kernels."""
from __future__ import annotations

import warnings
from typing import Callable

import torch

__all__ = ["CompiledOrEager"]


class CompiledOrEager:
    """``function`` compiled on its first call with ``compile_options``; eager after a failure."""

    def __init__(self, function: Callable, what: str, **compile_options):
        self.function = function
        self.what = what
        self.compile_options = compile_options
        self.compiled = None
        self.failed = False

    def __call__(self, *args, **kwargs):
        if not self.failed:
            try:
                if self.compiled is None:
                    self.compiled = torch.compile(self.function, **self.compile_options)
                return self.compiled(*args, **kwargs)
            except Exception as error:  # inductor needs a working C++/Triton toolchain
                warnings.warn(f"torch.compile of {self.what} failed ({type(error).__name__}: "
                              f"{error}); the eager version runs instead")
                self.failed = True
        return self.function(*args, **kwargs)
