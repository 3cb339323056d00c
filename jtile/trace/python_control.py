"""What a rewritten kernel body calls in place of Python's control flow (see `ast_rewrite`).

Each construct takes Python's own path when its value is static (a Python bool, int, None,
a constant expression), so `if N > 32:` on a shape still just runs, and records IR when the
value is traced, with TileLang's meaning:

- `if` / `elif` / `else` on a traced condition records an `IfThenElse`; both branches are traced.
- `while` on a traced condition records a `While`; its body is traced once.
- `a and b`, `a or b`, `not a` on traced values are logical expressions of their truth values;
  `a if c else b` with a traced `c` is `T.if_then_else(c, a, b)` (both sides evaluated).
- `x = value` where `x` holds a `T.alloc_var` and `value` is a scalar stores into the variable;
  `x += value` likewise. Binding a name to a buffer (a new `T.alloc_var`, a tile) rebinds it.
- `A: T.Tensor((M, N), dtype)` in the body checks the parameter `A` against the annotation and
  binds the shape symbols it has as whole dimensions; `n: T.int32` declares a scalar parameter.

`break` and `continue` of a `for` loop work under traced conditions and in loops recorded for
the GPU (`jtile.trace.loop_exits`: a flag guards the rest of the loop, as in TileLang). A `return`,
and a `break` / `continue` that would leave a traced `while`, cannot leave a traced branch (the
branch is recorded, not taken): they are refused by name, with TileLang's alternative.
"""

from __future__ import annotations

import operator
import sys
import threading

import numpy as np

from jtile.errors import JtileShapeError, JtileTraceError
from jtile.ir.nodes import (BinOp, Buffer, Const, Expr, IfThenElse, UnOp, While, as_expr)
from jtile.ir.types import DType, MemorySpace
from jtile.trace.builder import active_builder, current
from jtile.trace import thread_ranges
from jtile.trace.loop_exits import loop_exits  # noqa: F401 (called by rewritten bodies)
from jtile.trace.source import caller_location

_MISSING = object()


# ----------------------------------------------------------------------------- loops


def kernel_range(range_fn, *args):
    """`for i in range(...)` inside `with T.Kernel`: a `T.serial` loop, as TileLang's frontend
    makes it, so a K loop of a GEMM is one loop in the CUDA, not its trip count of unrolled
    copies (with a traced bound it could not be unrolled at all). Outside the kernel block,
    or when `range` is not the builtin, Python's own loop."""
    builder = active_builder()
    if range_fn is not range or builder is None or builder.grid is None \
            or builder.kernel_body is not None:
        return range_fn(*args)
    from jtile.language.loops import serial

    return serial(*args)


# ----------------------------------------------------------------------------- conditions


def _is_scalar_buffer(value) -> bool:
    """A T.alloc_var, or a buffer element a T.Ref parameter holds: assigning stores into it."""
    from jtile.language.reference import ElementRef

    return (isinstance(value, Buffer) and value.space is MemorySpace.VAR) or \
        isinstance(value, ElementRef)


def traced_condition(value, what: str):
    """`value` as a boolean IR expression when it is traced, or None when it is static."""
    if isinstance(value, Const):
        return None
    if _is_scalar_buffer(value):
        value = as_expr(value)
    elif isinstance(value, Buffer):
        builder = current(what)
        raise builder.error(f"{value.describe()} was used as a condition; a buffer is not a "
                            "truth value. Compare an element, e.g. `if buf[i] > 0:`",
                            caller_location(), op=what)
    if not isinstance(value, Expr):
        return None
    return value if value.dtype.is_bool else value != 0


def _truth(value) -> bool:
    """Python's truth of a static value (a Const answers with its value)."""
    if isinstance(value, Const):
        return bool(value.value)
    return bool(value)


def _logical(op: str, a: Expr, b) -> Expr:
    """`a op b` on truth values; a static `b` folds away."""
    cond_b = traced_condition(b, f"`{op}`")
    if cond_b is None:
        truth = _truth(b)
        if op == "and":
            return a if truth else Const(False, DType.bool)
        return Const(True, DType.bool) if truth else a
    return BinOp(op, a, cond_b, DType.bool)


