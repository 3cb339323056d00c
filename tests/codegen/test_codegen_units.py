"""The code generator's pieces, checked on values rather than on the text they print.

- Fragment index expressions (`jtile.codegen.parallel`): the C expressions are evaluated in
  Python (they use only `>>`, `&`, `|`, `<<` and parentheses, which Python reads the same way)
  for every thread and register, and compared with `Layout.logical_index`.
- Literals (`jtile.codegen.expr.const_text`) for every dtype, including inf, nan, negatives.
- Static bounds (`jtile.codegen.bounds`) on a stand-in emitter with known grid and loops.
- The shared-memory XOR swizzle of every gemm operand the examples plan: a permutation that
  keeps 16-byte chunks whole and spreads 8 consecutive rows over 8 bank groups (ldmatrix).
- Every example kernel's generated CUDA compiles with nvcc, not only NVRTC.
"""

import importlib.util
import math
import pathlib
import shutil
import subprocess
from types import SimpleNamespace

import pytest

from jtile.codegen import INCLUDE_DIR
from jtile.codegen.bounds import expr_range, region_in_bounds
from jtile.codegen.cuda import CudaEmitter, ParallelContext, c_identifier
from jtile.codegen.expr import const_text
from jtile.codegen.parallel import bit_runs, bits_expr, fragment_register, index_expr
from jtile.codegen.bounds import bounds_condition
from jtile.compiler.target import parse_target
from jtile.ir import nodes as ir
from jtile.ir.affine import aligned
from jtile.ir.types import DType, MemorySpace
from jtile.passes.layout import Layout, choose_mma_tiling, default_layout
from tests.examples.cases import CASES, NEEDS_SM90


def c_eval(expr: str, **values: int) -> int:
    """The value of a C integer expression of `>>`, `&`, `|`, `<<`, `^`, `+`, `*`, `/`, `%`
    over non-negative ints (C's operator precedence among these matches Python's)."""
    return eval(expr.replace("/", "//"), {"__builtins__": {}}, values)  # noqa: S307


# --------------------------------------------------------------------- bit runs and indices

def test_bit_runs_merges_consecutive_bits_of_one_dimension():
    bits = [(0, 0), (0, 1), (1, 0), None, (0, 2), (0, 3), (1, 2), (1, 1)]
    assert bit_runs(bits, 0) == [(0, 0, 2), (4, 2, 2)]
    # Source bits 6 and 7 hold logical bits 2 then 1: not one run, since the order differs.
    assert bit_runs(bits, 1) == [(2, 0, 1), (6, 2, 1), (7, 1, 1)]
    assert bit_runs(bits, 2) == []
    assert bit_runs([], 0) == []


def _gather(value: int, runs) -> int:
    out = 0
    for src, dst, length in runs:
        out |= ((value >> src) & ((1 << length) - 1)) << dst
    return out


@pytest.mark.parametrize("runs", [
    [],
    [(0, 0, 3)],
    [(2, 0, 1), (6, 2, 1), (7, 1, 1)],
    [(0, 1, 2), (5, 0, 1), (3, 4, 2)],
])
def test_bits_expr_gathers_bits_into_place(runs):
    expr = bits_expr("v", runs)
    for v in range(256):
        assert c_eval(expr, v=v) == _gather(v, runs), (expr, v)


def _acc(m, n, warps, full_row):
    return choose_mma_tiling(m, n, warps, full_row).accumulator_layout(32 * warps)


