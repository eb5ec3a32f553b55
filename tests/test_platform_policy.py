"""The local platform's policy file: the built-in demo policy, the lookups the engine makes, and
a clear, complete error for every way a policy can be wrong."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from tracengent._permissions import permission_matches
from tracengent.platform._policy import (
    DEFAULT_POLICY_TOML,
    AgentPolicy,
    PermissionLimit,
    Policy,
    PolicyError,
    ToolBinding,
    default_policy,
    load_policy,
    parse_policy,
)

# A small valid policy that tests extend: top-level keys go before the tables, tables after.
AGENTS = """
[[agents]]
id = "a1"
client_id = "key_1"
client_secret = "ags_1"
ingest_key = "agk_1"
permissions = ["payments:*", "tools:*", "flights:search"]
"""


def policy_text(top: str = "", tables: str = "", agents: str = AGENTS) -> str:
    if "egress_allowlist" not in top:
        top = 'egress_allowlist = ["api.example.com", "*.example.com"]\n' + top
    return f'currency = "EUR"\n{top}\n{agents}\n{tables}'


def make(top: str = "", tables: str = "", agents: str = AGENTS) -> Policy:
    return parse_policy(policy_text(top, tables, agents), "test.toml")


def error(top: str = "", tables: str = "", agents: str = AGENTS) -> PolicyError:
    with pytest.raises(PolicyError) as caught:
        make(top, tables, agents)
    return caught.value


def only_problem(top: str = "", tables: str = "", agents: str = AGENTS) -> str:
    problems = error(top, tables, agents).problems
    assert len(problems) == 1, problems
    return problems[0]


# --- the built-in demo policy -----------------------------------------------------------------


@pytest.fixture(scope="module")
def demo() -> Policy:
    return default_policy()


def test_default_policy_is_the_parsed_default_document(demo: Policy) -> None:
    assert demo == parse_policy(DEFAULT_POLICY_TOML)
    assert demo.currency == "EUR"
    assert demo.unbound_tools == "deny"
    assert demo.approval_ttl_s == 600
    assert demo.token_ttl_s == 900
    assert hash(demo) == hash(default_policy())  # frozen and hashable despite the fx mapping


def test_default_policy_accepts_exactly_the_contract_demo_identity(demo: Policy) -> None:
    agent = demo.agent_by_client_id("key_demo")
    assert agent is not None
    assert agent.agent_id == "demo-agent"
    assert agent.client_secret == "ags_demo"
    assert demo.agent_by_ingest_key("agk_demo") is agent
    assert demo.agent("demo-agent") is agent
    assert not agent.disabled
    assert agent.llm_token_budget is not None and agent.llm_token_budget >= 1000
    assert demo.agent_by_client_id("key_other") is None
    assert demo.agent_by_client_id("") is None
    assert demo.agent_by_ingest_key("agk_dem") is None
    assert demo.agent_by_ingest_key("") is None
    assert demo.agent("nobody") is None


def test_default_policy_has_the_delegation_receiver(demo: Policy) -> None:
    hotel = demo.agent("agt_hotel")
    assert hotel is not None
    assert hotel.permissions == ("hotels:*",)
    assert demo.agent_by_ingest_key("agk_hotel") is hotel
    assert hotel.client_id is None
    demo_agent = demo.agent("demo-agent")
    assert demo_agent is not None
    assert any(permission_matches(p, "hotels:book") for p in demo_agent.permissions)


def test_default_policy_grants_the_demo_scenario(demo: Policy) -> None:
    agent = demo.agent("demo-agent")
    assert agent is not None
    for permission in ("flights:search", "flights:book", "llm:call", "payments:charge"):
        assert any(permission_matches(p, permission) for p in agent.permissions), permission

    refund = demo.limit_for("payments:refund")
    assert refund is not None
    assert refund.max_amount is not None and refund.require_approval_over is not None
    assert 280 <= refund.require_approval_over < 400 <= refund.max_amount  # 280 ok, 400 pending
    assert refund.redact_fields == ("$.card",)

    charge = demo.limit_for("payments:charge")
    assert charge is not None and charge.permission == "payments:*"
    assert charge.require_approval_over is not None and charge.require_approval_over > 100

    stripe = demo.http_binding("api.stripe.com", "POST", "/v1/refunds")
    assert stripe is not None
    assert stripe.permission == "payments:refund"
    assert stripe.amount_field == "$.amount"
    assert stripe.redactions == (("$.card", "remove"),)

    search = demo.tool_binding("mcp", "search_flights")
    assert search is not None and search.permission == "flights:search"
    assert demo.tool_binding("mcp", "delete_everything") is None  # unbound: denied by default


def test_default_policy_egress(demo: Policy) -> None:
    for host in ("api.stripe.com", "api.example.com", "book.tracengent.test"):
        assert demo.host_allowed(host), host
    for host in ("evil.example.net", "tracengent.test", "api.stripe.com.evil.net"):
        assert not demo.host_allowed(host), host


def test_credentials_stay_out_of_repr(demo: Policy) -> None:
    assert "ags_demo" not in repr(demo)
    assert "agk_demo" not in repr(demo)
    assert "key_demo" in repr(demo)  # a client id is not a secret


# --- lookups ----------------------------------------------------------------------------------


def test_limit_for_picks_the_most_specific_pattern() -> None:
    policy = make(
        agents='[[agents]]\nid = "a"\ningest_key = "k"\npermissions = ["*"]\n',
        tables="""
