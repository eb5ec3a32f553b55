"""Options keep 0.1.0's names and defaults, and reject bad configuration with fixable messages."""

from __future__ import annotations

import dataclasses
import math
import pickle
import subprocess
import sys
from typing import Any

import pytest

from tracengent._options import TracengentConfigError, TracengentOptions

SECRET = "ags_very-secret-value"
INGEST = "agk_very-secret-key"
ENV_VARS = (
    "TRACENGENT_URL",
    "TRACENGENT_CLIENT_ID",
    "TRACENGENT_CLIENT_SECRET",
    "TRACENGENT_INGEST_KEY",
    "TRACENGENT_AGENT_ID",
    "TRACENGENT_ENVIRONMENT",
)
POSITIVE_INTS = (
    "max_batch_size",
    "flush_interval_ms",
    "queue_capacity",
    "gzip_threshold_bytes",
    "max_event_bytes",
)
POSITIVE_SECONDS = (
    "request_timeout_s",
    "authorize_timeout_s",
    "approval_timeout_s",
    "approval_poll_interval_s",
    "max_retry_after_s",
    "backoff_base_s",
    "backoff_max_s",
    "shutdown_timeout_s",
)


def valid(**changes: Any) -> TracengentOptions:
    base = TracengentOptions(agent_id="demo-agent", client_id="key_demo", client_secret=SECRET)
    return dataclasses.replace(base, **changes)


def problems_of(options: TracengentOptions) -> tuple[str, ...]:
    with pytest.raises(TracengentConfigError) as caught:
        options.validate()
    return caught.value.problems


def only_problem(options: TracengentOptions) -> str:
    problems = problems_of(options)
    assert len(problems) == 1, problems
    return problems[0]


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for var in ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    return monkeypatch


# --- shape and compatibility ------------------------------------------------------------------


def test_defaults() -> None:
    o = TracengentOptions()
    assert (o.agent_id, o.base_url, o.environment) == ("", "http://localhost:8080", "production")
    assert (o.client_id, o.client_secret, o.ingest_key) == (None, None, None)
    assert (o.max_batch_size, o.flush_interval_ms, o.queue_capacity) == (500, 2000, 10_000)
    assert (o.max_retries, o.gzip_threshold_bytes, o.default_tags) == (3, 1024, [])
    assert o.tool_governance_fail_open is False
    assert (o.request_timeout_s, o.authorize_timeout_s) == (10.0, 5.0)
    assert (o.approval_timeout_s, o.approval_poll_interval_s) == (300.0, 2.0)
    assert (o.max_retry_after_s, o.backoff_base_s, o.backoff_max_s) == (30.0, 0.5, 30.0)
    assert (o.max_event_bytes, o.shutdown_timeout_s) == (256 * 1024, 5.0)


def test_default_tags_are_not_shared_between_instances() -> None:
    a, b = TracengentOptions(), TracengentOptions()
    a.default_tags.append("x")
    assert b.default_tags == []


def test_010_positional_order_still_works_and_new_fields_are_keyword_only() -> None:
    o = TracengentOptions("agent", "https://api.example", "key_1", SECRET, None, "staging")
    assert (o.agent_id, o.base_url, o.client_id, o.environment) == (
        "agent",
        "https://api.example",
        "key_1",
        "staging",
    )
    fields_010: list[Any] = [None] * 13  # agent_id .. tool_governance_fail_open
    assert TracengentOptions(*fields_010).tool_governance_fail_open is None
    with pytest.raises(TypeError):
        TracengentOptions(*fields_010, 10.0)  # type: ignore[call-arg]


def test_secrets_are_not_in_repr() -> None:
    text = repr(valid(ingest_key=INGEST))
    assert SECRET not in text
    assert INGEST not in text
    assert "demo-agent" in text and "key_demo" in text


@pytest.mark.parametrize(
    ("client_id", "client_secret", "expected"),
    [
        ("key_1", SECRET, True),
        ("key_1", None, False),
        (None, SECRET, False),
        ("", SECRET, False),
        ("key_1", "   ", False),
        (None, None, False),
    ],
)
def test_uses_client_credentials(
    client_id: str | None, client_secret: str | None, expected: bool
) -> None:
    options = TracengentOptions(client_id=client_id, client_secret=client_secret)
    assert options.uses_client_credentials is expected


# --- validate: accepted ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        valid(),
        TracengentOptions(agent_id="a", ingest_key=INGEST),
        valid(base_url="https://api.tracengent.co/prefix/"),
        valid(base_url="http://127.0.0.1:8080"),
        valid(base_url="http://[::1]:8080"),
        valid(max_retries=0, environment="", default_tags=["team:a"]),
        valid(request_timeout_s=1, backoff_base_s=0.001),
    ],
)
def test_valid_options_return_self(options: TracengentOptions) -> None:
    assert options.validate() is options


# --- validate: each problem named, with how to fix it ------------------------------------------


