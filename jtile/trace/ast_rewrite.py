"""Rewriting a kernel body's Python control flow so that it works on traced values.

A kernel body runs once, on symbolic values. Python's `if`, `while`, `and`, `or`, `not`,
`a if c else b` and comparison chains ask `bool()` of their operands, which a traced value
cannot answer. Before tracing, the body's source is parsed and those constructs are rewritten
into calls of `jtile.trace.python_control` (bound in the rewritten function as `__jt_rt__`),
which take Python's own path when the value is static and record IR (`IfThenElse`, `While`,
logical expressions, `Select`) when it is traced, as TileLang does. The same rewrite gives
TileLang's meaning to assignments (`x = x + 1` and `x += 1` store into a `T.alloc_var`) and
to in-body annotations (`A: T.Tensor((M, N), dtype)` checks `A` and binds the shape symbols
it has as whole dimensions; the locals that hold them are then given their ints).

The rewritten function is compiled with the original file name and line numbers, so errors
and tracebacks point at the user's lines, and runs in the function's own globals and closure.
A function whose source cannot be read (defined by `exec`, a lambda) runs as written: an
`if` on a traced value in it is refused with the reason, and `x = x + 1` rebinds `x` as
Python does instead of storing into a `T.alloc_var` (write `x[0] = x + 1` there).
"""

from __future__ import annotations

import __future__
import ast
import dataclasses
import functools
import inspect
import operator
import os
import textwrap
import types
import weakref
from typing import Callable, Optional

RUNTIME = "__jt_rt__"
# `from __future__` imports of the user's module that change how the body compiles.
_FUTURE_FLAGS = functools.reduce(operator.or_, (getattr(__future__, name).compiler_flag
                                                for name in __future__.all_feature_names))


@dataclasses.dataclass(frozen=True)
class Rewritten:
    """The outcome of preparing one Python function for tracing.

    Attributes:
        fn: the function to run (rewritten, or the original when it could not be).
        rewritten: whether `fn` is the rewritten function.
        why_not: when not rewritten, the reason (for error messages), else "".
        const_sources: `T.const` name -> (parameter name, dimension) from the body's
            top-level `P: T.Tensor((M, N), ...)` annotations whose dimension is a bare name:
            values known before the body runs, so `T.const` can return them as ints at once
            (other names are bound when an annotation is evaluated).
    """

    fn: Callable
    rewritten: bool
    why_not: str = ""
    const_sources: tuple = ()


# ----------------------------------------------------------------------------- source


def _function_source(fn) -> tuple:
    """(FunctionDef, first line in the file, file name) of `fn`, or raises OSError."""
    code = fn.__code__
    if fn.__name__ == "<lambda>":
        raise OSError("it is a lambda (a lambda cannot hold statements; write it with def)")
    lines, start = inspect.getsourcelines(fn)
    source = "".join(lines)
    try:
        tree = ast.parse(textwrap.dedent(source))
        offset = start - 1
        node = tree.body[0]
    except SyntaxError:
        # Indented source whose docstring lines start further left than the def: nest it.
        tree = ast.parse("if 1:\n" + source)
        offset = start - 2
        node = tree.body[0].body[0]
    if not isinstance(node, ast.FunctionDef) or node.name != code.co_name:
        raise OSError("its source could not be located")
    ast.increment_lineno(node, offset)
    return node, start, code.co_filename


# ----------------------------------------------------------------------------- analysis


def _exits(body: list, filename: str) -> list:
    """`break`, `continue` and `return` statements in `body` that leave it: not inside nested
    functions or classes, and (for break/continue) not inside loops nested in `body`."""
    found = []
    base = os.path.basename(filename)

    def visit(node, in_loop: bool):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
            return
        if isinstance(node, ast.Return):
            found.append(f"`return` at {base}:{node.lineno}")
        elif isinstance(node, (ast.Break, ast.Continue)) and not in_loop:
            word = "break" if isinstance(node, ast.Break) else "continue"
            found.append(f"`{word}` at {base}:{node.lineno}")
        nested_loop = isinstance(node, (ast.For, ast.While, ast.AsyncFor))
        for child in ast.iter_child_nodes(node):
            # A loop's `else:` belongs to the enclosing level for break/continue.
            inside = in_loop or (nested_loop and child not in getattr(node, "orelse", ()))
            visit(child, inside)

    for stmt in body:
        visit(stmt, False)
    return found