[[limits]]
permission = "*"
max_amount = 1
[[limits]]
permission = "a:b:*"
max_amount = 3
[[limits]]
permission = "a:b:c"
max_amount = 4
[[limits]]
permission = "a:*"
max_amount = 2
""",
    )

    def amount(permission: str) -> float | None:
        limit = policy.limit_for(permission)
        return None if limit is None else limit.max_amount

    assert amount("a:b:c") == 4  # exact beats every pattern
    assert amount("a:b:d") == 3  # the longer namespace beats the shorter
    assert amount("a:x") == 2
    assert amount("ab:x") == 1  # "a:*" does not grant "ab:x"
    assert amount("other") == 1


def test_limit_for_without_a_match_is_none() -> None:
    policy = make(tables='[[limits]]\npermission = "payments:refund"\nmax_amount = 5\n')
    assert policy.limit_for("payments:charge") is None
    assert policy.limit_for("") is None


HTTP_BINDINGS = """
[[tools.http]]
host = "api.example.com"
method = "post"
path = "/v1/refunds"
permission = "payments:refund"
[[tools.http]]
host = "*.example.com"
path = "/v1/charges/*"
permission = "payments:charge"
[[tools.http]]
host = "*.example.com"
path = "/v1/**"
permission = "tools:any"
[[tools.http]]
host = "api.example.com"
permission = "tools:host"
"""


def test_http_binding_matches_host_method_and_path_glob() -> None:
    policy = make(tables=HTTP_BINDINGS)

    def permission(host: str, method: str, path: str) -> str | None:
        binding = policy.http_binding(host, method, path)
        return None if binding is None else binding.permission

    # Method case does not matter, and it was stored upper-case.
    assert permission("api.example.com", "POST", "/v1/refunds") == "payments:refund"
    assert permission("api.example.com", "post", "/v1/refunds") == "payments:refund"
    assert policy.tools[0].method == "POST"
    # Another method on the same path falls to a less specific binding: the exact host first.
    assert permission("api.example.com", "GET", "/v1/refunds") == "tools:host"
    assert permission("pay.example.com", "POST", "/v1/refunds") == "tools:any"
    # "*" is one segment, "**" any number; the exact host binding without a path catches the rest.
    assert permission("pay.example.com", "GET", "/v1/charges/ch_1") == "payments:charge"
    assert permission("pay.example.com", "GET", "/v1/charges/ch_1/capture") == "tools:any"
    assert permission("api.example.com", "GET", "/v2/anything") == "tools:host"
    assert permission("pay.example.com", "GET", "/v2/anything") is None
    # "*.example.com" is every subdomain, not the domain, and not a look-alike.
    assert permission("a.b.example.com", "GET", "/v1/x") == "tools:any"
    assert permission("example.com", "GET", "/v1/x") is None
    assert permission("badexample.com", "GET", "/v1/x") is None
    # Host case and port do not matter.
    assert permission("API.Example.COM:443", "POST", "/v1/refunds") == "payments:refund"


@pytest.mark.parametrize(
    "path",
    [
        "/v1/refunds?expand=charge",
        "/v1/refunds#frag",
        "/v1/refunds/",
        "//v1//refunds",
        "/v1/%72efunds",
        "/v1/x/../refunds",
        "/v1/./refunds",
        "v1/refunds",
    ],
)
def test_http_binding_cannot_be_dodged_by_spelling_the_path_differently(path: str) -> None:
    policy = make(tables=HTTP_BINDINGS)
    binding = policy.http_binding("api.example.com", "POST", path)
    assert binding is not None and binding.permission == "payments:refund"


def test_http_binding_ignores_non_hosts_and_other_transports() -> None:
    policy = make(tables=HTTP_BINDINGS + '[[tools.mcp]]\nname = "x"\npermission = "tools:x"\n')
    assert policy.http_binding("", "GET", "/") is None
    assert policy.http_binding("user@api.example.com", "POST", "/v1/refunds") is None
    assert policy.tool_binding("http", "x") is None


def test_tool_binding_by_transport_and_exact_name() -> None:
    policy = make(
        tables="""
