"""Compile-time checks of kernel options that depend on the target and on how the compiler lays
things out: thread-block clusters (before planning), buffer views and shared-memory layout
annotations (after planning, against the layouts actually chosen).

Each is refused with a JtileTargetError naming the kernel, the source line and the rule,
before any code is generated.
"""

from __future__ import annotations

from jtile.errors import JtileTargetError
from jtile.ir import nodes as ir
from jtile.passes.schedule_tiles import remappable_cluster

# Row widths (bytes) of jtile's XOR swizzle that match TileLang's bank-sized swizzles.
_BANK_ROW_BYTES = {"full_bank": lambda b: b >= 128, "half_bank": lambda b: b == 64,
                   "quarter_bank": lambda b: b == 32}


def _fail(kernel: ir.Kernel, loc, message: str) -> JtileTargetError:
    where = f"{loc}: " if loc is not None else ""
    return JtileTargetError(f"{kernel.name} ({kernel.loc}): {where}{message}")


def _planned_layouts(kernel: ir.Kernel):
    """What plan_shared_memory decided: stage counts, and the tiles stored swizzled (ldmatrix
    XOR swizzle, or the TMA/wgmma panel layout)."""
    plan = kernel.attrs["shared"]
    swizzled = set(plan.swizzled) | set(kernel.attrs.get("panel_buffers", ()))
    return swizzled, plan.stages


def verify_clusters(kernel: ir.Kernel, target) -> None:
    """cluster_dims needs sm_90+; with T.use_swizzle the cluster may span one grid axis (the
    remap moves whole clusters)."""
    cluster = kernel.attrs.get("cluster_dims")
    if not cluster:
        return
    loc = kernel.attrs.get("cluster_loc")
    if not target.has_clusters:
        raise _fail(kernel, loc, f"T.Kernel(cluster_dims={tuple(cluster)}) needs thread-block "
                    f"clusters, which arrived with sm_90; the target is {target.arch}. Drop "
                    "cluster_dims for this target")
    swizzle = next((s for s in kernel.body if isinstance(s, ir.UseSwizzle)), None)
    if swizzle is not None and not remappable_cluster(cluster):
        raise _fail(kernel, swizzle.loc, f"T.use_swizzle with cluster_dims={tuple(cluster)}: "
                    "the rasterisation moves whole clusters, so the cluster may span x or y, "
                    "not both (or z); drop one of them")


def verify_views(kernel: ir.Kernel, target) -> None:
    """A view of a shared tile addresses it row-major; the compiler must not swizzle or
    multi-buffer that tile (or the view)."""
    views = [v for v in kernel.attrs.get("views", ()) if v.view_of.space.is_shared]
    if not views:
        return
    swizzled, stages = _planned_layouts(kernel)
    for view in views:
        base = view.view_of
        for buf in (base, view):
            if buf in swizzled:
                raise _fail(kernel, view.loc, f"view {view.describe()} of {base.describe()}: "
                            f"{buf.name} feeds T.gemm and is stored swizzled, which a "
                            "row-major view cannot follow; copy the tile into a second shared "
                            "buffer instead of viewing it")
            if buf in stages:
                raise _fail(kernel, view.loc, f"view {view.describe()} of {base.describe()}: "
                            f"{buf.name} is multi-buffered by T.Pipelined, which a view cannot "
                            "follow; use num_stages=1 or copy instead of viewing")


def verify_layout_annotations(kernel: ir.Kernel, target) -> None:
    """T.annotate_layout on shared tiles: honoured when it is what jtile does, else refused."""
    annotated = [b for b in kernel.allocations if b.layout_annotation is not None]
    if not annotated:
        return
    planned_swizzles, _ = _planned_layouts(kernel)
    for buf in annotated:
        kind, loc = buf.layout_annotation
        swizzled = buf in planned_swizzles
        row_bytes = buf.shape[-1] * buf.dtype.bytes
        if kind == "linear" and swizzled:
            raise _fail(kernel, loc, f"T.annotate_layout: {buf.describe()} feeds T.gemm and "
                        "jtile stores it swizzled (conflict-free ldmatrix); a linear layout "
                        "cannot be honoured. Drop the annotation")
        if kind != "linear" and not swizzled:
            raise _fail(kernel, loc, f"T.annotate_layout: a {kind} layout for {buf.describe()} "
                        "cannot be honoured: jtile swizzles shared tiles that feed a 16-bit "
                        "T.gemm with rows of 32 * 2^k bytes, and this one is not such a tile. "
                        "Drop the annotation")
        if kind in _BANK_ROW_BYTES and not _BANK_ROW_BYTES[kind](row_bytes):
            raise _fail(kernel, loc, f"T.annotate_layout: a {kind} swizzle for {buf.describe()} "
                        f"cannot be honoured: its rows are {row_bytes} bytes, and jtile's "
                        "swizzle spans min(row, 128) bytes. Use make_swizzled_layout(buf)")


def verify_tile_options(kernel: ir.Kernel, target) -> None:
    """Before planning: options the target cannot offer at all."""
    verify_clusters(kernel, target)


def verify_planned_layouts(kernel: ir.Kernel, target) -> None:
    """After shared-memory planning, before any code: views and layout annotations against the
    layouts the compiler actually chose."""
    verify_views(kernel, target)
    verify_layout_annotations(kernel, target)
