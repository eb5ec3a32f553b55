"""The served platform answers exactly the generated route table: each route by its method, a
known path under another method with 405, any other path with 404, errors as `ErrorBody`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import tracengent_api as api
from tracengent_api.routes import ROUTES, Route

from ._served import Served, served_platform


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with served_platform(Path(tmp_path_factory.mktemp("routes"))) as platform:
        yield platform


def concrete(route: Route) -> str:
    """The route's path with every parameter filled in."""
    return route.path.replace("{", "").replace("}", "-1")


@pytest.mark.parametrize("route", ROUTES, ids=[r.operation for r in ROUTES])
def test_every_route_reaches_its_handler(served: Served, route: Route) -> None:
    answer = httpx.request(route.method, served.url + concrete(route), timeout=10)
    # Without credentials or a body each operation answers its own way, but never "no such
    # endpoint" nor "wrong method": the table routed the request to a handler.
    assert answer.status_code not in (404, 405), answer.text
    if route.operation == "get_jwks":
        assert answer.status_code == 200
        assert api.Jwks.model_validate_json(answer.content).keys
    else:
        assert answer.status_code in (400, 401)
        assert api.ErrorBody.model_validate_json(answer.content).reason


@pytest.mark.parametrize("route", ROUTES, ids=[r.operation for r in ROUTES])
def test_another_method_on_a_route_is_405(served: Served, route: Route) -> None:
    other = "GET" if route.method == "POST" else "POST"
    answer = httpx.request(other, served.url + concrete(route), timeout=10)
    assert answer.status_code == 405
    error = api.ErrorBody.model_validate_json(answer.content)
    assert error.error == "method_not_allowed"
    assert error.reason is not None and error.reason.endswith(f"takes {route.method}")


@pytest.mark.parametrize("path", ["/v1/authorize/extra", "/v1", "/", "/v1/approvals/"])
def test_a_path_not_in_the_table_is_404(served: Served, path: str) -> None:
    answer = httpx.get(served.url + path, timeout=10)
    assert answer.status_code == 404
    assert api.ErrorBody.model_validate_json(answer.content).error == "not_found"


def test_a_path_parameter_reaches_the_handler_percent_decoded(served: Served) -> None:
    credentials = api.TokenRequest(
        grant_type="client_credentials", client_id="key_demo", client_secret="ags_demo"
    )
    with httpx.Client(timeout=10) as http:
        token = api.parse_oauth_token(
            http.send(api.build_oauth_token(credentials, base_url=served.url))
        ).access_token
        answer = http.send(
            api.build_get_approval("apr x:1", base_url=served.url, bearer_token=token)
        )
    assert answer.status_code == 404
    assert api.ErrorBody.model_validate_json(answer.content).reason == (
        "no approval apr x:1 for this agent"
    )


def test_ingest_answers_what_it_kept_as_ingest_accepted(served: Served) -> None:
    event = api.Event(
        event_id="evt_routes_1",
        agent_id="demo-agent",
        type=api.EventType.ACTION,
        name="kept once",
        status=api.EventStatus.SUCCESS,
        occurred_at="2026-11-25T13:50:58+00:00",
    )
    with httpx.Client(timeout=10) as http:
        answers = [
            http.send(api.build_ingest_events([event], base_url=served.url, ingest_key="agk_demo"))
            for _ in range(2)
        ]
    assert [a.status_code for a in answers] == [202, 202]
    assert [api.IngestAccepted.model_validate_json(a.content) for a in answers] == [
        api.IngestAccepted(accepted=1, duplicates=0),
        api.IngestAccepted(accepted=0, duplicates=1),
    ]
