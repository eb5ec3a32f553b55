"""Reading a request before any handler sees it: size and gzip limits, strict JSON, wire models.

Every JSON body is first read strictly (`_wirejson`: no NaN, no infinite or out-of-range number,
no key twice, and the numbers the platform computes with in range), then parsed with the
generated wire models refusing unknown fields, so a typo is a 400 that names the field instead
of a field silently dropped. Every refusal is an `HttpError`, which the engine answers as an
`ErrorBody`; nothing here stores anything.
"""

from __future__ import annotations

import sys
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

import tracengent_api as api
from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

from . import _wirejson as wirejson

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes
    content_type: str = "application/json"


class HttpError(Exception):
    """A refusal: answered as `ErrorBody(error, reason)` with `status`."""

    def __init__(self, status: int, error: str, reason: str) -> None:
        super().__init__(reason)
        self.status, self.error, self.reason = status, error, reason


def dump(model: BaseModel) -> bytes:
    """A model as the wire carries it: camelCase aliases, absent fields omitted, compact."""
    return model.model_dump_json(by_alias=True, exclude_none=True).encode()


def error_reply(status: int, error: str, reason: str) -> Reply:
    return Reply(status, dump(api.ErrorBody(error=error, reason=reason)))


def _strict(model: type[M]) -> type[M]:
    """`model`, refusing unknown top-level fields: a typo must not be silently dropped."""
    config = ConfigDict(**{**model.model_config, "extra": "forbid"})
    strict: type[M] = type(f"Strict{model.__name__}", (model,), {"model_config": config})
    strict.model_rebuild(_types_namespace=vars(sys.modules[model.__module__]))
    return strict


_STRICT_EVENT = _strict(api.Event)
_EVENTS: TypeAdapter[list[api.Event]] = TypeAdapter(list[_STRICT_EVENT])  # type: ignore[valid-type]
TRACE_CLOSE = _strict(api.TraceClose)
AUTHORIZE = _strict(api.AuthorizeRequest)
TOOL = _strict(api.ToolAuthorizeRequest)
ATTENUATE = _strict(api.AttenuateRequest)


def _problems(error: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in error.errors()[:5]
    )


@dataclass(frozen=True)
class BodyLimits:
    """How large a body may be as sent, and once gunzipped (a small gzip can inflate to GBs)."""

    max_body: int
    max_inflated: int

    def read(self, headers: Mapping[str, str], body: bytes) -> bytes:
        """The body's bytes, gunzipped when `content-encoding` (lower-cased headers) says gzip."""
        if len(body) > self.max_body:
            raise HttpError(
                413, "payload_too_large", f"body of {len(body)} bytes > {self.max_body}"
            )
        encoding = headers.get("content-encoding", "identity").lower()
        if encoding == "identity":
            return body
        if encoding != "gzip":
            raise HttpError(
                415, "unsupported_encoding", f"Content-Encoding {encoding!r} is not gzip"
            )
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            inflated = inflater.decompress(body, self.max_inflated + 1)
        except zlib.error as error:
            raise HttpError(
                400, "bad_gzip", f"the gzip body does not decompress: {error}"
            ) from None
        if len(inflated) > self.max_inflated or inflater.unconsumed_tail:
            raise HttpError(
                413, "payload_too_large", f"decompressed body > {self.max_inflated} bytes"
            )
        return inflated


def _read_strictly(body: bytes, numbers: Sequence[wirejson.NumberRule]) -> None:
    """The strict reading every JSON body gets before its model: see `_wirejson`."""
    try:
        wirejson.check_numbers(wirejson.read_json(body), numbers)
    except wirejson.WireError as error:
        raise HttpError(400, error.kind, error.reason) from None


def parse(model: type[M], body: bytes, numbers: Sequence[wirejson.NumberRule] = ()) -> M:
    """`body` as `model` (one of the strict models above), or a 400 naming what is wrong."""
    _read_strictly(body, numbers)
    try:
        return model.model_validate_json(body)
    except ValidationError as error:
        kind = (
            "malformed_json"
            if any(e["type"] == "json_invalid" for e in error.errors())
            else "invalid_request"
        )
        raise HttpError(400, kind, _problems(error)) from None


def parse_events(body: bytes) -> list[api.Event]:
    """An ingest batch, whole or not at all: one bad event is a 400 naming it (`[3].usage...`)."""
    _read_strictly(body, wirejson.EVENT_NUMBERS)
    try:
        return _EVENTS.validate_json(body)
    except ValidationError as error:
        raise HttpError(400, "invalid_request", _problems(error)) from None
