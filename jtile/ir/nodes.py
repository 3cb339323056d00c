"""The jtile IR: frozen dataclasses for expressions, statements, buffers and kernels.

Expressions overload Python's operators so that a kernel body written with `+`, `*`, `<`
builds IR when it is traced. Buffers compare by identity: two allocations with the same
shape are different buffers.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass, field
from typing import Any, Optional, Union

from jtile.errors import JtileTraceError
from jtile.ir.types import DType, MemorySpace, promote


@dataclass(frozen=True)
class SourceLoc:
    """A line of the user's kernel source."""

    file: str
    line: int

    def __str__(self) -> str:
        import os

        return f"{os.path.basename(self.file)}:{self.line}"


NO_LOC = SourceLoc("<unknown>", 0)


# ----------------------------------------------------------------------------- expressions


def traced_value_error(message: str) -> JtileTraceError:
    """`message` as an error naming the kernel being traced and the user's line, if any."""
    from jtile.trace.builder import active_builder  # the tracer imports the IR, not back
    from jtile.trace.source import caller_location

    builder = active_builder()
    if builder is None:
        return JtileTraceError(message)
    return builder.error(message, caller_location())


class Expr:
    """Base of every expression. Operators build IR; `bool()` on a traced value is refused."""

    dtype: DType

    def __add__(self, other): return binary("add", self, other)
    def __radd__(self, other): return binary("add", other, self)
    def __sub__(self, other): return binary("sub", self, other)
    def __rsub__(self, other): return binary("sub", other, self)
    def __mul__(self, other): return binary("mul", self, other)
    def __rmul__(self, other): return binary("mul", other, self)
    def __truediv__(self, other): return binary("div", self, other)
    def __rtruediv__(self, other): return binary("div", other, self)
    def __floordiv__(self, other): return binary("floordiv", self, other)
    def __rfloordiv__(self, other): return binary("floordiv", other, self)
    def __mod__(self, other): return binary("mod", self, other)
    def __rmod__(self, other): return binary("mod", other, self)
    def __lt__(self, other): return binary("lt", self, other)
    def __le__(self, other): return binary("le", self, other)
    def __gt__(self, other): return binary("gt", self, other)
    def __ge__(self, other): return binary("ge", self, other)
    # Bitwise on integers, as in TileLang; on two bools `&` and `|` are logical and/or.
    def __and__(self, other): return binary("and", self, other)
    def __rand__(self, other): return binary("and", other, self)
    def __or__(self, other): return binary("or", self, other)
    def __ror__(self, other): return binary("or", other, self)
    def __xor__(self, other): return binary("xor", self, other)
    def __rxor__(self, other): return binary("xor", other, self)
    def __lshift__(self, other): return binary("shl", self, other)
    def __rlshift__(self, other): return binary("shl", other, self)
    def __rshift__(self, other): return binary("shr", self, other)
    def __rrshift__(self, other): return binary("shr", other, self)
    def __neg__(self): return unary("neg", self)
    def __invert__(self): return invert(self)
    def __abs__(self): return call("abs", self)

    def astype(self, dtype) -> "Expr":
        """This value converted to `dtype` (TileLang's `PrimExpr.astype`, i.e. `T.cast`)."""
        from jtile.errors import JtileError
        from jtile.ir.types import as_dtype

        try:
            target = as_dtype(dtype)
        except JtileError as error:
            raise traced_value_error(f".astype: {error}") from None
        return self if self.dtype is target else Cast(self, target)

    # `==` builds a comparison like TileLang's, so IR code compares nodes with `is`, never `==`.
    def __eq__(self, other): return binary("eq", self, other)
    def __ne__(self, other): return binary("ne", self, other)
    __hash__ = object.__hash__

    def __bool__(self):
        raise traced_value_error(
            "a Python `if`, `while`, `and`/`or` or `bool()` was applied to a traced value; "
            "its value is only known on the GPU. Use `with T.If(cond):` / `with T.Else():` for "
            "statements or `T.if_then_else(cond, a, b)` for values")

    def __index__(self):
        raise traced_value_error(
            "a traced value was used where Python needs a static int (a shape, a range(), a "
            "Python list index); use T.serial / T.Parallel for loops over traced bounds. The "
            "index of `for i in range(...)` inside T.Kernel is traced too (the loop is "
            "TileLang's T.serial); loop over a tuple, `for i in (0, 1, 2):`, for a Python int")

    def __iter__(self):
        raise traced_value_error("a traced scalar cannot be iterated over")


