"""Fragment layouts: which thread holds which element of a register tile, in which register.

A layout is linear over bits: each bit of the thread index and each bit of the register index
either selects one bit of one logical dimension or, for thread bits only, nothing (the element
is replicated across those threads). This one form covers the element-wise layouts of copies,
the mma.sync accumulator and operand layouts, and the row-vector layouts that reductions
produce; a reduction along a dimension becomes: combine the registers whose bits select that
dimension, then shuffle across the lane bits, then across warps through shared memory.

A dimension that is not a power of 2 (a (48, 96) tile, a (3,) mask, 192 rows over three
warpgroups) is laid out over its padded extent (the next power of 2), and a thread count that
is not a power of 2 (384) as if the block had the next power of 2 of threads. The layout is
"exact" when the threads that exist hold every element and only elements inside the tile: the
padding then lives only in threads that do not exist (warpgroup 3 of three) and no code guards
against it. Otherwise some registers hold padding: they are allocated but every operation on
the whole fragment skips them (`padding_guard`), so nothing reads or writes memory for them and
no reduction counts them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

Bit = Optional[tuple]  # (dimension, bit) or None


def is_power_of_two(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


def log2(n: int) -> int:
    return n.bit_length() - 1


def thread_bit_count(num_threads: int) -> int:
    """Thread-index bits a layout has for a block of `num_threads` (rounded up to a power of 2:
    384 threads index like 512, threads 384.. not existing)."""
    return max(num_threads - 1, 0).bit_length()


def padded(extent: int) -> int:
    """`extent` rounded up to a power of 2."""
    return 1 << max(extent - 1, 0).bit_length()


def padded_shape(shape) -> tuple:
    """Every dimension rounded up to a power of 2: the extents a layout spreads."""
    return tuple(padded(d) for d in shape)


def is_exact(layout: "Layout", shape: tuple, num_threads: int) -> bool:
    """Whether the threads below `num_threads` hold only elements inside `shape` and, between
    them, every element of it (`layout` spreads `padded_shape(shape)`)."""
    if tuple(layout.shape) != padded_shape(shape):
        return False
    if tuple(shape) == tuple(layout.shape) and is_power_of_two(num_threads):
        return True
    reg_max = layout.logical_index(0, layout.num_registers - 1)
    replicated = layout.replicated_thread_mask
    for tid in range(1 << len(layout.thread_bits)):
        low = layout.logical_index(tid, 0)
        inside = all(lo < n for lo, n in zip(low, shape))
        if tid < num_threads:
            # Register bits only add index bits: the thread's largest element is its low
            # element OR every register bit.
            if any((lo | hi) >= n for lo, hi, n in zip(low, reg_max, shape)):
                return False
        elif inside and (tid & ~replicated) >= num_threads:
            return False  # an element only a missing thread holds
    return True


@dataclass(frozen=True)
class Layout:
    """shape: logical tile shape; thread_bits[t] / reg_bits[r]: the (dim, bit) each selects."""

    shape: tuple
    thread_bits: tuple
    reg_bits: tuple

    @property
    def num_registers(self) -> int:
        return 1 << len(self.reg_bits)

    @property
    def replicated_thread_mask(self) -> int:
        return sum(1 << t for t, bit in enumerate(self.thread_bits) if bit is None)

    def logical_index(self, tid: int, reg: int) -> tuple:
        index = [0] * len(self.shape)
        for t, bit in enumerate(self.thread_bits):
            if bit is not None and (tid >> t) & 1:
                index[bit[0]] |= 1 << bit[1]
        for r, bit in enumerate(self.reg_bits):
            if (reg >> r) & 1:
                index[bit[0]] |= 1 << bit[1]
        return tuple(index)

    def register_part(self, reg: int) -> tuple:
        """The part of the logical index that register `reg` contributes (thread bits zero)."""
        return self.logical_index(0, reg)

    def register_of(self, index: tuple) -> int:
        """The register holding `index` in whichever thread owns it."""
        reg = 0
        for r, (dim, bit) in enumerate(self.reg_bits):
            if (index[dim] >> bit) & 1:
                reg |= 1 << r
        return reg

    def contiguous_bits(self, dim: int) -> int:
        """How many low register bits select the low bits of `dim` in order: each thread holds
        runs of 2**result consecutive elements along `dim` in consecutive registers."""
        k = 0
        while k < len(self.reg_bits) and self.reg_bits[k] == (dim, k):
            k += 1
        return k

    def thread_dims(self, dim: int) -> list:
        """[(thread bit, logical bit)] of the thread bits that select dimension `dim`."""
        return [(t, b[1]) for t, b in enumerate(self.thread_bits) if b is not None and b[0] == dim]

    def project(self, keep: tuple) -> "Layout":
        """The layout of a tile indexed by the dims `keep` (in order) of this one.

        Thread bits selecting a dropped dim become replication; register bits selecting a
        dropped dim disappear (their registers hold the same element of the projection).
        """
        remap = {old: new for new, old in enumerate(keep)}
        threads = tuple((remap[b[0]], b[1]) if b is not None and b[0] in remap else None
                        for b in self.thread_bits)
        regs = tuple((remap[b[0]], b[1]) for b in self.reg_bits if b[0] in remap)
        return Layout(tuple(self.shape[d] for d in keep), threads, regs)

    def reshape(self, shape: tuple) -> "Layout":
        """The layout of the same registers seen as a row-major `shape` (T.reshape of a
        fragment): every (dim, bit) becomes the bit it is in the flat index, then the (dim,
        bit) of `shape` that bit falls in. Both shapes have power-of-2 dims."""
        def flat_offsets(dims):
            offsets, total = [], 0
            for n in reversed(dims):
                offsets.append(total)
                total += log2(n)
            return offsets[::-1]

        old, new = flat_offsets(self.shape), flat_offsets(shape)

        def move(bit):
            if bit is None:
                return None
            flat = old[bit[0]] + bit[1]
            dim = next(d for d in range(len(shape)) if new[d] <= flat < new[d] + log2(shape[d]))
            return dim, flat - new[dim]

        return Layout(tuple(shape), tuple(move(b) for b in self.thread_bits),
                      tuple(move(b) for b in self.reg_bits))

    def compatible_projection(self, other: "Layout", keep: tuple) -> bool:
        """True when every thread holds, in `other`, the projected elements it holds here."""
        return self.project(keep).thread_bits == other.thread_bits

    def describe(self) -> str:
        def name(b):
            return "-" if b is None else f"d{b[0]}.{b[1]}"
        return (f"threads[{' '.join(name(b) for b in self.thread_bits)}] "
                f"regs[{' '.join(name(b) for b in self.reg_bits)}]")


def default_layout(shape: tuple, num_threads: int, vector: int) -> Layout:
    """Row-major element-wise layout: `vector` contiguous elements per thread, then threads,
    then more registers; threads beyond the tile's size hold replicas."""
    logical = []  # (dim, bit) from the lowest bit of the last dim upwards
    for dim in reversed(range(len(shape))):
        logical.extend((dim, b) for b in range(log2(padded(shape[dim]))))
    vbits = min(log2(vector), len(logical))
    tbits = log2(num_threads)  # threads past a power of 2 (384 of 512) hold replicas
    regs = logical[:vbits]
    threads = logical[vbits: vbits + tbits]
    regs += logical[vbits + tbits:]
    threads = threads + [None] * (thread_bit_count(num_threads) - len(threads))
    return Layout(padded_shape(shape), tuple(threads), tuple(regs))


