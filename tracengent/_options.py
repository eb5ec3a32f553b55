"""Configuration for the Tracengent SDK.

Options are checked once, when the client is built, so a misconfigured agent fails at start-up
with a message that says which option is wrong and how to set it — not minutes later, from a
background thread, as a dropped batch. Every problem is reported at once so a deployment is
fixed in one round trip. Secrets never appear in ``repr()`` or in error messages: both end up
in logs.

This module imports only the standard library: ``import tracengent`` must stay cheap for agents
that only read their options.
"""

from __future__ import annotations

import math
import os
from dataclasses import KW_ONLY, dataclass, field, fields
from typing import Any
from urllib.parse import urlsplit

from ._errors import TracengentConfigError

# The option each environment variable feeds; also used to tell users which variable to set.
_ENV_VARS = {
    "agent_id": "TRACENGENT_AGENT_ID",
    "base_url": "TRACENGENT_URL",
    "client_id": "TRACENGENT_CLIENT_ID",
    "client_secret": "TRACENGENT_CLIENT_SECRET",
    "ingest_key": "TRACENGENT_INGEST_KEY",
    "environment": "TRACENGENT_ENVIRONMENT",
    "enforcement": "TRACENGENT_ENFORCEMENT",
}


def _env_enforcement() -> str:
    return os.environ.get(_ENV_VARS["enforcement"], "").strip()


_SECRETS = frozenset({"client_secret", "ingest_key"})

_POSITIVE_INTS = (
    "max_batch_size",
    "flush_interval_ms",
    "queue_capacity",
    "gzip_threshold_bytes",
    "max_event_bytes",
)

_POSITIVE_SECONDS = (
    "request_timeout_s",
    "authorize_timeout_s",
    "approval_timeout_s",
    "approval_poll_interval_s",
    "max_retry_after_s",
    "backoff_base_s",
    "backoff_max_s",
    "shutdown_timeout_s",
)


LOCAL = "local"
"""`base_url` (or TRACENGENT_URL) that selects the embedded platform instead of a server."""
DEMO_CREDENTIALS = {"client_id": "key_demo", "client_secret": "ags_demo"}