@dataclass(frozen=True, eq=False)
class Const(Expr):
    value: Union[int, float, bool]
    dtype: DType


class VarKind(enum.Enum):
    LOOP = "loop"
    BLOCK = "block"
    THREAD = "thread"


@dataclass(frozen=True, eq=False)
class Var(Expr):
    """A named scalar: a loop index, a block index or the thread index."""

    name: str
    dtype: DType = DType.int32
    kind: VarKind = VarKind.LOOP
    axis: int = 0


@dataclass(frozen=True, eq=False)
class BinOp(Expr):
    op: str
    a: Expr
    b: Expr
    dtype: DType


@dataclass(frozen=True, eq=False)
class UnOp(Expr):
    op: str
    a: Expr
    dtype: DType


@dataclass(frozen=True, eq=False)
class Call(Expr):
    """A math intrinsic (`exp`, `max`, ...) applied element-wise."""

    fn: str
    args: tuple
    dtype: DType


@dataclass(frozen=True, eq=False)
class Cast(Expr):
    value: Expr
    dtype: DType


@dataclass(frozen=True, eq=False)
class Select(Expr):
    cond: Expr
    a: Expr
    b: Expr
    dtype: DType


@dataclass(frozen=True, eq=False)
class Load(Expr):
    """One element of a buffer. Used alone in `T.copy` it is TileLang's head address."""

    buffer: "Buffer"
    indices: tuple
    dtype: DType


COMPARISONS = ("lt", "le", "gt", "ge", "eq", "ne")
LOGICAL = ("and", "or")              # on bools: && and ||
# Integer "floordiv" and "mod" round toward -inf, as TileLang's `//` and `%` (TVM's floordiv
# and floormod) and Python's; integer "div" truncates toward zero, as in C (T.truncdiv). On
# floats "floordiv" is floor(a / b) and "mod" is fmod.
ARITHMETIC = ("add", "sub", "mul", "div", "floordiv", "mod", "max", "min")
BITWISE = ("xor", "shl", "shr", "bitand", "bitor")   # "xor" also takes two bools
# `&` and `|` are logical on two bools and bitwise otherwise.
_BITWISE_OF = {"and": "bitand", "or": "bitor"}
UNARY_MATH = ("exp", "exp2", "log", "log2", "sqrt", "rsqrt", "abs", "tanh", "sigmoid")


def as_expr(value, like: Optional[DType] = None) -> Expr:
    """Turns a Python scalar (typed after `like` when given) or a `local.var` buffer into an Expr."""
    if isinstance(value, Expr):
        return value
    if hasattr(type(value), "__jtile_expr__"):   # a T.Ref element (jtile.language.reference)
        return value.__jtile_expr__()
    if isinstance(value, Buffer):
        if value.space is MemorySpace.VAR or value.shape in ((1,), ()):
            return Load(value, (Const(0, DType.int32),) if value.shape else (), value.dtype)
        raise traced_value_error(
            f"buffer {value.name} of shape {value.shape} was used as a scalar; index it, "
            f"e.g. {value.name}[i, j]")
    if isinstance(value, bool):
        return Const(value, DType.bool)
    if isinstance(value, int):
        if like is not None and not like.is_bool:
            return Const(float(value) if like.is_float else value, like)
        return Const(value, DType.int32 if -2**31 <= value < 2**31 else DType.int64)
    if isinstance(value, float):
        if like is not None and like.is_float:
            return Const(value, like)
        return Const(value, DType.float32)
    import numpy as np

    if isinstance(value, np.generic):
        from jtile.ir.types import as_dtype

        return Const(value.item(), as_dtype(value.dtype))
    raise traced_value_error(f"cannot use {type(value).__name__} {value!r} as a kernel value")


def _is_weak(value) -> bool:
    return isinstance(value, (int, float, bool)) and not isinstance(value, Expr)


def binary(op: str, a, b) -> Expr:
    """Builds `a op b`, typing Python literals after the other operand (TileLang's rule)."""
    if _is_weak(a) and not _is_weak(b):
        b = as_expr(b)
        a = as_expr(a, like=b.dtype)
    elif _is_weak(b) and not _is_weak(a):
        a = as_expr(a)
        b = as_expr(b, like=a.dtype)
    else:
        a, b = as_expr(a), as_expr(b)
    if op in COMPARISONS:
        return BinOp(op, a, b, DType.bool)
    if op in LOGICAL or op in BITWISE:
        return _bitwise(op, a, b)
    return BinOp(op, a, b, _arithmetic_type(promote(a.dtype, b.dtype)))


