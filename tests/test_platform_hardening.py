"""The local platform against hostile input, over real HTTP against `tracengent dev`.

Bodies are sent as raw bytes (httpx `content=`) wherever the SDK would refuse to send them:
non-finite and out-of-range numbers, negative amounts and token counts, duplicate keys. What is
asserted is what an attacker would test: a bad number is a 400 naming its field and stores
nothing (never a 500, never a decision made on it); a limit whose input is missing or
unreadable denies; one agent cannot shadow another's event ids or close its traces; and the
path spellings servers route to one handler meet that handler's binding.
"""

from __future__ import annotations

import json
import math
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from tracengent.platform import Store, open_platform
from tracengent.platform._keys import SigningKeys
from tracengent.platform._store import Grant

from ._served import Served, served_platform

pytestmark = pytest.mark.integration

DEMO = ("key_demo", "ags_demo")
HOTEL_KEY = "agk_hotel"  # the built-in policy's second agent, by ingest key
NUMBER_FIELDS = "NaN", "Infinity", "-Infinity", "1e400", "-1e400"
HUGE_400 = "9" * 400
HUGE_5000 = "9" * 5000


# What a ~/.tracengent made before event ids were per agent looks like: `events` with a global
# UNIQUE (event_id), one event of demo-agent's in a trace that agt_hotel "closed" first.
OLD_EVENTS = """
CREATE TABLE events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL UNIQUE, agent_id TEXT NOT NULL,
    trace_id TEXT, type TEXT, name TEXT, occurred_at TEXT, root_request TEXT,
    at REAL NOT NULL, received_at REAL NOT NULL, body TEXT NOT NULL);
CREATE INDEX events_trace ON events (trace_id);
CREATE INDEX events_agent ON events (agent_id);
CREATE TABLE trace_closes (
    trace_id TEXT PRIMARY KEY, agent_id TEXT NOT NULL, status TEXT, root_request TEXT,
    at REAL NOT NULL, received_at REAL NOT NULL, body TEXT NOT NULL);
INSERT INTO events (seq, event_id, agent_id, trace_id, type, name, at, received_at, body)
    VALUES (7, 'evt_old', 'demo-agent', 'trc_seeded', 'action', 'old', 1, 1,
    '{"eventId":"evt_old","agentId":"demo-agent","traceId":"trc_seeded","type":"action"}');
INSERT INTO trace_closes VALUES ('trc_seeded', 'agt_hotel', 'completed', NULL, 2, 2,
    '{"traceId":"trc_seeded","status":"completed"}');
PRAGMA user_version = 1;
"""


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """The built-in policy, over a data dir an older version made (so opening migrates it)."""
    data = tmp_path_factory.mktemp("hardening")
    with closing(sqlite3.connect(data / "platform.sqlite3")) as raw:
        raw.executescript(OLD_EVENTS)
    with served_platform(data) as served:
        yield served


# A policy the platform read before these fixes too (no new key), so what differs is behaviour.
CUSTOM_POLICY = """
currency = "EUR"
egress_allowlist = ["api.crm.test"]

[[agents]]
id = "root"
client_id = "key_root"
client_secret = "ags_root"
permissions = ["*"]
llm_token_budget = 100

[[agents]]
id = "burst"
client_id = "key_burst"
client_secret = "ags_burst"
permissions = ["llm:call"]
llm_token_budget = 100

[[limits]]
permission = "payments:refund"
max_amount = 100

[[tools.http]]
host = "api.crm.test"
method = "GET"
path = "/v1/customers/*"
permission = "crm:export"
"""


