"""The compiler's passes, in the order they run, each a function Kernel -> Kernel."""

from __future__ import annotations

from jtile.passes.infer_layouts import infer_layouts
from jtile.passes.plan_shared_memory import plan_shared_memory
from jtile.passes.verify import verify, verify_target_features


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
    # Layouts first: gemm tilings decide fragment layouts, which later passes read.
    kernel = infer_layouts(kernel, target)
    # Shared memory last: pipelining multiplies buffers, reductions need scratch, and the
    # total is checked against the target's limit.
    kernel = plan_shared_memory(kernel, target)
    return kernel
