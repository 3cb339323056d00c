"""The tile language, imported as `import jtile.language as T`.

Names follow TileLang's `tilelang.language`, so a TileLang kernel body ports by changing the
import and the launcher.
"""

from jtile.language.per_thread_copy import (access_ptr, cp_async_barrier_noinc, ptx_commit_group,
                                       ptx_cp_async, ptx_wait_group)
from jtile.language.allocate import (
    DescKind,
    alloc_barrier,
    alloc_descriptor,
    alloc_buffer,
    alloc_fragment,
    alloc_global,
    alloc_local,
    alloc_reducer,
    alloc_shared,
    alloc_tcgen05_instr_desc,
    alloc_tcgen05_instruction_desc,
    alloc_tcgen05_smem_desc,
    alloc_tmem,
    alloc_var,
    alloc_wgmma_desc,
    empty,
)
from jtile.language.atomic import atomic_add, atomic_addx2, atomic_addx4, atomic_max, atomic_min
from jtile.language.bitwise import (Select, bitwise_and, bitwise_not, bitwise_or, bitwise_xor,
                                    isinf, isnan, shift_left, shift_right)
from jtile.language.control import Else, If, Then, While, if_then_else
from jtile.language.copy import clear, copy, fill
from jtile.language.gemm import GemmWarpPolicy, gemm, wgmma_gemm
from jtile.language.im2col import c2d_im2col, im2col
from jtile.language.kernel import (
    ClusterKernel,
    Kernel,
    ceildiv,
    get_block_binding,
    get_thread_binding,
    program_id,
)
from jtile.language.layout import (
    Fragment,
    Layout,
    annotate_layout,
    make_full_bank_swizzled_layout,
    make_half_bank_swizzled_layout,
    make_linear_layout,
    make_quarter_bank_swizzled_layout,
    make_swizzled_layout,
    use_swizzle,
)
from jtile.language.loops import Parallel, Pipelined, serial, unroll, vectorized
from jtile.language.loops import serial as Serial  # TileLang's capitalised aliases
from jtile.language.loops import unroll as Unroll
from jtile.language.loops import vectorized as Vectorized
from jtile.language.persistent import Persistent
from jtile.language.math import (
    Cast,
    abs,
    acos,
    acosh,
    asin,
    asinh,
    atan,
    atan2,
    atanh,
    cast,
    ceil,
    clamp,
    copysign,
    cos,
    cosh,
    erf,
    exp,
    exp10,
    exp2,
    floor,
    floordiv,
    floormod,
    fmod,
    hypot,
    infinity,
    log,
    log10,
    log1p,
    log2,
    max,
    max_value,
    min,
    min_value,
    nearbyint,
    pow,
    reinterpret,
    round,
    rsqrt,
    sigmoid,
    sin,
    sinh,
    sqrt,
    tan,
    tanh,
    trunc,
    truncdiv,
    truncmod,
)
# TileLang's dtype names. `bool`, `int` and `float` shadow Python's inside this module only;
# they stay out of __all__ so that `from jtile.language import *` leaves the builtins alone.
from jtile.language.dtypes import (
    bfloat16,
    bool,
    bool_,
    double,
    dtype,
    float,
    float8_e4m3,
    float8_e4m3fn,
    float8_e5m2,
    float16,
    float32,
    float64,
    half,
    int,
    int8,
    int16,
    int32,
    int64,
    long,
    short,
    tfloat32,
    uint,
    uint8,
    uint16,
    uint32,
    uint64,
)
from jtile.language.reduce import (
    finalize_reducer,
    reduce,
    reduce_abssum,
    reduce_absmax,
    reduce_bitand,
    reduce_bitor,
    reduce_bitxor,
    reduce_max,
    reduce_min,
    reduce_prod,
    reduce_sum,
)
from jtile.language.random import rng_init, rng_rand, rng_rand_float
from jtile.language.scan import cummax, cumsum
from jtile.language.warp import (
    all_sync,
    any_sync,
    ballot,
    ballot_sync,
    shfl_down,
    shfl_sync,
    shfl_up,
    shfl_xor,
    tvm_warp_shuffle,
    tvm_warp_shuffle_down,
    tvm_warp_shuffle_up,
    warp_reduce_bitand,
    warp_reduce_bitor,
    warp_reduce_max,
    warp_reduce_min,
    warp_reduce_sum,
)
from jtile.language.sync import (
    barrier_arrive,
    fence_proxy_async,
    barrier_wait,
    disable_warp_group_reg_alloc,
    mbarrier_arrive,
    mbarrier_expect_tx,
    mbarrier_wait_parity,
    wait_wgmma,
    no_set_max_nreg,
    sync_grid,
    sync_threads,
)
from jtile.language.prim_func import const, macro, prim_func
from jtile.language.reference import Ref
# T.Tensor is TileLang's annotation proxy (`T.Tensor(shape, dtype)`, `T.Tensor[shape, dtype]`);
# with data=buf.data it makes a view (jtile.language.view).
from jtile.language.tensor import (Buffer, FragmentBuffer, LocalBuffer, SharedBuffer, Tensor,
                                   dynamic, symbolic)
