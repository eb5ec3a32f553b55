"""Issue #11, tried as an attacker would: tool arguments, authorization limits, delegation
arguments and fail-open, against `tracengent dev` over real HTTP on 127.0.0.1."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterator, Mapping
from decimal import Decimal
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pydantic
import pytest

from tracengent import (
    AsyncTracengentClient,
    DelegationException,
    LlmCallResult,
    NotAuthorizedException,
    ToolDeniedException,
    TracengentClient,
    governed_client,
)

from ._served import Exchange, PlatformProxy, Served, free_port, served_platform
from ._tool_server import ToolServer

pytestmark = pytest.mark.integration

POLICY = """
currency = "EUR"
unbound_tools = "deny"
egress_allowlist = ["127.0.0.1"]

[[agents]]
id = "demo-agent"
client_id = "key_demo"
client_secret = "ags_demo"
ingest_key = "agk_demo"
permissions = ["payments:*", "hotels:*", "llm:call"]
llm_token_budget = 50000

[[limits]]
permission = "payments:*"
max_amount = 5000

[[tools.function]]
name = "transfer_funds"
permission = "payments:transfer"
amount_field = "$.amount"
currency = "EUR"
redactions = [{ field = "$.card", strategy = "remove" }]

[[tools.mcp]]
name = "pay"
permission = "payments:transfer"
amount_field = "$.amount"
currency = "EUR"
redactions = [{ field = "$.card", strategy = "remove" }]

