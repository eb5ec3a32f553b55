"""The egress gate decides on exactly what leaves, against a real tool server on 127.0.0.1.

Every test drives `governed_client` and `async_governed_client` (the `mode` parameter) against
the local platform (embedded) with a policy binding ``POST api.stripe.com/v1/refunds`` to
``payments:refund`` (amount at ``$.amount``, at most 500; ``$.card`` removed), and a loopback
HTTP server that records exactly what reaches it. ``api.stripe.com`` and ``api.example.com``
(allowlisted, unbound) reach that server through an inner transport that rewrites the address
and leaves the request (``Host`` header included) as the gate forwarded it.
"""

from __future__ import annotations

import asyncio
import codecs
import gzip
import json
import ssl
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tracengent import (
    AsyncTracengentClient,
    ToolDeniedException,
    TracengentClient,
    TracengentOptions,
    async_governed_client,
    governed_client,
)
from tracengent._credentials import is_credential_header
from tracengent._http_body import MAX_BODY_BYTES
from tracengent.platform import EmbeddedTransport, Platform, Store, parse_policy

POLICY = """
currency = "EUR"
egress_allowlist = ["api.stripe.com", "api.example.com"]

[[agents]]
id = "demo-agent"
client_id = "key_demo"
client_secret = "ags_demo"
ingest_key = "agk_demo"
permissions = ["payments:*"]

[[limits]]
permission = "payments:refund"
max_amount = 500

[[tools.http]]
host = "api.stripe.com"
method = "POST"
path = "/v1/refunds"
permission = "payments:refund"
amount_field = "$.amount"
redactions = [
    { field = "$.card", strategy = "remove" },
    { field = "$.items[0].pan", strategy = "mask" },
]
"""

REFUNDS = "https://api.stripe.com/v1/refunds"
UNBOUND = "https://api.example.com/v1/upload"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
JSON = {"Content-Type": "application/json"}


# --- a tool server (and forward proxy) that records what reaches it -----------------------------


@dataclass
class Arrived:
    method: str
    target: str
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)


class ToolServer:
    """Answers 200 `{"ok": true}`; `/redirect307` answers 307 to the bound refunds endpoint."""

    def __init__(self) -> None:
        self.arrived: list[Arrived] = []
        lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _body(self) -> bytes:
                if (self.headers.get("Transfer-Encoding") or "").lower() == "chunked":
                    data = b""
                    while True:
                        size = int(self.rfile.readline().split(b";")[0], 16)
                        chunk = self.rfile.read(size + 2)[:size]
                        if size == 0:
                            return data
                        data += chunk
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _handle(self) -> None:
                arrived = Arrived(self.command, self.path, list(self.headers.items()), self._body())
                with lock:
                    server.arrived.append(arrived)
                if urlsplit(self.path).path == "/redirect307":
                    self.send_response(307)
                    self.send_header("Location", "http://api.stripe.com/v1/refunds")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "11")
                self.end_headers()
                self.wfile.write(b'{"ok":true}')

            do_GET = do_POST = do_PUT = do_DELETE = _handle

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self._httpd.server_port)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)


def _to(port: int, request: httpx.Request) -> None:
    request.url = request.url.copy_with(scheme="http", host="127.0.0.1", port=port)


class ToLoopback(httpx.HTTPTransport):
    """Sends every request to the tool server, unchanged but for the address it connects to."""

    def __init__(self, port: int) -> None:
        super().__init__()
        self._port = port

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        _to(self._port, request)
        return super().handle_request(request)


class AsyncToLoopback(httpx.AsyncHTTPTransport):
    def __init__(self, port: int) -> None:
        super().__init__()
        self._port = port

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        _to(self._port, request)
        return await super().handle_async_request(request)


