"""Element types and memory spaces of the jtile IR.

Dtypes and memory spaces are enums inside jtile; TileLang's dtype strings and scope strings
("shared.dyn", "local.fragment", ...) are accepted only at the API boundary.
"""

from __future__ import annotations

import enum
import re

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
    # TileLang's TensorFloat32: float32 storage (JAX passes float32 arrays), element-wise
    # arithmetic in float32, and the tile type of TF32 gemms. jtile multiplies it exactly in
    # float32 (see language/gemm.py), at least as accurate as TF32's 10-bit mantissas.
    tfloat32 = ("tfloat32", 32, "float", "float")

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

    # TileLang's dtypes are strings, so kernels test `X[i].dtype == T.uint8` or `== "uint8"`: a
    # DType equals the string of its canonical name (T.float is "float32"), and hashes as that
    # string so that the two are interchangeable as dict keys. Aliases such as "float" or "half"
    # are other strings, and unequal, as in TileLang.
    def __eq__(self, other) -> bool:
        if isinstance(other, DType):
            return self is other
        if isinstance(other, str):
            return str.__eq__(other, self.value[0])
        return NotImplemented

    def __ne__(self, other) -> bool:
        equal = self.__eq__(other)
        return equal if equal is NotImplemented else not equal

    def __hash__(self) -> int:
        return hash(self.value[0])


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
    DType.tfloat32: np.dtype(np.float32),  # after float32: a float32 array is float32
}

# TileLang spellings and short forms accepted at the API. float8_e4m3 is the e4m3 "fn" format
# (finite, NaN = 0x7f/0xff, no infinities): CUDA's __nv_fp8_e4m3, ml_dtypes' float8_e4m3fn.
_ALIASES = {
    "float": DType.float32, "half": DType.float16, "double": DType.float64,
    "fp16": DType.float16, "bf16": DType.bfloat16, "fp32": DType.float32, "fp64": DType.float64,
    "float8_e4m3fn": DType.float8_e4m3, "e4m3": DType.float8_e4m3, "e5m2": DType.float8_e5m2,
    "int": DType.int32, "uint": DType.uint32, "short": DType.int16, "long": DType.int64,
    "ulong": DType.uint64,
}

# Python's scalar types as TileLang reads them (numpy would make `float` float64).
_PYTHON_TYPES = {bool: DType.bool, int: DType.int32, float: DType.float32}

# TileLang dtypes jtile has no element type for, and what to use instead.
_UNSUPPORTED = {
    "int4": "pack two 4-bit values into an int8/uint8 and unpack them with >>, & and T.cast",
    "float8_e4m3fnuz": "use float8_e4m3 (the 'fn' format of CUDA's __nv_fp8_e4m3)",
    "float8_e5m2fnuz": "use float8_e5m2",
    "float8_e4m3b11fnuz": "use float8_e4m3",
    "float8_e3m4": "use float8_e4m3 or float8_e5m2",
    "float8_e8m0fnu": "keep block scales as uint8 exponents or float32",
    "float6_e2m3fn": "use float8_e4m3 or float16",
    "float6_e3m2fn": "use float8_e5m2 or float16",
    "float4_e2m1fn": "pack two values into a uint8 and unpack them with >>, & and T.cast",
}

# TileLang's vector dtypes: a scalar name and a lane count, e.g. "float16x2".
_VECTOR_DTYPE = re.compile(r"^([a-z0-9_]+?)x(2|4|8|16|32|64)$")


def unsupported_dtype_hint(name: str):
    """What to use instead of a TileLang dtype name jtile refuses, or None if it is not one."""
    if name in _UNSUPPORTED:
        return _UNSUPPORTED[name]
    vector = _VECTOR_DTYPE.match(name)
    if vector and (vector.group(1) in DType.__members__ or vector.group(1) in _ALIASES
                   or vector.group(1) in _UNSUPPORTED):
        return (f"vector dtypes are not element types in jtile; use {vector.group(1)} buffers "
                "(T.copy and T.Parallel vectorise their accesses themselves)")
    return None


def as_dtype(value) -> DType:
    """Accepts a DType, a TileLang dtype string (or `T.float16`), a NumPy/JAX dtype or scalar
    type, or Python's `bool`, `int` (int32) and `float` (float32), as TileLang reads them."""
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
        hint = unsupported_dtype_hint(value)
        if hint is not None:
            raise JtileError(f"dtype {value!r} is TileLang's but jtile does not support it: "
                             f"{hint}")
        raise JtileError(f"unknown dtype {value!r}; expected one of {', '.join(DType.__members__)}")
    if isinstance(value, type) and value in _PYTHON_TYPES:
        return _PYTHON_TYPES[value]
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


def gemm_inputs_match(a: DType, b: DType) -> bool:
    """Whether T.gemm takes A of `a` with B of `b`: one dtype, or 8-bit inputs of one kind
    (int8 with uint8, float8_e4m3 with float8_e5m2), as TileLang and wgmma allow."""
    if a is b:
        return True
    return a.bits == b.bits == 8 and a.is_int == b.is_int and a.is_float == b.is_float


def gemm_accumulator(inputs: DType) -> DType:
    """The accumulator T.gemm takes for `inputs` by default: int32 for 8-bit integers, else
    float32."""
    return DType.int32 if inputs.is_int else DType.float32


def gemm_accumulators(inputs: DType) -> tuple:
    """Every accumulator T.gemm takes for `inputs`: float16 inputs may also accumulate in
    float16 (mma.sync's and wgmma's .f16 accumulators, rounded at every 16-deep k-step)."""
    if inputs is DType.float16:
        return (DType.float32, DType.float16)
    return (gemm_accumulator(inputs),)


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