@dataclass(frozen=True)
class MmaTiling:
    """How a (M, N) mma.sync accumulator is split: a wm x wn grid of warps, each holding
    mt x nt tiles of 16 x 8 (m16n8) of the padded (power-of-2) accumulator. Where M or N is
    not a power of 2, the tiles past it are padding: the warps skip them (`rows_padded`,
    `cols_padded`), so the warps near the end hold fewer real tiles."""

    m: int
    n: int
    wm: int
    wn: int

    @property
    def mt(self) -> int:
        return padded(self.m) // (16 * self.wm)

    @property
    def nt(self) -> int:
        return padded(self.n) // (8 * self.wn)

    @property
    def rows_padded(self) -> bool:
        return padded(self.m) != self.m

    @property
    def cols_padded(self) -> bool:
        return padded(self.n) != self.n

    def accumulator_layout(self, num_threads: int) -> Layout:
        """Register r = c + 4 * (ni + nt * mi): c0/c1 are columns 2q, 2q+1 of row g, c2/c3 the
        same at row g + 8 (lane = 4g + q); warps are numbered wm-fastest."""
        lane = [(1, 1), (1, 2), (0, 0), (0, 1), (0, 2)]
        regs = [(1, 0), (0, 3)]
        regs += [(1, 3 + b) for b in range(log2(self.nt))]
        regs += [(0, 4 + b) for b in range(log2(self.mt))]
        warps = [(0, 4 + log2(self.mt) + b) for b in range(log2(self.wm))]
        warps += [(1, 3 + log2(self.nt) + b) for b in range(log2(self.wn))]
        threads = lane + warps
        threads += [None] * (thread_bit_count(num_threads) - len(threads))
        return Layout(padded_shape((self.m, self.n)), tuple(threads), tuple(regs))

    def operand_a_layout(self, num_threads: int, k: int) -> Layout:
        """The m16n8k16 A-operand layout over (M, K) for this warp grid when every warp along
        N needs the same rows: a{0,1} cols 2q, 2q+1 of row g; a{2,3} row g+8; a{4..7} cols +8.
        Register r = e + 8 * (ki + kt * mi) with e the element of the 8 a-halves."""
        kt = padded(k) // 16
        lane = [(1, 1), (1, 2), (0, 0), (0, 1), (0, 2)]
        regs = [(1, 0), (0, 3), (1, 3)]
        regs += [(1, 4 + b) for b in range(log2(kt))]
        regs += [(0, 4 + b) for b in range(log2(self.mt))]
        warps = [(0, 4 + log2(self.mt) + b) for b in range(log2(self.wm))]
        threads = lane + warps
        threads += [None] * (thread_bit_count(num_threads) - len(threads))
        return Layout(padded_shape((self.m, k)), tuple(threads), tuple(regs))

    def operand_b_layout(self, num_threads: int, k: int, transposed: bool = False) -> Layout:
        """The m16n8k16 B-operand layout over (K, N) ((N, K) when `transposed`) for this warp
        grid (PTX "mma.m16n8k16 B fragment"): b{0,1} rows 2q, 2q+1 of column g, b{2,3} rows
        + 8 (lane = 4g + q). Register r = e + 4 * (ki + kt * ni) with e the element of the
        4 b-halves; every warp along M needs the same columns, so those warps hold copies."""
        kt = padded(k) // 16
        kd, nd = (1, 0) if transposed else (0, 1)
        lane = [(kd, 1), (kd, 2), (nd, 0), (nd, 1), (nd, 2)]
        regs = [(kd, 0), (kd, 3)] + [(kd, 4 + b) for b in range(log2(kt))]
        regs += [(nd, 3 + b) for b in range(log2(self.nt))]
        warps = [None] * log2(self.wm)
        warps += [(nd, 3 + log2(self.nt) + b) for b in range(log2(self.wn))]
        threads = lane + warps
        threads += [None] * (thread_bit_count(num_threads) - len(threads))
        shape = (self.n, k) if transposed else (k, self.n)
        return Layout(padded_shape(shape), tuple(threads), tuple(regs))


