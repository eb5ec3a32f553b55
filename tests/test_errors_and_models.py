"""Parsers raise typed errors carrying their data; models read both names and unknown enums."""

from __future__ import annotations

import email.utils

import httpx
import pytest
import tracengent_api as api
from tracengent_api.errors import error_class_for, parse_retry_after

REQUEST = httpx.Request("POST", "http://platform.test/v1/authorize")


def answer(status: int, body: str = "", headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, text=body, headers=headers, request=REQUEST)


@pytest.mark.parametrize(
    ("status", "cls", "retryable"),
    [
        (400, api.ClientError, False),
        (401, api.AuthenticationError, False),
        (403, api.PermissionDeniedError, False),
        (404, api.NotFoundError, False),
        (413, api.PayloadTooLargeError, False),
        (422, api.ClientError, False),
        (429, api.RateLimitError, True),
        (500, api.ServerError, True),
        (503, api.ServerError, True),
        (302, api.ApiError, False),
    ],
)
def test_status_codes_map_to_typed_errors(
    status: int, cls: type[api.ApiError], retryable: bool
) -> None:
    with pytest.raises(cls) as caught:
        api.parse_authorize(answer(status, '{"error":"nope","reason":"not today"}'))
    assert type(caught.value) is cls
    assert caught.value.status_code == status
    assert caught.value.body == '{"error":"nope","reason":"not today"}'
    assert caught.value.reason == "not today"
    assert caught.value.retryable is retryable
    assert str(caught.value) == f"POST /v1/authorize answered {status}: not today"
    assert error_class_for(status) is cls


def test_a_429_carries_its_retry_after() -> None:
    with pytest.raises(api.RateLimitError) as caught:
        api.parse_ingest_events(answer(429, "slow down", {"Retry-After": "1"}))
    assert caught.value.retry_after == 1.0
    assert "slow down" in str(caught.value)


def test_retry_after_forms() -> None:
    now = 1_800_000_000.0
    assert parse_retry_after("2.5") == 2.5
    assert parse_retry_after(email.utils.formatdate(now + 30, usegmt=True), now=now) == 30.0
    assert parse_retry_after(email.utils.formatdate(now - 30, usegmt=True), now=now) == 0.0
    for garbage in (None, "", "soon", "-1", "nan", "Mon, 99 Foo 2026"):
        assert parse_retry_after(garbage) is None


def test_an_unreadable_2xx_is_a_decode_error_naming_the_problem() -> None:
    with pytest.raises(api.ApiDecodeError) as caught:
        api.parse_authorize(answer(200, '{"status":"allowed"}'))
    assert caught.value.status_code == 200
    assert "not a valid AuthorizeResponse" in str(caught.value)
    assert "allowed: Field required" in str(caught.value)
    with pytest.raises(api.ApiDecodeError):
        api.parse_authorize(answer(200, "<html>"))


def test_success_without_a_body() -> None:
    assert api.parse_ingest_events(answer(202)) is None
    assert api.parse_ingest_traces(answer(200)) is None


def test_unknown_enum_values_from_the_platform_are_kept_as_strings() -> None:
    known = api.parse_tool_authorize(
        answer(200, '{"allowed":false,"status":"denied","outcome":"egress_deny"}')
    )
    assert known.outcome is api.ToolOutcome.EGRESS_DENY
    unknown = api.parse_tool_authorize(
        answer(200, '{"allowed":false,"status":"quarantined","outcome":"rate_deny","extra":1}')
    )
    assert unknown.outcome == "rate_deny"
    assert unknown.status == "quarantined"
    approval = api.parse_get_approval(answer(200, '{"status":"escalated"}'))
    assert approval.status == "escalated"


def test_models_take_either_name_and_serialize_the_wire_form() -> None:
    by_alias = api.AttenuateRequest.model_validate({"grantedToAgentId": "a", "permissions": ["x"]})
    by_name = api.AttenuateRequest(granted_to_agent_id="a", permissions=["x"])
    assert by_alias == by_name
    assert api.encode_attenuate(by_name) == b'{"grantedToAgentId":"a","permissions":["x"]}'


def test_numbers_keep_their_kind_and_text_keeps_its_characters() -> None:
    money = api.Money(amount=280, currency="EUR")
    assert money.model_dump_json() == '{"amount":280,"currency":"EUR"}'
    assert (
        api.Money(amount=2.75, currency="EUR").model_dump_json()
        == '{"amount":2.75,"currency":"EUR"}'
    )
    event = api.Event(
        event_id="e", agent_id="a", type="decision", name="ça ✓", status="success", occurred_at="t"
    )
    assert "ça ✓".encode() in api.encode_ingest_events([event])


def test_token_response_defaults() -> None:
    token = api.parse_oauth_token(answer(200, '{"access_token":"a.b.c"}'))
    assert (token.token_type, token.expires_in) == ("Bearer", 900)