class RecordingPlatform(EmbeddedTransport):
    """The embedded platform, keeping the raw bytes of every tool-authorize request."""

    def __init__(self, platform: Platform) -> None:
        super().__init__(platform)
        self.asked: list[bytes] = []

    def _note(self, request: httpx.Request) -> None:
        if request.url.path == "/v1/tool-authorize":
            body = request.content
            if request.headers.get("content-encoding") == "gzip":
                body = gzip.decompress(body)
            self.asked.append(body)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self._note(request)
        return super().handle_request(request)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await request.aread()
        self._note(request)
        return await super().handle_async_request(request)


# --- one agent, sync or async ------------------------------------------------------------------

Outcome = httpx.Response | ToolDeniedException


@dataclass
class Agent:
    mode: str
    tool: ToolServer
    platform: RecordingPlatform
    options: TracengentOptions = field(default_factory=TracengentOptions.local)

    def loopback(self) -> Any:
        return (
            ToLoopback(self.tool.port) if self.mode == "sync" else AsyncToLoopback(self.tool.port)
        )

    def stream(self, chunks: list[bytes]) -> Any:
        """A streamed body (a generator) of the mode's kind."""
        if self.mode == "sync":
            return iter(chunks)

        async def agen() -> AsyncIterator[bytes]:
            for chunk in chunks:
                yield chunk

        return agen()

    def send(
        self, method: str, url: str, *, gate: dict[str, Any] | None = None, **request: Any
    ) -> Outcome:
        """One request through a fresh governed client; a denial is returned, not raised."""
        kwargs = {"inner": self.loopback(), **(gate or {})}
        if kwargs["inner"] is None:
            del kwargs["inner"]
        if self.mode == "sync":
            with TracengentClient(self.options, transport=self.platform) as client:
                with governed_client(client, **kwargs) as http:
                    try:
                        return http.request(method, url, **request)
                    except ToolDeniedException as denied:
                        return denied

        async def run() -> Outcome:
            async with AsyncTracengentClient(self.options, transport=self.platform) as client:
                async with async_governed_client(client, **kwargs) as http:
                    try:
                        return await http.request(method, url, **request)
                    except ToolDeniedException as denied:
                        return denied

        return asyncio.run(run())


@pytest.fixture
def tool() -> Iterator[ToolServer]:
    server = ToolServer()
    yield server
    server.close()


@pytest.fixture(params=["sync", "async"])
def agent(request: pytest.FixtureRequest, tool: ToolServer) -> Agent:
    platform = Platform(parse_policy(POLICY, "<gateway hardening policy>"), Store())
    return Agent(request.param, tool, RecordingPlatform(platform))


def denied(outcome: Outcome, *words: str) -> ToolDeniedException:
    assert isinstance(outcome, ToolDeniedException), outcome
    for word in words:
        assert word in outcome.reason, (word, outcome.reason)
    return outcome


def reached(outcome: Outcome) -> None:
    assert isinstance(outcome, httpx.Response), outcome
    assert outcome.json() == {"ok": True}


# --- 1. the gate is the outermost transport whatever httpx is told ------------------------------


def test_a_proxy_argument_goes_under_the_gate(agent: Agent, tool: ToolServer) -> None:
    proxy = {"inner": None, "proxy": tool.url}  # the tool server plays the forward proxy
    over = agent.send("POST", "http://api.stripe.com/v1/refunds", gate=proxy, json={"amount": 9000})
    denied(over, "exceeds maxAmount")
    assert tool.arrived == []  # the proxy never saw the refused request
    ok = agent.send(
        "POST", "http://api.stripe.com/v1/refunds", gate=proxy, json={"amount": 100, "card": "4"}
    )
    reached(ok)
    [arrived] = tool.arrived
    assert arrived.target == "http://api.stripe.com/v1/refunds"  # absolute form: it was proxied
    assert json.loads(arrived.body) == {"amount": 100}