[[tools.mcp]]
name = "search"
permission = "tools:search"
[[tools.function]]
name = "search"
permission = "payments:search"
"""
    )
    mcp = policy.tool_binding("mcp", "search")
    function = policy.tool_binding("FUNCTION", "search")
    assert mcp is not None and mcp.permission == "tools:search"
    assert function is not None and function.permission == "payments:search"
    assert policy.tool_binding("mcp", "Search") is None
    assert policy.tool_binding("grpc", "search") is None
    assert policy.tool_binding("mcp", "") is None


def test_host_allowed() -> None:
    policy = make(top='egress_allowlist = ["API.Stripe.com", "*.example.com", "10.0.0.1", "[::1]"]')
    assert policy.egress_allowlist == ("api.stripe.com", "*.example.com", "10.0.0.1", "::1")
    assert policy.host_allowed("api.stripe.com")
    assert policy.host_allowed("API.STRIPE.COM.")
    assert policy.host_allowed("api.stripe.com:8443")
    assert policy.host_allowed("deep.sub.example.com")
    assert policy.host_allowed("10.0.0.1:80")
    assert policy.host_allowed("[::1]:8080")
    assert policy.host_allowed("0:0::1")
    assert not policy.host_allowed("example.com")
    assert not policy.host_allowed("stripe.com")
    assert not policy.host_allowed("evil.example.net")
    assert not policy.host_allowed("x@evil.example.com")
    assert not policy.host_allowed("")


def test_to_policy_currency() -> None:
    policy = make(tables="[fx_rates]\nUSD = 0.92\ngbp = 1.17\n")
    assert policy.fx_rates == {"USD": 0.92, "GBP": 1.17}
    assert policy.to_policy_currency(100, None) == 100
    assert policy.to_policy_currency(100, "EUR") == 100
    assert policy.to_policy_currency(100, "eur") == 100
    assert policy.to_policy_currency(100, "USD") == pytest.approx(92)
    assert policy.to_policy_currency(100, " usd ") == pytest.approx(92)
    assert policy.to_policy_currency(10, "GBP") == pytest.approx(11.7)
    assert policy.to_policy_currency(100, "JPY") is None
    assert policy.to_policy_currency(100, "") is None
    assert policy.to_policy_currency(math.nan, None) is None
    assert policy.to_policy_currency(math.inf, "USD") is None


def test_a_policy_built_directly_answers_like_a_parsed_one() -> None:
    # The engine's tests may construct a Policy without TOML; lookups normalise for themselves.
    policy = Policy(
        currency="eur",
        fx_rates={"usd": 0.5},
        approval_ttl_s=1,
        token_ttl_s=1,
        agents=(AgentPolicy("a", ingest_key="k", permissions=("*",)),),
        limits=(PermissionLimit("x:*", max_amount=3),),
        tools=(ToolBinding("http", "x:y", host="API.example.com", method="get", path="/a/"),),
        egress_allowlist=("*.Example.com",),
        unbound_tools="allow",
    )
    assert policy.to_policy_currency(10, "USD") == 5
    assert policy.to_policy_currency(10, "EUR") == 10
    assert policy.host_allowed("api.example.com")
    assert policy.http_binding("api.example.com", "GET", "/a") is not None
    assert policy.agent_by_ingest_key("k") is not None


# --- defaults and the shape of a valid file ----------------------------------------------------


def test_minimal_policy_gets_the_documented_defaults() -> None:
    policy = parse_policy('currency = "usd"\n[[agents]]\nid = "a"\ningest_key = "k"\n')
    assert policy.currency == "USD"
    assert policy.approval_ttl_s == 600
    assert policy.token_ttl_s == 900
    assert policy.unbound_tools == "deny"
    assert policy.egress_allowlist == ()
    assert policy.fx_rates == {}
    assert policy.limits == ()
    assert policy.tools == ()
    assert policy.agents == (AgentPolicy("a", ingest_key="k"),)


def test_every_key_is_read() -> None:
    policy = make(
        top="""
approval_ttl_seconds = 1.5
token_ttl_seconds = 60
unbound_tools = "Allow"
""",
        tables="""