@pytest.fixture(scope="module")
def custom(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    data = tmp_path_factory.mktemp("hardening-custom")
    policy = data / "policy.toml"
    policy.write_text(CUSTOM_POLICY, encoding="utf-8")
    with served_platform(data, policy) as served:
        yield served


def bearer(served: Served, client_id: str = DEMO[0], secret: str = DEMO[1]) -> dict[str, str]:
    answer = httpx.post(
        served.url + "/v1/oauth/token",
        data={"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret},
    )
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


def post(served: Served, path: str, body: str | bytes, headers: dict[str, str]) -> httpx.Response:
    content = body.encode() if isinstance(body, str) else body
    return httpx.post(
        served.url + path,
        content=content,
        headers={"Content-Type": "application/json", **headers},
        timeout=30,
    )


def counts(served: Served) -> tuple[int, int, int]:
    with closing(served.store()) as store:
        return store.event_count(), len(store.decisions()), len(store.traces(10**6))


def assert_400_naming(answer: httpx.Response, field: str) -> str:
    assert answer.status_code == 400, answer.text
    body = answer.json()
    assert set(body) == {"error", "reason"}, body
    assert body["reason"].startswith(f"{field}: "), body["reason"]
    return str(body["reason"])


def event(event_id: str, **fields: Any) -> dict[str, Any]:
    wire: dict[str, Any] = {
        "eventId": event_id,
        "agentId": "demo-agent",
        "type": "action",
        "name": "x",
        "status": "success",
        "occurredAt": "2026-01-01T00:00:00+00:00",
    }
    wire.update(fields)
    return wire


def with_number(document: Any, number: str) -> str:
    """`document` as JSON with the string "<N>" replaced by the bare number text `number`."""
    return json.dumps(document).replace('"<N>"', number)


def delegated(served: Served, max_amount: float | None = 500) -> tuple[str, str]:
    """(grant id, token) of a root grant for demo-agent, minted through the same store."""
    platform = open_platform(None, served.data)
    try:
        return platform.grant(
            "demo-agent", ["hotels:*"], acting_for="u_1", max_amount=max_amount, ttl_s=600
        )
    finally:
        platform.store.close()


REFUND = {"transport": "http", "method": "POST", "host": "api.stripe.com", "path": "/v1/refunds"}

# Every endpoint that takes JSON, with the place a number goes and the field name a 400 must use.
NUMBER_PLACES = [
    ("/v1/authorize", {"permission": "payments:refund", "context": {"amount": "<N>"}}, "context.amount"),
    ("/v1/authorize", {"permission": "flights:book", "context": {"a": {"b": ["<N>"]}}}, "context.a.b[0]"),
    ("/v1/authorize", {"permission": "llm:call", "context": {"estimatedTokens": "<N>"}}, "context.estimatedTokens"),
    ("/v1/tool-authorize", {**REFUND, "body": {"amount": "<N>"}}, "body.amount"),
    ("/v1/tool-authorize", {**REFUND, "body": {"amount": 5, "items": [{"price": "<N>"}]}}, "body.items[0].price"),
    ("/v1/tool-authorize", {"transport": "mcp", "toolName": "search_flights", "body": {"max": "<N>"}}, "body.max"),
    ("/v1/ingest/events", [event("evt_n1", cost={"amount": "<N>", "currency": "EUR"})], "[0].cost.amount"),
    ("/v1/ingest/events", [event("evt_n2"), event("evt_n3", attributes={"x y": "<N>"})], '[1].attributes["x y"]'),
    ("/v1/ingest/events", [event("evt_n4", type="llm_call", usage={"tokens": "<N>"})], "[0].usage.tokens"),
    ("/v1/ingest/events", [event("evt_n5", durationMs="<N>")], "[0].durationMs"),
]  # fmt: skip
# The trace close has no number field, so any number there is refused already; what is new is
# that the reason names it as a number problem.
TRACE_PLACE = (
    "/v1/ingest/traces",
    {"traceId": "trc_n", "agentId": "demo-agent", "op": "Close", "status": "completed",
     "occurredAt": "2026-01-01T00:00:00Z", "cost": "<N>"},
    "cost",
)  # fmt: skip


# --- 1. non-finite numbers -------------------------------------------------------------------


@pytest.mark.parametrize("number", NUMBER_FIELDS)
@pytest.mark.parametrize(("path", "document", "field"), [*NUMBER_PLACES, TRACE_PLACE])
def test_a_non_finite_number_anywhere_is_a_400_naming_its_field_and_stores_nothing(
    dev: Served, path: str, document: Any, field: str, number: str
) -> None:
    before = counts(dev)
    answer = post(dev, path, with_number(document, number), bearer(dev))
    reason = assert_400_naming(answer, field)
    assert number.lstrip("-") in reason and "finite number" in reason
    assert counts(dev) == before


@pytest.mark.parametrize("number", NUMBER_FIELDS)
def test_attenuate_refuses_a_non_finite_max_amount_so_no_child_gets_an_unlimited_grant(
    dev: Served, number: str
) -> None:
    grant_id, token = delegated(dev)
    body = with_number(
        {"grantedToAgentId": "agt_hotel", "permissions": ["hotels:book"], "maxAmount": "<N>"},
        number,
    )
    answer = post(
        dev, f"/v1/delegations/{grant_id}/attenuate", body, {"Authorization": f"Bearer {token}"}
    )
    assert_400_naming(answer, "maxAmount")
    with closing(dev.store()) as store:
        assert not [g for g in _grants(store) if g.parent_id == grant_id]


def _grants(store: Store) -> list[Grant]:
    rows = store._all("SELECT grant_id FROM grants")
    return [g for row in rows if (g := store.grant(str(row[0]))) is not None]


def test_a_token_whose_max_amount_is_not_a_number_grants_nothing(dev: Served) -> None:
    """A delegated token minted while NaN was accepted: its limit is unreadable, so it is refused."""
    with closing(dev.store()) as store:
        keys = SigningKeys.from_store(store)
        store.create_grant(
            Grant("dlg_nan", None, "demo-agent", "u_1", ("u_1", "demo-agent"), ("hotels:*",),
                  None, time.time() + 600, False, time.time())
        )  # fmt: skip
    token = keys.mint(
        {"sub": "demo-agent", "grant_id": "dlg_nan", "acting_for": "u_1",
         "delegated_permissions": ["hotels:*"], "max_amount": math.nan},
        600,
    )  # fmt: skip
    assert "NaN" in jwt.utils.base64url_decode(token.split(".")[1]).decode()
    answer = post(
        dev,
        "/v1/authorize",
        json.dumps({"permission": "hotels:book", "context": {"amount": 10**6}}),
        {"Authorization": f"Bearer {token}"},
    )
    assert answer.status_code == 401 and "max_amount" in answer.json()["reason"]


# --- 2. out-of-range numbers ------------------------------------------------------------------


@pytest.mark.parametrize("digits", [HUGE_400, HUGE_5000, "-" + HUGE_400])
@pytest.mark.parametrize(("path", "document", "field"), NUMBER_PLACES)
def test_an_integer_no_double_holds_is_a_400_naming_its_field_never_a_500(
    dev: Served, path: str, document: Any, field: str, digits: str
) -> None:
    before = counts(dev)
    answer = post(dev, path, with_number(document, digits), bearer(dev))
    assert_400_naming(answer, field)
    assert counts(dev) == before


@pytest.mark.parametrize(
    ("document", "field"),
    [
        ([event("evt_big1", type="llm_call", usage={"tokens": 2**63})], "[0].usage.tokens"),
        ([event("evt_big2", type="llm_call", usage={"tokens": 10**30})], "[0].usage.tokens"),
        ([event("evt_big3", durationMs=2**53)], "[0].durationMs"),
        ({"permission": "llm:call", "context": {"estimatedTokens": 2**63}}, "context.estimatedTokens"),
    ],
)  # fmt: skip
def test_a_count_past_what_sqlite_or_a_double_holds_is_a_400_not_a_500(
    dev: Served, document: Any, field: str
) -> None:
    path = "/v1/ingest/events" if isinstance(document, list) else "/v1/authorize"
    before = counts(dev)
    assert_400_naming(post(dev, path, json.dumps(document), bearer(dev)), field)
    assert counts(dev) == before


def test_a_huge_but_finite_max_amount_is_stored_not_a_500(dev: Served) -> None:
    grant_id, token = delegated(dev, max_amount=None)
    body = {"grantedToAgentId": "agt_hotel", "permissions": ["hotels:book"], "maxAmount": 10**30}
    answer = post(
        dev,
        f"/v1/delegations/{grant_id}/attenuate",
        json.dumps(body),
        {"Authorization": f"Bearer {token}"},
    )
    assert answer.status_code == 200, answer.text
    child = answer.json()["token"]
    with closing(dev.store()) as store:
        stored = store.grant(child["jti"])
    assert stored is not None and stored.max_amount == 1e30


def test_one_bad_event_refuses_its_whole_batch_and_says_which(dev: Served) -> None:
    """Documented choice (`Platform._ingest_events`): the batch is stored whole or not at all,
    because the SDK counts a 4xx batch as dropped and a partial 202 would lose events uncounted."""
    batch = [event("evt_good_1"), event("evt_bad", durationMs=-1), event("evt_good_2")]
    before = counts(dev)
    reason = assert_400_naming(
        post(dev, "/v1/ingest/events", json.dumps(batch), bearer(dev)), "[1].durationMs"
    )
    assert "-1" in reason
    assert counts(dev) == before
    fixed = [event("evt_good_1"), event("evt_good_2")]
    answer = post(dev, "/v1/ingest/events", json.dumps(fixed), bearer(dev))
    assert answer.status_code == 202 and answer.json() == {"accepted": 2, "duplicates": 0}


def test_a_key_sent_twice_is_a_400_naming_it(dev: Served) -> None:
    body = '{"permission": "payments:refund", "context": {"amount": 1, "amount": 99999}}'
    reason = assert_400_naming(post(dev, "/v1/authorize", body, bearer(dev)), "context.amount")
    assert "more than once" in reason
    tool = '{"transport": "http", "method": "POST", "host": "api.stripe.com", "path": "/v1/refunds", "body": {"amount": 1, "amount": 5000}}'
    assert_400_naming(post(dev, "/v1/tool-authorize", tool, bearer(dev)), "body.amount")


def test_a_nesting_bomb_and_an_overlong_permission_are_400s(dev: Served) -> None:
    bomb = '{"permission": "flights:book", "context": {"x": ' + "[" * 100_000 + "]" * 100_000 + "}}"
    answer = post(dev, "/v1/authorize", bomb, bearer(dev))
    assert answer.status_code == 400 and answer.json()["error"] == "malformed_json"
    long = json.dumps({"permission": "flights:" + "x" * 300})
    assert_400_naming(post(dev, "/v1/authorize", long, bearer(dev)), "permission")


# --- 3. negative amounts and counts -----------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "document", "field"),
    [
        ("/v1/authorize", {"permission": "payments:refund", "context": {"amount": -5}}, "context.amount"),
        ("/v1/authorize", {"permission": "payments:refund", "context": {"amount": -0.01, "currency": "USD"}}, "context.amount"),
        ("/v1/authorize", {"permission": "payments:refund", "context": {"amount": "900"}}, "context.amount"),
        ("/v1/authorize", {"permission": "llm:call", "context": {"estimatedTokens": -1}}, "context.estimatedTokens"),
        ("/v1/ingest/events", [event("evt_neg1", type="llm_call", usage={"tokens": -1000})], "[0].usage.tokens"),
        ("/v1/ingest/events", [event("evt_neg2", durationMs=-1)], "[0].durationMs"),
        ("/v1/ingest/events", [event("evt_neg3", cost={"amount": -3, "currency": "EUR"})], "[0].cost.amount"),
    ],
)  # fmt: skip
def test_a_negative_amount_or_count_is_a_400_naming_its_field(
    dev: Served, path: str, document: Any, field: str
) -> None:
    before = counts(dev)
    assert_400_naming(post(dev, path, json.dumps(document), bearer(dev)), field)
    assert counts(dev) == before


@pytest.mark.parametrize(
    ("extra", "field"), [({"maxAmount": -1}, "maxAmount"), ({"expiresInSeconds": -5}, "expiresInSeconds"),
                         ({"expiresInSeconds": 0}, "expiresInSeconds")]
)  # fmt: skip
def test_attenuate_refuses_a_negative_max_amount_or_expiry(
    dev: Served, extra: dict[str, int], field: str
) -> None:
    grant_id, token = delegated(dev)
    body = {"grantedToAgentId": "agt_hotel", "permissions": ["hotels:book"], **extra}
    answer = post(
        dev,
        f"/v1/delegations/{grant_id}/attenuate",
        json.dumps(body),
        {"Authorization": f"Bearer {token}"},
    )
    assert_400_naming(answer, field)


def test_a_negative_token_estimate_cannot_lift_the_budget(custom: Served) -> None:
    """The budget is 100 tokens: -1,000,000 must not make room for 900,000."""
    headers = bearer(custom, "key_root", "ags_root")
    lift = {"permission": "llm:call", "context": {"estimatedTokens": -1_000_000}}
    assert_400_naming(
        post(custom, "/v1/authorize", json.dumps(lift), headers), "context.estimatedTokens"
    )
    big = {"permission": "llm:call", "context": {"estimatedTokens": 900_000}}
    answer = post(custom, "/v1/authorize", json.dumps(big), headers)
    assert answer.status_code == 200 and answer.json()["allowed"] is False
    assert "token budget exceeded" in answer.json()["reason"]


def test_a_negative_usage_in_an_event_cannot_lift_the_budget(dev: Served) -> None:
    headers = bearer(dev)
    with closing(dev.store()) as store:
        before = store.tokens_committed("demo-agent")
    refund = [event("evt_refund_tokens", type="llm_call", usage={"tokens": -(10**9)})]
    assert_400_naming(
        post(dev, "/v1/ingest/events", json.dumps(refund), headers), "[0].usage.tokens"
    )
    with closing(dev.store()) as store:
        assert store.tokens_committed("demo-agent") == before


# --- 4. missing is not unlimited -----------------------------------------------------------------


def test_a_limited_permission_without_an_amount_is_denied(dev: Served) -> None:
    answer = post(dev, "/v1/authorize", json.dumps({"permission": "payments:refund"}), bearer(dev))
    decision = answer.json()
    assert answer.status_code == 200 and decision["allowed"] is False
    assert decision["status"] == "denied"
    assert (
        "context.amount is missing" in decision["reason"]
        and "max_amount 1000" in decision["reason"]
    )
    # A permission no limit names still needs no amount.
    free = post(dev, "/v1/authorize", json.dumps({"permission": "flights:book"}), bearer(dev))
    assert free.json()["allowed"] is True


def test_a_grant_with_a_max_amount_needs_the_amount(dev: Served) -> None:
    _, token = delegated(dev, max_amount=300)
    auth = {"Authorization": f"Bearer {token}"}
    missing = post(dev, "/v1/authorize", json.dumps({"permission": "hotels:book"}), auth).json()
    assert missing["allowed"] is False and "context.amount is missing" in missing["reason"]
    assert "at most 300" in missing["reason"]
    within = {"permission": "hotels:book", "context": {"amount": 0}}
    assert post(dev, "/v1/authorize", json.dumps(within), auth).json()["allowed"] is True


def test_an_amount_in_a_currency_without_a_rate_is_denied(dev: Served) -> None:
    asked = {"permission": "payments:refund", "context": {"amount": 1, "currency": "XYZ"}}
    decision = post(dev, "/v1/authorize", json.dumps(asked), bearer(dev)).json()
    assert decision["allowed"] is False and "unknown currency 'XYZ'" in decision["reason"]
    tool = {**REFUND, "body": {"amount": 1, "currency": "XYZ"}}
    answer = post(dev, "/v1/tool-authorize", json.dumps(tool), bearer(dev)).json()
    assert answer["allowed"] is False and "unknown currency 'XYZ'" in answer["reason"]


# Bodies of a call to a binding with amount_field = "$.amount" that carry no amount it can check.
UNCHECKABLE_BODIES = [
    ({}, "missing"),
    ({"amount": None}, "missing (null)"),
    ({"amount": "900"}, "the string '900'"),
    ({"amount": True}, "the boolean true"),
    ({"amount": [900]}, "a list"),
    ({"amount": {"value": 900}}, "an object"),
    ({"amount": -5}, "never negative"),
    ({"amount": 5, "currency": ["USD"]}, "not a currency code"),
    ({"amount": 5, "currency": ""}, "not a currency code"),
    ([{"amount": 5}], "missing"),
    ("amount=5", "missing"),
    (None, "missing"),
]


def test_a_tool_call_whose_amount_cannot_be_checked_is_denied(dev: Served) -> None:
    failures = []
    for body, words in UNCHECKABLE_BODIES:
        asked = {**REFUND, "body": body} if body is not None else dict(REFUND)
        answer = post(dev, "/v1/tool-authorize", json.dumps(asked), bearer(dev)).json()
        if answer["allowed"] or answer["outcome"] != "policy_deny" or words not in answer["reason"]:
            failures.append((body, answer))
    assert failures == []
    # the same for an LLM function call's arguments
    function = {"transport": "function", "functionName": "transfer_funds", "body": {"to": "x"}}
    answer = post(dev, "/v1/tool-authorize", json.dumps(function), bearer(dev)).json()
    assert answer["allowed"] is False and "the arguments' $.amount is missing" in answer["reason"]


def test_an_amount_both_in_the_body_and_in_the_query_is_denied(dev: Served) -> None:
    asked = {**REFUND, "query": {"amount": "5000"}, "body": {"amount": 10}}
    answer = post(dev, "/v1/tool-authorize", json.dumps(asked), bearer(dev)).json()
    assert answer["allowed"] is False and "the query's 'amount'" in answer["reason"]
    # an amount only in the query is read there, as the server would
    only_query = {**REFUND, "query": {"amount": "5000"}}
    answer = post(dev, "/v1/tool-authorize", json.dumps(only_query), bearer(dev)).json()
    assert answer["allowed"] is False and "exceeds maxAmount" in answer["reason"]


def test_a_form_body_reads_its_decimal_amount(dev: Served) -> None:
    form = {"content-type": "application/x-www-form-urlencoded"}
    over = {**REFUND, "headers": form, "body": {"amount": "2000", "currency": "EUR"}}
    answer = post(dev, "/v1/tool-authorize", json.dumps(over), bearer(dev)).json()
    assert answer["allowed"] is False and "exceeds maxAmount 1000" in answer["reason"]
    within = {**REFUND, "headers": form, "body": {"amount": "120", "currency": "EUR"}}
    assert post(dev, "/v1/tool-authorize", json.dumps(within), bearer(dev)).json()["allowed"]


def test_an_llm_call_without_an_estimate_is_allowed_only_while_the_budget_has_room(
    custom: Served,
) -> None:
    """No estimatedTokens reserves nothing (usage reconciles); a spent budget still denies."""
    headers = bearer(custom, "key_root", "ags_root")
    ask = json.dumps({"permission": "llm:call"})
    assert post(custom, "/v1/authorize", ask, headers).json()["allowed"] is True
    usage = [event("evt_spend", agentId="root", type="llm_call", usage={"tokens": 100})]
    assert post(custom, "/v1/ingest/events", json.dumps(usage), headers).status_code == 202
    spent = post(custom, "/v1/authorize", ask, headers).json()
    assert spent["allowed"] is False and "token budget spent" in spent["reason"]


def test_a_permission_spelled_another_way_meets_its_limit(custom: Served) -> None:
    """`root` holds "*": an upper-case spelling still meets the payments:refund limit (100), and
    a look-alike letter is not a permission at all."""
    headers = bearer(custom, "key_root", "ags_root")
    upper = {"permission": "PAYMENTS:REFUND", "context": {"amount": 5000}}
    decision = post(custom, "/v1/authorize", json.dumps(upper), headers).json()
    assert decision["allowed"] is False and "exceeds maxAmount 100" in decision["reason"]
    lookalike = {"permission": "p\u0430yments:refund", "context": {"amount": 5000}}  # Cyrillic а
    assert_400_naming(post(custom, "/v1/authorize", json.dumps(lookalike), headers), "permission")
    shouted = {"permission": "LLM:CALL", "context": {"estimatedTokens": 10**6}}
    decision = post(custom, "/v1/authorize", json.dumps(shouted), headers).json()
    assert decision["allowed"] is False and "token budget" in decision["reason"]


def test_concurrent_reservations_cannot_overspend_the_budget(custom: Served) -> None:
    """48 calls of 5 tokens at once against a budget of 100: 20 fit, however they interleave."""
    headers = bearer(custom, "key_burst", "ags_burst")
    ask = json.dumps({"permission": "llm:call", "context": {"estimatedTokens": 5}})
    start = threading.Barrier(48, timeout=30)
    answers: list[bool] = []

    def call() -> None:
        with httpx.Client(timeout=30) as http:
            start.wait()
            answer = http.post(
                custom.url + "/v1/authorize",
                content=ask,
                headers={"Content-Type": "application/json", **headers},
            )
            answers.append(bool(answer.json()["allowed"]))

    threads = [threading.Thread(target=call) for _ in range(48)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(answers) == 48 and answers.count(True) == 20
    with closing(custom.store()) as store:
        assert store.tokens_committed("burst") == 100


# --- 5. agents stay out of each other's events and traces ----------------------------------------


def test_another_agents_event_id_does_not_make_mine_a_duplicate(dev: Served) -> None:
    batch = [event("evt_shadowed", traceId="trc_shadow")]
    first = post(dev, "/v1/ingest/events", json.dumps(batch), {"X-Ingest-Key": HOTEL_KEY})
    assert first.json() == {"accepted": 1, "duplicates": 0}
    mine = post(dev, "/v1/ingest/events", json.dumps(batch), bearer(dev))
    assert mine.json() == {"accepted": 1, "duplicates": 0}
    again = post(dev, "/v1/ingest/events", json.dumps(batch), bearer(dev))
    assert again.json() == {"accepted": 0, "duplicates": 1}
    with closing(dev.store()) as store:
        assert [e["eventId"] for e in store.events(agent_id="demo-agent")].count(
            "evt_shadowed"
        ) == 1
        assert [e["eventId"] for e in store.events(agent_id="agt_hotel")].count("evt_shadowed") == 1


def close_body(trace_id: str, status: str) -> str:
    return json.dumps(
        {"traceId": trace_id, "agentId": "demo-agent", "op": "Close", "status": status,
         "occurredAt": "2026-01-01T00:00:09Z"}
    )  # fmt: skip


def test_only_the_agent_that_owns_a_trace_closes_it(dev: Served) -> None:
    mine = bearer(dev)
    opened = [event("evt_owned", traceId="trc_owned", rootRequest="refund")]
    assert post(dev, "/v1/ingest/events", json.dumps(opened), mine).status_code == 202
    hijack = post(
        dev, "/v1/ingest/traces", close_body("trc_owned", "completed"), {"X-Ingest-Key": HOTEL_KEY}
    )
    assert hijack.status_code == 403 and "belongs to another agent" in hijack.json()["reason"]
    with closing(dev.store()) as store:
        assert [t.status for t in store.traces(10**6) if t.trace_id == "trc_owned"] == [None]
    assert (
        post(dev, "/v1/ingest/traces", close_body("trc_owned", "failed"), mine).status_code == 202
    )
    with closing(dev.store()) as store:
        [summary] = [t for t in store.traces(10**6) if t.trace_id == "trc_owned"]
    assert (summary.status, summary.agent_id) == ("failed", "demo-agent")


def test_a_decision_opens_a_trace_for_its_agent_too(dev: Served) -> None:
    asked = {"permission": "flights:book", "traceId": "trc_by_decision"}
    assert post(dev, "/v1/authorize", json.dumps(asked), bearer(dev)).json()["allowed"]
    hijack = post(
        dev,
        "/v1/ingest/traces",
        close_body("trc_by_decision", "completed"),
        {"X-Ingest-Key": HOTEL_KEY},
    )
    assert hijack.status_code == 403


def test_an_old_database_is_migrated_and_a_hijacked_close_gives_way(dev: Served) -> None:
    """`dev` opened a file whose events had globally unique ids and a trace agt_hotel closed."""
    with closing(sqlite3.connect(dev.data / "platform.sqlite3")) as raw:
        unique = [
            [col[2] for col in raw.execute(f"PRAGMA index_info('{index[1]}')")]
            for index in raw.execute("PRAGMA index_list(events)")
            if index[2]
        ]
        assert unique == [["agent_id", "event_id"]]
        assert raw.execute("PRAGMA user_version").fetchone()[0] == 1
    taken = [event("evt_old")]
    answer = post(dev, "/v1/ingest/events", json.dumps(taken), {"X-Ingest-Key": HOTEL_KEY})
    assert answer.json() == {"accepted": 1, "duplicates": 0}
    again = post(dev, "/v1/ingest/events", json.dumps(taken), bearer(dev))
    assert again.json() == {"accepted": 0, "duplicates": 1}  # demo-agent's own, from before
    assert (
        post(dev, "/v1/ingest/traces", close_body("trc_seeded", "failed"), bearer(dev)).status_code
        == 202
    )
    with closing(dev.store()) as store:
        [seeded] = [t for t in store.traces(10**6) if t.trace_id == "trc_seeded"]
        assert (seeded.status, seeded.agent_id) == ("failed", "demo-agent")
        seqs = store._all("SELECT seq, event_id FROM events ORDER BY seq")
    assert seqs[0][1] == "evt_old" and seqs[0][0] == 7 and all(s[0] > 7 for s in seqs[1:])


# --- 6. path spellings and unbound paths -------------------------------------------------------


SPELLINGS = [
    ("api.stripe.com", "POST", "/V1/REFUNDS"),
    ("api.stripe.com", "POST", "/v1/Refunds"),
    ("api.stripe.com", "POST", "/v1/refunds;jsessionid=1"),
    ("api.stripe.com", "POST", "/v1;x=1/refunds"),
    ("api.stripe.com", "POST", "/v1/refunds/"),
    ("api.stripe.com", "POST", "//v1//refunds"),
    ("api.stripe.com", "POST", "/v1/./refunds"),
    ("api.stripe.com", "POST", "/v1/x/../refunds"),
    ("api.stripe.com", "POST", "/v1/x/..;/refunds"),
    ("api.stripe.com", "POST", "/v1/%72efunds"),
    ("api.stripe.com", "POST", "/v1%2Frefunds"),
    ("api.stripe.com", "POST", "/v1/%2572efunds"),
    ("api.stripe.com", "POST", "\\v1\\refunds"),
    ("api.stripe.com", "POST", "/v1/refunds%3Fx=1"),
    ("api.stripe.com", "post", "/v1/refunds"),
    ("API.STRIPE.COM", "POST", "/v1/refunds"),
    ("api.stripe.com.", "POST", "/v1/refunds"),
    ("api.stripe.com:443", "POST", "/v1/refunds"),
]


@pytest.mark.parametrize(("host", "method", "path"), SPELLINGS)
def test_a_path_spelling_servers_route_to_the_bound_handler_meets_its_binding(
    dev: Served, host: str, method: str, path: str
) -> None:
    asked = {"transport": "http", "method": method, "host": host, "path": path,
             "body": {"amount": 2000, "currency": "EUR"}}  # fmt: skip
    answer = post(dev, "/v1/tool-authorize", json.dumps(asked), bearer(dev)).json()
    assert answer["allowed"] is False, answer
    assert answer["permission"] == "payments:refund"
    assert "exceeds maxAmount 1000" in answer["reason"]


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/v1/payouts"), ("GET", "/v1/refunds"), ("DELETE", "/v1/refunds"),
     ("POST", "/v1/refunds/re_1/cancel"), ("PUT", "/v1/charges")],
)  # fmt: skip
def test_an_unbound_path_on_a_host_with_bindings_is_denied(
    dev: Served, method: str, path: str
) -> None:
    asked = {"transport": "http", "method": method, "host": "api.stripe.com", "path": path}
    answer = post(dev, "/v1/tool-authorize", json.dumps(asked), bearer(dev)).json()
    assert answer["allowed"] is False and answer["outcome"] == "policy_deny"
    assert answer["reason"].startswith(f"no policy binding for {method} {path} on api.stripe.com")
    # A host no binding names keeps the allowlist's answer.
    other = {"transport": "http", "method": method, "host": "api.example.com", "path": path}
    assert post(dev, "/v1/tool-authorize", json.dumps(other), bearer(dev)).json()["allowed"]