def test_each_mount_goes_under_the_gate(agent: Agent, tool: ToolServer) -> None:
    mounts = {"inner": None, "mounts": {"all://api.stripe.com": agent.loopback()}}
    denied(agent.send("POST", REFUNDS, gate=mounts, json={"amount": 9000}), "exceeds maxAmount")
    proxied = {"inner": None, "mounts": {"all://api.stripe.com": _proxy_transport(agent, tool)}}
    denied(
        agent.send("POST", "http://api.stripe.com/v1/refunds", gate=proxied, json={"amount": 9000})
    )
    assert tool.arrived == []
    reached(agent.send("POST", REFUNDS, gate=mounts, json={"amount": 100, "card": "4"}))
    assert [json.loads(a.body) for a in tool.arrived] == [{"amount": 100}]


def _proxy_transport(agent: Agent, tool: ToolServer) -> Any:
    if agent.mode == "sync":
        return httpx.HTTPTransport(proxy=tool.url)
    return httpx.AsyncHTTPTransport(proxy=tool.url)


@pytest.mark.parametrize("make", [governed_client, async_governed_client])
def test_arguments_that_would_replace_the_gate_are_refused_naming_the_fix(
    make: Callable[..., Any],
) -> None:
    client = object()  # never reached: the arguments are refused first
    with pytest.raises(TypeError, match=r"transport=.*inner="):
        make(client, transport=httpx.MockTransport(lambda r: httpx.Response(200)))
    with pytest.raises(TypeError, match=r"verify=, http2=.*configure the inner transport"):
        make(
            client,
            inner=httpx.MockTransport(lambda r: httpx.Response(200)),
            verify=False,
            http2=True,
        )


@pytest.mark.parametrize("make", [governed_client, async_governed_client])
def test_arguments_of_older_httpx_that_would_bypass_the_gate_are_refused(
    make: Callable[..., Any],
) -> None:
    with pytest.raises(TypeError, match=r"proxies=.*past the gate.*proxy="):
        make(object(), proxies="http://127.0.0.1:1")
    with pytest.raises(TypeError, match=r"app=.*inner="):
        make(object(), app=lambda environ, start: [])


def test_transport_options_are_applied_under_the_gate() -> None:
    # httpx ignores verify= once transport= is given; the gate passes it to its inner transport.
    with TracengentClient(TracengentOptions.local()) as client:
        with governed_client(client, verify=False) as http:
            inner = http._transport._inner  # type: ignore[attr-defined]
            assert inner._pool._ssl_context.verify_mode == ssl.CERT_NONE


# --- 2. bodies the gate used to skip: read for the limit and the redaction ----------------------

OVER_LIMIT = [
    pytest.param({"data": {"amount": "9000"}}, id="form"),
    pytest.param({"content": b"amount=9000", "headers": FORM}, id="form-bytes"),
    pytest.param({"content": b"amount=9000"}, id="form-without-content-type"),
    pytest.param(
        {"content": b'{"amount":9000}', "headers": {"Content-Type": "text/plain"}},
        id="json-as-text",
    ),
    pytest.param({"content": b'{"amount":9000}'}, id="json-without-content-type"),
    pytest.param(
        {"content": codecs.BOM_UTF8 + b'{"amount":9000}', "headers": JSON}, id="json-utf8-bom"
    ),
    pytest.param(
        {"content": '{"amount":9000}'.encode("utf-16"), "headers": JSON}, id="json-utf16-bom"
    ),
    pytest.param(
        {"content": '{"amount":9000}'.encode("utf-16-be"), "headers": JSON}, id="json-utf16be"
    ),
    pytest.param({"content": '{"amount":9000}'.encode("utf-32-le")}, id="json-utf32-untyped"),
    pytest.param(
        {
            "content": '{"amount":9000}'.encode("utf-16-le"),
            "headers": {"Content-Type": "application/json; charset=utf-16"},
        },
        id="json-utf16-charset",
    ),
]


@pytest.mark.parametrize("body", OVER_LIMIT)
def test_an_amount_over_the_limit_is_denied_in_every_body_format(
    agent: Agent, tool: ToolServer, body: dict[str, Any]
) -> None:
    denied(agent.send("POST", REFUNDS, **body), "exceeds maxAmount 500")
    assert tool.arrived == []


