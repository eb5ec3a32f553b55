"""Bad input, fuzzed with hypothesis: nothing crashes, nothing is granted by accident.

- Arbitrary text and bytes as a JWT: `has_permission` and a delegated session's `attenuate`
  never crash (a `DelegationException` is an answer) and grant only what the token's claims,
  read independently here, actually grant.
- Arbitrary JSON (and bytes, and statuses) as the answer to `/v1/authorize`,
  `/v1/tool-authorize` and `/attenuate`: an allow only for a well-formed allow (`allowed` is
  JSON `true` and `status` is `"allowed"`), a session only for a well-formed token answer.
- Arbitrary Python objects (hostile dunders, cycles, huge ints, NaN...) as an event's input,
  output and attributes: `record()` never raises and the whole batch is still delivered, as
  valid JSON the platform accepts.
- Arbitrary redaction paths and documents: `apply_redactions` never raises, returns JSON, and
  removes or masks what a simple path names.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import datetime as dt
import decimal
import enum
import gzip
import json
import math
import os
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings, strategies as st
from pydantic import TypeAdapter
from tracengent_api.models import Event

from tracengent import (
    MASK_TOKEN,
    AgentEvent,
    AsyncTracengentClient,
    AuthDecision,
    DelegationException,
    NotAuthorizedException,
    Redaction,
    ToolDeniedException,
    ToolPendingApprovalException,
    TracengentClient,
    TracengentOptions,
    apply_redactions,
    governed_client,
)

FUZZ = settings(
    max_examples=150,
    deadline=None,
    database=None,
    # The same examples on every run, so CI is stable; TRACENGENT_FUZZ_RANDOM=1 explores anew.
    derandomize=not os.environ.get("TRACENGENT_FUZZ_RANDOM"),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
FEW = settings(FUZZ, max_examples=60)
BASE_URL = "http://platform.test"
PERMISSION = "payments:refund"

# --- JSON values ------------------------------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
# The values a confused (or hostile) server might send where a boolean or a status belongs.
tricky = st.sampled_from(
    [True, False, 1, 0, 1.0, "true", "True", "yes", "on", "1", "t", "y", "allowed", "ALLOWED",
     " allowed", "Allowed", "allowed ", "denied", "pending_approval", None, [], {}, [True],
     {"allowed": True}, "", 2, -1]
)  # fmt: skip
any_value = tricky | json_values


def mutated(base: Mapping[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    """`base` with some keys dropped, some set to tricky or arbitrary values, some added."""
    keys = sorted(base)
    return st.builds(
        lambda dropped, changed, added: {
            **{k: v for k, v in base.items() if k not in dropped},
            **changed,
            **added,
        },
        st.sets(st.sampled_from(keys)),
        st.dictionaries(st.sampled_from(keys), any_value, max_size=3),
        st.dictionaries(st.text(max_size=10), any_value, max_size=2),
    )


def body_of(answer: object) -> bytes:
    if isinstance(answer, bytes):
        return answer
    return json.dumps(answer).encode()


statuses = st.sampled_from([200, 200, 200, 201, 202, 204, 299, 301, 400, 401, 403, 404, 429, 503])


def answers(base: Mapping[str, Any]) -> st.SearchStrategy[tuple[int, object]]:
    """(HTTP status, answer): mostly 200 with mutated valid shapes, else anything at all."""
    return st.tuples(
        statuses,
        mutated(base) | json_values | st.binary(max_size=64) | st.just(dict(base)),
    )


def is_json_true_allowed(status: int, answer: object) -> bool:
    """The necessary form of an allow: a 2xx, an object, `allowed` JSON true, status "allowed"."""
    return (
        200 <= status < 300
        and isinstance(answer, dict)
        and answer.get("allowed") is True
        and answer.get("status") == "allowed"
    )


# --- tokens -----------------------------------------------------------------------------------


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def make_jwt(claims: object, header: object | None = None) -> str:
    head = {"alg": "HS256", "typ": "JWT"} if header is None else header
    return ".".join(
        [b64url(json.dumps(head).encode()), b64url(json.dumps(claims).encode()), b64url(b"sig")]
    )


def claims_of(token: str) -> dict[str, Any] | None:
    """The payload of anything shaped like a JWT, read independently of the SDK; None if not."""
    parts = token.strip().split(".")
    if len(parts) != 3:
        return None
    try:
        header, payload = json.loads(unb64url(parts[0])), json.loads(unb64url(parts[1]))
    except Exception:  # noqa: BLE001 - not base64, not UTF-8, not JSON: no claims
        return None
    if not isinstance(header, dict) or not isinstance(payload, dict):
        return None
    return payload


def _matches(pattern: object, permission: str) -> bool:
    if not isinstance(pattern, str) or not pattern or not permission:
        return False
    if pattern in ("*", permission):
        return True
    return pattern.endswith(":*") and permission.startswith(pattern[:-1])


def _patterns(value: object) -> list[object]:
    return [value] if isinstance(value, str) else list(value) if isinstance(value, list) else []


def grants(claims: Mapping[str, Any] | None, permission: str) -> bool:
    if claims is None:
        return False
    return any(_matches(p, permission) for p in _patterns(claims.get("permissions")))


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def may_attenuate(
    claims: Mapping[str, Any] | None, permission: str, amount: float | None, now: float
) -> bool:
    """Whether a delegated token's own claims allow narrowing it to `permission` / `amount`."""
    if claims is None:
        return False
    grant_id = claims.get("grant_id")
    if not isinstance(grant_id, str) or not grant_id:
        return False
    exp = _number(claims.get("exp"))
    if exp is not None and exp <= now:
        return False
    if not any(_matches(p, permission) for p in _patterns(claims.get("delegated_permissions"))):
        return False
    ceiling = _number(claims.get("max_amount"))
    if isinstance(claims.get("max_amount"), int) and not isinstance(claims["max_amount"], bool):
        ceiling = claims["max_amount"]  # an int ceiling is compared as an int
    return not (amount is not None and ceiling is not None and amount > ceiling)


