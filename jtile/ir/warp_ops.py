"""The `ir.Call` names of the warp-level operations (jtile.language.warp): codegen and
interpret mode treat them apart from element-wise math, since each reads other lanes."""

SHUFFLES = ("shfl_xor", "shfl_down", "shfl_up", "shfl_idx")
REDUCTIONS = tuple(f"warp_reduce_{k}" for k in ("sum", "max", "min", "bitand", "bitor"))
VOTES = ("warp_any", "warp_all", "warp_ballot")
WARP_CALLS = SHUFFLES + REDUCTIONS + VOTES
