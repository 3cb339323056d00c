"""TileLang's `tilelang.cuda.intrinsics.layout`: `mma_layout.make_mma_swizzle_layout`."""

from jtile.tilelang.cuda.intrinsics.layout import mma_layout
from jtile.tilelang.cuda.intrinsics.layout.mma_layout import make_mma_swizzle_layout

__all__ = ["mma_layout", "make_mma_swizzle_layout"]