@pytest.mark.parametrize("agent_id", ["", "   ", None])
def test_missing_agent_id(agent_id: str | None) -> None:
    message = only_problem(valid(agent_id=agent_id))
    assert message == (
        "agent_id is missing: pass TracengentOptions(agent_id=...) or set TRACENGENT_AGENT_ID"
    )


def test_agent_id_of_wrong_type() -> None:
    message = only_problem(valid(agent_id=42))
    assert message.startswith("agent_id must be a str, got int")
    assert "TRACENGENT_AGENT_ID" in message


def test_no_credentials_at_all() -> None:
    message = only_problem(TracengentOptions(agent_id="a"))
    for hint in ("client_id", "client_secret", "ingest_key", "TRACENGENT_INGEST_KEY"):
        assert hint in message


@pytest.mark.parametrize("with_ingest_key", [False, True])
def test_client_id_without_secret_names_the_secret(with_ingest_key: bool) -> None:
    options = valid(client_secret=None, ingest_key=INGEST if with_ingest_key else None)
    message = only_problem(options)
    assert message.startswith("client_secret is missing while client_id is set")
    assert "TRACENGENT_CLIENT_SECRET" in message


@pytest.mark.parametrize("with_ingest_key", [False, True])
def test_client_secret_without_id_names_the_id(with_ingest_key: bool) -> None:
    options = valid(client_id="  ", ingest_key=INGEST if with_ingest_key else None)
    message = only_problem(options)
    assert message.startswith("client_id is missing while client_secret is set")
    assert "TRACENGENT_CLIENT_ID" in message
    assert SECRET not in message


@pytest.mark.parametrize("name", ["client_id", "client_secret", "ingest_key"])
def test_credential_of_wrong_type_shows_type_not_value(name: str) -> None:
    message = only_problem(valid(**{name: b"ags_bytes-secret"}))
    assert message.startswith(f"{name} must be a str or None, got bytes")
    assert "bytes-secret" not in message


@pytest.mark.parametrize(
    ("url", "complaint"),
    [
        ("ftp://files.example", "is not an absolute http(s) URL"),
        ("localhost:8080", "is not an absolute http(s) URL"),
        ("/v1", "is not an absolute http(s) URL"),
        ("https://", "is not an absolute http(s) URL"),
        ("http://host:notaport", "is not a valid URL"),
        ("http://[::1", "is not a valid URL"),
        ("https://api.example/?x=1", "must not have a query or fragment"),
        ("https://api.example/#top", "must not have a query or fragment"),
    ],
)
def test_bad_base_url_is_named_with_its_value(url: str, complaint: str) -> None:
    message = only_problem(valid(base_url=url))
    assert message.startswith(f"base_url {url!r} {complaint}")
    assert "TRACENGENT_URL" in message


@pytest.mark.parametrize("url", ["", "  "])
def test_missing_base_url(url: str) -> None:
    assert only_problem(valid(base_url=url)).startswith("base_url is missing")


def test_base_url_password_is_not_repeated() -> None:
    message = only_problem(valid(base_url="ftp://user:hunter2@files.example/x"))
    assert "hunter2" not in message
    assert "ftp://***@files.example/x" in message


@pytest.mark.parametrize("name", POSITIVE_INTS + POSITIVE_SECONDS)
@pytest.mark.parametrize("bad", [0, -1])
def test_non_positive_sizes_and_durations(name: str, bad: int) -> None:
    message = only_problem(valid(**{name: bad}))
    assert message.startswith(f"{name} must be a finite number > 0, got {bad}")
    assert f"TracengentOptions({name}=...)" in message


@pytest.mark.parametrize("name", POSITIVE_SECONDS)
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_durations(name: str, bad: float) -> None:
    assert only_problem(valid(**{name: bad})).startswith(f"{name} must be a finite number > 0")


@pytest.mark.parametrize("name", POSITIVE_INTS)
@pytest.mark.parametrize("bad", ["100", 1.5, True, None])
def test_sizes_must_be_ints(name: str, bad: object) -> None:
    message = only_problem(valid(**{name: bad}))
    assert message.startswith(f"{name} must be an int, got {type(bad).__name__}")


@pytest.mark.parametrize("name", POSITIVE_SECONDS)
@pytest.mark.parametrize("bad", ["10", True, None])
def test_durations_must_be_numbers(name: str, bad: object) -> None:
    message = only_problem(valid(**{name: bad}))
    assert message.startswith(f"{name} must be a number of seconds, got {type(bad).__name__}")


def test_every_numeric_option_is_checked() -> None:
    """Guards options added later: a numeric option that accepts 0 needs a deliberate rule."""
    numeric = [
        f.name
        for f in dataclasses.fields(TracengentOptions)
        if type(f.default) in (int, float) and f.name != "max_retries"
    ]
    assert set(numeric) == set(POSITIVE_INTS + POSITIVE_SECONDS)
    for name in numeric:
        assert only_problem(valid(**{name: 0})).startswith(name)


