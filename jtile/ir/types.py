"""Element types and memory spaces of the jtile IR.

Dtypes and memory spaces are enums inside jtile; TileLang's dtype strings and scope strings
("shared.dyn", "local.fragment", ...) are accepted only at the API boundary.
"""

from __future__ import annotations

import enum

import ml_dtypes
import numpy as np

from jtile.errors import JtileError


class DType(enum.Enum):
    """An element type: (name, bits, kind, C++ type in generated code)."""

    bool = ("bool", 8, "bool", "bool")
    int8 = ("int8", 8, "int", "signed char")
    int16 = ("int16", 16, "int", "short")
    int32 = ("int32", 32, "int", "int")
    int64 = ("int64", 64, "int", "long long")
    uint8 = ("uint8", 8, "uint", "unsigned char")
    uint16 = ("uint16", 16, "uint", "unsigned short")
    uint32 = ("uint32", 32, "uint", "unsigned")
    uint64 = ("uint64", 64, "uint", "unsigned long long")
    float8_e4m3 = ("float8_e4m3", 8, "float", "jt::fp8_e4m3")
    float8_e5m2 = ("float8_e5m2", 8, "float", "jt::fp8_e5m2")
    float16 = ("float16", 16, "float", "jt::half")
    bfloat16 = ("bfloat16", 16, "float", "jt::bfloat16")
    float32 = ("float32", 32, "float", "float")
    float64 = ("float64", 64, "float", "double")

    @property
    def bits(self) -> int:
        return self.value[1]

    @property
    def bytes(self) -> int:
        return max(1, self.value[1] // 8)

    @property
    def is_float(self) -> bool:
        return self.value[2] == "float"

    @property
    def is_int(self) -> bool:
        return self.value[2] in ("int", "uint")

    @property
    def is_signed(self) -> bool:
        return self.value[2] in ("int", "float")

    @property
    def is_bool(self) -> bool:
        return self is DType.bool

    @property
    def c_name(self) -> str:
        return self.value[3]

    @property
    def numpy(self) -> np.dtype:
        return _NUMPY[self]

    def __repr__(self) -> str:
        return self.value[0]

    def __str__(self) -> str:
        return self.value[0]


_NUMPY = {
    DType.bool: np.dtype(np.bool_),
    DType.int8: np.dtype(np.int8),
    DType.int16: np.dtype(np.int16),
    DType.int32: np.dtype(np.int32),
    DType.int64: np.dtype(np.int64),
    DType.uint8: np.dtype(np.uint8),
    DType.uint16: np.dtype(np.uint16),
    DType.uint32: np.dtype(np.uint32),
    DType.uint64: np.dtype(np.uint64),
    DType.float8_e4m3: np.dtype(ml_dtypes.float8_e4m3fn),
    DType.float8_e5m2: np.dtype(ml_dtypes.float8_e5m2),
    DType.float16: np.dtype(np.float16),
    DType.bfloat16: np.dtype(ml_dtypes.bfloat16),
    DType.float32: np.dtype(np.float32),
    DType.float64: np.dtype(np.float64),
}

# TileLang spellings and short forms accepted at the API.
_ALIASES = {
    "float": DType.float32, "half": DType.float16, "double": DType.float64,
    "fp16": DType.float16, "bf16": DType.bfloat16, "fp32": DType.float32, "fp64": DType.float64,
    "float8_e4m3fn": DType.float8_e4m3, "e4m3": DType.float8_e4m3, "e5m2": DType.float8_e5m2,
    "int": DType.int32, "uint": DType.uint32,
}


def as_dtype(value) -> DType:
    """Accepts a DType, a TileLang dtype string, or a NumPy/JAX dtype (or scalar type)."""
    if isinstance(value, DType):
        return value
    if value is None:  # np.dtype(None) would silently mean float64
        raise JtileError(f"dtype None is not a dtype; expected one of "
                         f"{', '.join(DType.__members__)}")
    if isinstance(value, str):
        if value in DType.__members__:
            return DType[value]
        if value in _ALIASES:
            return _ALIASES[value]
        raise JtileError(f"unknown dtype {value!r}; expected one of {', '.join(DType.__members__)}")
    try:
        np_dtype = np.dtype(value)
    except TypeError:
        raise JtileError(f"unknown dtype {value!r}") from None
    for dtype, candidate in _NUMPY.items():
        if candidate == np_dtype:
            return dtype
    raise JtileError(f"dtype {np_dtype} has no jtile equivalent")


def value_range(dtype: DType) -> tuple:
    """(lowest, largest) finite value of `dtype` (ml_dtypes knows bfloat16 and float8 too)."""
    if dtype.is_bool:
        return (False, True)
    if dtype.is_int:
        info = np.iinfo(dtype.numpy)
        return (int(info.min), int(info.max))
    info = ml_dtypes.finfo(dtype.numpy)
    return (float(info.min), float(info.max))


def promote(a: DType, b: DType) -> DType:
    """The type of a binary operation on two typed operands (floats win, then width)."""
    if a is b:
        return a
    if a.is_float != b.is_float:
        return a if a.is_float else b
    if a.is_bool:
        return b
    if b.is_bool:
        return a
    if a.bits != b.bits:
        return a if a.bits > b.bits else b
    # Same width: bfloat16 and float16 meet in float32; signed and unsigned meet in unsigned.
    if a.is_float:
        return DType.float32
    return a if not a.is_signed else b


class MemorySpace(enum.Enum):
    """Where a buffer lives; the value is TileLang's scope string for it."""

    GLOBAL = "global"
    SHARED_DYN = "shared.dyn"
    SHARED = "shared"
    LOCAL = "local"
    FRAGMENT = "local.fragment"
    VAR = "local.var"
    BARRIER = "shared.barrier"
    TMEM = "shared.tmem"
    DESCRIPTOR = "local.descriptor"

    @property
    def is_shared(self) -> bool:
        return self in (MemorySpace.SHARED, MemorySpace.SHARED_DYN)

    @property
    def is_register(self) -> bool:
        return self in (MemorySpace.LOCAL, MemorySpace.FRAGMENT, MemorySpace.VAR)


def as_memory_space(scope: str, allowed: tuple[MemorySpace, ...], what: str) -> MemorySpace:
    """Parses a TileLang scope string, accepting only the spaces that `what` may live in."""
    for space in allowed:
        if scope == space.value:
            return space
    names = ", ".join(repr(space.value) for space in allowed)
    raise JtileError(f"{what}: scope {scope!r} is not allowed here; expected one of {names}")
