"""A request body as the egress gate reads it: the value the platform decides on, and the bytes
to forward once the decision's redactions are applied, in the format the body came in.

The gate decides on exactly what leaves, so a body is either read completely and without
ambiguity, or it is *unreadable* and says why (`Body.problem`); the gate then refuses to send it
to a bound endpoint (one with a permission or redactions to apply). Read:

- JSON, by its media type (``application/json``, ``*/*+json``) or, under any other type or none,
  when the bytes parse as a JSON object or array; in UTF-8 (with or without a BOM), UTF-16 or
  UTF-32 (RFC 8259 section 8.1; `json.detect_encoding`). A ``charset`` parameter must agree with
  the bytes. Unreadable: non-finite numbers (``NaN``, ``Infinity``, ``1e400``: not JSON), integers
  beyond a double's range, duplicate keys in any object (also keys equal once case-folded, which
  case-insensitive decoders such as Go's merge), lone surrogates, NUL in a key.
- Form encoding (``application/x-www-form-urlencoded``, or a body without a media type that is
  not JSON), read by `tracengent._form`.
- Nothing else: multipart, binary, a ``Content-Encoding`` (compressed), an unknown charset, a
  body over `MAX_BODY_BYTES`.

When no redaction changes the value, the body's own bytes are forwarded (they mean exactly the
value decided on: nothing ambiguous was accepted); otherwise the redacted value, re-encoded in
the body's format and character encoding (form stays form, UTF-16 stays UTF-16).
"""

from __future__ import annotations

import codecs
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from ._form import FormError, Tree, encode_form, parse_form, platform_view, redact_form
from ._redaction import Redaction, apply_redactions

__all__ = ["MAX_BODY_BYTES", "Body", "read_body", "redacted_bytes"]

#: The largest body the gate reads (and sends to the platform); kept well under the platform's
#: request limit (1 MiB on the local platform) so a large body cannot make the decision fail.
MAX_BODY_BYTES: Final = 256 * 1024

