"""Device-side random numbers: TileLang's `T.rng_init`, `T.rng_rand` and `T.rng_rand_float`.

Each thread keeps a counter-based Philox4x32-10 generator in private buffers, advanced as
curand's `curandStatePhilox4_32_10_t`: `T.rng_init(seed, seq, offset)` is
`curand_init(seed, subsequence=seq, offset=offset)`, `T.rng_rand()` is `curand()` (the next
32-bit word of the thread's stream), `T.rng_rand_float()` is `curand_uniform()` and
`T.rng_rand_float(dist="normal")` is `curand_normal()`; a kernel draws the numbers TileLang's
would.

The generator is written with jtile's own element operations (32-bit words, 64-bit products
for the multiply-high), so interpret mode and the compiled kernel run the same arithmetic and
draw the same words. Draws belong to a thread's own code, outside `T.Parallel`, where each
thread runs its statements in order; inside a `T.Parallel` the order in which one thread visits
its elements is the compiler's, so a draw there is refused by name, except in a kernel of one
thread (TileLang's `rand_uint` example): that thread visits the elements in the loop's order,
and the loop runs as loops in that order.
"""

from __future__ import annotations

import math as pymath

import numpy as np

from jtile.ir.nodes import Const, Expr
from jtile.ir.types import DType
from jtile.language.allocate import alloc_local
from jtile.language.control import If, if_then_else
from jtile.language.math import cast, cos, log, sin, sqrt
from jtile.trace.builder import current
from jtile.trace.source import caller_location

GENERATOR = "curandStatePhilox4_32_10_t"

# Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC 2011): the
# round multipliers, the Weyl increments of the key, the number of rounds.
_M0, _M1 = 0xD2511F53, 0xCD9E8D57
_W0, _W1 = 0x9E3779B9, 0xBB67AE85
_ROUNDS = 10

# Words of the state buffer: the 128-bit counter, the 64-bit key, the current block of four
# output words, the index of the next one (0..3), and whether the second value of the last
# Box-Muller pair is waiting (curand_normal returns normals in pairs).
_CTR, _KEY, _OUT, _NEXT, _HAS_NORMAL = 0, 4, 6, 10, 11
_WORDS = 12

_U32 = DType.uint32
_FLOAT_SCALE = 2.0 ** -32                   # curand's CURAND_2POW32_INV
_ANGLE_SCALE = 2.0 ** -32 * 2.0 * pymath.pi  # CURAND_2POW32_INV_2PI


def _u32(value) -> Expr:
    return Const(value & 0xFFFFFFFF, _U32) if isinstance(value, int) else cast(value, _U32)


