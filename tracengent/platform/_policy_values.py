"""What each key of a policy file accepts: its type, its grammar, and the words for a bad value.

Each key's type is an ``Annotated`` alias that the tables of ``_policy_schema`` declare their keys
with. A validator here rejects a bad value with a message for the person fixing the file (what
was wrong and what to write instead), never a pydantic default, and returns the value in the form
the platform matches with (a currency code upper-case, a host pattern canonical, a path glob
without empty segments). A message that names the key path (the shape of a table or an array of
tables) is raised as ``SHAPE_ERROR`` and worded by ``_policy_load``, which knows the path.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Annotated, Any, Final, Literal

from pydantic import PlainValidator, ValidationError, ValidationInfo
from pydantic_core import InitErrorDetails, PydanticCustomError

from .._grammar.paths import parse_path
from ._policy_match import clean_segments, normalize_host_pattern
from ._policy_problems import describe, quote

__all__ = [
    "SHAPE_ERROR",
    "VALUE_ERROR",
    "AllowOrDeny",
    "AllowedHost",
    "Amount",
    "BoundHost",
    "Credential",
    "CurrencyCode",
    "ExactPermission",
    "FieldPath",
    "Flag",
    "FxRates",
    "Method",
    "OneField",
    "PathGlob",
    "PermissionPattern",
    "PositiveNumber",
    "Strategy",
    "Text",
    "TokenCount",
    "WholeSeconds",
    "agent_tables",
    "array_of_strings",
    "array_of_tables",
    "not_a_table",
]

#: the error types raised here: a complete message, or a shape whose message names the key path
VALUE_ERROR: Final = "policy_value"
SHAPE_ERROR: Final = "policy_shape"

_HOST_HELP: Final = (
    'use a host name ("api.example.com"), "*.example.com" for its subdomains, '
    "or an IP address — no scheme, port or path"
)
_PATTERN_HELP: Final = (
    'use an exact name ("flights:book"), a namespace ("flights:*") or "*" for everything'
)
_CURRENCY: Final = re.compile(r"[A-Za-z]{3}")
_CREDENTIAL: Final = re.compile(r"[!-~]+")  # visible ASCII: it travels in a header or a form field
_METHOD: Final = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # an HTTP token (RFC 9110)


def _problem(message: str, *, stage: int = 1) -> PydanticCustomError:
    """A bad value; ``stage`` 0 when it is not even a (non-empty) string, 1 for its grammar:
    in an array of strings, the entries of the first kind are listed before the second."""
    # The message travels in the context, so braces in a quoted value are never a placeholder.
    return PydanticCustomError(VALUE_ERROR, "{message}", {"message": message, "stage": stage})


def _shape(shape: str, value: object) -> PydanticCustomError:
    """A value of the wrong shape; the message names the key path, so the reader words it."""
    return PydanticCustomError(SHAPE_ERROR, "{shape}", {"shape": shape, "got": describe(value)})


def not_a_table(value: object) -> PydanticCustomError:
    """The problem of a value where a table belongs."""
    return _shape("table", value)


# --- one value ------------------------------------------------------------------------------


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise _problem(f"expected a string, got {describe(value)}", stage=0)
    if not value.strip():
        raise _problem("must not be empty", stage=0)
    return value


def _number(value: Any, *, positive: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _problem(f"expected a number, got {describe(value)}")
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise _problem(f"must be a finite number, got {describe(value)}")
    if positive and number <= 0:
        raise _problem(f"must be greater than 0, got {describe(value)}")
    if number < 0:
        raise _problem(f"must not be negative, got {describe(value)}")
    return number


def _integer(minimum: int) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _problem(f"expected a whole number, got {describe(value)}")
        if value < minimum:
            raise _problem(f"must be at least {minimum}, got {describe(value)}")
        return value

    return check


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise _problem(f"expected true or false, got {describe(value)}")
    return value


def _allow_or_deny(value: Any) -> Literal["allow", "deny"]:
    text = _text(value)
    clean = text.strip().lower()
    if clean == "allow":
        return "allow"
    if clean == "deny":
        return "deny"
    raise _problem(f'must be "allow" or "deny", got {describe(text)}')


def _currency_code(value: Any) -> str:
    code = _text(value)
    if not _CURRENCY.fullmatch(code.strip()):
        raise _problem(
            f'{quote(code)} is not a 3-letter currency code; use one like "EUR" or "USD"'
        )
    return code.strip().upper()


def _credential(value: Any) -> str:
    text = _text(value)
    if not _CREDENTIAL.fullmatch(text):
        # The value is deliberately not echoed: it is (or sits next to) a secret.
        raise _problem(
            "must be printable ASCII without spaces (it travels in an HTTP header or form)"
        )
    return text


def _permission_problem(pattern: str) -> str | None:
    """Why ``pattern`` is not a permission pattern, or None when it is one."""
    if pattern == "*":
        return None
    name = pattern.removesuffix(":*")
    if not name or "*" in name or any(char.isspace() for char in pattern):
        return f"{quote(pattern)} is not a permission pattern; {_PATTERN_HELP}"
    return None


def _permission_pattern(value: Any) -> str:
    pattern = _text(value)
    problem = _permission_problem(pattern)
    if problem is not None:
        raise _problem(problem)
    return pattern


def _exact_permission(value: Any) -> str:
    permission = _permission_pattern(value)
    if "*" in permission:
        raise _problem(
            f"a binding needs one exact permission, not the pattern {quote(permission)}; "
            'name the action, e.g. "payments:refund"'
        )
    return permission


def _allowed_host(value: Any) -> str:
    pattern = _text(value)
    clean = normalize_host_pattern(pattern)
    if clean is None:
        raise _problem(f"{quote(pattern)} is not a host pattern; {_HOST_HELP}")
    return clean


def _bound_host(value: Any) -> str:
    text = _text(value)
    clean = normalize_host_pattern(text)
    if clean is None:
        raise _problem(f"{quote(text)} is not a host; {_HOST_HELP}")
    return clean


def _method(value: Any) -> str:
    text = _text(value)
    if not _METHOD.fullmatch(text.strip()):
        raise _problem(f"{quote(text)} is not an HTTP method")
    return text.strip().upper()


def _path_glob(value: Any) -> str:
    pattern = _text(value)
    if not pattern.startswith("/"):
        raise _problem(f'{quote(pattern)} must start with "/", e.g. "/v1/refunds"')
    if any(char.isspace() for char in pattern) or "?" in pattern or "#" in pattern:
        raise _problem(
            f"{quote(pattern)} is not a path pattern: no spaces, query or fragment; "
            'use "*" for one segment and "**" for any number'
        )
    if any(segment in (".", "..") for segment in pattern.split("/")):
        raise _problem(f'{quote(pattern)} has a "." or ".." segment; write the path it means')
    return clean_segments(pattern)


def _field_path(*, single: bool) -> Callable[[Any], str]:
    """A redaction-style path ("$.card"); one field only when ``single``."""

    def check(value: Any) -> str:
        path = _text(value)
        segments = parse_path(path)
        if segments is None:
            raise _problem(
                f'{quote(path)} is not a field path; write it like "$.card", '
                '"$.customer.email" or "$.items[0].pan"'
            )
        if single and not all(isinstance(segment, (str, int)) for segment in segments):
            raise _problem(f"{quote(path)} must name one field; a wildcard selects several")
        return path

    return check


def _strategy(value: Any) -> str:
    text = _text(value)
    strategy = text.strip().lower()
    if strategy not in ("remove", "mask"):
        raise _problem(f'must be "remove" or "mask", got {describe(text)}')
    return strategy


def _fx_rates(value: Any, info: ValidationInfo) -> dict[str, float]:
    """Rates by currency code; the policy currency (validated just before) is always 1."""
    if not isinstance(value, dict):
        raise not_a_table(value)
    currency = info.data.get("currency")
    rates: dict[str, float] = {}
    errors: list[InitErrorDetails] = []
    for key, item in value.items():
        try:
            if not _CURRENCY.fullmatch(key.strip()):
                raise _problem(f"{quote(key)} is not a 3-letter currency code; use one like USD")
            rate = _number(item, positive=True)
            code = key.strip().upper()
            if code in rates:
                raise _problem(f"{code} has a rate already (codes ignore case); keep one")
            if code == currency and rate != 1:
                raise _problem(f"{code} is the policy currency, always 1; remove this rate")
        except PydanticCustomError as error:
            errors.append(InitErrorDetails(type=error, loc=(key,), input=item))
            continue
        if code != currency:
            rates[code] = rate
    if errors:
        raise ValidationError.from_exception_data("fx_rates", errors)
    return rates


# --- containers -----------------------------------------------------------------------------
# Run before pydantic reads the container, so its shape is worded like every other problem.


def array_of_strings(value: Any) -> Any:
    """An array, of strings its entries' own type checks."""
    if not isinstance(value, list):
        raise _problem(f'expected an array of strings (["…"]), got {describe(value)}')
    return value


