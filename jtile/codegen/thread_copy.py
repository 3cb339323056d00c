"""CUDA for T.ptx_cp_async (one thread's cp.async of 4, 8 or 16 bytes), T.ptx_commit_group and
T.ptx_wait_group.

A copy whose run is inside both buffers, whose addresses are aligned to its size and whose
predicate holds is one cp.async; otherwise the thread moves the run element by element, with
zeros for elements outside the global array or under a false predicate (what interpret mode
computes, and what cp.async's zero fill gives). Alignment is proven from the indices where it
can be, and tested on the addresses at run time where it cannot.
"""

from __future__ import annotations

from jtile.codegen.bounds import bounds_condition, region_in_bounds
from jtile.codegen.expr import const_text
from jtile.ir import nodes as ir
from jtile.ir.affine import aligned_vector_width


def _run_inside(em, region: ir.Region, idx: list) -> list:
    """In-bounds tests (C) of the run's first and last element; none when proven."""
    if region_in_bounds(em, region):
        return []
    count = region.extents[-1]
    last = idx[:-1] + [f"({idx[-1]}) + {count - 1}"]
    rank = len(region.buffer.shape)
    return [bounds_condition(region.buffer, idx),
            bounds_condition(region.buffer, last, dims=[rank - 1])]


def emit_thread_copy(em, s: ir.ThreadCopy) -> None:
    em.comment_loc(s.loc)
    src, dst = s.src, s.dst
    count = src.extents[-1]
    nbytes = count * src.dtype.bytes
    sidx = [em.expr(x) for x in src.starts]
    didx = [em.expr(x) for x in dst.starts]
    with em.block(""):
        sp, dp = em.temp("src"), em.temp("dst")
        em.line(f"const {src.dtype.c_name}* {sp} = &{em.element(src.buffer, sidx)};")
        em.line(f"{dst.dtype.c_name}* {dp} = &{em.element(dst.buffer, didx)};")
        fast = _run_inside(em, src, sidx) + _run_inside(em, dst, didx)
        if s.predicate is not None:
            fast.append(f"({em.expr(s.predicate)})")
        if not (aligned_vector_width(src, count) == count and
                aligned_vector_width(dst, count) == count):
            fast.append(f"((reinterpret_cast<unsigned long long>({sp}) | "
                        f"reinterpret_cast<unsigned long long>({dp})) % {nbytes}u == 0)")
        copy = f"jt::cp_async_{nbytes}({dp}, {sp});"
        if not fast:
            em.line(copy)
        else:
            with em.block(f"if ({' && '.join(fast)})"):
                em.line(copy)
            with em.block("else"):
                _element_by_element(em, s, sidx, didx)


def _element_by_element(em, s: ir.ThreadCopy, sidx: list, didx: list) -> None:
    """The run one element at a time: zeros outside the global array or under a false
    predicate, writes outside the shared buffer dropped."""
    src, dst = s.src, s.dst
    u = em.temp("u")
    with em.block(f"for (int {u} = 0; {u} < {src.extents[-1]}; ++{u})"):
        se = sidx[:-1] + [f"({sidx[-1]}) + {u}"]
        de = didx[:-1] + [f"({didx[-1]}) + {u}"]
        keep = [bounds_condition(src.buffer, se)]
        if s.predicate is not None:
            keep.append(f"({em.expr(s.predicate)})")
        value = (f"({' && '.join(keep)}) ? {em.element(src.buffer, se)} : "
                 f"{const_text(0, dst.dtype)}")
        em.line(f"if ({bounds_condition(dst.buffer, de)}) {em.element(dst.buffer, de)} = "
                f"{value};")


def emit_async_copy_group(em, s: ir.AsyncCopyGroup) -> None:
    em.comment_loc(s.loc)
    if s.op == "commit":
        em.line("jt::cp_async_commit();")
    else:
        em.line(f"jt::cp_async_wait<{s.pending}>();")