def and_(a, b_thunk):
    """`a and b`: Python's when `a` is static; the conjunction of truth values when traced."""
    cond_a = traced_condition(a, "`and`")
    if cond_a is None:
        return b_thunk() if _truth(a) else a
    return _logical("and", cond_a, b_thunk())


def or_(a, b_thunk):
    """`a or b`: Python's when `a` is static; the disjunction of truth values when traced."""
    cond_a = traced_condition(a, "`or`")
    if cond_a is None:
        return a if _truth(a) else b_thunk()
    return _logical("or", cond_a, b_thunk())


def not_(a):
    """`not a`: Python's when static; the logical negation of a traced truth value."""
    cond = traced_condition(a, "`not`")
    if cond is None:
        return not _truth(a)
    return UnOp("not", cond, DType.bool)


def ifexp(cond, a_thunk, b_thunk):
    """`a if cond else b`: Python's when `cond` is static; `T.if_then_else` when traced."""
    traced = traced_condition(cond, "`a if cond else b`")
    if traced is None:
        return a_thunk() if _truth(cond) else b_thunk()
    from jtile.language.control import if_then_else

    return if_then_else(traced, a_thunk(), b_thunk())


_COMPARE = {"lt": operator.lt, "le": operator.le, "gt": operator.gt, "ge": operator.ge,
            "eq": operator.eq, "ne": operator.ne, "is": operator.is_, "is_not": operator.is_not,
            "in": operator.contains, "not_in": lambda a, b: b not in a}


def compare_chain(left, ops: tuple, thunks: tuple):
    """`a < b < c`: the `and` of its links, each operand evaluated once, as in Python."""
    result = None
    for op, thunk in zip(ops, thunks):
        right = thunk()
        fn = _COMPARE[op]
        link = fn(right, left) if op in ("in", "not_in") else fn(left, right)
        result = link if result is None else and_(result, lambda link=link: link)
        if traced_condition(result, "a comparison chain") is None and not _truth(result):
            return result
        left = right
    return result


def assert_condition(cond):
    """`assert cond`: Python's on static values; a traced condition cannot be checked here."""
    if traced_condition(cond, "assert") is not None:
        builder = current("assert")
        raise builder.error("`assert` on a traced value would be a device-side assertion, "
                            "which jtile does not support; assert on static values (shapes, "
                            "parameters), or use `if`/`T.If` to guard the work",
                            caller_location(), op="assert")
    return cond


# ----------------------------------------------------------------------------- if / while


_exits = threading.local()


def leaving(where: str) -> None:
    """Notes the `break` / `continue` / `return` about to run (inserted by the rewrite)."""
    _exits.last = where


def _refuse_exits(builder, exits: tuple, construct: str, loc) -> JtileTraceError:
    taken = getattr(_exits, "last", None)
    where = taken if taken in exits else ", ".join(exits) if exits else \
        "a `break`, `continue` or `return`"
    return builder.error(
        f"{where} would leave {construct} on a traced condition; the branch is recorded for "
        "the GPU, not taken while tracing, so jtile does not support leaving it early. Keep a "
        "flag in a T.alloc_var and test it (`if not done:`), or loop with `while` on a traced "
        "condition", loc)


def _drop_block(builder, block) -> None:
    if builder.blocks and builder.blocks[-1] is block:
        builder.blocks.pop()


