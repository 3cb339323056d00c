"""The wgmma wrapper each kernel needs, printed beside it.

A `wgmma.mma_async` names every accumulator register as its own operand (N / 2 of them for
m64nN), so the device header cannot hold one function for all shapes without growing by
hundreds of lines per shape; the lowered WgmmaGemm names the one wrapper it uses and this
module prints it from that name's parts.
"""

from __future__ import annotations

import re

_NAME = re.compile(r"^jt_wgmma_m64n(\d+)k(\d+)_(f16|bf16|e4m3|e5m2|s8|u8)(?:_(e4m3|e5m2|s8|u8))?"
                   r"_(ss|rs)_([nt])([nt])(_f16acc)?(_zero)?$")

# The suffix of the wrapper that starts its accumulator from zero (scale-d = 0).
ZERO_START = "_zero"


def wgmma_wrapper(name: str) -> str:
    """CUDA for the wrapper `name` (see lower_tile_ops.wgmma_function_name).

    ss: `void name(float* d, unsigned long long a_desc, unsigned long long b_desc, int acc)`;
    rs: `void name(float* d, const unsigned* a, unsigned long long b_desc, int acc)`, `a` the
    four packed A registers. `acc` = 0 ignores d's old value (scale-d). 8-bit integer inputs
    (s8, u8) accumulate in `int* d` (.s32) and take no scale or transpose immediates. A name
    with two 8-bit types (`..._s8_u8_ss_nt`) gives A the first and B the second.

    A `_f16acc` name accumulates in float16 (`.f16`): `unsigned* d`, n / 4 registers of two
    halves each, element 2i in the low half of d[i].

    A name ending in `_zero` is the first wgmma of a gemm that starts from zero (`clear_accum`,
    or a T.clear folded into it): it takes no `acc`, and d is only written ("=f"), so the
    compiler does not keep d's old value alive into it (an accumulator reused every loop
    iteration would otherwise stay live across the whole loop and spill).
    """
    match = _NAME.match(name)
    if match is None:
        raise ValueError(f"not a wgmma wrapper name: {name}")
    n, k, ab, b_type, kind, ta, tb, half, zero = match.groups()
    b_type = b_type or ab  # mixed 8-bit inputs name B's type after A's
    n, k = int(n), int(k)
    regs = n // 4 if half else n // 2  # a float16 accumulator packs two halves a register
    d = ", ".join(f"%{i}" for i in range(regs))
    integer = ab in ("s8", "u8")
    written = "=" if zero else "+"
    outputs = ", ".join(f'"{written}{"r" if integer or half else "f"}"(d[{i}])'
                        for i in range(regs))
    sixteen = ab in ("f16", "bf16")
    trans_a = "1" if ta == "t" else "0"
    trans_b = "1" if tb == "t" else "0"
    if kind == "ss":
        a_operand, b_operand, flag = f"%{regs}", f"%{regs + 1}", f"%{regs + 2}"
        inputs = '"l"(a), "l"(b), "r"(' + ("0" if zero else "accumulate") + ")"
        params = "unsigned long long a, unsigned long long b" + ("" if zero else ", int accumulate")
        imm = f", 1, 1, {trans_a}, {trans_b}" if sixteen else "" if integer else ", 1, 1"
    else:
        a_operand = "{" + ", ".join(f"%{regs + i}" for i in range(4)) + "}"
        b_operand, flag = f"%{regs + 4}", f"%{regs + 5}"
        inputs = '"r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "r"(' + (
            "0" if zero else "accumulate") + ")"
        params = "const unsigned* a, unsigned long long b" + ("" if zero else ", int accumulate")
        imm = f", 1, 1, {trans_b}" if sixteen else "" if integer else ", 1, 1"
    d_type, acc_type = ("int", "s32") if integer else ("unsigned", "f16") if half else \
        ("float", "f32")
    return (
        f"__device__ __forceinline__ void {name}({d_type}* d, {params}) {{\n"
        f"  asm volatile(\n"
        f'      "{{\\n.reg .pred p;\\nsetp.ne.b32 p, {flag}, 0;\\n"\n'
        f'      "wgmma.mma_async.sync.aligned.m64n{n}k{k}.{acc_type}.{ab}.{b_type} "\n'
        f'      "{{{d}}}, {a_operand}, {b_operand}, p{imm};\\n}}\\n"\n'
        f"      : {outputs}\n"
        f"      : {inputs});\n"
        f"}}\n")