LAYOUTS = {
    "default_2d_vec4": (default_layout((4, 512), 128, 4), 128),
    "default_1d_replicated": (default_layout((64,), 256, 1), 256),
    "default_3d": (default_layout((2, 8, 16), 64, 2), 64),
    "mma_acc_128x128_4w": (_acc(128, 128, 4, False), 128),
    "mma_acc_128x64_8w_rows": (_acc(128, 64, 8, True), 256),
    "mma_acc_64x32_1w": (_acc(64, 32, 1, False), 32),
    "mma_operand_a": (choose_mma_tiling(128, 64, 8, True).operand_a_layout(256, 64), 256),
    "row_vector_of_acc": (_acc(128, 64, 8, True).project((0,)), 256),
    # Bits out of order and interleaved, with a replicated thread bit in the middle.
    "scrambled": (Layout((8, 16), ((1, 3), (0, 1), None, (1, 0), (0, 2)),
                         ((1, 1), (0, 0), (1, 2))), 32),
}


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_index_expr_matches_logical_index(name):
    layout, threads = LAYOUTS[name]
    exprs = [index_expr(layout, d, "tid", "reg") for d in range(len(layout.shape))]
    for tid in range(threads):
        for reg in range(layout.num_registers):
            got = tuple(c_eval(e, tid=tid, reg=reg) for e in exprs)
            assert got == layout.logical_index(tid, reg), (name, tid, reg, exprs)


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_layouts_cover_the_tile_once_per_replica(name):
    """Sanity of the fixtures: each (non-replicated) thread and register is one element."""
    layout, threads = LAYOUTS[name]
    replicas = 1 << bin(layout.replicated_thread_mask).count("1")
    seen = {}
    for tid in range(threads):
        for reg in range(layout.num_registers):
            key = layout.logical_index(tid, reg)
            seen[key] = seen.get(key, 0) + 1
    assert len(seen) == math.prod(layout.shape)
    assert set(seen.values()) == {replicas}


def test_fragment_register_finds_the_row_vector_element_of_each_accumulator_register():
    """Inside a T.Parallel over the accumulator, `row[i]` must read the register of the
    row-vector fragment holding row i, in the same thread."""
    acc = _acc(128, 64, 8, True)
    rows = acc.project((0,))
    i, j = ir.Var("i"), ir.Var("j")
    acc_buf = ir.Buffer("acc", (128, 64), DType.float32, MemorySpace.FRAGMENT)
    row_buf = ir.Buffer("row", (128,), DType.float32, MemorySpace.FRAGMENT)
    em = SimpleNamespace(
        layouts={acc_buf: acc, row_buf: rows},
        kernel=SimpleNamespace(name="k", loc="k.py:1"),
        parallel=ParallelContext(SimpleNamespace(vars=(i, j)), acc, "reg"))
    row_expr = fragment_register(em, row_buf, (i,))
    acc_expr = fragment_register(em, acc_buf, (i, j))
    for tid in range(256):
        for reg in range(acc.num_registers):
            row, col = acc.logical_index(tid, reg)
            assert rows.logical_index(tid, c_eval(row_expr, reg=reg)) == (row,)
            assert acc.logical_index(tid, c_eval(acc_expr, reg=reg)) == (row, col)


# --------------------------------------------------------------------- literals

@pytest.mark.parametrize("value, dtype, text", [
    (True, DType.bool, "true"),
    (0, DType.bool, "false"),
    (-3, DType.int8, "((signed char)-3)"),
    (-300, DType.int16, "((short)-300)"),
    (-7, DType.int32, "-7"),
    (2**40, DType.int64, "1099511627776LL"),
    (255, DType.uint8, "((unsigned char)255)"),
    (65535, DType.uint16, "((unsigned short)65535)"),
    (7, DType.uint32, "7u"),
    (2**63, DType.uint64, "9223372036854775808ULL"),
    (3.0, DType.int32, "3"),
    (1.5, DType.float32, "1.5f"),
    (-2.0, DType.float32, "-2.0f"),
    (3, DType.float32, "3.0f"),
    (1e-5, DType.float32, "1e-05f"),
    (-3.4028234663852886e38, DType.float32, "-3.4028234663852886e+38f"),
    (float("inf"), DType.float32, "jt::infinity<float>()"),
    (float("-inf"), DType.float32, "-jt::infinity<float>()"),
    (float("nan"), DType.float32, "__int_as_float(0x7fc00000)"),
    (0.1, DType.float64, "0.1"),
    (-2.0, DType.float64, "-2.0"),
    (1e300, DType.float64, "1e+300"),
    (float("inf"), DType.float64, "((double)jt::infinity<float>())"),
    (float("-inf"), DType.float64, "((double)-jt::infinity<float>())"),
    (float("nan"), DType.float64, "((double)__int_as_float(0x7fc00000))"),
    (0.5, DType.float16, "jt::cast<jt::half>(0.5f)"),
    (float("-inf"), DType.float16, "jt::cast<jt::half>(-jt::infinity<float>())"),
    (-1.25, DType.bfloat16, "jt::cast<jt::bfloat16>(-1.25f)"),
    (float("nan"), DType.bfloat16, "jt::cast<jt::bfloat16>(__int_as_float(0x7fc00000))"),
    (448.0, DType.float8_e4m3, "jt::cast<jt::fp8_e4m3>(448.0f)"),
    (float("inf"), DType.float8_e5m2, "jt::cast<jt::fp8_e5m2>(jt::infinity<float>())"),
])
def test_const_text(value, dtype, text):
    assert const_text(value, dtype) == text