patterns = st.sampled_from(
    ["*", "payments:*", "payments:refund", "payments:refundx", "payments", "payments:",
     "payment:*", "pay*", "payments:refund:*", "", " payments:refund", "PAYMENTS:REFUND", "*:*",
     ":*", "hotels:*", "hotels:book", "hotels:book:*", "hotels", "flights:*"]
) | st.text(max_size=12)  # fmt: skip
claim_values = any_value | patterns | st.lists(patterns | any_value, max_size=4)
NOW = time.time()
claims_dicts = st.fixed_dictionaries(
    {},
    optional={
        "permissions": claim_values,
        "delegated_permissions": claim_values,
        "grant_id": st.sampled_from(["dlg_1", "", None, 5]) | any_value,
        "exp": st.sampled_from([NOW + 3600, NOW - 3600, int(NOW + 3600), 2**80, "soon"])
        | any_value,
        "max_amount": st.sampled_from([500, 100.5, 0, -1, 2**80, "500", True]) | any_value,
        "acting_for": any_value,
        "delegation_chain": claim_values,
    },
)
well_formed_tokens = claims_dicts.map(make_jwt)


@st.composite
def damaged(draw: st.DrawFn, tokens: st.SearchStrategy[str]) -> str:
    """A token with a few characters replaced, inserted or cut."""
    text = list(draw(tokens))
    for _ in range(draw(st.integers(1, 3))):
        where = draw(st.integers(0, len(text)))
        edit = draw(st.sampled_from(["replace", "insert", "cut"]))
        char = draw(st.characters(codec="utf-8") | st.sampled_from(list(".=-_+/ \n")))
        if edit == "insert" or not text:
            text.insert(where, char)
        elif edit == "replace":
            text[min(where, len(text) - 1)] = char
        else:
            del text[where:]
    return "".join(text)


any_tokens = (
    st.text(max_size=200)
    | st.binary(max_size=200).map(lambda b: b.decode("latin-1"))
    | st.lists(
        st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_="),
        min_size=1,
        max_size=4,
    ).map(".".join)
    | st.tuples(json_values, json_values).map(lambda hp: make_jwt(hp[1], hp[0]))
    | damaged(well_formed_tokens)
)