from jtile.language.view import reshape, view
from jtile.language.thread_allreduce import attr, comm_reducer, evaluate, tvm_thread_allreduce
from jtile.language.warp_groups import (WarpSpecialize, annotate_consumer_reg_alloc,
                                        annotate_producer_reg_dealloc, dec_max_nreg,
                                        inc_max_nreg, set_max_nreg, tma_copy, ws)

__all__ = [
    "DescKind", "alloc_barrier", "alloc_buffer", "alloc_global", "alloc_descriptor",
    "alloc_fragment", "alloc_local",
    "alloc_reducer", "alloc_shared", "alloc_tcgen05_instr_desc", "alloc_tcgen05_instruction_desc",
    "alloc_tcgen05_smem_desc", "alloc_tmem", "alloc_var", "alloc_wgmma_desc", "empty",
    "atomic_add", "atomic_max", "atomic_min", "Else", "If", "Then", "if_then_else", "Select", "clear",
    "bitwise_and", "bitwise_or", "bitwise_xor", "bitwise_not", "shift_left", "shift_right",
    "isnan", "isinf",
    "copy", "fill", "gemm", "wgmma_gemm", "Kernel", "ws", "WarpSpecialize", "tma_copy", "set_max_nreg",
    "inc_max_nreg", "dec_max_nreg", "annotate_producer_reg_dealloc", "annotate_consumer_reg_alloc",
    "attr", "comm_reducer", "evaluate", "tvm_thread_allreduce",
    "ceildiv", "get_block_binding", "get_thread_binding", "program_id", "Parallel", "Pipelined",
    "serial", "Serial", "unroll", "Unroll", "Persistent", "abs", "cast", "Cast", "clamp", "floordiv",
    "floormod", "truncdiv", "truncmod", "reinterpret",
    "exp", "exp2", "infinity", "log", "log2", "max",
    "max_value", "min", "min_value", "rsqrt", "sigmoid", "sqrt", "tanh", "bool_", "int8", "int16",
    "int32", "int64", "uint8", "uint16", "uint32", "uint64", "float16", "bfloat16", "float32",
    "float64", "float8_e4m3", "float8_e4m3fn", "float8_e5m2", "tfloat32", "short", "long",
    "uint", "half",
    "double", "dtype", "finalize_reducer", "reduce_abssum", "reduce_absmax",
    "reduce_max", "reduce_min", "reduce_sum", "mbarrier_arrive", "mbarrier_expect_tx",
    "mbarrier_wait_parity", "sync_grid", "sync_threads", "Buffer", "Tensor",
    "GemmWarpPolicy", "c2d_im2col", "im2col", "ClusterKernel", "Fragment", "Layout",
    "annotate_layout", "make_full_bank_swizzled_layout", "make_half_bank_swizzled_layout",
    "make_linear_layout", "make_quarter_bank_swizzled_layout", "make_swizzled_layout",
    "use_swizzle", "reduce", "reduce_bitand", "reduce_bitor", "reduce_bitxor", "reduce_prod",
    "cummax", "cumsum", "reshape", "view", "rng_init", "rng_rand", "rng_rand_float",
    "While", "const", "macro", "prim_func", "Ref", "dynamic", "symbolic", "SharedBuffer",
    "FragmentBuffer", "LocalBuffer",
    "atomic_addx2", "atomic_addx4", "vectorized", "Vectorized", "barrier_arrive", "barrier_wait", "fence_proxy_async",
    "wait_wgmma", "all_sync", "any_sync", "ballot", "ballot_sync", "shfl_down", "shfl_sync",
    "shfl_up", "shfl_xor", "tvm_warp_shuffle", "tvm_warp_shuffle_down", "tvm_warp_shuffle_up",
    "warp_reduce_bitand", "warp_reduce_bitor", "warp_reduce_max", "warp_reduce_min",
    "warp_reduce_sum",
    "no_set_max_nreg", "disable_warp_group_reg_alloc", "sin", "cos", "tan", "asin", "acos",
    "atan", "atan2", "sinh", "cosh", "asinh", "acosh", "atanh", "erf", "log10", "log1p", "exp10",
    "floor", "ceil", "trunc", "nearbyint", "hypot", "copysign", "fmod",
    "access_ptr", "ptx_cp_async", "ptx_commit_group", "ptx_wait_group", "cp_async_barrier_noinc",
]
# `round` and `pow` (TileLang's, in jtile.language.math) stay out of __all__ like `bool`, `int`
# and `float`, so that `from jtile.language import *` leaves Python's builtins alone.

# `T.<name>` that jtile does not have: a JtileError naming it and what to use instead.
from jtile.language.unsupported import missing_attribute as __getattr__  # noqa: E402