def test_const_text_covers_every_dtype():
    for dtype in DType:
        assert const_text(1, dtype) in {"true", "1", "1LL", "1u", "1ULL", "1.0f", "1.0",
                                        f"(({dtype.c_name})1)",
                                        f"jt::cast<{dtype.c_name}>(1.0f)"}, dtype


@pytest.mark.parametrize("name, identifier", [
    ("main", "main_kernel"),        # TileLang names most of its kernels `main`
    ("float", "float_kernel"),
    ("<lambda>", "_lambda_"),
    ("2d_add", "k_2d_add"),
    ("gemm", "gemm"),
])
def test_kernel_names_become_c_identifiers_nvrtc_accepts(name, identifier):
    assert c_identifier(name) == identifier


@pytest.mark.parametrize("value", [0.1, 1 / 3, -123.456, 6.02e23, 1e-30, 2.0**-149])
def test_float_literals_round_trip(value):
    """float32 and float64 literals name the exact value (repr is shortest round-trip)."""
    f32, f64 = const_text(value, DType.float32), const_text(value, DType.float64)
    assert f32.endswith("f") and float(f32[:-1]) == value
    assert float(f64) == value


# --------------------------------------------------------------------- static bounds

BX = ir.Var("bx", kind=ir.VarKind.BLOCK, axis=0)
BY = ir.Var("by", kind=ir.VarKind.BLOCK, axis=1)
TX = ir.Var("tx", kind=ir.VarKind.THREAD)
K = ir.Var("k")          # a serial loop with a known trip count
N = ir.Var("n")          # a loop whose trip count is not static
I = ir.Var("i")          # a T.Parallel loop variable


def _stand_in(parallel=None):
    """The parts of CudaEmitter that `jtile.codegen.bounds` reads."""
    return SimpleNamespace(kernel=SimpleNamespace(grid=(4, 3, 1), threads=128),
                           parallel=parallel, var_ranges={K: (0, 9)})


