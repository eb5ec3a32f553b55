"""The rules of a policy file that relate keys to each other, within a table and across tables.

They read a document validated with ``SALVAGE`` (see ``_policy_schema``): every value is valid,
a bad one reads as absent, and ``model_fields_set`` still tells which keys were written. So a
rule about presence ("a client_id needs its client_secret") sees what the file says, and a rule
about values (an approval threshold below the maximum) runs only on values that are usable.

``table_problems`` belong to one table and are listed with that table's other problems;
``cross_problems`` compare tables and come after all of those, in the order given here.
"""

from __future__ import annotations

from collections.abc import Iterator

from ._policy_match import host_pattern_covers, patterns_overlap, permission_matches
from ._policy_problems import Loc, Problem, key_path, quote
from ._policy_schema import HttpBindingTable, NamedBindingTable, PolicyDocument

__all__ = ["cross_problems", "table_problems", "usable_bindings"]

_Binding = HttpBindingTable | NamedBindingTable


def table_problems(doc: PolicyDocument) -> Iterator[Problem]:
    """Missing keys, keys that need each other, and values that contradict each other."""
    if "currency" not in doc.model_fields_set:
        yield Problem(
            ("currency",), 'missing; every policy names its currency, e.g. currency = "EUR"'
        )
    for index, agent in enumerate(doc.agents):
        if agent is None:
            continue
        at: Loc = ("agents", index)
        written = agent.model_fields_set
        if "id" not in written:
            yield Problem((*at, "id"), 'missing; every agent needs one, e.g. id = "my-agent"')
        elif agent.id is not None and agent.id != agent.id.strip():
            yield Problem((*at, "id"), "must not start or end with spaces")
        # Listed after the credentials themselves, before the keys that follow them.
        after_credentials: Loc = (*at, "ingest_key")
        if "client_id" in written and "client_secret" not in written:
            yield Problem(
                (*at, "client_secret"),
                "missing; a client_id needs its client_secret",
                order=after_credentials,
            )
        if "client_secret" in written and "client_id" not in written:
            yield Problem(
                (*at, "client_id"),
                "missing; a client_secret needs its client_id",
                order=after_credentials,
            )
        if not written & {"client_id", "client_secret", "ingest_key"}:
            yield Problem(
                at,
                "the agent has no credentials; set client_id and client_secret, or ingest_key, "
                "or both",
                order=after_credentials,
            )
    for index, limit in enumerate(doc.limits):
        if limit is None:
            continue
        at = ("limits", index)
        if "permission" not in limit.model_fields_set:
            yield Problem(
                (*at, "permission"),
                'missing; every limit names one, e.g. permission = "payments:*"',
            )
        top, over = limit.max_amount, limit.require_approval_over
        if top is not None and over is not None and over >= top:
            yield Problem(
                (*at, "require_approval_over"),
                f"is {over:g}, not below max_amount {top:g}: amounts above max_amount are "
                "denied, so no approval would ever be asked; lower it or raise max_amount",
            )
    known = None if doc.currency is None else {doc.currency, *doc.fx_rates}
    for at, binding in _all_bindings(doc):
        yield from _binding_problems(at, binding, known)


def _binding_problems(at: Loc, binding: _Binding, known: set[str] | None) -> Iterator[Problem]:
    written = binding.model_fields_set
    if "permission" not in written:
        yield Problem(
            (*at, "permission"),
            'missing; every binding needs one, e.g. permission = "ns:action"',
        )
    if isinstance(binding, HttpBindingTable):
        if "host" not in written:
            yield Problem(
                (*at, "host"), 'missing; every HTTP binding needs one, e.g. host = "api.x.com"'
            )
    elif "name" not in written:
        yield Problem((*at, "name"), f"missing; every {at[1]} binding needs the tool name it binds")
    if binding.currency is not None and known is not None and binding.currency not in known:
        yield Problem(
            (*at, "currency"),
            f"unknown currency {quote(binding.currency)}: add a rate for it under [fx_rates], or "
            "use the policy currency",
        )
    for key in ("currency_field", "currency"):
        if key in written and "amount_field" not in written:
            yield Problem(
                (*at, key),
                "a currency without amount_field means nothing; add one",
                order=(*at, "currency"),
            )
    for index, redaction in enumerate(binding.redactions):
        if redaction is not None and "field" not in redaction.model_fields_set:
            yield Problem(
                (*at, "redactions", index, "field"),
                'missing; name the field, e.g. field = "$.card"',
            )