def array_of_tables(value: Any) -> Any:
    """An array of tables, ``[[key]]``; a single ``[key]`` table is the usual mistake."""
    if isinstance(value, dict):
        raise _shape("array written as a table", value)
    if not isinstance(value, list):
        raise _shape("array of tables", value)
    return value


def agent_tables(value: Any) -> Any:
    """The agents, of which there must be at least one, whatever else is wrong with them."""
    errors: list[InitErrorDetails] = []
    try:
        if value != ():  # the default, validated too: the key is missing
            array_of_tables(value)
    except PydanticCustomError as error:
        errors.append(InitErrorDetails(type=error, loc=(), input=value))
    if not value:
        no_agent = _problem("no agent declared; add at least one [[agents]] table")
        errors.append(InitErrorDetails(type=no_agent, loc=(), input=value))
    if errors:
        raise ValidationError.from_exception_data("agents", errors)
    return value


def _positive(value: Any) -> float:
    return _number(value, positive=True)


def _non_negative(value: Any) -> float:
    return _number(value, positive=False)


Text = Annotated[str, PlainValidator(_text)]
Flag = Annotated[bool, PlainValidator(_boolean)]
PositiveNumber = Annotated[float, PlainValidator(_positive)]
#: an amount of money, in the policy currency
Amount = Annotated[float, PlainValidator(_non_negative)]
AllowOrDeny = Annotated[Literal["allow", "deny"], PlainValidator(_allow_or_deny)]
CurrencyCode = Annotated[str, PlainValidator(_currency_code)]
FxRates = Annotated[dict[str, float], PlainValidator(_fx_rates)]
Credential = Annotated[str, PlainValidator(_credential)]
PermissionPattern = Annotated[str, PlainValidator(_permission_pattern)]
ExactPermission = Annotated[str, PlainValidator(_exact_permission)]
#: an entry of egress_allowlist
AllowedHost = Annotated[str, PlainValidator(_allowed_host)]
#: the host of an HTTP binding
BoundHost = Annotated[str, PlainValidator(_bound_host)]
Method = Annotated[str, PlainValidator(_method)]
PathGlob = Annotated[str, PlainValidator(_path_glob)]
FieldPath = Annotated[str, PlainValidator(_field_path(single=False))]
OneField = Annotated[str, PlainValidator(_field_path(single=True))]
Strategy = Annotated[str, PlainValidator(_strategy)]

#: whole seconds, at least 1
WholeSeconds = Annotated[int, PlainValidator(_integer(1))]
#: a whole number of tokens, at least 0
TokenCount = Annotated[int, PlainValidator(_integer(0))]
