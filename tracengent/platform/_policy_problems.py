"""What is wrong with a policy file, worded for the person who has to fix it.

Every problem names the key path it concerns (``agents[1].permissions[0]``), or for a TOML
syntax error the line, together with how to fix it. ``PolicyError`` carries them all at once:
a policy is read at start, and one that cannot be used must stop the platform there with every
problem listed, not surface later as a puzzling ``denied`` in the middle of a demo.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, TypeAlias

__all__ = [
    "Loc",
    "PolicyError",
    "Problem",
    "describe",
    "invalid_policy",
    "key_path",
    "quote",
    "syntax_error",
]

#: where a problem is: the keys and array indexes from the top of the document down to it
Loc: TypeAlias = tuple[str | int, ...]

_BARE_KEY: Final = re.compile(r"[A-Za-z0-9_-]+")


class PolicyError(ValueError):
    """A policy that cannot be used: unreadable, not TOML, or inconsistent.

    The message is meant for a person at a terminal: it names the file, then each problem on its
    own line with the key path or line it concerns and how to fix it. ``problems`` holds the
    same lines for code (one entry for a syntax or file error).
    """

    def __init__(self, message: str, *, source: str = "", problems: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.source = source
        self.problems: tuple[str, ...] = tuple(problems) or (message,)


@dataclass(frozen=True)
class Problem:
    """One problem at ``loc``, listed where ``order`` is (default: ``loc``).

    ``stage`` orders the problems of one key: 0 a value that is not even the right type, 1 one
    whose grammar is wrong, 2 a rule relating it to other keys (after the value's own).
    """

    loc: Loc
    message: str
    order: Loc | None = None
    stage: int = 2

    def line(self) -> str:
        return f"{key_path(self.loc) or '(top level)'}: {self.message}"


def invalid_policy(source: str, problems: Sequence[Problem]) -> PolicyError:
    """The error for a policy with ``problems``: a header naming the file, one line each."""
    lines = [problem.line() for problem in problems]
    count = len(lines)
    header = (
        f"{source}: the policy is invalid ({count} problem{'' if count == 1 else 's'}); "
        "fix each key below:"
    )
    return PolicyError(
        "\n".join([header, *(f"  {line}" for line in lines)]), source=source, problems=lines
    )


def syntax_error(source: str, text: str, exc: Exception) -> PolicyError:
    """One line naming the source and the line, from tomllib's "... (at line N, column M)"."""
    message = str(exc)
    match = re.search(r"\s*\(at line (\d+), column (\d+)\)\s*$", message)
    if match:
        where = f"at line {match[1]}, column {match[2]}"
        line = f"{source}: TOML syntax error {where}: {message[: match.start()]}; fix that line"
    elif message.endswith("(at end of document)"):
        reason = message.removesuffix("(at end of document)").rstrip()
        last = max(len(text.splitlines()), 1)
        where = f"at line {last}, the end of the document"
        line = f"{source}: TOML syntax error {where}: {reason}; complete that line"
    else:
        line = f"{source}: TOML syntax error: {message}"
    return PolicyError(line, source=source)


def key_path(loc: Loc) -> str:
    """``loc`` as the TOML reader writes it: ``tools.http[0].host``, odd keys quoted."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path = f"{path}[{part}]"
        else:
            name = part if _BARE_KEY.fullmatch(part) else json.dumps(part, ensure_ascii=False)
            path = f"{path}.{name}" if path else name
    return path


def quote(text: str) -> str:
    """``text`` in double quotes as TOML would write it, cut short when long."""
    return json.dumps(text if len(text) <= 60 else text[:57] + "...", ensure_ascii=False)


def describe(value: object) -> str:
    """What a TOML value is, for "expected ..., got ..." ("the integer 3", "an array")."""
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, int):
        return f"the integer {value}"
    if isinstance(value, float):
        return f"the number {value}"
    if isinstance(value, str):
        return f"the string {quote(value)}"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    return f"a {type(value).__name__} value"