[fx_rates]
USD = 0.9
[[limits]]
permission = "payments:*"
max_amount = 10
require_approval_over = 5
redact_fields = ["$.card", "customer.email", "$.items[*].pan"]
[[tools.http]]
host = "api.example.com"
method = "PUT"
path = "/v1/x"
permission = "payments:put"
amount_field = "$.total.value"
currency_field = "$.total.currency"
currency = "usd"
redactions = [{ field = "$.card", strategy = "MASK" }, { field = "$.cvc" }]
[[tools.function]]
name = "pay"
permission = "payments:pay"
""",
        agents="""
[[agents]]
id = "a1"
client_id = "key_1"
client_secret = "ags_1"
disabled = true
permissions = ["payments:*"]
llm_token_budget = 0
""",
    )
    assert policy.approval_ttl_s == 1.5
    assert policy.token_ttl_s == 60
    assert policy.unbound_tools == "allow"
    assert policy.agents == (AgentPolicy("a1", "key_1", "ags_1", None, True, ("payments:*",), 0),)
    assert policy.limits == (
        PermissionLimit("payments:*", 10, 5, ("$.card", "customer.email", "$.items[*].pan")),
    )
    assert policy.tools == (
        ToolBinding(
            transport="http",
            permission="payments:put",
            host="api.example.com",
            method="PUT",
            path="/v1/x",
            amount_field="$.total.value",
            currency_field="$.total.currency",
            currency="USD",
            redactions=(("$.card", "mask"), ("$.cvc", "remove")),
        ),
        ToolBinding(transport="function", permission="payments:pay", name="pay"),
    )


# --- validation: each rule names the key and the fix -------------------------------------------


def test_unknown_top_level_key_is_named_with_a_suggestion() -> None:
    problem = only_problem(top='unbound_tool = "deny"')
    assert problem.startswith("unbound_tool: unknown key (did you mean 'unbound_tools'?)")
    assert "egress_allowlist" in problem  # the allowed keys are listed


@pytest.mark.parametrize(
    ("tables", "key"),
    [
        ('[[limits]]\npermission = "payments:*"\nmax_amout = 1\n', "limits[0].max_amout"),
        (
            '[[tools.mcp]]\nname = "x"\npermission = "tools:x"\nhost = "a.example.com"\n',
            "tools.mcp[0].host",
        ),
        (
            '[[tools.http]]\nhost = "api.example.com"\npermission = "tools:x"\nname = "x"\n',
            "tools.http[0].name",
        ),
        (
            '[[tools.function]]\nname = "f"\npermission = "tools:x"\n'
            'redactions = [{ field = "$.a", how = "mask" }]\n',
            "tools.function[0].redactions[0].how",
        ),
    ],
)
def test_unknown_keys_in_tables_are_named(tables: str, key: str) -> None:
    assert only_problem(tables=tables).startswith(f"{key}: unknown key")


def test_unknown_agent_key() -> None:
    problem = only_problem(agents=AGENTS + "clientid = 'x'\n")
    assert problem.startswith("agents[0].clientid: unknown key (did you mean 'client_id'?)")


def test_odd_keys_are_quoted_in_the_path() -> None:
    problem = only_problem(top='"my key" = 1')
    assert problem.startswith('"my key": unknown key')


@pytest.mark.parametrize(
    ("top", "expected"),
    [
        (
            'token_ttl_seconds = "900"',
            'token_ttl_seconds: expected a whole number, got the string "900"',
        ),
        ("token_ttl_seconds = 1.5", "token_ttl_seconds: expected a whole number"),
        ("token_ttl_seconds = 0", "token_ttl_seconds: must be at least 1"),
        ("approval_ttl_seconds = 0", "approval_ttl_seconds: must be greater than 0"),
        ("approval_ttl_seconds = -5", "approval_ttl_seconds: must be greater than 0"),
        ("approval_ttl_seconds = inf", "approval_ttl_seconds: must be a finite number"),
        ("approval_ttl_seconds = true", "approval_ttl_seconds: expected a number, got the boolean"),
        ('unbound_tools = "maybe"', 'unbound_tools: must be "allow" or "deny"'),
        ("unbound_tools = 1", "unbound_tools: expected a string"),
        ('egress_allowlist = "api.example.com"', "egress_allowlist: expected an array of strings"),
        ("fx_rates = 1", "fx_rates: expected a table"),
        ("tools = []", "tools: expected a table"),
        ("limits = 3", "limits: expected an array of tables"),
    ],
)
def test_wrong_types_and_values_at_the_top(top: str, expected: str) -> None:
    assert expected in only_problem(top=top)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("disabled = 'yes'", "agents[0].disabled: expected true or false"),
        ("permissions = 'payments:*'", "agents[0].permissions: expected an array of strings"),
        ("llm_token_budget = -1", "agents[0].llm_token_budget: must be at least 0"),
        ("llm_token_budget = 1e3", "agents[0].llm_token_budget: expected a whole number"),
    ],
)
def test_wrong_types_in_an_agent(line: str, expected: str) -> None:
    agents = f'[[agents]]\nid = "a"\ningest_key = "k"\n{line}\n'
    assert expected in only_problem(agents=agents)


def test_a_wrong_entry_in_an_array_is_named_by_index() -> None:
    agents = '[[agents]]\nid = "a"\ningest_key = "k"\npermissions = ["x:y", 3, ""]\n'
    problems = error(agents=agents).problems
    assert problems == (
        "agents[0].permissions[1]: expected a string, got the integer 3",
        "agents[0].permissions[2]: must not be empty",
    )


@pytest.mark.parametrize(
    "pattern", ["flights*", "*:book", "a:*:b", "flights:**", ":*", "has space"]
)
def test_invalid_permission_pattern(pattern: str) -> None:
    agents = (
        AGENTS + f'[[agents]]\nid = "b"\ningest_key = "k2"\npermissions = ["ok:*", "{pattern}"]\n'
    )
    problem = only_problem(agents=agents)
    assert problem.startswith("agents[1].permissions[1]: ")
    assert "is not a permission pattern" in problem
    assert '"flights:*"' in problem  # the fix: what a pattern looks like


def test_agents_must_exist() -> None:
    problem = only_problem(agents="")
    assert problem.startswith("agents: no agent declared")
    problem = only_problem(agents='[agents]\nid = "a"\ningest_key = "k"\n')
    assert problem == "agents: expected an array of tables: write [[agents]], not [agents]"


def test_agent_needs_an_id() -> None:
    # Only the id is reported: the limit using the agent's permissions is not "unknown" on top.
    problem = only_problem(
        agents='[[agents]]\ningest_key = "k"\npermissions = ["payments:*"]\n',
        tables='[[limits]]\npermission = "payments:refund"\nmax_amount = 1\n',
    )
    assert problem.startswith("agents[0].id: missing; every agent needs one")
    problems = error(agents='[[agents]]\ningest_key = "k"\n[[agents]]\ningest_key = "j"\n').problems
    assert [p.split(": ", 1)[0] for p in problems] == ["agents[0].id", "agents[1].id"]


def test_duplicate_agent_ids_client_ids_and_ingest_keys() -> None:
    second = """