def _arithmetic_type(dtype: DType) -> DType:
    """The type arithmetic on `dtype` values produces: float8 computes in float32 (CUDA has no
    float8 arithmetic), rounded to float8 only where it is stored or cast, in both modes."""
    return DType.float32 if dtype.is_float and dtype.bits == 8 else dtype


_SYMBOL = {"and": "&", "or": "|", "xor": "^", "shl": "<<", "shr": ">>"}


def _bitwise(op: str, a: Expr, b: Expr) -> Expr:
    """`&`, `|`, `^` on two bools combine truth values; otherwise all five are bitwise on
    integers (a bool operand counts as 0 or 1), and a float operand is an error."""
    both_bool = a.dtype.is_bool and b.dtype.is_bool
    if op in LOGICAL and both_bool:
        return BinOp(op, a, b, DType.bool)
    shift = op in ("shl", "shr")
    for side in (a, b):
        if side.dtype.is_float or (shift and side.dtype.is_bool):
            kind = "integers" if shift else "integers or bools"
            raise traced_value_error(
                f"`{_SYMBOL[op]}` on a {side.dtype} operand; it takes {kind}. Use T.cast to "
                "convert, or T.reinterpret to read a float's bits")
    return BinOp(_BITWISE_OF.get(op, op), a, b, promote(a.dtype, b.dtype))


def unary(op: str, a) -> Expr:
    a = as_expr(a)
    return UnOp(op, a, DType.bool if op == "not" else _arithmetic_type(a.dtype))


def invert(a) -> Expr:
    """`~a`: logical not of a bool, bitwise not of an integer (built as `a ^ -1`: all ones in
    a's type, which both the interpreter and C read the same way)."""
    a = as_expr(a)
    if a.dtype.is_bool:
        return UnOp("not", a, DType.bool)
    if a.dtype.is_float:
        raise traced_value_error(f"`~` on a {a.dtype} operand; it takes integers or bools")
    return BinOp("xor", a, Const(-1, DType.int32), a.dtype)


def call(fn: str, *args) -> Expr:
    exprs = [as_expr(x) for x in args if not _is_weak(x)]
    like = exprs[0].dtype if exprs else None
    typed = tuple(as_expr(x, like=like) for x in args)
    dtype = typed[0].dtype
    for other in typed[1:]:
        dtype = promote(dtype, other.dtype)
    return Call(fn, typed, _arithmetic_type(dtype))


# ----------------------------------------------------------------------------- buffers