class branch:
    """One Python `if` statement of a rewritten body (`with branch(c, ...) as b:`).

    A condition that selects whole warpgroups of the block (`if tx < 128:`, `elif tx >= 128
    and tx < 256:`, `else:`), as TileLang's hand-written warp-specialised kernels branch, makes
    each branch holding tile operations (or T.set_max_nreg) a T.ws region of those threads
    (`jtile.trace.thread_ranges`)."""

    def __init__(self, cond, has_else: bool, exits: tuple):
        self._loc = caller_location()
        self._cond = traced_condition(cond, "`if`")
        self._truth = _truth(cond) if self._cond is None else None
        self._has_else = has_else
        self._exits = exits
        self._finished = False
        self._then = ()
        self._open = None
        self._ranges = self._scope = None
        if self._cond is not None:
            self._builder = current("`if`")
            self._ranges = thread_ranges.split(self._builder, self._cond)

    def __enter__(self):
        return self

    def then(self) -> bool:
        if self._cond is None:
            return self._truth
        self._open = []
        self._builder.blocks.append(self._open)
        self._scope = thread_ranges.enter(self._builder, self._ranges, 0, self._open)
        return True

    def orelse(self) -> bool:
        if self._cond is None:
            return not self._truth
        thread_ranges.leave(self._builder, self._scope)
        self._then = tuple(self._builder.blocks.pop())
        self._open = []
        self._builder.blocks.append(self._open)
        self._scope = thread_ranges.enter(self._builder, self._ranges, 1, self._open)
        return True

    def done(self) -> None:
        self._finished = True

    def __exit__(self, exc_type, exc, tb):
        if self._cond is None:
            return False
        builder = self._builder
        thread_ranges.leave(builder, self._scope)
        if exc_type is not None or not self._finished:
            _drop_block(builder, self._open)  # keep enclosing loops' blocks balanced
        if exc_type is not None:
            return False
        if not self._finished:
            raise _refuse_exits(builder, self._exits, "an `if`", self._loc)
        last = tuple(builder.blocks.pop())
        then_body, else_body = (self._then, last) if self._has_else else (last, ())
        for stmt in thread_ranges.statements(builder, self._cond, self._ranges, then_body,
                                             else_body, self._loc):
            builder.emit(stmt)
        return False


class loop:
    """One Python `while` statement of a rewritten body: `with loop(...) as w:` around
    `while w.test(cond): ...; w.next()`."""

    def __init__(self, exits: tuple, has_else: bool):
        self._loc = caller_location()
        self._exits = exits
        self._has_else = has_else
        self._mode = None            # "static" or "traced" after the first test
        self._iterations = 0
        self._reached_end = False
        self._closed = False
        self._open = None

    def __enter__(self):
        return self

    def test(self, cond) -> bool:
        traced = traced_condition(cond, "`while`")
        if self._mode is None:
            self._mode = "static" if traced is None else "traced"
            if traced is not None:
                return self._start(traced)
        if self._mode == "static":
            if traced is not None:
                builder = current("`while`")
                raise builder.error(
                    f"the condition of this `while` became a traced value after "
                    f"{self._iterations} iterations on static values; a loop is either run by "
                    "Python (static condition) or recorded for the GPU (traced condition "
                    "from the start: keep the counter in a T.alloc_var)", self._loc)
            self._iterations += 1
            return _truth(cond)
        return self._close()

    def _start(self, cond) -> bool:
        self._builder = current("`while`")
        if self._has_else:
            raise self._builder.error("`while ... else` on a traced condition: the loop is "
                                      "recorded for the GPU, so jtile cannot tell whether it "
                                      "ended by `break`; move the else block after the loop",
                                      self._loc)
        self._cond = cond
        self._open = []
        self._builder.blocks.append(self._open)
        return True

    def _close(self) -> bool:
        builder = self._builder
        if not self._reached_end:
            _drop_block(builder, self._open)
            raise _refuse_exits(builder, tuple(e for e in self._exits if "continue" in e),
                                "a `while` loop", self._loc)
        body = tuple(builder.blocks.pop())
        self._closed = True
        builder.emit(While(self._cond, body, self._loc))
        return False

    def next(self) -> None:
        self._reached_end = True

    def __exit__(self, exc_type, exc, tb):
        if self._mode != "traced" or self._closed:
            return False
        _drop_block(self._builder, self._open)
        if exc_type is not None:
            return False
        raise _refuse_exits(self._builder, self._exits, "a `while` loop", self._loc)


# ----------------------------------------------------------------------------- assignment


def _caller_binding(name: str):
    frame = sys._getframe(2)
    return frame.f_locals.get(name, _MISSING)


def _storable(value, from_name: bool) -> bool:
    if isinstance(value, Expr) or isinstance(value, (bool, int, float, np.generic)):
        return True
    return from_name and _is_scalar_buffer(value)


def assign(name: str, value, from_name: bool):
    """`name = value`: stores into the `T.alloc_var` that `name` holds when `value` is a
    scalar (or, read by name, another variable); otherwise binds `name` as Python does."""
    old = _caller_binding(name)
    if _is_scalar_buffer(old) and old is not value and _storable(value, from_name):
        old[0] = value
        return old
    builder = active_builder()
    if builder is not None:
        builder.bound_values.bind(name, value, caller_location(), builder.blocks)
    return value