@pytest.mark.parametrize("make, expected", [
    (lambda: ir.as_expr(5), (5, 5)),
    (lambda: BX * 32, (0, 96)),
    (lambda: BY * 64 + TX, (0, 128 + 127)),
    (lambda: BX * 32 + K * 4 - 3, (-3, 96 + 36 - 3)),
    (lambda: 100 - K * 8, (28, 100)),
    (lambda: -(K * 2) + BX, (-18, 3)),
    (lambda: (K + 1) * 16, (16, 160)),
    (lambda: TX % 4, (0, 3)),     # % by a constant of a non-negative range
    (lambda: TX // 4, (0, 31)),   # // likewise
    (lambda: (TX - 1) % 4, None),  # a dividend reaching below zero: left unknown
    (lambda: TX * TX, (0, 127 * 127)),   # not affine: a product of ranged parts
    (lambda: N * 8, None),        # no known range
])
def test_expr_range(make, expected):
    assert expr_range(_stand_in(), make()) == expected


def test_expr_range_of_a_parallel_loop_variable():
    loop = SimpleNamespace(vars=(I,), extents=(48,))
    em = _stand_in(parallel=ParallelContext(loop, None, "e"))
    assert expr_range(em, BX * 48 + I) == (0, 3 * 48 + 47)
    assert expr_range(_stand_in(), I) is None  # outside the loop, unknown


def _region(shape, starts, extents):
    buf = ir.Buffer("x", shape, DType.float32, MemorySpace.GLOBAL)
    return ir.Region(buf, tuple(ir.as_expr(s) for s in starts), tuple(extents))


@pytest.mark.parametrize("shape, starts, extents, inside", [
    ((128,), [BX * 32], [32], True),            # last block ends exactly at 128
    ((127,), [BX * 32], [32], False),           # last block overruns by one
    ((100, 64), [BX * 25, 0], [25, 64], True),
    ((100, 64), [BX * 25, 1], [25, 64], False),
    ((100, 64), [BX * 25 - 1, 0], [25, 64], False),   # starts below zero
    ((3, 320), [BY, K * 32], [1, 32], True),
    ((3, 319), [BY, K * 32], [1, 32], False),
    ((64,), [N * 8], [8], False),               # unknown range: not provably inside
    ((64,), [TX % 8], [8], True),               # % by a constant: 0..7, inside
    ((64,), [TX * TX], [8], False),             # not affine: not provably inside
])
def test_region_in_bounds(shape, starts, extents, inside):
    assert region_in_bounds(_stand_in(), _region(shape, starts, extents)) is inside


@pytest.mark.parametrize("make, multiple, expected", [
    (lambda: BX * 32 + 8, 8, True),
    (lambda: BX * 32 + 4, 8, False),
    (lambda: BX * 32 + K * 12, 8, False),
    (lambda: BX * 32 + K * 16, 16, True),
    (lambda: TX * 3, 1, True),
    (lambda: TX % 8 * 8, 8, True),    # 8 times an integer, whatever the integer is
    (lambda: BX * 1000 // 8 * 8 + K * 16, 8, True),
    (lambda: BX * 1000 // 8 * 4, 8, False),
])
def test_aligned(make, multiple, expected):
    assert aligned(make(), multiple) is expected


def _eval_c_condition(cond: str, values: dict) -> bool:
    """Evaluates an emitted guard in Python: `(unsigned)(e)` wraps to 32 bits, `123u` is 123."""
    import re

    text = re.sub(r"\(unsigned\)", "U", cond)
    text = re.sub(r"\b(\d+)u\b", r"\1", text).replace("&&", "and")
    return eval(text, {"__builtins__": {}}, dict(values, U=lambda v: v % 2**32))


def test_bounds_condition_rejects_indices_outside_the_buffer_on_both_sides():
    buf = ir.Buffer("x", (6, 40), DType.float32, MemorySpace.GLOBAL)
    cond = bounds_condition(buf, ["r", "c"])
    for r in range(-3, 9):
        for c in (-1, 0, 39, 40):
            inside = 0 <= r < 6 and 0 <= c < 40
            assert _eval_c_condition(cond, {"r": r, "c": c}) is inside, (cond, r, c)


# --------------------------------------------------------------------- shared-memory swizzle

def _planned(name, target):
    make, specs = CASES[name]
    return make(False).lower(*specs, target=target).kernel


SWIZZLED = []
for _name in sorted(CASES):
    for _target in ("sm_80", "sm_90a"):
        if _name in NEEDS_SM90 and _target == "sm_80":
            continue
        for _buf in sorted(_planned(_name, _target).attrs["shared"].swizzled,
                           key=lambda b: b.name):
            SWIZZLED.append((_name, _target, _buf.name))


def test_gemm_operands_in_shared_memory_are_swizzled():
    # XOR-swizzled by the threads (sm_80), or in TMA's swizzled panel layout (sm_90a).
    swizzled = {(n, t) for n, t, _ in SWIZZLED} | {
        (n, "sm_90a") for n in CASES if _planned(n, "sm_90a").attrs.get("panel_buffers")}
    for name in CASES:
        if name.startswith(("gemm_", "flash_")) and name != "gemm_f32":
            assert (name, "sm_90a") in swizzled and (name, "sm_80") in swizzled, name


def check_swizzle(em, buf) -> None:
    """`em.shared_offset` of `buf` is a permutation of its elements that keeps each 16-byte
    chunk whole and puts 8 consecutive rows of one logical chunk in 8 bank groups."""
    *outer, cols = buf.shape
    rows = math.prod(outer)
    names = [f"i{d}" for d in range(len(buf.shape))]
    expr = em.shared_offset(buf, names)
    elem = buf.dtype.bytes
    chunk = 16 // elem

    def offset(row, col):
        values, rest = {}, row
        for d in reversed(range(len(outer))):
            values[names[d]] = rest % outer[d]
            rest //= outer[d]
        values[names[-1]] = col
        return c_eval(expr, **values)

    table = [[offset(r, c) for c in range(cols)] for r in range(rows)]
    flat = sorted(o for row in table for o in row)
    assert flat == list(range(rows * cols)), f"{expr} is not a permutation"
    for r in range(rows):
        for c0 in range(0, cols, chunk):
            start = table[r][c0]
            assert start % chunk == 0 and table[r][c0:c0 + chunk] == \
                list(range(start, start + chunk)), f"row {r}: chunk at col {c0} split"
    # ldmatrix reads one 16-byte row chunk from each of 8 rows per phase: the 8 must fall in
    # 8 different groups of 4 banks (16 bytes), or the phase serialises.
    for r0 in range(rows - 7):
        for c0 in range(0, cols, chunk):
            groups = [table[r][c0] * elem // 16 % 8 for r in range(r0, r0 + 8)]
            assert len(set(groups)) == 8, f"rows {r0}..{r0 + 7}, col {c0}: groups {groups}"


@pytest.mark.parametrize("name, target, buffer", SWIZZLED,
                         ids=[f"{n}-{t}-{b}" for n, t, b in SWIZZLED])
def test_swizzle_of_planned_gemm_operands(name, target, buffer):
    kernel = _planned(name, target)
    em = CudaEmitter(kernel, parse_target(target), 1, None)
    check_swizzle(em, next(b for b in em.plan.swizzled if b.name == buffer))


@pytest.mark.parametrize("shape, dtype", [
    ((64, 16), DType.float16),      # 32-byte rows: 2 chunks, 4 rows per swizzle step
    ((64, 32), DType.bfloat16),     # 64-byte rows: 4 chunks, 2 rows per step
    ((32, 64), DType.float16),      # 128-byte rows: exactly the 8 bank groups
    ((16, 256), DType.float16),     # 512-byte rows: 32 chunks, swizzled in groups of 8
    ((4, 8, 32), DType.float16),    # 3-D: rows are the flattened leading dims
    ((64, 32), DType.float32),
    ((32, 64), DType.int8),
])
def test_swizzle_of_other_row_widths(shape, dtype):
    buf = ir.Buffer("t", shape, dtype, MemorySpace.SHARED_DYN)
    em = SimpleNamespace(plan=SimpleNamespace(swizzled={buf}), stage_expr={})
    em.flat_index = lambda b, idx: CudaEmitter.flat_index(em, b, idx)
    em.shared_offset = lambda b, idx: CudaEmitter.shared_offset(em, b, idx)
    check_swizzle(em, buf)


def test_swizzle_offset_adds_the_pipeline_stage():
    kernel = _planned("gemm_nn_f16", "sm_80")  # cp.async stages of ldmatrix-swizzled tiles
    em = CudaEmitter(kernel, parse_target("sm_80"), 1, None)
    buf = next(b for b in em.plan.swizzled if b.name == "a_tile")
    plain = em.shared_offset(buf, ["r", "c"])
    em.stage_expr[buf] = "s"
    staged = em.shared_offset(buf, ["r", "c"])
    for s in range(3):
        for r, c in ((0, 0), (5, 17), (127, 31)):
            assert c_eval(staged, s=s, r=r, c=c) == s * buf.size + c_eval(plain, r=r, c=c)


# --------------------------------------------------------------------- nvcc

def _cuda_wheel_include():
    spec = importlib.util.find_spec("nvidia")
    for root in (spec.submodule_search_locations or []) if spec else []:
        include = pathlib.Path(root) / "cu13" / "include"
        if (include / "cuda_fp16.h").is_file():
            return include
    return None


NVCC_ARCH = {"sm_80": "arch=compute_80,code=sm_80", "sm_90a": "arch=compute_90a,code=sm_90a"}
COMPILE_PARAMS = [(n, t) for n in sorted(CASES) for t in NVCC_ARCH
                  if not (n in NEEDS_SM90 and t == "sm_80")]


def _generated(name, target):
    make, specs = CASES[name]
    return make(False).lower(*specs, target=target).cuda_source()


@pytest.mark.parametrize("name, target", COMPILE_PARAMS,
                         ids=[f"{n}-{t}" for n, t in COMPILE_PARAMS])
def test_generated_cuda_compiles_with_nvcc(name, target, tmp_path):
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        pytest.skip("nvcc not on PATH")
    include = [f"-I{INCLUDE_DIR}"]
    wheel = _cuda_wheel_include()
    if wheel is not None:
        include.append(f"-I{wheel}")
    source = tmp_path / f"{name}.cu"
    cubin = tmp_path / f"{name}.cubin"
    source.write_text(_generated(name, target))
    cmd = [nvcc, "-cubin", "-std=c++17", f"-gencode={NVCC_ARCH[target]}", *include,
           "-o", str(cubin), str(source)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    log = (result.stdout + result.stderr).replace(str(tmp_path) + "/", "")
    assert result.returncode == 0, f"nvcc rejected {name} for {target}:\n{log[-4000:]}"
    assert cubin.read_bytes()[:4] == b"\x7fELF"