def _annotation_shape(annotation) -> Optional[list]:
    """The shape elements of `T.Tensor((M, N), dt)`, `T.Tensor[[M, N], dt]`, `T.Buffer(M, dt)`."""
    if isinstance(annotation, ast.Call):
        shape = annotation.args[0] if annotation.args else next(
            (k.value for k in annotation.keywords if k.arg == "shape"), None)
    elif isinstance(annotation, ast.Subscript):
        key = annotation.slice
        shape = key.elts[0] if isinstance(key, ast.Tuple) and key.elts else key
    else:
        return None
    if shape is None:
        return None
    return list(shape.elts) if isinstance(shape, (ast.Tuple, ast.List)) else [shape]


def _const_sources(node: ast.FunctionDef) -> tuple:
    """Name -> (parameter, dim) for bare-name dimensions of top-level in-body annotations of
    the function's parameters: `T.const` values known from the arguments before the body runs,
    so that they are ints even where the body uses them ahead of the annotation. (The
    annotations themselves still bind and check every name when they are evaluated.)"""
    params = {a.arg for a in node.args.posonlyargs + node.args.args + node.args.kwonlyargs}
    sources = {}
    for stmt in node.body:
        if not (isinstance(stmt, ast.AnnAssign) and stmt.value is None
                and isinstance(stmt.target, ast.Name) and stmt.target.id in params):
            continue
        for dim, element in enumerate(_annotation_shape(stmt.annotation) or ()):
            if isinstance(element, ast.Name):
                sources.setdefault(element.id, (stmt.target.id, dim))
    return tuple(sources.items())


def _local_names(node) -> tuple:
    """The names local to a function (its parameters and every name it binds), Python's
    scoping rules applied: names declared global or nonlocal are not local, nested functions
    and classes bind only their own name, comprehensions bind nothing outside (but `:=` does)."""
    args = node.args
    names = {a.arg for a in args.posonlyargs + args.args + args.kwonlyargs}
    names |= {a.arg for a in (args.vararg, args.kwarg) if a is not None}
    declared = set()

    def visit(n, in_comprehension: bool):
        for child in ast.iter_child_nodes(n):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(child.name)
                continue
            if isinstance(child, ast.Lambda):
                continue
            if isinstance(child, (ast.Global, ast.Nonlocal)):
                declared.update(child.names)
            elif isinstance(child, ast.NamedExpr) and isinstance(child.target, ast.Name):
                names.add(child.target.id)
            elif isinstance(child, ast.Name) and not isinstance(child.ctx, ast.Load) and \
                    not in_comprehension:
                names.add(child.id)
            elif isinstance(child, ast.alias):
                names.add((child.asname or child.name).split(".")[0])
            elif isinstance(child, ast.ExceptHandler) and child.name:
                names.add(child.name)
            visit(child, in_comprehension or isinstance(
                child, (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)))

    for stmt in node.body:
        visit(stmt, False)
    return tuple(sorted(n for n in names - declared if not n.startswith("__jt_")))


# ----------------------------------------------------------------------------- transform


def _call(method: str, *args, loc: ast.AST) -> ast.Call:
    call = ast.Call(func=ast.Attribute(value=ast.Name(RUNTIME, ast.Load()), attr=method,
                                       ctx=ast.Load()),
                    args=list(args), keywords=[])
    return _locate_all(call, loc)


def _thunk(expr: ast.expr) -> ast.Lambda:
    """`lambda: expr`: evaluated only when the runtime decides to (short-circuiting)."""
    no_args = ast.arguments(posonlyargs=[], args=[], vararg=None, kwonlyargs=[],
                            kw_defaults=[], kwarg=None, defaults=[])
    return _locate_all(ast.Lambda(args=no_args, body=expr), expr)


def _const(value, loc: ast.AST) -> ast.Constant:
    return _place(ast.Constant(value), loc)