@pytest.mark.parametrize(
    "spelled",
    [
        "9e3",
        "+9000",
        "09000",
        " 9000",
        "9000 ",
        "0x2328",
        "9_000",
        "٩٠٠٠",
        "9000.0000000000000001",
        "1" * 400,
    ],
)
def test_a_form_amount_not_in_plain_decimal_is_not_taken_for_a_smaller_number(
    agent: Agent, tool: ToolServer, spelled: str
) -> None:
    # Servers read some of these as 9000 (or more). The gate turns only plain decimals into
    # numbers; anything else reaches the platform as the string it is, which the platform
    # either reads as the same number or refuses to compare with the limit: a deny either way.
    denied(agent.send("POST", REFUNDS, data={"amount": spelled}))
    assert tool.arrived == []


@pytest.mark.parametrize(
    ("number", "named"),
    [
        ("NaN", "NaN"),
        ("Infinity", "Infinity"),
        ("-Infinity", "-Infinity"),
        ("1e400", "1e400"),
        ("-1e400", "-1e400"),
        ("1" + "0" * 400, "integer of 401 digits"),
    ],
)
def test_a_non_finite_number_is_denied_naming_it(
    agent: Agent, tool: ToolServer, number: str, named: str
) -> None:
    for headers in (JSON, {"Content-Type": "text/plain"}):
        outcome = agent.send("POST", REFUNDS, content=f'{{"amount":{number}}}', headers=headers)
        assert denied(outcome, named, "cannot be read").permission == "payments:refund"
    assert tool.arrived == []


def test_redactions_apply_to_a_form_and_it_stays_a_form(agent: Agent, tool: ToolServer) -> None:
    reached(agent.send("POST", REFUNDS, data={"amount": "100", "card": "4242", "note": "café"}))
    reached(
        agent.send(
            "POST",
            REFUNDS,
            content=b"amount=100&card%5Bnumber%5D=4242&card[cvc]=123&expand[]=a&expand[]=b",
            headers=FORM,
        )
    )
    first, second = tool.arrived
    assert first.header("content-type") == "application/x-www-form-urlencoded"
    assert parse_qs(first.body.decode()) == {"amount": ["100"], "note": ["café"]}
    assert int(first.header("content-length") or -1) == len(first.body)
    assert b"4242" not in second.body and b"123" not in second.body
    assert parse_qs(second.body.decode()) == {"amount": ["100"], "expand[]": ["a", "b"]}


def test_a_redaction_of_an_array_element_reaches_its_form_spelling(
    agent: Agent, tool: ToolServer
) -> None:
    form = b"amount=100&items%5B0%5D%5Bpan%5D=4242&items[0][qty]=1&items[1][pan]=5555"
    reached(agent.send("POST", REFUNDS, content=form, headers=FORM))
    reached(agent.send("POST", REFUNDS, json={"amount": 100, "items": [{"pan": "4242"}]}))
    as_form, as_json = tool.arrived
    assert parse_qs(as_form.body.decode()) == {
        "amount": ["100"],
        "items[0][pan]": ["***REDACTED***"],
        "items[0][qty]": ["1"],
        "items[1][pan]": ["5555"],
    }
    assert json.loads(as_json.body) == {"amount": 100, "items": [{"pan": "***REDACTED***"}]}


@pytest.mark.parametrize(
    ("codec", "headers"),
    [
        ("utf-8", {"Content-Type": "text/plain"}),
        ("utf-8", {}),
        ("utf-8-sig", JSON),
        ("utf-16", JSON),
        ("utf-32-be", {"Content-Type": "application/json; charset=utf-32"}),
    ],
)
def test_redactions_apply_to_json_in_any_encoding_and_it_keeps_its_encoding(
    agent: Agent, tool: ToolServer, codec: str, headers: dict[str, str]
) -> None:
    sent = json.dumps({"amount": 100, "card": "4242", "note": "café"}).encode(codec)
    reached(agent.send("POST", REFUNDS, content=sent, headers=headers))
    [arrived] = tool.arrived
    assert json.loads(arrived.body.decode(codec)) == {"amount": 100, "note": "café"}
    assert arrived.body.startswith(sent[:4] if codec in ("utf-8-sig", "utf-16") else b"")
    assert arrived.header("content-type") == headers.get("Content-Type")