[[tools.http]]
host = "127.0.0.1"
method = "POST"
path = "/v1/refunds"
permission = "payments:refund"
amount_field = "$.amount"
"""


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with served_platform(tmp_path_factory.mktemp("attack"), POLICY) as platform:
        yield platform


def decisions(served: Served) -> int:
    store = served.store()
    try:
        return len(store.decisions())
    finally:
        store.close()


# --- tool arguments: what the platform sees is what the tool gets ------------------------------


@dataclasses.dataclass
class Transfer:
    to: str
    amount: int
    card: str | None = None


@dataclasses.dataclass
class StrictTransfer:
    to: str
    amount: int
    card: str


class TransferModel(pydantic.BaseModel):
    to: str
    amount: int
    card: str | None = None


class Hidden(pydantic.BaseModel):
    """A model that hides its amount from its own dump (and so from the platform)."""

    to: str
    amount: int = pydantic.Field(exclude=True)


class Args(Mapping[str, Any]):
    def __init__(self, **values: Any) -> None:
        self._values = values

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)


SHAPES = [
    pytest.param(lambda: Transfer("acct_1", 50, "4242"), id="dataclass"),
    pytest.param(lambda: TransferModel(to="acct_1", amount=50, card="4242"), id="pydantic"),
    pytest.param(
        lambda: MappingProxyType({"to": "acct_1", "amount": 50, "card": "4242"}), id="proxy"
    ),
    pytest.param(lambda: Args(to="acct_1", amount=50, card="4242"), id="mapping"),
]


@pytest.mark.parametrize("make", SHAPES)
def test_arguments_of_any_shape_reach_the_tool_redacted(served: Served, make: Any) -> None:
    received: list[Any] = []
    with TracengentClient(served.options()) as client:
        client.tools.guard_function("transfer_funds", make(), received.append)
        client.tools.guard_mcp("pay", make(), received.append)
    for arguments in received:
        dumped = json.dumps(pydantic.RootModel[Any](arguments).model_dump(mode="json"))
        assert "4242" not in dumped and "acct_1" in dumped, arguments
    given = make()
    # a dataclass or a model comes back as its type, any other Mapping as the JSON object
    expected = type(given) if isinstance(given, Transfer | TransferModel) else dict
    assert all(type(arguments) is expected for arguments in received), received


@pytest.mark.parametrize("make", SHAPES)
def test_arguments_of_any_shape_are_held_to_the_amount_limit(served: Served, make: Any) -> None:
    def big() -> Any:
        value = make()
        if isinstance(value, MappingProxyType | Args):
            return (
                type(value)(**{**dict(value), "amount": 9000})
                if isinstance(value, Args)
                else MappingProxyType({**dict(value), "amount": 9000})
            )
        return (
            dataclasses.replace(value, amount=9000)
            if dataclasses.is_dataclass(value)
            else value.model_copy(update={"amount": 9000})
        )

    ran: list[Any] = []
    with TracengentClient(served.options()) as client:
        with pytest.raises(ToolDeniedException):
            client.tools.guard_function("transfer_funds", big(), ran.append)
    assert ran == []


def test_arguments_a_redaction_leaves_incomplete_are_denied(served: Served) -> None:
    ran: list[Any] = []
    with TracengentClient(served.options()) as client:
        with pytest.raises(ToolDeniedException) as denied:
            client.tools.guard_function(
                "transfer_funds", StrictTransfer("a", 5, "4242"), ran.append
            )
    assert ran == [] and "no longer make a StrictTransfer" in denied.value.reason


def test_a_field_the_model_hides_from_the_platform_is_hidden_from_the_tool(served: Served) -> None:
    received: list[Any] = []
    with TracengentClient(served.options()) as client:
        with pytest.raises(ToolDeniedException):  # the platform sees no amount: not unlimited
            client.tools.guard_function(
                "transfer_funds", Hidden(to="a", amount=9000), received.append
            )
    assert received == []


@pytest.mark.parametrize(
    "arguments",
    [
        pytest.param({"to": "a", "amount": math.nan}, id="nan"),
        pytest.param({"to": "a", "amount": math.inf}, id="inf"),
        pytest.param({"to": "a", "amount": Decimal("NaN")}, id="decimal-nan"),
        pytest.param({"to": "a", "amount": object()}, id="object"),
        pytest.param({1: "a", "amount": 5}, id="int-key"),
    ],
)
def test_arguments_that_cannot_be_shown_as_json_are_denied_unasked(
    served: Served, arguments: Any
) -> None:
    before = decisions(served)
    ran: list[Any] = []
    with TracengentClient(served.options()) as client:
        with pytest.raises(ToolDeniedException) as denied:
            client.tools.guard_function("transfer_funds", arguments, ran.append)
    assert ran == [] and "not sent" in denied.value.reason
    assert decisions(served) == before  # nothing was asked


def test_a_governed_function_with_kwargs_is_decided_on_its_real_arguments(served: Served) -> None:
    received: list[dict[str, Any]] = []
    with TracengentClient(served.options()) as client:

        @client.tools.governed()
        def transfer_funds(to: str, **kwargs: Any) -> str:
            received.append({"to": to, **kwargs})
            return "sent"

        with pytest.raises(ToolDeniedException):  # amount 9000 > 5000, although in **kwargs
            transfer_funds("acct_1", amount=9000)
        assert transfer_funds("acct_1", amount=50, card="4242", memo="rent") == "sent"
    assert received == [{"to": "acct_1", "amount": 50, "memo": "rent"}]  # card removed


async def test_the_async_gate_converts_and_redacts_the_same_way(served: Served) -> None:
    received: list[Any] = []
    async with AsyncTracengentClient(served.options()) as client:
        await client.tools.guard_function(
            "transfer_funds", TransferModel(to="acct_1", amount=50, card="4242"), received.append
        )

        @client.tools.governed()
        async def transfer_funds(**kwargs: Any) -> None:
            received.append(kwargs)

        with pytest.raises(ToolDeniedException):
            await transfer_funds(to="a", amount=9000)
        await transfer_funds(to="a", amount=1, card="4242")
    assert received == [TransferModel(to="acct_1", amount=50), {"to": "a", "amount": 1}]


# --- authorization: a limit it cannot check is a deny -----------------------------------------


ALLOW_UP_TO_100 = json.dumps(
    {"allowed": True, "status": "allowed", "reason": "ok", "decisionId": "dec_x",
     "obligations": {"maxAmount": 100, "currency": "EUR"}}
).encode()  # fmt: skip


def allow_up_to_100(exchange: Exchange) -> tuple[int, dict[str, str], bytes] | None:
    if exchange.path != "/v1/authorize":
        return None
    return 200, {"content-type": "application/json"}, ALLOW_UP_TO_100


def test_authorize_itself_holds_an_allow_to_its_max_amount(served: Served, tmp_path: Path) -> None:
    """A proxy (or a platform) that answers an allow with maxAmount below the amount asked."""

    with PlatformProxy(served.url, allow_up_to_100) as proxy:
        with TracengentClient(served.options(base_url=proxy.url)) as client:
            over = client.authorize("payments:refund", {"amount": 280})
            within = client.authorize("payments:refund", {"amount": 80})
            unchecked = client.authorize("payments:refund")
            delegated_token = grant(served, tmp_path)
            session = client.begin_delegated_task(delegated_token)
            delegated = session.authorize("hotels:book", {"amount": 280})
    assert not over.allowed and "exceeds the decision's maxAmount 100" in over.reason
    assert within.allowed
    assert not unchecked.allowed and "no amount" in unchecked.reason
    assert not delegated.allowed and "maxAmount" in delegated.reason


async def test_async_authorize_holds_an_allow_to_its_max_amount(served: Served) -> None:
    with PlatformProxy(served.url, allow_up_to_100) as proxy:
        async with AsyncTracengentClient(served.options(base_url=proxy.url)) as client:
            over = await client.authorize("payments:refund", {"amount": 280})
    assert not over.allowed and "maxAmount" in over.reason


def grant(served: Served, tmp_path: Path) -> str:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "tracengent.cli", "grant", "demo-agent", "hotels:*", "--max-amount",
         "500", "--data", str(served.data)],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    return done.stdout.strip()


@pytest.mark.parametrize(
    "context",
    [
        {"amount": -280},
        {"amount": math.nan},
        {"amount": math.inf},
        {"amount": Decimal("-1")},
        {"amount": Decimal("sNaN")},
        {"amount": "280"},
        {"amount": True},
        {"estimatedTokens": -1_000_000},
        {"estimatedTokens": 1.5},
        {"amount": 1, "nested": {"rate": math.nan}},
    ],
    ids=repr,
)
def test_unreadable_numbers_are_refused_before_sending(
    served: Served, context: dict[str, Any]
) -> None:
    before = decisions(served)
    with TracengentClient(served.options()) as client:
        decision = client.authorize("payments:refund", context)
        with pytest.raises(NotAuthorizedException):
            client.ensure_authorized("payments:refund", context)
    assert not decision.allowed and "not sent" in decision.reason
    assert decisions(served) == before


def test_a_negative_token_estimate_never_skips_the_budget(served: Served) -> None:
    called: list[int] = []
    with TracengentClient(served.options()) as client:
        with client.begin_trace("spend the budget") as trace:
            for estimate in (-1_000_000, -1):
                with pytest.raises(NotAuthorizedException):
                    trace.track_llm_call(
                        "plan",
                        lambda: called.append(1) or LlmCallResult("x", tokens=900_000),
                        estimated_tokens=estimate,
                    )
    assert called == []


async def test_async_negative_token_estimate_is_refused(served: Served) -> None:
    async with AsyncTracengentClient(served.options()) as client:
        async with client.begin_trace("spend the budget") as trace:
            with pytest.raises(NotAuthorizedException):
                await trace.track_llm_call(
                    "plan", lambda: LlmCallResult("x", tokens=1), estimated_tokens=-5
                )


# --- delegation: a bad argument is a DelegationException --------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_amount": "600"},
        {"max_amount": math.nan},
        {"max_amount": -1},
        {"max_amount": True},
        {"expires_in_seconds": -60},
        {"expires_in_seconds": "60"},
        {"permissions": "hotels:book"},
        {"permissions": [None]},
        {"callee_agent_id": ""},
    ],
    ids=repr,
)
def test_attenuate_refuses_bad_arguments_locally(
    served: Served, tmp_path: Path, kwargs: dict[str, Any]
) -> None:
    arguments: dict[str, Any] = {"callee_agent_id": "agt_hotel", "permissions": ["hotels:book"]}
    arguments.update(kwargs)
    with TracengentClient(served.options()) as client:
        session = client.begin_delegated_task(grant(served, tmp_path))
        with pytest.raises(DelegationException):
            session.attenuate_for_call(**arguments)


# --- fail-open covers outages, never a refusal of the credentials ------------------------------


@pytest.mark.parametrize(
    "credentials",
    [
        {"client_secret": "ags_wrong"},
        {"client_id": None, "client_secret": None, "ingest_key": "agk_revoked"},
    ],
    ids=["refused-secret", "unknown-ingest-key"],
)
def test_fail_open_does_not_cover_refused_credentials(
    served: Served, credentials: dict[str, Any]
) -> None:
    with ToolServer() as tool:
        options = served.options(tool_governance_fail_open=True, **credentials)
        with TracengentClient(options) as client, governed_client(client) as http:
            with pytest.raises(ToolDeniedException):
                http.post(tool.url() + "/v1/refunds", json={"amount": 10})
            with pytest.raises(ToolDeniedException):
                client.tools.guard_function("transfer_funds", {"amount": 1}, print)
        assert tool.received == []


def test_fail_open_still_covers_an_unreachable_platform() -> None:
    with ToolServer() as tool:
        options = Served(f"http://127.0.0.1:{free_port()}", Path()).options(
            tool_governance_fail_open=True, authorize_timeout_s=1
        )
        with TracengentClient(options) as client, governed_client(client) as http:
            assert http.post(tool.url() + "/v1/refunds", json={"amount": 10}).status_code == 200
        assert len(tool.received) == 1
