"""TileLang's `tilelang.cuda`: only `tilelang.cuda.intrinsics.make_mma_swizzle_layout`, which
kernel code calls, is here (`jtile.tilelang.cuda.intrinsics`)."""

from jtile.tilelang.cuda import intrinsics
from jtile.tilelang.cuda.intrinsics import refuse

__all__ = ["intrinsics"]


def __getattr__(name: str):
    return refuse("tilelang.cuda", name)