def test_a_streamed_body_is_read_and_a_too_large_one_is_not_forwarded(
    agent: Agent, tool: ToolServer
) -> None:
    over = agent.send("POST", REFUNDS, content=agent.stream([b"amount=", b"9000"]), headers=FORM)
    denied(over, "exceeds maxAmount")
    reached(
        agent.send(
            "POST", REFUNDS, content=agent.stream([b'{"amount":100,', b'"card":"4"}']), headers=JSON
        )
    )
    big = b"x" * (MAX_BODY_BYTES + 1)
    huge = agent.send("POST", REFUNDS, content=agent.stream([big[:1000], big[1000:]]), headers=JSON)
    assert denied(huge, f"larger than {MAX_BODY_BYTES} bytes").permission == "payments:refund"
    denied(agent.send("POST", REFUNDS, content=big, headers=JSON), "larger than")
    reached(agent.send("POST", UNBOUND, content=agent.stream([big[:1000], big[1000:]])))
    assert [json.loads(a.body) for a in tool.arrived[:1]] == [{"amount": 100}]
    assert [a.body for a in tool.arrived[1:]] == [big]  # unbound: forwarded whole


UNREADABLE = [
    pytest.param(
        {"files": {"file": ("a.txt", b"amount=9000")}}, "multipart/form-data", id="multipart"
    ),
    pytest.param(
        {
            "content": gzip.compress(b'{"amount":9000}'),
            "headers": {"Content-Type": "application/json", "Content-Encoding": "gzip"},
        },
        "compressed",
        id="gzip",
    ),
    pytest.param(
        {"content": b"\x00\x01amount\xff", "headers": {"Content-Type": "application/octet-stream"}},
        "application/octet-stream",
        id="binary",
    ),
    pytest.param(
        {
            "content": b'{"amount":9000}',
            "headers": {"Content-Type": "application/json; charset=koi8-r"},
        },
        "koi8-r",
        id="unknown-charset",
    ),
    pytest.param(
        {
            "content": b'{"amount":90}',
            "headers": {"Content-Type": "application/json; charset=utf-16"},
        },
        "not the charset 'utf-16'",
        id="charset-disagrees",
    ),
    pytest.param(
        {"content": b"amount=100;amount=9000", "headers": FORM}, "';'", id="form-semicolon"
    ),
    pytest.param(
        {"content": b"amount=100&card.number=4242", "headers": FORM},
        "card.number",
        id="form-dotted-key",
    ),
    pytest.param(
        {"content": b"amount=100&card[number=4242", "headers": FORM},
        "card[number",
        id="form-open-bracket",
    ),
    pytest.param(
        {"content": b"hello", "headers": {"Content-Type": "text/plain"}}, "text/plain", id="text"
    ),
    pytest.param({"content": b'{"amount":9000}', "headers": FORM}, "plain name", id="json-as-form"),
    pytest.param(
        {
            "content": b"amount=9000",
            "headers": [("Content-Type", "application/json"), *FORM.items()],
        },
        "more than one Content-Type",
        id="two-content-types",
    ),
]


@pytest.mark.parametrize(("body", "named"), UNREADABLE)
def test_a_body_that_cannot_be_read_is_denied_on_a_bound_endpoint_saying_what(
    agent: Agent, tool: ToolServer, body: dict[str, Any], named: str
) -> None:
    outcome = denied(agent.send("POST", REFUNDS, **body), named, "cannot be read")
    assert outcome.permission == "payments:refund"
    assert tool.arrived == []


def test_a_body_that_cannot_be_read_still_goes_to_an_unbound_endpoint_unchanged(
    agent: Agent, tool: ToolServer
) -> None:
    reached(agent.send("POST", UNBOUND, files={"file": ("a.bin", b"\x00\xffdata")}))
    reached(agent.send("POST", UNBOUND, content=b'{"a":1,"a":2}', headers=JSON))
    upload, duplicated = tool.arrived
    assert b"\x00\xffdata" in upload.body
    assert duplicated.body == b'{"a":1,"a":2}'