def choose_mma_tiling(m: int, n: int, num_warps: int, full_row: bool,
                      policy: str = "square") -> Optional[MmaTiling]:
    """A warp grid for an (m, n) accumulator; None when no grid tiles it with m16n8 tiles.

    `full_row` puts every warp along M (each warp owns whole rows), which row reductions and
    feeding the tile into the next gemm as A from registers need. `policy` is the gemm's
    T.GemmWarpPolicy: "full_row" also puts every warp along M, "full_col" every warp along N,
    "square" lets the cost below choose.
    """
    best = None
    if m % 16 or n % 8:
        return None
    for wm_bits in range(log2(num_warps) + 1):
        wm, wn = 1 << wm_bits, num_warps >> wm_bits
        if padded(m) % (16 * wm) or padded(n) % (8 * wn):
            continue
        if (full_row or policy == "full_row") and wn != 1:
            continue
        if policy == "full_col" and wm != 1:
            continue
        tiling = MmaTiling(m, n, wm, wn)
        # Shared-memory traffic per k-step is proportional to the warp tile's perimeter.
        cost = padded(m) // wm + padded(n) // wn
        if best is None or cost < best[0]:
            best = (cost, tiling)
    return best[1] if best else None


@dataclass(frozen=True)
class WgmmaTiling:
    """How an (M, N) accumulator is split over warpgroups for wgmma (sm_90a): a wgs_m x wgs_n
    grid of warpgroups (numbered M-fastest), each issuing m64 x n_per_wg instructions for
    m_per_wg / 64 row blocks. Warp w of a warpgroup holds rows 16w..16w+15 of each row block.
    wgs_m need not be a power of 2 (192 rows over three warpgroups): the layouts then spread
    the padded rows, the missing warpgroup's (see the module's docstring)."""

    m: int
    n: int
    wgs_m: int
    wgs_n: int

    @property
    def m_per_wg(self) -> int:
        return self.m // self.wgs_m

    @property
    def n_per_wg(self) -> int:
        return self.n // self.wgs_n

    @property
    def row_blocks(self) -> int:
        return self.m_per_wg // 64

    def accumulator_layout(self, num_threads: int) -> Layout:
        """Register r = c + 4 * j + (padded(n_per_wg) / 2) * mi for column block j (8 wide) and
        row block mi, c as in mma.sync's m16n8 accumulator (PTX "wgmma .m64nNk16 accumulator
        D"); a warpgroup's row blocks and column blocks are laid out over powers of 2, those
        past its real share being padding (a wgmma of N = 96 writes registers 0..47 of each
        row block's 64)."""
        nt, mt = padded(self.n_per_wg) // 8, padded(self.row_blocks)
        lane = [(1, 1), (1, 2), (0, 0), (0, 1), (0, 2)]
        regs = [(1, 0), (0, 3)] + [(1, 3 + b) for b in range(log2(nt))]
        regs += [(0, 6 + b) for b in range(log2(mt))]
        warps = [(0, 4), (0, 5)]
        groups = [(0, 6 + log2(mt) + b) for b in range(thread_bit_count(self.wgs_m))]
        groups += [(1, 3 + log2(nt) + b) for b in range(log2(self.wgs_n))]
        threads = lane + warps + groups
        threads += [None] * (thread_bit_count(num_threads) - len(threads))
        return Layout(padded_shape((self.m, self.n)), tuple(threads), tuple(regs))

    def operand_a_layout(self, num_threads: int, k: int) -> Layout:
        """The wgmma A-from-registers layout over (M, K) (PTX "wgmma .m64nNk16 A in
        registers"): per k16 step, a{0,1} cols 2q, 2q+1 of row g, a{2,3} row g + 8, a{4..7}
        cols + 8. With every warpgroup along M it equals the accumulator layout of an (M, K)
        tile, so a softmax result feeds the next wgmma without moving."""
        kt, mt = padded(k) // 16, padded(self.row_blocks)
        lane = [(1, 1), (1, 2), (0, 0), (0, 1), (0, 2)]
        regs = [(1, 0), (0, 3), (1, 3)] + [(1, 4 + b) for b in range(log2(kt))]
        regs += [(0, 6 + b) for b in range(log2(mt))]
        warps = [(0, 4), (0, 5)]
        groups = [(0, 6 + log2(mt) + b) for b in range(thread_bit_count(self.wgs_m))]
        threads = lane + warps + groups
        threads += [None] * (thread_bit_count(num_threads) - len(threads))
        return Layout(padded_shape((self.m, k)), tuple(threads), tuple(regs))