@dataclass(eq=False)
class Buffer:
    """A named, statically shaped array in one memory space, bound to one kernel."""

    name: str
    shape: tuple
    dtype: DType
    space: MemorySpace
    loc: SourceLoc = NO_LOC
    init: Optional[Expr] = None                 # alloc_var's initial value
    reducer_op: Optional[str] = None            # alloc_reducer: "sum" | "max" | "min"
    replication: Optional[str] = None
    arrive_counts: Optional[tuple] = None       # alloc_barrier: one count per barrier
    descriptor_kind: Optional[str] = None       # alloc_descriptor: "wgmma" | "tcgen05_smem" | ...
    annotation: Any = None                      # T.Tensor annotation of a parameter
    view_of: Optional["Buffer"] = None          # T.view / T.Tensor(..., buf.data): the buffer
                                                # whose bytes this one reinterprets
    layout_annotation: Any = None               # T.annotate_layout: the requested layout
    global_layout: Any = None                   # T.annotate_layout on a global buffer: the
                                                # order of its array (trace.global_layout)

    def __hash__(self):
        return id(self)

    # A `T.alloc_var` compares as its value (`x == 0`, `a == b`), as TileLang's do; any other
    # buffer, or a variable against a tile, compares by identity (sets and dicts of buffers
    # hash by identity and never get this far for two different buffers).
    def __eq__(self, other):
        if self._compares_as_value(other):
            return self._scalar() == other
        return self is other

    def __ne__(self, other):
        if self._compares_as_value(other):
            return self._scalar() != other
        return self is not other

    def _compares_as_value(self, other) -> bool:
        return self.space is MemorySpace.VAR and other is not self and \
            (not isinstance(other, Buffer) or other.space is MemorySpace.VAR)

    @property
    def data(self) -> "BufferData":
        """TileLang's `buf.data`: the storage, for `T.Tensor(shape, dtype, buf.data)` views."""
        return BufferData(self)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.bytes

    def describe(self) -> str:
        return f"{self.name} ({self.space.value} {self.dtype} {tuple(self.shape)})"

    # Indexing builds loads, regions and stores through the tracer (jtile.trace.indexing).
    def __getitem__(self, key):
        from jtile.trace.indexing import index_buffer

        return index_buffer(self, key)

    def __setitem__(self, key, value):
        from jtile.trace.indexing import store_buffer

        store_buffer(self, key, value)

    # A `local.var` buffer reads as its one element in arithmetic (TileLang's alloc_var).
    def _scalar(self) -> Expr:
        return as_expr(self)

    def __add__(self, o): return self._scalar() + o
    def __radd__(self, o): return o + self._scalar()
    def __sub__(self, o): return self._scalar() - o
    def __rsub__(self, o): return o - self._scalar()
    def __mul__(self, o): return self._scalar() * o
    def __rmul__(self, o): return o * self._scalar()
    def __truediv__(self, o): return self._scalar() / o
    def __rtruediv__(self, o): return o / self._scalar()
    def __floordiv__(self, o): return self._scalar() // o
    def __rfloordiv__(self, o): return o // self._scalar()
    def __mod__(self, o): return self._scalar() % o
    def __rmod__(self, o): return o % self._scalar()
    def __lt__(self, o): return self._scalar() < o
    def __le__(self, o): return self._scalar() <= o
    def __gt__(self, o): return self._scalar() > o
    def __ge__(self, o): return self._scalar() >= o
    def __neg__(self): return -self._scalar()
    def __and__(self, o): return self._scalar() & o
    def __rand__(self, o): return o & self._scalar()
    def __or__(self, o): return self._scalar() | o
    def __ror__(self, o): return o | self._scalar()
    def __xor__(self, o): return self._scalar() ^ o
    def __rxor__(self, o): return o ^ self._scalar()
    def __lshift__(self, o): return self._scalar() << o
    def __rlshift__(self, o): return o << self._scalar()
    def __rshift__(self, o): return self._scalar() >> o
    def __rrshift__(self, o): return o >> self._scalar()
    def __invert__(self): return ~self._scalar()
    def __abs__(self): return abs(self._scalar())

    def astype(self, dtype) -> Expr:
        """The variable's value converted to `dtype` (a `T.alloc_var` or one-element buffer)."""
        return self._scalar().astype(dtype)

    def __bool__(self):
        return bool(self._scalar())

    def __index__(self):
        # range(v) over a T.alloc_var: the same refusal as for any traced value.
        return self._scalar().__index__()

    def __repr__(self) -> str:
        return f"Buffer({self.describe()})"


@dataclass(frozen=True, eq=False)
class BufferData:
    """The storage of a buffer (`buf.data`); only `T.Tensor(shape, dtype, data)` takes it."""

    buffer: Buffer


@dataclass(frozen=True, eq=False)
class Region:
    """A static-extent tile of a buffer starting at (possibly traced) indices."""

    buffer: Buffer
    starts: tuple
    extents: tuple

    @property
    def dtype(self) -> DType:
        return self.buffer.dtype

    def squeezed_shape(self) -> tuple:
        return tuple(e for e in self.extents if e != 1)


def full_region(buffer: Buffer) -> Region:
    return Region(buffer, tuple(Const(0, DType.int32) for _ in buffer.shape), tuple(buffer.shape))


# ----------------------------------------------------------------------------- statements


class Stmt:
    loc: SourceLoc


@dataclass(frozen=True, eq=False)
class Store(Stmt):
    buffer: Buffer
    indices: tuple
    value: Expr
    loc: SourceLoc = NO_LOC


class LoopKind(enum.Enum):
    SERIAL = "serial"
    UNROLL = "unroll"
    PIPELINED = "pipelined"


@dataclass(frozen=True, eq=False)
class For(Stmt):
    """A sequential loop `for var in range(start, start + extent * step, step)` run by every thread."""

    var: Var
    start: Expr
    extent: Expr
    body: tuple
    kind: LoopKind = LoopKind.SERIAL
    num_stages: int = 0
    step: int = 1
    loc: SourceLoc = NO_LOC


@dataclass(frozen=True, eq=False)
class While(Stmt):
    """A loop run by every thread while `cond` holds; `cond` is evaluated before each iteration."""

    cond: Expr
    body: tuple
    loc: SourceLoc = NO_LOC