# --- 3. duplicate keys: no reader may see another value than the one decided on ----------------


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"content": b'{"amount":9000,"amount":1}', "headers": JSON}, "appears twice"),
        ({"content": b'{"amount":1,"AMOUNT":9000}', "headers": JSON}, "differ only in case"),
        ({"content": b'{"amount":1,"x":{"a":1,"a":2}}', "headers": JSON}, "appears twice"),
        ({"content": b'{"amount":1,"\\u0061mount":9000}', "headers": JSON}, "appears twice"),
        (
            {"content": b'{"amount":9000,"amount":1}', "headers": {"Content-Type": "text/plain"}},
            "appears twice",
        ),
        ({"content": b"amount=9000&amount=1", "headers": FORM}, "more than once"),
        ({"content": b"amount=1&Amount=9000", "headers": FORM}, "differs only in case"),
        ({"content": b"amount=1&amount[]=9000", "headers": FORM}, "'amount[]'"),
    ],
)
def test_duplicate_keys_are_denied(
    agent: Agent, tool: ToolServer, body: dict[str, Any], named: str
) -> None:
    denied(agent.send("POST", REFUNDS, **body), named, "cannot be read")
    assert tool.arrived == []


def test_a_body_decided_on_is_forwarded_byte_for_byte_when_nothing_is_redacted(
    agent: Agent, tool: ToolServer
) -> None:
    sent = b'{ "amount" : 100,\n  "note": "caf\\u00e9" }'
    reached(agent.send("POST", REFUNDS, content=sent, headers=JSON))
    assert tool.arrived[0].body == sent


# --- the query is part of what is decided -------------------------------------------------------


def test_a_query_parameter_also_in_the_body_is_denied_and_the_query_is_redacted(
    agent: Agent, tool: ToolServer
) -> None:
    both = agent.send("POST", REFUNDS + "?amount=9000", json={"amount": 100})
    denied(both, "'amount' is both in the query and in the body")
    reached(agent.send("POST", REFUNDS + "?card=4242&expand[]=x", json={"amount": 100}))
    [arrived] = tool.arrived
    assert "4242" not in arrived.target
    assert parse_qs(urlsplit(arrived.target).query) == {"expand[]": ["x"]}


# --- 4. sent where it was decided: host, path, method --------------------------------------------


@pytest.mark.parametrize(
    ("request_kwargs", "named"),
    [
        ({"headers": {"Host": "evil.example"}}, "'evil.example'"),
        ({"headers": {"Host": "api.stripe.com.evil.example"}}, "'api.stripe.com'"),
        ({"headers": {"X-Forwarded-Host": "evil.example"}}, "x-forwarded-host"),
        ({"headers": {"Forwarded": 'for=1.2.3.4;host="evil.example"'}}, "Forwarded"),
        ({"headers": {"X-HTTP-Method-Override": "DELETE"}}, "x-http-method-override"),
        ({"headers": {"X-Original-URL": "/v1/refunds"}}, "x-original-url"),
        ({"extensions": {"target": b"/v1/refunds"}}, "target extension"),
        ({"extensions": {"sni_hostname": "evil.example"}}, "sni_hostname"),
        ({"extensions": {"unheard_of": 1}}, "'unheard_of'"),
        ({"content": b"amount=1&_method=DELETE", "headers": FORM}, "_method"),
        ({"content": b'{"a":1}', "headers": {**JSON, "Content-Length": "3"}}, "Content-Length"),
    ],
)
def test_a_request_that_would_go_elsewhere_than_it_says_is_refused(
    agent: Agent, tool: ToolServer, request_kwargs: dict[str, Any], named: str
) -> None:
    outcome = agent.send("POST", "https://api.stripe.com/v1/balance", **request_kwargs)
    denied(outcome, named)
    assert tool.arrived == []
    assert agent.platform.asked == []  # refused before anyone was asked