# --- a platform of one answer per path ----------------------------------------------------------

Answer = tuple[int, bytes]
DENY: Answer = (200, b'{"allowed": false, "status": "denied", "reason": "no"}')
VALID_CHILD = {"token": {"accessToken": make_jwt({"grant_id": "dlg_2"}), "tokenType": "Bearer"}}


class Platform:
    """An in-process MockTransport: a fixed answer per path; records what reached it."""

    def __init__(self, **by_path: Answer) -> None:
        self.by_path = {"/v1/authorize": DENY, "/v1/tool-authorize": DENY, **by_path}
        self.paths: list[str] = []
        self.transport = httpx.MockTransport(self._handle)

    def _handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        self.paths.append(path)
        if path.endswith("/attenuate"):
            path = "attenuate"
        status, body = self.by_path.get(path, (404, b'{"error": "not_found"}'))
        return httpx.Response(status, content=body, headers={"Content-Type": "application/json"})


def client_for(platform: Platform, **overrides: object) -> TracengentClient:
    values: dict[str, object] = {
        "agent_id": "demo-agent",
        "base_url": BASE_URL,
        "ingest_key": "agk_fuzz",
        "approval_timeout_s": 0.2,
        "approval_poll_interval_s": 0.01,
    }
    values.update(overrides)
    return TracengentClient(TracengentOptions(**values), transport=platform.transport)  # type: ignore[arg-type]


def token_answer(token: str) -> Answer:
    return 200, json.dumps(
        {"access_token": token, "token_type": "Bearer", "expires_in": 900}
    ).encode()


def with_token(answer: Answer) -> TracengentClient:
    platform = Platform(**{"/v1/oauth/token": answer})
    return client_for(platform, ingest_key=None, client_id="key_fuzz", client_secret="ags_fuzz")


# --- tokens: has_permission ---------------------------------------------------------------------


@FUZZ
@given(token=any_tokens | well_formed_tokens, permission=patterns)
def test_has_permission_grants_only_what_the_token_says(token: str, permission: str) -> None:
    client = with_token(token_answer(token))
    try:
        granted = client.has_permission(permission)
    finally:
        client.close(0.5)
    assert isinstance(granted, bool)
    if granted:
        assert grants(claims_of(token), permission), (token, permission)


@FUZZ
@given(claims=claims_dicts, permission=patterns)
def test_has_permission_reads_a_well_formed_token_exactly(
    claims: dict[str, Any], permission: str
) -> None:
    client = with_token(token_answer(make_jwt(claims)))
    try:
        granted = client.has_permission(permission)
    finally:
        client.close(0.5)
    assert granted is grants(claims, permission), (claims, permission)


@FEW
@given(status=statuses, body=st.binary(max_size=200) | json_values.map(body_of))
def test_an_unreadable_token_answer_grants_nothing(status: int, body: bytes) -> None:
    client = with_token((status, body))
    try:
        assert client.has_permission(PERMISSION) is False
        decision = client.authorize(PERMISSION)
        assert isinstance(decision, AuthDecision) and decision.allowed is False
    finally:
        client.close(0.5)


@FEW
@given(token=any_tokens | well_formed_tokens)
def test_async_has_permission_grants_only_what_the_token_says(token: str) -> None:
    platform = Platform(**{"/v1/oauth/token": token_answer(token)})
    options = TracengentOptions(
        agent_id="demo-agent", base_url=BASE_URL, client_id="key_fuzz", client_secret="ags_fuzz"
    )

    async def ask() -> bool:
        client = AsyncTracengentClient(options, transport=platform.transport)
        try:
            return await client.has_permission(PERMISSION)
        finally:
            await client.close(0.5)

    granted = asyncio.run(ask())
    assert isinstance(granted, bool)
    if granted:
        assert grants(claims_of(token), PERMISSION)


# --- tokens: delegation ---------------------------------------------------------------------------

requested = st.sampled_from(["hotels:book", "hotels:*", "*", "flights:book", "hotels:book:x"])
amounts = st.none() | st.integers(-10, 10**6) | st.floats(-1e6, 1e6, allow_nan=False)