@dataclass(frozen=True, eq=False)
class ParallelFor(Stmt):
    """T.Parallel: one iteration per element of a static tile, spread over the block's threads."""

    vars: tuple
    extents: tuple
    body: tuple
    loc: SourceLoc = NO_LOC
    # The extents as written when passes/pad_parallel_loops.py ran the loop on power-of-2
    # extents, its body then one guard that skips the added iterations; else None.
    padded_from: Optional[tuple] = None


@dataclass(frozen=True, eq=False)
class IfThenElse(Stmt):
    cond: Expr
    then_body: tuple
    else_body: tuple = ()
    loc: SourceLoc = NO_LOC
    # `(first, count)` for a `T.ws` region: `cond` holds for threads first..first+count-1
    # only, and the tile operations of `then_body` are shared by those threads (their own
    # thread index runs from 0), as if they were a block of their own. None for a plain T.If.
    threads: Optional[tuple] = None


@dataclass(frozen=True, eq=False)
class Copy(Stmt):
    src: Region
    dst: Region
    loc: SourceLoc = NO_LOC
    disable_tma: bool = False                 # T.copy(disable_tma=True): no TMA for this copy
    eviction_policy: Optional[str] = None     # "evict_normal" (the only one honoured today)
    coalesced_width: Optional[int] = None     # refused at T.copy unless None
    split_phase: bool = False                 # written as T.tma_copy (same meaning here)


@dataclass(frozen=True, eq=False)
class Fill(Stmt):
    dst: Region
    value: Expr
    loc: SourceLoc = NO_LOC


@dataclass(frozen=True, eq=False)
class Gemm(Stmt):
    """C += op(A) @ op(B) over whole tiles (op transposes when the flag is set)."""

    a: Region
    b: Region
    c: Region
    transpose_a: bool = False
    transpose_b: bool = False
    clear_accum: bool = False
    loc: SourceLoc = NO_LOC
    policy: str = "square"    # T.GemmWarpPolicy: "square" | "full_row" | "full_col"
    k_pack: int = 1           # TileLang's k_pack (1 or 2; AMD matrix cores only)
    wg_wait: int = 0          # TileLang's wgmma wait depth (jtile places the waits itself)
    wgmma_only: bool = False  # T.wgmma_gemm: compiled on wgmma or refused, never mma.sync


@dataclass(frozen=True, eq=False)
class Reduce(Stmt):
    """dst = reduce_op(src, axis=dim) (`clear=False` folds the old dst in)."""

    op: str               # "sum" | "max" | "min" | "abssum" | "absmax" | "bitand" | "bitor" | "bitxor"
    src: Buffer
    dst: Buffer
    dim: int
    clear: bool = True
    loc: SourceLoc = NO_LOC


@dataclass(frozen=True, eq=False)
class Scan(Stmt):
    """T.cumsum / T.cummax: inclusive scan of a shared tile along `dim` (reverse: from the end).

    `dst` may be `src` (in place); both are shared-memory regions of the same shape.
    """

    op: str               # "sum" | "max"
    src: Region
    dst: Region
    dim: int
    reverse: bool = False
    loc: SourceLoc = NO_LOC