def test_a_host_header_naming_the_urls_own_host_is_fine(agent: Agent, tool: ToolServer) -> None:
    reached(
        agent.send(
            "GET", "https://api.example.com/v1/balance", headers={"Host": "API.Example.com:443"}
        )
    )
    assert tool.arrived[0].header("host") == "API.Example.com:443"


def test_a_redirect_hop_is_decided_on_its_own_body(agent: Agent, tool: ToolServer) -> None:
    hop = agent.send(
        "POST",
        "https://api.example.com/redirect307",
        data={"amount": "9000"},
        gate={"follow_redirects": True},
    )
    denied(hop, "exceeds maxAmount")
    assert [a.target for a in tool.arrived] == ["/redirect307"]


# --- 5. credential headers never reach the platform ---------------------------------------------

CREDENTIALS = {
    "X-Api-Key": "k-0001",
    "Api-Key": "k-0002",
    "X-Auth-Token": "k-0003",
    "X-Amz-Security-Token": "k-0004",
    "X-Goog-Api-Key": "k-0005",
    "Apikey": "k-0006",
    "Private-Token": "k-0007",
    "X-Csrf-Token": "k-0008",
    "X-Session-Id": "k-0009",
    "X-Hub-Signature": "k-0010",
    "X-Forwarded-Authorization": "k-0011",
    "X-Password": "k-0012",
    "X-Upstream": "Bearer k-0013",
    "X-Basic": "Basic k-0014",
    "X-Opaque": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJrLTAwMTUifQ.c2lnbmF0dXJl",
    "X-Vendor": "sk-k0016abcdefgh",
    "X-Ingest": "agk_k0017",
    "X-Client": "ags_k0018",
    "X-Long": "a1b2c3d4e5f6a7b8c9d0a1b2c3d4e5f6k0019",
    "Authorization": "Bearer k-0020",
    "Cookie": "session=k-0021",
}


def test_no_credential_header_or_parameter_reaches_the_platform(
    agent: Agent, tool: ToolServer
) -> None:
    reached(
        agent.send(
            "GET",
            "https://bob:k-0032@api.example.com/v1/things?api_key=k-0030&access_token=k-0031&page=2",
            headers={**CREDENTIALS, "X-Purpose": "refund-review"},
        )
    )
    [asked] = agent.platform.asked
    text = asked.decode()
    leaked = [value for value in CREDENTIALS.values() if value in text]
    assert leaked == [] and "k-00" not in text, text
    told = json.loads(asked)
    assert told["headers"]["x-purpose"] == "refund-review"
    assert told["query"] == {"page": "2"}
    arrived = tool.arrived[0]  # the tool itself gets every header, of course
    assert arrived.header("x-api-key") == "k-0001"


@pytest.mark.parametrize(
    ("name", "value", "credential"),
    [
        ("X-Api-Key", "abc", True),
        ("x-amz-security-token", "abc", True),
        ("Private-Token", "abc", True),
        ("X-Sig", "abc", True),
        ("X-Anything", "Bearer abc", True),
        ("X-Anything", "Token abc", True),
        ("X-Anything", "eyJhbGciOi.eyJzdWIi.sig", True),
        ("X-Anything", "sk-live1234", True),
        ("X-Anything", "agk_x", True),
        ("X-Anything", "AKIAABCDEFGHIJKLMNOP", True),
        ("X-Anything", "0123456789abcdef0123456789abcdef", True),
        ("Content-Type", "application/json", False),
        ("Accept", "application/vnd.api+json", False),
        ("User-Agent", "python-httpx/0.28.1", False),
        ("Host", "api.stripe.com", False),
        ("Content-Length", "1234", False),
        ("X-Purpose", "refund review for order 12", False),
        ("Stripe-Version", "2024-06-20", False),
    ],
)
def test_the_credential_rule(name: str, value: str, credential: bool) -> None:
    assert is_credential_header(name, value) is credential