[[agents]]
id = "a1"
client_id = "key_1"
client_secret = "ags_other"
ingest_key = "agk_1"
"""
    problems = error(agents=AGENTS + second).problems
    assert problems[0].startswith('agents[1].id: duplicate agent id "a1" (also agents[0].id)')
    assert problems[1].startswith(
        'agents[1].client_id: duplicate client id "key_1" (also agents[0].client_id)'
    )
    assert problems[2].startswith(
        "agents[1].ingest_key: the same ingest key as agents[0].ingest_key"
    )
    assert "agk_1" not in problems[2]  # a key is a secret: never echoed
    assert len(problems) == 3


def test_agent_credentials_must_be_complete() -> None:
    problem = only_problem(agents='[[agents]]\nid = "a"\npermissions = ["payments:*"]\n')
    assert problem.startswith("agents[0]: the agent has no credentials")
    assert "client_id and client_secret" in problem and "ingest_key" in problem

    problem = only_problem(agents='[[agents]]\nid = "a"\nclient_id = "key_a"\n')
    assert problem.startswith("agents[0].client_secret: missing; a client_id needs its")

    problem = only_problem(agents='[[agents]]\nid = "a"\nclient_secret = "s"\n')
    assert problem.startswith("agents[0].client_id: missing; a client_secret needs its")


def test_credentials_must_be_sendable_and_are_not_echoed() -> None:
    problem = only_problem(agents='[[agents]]\nid = "a"\ningest_key = "agk secret"\n')
    assert problem.startswith("agents[0].ingest_key: must be printable ASCII without spaces")
    assert "agk secret" not in problem


def test_limit_referencing_an_unknown_permission() -> None:
    problem = only_problem(tables='[[limits]]\npermission = "paymnts:refund"\nmax_amount = 5\n')
    assert problem.startswith(
        'limits[0].permission: references unknown permission "paymnts:refund"'
    )
    assert "grant it to an agent or fix the name" in problem


def test_limit_patterns_that_overlap_a_grant_are_known() -> None:
    # Broader than a grant ("*" over "payments:*") and narrower ("payments:refund") both concern
    # some agent; only a pattern no agent can ever use is unknown.
    policy = make(
        tables="""
