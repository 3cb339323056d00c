"""TileLang's eager calling style: static values (block sizes, dtype names, flags) passed in the
call beside the arrays, `kernel(a, b, block_M=32, in_dtype="float32")` or positionally after
them, `kernel(a, b, 32, 32, "float32")`.

The launcher binds them to the kernel function as `functools.partial` would, and keeps one
launcher (with its own trace cache) per distinct set of values. Arrays are passed by position;
when a static value that is no Python number (a dtype name, a flag string) follows the arrays,
every positional argument after the last array is bound by name, numbers included, as
TileLang's compile-time arguments. Without one, Python numbers keep their meaning: a scalar
argument, static when the parameter is annotated as one.
"""

from __future__ import annotations

import inspect

import jax
import numpy as np

from jtile.errors import JtileError


def is_array_like(value) -> bool:
    return isinstance(value, (jax.Array, np.ndarray, jax.ShapeDtypeStruct)) or \
        hasattr(value, "__array__") or hasattr(value, "__jax_array__")


def _is_number(value) -> bool:
    return type(value) in (int, float, bool) or isinstance(value, np.number)


def split_static(name: str, fn, args: tuple, kwargs: dict) -> tuple:
    """`(arrays and numbers by position, {parameter: static value})` of a call."""
    bound = {}
    for key, value in kwargs.items():
        if is_array_like(value):
            raise JtileError(f"{name}: array argument {key}= is passed by keyword; pass arrays by "
                             "position (keywords are static values, as functools.partial binds "
                             "them)")
        bound[key] = value
    first = next((i for i, a in enumerate(args) if not is_array_like(a) and not _is_number(a)),
                 None)
    if first is None:
        return tuple(args), bound
    # The values after the last array before it are TileLang's compile-time arguments, the
    # numbers among them too.
    while first > 0 and not is_array_like(args[first - 1]):
        first -= 1
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        params = []
    named = [p for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    for index in range(first, len(args)):
        value = args[index]
        if index >= len(named) or named[index].kind is not named[index].POSITIONAL_OR_KEYWORD:
            raise JtileError(f"{name}: argument {index} ({value!r}) is a static value with no "
                             "named parameter at its position; pass it by keyword or bind it "
                             "with functools.partial")
        if is_array_like(value):
            raise JtileError(f"{name}: argument {index} is an array after the static value "
                             f"{args[first]!r} (argument {first}); pass the arrays first and "
                             "the static values after them, or by keyword")
        if named[index].name in bound:
            raise JtileError(f"{name}: parameter {named[index].name} is given both by position "
                             "and by keyword")
        bound[named[index].name] = value
    return tuple(args[:first]), bound


def cache_key(bound: dict):
    """A hashable key for a set of static values (their repr where they are unhashable)."""
    items = []
    for key in sorted(bound):
        value = bound[key]
        try:
            hash(value)
        except TypeError:
            value = ("repr", type(value).__name__, repr(value))
        items.append((key, type(value).__name__, value))
    return tuple(items)
