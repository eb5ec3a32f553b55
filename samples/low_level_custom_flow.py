"""A custom flow on the low-level API (`tracengent_api`): token → authorize → send an event.

Every request is built by a generated sans-IO builder and every answer read by its parser; this
script only chooses what to send and moves the bytes with httpx. With TRACENGENT_URL set it talks
to that platform (TRACENGENT_CLIENT_ID / TRACENGENT_CLIENT_SECRET, defaulting to the demo
identity); without it, an in-process stand-in answers with the wire contract's canonical answers.
"""

from __future__ import annotations

import json
import os
import uuid
from datetime import datetime, timezone

import httpx
import tracengent_api as api
from tracengent_api.contract import EXCHANGES


def contract_stand_in(request: httpx.Request) -> httpx.Response:
    """Answers each request with the contract's canonical answer for that operation."""
    for exchange in EXCHANGES.values():
        if (request.method, request.url.path) == (exchange.method, exchange.path):
            if exchange.response is None:
                return httpx.Response(202)
            answer = json.dumps(exchange.response).replace("<jwt>", "demo.jwt.token")
            return httpx.Response(200, content=answer, headers={"Content-Type": "application/json"})
    return httpx.Response(404, json={"error": "not_found"})


def main() -> None:
    base_url = os.environ.get("TRACENGENT_URL", "http://contract-stand-in")
    transport = None if "TRACENGENT_URL" in os.environ else httpx.MockTransport(contract_stand_in)
    with httpx.Client(transport=transport, timeout=10) as http:
        # 1. client credentials → access token
        credentials = api.TokenRequest(
            grant_type="client_credentials",
            client_id=os.environ.get("TRACENGENT_CLIENT_ID", "key_demo"),
            client_secret=os.environ.get("TRACENGENT_CLIENT_SECRET", "ags_demo"),
        )
        token = api.parse_oauth_token(
            http.send(api.build_oauth_token(credentials, base_url=base_url))
        )
        print(f"token: {token.token_type}, expires in {token.expires_in}s")

        # 2. ask before a sensitive action
        ask = api.AuthorizeRequest(permission="payments:refund", context={"amount": 280})
        request = api.build_authorize(ask, base_url=base_url, bearer_token=token.access_token)
        print(f"sent:  {request.method} {request.url.path} {request.content.decode()}")
        decision = api.parse_authorize(http.send(request))
        print(f"decision: allowed={decision.allowed} reason={decision.reason!r}")
        if decision.obligations:
            print(
                f"obligations: max {decision.obligations.max_amount} {decision.obligations.currency}, redact {decision.obligations.redact_fields}"
            )

        # 3. record what happened; the body is encoded once and could be resent as is on retry
        event = api.Event(
            event_id=f"evt_{uuid.uuid4().hex}",
            agent_id="demo-agent",
            type=api.EventType.ACTION,
            name="refund",
            status=api.EventStatus.SUCCESS,
            cost=api.Money(amount=280, currency="EUR"),
            occurred_at=datetime.now(timezone.utc).isoformat(),
            tags=["production"],
        )
        body = api.encode_ingest_events([event])
        try:
            api.parse_ingest_events(
                http.send(
                    api.build_ingest_events(
                        body, base_url=base_url, bearer_token=token.access_token
                    )
                )
            )
            print(f"delivered 1 event ({len(body)} bytes)")
        except api.ApiError as error:
            retry = f", retry in {error.retry_after}s" if error.retryable else ""
            print(f"not delivered: {error} (status {error.status_code}{retry})")


if __name__ == "__main__":
    main()