def choose_wgmma_tiling(m: int, n: int, num_warpgroups: int, full_row: bool,
                        columns_only: bool = False) -> Optional[WgmmaTiling]:
    """A warpgroup grid for an (m, n) accumulator; None when wgmma cannot tile it (each
    warpgroup needs a multiple of 64 rows and of 8 columns, equal instructions of at most 256
    columns, and registers for its accumulator; a share that is not a power of 2 is padded, so
    only one warpgroup may lie along its dimension).

    `full_row` puts every warpgroup along M, which row reductions and A from registers need;
    `columns_only` puts every warpgroup along N (TileLang's GemmWarpPolicy.FullCol). A
    warpgroup count that is not a power of 2 splits M by its odd factor (three warpgroups:
    64 of 192 rows each) or leaves the warpgroups past a power of 2 holding copies.
    """
    best = None
    # (An odd factor along M takes every warpgroup: with some along N too, the code's
    # M-fastest numbering by that factor and the layout's bits would disagree.)
    splits = [(wgs_m, num_warpgroups // wgs_m) for wgs_m in range(1, num_warpgroups + 1)
              if num_warpgroups % wgs_m == 0 and (is_power_of_two(num_warpgroups // wgs_m)
                                                  if is_power_of_two(wgs_m)
                                                  else wgs_m == num_warpgroups)]
    # Or a power-of-2 grid, the warpgroups past it holding copies (128 rows on three).
    whole = 1 << log2(max(num_warpgroups, 1))
    splits += [(1 << b, whole >> b) for b in range(log2(whole) + 1)
               if (1 << b, whole >> b) not in splits]
    for wgs_m, wgs_n in splits:
        if (full_row and wgs_n != 1) or (columns_only and wgs_m != 1):
            continue
        if m % (64 * wgs_m) or n % wgs_n:
            continue
        t = WgmmaTiling(m, n, wgs_m, wgs_n)
        # A share that is not a power of 2 (N = 96, three row blocks) is laid out padded,
        # which only one warpgroup along that dimension can do (the next one's share would
        # start at the padded offset); wider than 256 columns it must split into equal
        # instructions.
        if t.n_per_wg < 8 or t.n_per_wg % 8 or t.m_per_wg % 64:
            continue
        if not is_power_of_two(t.n_per_wg) and (wgs_n != 1 or (t.n_per_wg > 256 and
                                                               t.n_per_wg % 256)):
            continue
        if not is_power_of_two(t.row_blocks) and wgs_m != 1:
            continue
        if t.m_per_wg * t.n_per_wg // 128 > 256:  # fp32 accumulator registers per thread
            continue
        # Wide instructions first (m64n256 reads each A row once per 256 columns), then the
        # smallest warpgroup perimeter (shared-memory traffic per k-step).
        cost = (-min(t.n_per_wg, 256), t.m_per_wg + t.n_per_wg)
        if best is None or cost < best[0]:
            best = (cost, t)
    return best[1] if best else None
