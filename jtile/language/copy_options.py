"""The keyword arguments of `T.copy` beyond the tiles: what each means and which are honoured."""

from __future__ import annotations

# TileLang's eviction policies (the L2 cache hint of the global access).
EVICTION_POLICIES = ("evict_normal", "evict_first", "evict_last")


def copy_options(builder, loc, *, coalesced_width=None, disable_tma=False, eviction_policy=None,
                 prefer_instruction=None, annotations=None, loop_layout=None) -> dict:
    """Checks T.copy's options and returns the Copy node fields that record them.

    Honoured: `disable_tma` (recorded on the Copy; the TMA lowering skips such copies) and
    `eviction_policy="evict_normal"` (the default cache behaviour). Refused by name, with what
    to use instead: other eviction policies, `coalesced_width`, `prefer_instruction`,
    `annotations` and `loop_layout`.
    """
    op = "T.copy"
    if eviction_policy is not None and eviction_policy not in EVICTION_POLICIES:
        raise builder.error(f"eviction_policy={eviction_policy!r} is not one of "
                            f"{EVICTION_POLICIES}", loc, op=op)
    if eviction_policy not in (None, "evict_normal"):
        raise builder.error(f"eviction_policy={eviction_policy!r} is not supported yet: jtile's "
                            "copies issue plain loads with the default L2 policy; use "
                            "eviction_policy=None (or \"evict_normal\")", loc, op=op)
    if coalesced_width is not None:
        raise builder.error(f"coalesced_width={coalesced_width!r} is not supported: jtile picks "
                            "the vector width of each copy itself (16-byte accesses when the "
                            "tile is aligned); drop coalesced_width", loc, op=op)
    if prefer_instruction is not None:
        raise builder.error(f"prefer_instruction={prefer_instruction!r} is not supported: jtile "
                            "chooses the copy instruction per target; drop it (disable_tma=True "
                            "keeps a copy off TMA)", loc, op=op)
    if annotations:
        raise builder.error(f"annotations={annotations!r} are not supported by T.copy; pass "
                            "disable_tma= / eviction_policy= as keywords", loc, op=op)
    if loop_layout is not None:
        raise builder.error("loop_layout= is not supported: jtile infers the thread layout of a "
                            "copy from the fragments it touches; drop it", loc, op=op)
    if not isinstance(disable_tma, bool):
        raise builder.error(f"disable_tma={disable_tma!r} must be True or False", loc, op=op)
    return {"disable_tma": disable_tma, "eviction_policy": eviction_policy,
            "coalesced_width": None}
