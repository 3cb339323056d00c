"""The tile language, imported as `import jtile.language as T`.

Names follow TileLang's `tilelang.language`, so a TileLang kernel body ports by changing the
import and the launcher.
"""

from jtile.language.allocate import (
    DescKind,
    alloc_barrier,
    alloc_descriptor,
    alloc_fragment,
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
from jtile.language.atomic import atomic_add
from jtile.language.control import Else, If, Then, if_then_else
from jtile.language.copy import clear, copy, fill
from jtile.language.gemm import gemm
from jtile.language.kernel import (
    Kernel,
    ceildiv,
    get_block_binding,
    get_thread_binding,
    program_id,
)
from jtile.language.loops import Parallel, Pipelined, serial, unroll
from jtile.language.math import (
    abs,
    bfloat16,
    bool_,
    cast,
    exp,
    exp2,
    float8_e4m3,
    float8_e5m2,
    float16,
    float32,
    float64,
    infinity,
    int8,
    int16,
    int32,
    int64,
    log,
    log2,
    max,
    max_value,
    min,
    min_value,
    rsqrt,
    sigmoid,
    sqrt,
    tanh,
    uint8,
    uint16,
    uint32,
    uint64,
)
from jtile.language.reduce import (
    finalize_reducer,
    reduce_abssum,
    reduce_absmax,
    reduce_max,
    reduce_min,
    reduce_sum,
)
from jtile.language.sync import (
    mbarrier_arrive,
    mbarrier_expect_tx,
    mbarrier_wait_parity,
    sync_threads,
)
from jtile.language.tensor import Buffer, Tensor

__all__ = [
    "DescKind", "alloc_barrier", "alloc_descriptor", "alloc_fragment", "alloc_local",
    "alloc_reducer", "alloc_shared", "alloc_tcgen05_instr_desc", "alloc_tcgen05_instruction_desc",
    "alloc_tcgen05_smem_desc", "alloc_tmem", "alloc_var", "alloc_wgmma_desc", "empty",
    "atomic_add", "Else", "If", "Then", "if_then_else", "clear", "copy", "fill", "gemm", "Kernel",
    "ceildiv", "get_block_binding", "get_thread_binding", "program_id", "Parallel", "Pipelined",
    "serial", "unroll", "abs", "cast", "exp", "exp2", "infinity", "log", "log2", "max",
    "max_value", "min", "min_value", "rsqrt", "sigmoid", "sqrt", "tanh", "bool_", "int8", "int16",
    "int32", "int64", "uint8", "uint16", "uint32", "uint64", "float16", "bfloat16", "float32",
    "float64", "float8_e4m3", "float8_e5m2", "finalize_reducer", "reduce_abssum", "reduce_absmax",
    "reduce_max", "reduce_min", "reduce_sum", "mbarrier_arrive", "mbarrier_expect_tx",
    "mbarrier_wait_parity", "sync_threads", "Buffer", "Tensor",
]