def _halves(value) -> tuple:
    """(low, high) 32-bit words of a 64-bit seed, subsequence or offset: a Python or NumPy
    integer gives both; a traced integer is taken as 32 bits (interpret mode keeps 32-bit
    integers)."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        value = int(value) & (2**64 - 1)   # a negative seed as its 64-bit pattern, as curand
        return _u32(value), _u32(value >> 32)
    return _u32(value), _u32(0)


def _mulhilo(m: int, x: Expr) -> tuple:
    """(high, low) words of the 64-bit product m * x, from 16-bit halves in 32-bit integer
    arithmetic (the same operations in interpret mode and compiled)."""
    mask = _u32(0xFFFF)
    sixteen = _u32(16)
    x_lo, x_hi = x & mask, x >> sixteen
    m_lo, m_hi = _u32(m & 0xFFFF), _u32(m >> 16)
    lo_lo, lo_hi, hi_lo = m_lo * x_lo, m_lo * x_hi, m_hi * x_lo
    middle = (lo_lo >> sixteen) + (lo_hi & mask) + (hi_lo & mask)
    high = m_hi * x_hi + (lo_hi >> sixteen) + (hi_lo >> sixteen) + (middle >> sixteen)
    return high, _u32(m) * x


class _State:
    """One kernel's generator: the state words, a staging area for a round's four words and
    the cached normal value, all thread-private."""

    def __init__(self, kernel_loc):
        self.kernel_loc = kernel_loc
        # (Assigned to plain names first: the generated CUDA names buffers after them.)
        rng_state = alloc_local((_WORDS,), "uint32")
        rng_round = alloc_local((4,), "uint32")
        rng_normal = alloc_local((1,), "float32")   # the pair's waiting second value
        self.words, self.stage, self.normal = rng_state, rng_round, rng_normal

    def generate(self) -> None:
        """The output words become Philox4x32-10(counter, key)."""
        w, stage = self.words, self.stage
        for i in range(4):
            w[_OUT + i] = w[_CTR + i]
        for r in range(_ROUNDS):
            key0 = w[_KEY] + _u32(_W0 * r) if r else w[_KEY]
            key1 = w[_KEY + 1] + _u32(_W1 * r) if r else w[_KEY + 1]
            hi0, lo0 = _mulhilo(_M0, w[_OUT])
            hi1, lo1 = _mulhilo(_M1, w[_OUT + 2])
            # Every word of the round reads the last round's: stage all four, then store.
            stage[0] = hi1 ^ w[_OUT + 1] ^ key0
            stage[1] = lo1
            stage[2] = hi0 ^ w[_OUT + 3] ^ key1
            stage[3] = lo0
            for i in range(4):
                w[_OUT + i] = stage[i]

    def add_to_counter(self, low: int, lo: Expr, hi: Expr) -> None:
        """Adds the 64-bit amount (lo, hi) to the counter's words from `low` up, carrying into
        the words above (curand's Philox_State_Incr and Philox_State_Incr_hi)."""
        w = self.words
        w[low] = w[low] + lo
        hi = hi + _u32(w[low] < lo)             # the low word wrapped
        w[low + 1] = w[low + 1] + hi
        if low == _CTR:                         # and into the high half
            wrapped = (w[low + 1] < hi) & (hi != _u32(0))
            w[_CTR + 2] = w[_CTR + 2] + _u32(wrapped)
            w[_CTR + 3] = w[_CTR + 3] + _u32(wrapped & (w[_CTR + 2] == _u32(0)))

    def next_word(self) -> Expr:
        """curand(): the next output word, in a variable of its own (a later draw does not
        change it); past the fourth word the counter steps and a new block is generated."""
        w = self.words
        index = w[_NEXT]
        rng_word = alloc_local((1,), "uint32")
        word = rng_word
        word[0] = if_then_else(index == _u32(0), w[_OUT],
                               if_then_else(index == _u32(1), w[_OUT + 1],
                                            if_then_else(index == _u32(2), w[_OUT + 2],
                                                         w[_OUT + 3])))
        w[_NEXT] = index + _u32(1)
        with If(w[_NEXT] == _u32(4)):
            self.add_to_counter(_CTR, _u32(1), _u32(0))
            self.generate()
            w[_NEXT] = _u32(0)
        return word[0]

    def next_normal(self) -> Expr:
        """curand_normal(): Box-Muller on two words gives a pair; the first is returned now,
        the second by the next call."""
        w = self.words
        rng_value = alloc_local((1,), "float32")
        value = rng_value
        value[0] = self.normal[0]                    # the waiting second value, if any
        with If(w[_HAS_NORMAL] == _u32(0)):
            value[0] = _uniform(self.next_word(), _FLOAT_SCALE)
            angle = _uniform(self.next_word(), _ANGLE_SCALE)
            radius = sqrt(cast(-2.0, "float32") * log(value[0]))
            self.normal[0] = radius * cos(angle)     # both read value[0] before it changes
            value[0] = radius * sin(angle)
            w[_HAS_NORMAL] = _u32(2)
        # 2 (a pair made just now): the second value waits; 1 (it was just used): none does.
        w[_HAS_NORMAL] = if_then_else(w[_HAS_NORMAL] == _u32(2), _u32(1), _u32(0))
        return value[0]


def _kernel_state(op: str, create: bool = False) -> _State:
    builder = current(op)
    state = builder.rng_state
    if state is not None and state.kernel_loc != builder.kernel_loc:
        state = None   # an earlier kernel of the same function
    if state is None:
        if not create:
            raise builder.error("this kernel's threads have no random state yet: call "
                                "T.rng_init(seed, seq, offset) before drawing", caller_location(),
                                op=op)
        state = _State(builder.kernel_loc)
        builder.rng_state = state
    return state


def _outside_parallel(op: str) -> None:
    builder = current(op)
    if builder.parallel_depth:
        if builder.threads == 1:
            # One thread visits every element, in the loop's order (T.Parallel runs as loops).
            builder.draws_in_parallel = True
            return
        raise builder.error(
            "random draws inside T.Parallel are not supported: the order in which a thread "
            "visits its elements there is the compiler's, so its draws would not be "
            "reproducible (a kernel of one thread may: it visits them in the loop's order). "
            "Draw in each thread's own code, e.g. `for j in T.serial(n): "
            "A[base + j] = T.rng_rand()`", caller_location(), op=op)


def rng_init(seed, seq=0, offset=0, generator=GENERATOR):
    """Seeds this thread's generator: curand_init(seed, subsequence=seq, offset=offset).

    Threads with the same seed and different `seq` draw from non-overlapping subsequences;
    `offset` skips that many words of the stream. Only curand's Philox4x32-10 generator
    ("curandStatePhilox4_32_10_t", TileLang's default) is implemented. Any arch.
    """
    op = "T.rng_init"
    builder = current(op)
    if generator != GENERATOR:
        raise builder.error(f"generator={generator!r} is not supported: jtile implements "
                            f"curand's Philox4x32-10 ({GENERATOR!r}, the default)",
                            caller_location(), op=op)
    _outside_parallel(op)
    state = _kernel_state(op, create=True)
    w = state.words
    for i in range(4):
        w[_CTR + i] = _u32(0)
    w[_KEY], w[_KEY + 1] = _halves(seed)
    w[_HAS_NORMAL] = _u32(0)
    state.add_to_counter(_CTR + 2, *_halves(seq))          # skipahead_sequence(seq)
    # skipahead(offset): offset // 4 whole blocks, then offset % 4 words into the block.
    offset_lo, offset_hi = _halves(offset)
    w[_NEXT] = offset_lo & _u32(3)
    blocks_lo = (offset_lo >> _u32(2)) | (offset_hi << _u32(30))
    state.add_to_counter(_CTR, blocks_lo, offset_hi >> _u32(2))
    state.generate()


def rng_rand():
    """The next 32-bit word of this thread's stream (uint32), as curand()."""
    op = "T.rng_rand"
    _outside_parallel(op)
    return _kernel_state(op).next_word()


def rng_rand_float(bit=32, dist="uniform"):
    """A float32 from this thread's stream: uniform on (0, 1] as curand_uniform(), or
    standard normal as curand_normal() (Box-Muller on two words; the pair's second value is
    returned by the next call). bit=64 (float64) is not supported."""
    op = "T.rng_rand_float"
    builder = current(op)
    if bit != 32:
        raise builder.error(f"bit={bit!r}: only float32 draws (bit=32) are supported",
                            caller_location(), op=op)
    if dist not in ("uniform", "normal"):
        raise builder.error(f"dist={dist!r} must be 'uniform' or 'normal'", caller_location(),
                            op=op)
    _outside_parallel(op)
    state = _kernel_state(op)
    if dist == "uniform":
        return _uniform(state.next_word(), _FLOAT_SCALE)
    return state.next_normal()


def _uniform(word: Expr, scale: float) -> Expr:
    return cast(word, "float32") * cast(scale, "float32") + cast(scale / 2.0, "float32")