[[limits]]
permission = "*"
max_amount = 9
[[limits]]
permission = "payments:refund"
max_amount = 5
[[limits]]
permission = "flights:*"
max_amount = 5
"""
    )
    assert len(policy.limits) == 3


@pytest.mark.parametrize("transport", ["http", "mcp", "function"])
def test_binding_referencing_an_unknown_permission(transport: str) -> None:
    where = 'host = "api.example.com"' if transport == "http" else 'name = "t"'
    problem = only_problem(tables=f'[[tools.{transport}]]\n{where}\npermission = "hotels:book"\n')
    assert problem.startswith(
        f'tools.{transport}[0].permission: references unknown permission "hotels:book"'
    )


def test_binding_needs_an_exact_permission() -> None:
    problem = only_problem(tables='[[tools.mcp]]\nname = "t"\npermission = "payments:*"\n')
    assert problem.startswith("tools.mcp[0].permission: a binding needs one exact permission")
    problem = only_problem(tables='[[tools.mcp]]\nname = "t"\n')
    assert problem.startswith("tools.mcp[0].permission: missing")


def test_currency_codes() -> None:
    make()  # the base policy is valid
    problem = only_problem(
        tables='[[tools.function]]\nname = "f"\npermission = "payments:x"\n'
        'amount_field = "$.a"\ncurrency = "EURO"\n'
    )
    assert problem.startswith('tools.function[0].currency: "EURO" is not a 3-letter currency code')
    problem = only_problem(tables="[fx_rates]\nUS1 = 0.9\n")
    assert problem.startswith('fx_rates.US1: "US1" is not a 3-letter currency code')
    problem = only_problem(tables='[fx_rates]\n"U S" = 0.9\n')
    assert problem.startswith('fx_rates."U S": ')


def test_policy_currency_is_required_and_checked() -> None:
    with pytest.raises(PolicyError) as caught:
        parse_policy('[[agents]]\nid = "a"\ningest_key = "k"\n', "p.toml")
    assert caught.value.problems == (
        'currency: missing; every policy names its currency, e.g. currency = "EUR"',
    )
    with pytest.raises(PolicyError) as caught:
        parse_policy('currency = "€"\n[[agents]]\nid = "a"\ningest_key = "k"\n', "p.toml")
    assert caught.value.problems[0].startswith("currency: ")
    assert "3-letter currency code" in caught.value.problems[0]


def test_binding_currency_must_have_a_rate() -> None:
    problem = only_problem(
        tables='[fx_rates]\nUSD = 0.9\n[[tools.function]]\nname = "f"\n'
        'permission = "payments:x"\namount_field = "$.a"\ncurrency = "JPY"\n'
    )
    assert problem.startswith('tools.function[0].currency: unknown currency "JPY"')
    assert "[fx_rates]" in problem
    make(
        tables='[fx_rates]\nUSD = 0.9\n[[tools.function]]\nname = "f"\n'
        'permission = "payments:x"\namount_field = "$.a"\ncurrency = "usd"\n'
    )


def test_fx_rates_must_be_positive_unique_and_not_the_policy_currency() -> None:
    assert only_problem(tables="[fx_rates]\nUSD = 0\n").startswith(
        "fx_rates.USD: must be greater than 0"
    )
    assert only_problem(tables="[fx_rates]\nUSD = 'x'\n").startswith(
        "fx_rates.USD: expected a number"
    )
    assert only_problem(tables="[fx_rates]\nUSD = 0.9\nusd = 0.8\n").startswith(
        "fx_rates.usd: USD has a rate already"
    )
    assert only_problem(tables="[fx_rates]\nEUR = 2\n").startswith(
        "fx_rates.EUR: EUR is the policy currency"
    )
    assert make(tables="[fx_rates]\nEUR = 1\n").fx_rates == {}


def test_currency_without_an_amount_is_refused() -> None:
    problem = only_problem(
        tables='[[tools.function]]\nname = "f"\npermission = "payments:x"\n'
        'currency_field = "$.currency"\n'
    )
    assert problem.startswith("tools.function[0].currency_field: a currency without amount_field")


@pytest.mark.parametrize("key", ["max_amount", "require_approval_over"])
def test_negative_amounts(key: str) -> None:
    problem = only_problem(tables=f'[[limits]]\npermission = "payments:*"\n{key} = -1\n')
    assert problem.startswith(f"limits[0].{key}: must not be negative, got the integer -1")


def test_approval_threshold_must_be_below_the_maximum() -> None:
    problem = only_problem(
        tables='[[limits]]\npermission = "payments:*"\nmax_amount = 100\n'
        "require_approval_over = 100\n"
    )
    assert problem.startswith("limits[0].require_approval_over: is 100, not below max_amount 100")


def test_duplicate_limits_and_bindings() -> None:
    problems = error(
        tables="""