@pytest.mark.parametrize(
    ("extra"),
    [{"headers": {"X-HTTP-Method-Override": "DELETE"}}, {"headers": {"x-method-override": "put"}},
     {"query": {"_method": "DELETE"}}, {"body": {"amount": 5, "_method": "DELETE"}}],
)  # fmt: skip
def test_a_method_override_on_a_bound_host_is_denied(dev: Served, extra: dict[str, Any]) -> None:
    asked = {**REFUND, "body": {"amount": 5}, **extra}
    answer = post(dev, "/v1/tool-authorize", json.dumps(asked), bearer(dev)).json()
    assert answer["allowed"] is False and "another method" in answer["reason"], answer


def test_head_meets_the_get_binding(custom: Served) -> None:
    """Servers answer HEAD with the GET handler, so HEAD is decided by the GET binding."""
    headers = bearer(custom, "key_root", "ags_root")
    for method in ("HEAD", "head", "GET"):
        asked = {"transport": "http", "method": method, "host": "api.crm.test",
                 "path": "/v1/customers/42"}  # fmt: skip
        answer = post(custom, "/v1/tool-authorize", json.dumps(asked), headers).json()
        assert answer["permission"] == "crm:export", (method, answer)


def test_a_policy_may_allow_unbound_paths(tmp_path: Path) -> None:
    from tracengent.platform import DEFAULT_POLICY_TOML

    assert 'unbound_paths = "deny"' in DEFAULT_POLICY_TOML  # documented, with its default
    policy = tmp_path / "policy.toml"
    policy.write_text(
        DEFAULT_POLICY_TOML.replace('unbound_paths = "deny"', 'unbound_paths = "allow"'),
        encoding="utf-8",
    )
    with served_platform(tmp_path / "data", policy) as served:
        asked = {
            "transport": "http",
            "method": "POST",
            "host": "api.stripe.com",
            "path": "/v1/payouts",
        }
        answer = post(served, "/v1/tool-authorize", json.dumps(asked), bearer(served)).json()
        assert answer["allowed"] is True and "unbound paths are allowed" in answer["reason"]
        bound = {**asked, "path": "/V1/REFUNDS", "body": {"amount": 2000}}
        answer = post(served, "/v1/tool-authorize", json.dumps(bound), bearer(served)).json()
        assert answer["allowed"] is False and "exceeds maxAmount" in answer["reason"]