@FUZZ
@given(token=any_tokens | well_formed_tokens, permission=requested, amount=amounts)
def test_a_delegated_session_never_widens_and_never_crashes(
    token: str, permission: str, amount: float | None
) -> None:
    # The platform would mint any child it is asked for: only the SDK's own checks stand between.
    platform = Platform(attenuate=(200, json.dumps(VALID_CHILD).encode()))
    client = client_for(platform)
    child: object = None
    try:
        try:
            session = client.begin_delegated_task(token)
        except DelegationException:  # refusing an unusable token up front is an answer too
            session = None
        if session is not None:
            repr(session)
            try:
                child = session.attenuate_for_call("agt_child", [permission], max_amount=amount)
            except DelegationException:
                child = None
            decision = session.authorize("hotels:book", {"amount": 1})
            assert isinstance(decision, AuthDecision) and not decision.allowed  # platform said no
    finally:
        client.close(0.5)
    allowed_locally = may_attenuate(claims_of(token), permission, amount, time.time())
    if child is not None:
        assert allowed_locally, (token, permission, amount)
    if token == make_jwt(claims_of(token)):  # a well-formed token: exactly its claims decide
        assert (child is not None) is allowed_locally, (claims_of(token), permission, amount)


child_answers = answers(VALID_CHILD) | st.tuples(
    statuses, mutated(VALID_CHILD["token"]).map(lambda token: {"token": token})
)


@FUZZ
@given(answer=child_answers)
def test_attenuate_returns_a_session_only_for_a_well_formed_token_answer(
    answer: tuple[int, object],
) -> None:
    status, body = answer
    parent = make_jwt(
        {"grant_id": "dlg_1", "delegated_permissions": ["hotels:*"], "exp": NOW + 3600}
    )
    # The platform allows whatever a usable token asks: only an unusable child must not.
    platform = Platform(
        attenuate=(status, body_of(body)),
        **{"/v1/authorize": (200, json.dumps(VALID_ALLOW).encode())},
    )
    client = client_for(platform)
    granted = None
    try:
        session = client.begin_delegated_task(parent)
        try:
            child = session.attenuate_for_call("agt_child", ["hotels:book"])
        except DelegationException:
            child = None
        if child is not None:
            granted = child.authorize("hotels:book").allowed
    finally:
        client.close(0.5)
    token = body.get("token") if isinstance(body, dict) else None
    minted = (
        token.get("accessToken", token.get("access_token")) if isinstance(token, dict) else None
    )
    if child is not None:
        assert 200 <= status < 300 and isinstance(minted, str), (status, body)
        assert child.token == minted.strip()
        if not child.token or any(c.isspace() or not c.isprintable() for c in child.token):
            assert granted is False  # a token that cannot be sent makes a session that denies
    if 200 <= status < 300 and body == VALID_CHILD:
        assert child is not None and child.token == VALID_CHILD["token"]["accessToken"]


# --- answers: authorize and tool-authorize ------------------------------------------------------

VALID_ALLOW = {
    "allowed": True,
    "status": "allowed",
    "reason": "ok",
    "decisionId": "dec_1",
    "obligations": {"maxAmount": 500, "currency": "EUR", "redactFields": ["$.card"]},
}
VALID_TOOL_ALLOW = {
    "allowed": True,
    "status": "allowed",
    "outcome": "policy_allow",
    "reason": "ok",
    "decisionId": "dec_2",
    "redactions": [{"field": "$.card", "strategy": "remove"}],
}


@FUZZ
@given(answer=answers(VALID_ALLOW))
def test_authorize_allows_only_on_a_well_formed_allow(answer: tuple[int, object]) -> None:
    status, body = answer
    platform = Platform(**{"/v1/authorize": (status, body_of(body))})
    platform.by_path["/v1/approvals/apr_1"] = (200, b'{"status": "approved"}')
    client = client_for(platform)
    try:
        decision = client.authorize(PERMISSION, {"amount": 1, "currency": "EUR"})
        try:
            client.ensure_authorized(PERMISSION, {"amount": 1, "currency": "EUR"})
            ensured = True
        except NotAuthorizedException:
            ensured = False
    finally:
        client.close(0.5)
    assert isinstance(decision, AuthDecision)
    assert isinstance(decision.allowed, bool) and isinstance(decision.reason, str)
    if decision.allowed:
        assert is_json_true_allowed(status, body), body
    if ensured:  # an allow, or a pending decision whose approval came back approved
        assert decision.allowed or decision.pending, body
    if status == 200 and body == VALID_ALLOW:
        assert decision.allowed and ensured


