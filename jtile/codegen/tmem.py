"""Blackwell tensor memory (sm_100a): allocation at kernel start, release at the end.

tcgen05.alloc writes the allocation's TMEM address into shared memory; one warp allocates and
the same warp frees (tcgen05.dealloc), as the hardware requires. MMA into TMEM comes with the
tcgen05 gemm lowering.
"""

from __future__ import annotations

from jtile.language.allocate import tmem_columns


def declare_tmem(em, buf) -> None:
    name = em.name(buf)
    cols = tmem_columns(buf.shape, buf.dtype)
    tid = em.name(em.kernel.thread_var)
    em.line(f"__shared__ unsigned {name}_slot;")
    with em.block(f"if (({tid} >> 5) == 0)"):
        em.line(f"jt::tmem_alloc(&{name}_slot, {cols});")
        em.line("jt::tmem_relinquish_alloc_permit();")
    em.line("__syncthreads();")
    em.line(f"const unsigned {name} = {name}_slot;  // TMEM address: lane << 16 | column")


def release_tmem(em, buf) -> None:
    name = em.name(buf)
    cols = tmem_columns(buf.shape, buf.dtype)
    tid = em.name(em.kernel.thread_var)
    em.line("__syncthreads();")
    with em.block(f"if (({tid} >> 5) == 0)"):
        em.line(f"jt::tmem_dealloc({name}, {cols});")