_FORM: Final = "application/x-www-form-urlencoded"
_BOMS: Final = (  # UTF-32 before UTF-16: FF FE 00 00 starts with FF FE
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
_CHARSETS: Final = {  # charset parameter -> the codecs it may name
    "utf-8": ("utf-8",),
    "utf8": ("utf-8",),
    "us-ascii": ("ascii",),
    "ascii": ("ascii",),
    "utf-16": ("utf-16-le", "utf-16-be"),
    "utf-16le": ("utf-16-le",),
    "utf-16be": ("utf-16-be",),
    "utf-32": ("utf-32-le", "utf-32-be"),
    "utf-32le": ("utf-32-le",),
    "utf-32be": ("utf-32-be",),
}
_MAX_INT_DIGITS: Final = 308  # 10**308 is still a finite double


@dataclass(frozen=True)
class Body:
    """What the gate read of a request body."""

    #: the media type, lowercased, without parameters ("" when none was given)
    media: str
    #: the value the platform decides on (None: no body, or an unreadable one)
    view: Any = None
    #: why the body cannot be read, or None when it was
    problem: str | None = None
    #: "json" | "form" | "" (empty or unreadable)
    kind: str = ""
    _tree: Tree | None = field(default=None, repr=False)  # a form's strings
    _text: str = field(default="", repr=False)  # a JSON body's text
    _codec: tuple[bytes, str] = field(default=(b"", "utf-8"), repr=False)  # (BOM, codec)

    @property
    def what(self) -> str:
        """How a reason names this body: its media type, or that it had none."""
        return self.media or "without a Content-Type"

    @property
    def top_keys(self) -> frozenset[str]:
        """The body's top-level keys, case-folded (for conflicts with the query)."""
        view = self.view
        return frozenset(k.casefold() for k in view) if isinstance(view, dict) else frozenset()


def read_body(content: bytes | None, content_type: str, content_encoding: str = "") -> Body:
    """Read a request body; `content` None means it was larger than `MAX_BODY_BYTES`."""
    media, params = _media_type(content_type)
    if content is not None and not content:
        return Body(media)
    if content is None or len(content) > MAX_BODY_BYTES:
        return Body(media, problem=f"it is larger than {MAX_BODY_BYTES} bytes")
    encoding = content_encoding.strip().lower()
    if encoding not in ("", "identity"):
        return Body(media, problem=f"it is compressed (Content-Encoding: {encoding[:40]})")
    if params is None:
        return Body(media, problem="its Content-Type has a malformed or repeated parameter")
    charset = params.get("charset")
    if media.startswith("multipart/"):
        return Body(media, problem="a multipart body is not read")
    if media == _FORM:
        return _read_form(content, media, charset)
    is_json_type = media == "application/json" or media.endswith("+json")
    body, syntax_error = _read_json(content, media, charset, any_value=is_json_type)
    if body is not None:
        return body
    if not media:
        form = _read_form(content, media, charset)
        if form.problem is None:
            return form
    if is_json_type:
        return Body(media, problem=f"it is not JSON ({syntax_error})")
    if not media:
        return Body(media, problem="it is neither JSON nor a form")
    return Body(media, problem="only JSON and form bodies are read")


def redacted_bytes(body: Body, rules: Sequence[Redaction]) -> bytes | None:
    """The body's bytes with `rules` applied, or None when they change nothing."""
    if not rules:
        return None
    if body.kind == "form" and body._tree is not None:
        redacted = redact_form(body._tree, rules)
        return None if redacted is None else encode_form(redacted).encode("ascii")
    if body.kind == "json":
        text = apply_redactions(body._text, rules)
        if text == body._text:
            return None
        bom, codec = body._codec
        return bom + text.encode(codec)
    return None


# --- reading ------------------------------------------------------------------------------


class _Refused(Exception):
    """JSON that parses, but not into one value every reader agrees on."""


def _media_type(content_type: str) -> tuple[str, dict[str, str] | None]:
    media, *rest = content_type.split(";")
    params: dict[str, str] | None = {}
    for item in rest:
        name, equals, value = item.partition("=")
        name = name.strip().lower()
        if not name and not equals:
            continue
        if not name or not equals or params is None or name in params:
            params = None
            continue
        params[name] = value.strip().strip('"').strip().lower()
    return media.strip().lower(), params


def _read_form(content: bytes, media: str, charset: str | None) -> Body:
    if charset not in (None, "utf-8", "utf8", "us-ascii", "ascii"):
        return Body(media, problem=f"charset {charset[:40]!r} is not read for a form")
    try:
        tree = parse_form(content.decode("ascii"))
    except UnicodeDecodeError:
        return Body(media, problem="a form holds a non-ASCII byte")
    except FormError as error:
        return Body(media, problem=f"the form cannot be read: {error}")
    return Body(media, view=platform_view(tree), kind="form", _tree=tree)


def _read_json(
    content: bytes, media: str, charset: str | None, *, any_value: bool
) -> tuple[Body | None, str]:
    """(the body read as JSON, or None and why it is not JSON)."""
    bom, codec = _detect(content)
    try:
        text = content[len(bom) :].decode(codec)
    except UnicodeDecodeError:
        return None, f"not valid {codec.upper()}"
    try:
        value = json.loads(
            text,
            object_pairs_hook=_object,
            parse_constant=_constant,
            parse_float=_float,
            parse_int=_int,
        )
        encoded = json.dumps(value, ensure_ascii=False).encode("utf-8")
    except _Refused as refused:
        return Body(media, problem=str(refused)), ""
    except RecursionError:
        return Body(media, problem="it is nested too deeply"), ""
    except UnicodeEncodeError:
        return Body(media, problem="it holds a lone surrogate (\\ud800-\\udfff)"), ""
    except ValueError as error:
        return None, str(error)[:80]
    if not any_value and not isinstance(value, (dict, list)):
        return None, "not a JSON object or array"
    if charset is not None and not _charset_agrees(charset, codec, bom, content):
        return Body(media, problem=_charset_problem(charset, codec)), ""
    if len(encoded) > MAX_BODY_BYTES:
        return Body(media, problem=f"it is larger than {MAX_BODY_BYTES} bytes as JSON"), ""
    body = Body(media, view=value, kind="json", _text=text, _codec=(bom, codec))
    return body, ""


def _detect(content: bytes) -> tuple[bytes, str]:
    for bom, codec in _BOMS:
        if content.startswith(bom):
            return bom, codec
    return b"", json.detect_encoding(content)


def _charset_agrees(charset: str, codec: str, bom: bytes, content: bytes) -> bool:
    allowed = _CHARSETS.get(charset, ())
    if "ascii" in allowed:
        return codec == "utf-8" and not bom and content.isascii()
    return codec in allowed


def _charset_problem(charset: str, codec: str) -> str:
    if charset not in _CHARSETS:
        return f"charset {charset[:40]!r} is not one the gate reads"
    return f"its bytes are {codec.upper()}, not the charset {charset!r} it declares"


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, str] = {}
    for key, _ in pairs:
        if "\x00" in key:
            raise _Refused(f"the key {_quoted(key)} holds a NUL character")
        folded = key.casefold()
        if folded in seen:
            other = seen[folded]
            if other == key:
                raise _Refused(f"the key {_quoted(key)} appears twice in one object")
            raise _Refused(f"the keys {_quoted(other)} and {_quoted(key)} differ only in case")
        seen[folded] = key
    return dict(pairs)


def _constant(name: str) -> Any:
    raise _Refused(f"it holds {name}, which is not a JSON number (RFC 8259)")


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _Refused(f"it holds {text[:40]}, which is not a finite number")
    return value


def _int(text: str) -> int:
    if len(text.lstrip("-")) > _MAX_INT_DIGITS:
        raise _Refused(f"it holds an integer of {len(text)} digits, beyond any finite number")
    return int(text)


def _quoted(text: str) -> str:
    return repr(text if len(text) <= 40 else text[:40] + "…")