@dataclass(frozen=True, eq=False)
class Im2Col(Stmt):
    """T.im2col: one (pixels, channels) tile of the im2col matrix of an NHWC image.

    Row r of the tile is output pixel p = nhw_step * rows + r (p = (n * OH + oh) * OW + ow),
    column c is k = c_step * cols + c (k = (kh * KW + kw) * C + ci); the element is
    img[n, oh * stride - pad + kh * dilation, ow * stride - pad + kw * dilation, ci], zero
    outside the image.
    """

    img: Buffer           # global (N, H, W, C)
    col: Region           # shared (rows, cols) tile
    nhw_step: Expr
    c_step: Expr
    kernel: int
    stride: int
    dilation: int
    pad: int
    loc: SourceLoc = NO_LOC

    @property
    def out_hw(self) -> tuple:
        """(OH, OW) of the convolution."""
        _, h, w, _ = self.img.shape
        span = (self.kernel - 1) * self.dilation + 1
        return ((h + 2 * self.pad - span) // self.stride + 1,
                (w + 2 * self.pad - span) // self.stride + 1)


@dataclass(frozen=True, eq=False)
class UseSwizzle(Stmt):
    """T.use_swizzle: the block indices of the statements after it are rasterised in panels.

    order "row": blocks run across x within panels of `panel_size` rows of y, serpentine;
    "column": the same with x and y exchanged. A bijection of the (x, y) grid.
    """

    panel_size: int
    order: str = "row"
    loc: SourceLoc = NO_LOC


@dataclass(frozen=True, eq=False)
class AtomicAdd(Stmt):
    """dst = op(dst, value) atomically, op "add" (T.atomic_add), "max" or "min" (T.atomic_max /
    T.atomic_min): an element (`value` a scalar) or a tile (`value` a Region)."""

    dst: Union[Region, Load]
    value: Union[Region, Expr]
    loc: SourceLoc = NO_LOC
    op: str = "add"
    # return_prev=True (element form): the thread-private one-element buffer that receives
    # the element's value from before this update.
    prev: Optional[Buffer] = None
    # use_tma=True (a shared tile added into a global one): the TMA engine must do it
    # (cp.reduce.async.bulk.tensor); without it lower_tile_ops still may.
    use_tma: bool = False


@dataclass(frozen=True, eq=False)
class FinalizeReducer(Stmt):
    reducer: Buffer
    loc: SourceLoc = NO_LOC


@dataclass(frozen=True, eq=False)
class SyncThreads(Stmt):
    """T.sync_threads(): the block barrier; with `named` = (barrier id, thread count), a
    barrier over `count` threads of whole warps (bar.sync id, count). With `grid`,
    T.sync_grid(): every thread of every block of the launch meets here (a cooperative launch),
    and global memory written before it is visible to every block after it."""

    loc: SourceLoc = NO_LOC
    named: Optional[tuple] = None
    grid: bool = False


@dataclass(frozen=True, eq=False)
class FenceProxyAsync(Stmt):
    """T.fence_proxy_async: this thread's shared-memory accesses so far are ordered before its
    later asynchronous-proxy ones (TMA, wgmma), and the reverse (fence.proxy.async; sm_90+)."""

    loc: SourceLoc = NO_LOC


@dataclass(frozen=True, eq=False)
class SetMaxNreg(Stmt):
    """T.set_max_nreg: the warpgroup running it releases registers down to `count` a thread
    (`increase` False) or waits for registers up to `count` (setmaxnreg.{dec,inc}; sm_90a)."""

    count: int
    increase: bool
    loc: SourceLoc = NO_LOC


@dataclass(frozen=True, eq=False)
class ThreadCopy(Stmt):
    """T.ptx_cp_async: this thread alone copies a run of elements from global to shared memory
    (cp.async of 4, 8 or 16 bytes; sm_80+). `src` and `dst` are runs along their buffers' last
    dimension; with `predicate` false the run is filled with zeros instead. The copy lands
    asynchronously: the kernel orders it with T.ptx_wait_group or an mbarrier arrival
    (T.cp_async_barrier_noinc), as TileLang's does."""

    src: Region
    dst: Region
    predicate: Optional[Expr] = None
    loc: SourceLoc = NO_LOC


@dataclass(frozen=True, eq=False)
class AsyncCopyGroup(Stmt):
    """T.ptx_commit_group ("commit": close this thread's group of T.ptx_cp_async copies) or
    T.ptx_wait_group ("wait": wait until at most `pending` committed groups are in flight)."""

    op: str
    pending: int = 0
    loc: SourceLoc = NO_LOC


@dataclass(frozen=True, eq=False)
class BarrierOp(Stmt):
    """An mbarrier operation: "arrive", "wait" (arg = parity), "expect_tx" (arg = bytes) or
    "arrive_after_copies" (an arrival made once this thread's T.ptx_cp_async copies so far have
    landed: cp.async.mbarrier.arrive.noinc)."""

    op: str
    barrier: Buffer
    index: Expr
    arg: Optional[Expr] = None
    loc: SourceLoc = NO_LOC


@dataclass(frozen=True, eq=False)
class Kernel:
    """One traced kernel: its global parameters, launch shape, allocations and body."""

    name: str
    params: tuple           # global Buffers: inputs then outputs
    num_inputs: int
    grid: tuple             # static ints, (x, y, z) order as given to T.Kernel
    threads: int
    allocations: tuple      # every non-global Buffer
    body: tuple
    loc: SourceLoc = NO_LOC
    block_vars: tuple = ()
    thread_var: Optional[Var] = None
    attrs: dict = field(default_factory=dict)

    @property
    def inputs(self) -> tuple:
        return self.params[: self.num_inputs]

    @property
    def outputs(self) -> tuple:
        return self.params[self.num_inputs:]

    def replace(self, **changes) -> "Kernel":
        return dataclasses.replace(self, **changes)