@FUZZ
@given(answer=answers(VALID_TOOL_ALLOW))
def test_the_tool_gate_opens_only_on_a_well_formed_allow(answer: tuple[int, object]) -> None:
    status, body = answer
    platform = Platform(**{"/v1/tool-authorize": (status, body_of(body))})
    client = client_for(platform)
    ran: list[object] = []
    reached: list[httpx.Request] = []
    outcomes: list[object] = []

    def tool(request: httpx.Request) -> httpx.Response:
        reached.append(request)
        return httpx.Response(200)

    http = governed_client(client, inner=httpx.MockTransport(tool))
    try:
        guard = client.tools.authorize_mcp("search", {"q": "LIS", "card": "4242"})
        for call in (
            lambda: client.tools.guard_function("refund", {"card": "4242"}, ran.append),
            lambda: http.post("https://api.stripe.com/v1/refunds", json={"card": "4242"}),
        ):
            try:
                outcomes.append(call())
            except (ToolDeniedException, ToolPendingApprovalException) as refused:
                outcomes.append(refused)
    finally:
        http.close()
        client.close(0.5)
    assert isinstance(guard.allowed, bool)
    if guard.allowed or ran or reached:
        assert is_json_true_allowed(status, body), body
    if status == 200 and body == VALID_TOOL_ALLOW:
        assert guard.allowed and guard.arguments == {"q": "LIS"}  # redacted as told
        assert ran == [{}] and len(reached) == 1


@pytest.mark.parametrize("allowed", [1, "true", "yes"], ids=repr)
@pytest.mark.parametrize("path", ["/v1/authorize", "/v1/tool-authorize"])
def test_an_allowed_flag_that_is_not_json_true_is_not_an_allow(path: str, allowed: object) -> None:
    """`{"allowed": "yes", "status": "allowed"}` is not a well-formed allow: it must fail closed."""
    body = json.dumps({"allowed": allowed, "status": "allowed"}).encode()
    client = client_for(Platform(**{path: (200, body)}))
    try:
        if path == "/v1/authorize":
            granted = client.authorize(PERMISSION).allowed
        else:
            granted = client.tools.authorize_mcp("search", {}).allowed
    finally:
        client.close(0.5)
    assert granted is False


# --- arbitrary Python objects as event payloads ---------------------------------------------------


class RaisingRepr:
    def __repr__(self) -> str:
        raise RuntimeError("no repr")

    __str__ = __repr__


class RaisingEq:
    def __eq__(self, other: object) -> bool:
        raise RuntimeError("no eq")

    def __hash__(self) -> int:
        return object.__hash__(self)


class RaisingHash:
    def __hash__(self) -> int:
        raise RuntimeError("no hash")


class RaisingIterList(list):  # type: ignore[type-arg]
    def __iter__(self) -> Iterator[Any]:
        raise RuntimeError("no iter")

    def __len__(self) -> int:
        raise RuntimeError("no len")


class RaisingItemsDict(dict):  # type: ignore[type-arg]
    def items(self) -> Any:
        raise RuntimeError("no items")

    def __iter__(self) -> Iterator[Any]:
        raise RuntimeError("no iter")


class LyingSequence(Sequence[int]):
    def __len__(self) -> int:
        return 2**70

    def __getitem__(self, index: Any) -> Any:
        raise IndexError(index)


class RaisingMapping(Mapping[str, int]):
    def __getitem__(self, key: str) -> int:
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        yield "a"
        raise RuntimeError("half way")

    def __len__(self) -> int:
        return -1


class RaisingGetattribute:
    def __getattribute__(self, name: str) -> Any:
        raise RuntimeError(f"no {name}")


class RaisingClass:
    @property  # type: ignore[misc]
    def __class__(self) -> type:
        raise RuntimeError("no class")