def cross_problems(doc: PolicyDocument) -> Iterator[Problem]:
    """What no table shows alone: duplicates, hosts off the allowlist, unknown permissions."""
    usable = usable_bindings(doc)
    yield from _duplicate_bindings(usable)
    for at, binding in usable:
        host = binding.host if isinstance(binding, HttpBindingTable) else None
        if host is not None and not any(
            host_pattern_covers(allowed, host) for allowed in doc.egress_allowlist
        ):
            yield Problem(
                (*at, "host"),
                f"{quote(host)} is not on egress_allowlist, so its calls are refused before this "
                "binding applies; add it to egress_allowlist",
            )
    yield from _duplicate_agents(doc)
    yield from _unknown_permissions(doc, usable)


def usable_bindings(doc: PolicyDocument) -> list[tuple[Loc, _Binding]]:
    """The bindings that say what they bind and which permission it needs, with their key path."""
    return [
        (at, binding)
        for at, binding in _all_bindings(doc)
        if binding.permission is not None
        and (binding.host if isinstance(binding, HttpBindingTable) else binding.name) is not None
    ]


def _all_bindings(doc: PolicyDocument) -> Iterator[tuple[Loc, _Binding]]:
    if doc.tools is None:
        return
    for transport, tables in (
        ("http", doc.tools.http),
        ("mcp", doc.tools.mcp),
        ("function", doc.tools.function),
    ):
        for index, binding in enumerate(tables):
            if binding is not None:
                yield ("tools", transport, index), binding


def _duplicate_bindings(usable: list[tuple[Loc, _Binding]]) -> Iterator[Problem]:
    seen: dict[tuple[str | int | None, ...], Loc] = {}
    for at, binding in usable:
        if isinstance(binding, HttpBindingTable):
            key: tuple[str | int | None, ...] = ("http", binding.host, binding.method, binding.path)
            what = "the same host, method and path as"
        else:
            key = (at[1], binding.name)
            what = "the same name as"
        if key in seen:
            yield Problem(at, f"binds {what} {key_path(seen[key])}; keep one of them")
        else:
            seen[key] = at


def _duplicate_agents(doc: PolicyDocument) -> Iterator[Problem]:
    seen: dict[str, dict[str, Loc]] = {"id": {}, "client_id": {}, "ingest_key": {}}
    for index, agent in enumerate(doc.agents):
        if agent is None:
            continue
        at: Loc = ("agents", index)
        for key, value in (
            ("id", agent.id),
            ("client_id", agent.client_id),
            ("ingest_key", agent.ingest_key),
        ):
            if value is None:
                continue
            first = seen[key].get(value)
            if first is None:
                seen[key][value] = (*at, key)
            elif key == "id":
                yield Problem(
                    (*at, key),
                    f"duplicate agent id {quote(value)} (also {key_path(first)}); "
                    "give each agent its own id",
                )
            elif key == "client_id":
                yield Problem(
                    (*at, key),
                    f"duplicate client id {quote(value)} (also {key_path(first)}); "
                    "give each agent its own",
                )
            else:  # not echoed: a key is a secret, the other path is enough to find it
                yield Problem(
                    (*at, key),
                    f"the same ingest key as {key_path(first)}; give each agent its own",
                )


def _unknown_permissions(
    doc: PolicyDocument, usable: list[tuple[Loc, _Binding]]
) -> Iterator[Problem]:
    """Limits and bindings may only speak of permissions some agent can hold."""
    granted = [
        pattern for agent in doc.agents if agent is not None for pattern in agent.permissions
    ]
    seen: dict[str, Loc] = {}
    for index, limit in enumerate(doc.limits):
        if limit is None or limit.permission is None:
            continue
        where: Loc = ("limits", index, "permission")
        if limit.permission in seen:
            yield Problem(
                where,
                f"{quote(limit.permission)} is limited already in {key_path(seen[limit.permission])}; "
                "merge the two",
            )
        else:
            seen[limit.permission] = where
        if not any(patterns_overlap(g, limit.permission) for g in granted):
            yield _unknown(where, limit.permission)
    for at, binding in usable:
        permission = binding.permission
        if permission is not None and not any(permission_matches(g, permission) for g in granted):
            yield _unknown((*at, "permission"), permission)


def _unknown(where: Loc, permission: str) -> Problem:
    return Problem(
        where,
        f"references unknown permission {quote(permission)}: no agent's permissions include it; "
        "grant it to an agent or fix the name",
    )