[[limits]]
permission = "payments:*"
max_amount = 1
[[limits]]
permission = "payments:*"
max_amount = 2
[[tools.http]]
host = "api.example.com"
method = "post"
path = "/v1/x/"
permission = "payments:x"
[[tools.http]]
host = "API.example.com"
method = "POST"
path = "/v1/x"
permission = "payments:y"
[[tools.mcp]]
name = "t"
permission = "tools:a"
[[tools.mcp]]
name = "t"
permission = "tools:b"
"""
    ).problems
    assert problems == (
        "tools.http[1]: binds the same host, method and path as tools.http[0]; keep one of them",
        "tools.mcp[1]: binds the same name as tools.mcp[0]; keep one of them",
        'limits[1].permission: "payments:*" is limited already in limits[0].permission; '
        "merge the two",
    )


def test_unknown_transport() -> None:
    problem = only_problem(tables='[[tools.grpc]]\nname = "t"\npermission = "tools:a"\n')
    assert problem.startswith("tools.grpc: unknown transport")
    assert "[[tools.http]], [[tools.mcp]] or [[tools.function]]" in problem
    problem = only_problem(tables='[[tools.functions]]\nname = "t"\npermission = "tools:a"\n')
    assert "(did you mean 'function'?)" in problem


def test_binding_array_of_tables_is_required() -> None:
    problem = only_problem(tables='[tools.mcp]\nname = "t"\npermission = "tools:a"\n')
    assert problem == (
        "tools.mcp: expected an array of tables: write [[tools.mcp]], not [tools.mcp]"
    )


def test_http_binding_needs_a_valid_allowlisted_host() -> None:
    problem = only_problem(tables='[[tools.http]]\npath = "/x"\npermission = "tools:a"\n')
    assert problem.startswith("tools.http[0].host: missing; every HTTP binding needs one")

    problem = only_problem(
        tables='[[tools.http]]\nhost = "https://api.example.com/"\npermission = "tools:a"\n'
    )
    assert problem.startswith('tools.http[0].host: "https://api.example.com/" is not')
    assert "no scheme, port or path" in problem

    problem = only_problem(
        tables='[[tools.http]]\nhost = "api.stripe.com"\npermission = "tools:a"\n'
    )
    assert problem.startswith('tools.http[0].host: "api.stripe.com" is not on egress_allowlist')

    # A subdomain, or a narrower wildcard, of an allowlisted wildcard is covered.
    make(tables='[[tools.http]]\nhost = "*.eu.example.com"\npermission = "tools:a"\n')
    make(tables='[[tools.http]]\nhost = "pay.example.com"\npermission = "tools:a"\n')
    assert "not on egress_allowlist" in only_problem(
        tables='[[tools.http]]\nhost = "*.com"\npermission = "tools:a"\n'
    )


@pytest.mark.parametrize("transport", ["mcp", "function"])
def test_named_binding_needs_a_name(transport: str) -> None:
    problem = only_problem(tables=f'[[tools.{transport}]]\npermission = "tools:a"\n')
    assert problem.startswith(f"tools.{transport}[0].name: missing")


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('method = "PO ST"', 'tools.http[0].method: "PO ST" is not an HTTP method'),
        ('path = "v1/x"', 'tools.http[0].path: "v1/x" must start with "/"'),
        ('path = "/v1/x?y=1"', 'tools.http[0].path: "/v1/x?y=1" is not a path pattern'),
        ('path = "/v1/../x"', 'tools.http[0].path: "/v1/../x" has a "." or ".."'),
        ('amount_field = "$..a"', 'tools.http[0].amount_field: "$..a" is not a field'),
        ('amount_field = "$.a[*]"', 'tools.http[0].amount_field: "$.a[*]" must name'),
        (
            'amount_field = "$.a"\ncurrency_field = "$.items[*].c"',
            "tools.http[0].currency_field:",
        ),
        (
            'redactions = [{ field = "$.card", strategy = "hash" }]',
            'tools.http[0].redactions[0].strategy: must be "remove" or "mask"',
        ),
        ('redactions = [{ strategy = "mask" }]', "tools.http[0].redactions[0].field: missing"),
        (
            'redactions = [{ field = "$.a[x]" }]',
            'tools.http[0].redactions[0].field: "$.a[x]" is not a field path',
        ),
        ('redactions = ["$.card"]', "tools.http[0].redactions[0]: expected a table"),
    ],
)
def test_http_binding_fields(line: str, expected: str) -> None:
    tables = f'[[tools.http]]\nhost = "api.example.com"\npermission = "tools:a"\n{line}\n'
    assert only_problem(tables=tables).startswith(expected)


def test_limit_redact_fields_must_be_paths() -> None:
    problem = only_problem(
        tables='[[limits]]\npermission = "payments:*"\nredact_fields = ["$.ok", "$.a[x]"]\n'
    )
    assert problem.startswith('limits[0].redact_fields[1]: "$.a[x]" is not a field path')


def test_egress_patterns_are_checked() -> None:
    problems = error(top='egress_allowlist = ["api.example.com", "localhost:8080", "*"]').problems
    assert [p.split(": ", 1)[0] for p in problems] == [
        "egress_allowlist[1]",
        "egress_allowlist[2]",
    ]
    assert all("is not a host pattern" in p for p in problems)


def test_all_problems_are_reported_together_one_per_line() -> None:
    text = """