class DumpRaises:
    def model_dump(self, **_: object) -> Any:
        raise RuntimeError("no dump")


class DumpsItself:
    def model_dump(self, **_: object) -> Any:
        return self


class RaisingStrException(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no str")


@dataclasses.dataclass
class WithRaisingField:
    x: int = 1

    def __getattribute__(self, name: str) -> Any:
        if name == "x":
            raise RuntimeError("no x")
        return object.__getattribute__(self, name)


class Color(enum.Enum):
    RED = "red"
    SELF = ()


class Weird(str):
    def __str__(self) -> str:
        raise RuntimeError("no str")


def _cycles() -> list[object]:
    a: list[object] = []
    a.append(a)
    d: dict[str, object] = {}
    d["d"] = d
    x: list[object] = []
    y: dict[str, object] = {"x": x}
    x.append(y)
    deep: list[object] = []
    node = deep
    for _ in range(5_000):
        child: list[object] = []
        node.append(child)
        node = child
    return [a, d, x, deep]


def _hostile() -> list[object]:
    return [
        RaisingRepr(),
        RaisingEq(),
        RaisingHash(),
        RaisingIterList([1, 2]),
        RaisingItemsDict(a=1),
        LyingSequence(),
        RaisingMapping(),
        RaisingGetattribute(),
        RaisingClass(),
        DumpRaises(),
        DumpsItself(),
        RaisingStrException(),
        WithRaisingField(),
        Color.RED,
        Color.SELF,
        Weird("w"),
        ValueError("boom"),
        threading.Lock(),
        object(),
        object,
        len,
        (i for i in range(3)),
        iter([1, 2]),
        range(5),
        memoryview(b"\xff\x00"),
        bytearray(b"\xfe"),
        uuid.UUID(int=7),
        1 + 2j,
        decimal.Decimal("NaN"),
        decimal.Decimal("-Infinity"),
        decimal.Decimal("1E+100000"),
        dt.datetime(1, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=-23))),
        dt.date.max,
        dt.time(23, 59, tzinfo=dt.timezone.utc),
        dt.timedelta(days=-1),
        math.nan,
        -math.inf,
        -0.0,
        10**5000,
        -(10**4400),
        2**64,
        "\ud800 lone surrogate",
        "nul \x00 byte",
    ]


HOSTILE = _hostile() + _cycles()
HOSTILE_KEYS = [RaisingEq(), RaisingRepr(), Color.RED, (1, 2), frozenset({1}), b"k"]


@dataclasses.dataclass(frozen=True)
class Hostile:
    """Stands for HOSTILE[index] (or a hostile dict key) in what hypothesis draws and prints:
    the real objects refuse repr, which hypothesis needs to report a failing example."""

    index: int
    key: bool = False

    def __repr__(self) -> str:
        table = HOSTILE_KEYS if self.key else HOSTILE
        return f"Hostile({self.index}, key={self.key})  # {type(table[self.index]).__name__}"


def materialize(value: object) -> object:
    """The drawn structure with every `Hostile` stand-in replaced by the real object."""
    if isinstance(value, Hostile):
        return (HOSTILE_KEYS if value.key else HOSTILE)[value.index]
    if isinstance(value, list):
        return [materialize(v) for v in value]
    if isinstance(value, tuple):
        return tuple(materialize(v) for v in value)
    if isinstance(value, dict):
        return {materialize(k): materialize(v) for k, v in value.items()}
    return value


hashable_keys = (
    st.text(max_size=8)
    | st.integers()
    | st.none()
    | st.floats()
    | st.sampled_from(range(len(HOSTILE_KEYS))).map(lambda i: Hostile(i, key=True))
)
leaves = st.one_of(  # half of the leaves are hostile, each as likely as the others
    st.sampled_from(range(len(HOSTILE))).map(Hostile),
    json_scalars
    | st.floats()
    | st.binary(max_size=16)
    | st.integers()
    | st.decimals()
    | st.datetimes(timezones=st.none() | st.timezones())
    | st.complex_numbers(),
)
payloads = st.recursive(
    leaves,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.tuples(inner, inner)
        | st.dictionaries(hashable_keys, inner, max_size=4)
        | st.sets(st.text(max_size=4) | st.integers() | st.floats(), max_size=4)
        | st.frozensets(st.integers(), max_size=3)
    ),
    max_leaves=16,
)
_EVENTS = TypeAdapter(list[Event])


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