def test_max_retries() -> None:
    assert valid(max_retries=0).validate().max_retries == 0
    message = only_problem(valid(max_retries=-1))
    assert message.startswith("max_retries must be 0 or more, got -1")
    assert only_problem(valid(max_retries=True)).startswith("max_retries must be an int")
    assert only_problem(valid(max_retries=2.0)).startswith("max_retries must be an int")


@pytest.mark.parametrize("tags", ["production", ["ok", 3], ("a", "b"), None])
def test_default_tags_must_be_a_list_of_str(tags: object) -> None:
    message = only_problem(valid(default_tags=tags))
    assert message.startswith("default_tags must be a list of str")


def test_other_wrong_types() -> None:
    assert only_problem(valid(environment=None)).startswith("environment must be a str")
    assert only_problem(valid(tool_governance_fail_open="yes")).startswith(
        "tool_governance_fail_open must be a bool"
    )


def test_every_problem_is_reported_at_once_without_secrets() -> None:
    options = TracengentOptions(
        agent_id="",
        base_url="nope",
        client_secret=SECRET,
        ingest_key=INGEST,
        max_batch_size=0,
        shutdown_timeout_s=-2.0,
    )
    with pytest.raises(TracengentConfigError) as caught:
        options.validate()
    error = caught.value
    named = [p.split(" ", 1)[0] for p in error.problems]
    assert named == ["agent_id", "base_url", "client_id", "max_batch_size", "shutdown_timeout_s"]
    text = str(error)
    assert text.startswith("5 problems with the Tracengent options:\n  - agent_id is missing")
    assert all(p in text for p in error.problems)
    assert SECRET not in text and INGEST not in text
    assert isinstance(error, ValueError)


def test_config_error_pickles_with_its_problems() -> None:
    error = TracengentConfigError("a is wrong", "b is wrong")
    copy = pickle.loads(pickle.dumps(error))
    assert copy.problems == ("a is wrong", "b is wrong")
    assert str(copy) == str(error)
    assert str(TracengentConfigError("one")) == "one"


# --- from_env ---------------------------------------------------------------------------------


def test_from_env_reads_every_variable(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("TRACENGENT_URL", "https://api.example")
    clean_env.setenv("TRACENGENT_CLIENT_ID", "key_env")
    clean_env.setenv("TRACENGENT_CLIENT_SECRET", SECRET + "\n")
    clean_env.setenv("TRACENGENT_INGEST_KEY", INGEST)
    clean_env.setenv("TRACENGENT_AGENT_ID", "env-agent")
    clean_env.setenv("TRACENGENT_ENVIRONMENT", "staging")
    o = TracengentOptions.from_env()
    assert (o.base_url, o.client_id, o.client_secret, o.ingest_key) == (
        "https://api.example",
        "key_env",
        SECRET,
        INGEST,
    )
    assert (o.agent_id, o.environment) == ("env-agent", "staging")
    assert o.validate() is o


def test_from_env_empty_values_count_as_unset(clean_env: pytest.MonkeyPatch) -> None:
    for var in ENV_VARS:
        clean_env.setenv(var, " ")
    assert TracengentOptions.from_env() == TracengentOptions()


def test_from_env_precedence(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("TRACENGENT_AGENT_ID", "env-agent")
    clean_env.setenv("TRACENGENT_ENVIRONMENT", "staging")
    clean_env.setenv("TRACENGENT_CLIENT_ID", "key_env")
    o = TracengentOptions.from_env("explicit-agent", environment="dev", client_id=None)
    assert (o.agent_id, o.environment, o.client_id) == ("explicit-agent", "dev", None)
    assert TracengentOptions.from_env("").agent_id == "env-agent"


def test_from_env_accepts_new_options_as_overrides(clean_env: pytest.MonkeyPatch) -> None:
    o = TracengentOptions.from_env("a", request_timeout_s=2.5, default_tags=["x"])
    assert (o.request_timeout_s, o.default_tags) == (2.5, ["x"])


def test_from_env_rejects_unknown_overrides(clean_env: pytest.MonkeyPatch) -> None:
    with pytest.raises(TracengentConfigError) as caught:
        TracengentOptions.from_env("a", max_batchsize=5, zzz=1)
    assert caught.value.problems == (
        "'max_batchsize' is not a TracengentOptions option; did you mean 'max_batch_size'?",
        "'zzz' is not a TracengentOptions option",
    )


def test_from_env_does_not_validate(clean_env: pytest.MonkeyPatch) -> None:
    o = TracengentOptions.from_env()
    assert o.agent_id == ""
    with pytest.raises(TracengentConfigError):
        o.validate()


# --- import cost ------------------------------------------------------------------------------


def test_module_imports_without_httpx_or_pydantic() -> None:
    probe = (
        "import sys\n"
        "from tracengent._options import TracengentOptions\n"
        "TracengentOptions(agent_id='a', ingest_key='k').validate()\n"
        "print(sorted(m for m in ('httpx', 'pydantic') if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