currency = "EUR"
egress_allowlist = ["api.example.com"]
unbound_tools = "sometimes"
typo = 1

[[agents]]
id = "a"
permissions = ["payments:*"]

[[limits]]
permission = "hotels:*"

[[tools.mcp]]
name = "t"
permission = "flights:search"
"""
    with pytest.raises(PolicyError) as caught:
        parse_policy(text, "policy.toml")
    err = caught.value
    assert err.source == "policy.toml"
    lines = str(err).splitlines()
    assert lines[0] == "policy.toml: the policy is invalid (5 problems); fix each key below:"
    assert [line.strip() for line in lines[1:]] == list(err.problems)
    keys = [problem.split(":", 1)[0] for problem in err.problems]
    assert keys == [
        "typo",
        "unbound_tools",
        "agents[0]",
        "limits[0].permission",
        "tools.mcp[0].permission",
    ]
    assert isinstance(err, ValueError)


def test_one_problem_is_singular() -> None:
    err = error(top="typo = 1")
    assert str(err).splitlines()[0] == (
        "test.toml: the policy is invalid (1 problem); fix each key below:"
    )


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ('currency = "EUR"\n\n[[agents]\nid = "a"\n', "at line 3, column"),
        ('currency = "EUR"\ncurrency = "USD"\n', "at line 2, column"),
        ('currency = "EUR"\nname = \n', "at line 2, column"),
        ('currency = "EUR', "line 1"),
    ],
)
def test_toml_syntax_errors_name_the_source_and_line(text: str, where: str) -> None:
    with pytest.raises(PolicyError) as caught:
        parse_policy(text, "policy.toml")
    message = str(caught.value)
    assert message.startswith("policy.toml: TOML syntax error ")
    assert where in message
    assert caught.value.problems == (message,)
    assert "\n" not in message


# --- files ------------------------------------------------------------------------------------


def test_load_policy_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(DEFAULT_POLICY_TOML, encoding="utf-8")
    assert load_policy(path) == default_policy()
    assert load_policy(str(path)) == default_policy()


def test_load_policy_names_the_file_in_errors(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(policy_text(top="typo = 1"), encoding="utf-8")
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    assert str(caught.value).startswith(f"{path}: the policy is invalid (1 problem)")

    path.write_text('currency = "EUR"\n[[agents]\n', encoding="utf-8")
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    assert str(caught.value).startswith(f"{path}: TOML syntax error at line 2")


def test_load_policy_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    assert str(caught.value) == (
        f"{path}: policy file not found; check the path, or omit it to use the built-in policy"
    )
    assert caught.value.source == str(path)


def test_load_policy_unreadable(tmp_path: Path) -> None:
    with pytest.raises(PolicyError) as caught:
        load_policy(tmp_path)
    assert str(caught.value).startswith(f"{tmp_path}: cannot read the policy file")

    path = tmp_path / "latin1.toml"
    path.write_bytes(b'currency = "EUR" # \xe9\n')
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    assert str(caught.value).startswith(f"{path}: the policy file is not UTF-8 text")


def test_the_readme_policy_example_is_a_valid_policy() -> None:
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    example = readme.split("```toml\n", 1)[1].split("```", 1)[0]
    policy = parse_policy(example, "README.md")
    assert policy.agent_by_client_id("key_demo") is not None
    assert policy.http_binding("api.stripe.com", "POST", "/v1/refunds") is not None