_COMPARE_OPS = {ast.Lt: "lt", ast.LtE: "le", ast.Gt: "gt", ast.GtE: "ge", ast.Eq: "eq",
                ast.NotEq: "ne", ast.Is: "is", ast.IsNot: "is_not", ast.In: "in",
                ast.NotIn: "not_in"}

_AUG_OPS = {ast.Add: "add", ast.Sub: "sub", ast.Mult: "mul", ast.Div: "truediv",
            ast.FloorDiv: "floordiv", ast.Mod: "mod", ast.Pow: "pow", ast.LShift: "lshift",
            ast.RShift: "rshift", ast.BitOr: "or", ast.BitXor: "xor", ast.BitAnd: "and",
            ast.MatMult: "matmul"}


class _ControlFlowRewriter(ast.NodeTransformer):
    """Rewrites one function (and the functions nested in it) for tracing."""

    def __init__(self, filename: str):
        self.filename = filename
        self.count = 0
        self.local_names: list = []   # per enclosing function, innermost last

    def fresh(self, kind: str) -> str:
        self.count += 1
        return f"__jt_{kind}{self.count}__"

    # ------------------------------------------------------------------ expressions
    def visit_BoolOp(self, node: ast.BoolOp):
        self.generic_visit(node)
        method = "and_" if isinstance(node.op, ast.And) else "or_"
        result = node.values[0]
        for operand in node.values[1:]:
            result = _call(method, result, _thunk(operand), loc=node)
        return result

    def visit_UnaryOp(self, node: ast.UnaryOp):
        self.generic_visit(node)
        if isinstance(node.op, ast.Not):
            return _call("not_", node.operand, loc=node)
        return node

    def visit_IfExp(self, node: ast.IfExp):
        self.generic_visit(node)
        return _call("ifexp", node.test, _thunk(node.body), _thunk(node.orelse), loc=node)

    def visit_Compare(self, node: ast.Compare):
        self.generic_visit(node)
        if len(node.ops) == 1:
            return node
        # `a < b < c` asks bool(a < b); as TileLang, a chain is the `and` of its links.
        ops = _place(ast.Tuple([_const(_COMPARE_OPS[type(op)], node)
                                for op in node.ops], ast.Load()), node)
        thunks = _place(ast.Tuple([_thunk(c) for c in node.comparators], ast.Load()), node)
        return _call("compare_chain", node.left, ops, thunks, loc=node)

    # ------------------------------------------------------------------ statements
    def visit_FunctionDef(self, node):
        self.local_names.append(_local_names(node))
        try:
            self.generic_visit(node)
        finally:
            self.local_names.pop()
        return node

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_If(self, node: ast.If):
        self.generic_visit(node)
        name = self.fresh("if")
        exits = _exits(node.body + node.orelse, self.filename)
        branch = _call("branch", node.test, _const(bool(node.orelse), node),
                       _const(tuple(exits), node), loc=node)
        handle = ast.Name(name, ast.Load())
        then_if = ast.If(test=ast.Call(ast.Attribute(handle, "then", ast.Load()), [], []),
                         body=node.body, orelse=[])
        body = [then_if]
        if node.orelse:
            body.append(ast.If(test=ast.Call(ast.Attribute(handle, "orelse", ast.Load()), [], []),
                               body=node.orelse, orelse=[]))
        body.append(ast.Expr(ast.Call(ast.Attribute(handle, "done", ast.Load()), [], [])))
        with_node = ast.With(items=[ast.withitem(branch, ast.Name(name, ast.Store()))],
                             body=body)
        return _locate_all(with_node, node)

    def visit_For(self, node: ast.For):
        """`for i in range(...)` is TileLang's `T.serial` inside the kernel (`kernel_range`);
        a `for` with a `break` or `continue` of its own: see `loop_exits_rewrite`."""
        from jtile.trace import loop_exits_rewrite

        it = node.iter
        if isinstance(it, ast.Call) and isinstance(it.func, ast.Name) and it.func.id == "range" \
                and not it.keywords and not any(isinstance(a, ast.Starred) for a in it.args):
            node.iter = _call("kernel_range", it.func, *it.args, loc=it)
        exits = set() if getattr(node, "_jt_exits_rewritten", False) else \
            loop_exits_rewrite.own_exits(node.body)
        if not exits:
            self.generic_visit(node)
            return node
        rewritten = loop_exits_rewrite.rewrite_loop(node, self.fresh("exits"), exits, _call)
        self.generic_visit(rewritten)
        return _locate_all(rewritten, node)

    def visit_While(self, node: ast.While):
        from jtile.trace import loop_exits_rewrite

        own = loop_exits_rewrite.own_exits(node.body)
        handle = self.fresh("exits") if own else None
        if own:
            loop_exits_rewrite.rewrite_while(node, handle)
        self.generic_visit(node)
        # With a break flag the `else:` tests it (`X.orelse()`), so the loop may have one.
        rewritten = self._while(node, else_refused=bool(node.orelse) and not own)
        if own:
            rewritten = loop_exits_rewrite.wrap(rewritten, handle, own, _call, node)
        return _locate_all(rewritten, node)

    def _while(self, node: ast.While, else_refused: bool) -> ast.With:
        name = self.fresh("while")
        exits = _exits(node.body, self.filename)
        handle = ast.Name(name, ast.Load())
        loop = _call("loop", _const(tuple(exits), node), _const(else_refused, node), loc=node)
        test = ast.Call(ast.Attribute(handle, "test", ast.Load()), [node.test], [])
        next_ = ast.Expr(ast.Call(ast.Attribute(handle, "next", ast.Load()), [], []))
        new_while = ast.While(test=test, body=node.body + [next_], orelse=node.orelse)
        return ast.With(items=[ast.withitem(loop, ast.Name(name, ast.Store()))],
                        body=[new_while])

    def visit_Assert(self, node: ast.Assert):
        self.generic_visit(node)
        node.test = _call("assert_condition", node.test, loc=node)
        return node

    def visit_Assign(self, node: ast.Assign):
        self.generic_visit(node)
        if not any(_has_name(t) for t in node.targets):
            return node
        if len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            target = node.targets[0]
            node.value = self._assign_call(target.id, node.value, node)
            return node
        # Unpacking or chained targets: unpack into temporaries, then assign each name.
        temp = self.fresh("value")
        out = [_locate_all(ast.Assign(targets=[ast.Name(temp, ast.Store())], value=node.value),
                           node)]
        for target in node.targets:
            renamed, pairs = self._rename_names(target)
            out.append(_locate_all(ast.Assign(targets=[renamed],
                                              value=ast.Name(temp, ast.Load())), node))
            for user_name, temp_name in pairs:
                value = self._assign_call(user_name, ast.Name(temp_name, ast.Load()), node,
                                          from_name=False)
                out.append(_locate_all(ast.Assign(targets=[ast.Name(user_name, ast.Store())],
                                                  value=value), node))
        return out

    def visit_AnnAssign(self, node: ast.AnnAssign):
        self.generic_visit(node)
        if not isinstance(node.target, ast.Name):
            return node
        name = node.target.id
        if node.value is None:
            # `A: T.Tensor((M, N), dtype)` in the body: check A and bind the shape symbols
            # it has as whole dimensions; then the locals holding them are given the ints.
            value = _call("annotate", _const(name, node), node.annotation, loc=node)
            check = _locate_all(ast.Assign(targets=[ast.Name(name, ast.Store())], value=value),
                                node)
            return [check] + self._rebind_symbols(name, node)
        # The annotation of a local is not evaluated (Python's rule); the value is bound with
        # TileLang's assignment meaning.
        value = self._assign_call(name, node.value, node)
        return _locate_all(ast.Assign(targets=[ast.Name(name, ast.Store())], value=value),
                           node)

    def visit_AugAssign(self, node: ast.AugAssign):
        self.generic_visit(node)
        if not isinstance(node.target, ast.Name):
            return node  # `buf[i] += v` already loads, adds and stores through the buffer
        name = node.target.id
        value = _call("aug_assign", ast.Name(name, ast.Load()), _const(_AUG_OPS[type(node.op)],
                                                                         node),
                      node.value, loc=node)
        return _locate_all(ast.Assign(targets=[ast.Name(name, ast.Store())], value=value),
                           node)

    def _note_exit(self, node, word: str):
        """`break` / `continue` / `return` preceded by a note of which one it is, so that a
        traced branch or loop it leaves can name it."""
        self.generic_visit(node)
        where = f"`{word}` at {os.path.basename(self.filename)}:{node.lineno}"
        note = _locate_all(ast.Expr(_call("leaving", _const(where, node), loc=node)), node)
        return [note, node]

    def visit_Break(self, node: ast.Break):
        return self._note_exit(node, "break")

    def visit_Continue(self, node: ast.Continue):
        return self._note_exit(node, "continue")

    def visit_Return(self, node: ast.Return):
        return self._note_exit(node, "return")

    def visit_ClassDef(self, node: ast.ClassDef):
        return node  # class bodies are not kernel code

    # ------------------------------------------------------------------ helpers
    def _rebind_symbols(self, annotated: str, loc: ast.AST) -> list:
        """`if "M" in bound: M = bound["M"]` for each local of the function, after
        `bound = rebound_locals()`: the shape symbols an annotation bound become ints."""
        names = [n for n in (self.local_names[-1] if self.local_names else ()) if n != annotated]
        if not names:
            return []
        temp = "__jt_bound__"
        out = [ast.Assign(targets=[ast.Name(temp, ast.Store())],
                          value=_call("rebound_locals", loc=loc))]
        for n in names:
            test = ast.Compare(_const(n, loc), [ast.In()], [ast.Name(temp, ast.Load())])
            take = ast.Subscript(ast.Name(temp, ast.Load()), _const(n, loc), ast.Load())
            out.append(ast.If(test=test, body=[ast.Assign(targets=[ast.Name(n, ast.Store())],
                                                          value=take)], orelse=[]))
        return [_locate_all(stmt, loc) for stmt in out]

    def _assign_call(self, name: str, value: ast.expr, loc: ast.AST, from_name=None):
        if from_name is None:
            from_name = isinstance(value, ast.Name)
        return _call("assign", _const(name, loc), value, _const(from_name, loc), loc=loc)

    def _rename_names(self, target):
        """A copy of an assignment target with every plain name replaced by a temporary."""
        pairs = []

        def rename(t):
            if isinstance(t, ast.Name):
                temp = self.fresh("item")
                pairs.append((t.id, temp))
                return ast.copy_location(ast.Name(temp, ast.Store()), t)
            if isinstance(t, (ast.Tuple, ast.List)):
                return ast.copy_location(type(t)([rename(e) for e in t.elts], ast.Store()), t)
            if isinstance(t, ast.Starred):
                return ast.copy_location(ast.Starred(rename(t.value), ast.Store()), t)
            return t

        return rename(target), pairs


