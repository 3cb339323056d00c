"""The compiler's passes, in the order they run, each a function Kernel -> Kernel."""

from __future__ import annotations

from jtile.passes.fold_accumulator_clears import fold_accumulator_clears
from jtile.passes.infer_layouts import infer_layouts
from jtile.passes.issue_ahead import read_only_inputs
from jtile.passes.lower_tile_ops import lower_tile_ops
from jtile.passes.overlap_gemms import overlap_gemms
from jtile.passes.pad_parallel_loops import pad_parallel_loops
from jtile.passes.plan_barriers import plan_barriers
from jtile.passes.pipeline_loops import pipeline_loops
from jtile.passes.plan_shared_memory import plan_shared_memory
from jtile.passes.schedule_tiles import schedule_tiles
from jtile.passes.specialize_warps import specialize_warps
from jtile.passes.verify import verify, verify_target_features
from jtile.passes.verify_tile_options import verify_planned_layouts


def run_passes(kernel, target, *, aliases=None):
    """Checks and plans a traced kernel for `target`.

    Args:
        kernel: the traced kernel.
        target: the code-generation target (`jtile.compiler.target.Target`), or None to run
            only the target-independent checks (interpret mode).
        aliases: input index -> output index of input_output_aliases.
    """
    # Rules any kernel must meet, before spending time on planning.
    kernel = verify(kernel, aliases)
    if target is None:
        return kernel
    # Refuse features the target lacks before planning for them.
    verify_target_features(kernel, target)
    # Copies issued ahead (pipelines, the producer warpgroup) may read these in their addresses.
    kernel = kernel.replace(attrs=dict(kernel.attrs, read_only_inputs=read_only_inputs(
        kernel, tuple(dict(aliases or {})))))
    # Loops over fragments with extents that are not powers of 2 run on power-of-2 extents,
    # their extra iterations skipped, so that fragment layouts can spread them.
    kernel = pad_parallel_loops(kernel, target)
    # `T.clear(acc); T.gemm(a, b, acc)`: the gemm starts from zero itself (wgmma's scale-d).
    kernel = fold_accumulator_clears(kernel, target)
    # Layouts first: gemm tilings (wgmma on sm_90a, mma.sync before) decide fragment layouts,
    # which every later pass reads.
    kernel = infer_layouts(kernel, target)
    # Instruction selection: wgmma with descriptor operands, TMA loads into swizzled panels;
    # what the target has no special instruction for stays a tile op.
    kernel = lower_tile_ops(kernel, target)
    # Pipelined loops become stage rings: full/empty mbarriers over TMA loads, else cp.async.
    kernel = pipeline_loops(kernel, target)
    # A ring at the top of the kernel gets its own producer warpgroup (setmaxnreg).
    kernel = specialize_warps(kernel, target)
    # Large warp-specialised grids run rasterised, so each wave's tiles share L2.
    kernel = schedule_tiles(kernel, target)
    # Shared memory last: pipelining multiplies buffers, reductions need scratch, and the
    # total is checked against the target's limit.
    kernel = plan_shared_memory(kernel, target)
    # Views and layout annotations must agree with the layouts planning chose.
    verify_planned_layouts(kernel, target)
    # Barriers last: where they go depends on which buffers share bytes.
    kernel = plan_barriers(kernel, target)
    # Attention's O += P V overlaps the next tile's softmax (after barriers: it moves a gemm
    # that needs none).
    kernel = overlap_gemms(kernel, target)
    return kernel