@dataclass
class TracengentOptions:
    """SDK configuration; the client calls :meth:`validate` when it is constructed.

    Prefer per-agent client credentials (``client_id`` + ``client_secret``) over the legacy org
    ``ingest_key``: events are then attributable to one credential, which can be revoked alone.
    """

    #: Logical agent key reported with every event (e.g. ``travel-agent``). Required.
    agent_id: str = ""
    #: Base URL of the Tracengent API, e.g. ``https://api.tracengent.co``.
    base_url: str = "http://localhost:8080"
    #: Agent OAuth client id (``key_…``); with ``client_secret`` the SDK fetches and refreshes tokens.
    client_id: str | None = None
    #: Agent OAuth client secret (``ags_…``), shown once at registration.
    client_secret: str | None = field(default=None, repr=False)
    #: Legacy org ingest key (``agk_…``), used only when client credentials are not set.
    ingest_key: str | None = field(default=None, repr=False)
    #: Environment tag added to events (e.g. ``production``, ``staging``).
    environment: str = "production"
    #: Send a batch as soon as this many events are buffered; no request carries more (and a
    #: batch stops growing at 1 MiB). A request costs far more than an event: batches are large.
    max_batch_size: int = 500
    #: Send at least this often, so a quiet agent's events are not held indefinitely.
    flush_interval_ms: int = 2000
    #: Events beyond this many buffered are dropped (and counted): the agent must never block.
    queue_capacity: int = 10_000
    #: Retries after the first attempt for a transient failure (429, 5xx, transport error).
    max_retries: int = 3
    #: Gzip request bodies of at least this many bytes.
    gzip_threshold_bytes: int = 1024
    #: Tags added to every event, in addition to the environment tag.
    default_tags: list[str] = field(default_factory=list)
    #: When a governed tool call cannot reach the platform: ``True`` lets it through with a
    #: warning (fail open); ``False`` blocks it (fail closed).
    tool_governance_fail_open: bool = False

    # Added in 0.2: keyword-only, so they can never shift a 0.1 caller's positional arguments.
    _: KW_ONLY
    #: Per-HTTP-call timeout for telemetry; a slow platform must not stall the sender.
    request_timeout_s: float = 10.0
    #: Deadline for one governance decision; past it, ``tool_governance_fail_open`` decides.
    authorize_timeout_s: float = 5.0
    #: How long to wait for a human to answer a ``pending_approval`` decision.
    approval_timeout_s: float = 300.0
    #: How often to ask whether a pending approval has been answered.
    approval_poll_interval_s: float = 2.0
    #: Upper bound on a server's ``Retry-After``, so one bad header cannot park the sender.
    max_retry_after_s: float = 30.0
    #: First retry waits up to this long; each further retry doubles the window (full jitter).
    backoff_base_s: float = 0.5
    #: Largest backoff window, however many retries have been made.
    backoff_max_s: float = 30.0
    #: An encoded event larger than this is dropped (and counted) rather than poisoning a batch.
    max_event_bytes: int = 256 * 1024
    #: How long the flush at interpreter exit may delay the process from exiting.
    shutdown_timeout_s: float = 5.0
    #: ``"enforce"`` blocks what governance refuses; ``"shadow"`` asks and records every decision
    #: but blocks and rewrites nothing, recording what it would have done (to roll out safely).
    #: Defaults to ``TRACENGENT_ENFORCEMENT`` when that is set, so operators can flip it.
    enforcement: str = field(default_factory=lambda: _env_enforcement() or "enforce")

    @property
    def uses_client_credentials(self) -> bool:
        """Whether tokens are fetched with client credentials rather than the ingest key."""
        return _present(self.client_id) and _present(self.client_secret)

    def validate(self) -> TracengentOptions:
        """Return self, or raise :class:`TracengentConfigError` listing every problem found."""
        problems = [
            *_check_agent_id(self.agent_id),
            *_check_base_url(self.base_url),
            *_check_credentials(self),
            *_check_types(self),
        ]
        for name in _POSITIVE_INTS:
            problems += _check_positive(name, getattr(self, name), integer=True)
        for name in _POSITIVE_SECONDS:
            problems += _check_positive(name, getattr(self, name), integer=False)
        problems += _check_max_retries(self.max_retries)
        if problems:
            raise TracengentConfigError(*problems)
        return self

    @classmethod
    def from_env(cls, agent_id: str | None = None, **overrides: object) -> TracengentOptions:
        """Build options from ``TRACENGENT_*`` environment variables, then keyword overrides.

        Precedence: an explicit non-empty ``agent_id`` or override, then the environment, then
        the defaults. Empty (or all-blank) variables count as unset and values are stripped,
        since secrets mounted from files often carry a trailing newline. An unknown override
        raises instead of being set silently: a typo would otherwise be a setting that does
        nothing. Not validated here; the client validates when it is built.
        """
        known = {f.name for f in fields(cls) if f.init}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise TracengentConfigError(*(_unknown_option(name, known) for name in unknown))

        values: dict[str, Any] = {}
        for name, var in _ENV_VARS.items():
            raw = os.environ.get(var, "").strip()
            if raw:
                values[name] = raw
        if agent_id:
            values["agent_id"] = agent_id
        values.update(overrides)
        if values.get("base_url") == LOCAL and not any(
            values.get(k) for k in ("client_id", "client_secret", "ingest_key")
        ):
            values.update(DEMO_CREDENTIALS)  # the embedded platform's demo identity
        return cls(**values)

    @classmethod
    def local(cls, agent_id: str = "demo-agent", **overrides: object) -> TracengentOptions:
        """Options for the embedded local platform (`pip install "tracengent[platform]"`).

        No server and no port: the client hands its requests to an in-process platform. Without
        credentials it uses the demo identity of the built-in policy.
        """
        if not any(overrides.get(k) for k in ("client_id", "client_secret", "ingest_key")):
            overrides = {**DEMO_CREDENTIALS, **overrides}
        return cls.from_env(agent_id, base_url=LOCAL, **overrides)


def _present(value: object) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _how(name: str, example: str = "...") -> str:
    hint = f"pass TracengentOptions({name}={example})"
    return f"{hint} or set {_ENV_VARS[name]}" if name in _ENV_VARS else hint


def _wrong_type(name: str, expected: str, value: object) -> str:
    # Only the type is shown: the value may be a secret, or too large to be useful.
    return f"{name} must be {expected}, got {type(value).__name__}: {_how(name)}"


def _check_agent_id(value: object) -> list[str]:
    if value is not None and not isinstance(value, str):
        return [_wrong_type("agent_id", "a str", value)]
    if not _present(value):
        return [f"agent_id is missing: {_how('agent_id')}"]
    return []