_AUG = {"add": operator.iadd, "sub": operator.isub, "mul": operator.imul,
        "truediv": operator.itruediv, "floordiv": operator.ifloordiv, "mod": operator.imod,
        "pow": operator.ipow, "lshift": operator.ilshift, "rshift": operator.irshift,
        "or": operator.ior, "xor": operator.ixor, "and": operator.iand,
        "matmul": operator.imatmul}
_PLAIN = {"add": operator.add, "sub": operator.sub, "mul": operator.mul,
          "truediv": operator.truediv, "floordiv": operator.floordiv, "mod": operator.mod,
          "pow": operator.pow, "lshift": operator.lshift, "rshift": operator.rshift,
          "or": operator.or_, "xor": operator.xor, "and": operator.and_,
          "matmul": operator.matmul}


def aug_assign(target, op: str, value):
    """`x op= value`: updates the `T.alloc_var` that `x` holds, else Python's in-place op."""
    if _is_scalar_buffer(target):
        target[0] = _PLAIN[op](as_expr(target), value)
        return target
    if isinstance(target, Buffer):
        builder = current("an augmented assignment")
        raise builder.error(f"`{target.name} {op}= ...` on {target.describe()}: update elements "
                            f"(`{target.name}[i] += v` inside T.Parallel) or use T.fill / "
                            "T.copy for the whole tile", caller_location())
    return _AUG[op](target, value)


# ----------------------------------------------------------------------------- annotations


class StaticScalarNeeded(BaseException):
    """Raised while tracing when an in-body scalar annotation (`n: T.int32`) meets a parameter
    the caller gave a Python number for, which the trace had made a 0-d array: the trace starts
    again with that number as a static value. (A BaseException, so that no `except Exception`
    in the kernel body swallows it.)"""

    def __init__(self, position: int):
        super().__init__(position)
        self.position = position


def is_scalar_annotation(annotation) -> bool:
    """`T.int32`, `"float32"`, Python's `int` / `float` / `bool`: a scalar parameter."""
    if annotation in (int, float, bool):
        return True
    if isinstance(annotation, str):
        from jtile.language.dtypes import dtype

        try:
            dtype(annotation)
        except Exception:
            return False
        return True
    return False


def scalar_annotation_dtype(annotation) -> DType:
    from jtile.language.dtypes import dtype

    return dtype(annotation).element


def static_scalar(builder, name: str, annotation, value, loc):
    """A Python number given for a parameter annotated as a scalar, checked against the
    annotation's dtype: ints stay ints (so that they can size shapes and grids), a float
    annotation gives a float, a bool annotation a bool."""
    dt = scalar_annotation_dtype(annotation)
    number = value.item() if isinstance(value, np.generic) else value
    described = f"`{name}: {dt}`"
    if dt.is_bool:
        if isinstance(number, (bool, int)) and number in (0, 1):
            return bool(number)
    elif dt.is_int:
        if isinstance(number, int) and not isinstance(number, bool):
            from jtile.ir.types import value_range

            low, high = value_range(dt)
            if low <= number <= high:
                return number
            raise builder.error(f"{described} was given {number}, which does not fit {dt} "
                                f"({low}..{high})", loc)
    elif isinstance(number, (int, float)) and not isinstance(number, bool):
        return float(number)
    kind = "bool" if dt.is_bool else "int" if dt.is_int else "number"
    raise builder.error(f"{described} was given {value!r}; the parameter takes a Python {kind}",
                        loc)


def _annotate_scalar(builder, name: str, annotation, value, loc):
    """`n: T.int32` in the body: TileLang's scalar parameter. A Python number is a static value
    (traced once per value, as shapes are); an array argument is a traced scalar read from
    its one element."""
    if value is _MISSING:
        raise builder.error(f"`{name}: {annotation}` annotates a name that is not a kernel "
                            "parameter; an in-body scalar annotation declares a parameter's "
                            "type", loc)
    if isinstance(value, (bool, int, float, np.generic)):
        return static_scalar(builder, name, annotation, value, loc)
    dt = scalar_annotation_dtype(annotation)
    if isinstance(value, Buffer) and value.space is MemorySpace.GLOBAL:
        position = getattr(builder, "scalar_origins", {}).get(value)
        if position is not None:
            raise StaticScalarNeeded(position)
        if value.shape not in ((), (1,)):
            raise builder.error(f"`{name}: {dt}` annotates a scalar, but {name} is "
                                f"{value.describe()}", loc, cls=JtileShapeError)
        if value.dtype is not dt:
            raise builder.error(f"`{name}: {dt}`: {name} is {value.describe()}; pass an array "
                                f"of dtype {dt}", loc, cls=JtileShapeError)
        from jtile.ir.nodes import as_expr

        return as_expr(value)
    if isinstance(value, Expr):
        return value if value.dtype is dt else value.astype(dt)
    raise builder.error(f"`{name}: {dt}`: {name} is {value!r}, not a scalar", loc)


