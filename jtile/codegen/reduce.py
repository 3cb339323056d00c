"""Reductions of fragments (T.reduce_*) and of reducers (T.finalize_reducer).

A reduction along a dimension combines, in each thread, the registers that differ only in
that dimension; then the lanes that hold other parts of the same row (butterfly shuffles over
the lane bits that select the dimension); then, when warps split the dimension too, the warps'
partials through a shared-memory scratch area between two block barriers.
"""

from __future__ import annotations

from jtile.codegen.expr import const_text
from jtile.codegen.padding import inside
from jtile.errors import JtileTraceError
from jtile.ir import nodes as ir
from jtile.ir.types import DType

_COMBINE = {"sum": "add", "abssum": "add", "max": "max", "absmax": "max", "min": "min",
            "bitand": "&", "bitor": "|", "bitxor": "^"}


def _combine(op: str, a: str, b: str) -> str:
    kind = _COMBINE[op]
    if kind in ("&", "|", "^"):
        return f"({a}) {kind} ({b})"
    return f"{a} + {b}" if kind == "add" else f"jt::{kind}({a}, {b})"


def _tree(op: str, parts: list) -> str:
    """`parts` combined pairwise: a chain of depth log2(n), not n, so a thread's registers
    reduce in a few dependent steps (a softmax row of 64 registers: 6, not 63)."""
    while len(parts) > 1:
        pairs = [_combine(op, parts[i], parts[i + 1]) for i in range(0, len(parts) - 1, 2)]
        if _COMBINE[op] in ("add", "&", "|", "^"):
            # Parenthesised: C groups `+` left to right, which would make the chain again.
            pairs = [f"({p})" for p in pairs]
        parts = pairs + parts[len(parts) - len(parts) % 2:]
    return parts[0]


def _identity(op: str, dtype: DType) -> str:
    kind = _COMBINE[op]
    if kind == "&":
        return f"static_cast<{dtype.c_name}>(~0ull)"
    if kind in ("add", "|", "^") or op == "absmax":
        return const_text(0, dtype)
    if dtype.is_float:
        return ("-" if kind == "max" else "") + f"jt::infinity<{dtype.c_name}>()"
    return f"jt::{'min' if kind == 'max' else 'max'}_value<{dtype.c_name}>()"


def accumulator_dtype(dtype: DType) -> DType:
    # Narrow integers widen to 32 bits: warp shuffles move 32-bit words, and truncating the
    # wide result gives the narrow type's wrapped sum and exact max/min/bitwise results.
    if dtype.is_bool or (dtype.is_int and dtype.bits < 32):
        return DType.int32 if dtype.is_signed or dtype.is_bool else DType.uint32
    return DType.float32 if dtype.is_float and dtype.bits < 32 else dtype


def _scratch(em, dtype: DType) -> str:
    return (f"reinterpret_cast<{dtype.c_name}*>(jt_smem + {em.plan.scratch_offset})")


def writer_index(thread: str, lane_bits: list) -> str:
    """`thread` (an index whose `lane_bits`, all below 5, are zero) with those bits removed:
    the writers of a cross-warp reduction numbered densely."""
    if not lane_bits:
        return thread
    kept = [b for b in range(5) if b not in lane_bits]
    terms = [f"({thread} >> 5)" if not kept else f"(({thread} >> 5) << {len(kept)})"]
    terms += [f"(({thread} >> {b}) & 1)" + (f" << {k}" if k else "") for k, b in enumerate(kept)]
    return terms[0] if len(terms) == 1 else "(" + " | ".join(terms) + ")"


def reduce_lane_bits(src_layout, dim: int) -> list:
    """The thread bits below 5 (lanes) along which a reduction over `dim` shuffles."""
    return [t for t, _ in src_layout.thread_dims(dim) if t < 5]


