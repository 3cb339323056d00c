"""Outputs between other parameters: TileLang's `out_idx=[3]` on `main(Q, K, V, Output, Sinks)`.

jtile's launcher has no `out_idx`: arrays bind to a kernel's parameters in order and the
annotated parameters left over at the end are its outputs. TileLang kernels also put an output
between inputs and are called without it, `kernel(Q, K, V, Sinks)`. When binding in order does
not fit the `T.Tensor` annotations, the outputs are the parameters whose removal makes every
array fit its parameter, in order, and leaves every output's shape determined, provided exactly
one choice does (several: refused, naming them). The body still receives its parameters in
its own order; inside jtile the inputs come first, as everywhere else.
"""

from __future__ import annotations

import itertools
from typing import Optional

from jtile.errors import JtileShapeError
from jtile.language.tensor import TensorAnnotation


def _annotation(param) -> Optional[TensorAnnotation]:
    return param.annotation if isinstance(param.annotation, TensorAnnotation) else None


def _fits(params: list, positions: tuple, inputs, outputs: list) -> bool:
    """Whether `inputs` bind to the parameters at `positions` (in order) and the parameters
    at `outputs` then have determined shapes."""
    bindings: dict = {}
    for pos, (shape, _) in zip(positions, inputs):
        annotation = _annotation(params[pos])
        if annotation is None:
            return False
        annotation.bind(shape, bindings)
    for pos, (shape, dtype) in zip(positions, inputs):
        if _annotation(params[pos]).mismatch(shape, dtype, bindings):
            return False
    for pos in outputs:
        annotation = _annotation(params[pos])
        if annotation is None:
            return False
        try:
            annotation.resolve(bindings)
        except ValueError:
            return False
    return True


class OutputOrderNeeded(Exception):
    """The shapes fit several choices of outputs and the traced body wrote the parameters of
    another choice than the one it was traced with: trace again with `order`."""

    def __init__(self, order: list):
        super().__init__(order)
        self.order = order


def input_first_order(builder, params: list, inputs, outputs, aliases: dict):
    """(order, choices): the parameter indices with the inputs first when the kernel's outputs
    sit between its inputs (see the module docstring), else None; and, when the shapes fit
    several choices, each choice's order (the body's writes decide, `choose_written`)."""
    if outputs is not None or aliases:
        return None, None
    required = [i for i, p in enumerate(params)
                if p.default is p.empty and p.kind is not p.KEYWORD_ONLY]
    count = len(required) - len(inputs)
    if count <= 0 or len(inputs) == 0:
        return None, None
    trailing = tuple(required[:len(inputs)])
    if _fits(params, trailing, inputs, required[len(inputs):]):
        return None, None
    orders = []
    for positions in itertools.combinations(required, len(inputs)):
        if positions != trailing and _fits(params, positions, inputs,
                                           [i for i in required if i not in positions]):
            orders.append(list(positions) + [i for i in range(len(params))
                                             if i not in positions])
    if not orders:
        return None, None   # binding in order reports the first mismatch
    return orders[0], (orders if len(orders) > 1 else None)


def choose_written(builder, params: list, order: list, choices: list, values: list,
                   written: set, inputs) -> None:
    """Among `choices`, the one whose outputs are exactly the parameters the body writes:
    nothing to do when it is `order` (the one traced), OutputOrderNeeded for another; none or
    several: refused, naming them."""
    by_position = {order[k]: v for k, v in enumerate(values)}
    wrote = {i for i, v in by_position.items() if v in written}
    matching = [c for c in choices if set(c[len(inputs):]) & set(by_position) == wrote]
    if len(matching) == 1:
        if matching[0] != order:
            raise OutputOrderNeeded(matching[0])
        return
    names = "; ".join(", ".join(params[i].name for i in c[len(inputs):] if i in by_position)
                      for c in choices)
    raise builder.error(f"the kernel is called with {len(inputs)} arrays whose shapes fit more "
                        f"than one choice of output parameters ({names}), and the parameters "
                        "the body writes do not single one out; pass every parameter and "
                        "alias the outputs to them with input_output_aliases",
                        cls=JtileShapeError)