def annotate(name: str, annotation):
    """`A: T.Tensor((M, N), dtype)` in the body: checks the parameter `A` (TileLang's eager
    style) and binds the shape symbols (`T.const`, `T.dynamic`) that are whole dimensions of
    the evaluated annotation and have no value yet to `A`'s sizes. `n: T.int32` declares a
    scalar parameter."""
    from jtile.language.tensor import TensorAnnotation

    value = _caller_binding(name)
    loc = caller_location()
    builder = current("an in-body annotation")
    if is_scalar_annotation(annotation):
        return _annotate_scalar(builder, name, annotation, value, loc)
    if not isinstance(annotation, TensorAnnotation):
        raise builder.error(f"`{name}: {annotation!r}` annotates a local without a value; "
                            "in-body annotations are `A: T.Tensor(shape, dtype)` of an array "
                            "parameter or `n: T.int32` of a scalar one", loc)
    if value is _MISSING:
        unbound = [s.name for s in annotation._symbols()
                   if s.evaluate(builder.symbol_values) is None]
        binds = f" (so it cannot bind {', '.join(unbound)})" if unbound else ""
        raise builder.error(f"`{name}: {annotation.describe()}` annotates a name that is not a "
                            f"kernel parameter{binds}; declare outputs with "
                            f"`{name} = T.empty(shape, dtype)` and return them", loc)
    if not isinstance(value, Buffer) or value.space is not MemorySpace.GLOBAL:
        raise builder.error(f"`{name}: {annotation.describe()}`: {name} is {value!r}, not an "
                            "array argument of the kernel", loc)
    values = builder.symbol_values
    annotation.bind(value.shape, values)
    # A dimension such as `2 * N` whose symbols a later annotation binds is checked then.
    if not hasattr(builder, "pending_annotations"):
        builder.pending_annotations = []
    builder.pending_annotations.append((name, annotation, value, loc))
    _check_annotations(builder)
    annotated = getattr(builder, "annotated_in_body", None)
    if annotated is not None:
        annotated.add(value)
    holders = getattr(builder, "symbol_holders", None)
    if holders is not None:
        holders.refresh(values)
    return value


def _check_annotations(builder) -> None:
    """Checks the in-body annotations whose every dimension is known by now."""
    values = builder.symbol_values
    pending = []
    for name, annotation, value, loc in builder.pending_annotations:
        problem = annotation.mismatch(value.shape, value.dtype, values)
        if problem:
            raise builder.error(f"parameter `{name}` {problem}", loc, cls=JtileShapeError)
        if annotation.undetermined(values):
            pending.append((name, annotation, value, loc))
    builder.pending_annotations = pending


def check_annotations_determined(builder) -> None:
    """After the body: refuses an in-body annotation with a dimension no symbol binding
    determined (`A: T.Tensor((M * 2,), dtype)` where M is never a whole dimension)."""
    for name, annotation, _, loc in getattr(builder, "pending_annotations", ()):
        raise builder.error(f"parameter `{name}`: {annotation.undetermined(builder.symbol_values)}",
                            loc)


def rebound_locals() -> dict:
    """The caller's locals that hold shape symbols bound by now, with the ints in their place
    (the rewrite assigns them back after each in-body annotation, so that `M`, `KH = K` or
    `shape = [M, N]` read as ints from there on)."""
    from jtile.language.tensor import resolve_symbols

    builder = active_builder()
    values = getattr(builder, "symbol_values", None) if builder is not None else None
    if not values:
        return {}
    changed = {}
    for name, value in sys._getframe(1).f_locals.items():
        resolved = resolve_symbols(value, values)
        if resolved is not value:
            changed[name] = resolved
    return changed