def emit_reduce(em, s: ir.Reduce) -> None:
    em.comment_loc(s.loc)
    src_layout, dst_layout = em.layouts[s.src], em.layouts[s.dst]
    keep = tuple(d for d in range(s.src.ndim) if d != s.dim)
    if src_layout.project(keep).thread_bits != dst_layout.thread_bits:
        raise JtileTraceError(f"{em.kernel.name} ({em.kernel.loc}): {s.loc}: T.reduce_{s.op}: "
                              f"{s.dst.describe()} is laid out differently from the reduction of "
                              f"{s.src.describe()}")
    acc_t = accumulator_dtype(s.dst.dtype)
    groups: dict = {}
    for r in range(src_layout.num_registers):
        part = src_layout.register_part(r)
        rd = dst_layout.register_of(tuple(part[d] for d in keep) or (0,))
        groups.setdefault(rd, []).append(r)
    src, dst, tid = em.name(s.src), em.name(s.dst), em.tile_thread()
    count = dst_layout.num_registers
    absolute = s.op in ("abssum", "absmax")
    with em.block(""):
        em.line(f"{acc_t.c_name} acc[{count}];")
        identity = _identity(s.op, acc_t)
        for rd in range(count):
            parts = []
            for r in groups.get(rd, []):
                part = f"jt::cast<{acc_t.c_name}>({src}[{r}])"
                part = f"jt::abs({part})" if absolute else part
                # Registers past the end of the reduced dimension hold padding.
                padding = inside(em, s.src, str(r), dims=(s.dim,))
                parts.append(f"(({' && '.join(padding)}) ? {part} : {identity})"
                             if padding else part)
            em.line(f"acc[{rd}] = {_tree(s.op, parts) if parts else identity};")
        lane_bits = reduce_lane_bits(src_layout, s.dim)
        warp_bits = [t for t, _ in src_layout.thread_dims(s.dim) if t >= 5]
        for t in lane_bits:
            em.line("#pragma unroll")
            em.line(f"for (int q = 0; q < {count}; ++q) acc[q] = "
                    f"{_combine(s.op, 'acc[q]', f'jt::shfl_xor(acc[q], {1 << t})')};")
        if warp_bits:
            lane_mask = sum(1 << t for t in lane_bits)
            warp_mask = sum(1 << t for t in warp_bits)
            scratch = _scratch(em, acc_t)
            # One slot group per thread that writes (lane bits of the reduced dimension zero),
            # numbered without those bits; a T.ws region's writers after the threads before it.
            base = em.tile_first() >> len(lane_bits)

            def slot(thread: str) -> str:
                index = writer_index(thread, lane_bits) + (f" + {base}" if base else "")
                return f"({index}) * {count}" if count > 1 else f"{index}"

            em.line(em.block_barrier())
            with em.block(f"if (({tid} & {lane_mask}) == 0)"):
                em.line(f"for (int q = 0; q < {count}; ++q) {scratch}[{slot(tid)} + q] = acc[q];")
            em.line(em.block_barrier())
            em.line("#pragma unroll")
            with em.block(f"for (int q = 0; q < {count}; ++q)"):
                em.line(f"{acc_t.c_name} total = {_identity(s.op, acc_t)};")
                em.line("#pragma unroll")
                with em.block(f"for (int w = 0; w < {1 << len(warp_bits)}; ++w)"):
                    peer_bits = " | ".join(f"(((w >> {i}) & 1) << {t})"
                                           for i, t in enumerate(warp_bits))
                    em.line(f"const int peer = ({tid} & ~{lane_mask | warp_mask}) | {peer_bits};")
                    partial = f"{scratch}[{slot('peer')} + q]"
                    combine = f"total = {_combine(s.op, 'total', partial)};"
                    threads = em.tile_threads()
                    if threads & (threads - 1):
                        # 384 threads lay out like 512: warps 12.. hold no partial sums.
                        combine = f"if (peer < {threads}) {combine}"
                    em.line(combine)
                em.line("acc[q] = total;")
            em.line(em.block_barrier())
        for rd in range(count):
            value = f"acc[{rd}]"
            if not s.clear:
                value = _combine(s.op, f"jt::cast<{acc_t.c_name}>({dst}[{rd}])", value)
            em.line(f"{dst}[{rd}] = jt::cast<{s.dst.dtype.c_name}>({value});")


def emit_finalize_reducer(em, s: ir.FinalizeReducer) -> None:
    """All-reduce every element of each thread's private reducer copy over the block."""
    em.comment_loc(s.loc)
    buf = s.reducer
    op = buf.reducer_op
    acc_t = accumulator_dtype(buf.dtype)
    name, tid = em.name(buf), em.tile_thread()
    warps = em.tile_threads() // 32
    scratch = _scratch(em, acc_t)
    with em.block(""):
        if warps > 1:
            em.line(em.block_barrier())
        em.line("#pragma unroll")
        with em.block(f"for (int e = 0; e < {buf.size}; ++e)"):
            em.line(f"{acc_t.c_name} v = jt::cast<{acc_t.c_name}>({name}[e]);")
            for t in range(5):
                em.line(f"v = {_combine(op, 'v', f'jt::shfl_xor(v, {1 << t})')};")
            if warps > 1:
                em.line(f"if (({tid} & 31) == 0) {scratch}[({tid} >> 5) * {buf.size} + e] = v;")
            else:
                em.line(f"{name}[e] = jt::cast<{buf.dtype.c_name}>(v);")
        if warps > 1:
            em.line(em.block_barrier())
            em.line("#pragma unroll")
            with em.block(f"for (int e = 0; e < {buf.size}; ++e)"):
                em.line(f"{acc_t.c_name} v = {_identity(op, acc_t)};")
                em.line(f"for (int w = 0; w < {warps}; ++w) v = "
                        f"{_combine(op, 'v', f'{scratch}[w * {buf.size} + e]')};")
                em.line(f"{name}[e] = jt::cast<{buf.dtype.c_name}>(v);")
            em.line(em.block_barrier())
