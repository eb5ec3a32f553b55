"""The one scrubber every text leaving the SDK goes through: no secret in a reason, an
exception, a log record or an event.

Texts the SDK writes are built without secrets, but some carry what others wrote: a platform
(or a proxy in front of it) that echoes the request into its error page, an HTTP library that
quotes an illegal header value, a tool server's error. So each client has a `Scrubber` that
knows its own secrets (client secret, ingest key, the access and delegated tokens it used) and
replaces them, in every spelling they travel in (raw, URL-encoded, JSON- or repr-escaped), and
also anything shaped like a credential whoever it belongs to: `Bearer …`, JWTs, `client_secret=…`
form fields, `agk_`/`ags_` keys and the common vendor key formats.

Log records of the ``tracengent`` logger are scrubbed by a filter installed on it, with the
secrets of every live client, so a message that slipped through unscrubbed is still caught.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import weakref
from collections.abc import Callable, Iterable
from urllib.parse import quote, quote_plus

from ._credentials import JWT, KEY_FORMATS

REDACTED = "***"
_MIN_SECRET = 4  # shorter "secrets" (test values like "x") would shred ordinary words

# Credential-shaped text, whoever it belongs to. Each pattern keeps what says what it was
# (the scheme, the field name) and replaces only the value.
_SHAPES: tuple[tuple[re.Pattern[str], str], ...] = (
    # Authorization schemes: "Bearer <token>", "Basic <base64>"
    (re.compile(r"(?i)\b(bearer|basic)(\s+)[A-Za-z0-9._~+/=\-]{6,}"), rf"\1\2{REDACTED}"),
    # a JWT anywhere (access tokens, delegated tokens), with the rest of its parts
    (re.compile(JWT.pattern + r"[A-Za-z0-9_\-]*"), REDACTED),
    # name=value / "name": "value" / name: value for credential-ish names
    (
        re.compile(
            r"(?i)\b((?:client_secret|secret|password|passwd|access_token|refresh_token|id_token"
            r"|auth_token|api[_-]?key|apikey|ingest[_-]?key|x-api-key|x-ingest-key|x-auth-token"
            r"|private[_-]token|session[_-]?id|set-cookie|cookie|authorization)[\"']?"
            r"\s*[:=]\s*[\"']?)(?!\*\*\*)([^\s\"'&,;}\]]+)"
        ),
        rf"\1{REDACTED}",
    ),
    # Tracengent keys and the vendor key formats the credential rule knows
    (KEY_FORMATS, REDACTED),
)


def _spellings(secret: str) -> set[str]:
    """How a secret may appear in someone else's text."""
    forms = {
        secret,
        quote(secret, safe=""),
        quote_plus(secret),
        json.dumps(secret)[1:-1],
        repr(secret)[1:-1],
    }
    return {form for form in forms if len(form) >= _MIN_SECRET}


def scrub_shapes(text: str) -> str:
    """`text` without anything shaped like a credential (no known secrets needed)."""
    for pattern, replacement in _SHAPES:
        text = pattern.sub(replacement, text)
    return text


class Scrubber:
    """One client's secrets, and the function that keeps them out of any text.

    `sources` are read at each use, so a token fetched or rotated later is known without the
    token provider having to report it; `add` remembers a secret for the client's lifetime
    (delegated tokens, credentials a request carried).
    """

    def __init__(self, sources: Callable[[], Iterable[str | None]] = tuple) -> None:
        self._sources = sources
        self._lock = threading.Lock()
        self._added: set[str] = set()
        _LIVE.add(self)

    def add(self, secret: object) -> None:
        """Remember `secret` (ignored unless it is a non-trivial string)."""
        if isinstance(secret, str) and len(secret.strip()) >= _MIN_SECRET:
            with self._lock:
                self._added.add(secret)
                self._added.add(secret.strip())

    def secrets(self) -> set[str]:
        try:
            found = {s for s in self._sources() if isinstance(s, str)}
        except Exception:  # noqa: BLE001 - a source that fails must not stop scrubbing
            found = set()
        with self._lock:
            found |= self._added
        return {s for s in found if len(s) >= _MIN_SECRET}

    def text(self, value: object, also: Iterable[str] = ()) -> str:
        """`value` as text with this client's secrets (and `also`) and credential shapes removed.

        Never raises: a text that cannot be read is replaced as a whole.
        """
        try:
            text = value if isinstance(value, str) else str(value)
            if not text:
                return text
            return scrub_shapes(_replace(text, self.secrets() | set(also)))
        except Exception:  # noqa: BLE001 - an unprintable value says nothing at all
            return f"<{type(value).__name__}: unreadable text>"


def _replace(text: str, secrets: Iterable[str]) -> str:
    forms = {form for secret in secrets for form in _spellings(secret)}
    for form in sorted(forms, key=len, reverse=True):  # a longer spelling before its prefixes
        if form in text:
            text = text.replace(form, REDACTED)
    return text


_LIVE: weakref.WeakSet[Scrubber] = weakref.WeakSet()


def scrub_everywhere(text: str) -> str:
    """`text` without the secrets of any live client, nor credential shapes."""
    known: set[str] = set()
    for scrubber in list(_LIVE):
        known |= scrubber.secrets()
    return scrub_shapes(_replace(text, known))


class SecretFilter(logging.Filter):
    """Scrubs every record of the ``tracengent`` logger: message, arguments and traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
            if record.exc_info and not record.exc_text:
                record.exc_text = logging.Formatter().formatException(record.exc_info)
            record.msg, record.args = scrub_everywhere(message), ()
            if record.exc_text:
                record.exc_text = scrub_everywhere(record.exc_text)
                record.exc_info = None  # handlers print exc_text, never the raw exception
            if record.stack_info:
                record.stack_info = scrub_everywhere(record.stack_info)
        except Exception:  # noqa: BLE001 - a record that cannot be read is not logged
            return False
        return True


def install_log_filter(logger: logging.Logger) -> None:
    """Once per logger: every record it emits is scrubbed before any handler sees it."""
    if not any(isinstance(f, SecretFilter) for f in logger.filters):
        logger.addFilter(SecretFilter())