class Ingest:
    """Accepts a batch only if a strict reader would: RFC 8259 JSON (no NaN, no number past the
    usual int-digits limit) and every event valid for the wire contract. Otherwise, like the
    platform, it refuses the whole batch with a 400."""

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.refused: list[str] = []
        self.transport = httpx.MockTransport(self._handle)

    def _handle(self, request: httpx.Request) -> httpx.Response:
        body = request.read()
        if request.headers.get("content-encoding") == "gzip":
            body = gzip.decompress(body)
        try:
            parsed = json.loads(body, parse_constant=_no_constants)
            _EVENTS.validate_json(body)
        except ValueError as error:
            self.refused.append(str(error)[:200])
            return httpx.Response(400, json={"error": "bad_request", "reason": str(error)[:200]})
        self.ids += [e["eventId"] for e in parsed]
        return httpx.Response(202, json={"accepted": len(parsed), "duplicates": 0})


def deliver(*recorded: object) -> tuple[Ingest, TracengentClient, list[BaseException]]:
    """Record `recorded` (events or not) in one batch; what `record()` raised, if anything."""
    ingest = Ingest()
    client = TracengentClient(
        TracengentOptions(
            agent_id="demo-agent",
            base_url=BASE_URL,
            ingest_key="agk_fuzz",
            flush_interval_ms=60_000,
            max_retries=0,
        ),
        transport=ingest.transport,
    )
    raised: list[BaseException] = []
    for item in recorded:
        try:
            client.record(item)  # type: ignore[arg-type]
        except BaseException as error:  # noqa: BLE001 - asserted empty by the caller
            raised.append(error)
    assert client.flush(10)
    client.close(1)
    return ingest, client, raised


HUGE_INT = next(i for i, v in enumerate(HOSTILE) if type(v) is int and v.bit_length() > 14_000)


@FUZZ
@given(input_=payloads, output=payloads, attributes=payloads)
@example(input_=[Hostile(HUGE_INT)], output=None, attributes=None)  # whatever the draw finds
def test_any_payload_is_recorded_without_raising_and_the_batch_is_delivered(
    input_: object, output: object, attributes: object
) -> None:
    ingest, client, raised = deliver(
        AgentEvent(name="before", event_id="evt_before"),
        AgentEvent(
            name="fuzz",
            event_id="evt_fuzz",
            input=materialize(input_),
            output=materialize(output),
            attributes=materialize(attributes),
        ),
        AgentEvent(name="after", event_id="evt_after"),
    )
    assert raised == []
    assert ingest.refused == []
    assert ingest.ids == ["evt_before", "evt_fuzz", "evt_after"]
    assert client.dropped_count == 0


@pytest.mark.parametrize(
    "index", range(len(HOSTILE)), ids=[f"{i}-{type(v).__name__}" for i, v in enumerate(HOSTILE)]
)
def test_each_hostile_payload_costs_nothing(index: int) -> None:
    value = HOSTILE[index]
    ingest, client, raised = deliver(
        AgentEvent(name="before", event_id="evt_before"),
        AgentEvent(
            name="hostile", event_id="evt_h", input=value, output=[value], attributes={"v": value}
        ),
        AgentEvent(name="after", event_id="evt_after"),
    )
    assert raised == [] and ingest.refused == []
    assert ingest.ids == ["evt_before", "evt_h", "evt_after"]
    assert client.dropped_count == 0


MISTYPED: list[dict[str, Any]] = [
    {"name": None},
    {"type": None},
    {"tags": [1, "ok"]},
    {"tags": "solo"},
    {"duration_ms": 1.5},
    {"trace_id": 5},
    {"occurred_at": 1_700_000_000},
    {"cost": "12 EUR"},
    {"usage": {"tokens": 5}},
]