def _has_name(target) -> bool:
    if isinstance(target, ast.Name):
        return True
    if isinstance(target, (ast.Tuple, ast.List)):
        return any(_has_name(e) for e in target.elts)
    if isinstance(target, ast.Starred):
        return _has_name(target.value)
    return False


def _place(new: ast.AST, old: ast.AST) -> ast.AST:
    """Puts generated `new` at the first line of `old`. (Not old's whole span: a method
    call is reported at its attribute's last line, which must be the statement's line.)"""
    new.lineno = new.end_lineno = old.lineno
    new.col_offset = new.end_col_offset = old.col_offset
    return new


def _locate_all(new: ast.AST, old: ast.AST) -> ast.AST:
    """Gives `new` and its children that have no location the first line of `old`."""
    for child in ast.walk(new):
        if "lineno" in child._attributes and getattr(child, "lineno", None) is None:
            _place(child, old)
    return new


# ----------------------------------------------------------------------------- compile


def _compile(fn, node: ast.FunctionDef, filename: str) -> Callable:
    """Compiles the rewritten def inside a factory whose parameters are the original free
    variables, then builds the function over the original closure cells and globals."""
    from jtile.trace import python_control

    code = fn.__code__
    # Annotations and defaults were evaluated when the user's def ran; evaluating them again
    # here would need names of the enclosing scope that the body may not capture.
    node.decorator_list = []
    node.returns = None
    for arg in node.args.posonlyargs + node.args.args + node.args.kwonlyargs + \
            [a for a in (node.args.vararg, node.args.kwarg) if a is not None]:
        arg.annotation = None
    node.args.defaults = []
    node.args.kw_defaults = [None] * len(node.args.kwonlyargs)
    # A name of its own inside the factory: the body's references to the function's name
    # (recursion, e.g. a recursive T.macro) must reach what they reached before, the module's
    # global (the T.macro object), not the bare rewritten function.
    node.name = "__jt_rewritten__"
    freevars = list(code.co_freevars)
    factory_args = [ast.arg(RUNTIME)] + [ast.arg(v) for v in freevars]
    factory = ast.FunctionDef(
        name="__jt_factory__",
        args=ast.arguments(posonlyargs=[], args=factory_args, vararg=None, kwonlyargs=[],
                           kw_defaults=[], kwarg=None, defaults=[]),
        body=[node, ast.Return(ast.Name(node.name, ast.Load()))],
        decorator_list=[], returns=None)
    if "type_params" in ast.FunctionDef._fields:
        factory.type_params = []
    module = ast.Module(body=[_locate_all(factory, node)], type_ignores=[])
    ast.fix_missing_locations(module)
    flags = code.co_flags & _FUTURE_FLAGS
    module_code = compile(module, filename, "exec", flags=flags, dont_inherit=True)
    factory_code = next(c for c in module_code.co_consts if isinstance(c, types.CodeType))
    inner_code = next(c for c in factory_code.co_consts
                      if isinstance(c, types.CodeType) and c.co_name == node.name)
    cells = dict(zip(code.co_freevars, fn.__closure__ or ()))
    cells[RUNTIME] = types.CellType(python_control)
    closure = tuple(cells[name] for name in inner_code.co_freevars)
    new = types.FunctionType(inner_code, fn.__globals__, fn.__name__, fn.__defaults__, closure)
    new.__kwdefaults__ = fn.__kwdefaults__
    new.__annotations__ = dict(getattr(fn, "__annotations__", {}) or {})
    new.__qualname__ = fn.__qualname__
    new.__module__ = fn.__module__
    new.__doc__ = fn.__doc__
    new.__dict__.update(fn.__dict__)
    new.__jtile_original__ = fn
    return new


