"""TileLang's `tilelang.cuda.intrinsics`: the shared-memory swizzle its kernels annotate
(`make_mma_swizzle_layout`). Its tensor-core instruction emitters are refused by name: jtile
picks the MMA instructions for `T.gemm` itself."""

from jtile.tilelang.cuda.intrinsics.layout.mma_layout import make_mma_swizzle_layout
from jtile.language import unsupported

__all__ = ["make_mma_swizzle_layout"]


def refuse(module: str, name: str):
    if name.startswith("_"):
        raise AttributeError(f"module 'jtile.{module}' has no attribute {name!r}")
    raise unsupported.JtileUnknownNameError(
        f"{module}.{name} is TileLang's, but jtile does not implement it: jtile picks the "
        "tensor-core instructions, fragment layouts and copies itself from T.gemm and T.copy "
        "(write those); jtile.tilelang.cuda.intrinsics holds make_mma_swizzle_layout only")


def __getattr__(name: str):
    return refuse("tilelang.cuda.intrinsics", name)