@pytest.mark.parametrize("fields", MISTYPED, ids=lambda f: f"{next(iter(f))}={f[next(iter(f))]!r}")
def test_a_mistyped_field_costs_at_most_its_own_event(fields: dict[str, Any]) -> None:
    """A field of the wrong type (None as a name, a float duration) is a mistake the agent's
    type checker may not see; it may cost that event, never the batch it travels in."""
    odd = AgentEvent(event_id="evt_odd", **{"name": "odd", **fields})
    ingest, client, raised = deliver(
        AgentEvent(name="before", event_id="evt_before"),
        odd,
        AgentEvent(name="after", event_id="evt_after"),
    )
    assert raised == [] and ingest.refused == []
    assert [i for i in ingest.ids if i != "evt_odd"] == ["evt_before", "evt_after"]
    stats = client._core.dispatcher.stats
    assert stats.delivered + stats.dropped_total == 3 and stats.delivered >= 2


NOT_EVENTS = [None, 1, "event", {"name": "x"}, [AgentEvent(name="x")], RaisingGetattribute()]


@pytest.mark.parametrize(
    "index", range(len(NOT_EVENTS)), ids=[type(v).__name__ for v in NOT_EVENTS]
)
def test_record_of_something_that_is_not_an_event_never_raises_and_is_counted(
    index: int,
) -> None:
    thing = NOT_EVENTS[index]
    ingest, client, raised = deliver(
        AgentEvent(name="before", event_id="evt_before"),
        thing,
        AgentEvent(name="after", event_id="evt_after"),
    )
    assert raised == [] and ingest.refused == []
    assert ingest.ids == ["evt_before", "evt_after"]
    stats = client._core.dispatcher.stats
    assert stats.delivered == 2 and stats.dropped_total == 1


# --- redaction paths and documents ----------------------------------------------------------------

path_segments = st.sampled_from(
    ["a", "b", "card", "*", "[*]", "[0]", "[1]", "['a.b']", '["x"]', "[", "]", ".", "..", "$",
     "[-1]", "[99999999999999999999]", "['", "\\", " ", "", "[ 0 ]"]
) | st.text(max_size=5)  # fmt: skip
paths = st.lists(path_segments, max_size=6).map(lambda parts: "$." + ".".join(parts)) | st.text(
    max_size=30
)
documents = json_values | st.dictionaries(
    st.sampled_from(["a", "b", "card", "a.b", "x"]), json_values, max_size=4
)


@FUZZ
@given(
    document=documents,
    rules=st.lists(
        st.builds(Redaction, paths, st.sampled_from(["remove", "mask", "MASK", "", "hash"])),
        max_size=4,
    ),
    raw=st.none() | st.text(max_size=40),
)
def test_redaction_never_raises_and_keeps_json_json(
    document: object, rules: list[Redaction], raw: str | None
) -> None:
    text = raw if raw is not None else json.dumps(document)
    out = apply_redactions(text, rules)
    assert isinstance(out, str)
    try:
        json.loads(text)
    except ValueError:
        assert out == text  # not JSON: sent as it came
    else:
        json.loads(out)  # JSON in, JSON out


@FUZZ
@given(
    document=st.dictionaries(st.sampled_from(["card", "a", "b"]), json_values, min_size=1),
    strategy=st.sampled_from(["remove", "mask"]),
)
def test_a_named_top_level_field_never_leaves(document: dict[str, Any], strategy: str) -> None:
    out = json.loads(apply_redactions(json.dumps(document), [Redaction("$.card", strategy)]))
    if strategy == "remove":
        assert "card" not in out
    elif "card" in document:
        assert out["card"] == MASK_TOKEN
    assert {k: v for k, v in out.items() if k != "card"} == {
        k: v for k, v in document.items() if k != "card"
    }


@FEW
@given(
    keys=st.lists(st.sampled_from(["card", "a", "b"]), min_size=1, max_size=4), n=st.integers(0, 3)
)
def test_a_wildcard_path_reaches_every_member(keys: list[str], n: int) -> None:
    document = {"items": [{k: i for k in keys} for i in range(n)]}
    out = json.loads(apply_redactions(json.dumps(document), [Redaction("$.items[*].card")]))
    assert all("card" not in item for item in out["items"])
    assert len(out["items"]) == n