def _check_base_url(value: object) -> list[str]:
    if not isinstance(value, str):
        return [_wrong_type("base_url", "a str", value)]
    how = _how("base_url", '"https://..."') + ' (or "local" for the embedded platform)'
    if not value.strip():
        return [f"base_url is missing: {how}"]
    if value.strip() == LOCAL:
        return []
    try:
        parts = urlsplit(value.strip())
        parts.port  # noqa: B018 - raises ValueError for a non-numeric or out-of-range port
    except ValueError:
        return [f"base_url {_safe_url(value)!r} is not a valid URL: {how}"]
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return [f"base_url {_safe_url(value)!r} is not an absolute http(s) URL: {how}"]
    if parts.query or parts.fragment:
        return [f"base_url {_safe_url(value)!r} must not have a query or fragment: {how}"]
    return []


def _safe_url(value: str) -> str:
    """The URL without any user-info, which may hold a password."""
    try:
        parts = urlsplit(value)
    except ValueError:
        parts = None
    if parts is None or "@" not in parts.netloc:
        return value
    return parts._replace(netloc="***@" + parts.netloc.rpartition("@")[2]).geturl()


def _check_credentials(o: TracengentOptions) -> list[str]:
    problems = [
        _wrong_type(name, "a str or None", getattr(o, name))
        for name in ("client_id", "client_secret", "ingest_key")
        if getattr(o, name) is not None and not isinstance(getattr(o, name), str)
    ]
    if problems:
        return problems
    # A credential read from a file often ends in a newline. It cannot travel in a header, and
    # the HTTP library's refusal would quote it: refuse it here, naming the option, not the value.
    problems = [
        f"{name} contains whitespace or control characters (a trailing newline from a file?): "
        f"strip it before passing TracengentOptions({name}=...)"
        for name in ("client_id", "client_secret", "ingest_key")
        if isinstance(getattr(o, name), str)
        and _present(getattr(o, name))
        and any(c.isspace() or not c.isprintable() for c in getattr(o, name))
    ]
    if problems:
        return problems
    has_id, has_secret = _present(o.client_id), _present(o.client_secret)
    # A half-set pair is always a mistake, even with an ingest key to fall back on: falling
    # back silently would hide that the preferred credential is not in use.
    if has_id and not has_secret:
        return [
            f"client_secret is missing while client_id is set: {_how('client_secret')}, "
            "or unset client_id to use ingest_key"
        ]
    if has_secret and not has_id:
        return [
            f"client_id is missing while client_secret is set: {_how('client_id')}, "
            "or unset client_secret to use ingest_key"
        ]
    if not has_id and not _present(o.ingest_key):
        return [
            "no credentials: pass TracengentOptions(client_id=..., client_secret=...) or set "
            "TRACENGENT_CLIENT_ID and TRACENGENT_CLIENT_SECRET (preferred); or pass "
            "TracengentOptions(ingest_key=...) or set TRACENGENT_INGEST_KEY"
        ]
    return []


def _check_types(o: TracengentOptions) -> list[str]:
    problems = []
    if not isinstance(o.environment, str):
        problems.append(_wrong_type("environment", "a str", o.environment))
    tags = o.default_tags
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        problems.append(
            "default_tags must be a list of str: pass TracengentOptions(default_tags=[...])"
        )
    if not isinstance(o.tool_governance_fail_open, bool):
        problems.append(
            _wrong_type("tool_governance_fail_open", "a bool", o.tool_governance_fail_open)
        )
    if o.enforcement not in ("enforce", "shadow"):
        problems.append(
            f"enforcement must be 'enforce' or 'shadow', got {o.enforcement!r}: pass "
            f"TracengentOptions(enforcement=...) or set {_ENV_VARS['enforcement']}"
        )
    return problems


def _check_positive(name: str, value: object, *, integer: bool) -> list[str]:
    # bool is an int subclass, but True as a batch size is a mistake, not a 1.
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or (integer and isinstance(value, float))
    ):
        return [_wrong_type(name, "an int" if integer else "a number of seconds", value)]
    if value <= 0 or (isinstance(value, float) and not math.isfinite(value)):
        unit = "" if integer else " in seconds"
        return [
            f"{name} must be a finite number > 0, got {value!r}: "
            f"pass TracengentOptions({name}=...) with a positive value{unit}"
        ]
    return []


def _check_max_retries(value: object) -> list[str]:
    if not isinstance(value, int) or isinstance(value, bool):
        return [_wrong_type("max_retries", "an int", value)]
    if value < 0:
        return [
            f"max_retries must be 0 or more, got {value}: "
            "pass TracengentOptions(max_retries=...) (0 disables retries)"
        ]
    return []


def _unknown_option(name: str, known: set[str]) -> str:
    import difflib  # only on this error path: keeps the import of the module cheap

    close = difflib.get_close_matches(name, sorted(known), n=1)
    suggestion = f"; did you mean {close[0]!r}?" if close else ""
    return f"{name!r} is not a TracengentOptions option{suggestion}"