_cache: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def rewrite_function(fn: types.FunctionType) -> Rewritten:
    """The rewritten form of a plain Python function (cached per function object)."""
    hit = _cache.get(fn)
    if hit is not None:
        return hit
    try:
        node, _, filename = _function_source(fn)
    except (OSError, TypeError) as error:
        result = Rewritten(fn, False, str(error) or "its source is not available")
    else:
        sources = _const_sources(node)
        rewriter = _ControlFlowRewriter(filename)
        node = rewriter.visit(node)
        result = Rewritten(_compile(fn, node, filename), True, "", sources)
    _cache[fn] = result
    return result


def prepare(fn: Callable) -> Rewritten:
    """`fn` ready for tracing: plain functions are rewritten; `functools.partial` layers are
    rebuilt around the rewritten function; `T.prim_func` and `T.macro` objects give their
    function. Other callables (decorator wrappers, callable objects) run as they are."""
    if isinstance(fn, functools.partial):
        inner = prepare(fn.func)
        if not inner.rewritten:
            return dataclasses.replace(inner, fn=fn)
        rebuilt = functools.partial(inner.fn, *fn.args, **fn.keywords)
        return dataclasses.replace(inner, fn=rebuilt)
    wrapped = getattr(fn, "__jtile_function__", None)
    if wrapped is not None:
        return prepare(wrapped)
    if isinstance(fn, types.FunctionType) and not hasattr(fn, "__wrapped__"):
        if hasattr(fn, "__jtile_original__"):
            return Rewritten(fn, True, "", ())
        return rewrite_function(fn)
    what = "it is wrapped by a decorator" if hasattr(fn, "__wrapped__") else \
        f"it is a {type(fn).__name__}, not a Python function"
    return Rewritten(fn, False, what)
