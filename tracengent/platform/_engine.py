"""The platform's request handling: bytes in, bytes out, shared by the served and embedded modes.

`Platform.handle(method, path, headers, body)` is the whole platform; the ASGI app and the
in-process httpx transport only adapt to it, so `tracengent dev` and `TRACENGENT_URL=local`
cannot behave differently. A request is routed by the generated route table (operation id to
handler), its body read and parsed strictly (`_requests`), its caller authenticated
(`_callers`), decided (`_decide`) and recorded (`_store`); every answer is a generated model.
Bad input is a 4xx with a JSON error that names the field, and stores nothing; nothing a client
sends can produce a 500.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote

import tracengent_api as api
from pydantic import ValidationError
from tracengent_api.routes import ROUTES

from . import _decide as decide, _wirejson as wirejson
from ._amounts import Unreadable, binding_context
from ._callers import Authenticator, Caller
from ._keys import SigningKeys
from ._policy import Policy
from ._requests import (
    ATTENUATE,
    AUTHORIZE,
    TOOL,
    TRACE_CLOSE,
    BodyLimits,
    HttpError,
    Reply,
    dump,
    error_reply,
    parse,
    parse_events,
)
from ._store import DecisionRecord, Grant as StoredGrant, NotTraceOwner, Store
from ._wire import MAX_AMOUNT, RESERVATION_ID, TRACE_ID

logger = logging.getLogger("tracengent.platform")
# A permission is "ns:action" in visible ASCII: a look-alike letter (Cyrillic "а" in "pаyments")
# would be a different permission that no limit names, granted by an agent's "*".
_PERMISSION = re.compile(r"[!-~]{1,200}")


def _header(headers: Mapping[str, str] | None, name: str) -> str | None:
    return next((v for k, v in (headers or {}).items() if k.lower() == name), None)


@dataclass(frozen=True)
class ToolCalled:
    """The tool a tool decision is for, as its record keeps it: an unbound tool has no
    permission, so without its name "which tool was refused?" has no answer."""

    transport: str  # "mcp" | "function" | "http"
    name: str  # the MCP tool or function name; for HTTP "POST api.stripe.com/v1/refunds"

    @classmethod
    def of(cls, request: api.ToolAuthorizeRequest) -> ToolCalled:
        transport = request.transport.value
        if transport != "http":
            name = request.tool_name if transport == "mcp" else request.function_name
            return cls(transport, name or "")
        path = request.path or "/"
        target = f"{request.host or ''}{path if path.startswith('/') else '/' + path}"
        method = (request.method or "").upper()
        return cls(transport, f"{method} {target}" if method else target)


class Platform:
    """One platform: a policy, a store, a signing key."""

    def __init__(
        self,
        policy: Policy,
        store: Store,
        *,
        clock: Callable[[], float] = time.time,
        max_body_bytes: int = 1024 * 1024,
        max_decompressed_bytes: int = 16 * 1024 * 1024,
    ) -> None:
        self.policy = policy
        self.store = store
        self.keys = SigningKeys.from_store(store)
        self._clock = clock
        self._limits = BodyLimits(max_body_bytes, max_decompressed_bytes)
        self._auth = Authenticator(policy, self.keys, store, clock)
        # The generated route table says which operation a request is; this says who answers it.
        self._handlers: dict[str, Callable[..., Reply]] = {
            "get_jwks": self._jwks,
            "oauth_token": self._token,
            "ingest_events": self._ingest_events,
            "ingest_traces": self._ingest_trace,
            "authorize": self._authorize,
            "get_approval": self._approval,
            "release_approval": self._release_approval,
            "tool_authorize": self._tool_authorize,
            "attenuate": self._attenuate,
        }

    # --- entry point ---------------------------------------------------------------------------

    def handle(self, method: str, path: str, headers: Mapping[str, str], body: bytes) -> Reply:
        lowered = {k.lower(): v for k, v in headers.items()}
        try:
            for route in ROUTES:
                match = route.pattern.fullmatch(path)
                if match is None:
                    continue
                if method.upper() != route.method:
                    raise HttpError(405, "method_not_allowed", f"{path} takes {route.method}")
                params = {k: unquote(v) for k, v in match.groupdict().items()}
                handler = self._handlers[route.operation]
                return handler(lowered, self._limits.read(lowered, body), **params)
            raise HttpError(404, "not_found", f"no such endpoint: {method} {path}")
        except HttpError as error:
            return error_reply(error.status, error.error, error.reason)
        except Exception:
            logger.exception("tracengent platform: unexpected error on %s %s", method, path)
            return error_reply(500, "internal", "unexpected error; see the log")

    # --- endpoints ---------------------------------------------------------------------------------

    def _jwks(self, headers: Mapping[str, str], body: bytes) -> Reply:
        return Reply(200, dump(self.keys.jwks()))

    def _token(self, headers: Mapping[str, str], body: bytes) -> Reply:
        try:
            form = dict(parse_qsl(body.decode(), keep_blank_values=True, strict_parsing=bool(body)))
            request = api.TokenRequest.model_validate(form)
        except (ValueError, UnicodeDecodeError, ValidationError):
            raise HttpError(400, "invalid_request", "expected a client_credentials form") from None
        agent = self.policy.agent_by_client_id(request.client_id)
        if agent is None or agent.client_secret != request.client_secret:
            raise HttpError(401, "invalid_client", "unknown client_id or wrong client_secret")
        if agent.disabled:
            raise HttpError(401, "invalid_client", f"agent {agent.agent_id} is disabled")
        ttl = self.policy.token_ttl_s
        token = self.keys.mint(
            {"sub": agent.agent_id, "permissions": list(agent.permissions)}, ttl, self._clock()
        )
        return Reply(
            200, dump(api.TokenResponse(access_token=token, token_type="Bearer", expires_in=ttl))
        )

    def _ingest_events(self, headers: Mapping[str, str], body: bytes) -> Reply:
        """Stores a batch whole, or refuses it whole.

        The store keeps events one by one, but a batch with one invalid event (not the contract,
        or a number out of range: a negative or huge token count, say) is a 400 for the batch,
        naming the event (`[3].usage.tokens: ...`). The SDK reads only the status: a 4xx is how
        it learns its events were not stored and counts them as dropped, while a 202 that
        quietly kept part of a batch would lose the rest uncounted. Keeping good events out of a
        bad batch is the sender's job, before it batches (the Python SDK validates each event).
        """
        caller = self._auth.caller(headers)
        wire = [json.loads(dump(event)) for event in parse_events(body)]
        fresh = self.store.add_events(caller.agent.agent_id, wire)
        for event in fresh:
            tokens = (event.get("usage") or {}).get("tokens")
            if event.get("type") == "llm_call" and isinstance(tokens, int):
                attributes = event.get("attributes")
                named = attributes.get(RESERVATION_ID) if isinstance(attributes, dict) else None
                reservation = named if isinstance(named, str) else None
                agent_id = caller.agent.agent_id
                self.store.reconcile_tokens(agent_id, event.get(TRACE_ID), tokens, reservation)
        return Reply(
            202, dump(api.IngestAccepted(accepted=len(fresh), duplicates=len(wire) - len(fresh)))
        )

    def _ingest_trace(self, headers: Mapping[str, str], body: bytes) -> Reply:
        """A trace's close, from the agent that owns the trace only (see `Store.trace_owner`).

        Another agent's close is a 403 and changes nothing, so it can neither end someone
        else's trace nor, by arriving first, make the owner's own close a no-op.
        """
        caller = self._auth.caller(headers)
        close = parse(TRACE_CLOSE, body)
        try:
            self.store.add_trace_close(caller.agent.agent_id, json.loads(dump(close)))
        except NotTraceOwner as refused:
            raise HttpError(
                403,
                "forbidden",
                f"trace {refused.trace_id} belongs to another agent: only the agent that opened"
                " a trace may close it",
            ) from None
        # what no llm_call settled (a crashed or cut-off call) is released with its trace
        self.store.release_tokens(caller.agent.agent_id, close.trace_id)
        return Reply(202, dump(api.IngestAccepted(accepted=1)))

    def _record(
        self,
        kind: str,
        caller: Caller,
        trace_id: str | None,
        permission: str | None,
        verdict: decide.Verdict,
        context: Any,
        outcome: str | None = None,
        tool: ToolCalled | None = None,
    ) -> tuple[str, str | None, decide.Verdict]:
        """Stores the decision (and its approval or token reservation); returns its ids and the
        verdict as finally decided: a reservation that no longer fits turns it into a deny."""
        decision_id = self.store.new_id("dec")
        approval_id = None
        if verdict.reserve_tokens is not None:
            budget = caller.agent.llm_token_budget
            tokens = verdict.reserve_tokens
            if not self.store.reserve_tokens(
                caller.agent.agent_id, tokens, trace_id, decision_id, budget=budget
            ):
                verdict = decide.Verdict(
                    "denied",
                    f"token budget exceeded: {tokens} requested do not fit in budget {budget}"
                    " beside what is committed (another call reserved first)",
                )
        if verdict.status == "pending_approval":
            approval_id = self.store.new_id("apr")
        self.store.add_decision(
            DecisionRecord(
                decision_id=decision_id,
                kind=kind,
                agent_id=caller.agent.agent_id,
                trace_id=trace_id,
                permission=permission,
                status=verdict.status,
                outcome=outcome,
                reason=verdict.reason,
                context=context,
                approval_id=approval_id,
                acting_for=caller.grant.acting_for if caller.grant else None,
                chain=caller.grant.chain if caller.grant else None,
                created_at=self._clock(),
                tool=tool.name if tool else None,
                transport=tool.transport if tool else None,
            )
        )
        if approval_id is not None:
            self.store.create_approval(
                approval_id,
                decision_id,
                caller.agent.agent_id,
                permission or "",
                context,
                trace_id,
                self.policy.approval_ttl_s,
            )
        return decision_id, approval_id, verdict

    def _decide(
        self,
        caller: Caller,
        permission: str,
        context: Mapping[str, Any],
        amount_where: str = "context.amount",
    ) -> decide.Verdict:
        committed = self.store.tokens_committed(caller.agent.agent_id)
        return decide.authorize(
            self.policy,
            caller.agent,
            caller.grant,
            permission,
            context,
            committed,
            amount_where=amount_where,
        )

    def _authorize(self, headers: Mapping[str, str], body: bytes) -> Reply:
        caller = self._auth.caller(headers)
        request = parse(AUTHORIZE, body, wirejson.AUTHORIZE_NUMBERS)
        if not _PERMISSION.fullmatch(request.permission):
            raise HttpError(
                400,
                "invalid_request",
                "permission: must be 1 to 200 visible ASCII characters, like payments:refund",
            )
        context = (
            request.context.model_dump(by_alias=True, exclude_none=True) if request.context else {}
        )
        verdict = self._decide(caller, request.permission, context)
        decision_id, approval_id, verdict = self._record(
            "authorize", caller, request.trace_id, request.permission, verdict, context
        )
        answer = api.AuthorizeResponse(
            allowed=verdict.allowed,
            status=verdict.status,
            reason=verdict.reason,
            decision_id=decision_id,
            approval_id=approval_id,
            acting_for=caller.grant.acting_for if caller.grant else None,
            chain=list(caller.grant.chain) if caller.grant else None,
            obligations=verdict.obligations,
        )
        return Reply(200, dump(answer))

    def _approval(self, headers: Mapping[str, str], body: bytes, approval_id: str) -> Reply:
        caller = self._auth.caller(headers)
        approval = self.store.approval(approval_id)
        if approval is None or approval.agent_id != caller.agent.agent_id:
            raise HttpError(404, "not_found", f"no approval {approval_id} for this agent")
        binds = None  # an approved call is bound by what its permission's limit binds
        if approval.status == "approved":
            binds = decide.obligations(self.policy, self.policy.limit_for(approval.permission))
        return Reply(200, dump(api.ApprovalResponse(status=approval.status, obligations=binds)))

    def _release_approval(self, headers: Mapping[str, str], body: bytes, approval_id: str) -> Reply:
        caller = self._auth.caller(headers)
        approval = self.store.approval(approval_id)
        if approval is None or approval.agent_id != caller.agent.agent_id:
            raise HttpError(404, "not_found", f"no approval {approval_id} for this agent")
        if approval.status != "approved":
            raise HttpError(409, "not_approved", f"approval {approval_id} is {approval.status}")
        if not self.store.release_approval(approval_id):
            raise HttpError(
                409, "already_released", f"approval {approval_id} already released its call"
            )
        return Reply(200, dump(api.ApprovalResponse(status=approval.status)))

    def _tool_authorize(self, headers: Mapping[str, str], body: bytes) -> Reply:
        caller = self._auth.caller(headers)
        request = parse(TOOL, body)
        transport = request.transport.value
        binding, permission = None, None
        if transport == "http":
            if not request.host:
                raise HttpError(400, "invalid_request", "an http tool call needs its host")
            if not self.policy.host_allowed(request.host):
                return self._tool_answer(
                    caller,
                    request,
                    decide.Verdict("denied", f"host {request.host} is not on the egress allowlist"),
                    "egress_deny",
                    None,
                )
            method, path = request.method or "", request.path or "/"
            conflict = decide.method_conflict(method, request.headers, request.query, request.body)
            if conflict is not None and self.policy.host_has_bindings(request.host):
                reason = (
                    f"{method.upper()} {request.host}{path}: {conflict}, and servers that honour"
                    " it act on another method than the policy would decide on; drop it"
                )
                verdict = decide.Verdict("denied", reason)
                return self._tool_answer(caller, request, verdict, "policy_deny", None)
            binding = self.policy.http_binding(request.host, method, path)
            if binding is None:
                verdict = decide.unbound_http_verdict(self.policy, request.host, method, path)
                outcome = "policy_allow" if verdict.allowed else "policy_deny"
                return self._tool_answer(caller, request, verdict, outcome, None)
        else:
            name = request.tool_name if transport == "mcp" else request.function_name
            if not name:
                raise HttpError(400, "invalid_request", f"a {transport} tool call needs its name")
            binding = self.policy.tool_binding(transport, name)
            if binding is None:
                verdict = decide.unbound_verdict(self.policy, transport, name)
                outcome = "policy_allow" if verdict.allowed else "policy_deny"
                return self._tool_answer(caller, request, verdict, outcome, None)
        permission = binding.permission
        try:
            context = binding_context(
                binding,
                request.body,
                query=request.query if transport == "http" else None,
                content_type=_header(request.headers, "content-type"),
            )
        except Unreadable as unreadable:
            verdict = decide.Verdict("denied", unreadable.reason)
            return self._tool_answer(caller, request, verdict, "policy_deny", permission)
        where = "the call's amount (its binding names no amount_field)"
        verdict = self._decide(caller, permission, context, where)
        if verdict.allowed:
            verdict = decide.Verdict(
                "allowed", verdict.reason, redactions=decide.tool_redactions(binding, verdict.limit)
            )
        outcome = {"allowed": "policy_allow", "denied": "policy_deny"}.get(
            verdict.status, "pending_approval"
        )
        return self._tool_answer(caller, request, verdict, outcome, permission, context)

    def _tool_answer(
        self,
        caller: Caller,
        request: api.ToolAuthorizeRequest,
        verdict: decide.Verdict,
        outcome: str,
        permission: str | None,
        context: Any = None,
    ) -> Reply:
        tool = ToolCalled.of(request)
        decision_id, approval_id, verdict = self._record(
            "tool", caller, request.trace_id, permission, verdict, context, outcome, tool
        )
        answer = api.ToolAuthorizeResponse(
            allowed=verdict.allowed,
            status=verdict.status,
            outcome=outcome,
            reason=verdict.reason,
            permission=permission,
            decision_id=decision_id,
            approval_id=approval_id,
            redactions=[api.Redaction(field=f, strategy=s) for f, s in verdict.redactions] or None,
        )
        return Reply(200, dump(answer))

    def _attenuate(self, headers: Mapping[str, str], body: bytes, grant_id: str) -> Reply:
        caller = self._auth.caller(headers, delegated_only=True)
        parent = caller.grant
        if parent is None or parent.grant_id != grant_id:
            raise HttpError(403, "forbidden", f"the bearer token is not for grant {grant_id}")
        request = parse(ATTENUATE, body, wirejson.ATTENUATE_NUMBERS)
        if self.policy.agent(request.granted_to_agent_id) is None:
            raise HttpError(
                403, "forbidden", f"unknown callee agent {request.granted_to_agent_id!r}"
            )
        wider = decide.covers_all(parent.permissions, request.permissions)
        if wider is not None:
            raise HttpError(
                403,
                "forbidden",
                f"'{wider}' is not covered by grant {grant_id}: attenuation can only narrow",
            )
        # A float: an integer past 2**63 would not bind to SQLite, and comparisons want one type.
        max_amount = (
            float(request.max_amount) if request.max_amount is not None else parent.max_amount
        )
        if (
            parent.max_amount is not None
            and max_amount is not None
            and max_amount > parent.max_amount
        ):
            raise HttpError(
                403,
                "forbidden",
                f"{MAX_AMOUNT} {max_amount:g} is larger than the parent's {parent.max_amount:g}",
            )
        now = self._clock()
        parent_exp = caller.token_exp or now
        expires = (
            parent_exp if request.expires_in_seconds is None else now + request.expires_in_seconds
        )
        if expires > parent_exp:
            raise HttpError(
                403, "forbidden", "the requested expiry is later than the parent token's"
            )
        child_id = self.store.new_id("dlg")
        chain = (*parent.chain, request.granted_to_agent_id)
        self.store.create_grant(
            StoredGrant(
                grant_id=child_id,
                parent_id=grant_id,
                agent_id=request.granted_to_agent_id,
                acting_for=parent.acting_for,
                chain=chain,
                permissions=tuple(request.permissions),
                max_amount=max_amount,
                expires_at=expires,
                revoked=False,
                created_at=now,
            )
        )
        ttl = max(1, int(expires - now))
        token = self.mint_delegated(
            child_id,
            request.granted_to_agent_id,
            parent.acting_for,
            chain,
            request.permissions,
            max_amount,
            ttl,
        )
        answer = api.AttenuateResponse(
            token=api.DelegatedToken(
                access_token=token, token_type="Bearer", expires_in=ttl, jti=child_id
            )
        )
        return Reply(200, dump(answer))

    # --- delegation administration (CLI) -----------------------------------------------------------

    def mint_delegated(
        self,
        grant_id: str,
        agent_id: str,
        acting_for: str,
        chain: tuple[str, ...],
        permissions: list[str] | tuple[str, ...],
        max_amount: float | None,
        ttl_s: int,
    ) -> str:
        claims: dict[str, Any] = {
            "sub": agent_id,
            "grant_id": grant_id,
            "acting_for": acting_for,
            "delegation_chain": list(chain),
            "delegated_permissions": list(permissions),
            "permissions": list(permissions),
            "jti": grant_id,
        }
        if max_amount is not None:
            claims["max_amount"] = max_amount
        return self.keys.mint(claims, ttl_s, self._clock())

    def grant(
        self,
        agent_id: str,
        permissions: list[str],
        *,
        acting_for: str,
        max_amount: float | None = None,
        ttl_s: int = 3600,
    ) -> tuple[str, str]:
        """Mint a root grant for `agent_id` on behalf of `acting_for`: (grant id, delegated token)."""
        agent = self.policy.agent(agent_id)
        if agent is None:
            raise ValueError(f"unknown agent {agent_id!r}: it is not in the policy")
        now = self._clock()
        grant_id = self.store.new_id("dlg")
        chain = (acting_for, agent_id)
        self.store.create_grant(
            StoredGrant(
                grant_id=grant_id,
                parent_id=None,
                agent_id=agent_id,
                acting_for=acting_for,
                chain=chain,
                permissions=tuple(permissions),
                max_amount=max_amount,
                expires_at=now + ttl_s,
                revoked=False,
                created_at=now,
            )
        )
        return grant_id, self.mint_delegated(
            grant_id, agent_id, acting_for, chain, permissions, max_amount, ttl_s
        )
