"""A policy's problems from pydantic's errors: in the policy's words, in the order of the file.

Pydantic names each bad value by its ``loc``; the words come from the check that raised it
(``_policy_values``), except where they name the key path (a table or an array of tables of the
wrong shape) or the keys a table allows (an unknown key), which only the location tells. The
problems are listed table by table, each table's unknown keys first and then its keys in the
order they are checked in (``Table.check_order``), whatever order pydantic met them in.
"""

from __future__ import annotations

import difflib
from typing import Any, get_args

from pydantic_core import ErrorDetails

from ._policy_problems import Loc, Problem, key_path
from ._policy_schema import PolicyDocument, Table, ToolsTable
from ._policy_values import SHAPE_ERROR, VALUE_ERROR

__all__ = ["listing_order", "problem_of"]


def problem_of(error: ErrorDetails) -> Problem:
    """The problem pydantic's ``error`` is."""
    loc: Loc = tuple(error["loc"])
    ctx = error.get("ctx") or {}
    if error["type"] == VALUE_ERROR:
        return Problem(loc, str(ctx["message"]), stage=int(ctx["stage"]))
    if error["type"] == SHAPE_ERROR:
        message = _shape_message(loc, str(ctx["shape"]), str(ctx["got"]))
        if loc and isinstance(loc[-1], int):  # an array's non-table entries: before its tables
            return Problem(loc, message, order=loc[:-1], stage=0)
        return Problem(loc, message, stage=0)
    if error["type"] == "extra_forbidden":
        return Problem(loc, _unknown_key_message(loc), stage=0)
    # Every check raises one of those; should pydantic raise another, its words are kept.
    return Problem(loc, error["msg"], stage=0)  # pragma: no cover


def _shape_message(loc: Loc, shape: str, got: str) -> str:
    where = key_path(loc)
    if shape == "array written as a table":
        return f"expected an array of tables: write [[{where}]], not [{where}]"
    if shape == "array of tables":
        return f"expected an array of tables ([[{where}]]), got {got}"
    if loc and isinstance(loc[-1], int):  # an entry of an array of tables
        return f"expected a table ([[{key_path(loc[:-1])}]]), got {got}"
    return f"expected a table ([{where}]), got {got}"


def _unknown_key_message(loc: Loc) -> str:
    key = str(loc[-1])
    table = _table_at(loc[:-1]) or PolicyDocument
    allowed = tuple(table.model_fields)
    guess = difflib.get_close_matches(key, allowed, n=1)
    hint = f" (did you mean {guess[0]!r}?)" if guess else ""
    if table is ToolsTable:
        return (
            f"unknown transport{hint}; bindings go under [[tools.http]], [[tools.mcp]] "
            "or [[tools.function]]"
        )
    where = f"in {key_path(loc[:-1])}" if loc[:-1] else "at the top level"
    return f"unknown key{hint}; the keys allowed {where} are: {', '.join(allowed)}"


def _table_at(loc: Loc) -> type[Table] | None:
    """The model of the table at ``loc``; None below a key that holds no tables."""
    table: type[Table] | None = PolicyDocument
    for part in loc:
        if table is None:
            return None
        if isinstance(part, str):
            field = table.model_fields.get(part)
            table = None if field is None else _table_in(field.annotation)
    return table


def _table_in(annotation: Any) -> type[Table] | None:
    """The table model inside a key's type (``tuple[AgentTable | None, ...]``: AgentTable)."""
    if isinstance(annotation, type) and issubclass(annotation, Table):
        return annotation
    return next(
        (found for arg in get_args(annotation) if (found := _table_in(arg)) is not None), None
    )


def listing_order(problem: Problem) -> tuple[tuple[int, ...], ...]:
    """Where ``problem`` is listed: down the tables, each table's unknown keys first, then its
    keys in check order; at one key, by ``stage``."""
    steps: list[tuple[int, ...]] = []
    table: type[Table] | None = PolicyDocument
    for part in problem.order or problem.loc:
        if isinstance(part, int):
            # An array of strings lists the entries that are no string before the others.
            steps.append((part,) if table is not None else (problem.stage, part))
        elif table is None:
            steps.append(())  # inside a mapping such as fx_rates: as the check met them
        else:
            order = table.keys_in_check_order()
            steps.append((1, order.index(part)) if part in order else (0,))
            field = table.model_fields.get(part)
            table = None if field is None else _table_in(field.annotation)
    steps.append((-1, problem.stage))  # the key's own problems before its parts'
    return tuple(steps)
