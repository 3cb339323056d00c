"""The AST side of `break` and `continue` inside loops whose iterations are traced.

A `for` loop that has a `break` or `continue` of its own is rewritten (by
`ast_rewrite._ControlFlowRewriter.visit_For`) into the form below; a `while` loop likewise, its
condition becoming `X.while_test(cond)` (`rewrite_while`):

    with __jt_rt__.loop_exits(has_break, has_continue) as X:
        for target in X.over(iterable):
            if X.enter():
                body, where `break` is `if X.break_(): break` and `continue` is
                `if X.continue_(): continue`, and the statements after one that may leave
                run under `if X.live():`
        else:
            if X.orelse():
                orelse

`jtile.trace.loop_exits` decides at trace time: where the exit is reached on static values
in a loop Python runs (a `range`), the Python statement runs as written; where it is reached
under a traced condition, or in a loop recorded for the GPU (`T.serial`, `T.unroll`, ...),
it sets a flag (a `T.alloc_var`) that the guards test, as TileLang does.
"""

from __future__ import annotations

import ast

_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)
_LOOPS = (ast.For, ast.AsyncFor, ast.While)


def own_exits(body: list) -> set:
    """"break" / "continue" for the exits of the loop whose body is `body`: not inside nested
    loops (except their `else:`) or functions."""
    found = set()

    def visit(node):
        if isinstance(node, _SCOPES):
            return
        if isinstance(node, ast.Break):
            found.add("break")
        elif isinstance(node, ast.Continue):
            found.add("continue")
        if isinstance(node, _LOOPS):
            for child in node.orelse:
                visit(child)
            return
        for child in ast.iter_child_nodes(node):
            visit(child)

    for stmt in body:
        visit(stmt)
    return found


def _runtime_call(handle: str, method: str, loc: ast.AST) -> ast.Call:
    call = ast.Call(func=ast.Attribute(value=ast.Name(handle, ast.Load()), attr=method,
                                       ctx=ast.Load()), args=[], keywords=[])
    return ast.copy_location(call, loc)


def _exit_site(node, handle: str) -> ast.If:
    """`if X.break_(): break` (or continue) in place of the exit `node`."""
    method = "break_" if isinstance(node, ast.Break) else "continue_"
    guard = ast.If(test=_runtime_call(handle, method, node), body=[node], orelse=[])
    return ast.copy_location(guard, node)


def _may_leave(stmt) -> bool:
    return bool(own_exits([stmt]))


def rewrite_body(body: list, handle: str) -> list:
    """`body` with its own exits replaced by runtime calls and the statements after a
    statement that may leave put under `if X.live():`."""
    out = []
    for index, stmt in enumerate(body):
        leaves = _may_leave(stmt)
        out.append(_rewrite_stmt(stmt, handle))
        rest = body[index + 1:]
        if leaves and rest:
            guard = ast.If(test=_runtime_call(handle, "live", rest[0]),
                           body=rewrite_body(rest, handle), orelse=[])
            out.append(ast.copy_location(guard, rest[0]))
            break
    return out


def _rewrite_stmt(stmt, handle: str):
    if isinstance(stmt, (ast.Break, ast.Continue)):
        return _exit_site(stmt, handle)
    if isinstance(stmt, _SCOPES) or not _may_leave(stmt):
        return stmt
    if isinstance(stmt, _LOOPS):
        stmt.orelse = rewrite_body(stmt.orelse, handle)
        return stmt
    for field in ("body", "orelse", "finalbody"):
        block = getattr(stmt, field, None)
        if isinstance(block, list) and block and isinstance(block[0], ast.stmt):
            setattr(stmt, field, rewrite_body(block, handle))
    for handler in getattr(stmt, "handlers", ()):
        handler.body = rewrite_body(handler.body, handle)
    for case in getattr(stmt, "cases", ()):
        case.body = rewrite_body(case.body, handle)
    return stmt


def rewrite_while(node: ast.While, handle: str) -> None:
    """A `while` with its own exits, in place: `while X.while_test(cond):` (the condition
    also asks that no break flag is set), the body under `if X.enter():` with its exits
    rewritten, and the `else:` under `if X.orelse():`."""
    node.test = ast.copy_location(
        ast.Call(func=ast.Attribute(value=ast.Name(handle, ast.Load()), attr="while_test",
                                    ctx=ast.Load()), args=[node.test], keywords=[]), node.test)
    node.body = [ast.copy_location(ast.If(test=_runtime_call(handle, "enter", node),
                                          body=rewrite_body(node.body, handle), orelse=[]),
                                   node)]
    if node.orelse:
        node.orelse = [ast.copy_location(ast.If(test=_runtime_call(handle, "orelse", node),
                                                body=node.orelse, orelse=[]), node.orelse[0])]


def wrap(statement, handle: str, exits: set, runtime_call, loc) -> ast.With:
    """`with loop_exits(has_break, has_continue) as X:` around `statement`."""
    manager = runtime_call("loop_exits", ast.Constant("break" in exits),
                           ast.Constant("continue" in exits), loc=loc)
    return ast.copy_location(ast.With(items=[ast.withitem(manager, ast.Name(handle, ast.Store()))],
                                      body=[statement]), loc)


def rewrite_loop(node: ast.For, handle: str, exits: set, runtime_call) -> ast.With:
    """The `with loop_exits(...) as X:` form of the `for` loop `node` (see the module doc).
    `runtime_call(method, *args, loc=)` builds a call of the control-flow runtime."""
    body = rewrite_body(node.body, handle)
    entered = ast.copy_location(ast.If(test=_runtime_call(handle, "enter", node), body=body,
                                       orelse=[]), node)
    orelse = []
    if node.orelse:
        orelse = [ast.copy_location(ast.If(test=_runtime_call(handle, "orelse", node),
                                           body=node.orelse, orelse=[]), node.orelse[0])]
    over = ast.Call(func=ast.Attribute(value=ast.Name(handle, ast.Load()), attr="over",
                                       ctx=ast.Load()), args=[node.iter], keywords=[])
    loop = ast.copy_location(ast.For(target=node.target, iter=ast.copy_location(over, node.iter),
                                     body=[entered], orelse=orelse,
                                     type_comment=None), node)
    loop._jt_exits_rewritten = True
    return wrap(loop, handle, exits, runtime_call, node)
