"""No secret in any log record: the demo scenario with every logger at its most verbose.

`samples/demo_agent.py` runs end to end twice, against the embedded platform and against the
platform served over real HTTP by uvicorn in this process, with every logger (tracengent, the
platform, httpx, httpcore, h11, uvicorn, asyncio...) propagating to pytest's capture at the
lowest level. Then no record may contain the client secret, the ingest key, any token the
platform minted during the run (captured as it was signed), or an Authorization header: not in
its message, its exception text or its stack. The demo's own output is held to the same rule.

A last test feeds secrets that cannot be sent as a header (a trailing newline, as read from a
mounted secret file) and checks they do not come back in a log, a decision or an exception.
"""

from __future__ import annotations

import importlib.util
import logging
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tracengent import (
    AgentEvent,
    DelegationException,
    TracengentClient,
    TracengentConfigError,
    TracengentOptions,
)
from tracengent.platform import PlatformApp, open_platform, use_embedded_platform
from tracengent.platform._keys import SigningKeys

from ._fault_front import FaultFront

ROOT = Path(__file__).resolve().parent.parent
CLIENT_SECRET = "ags_demo"
INGEST_KEY = "agk_demo"
HEADER_TEXTS = ("Authorization: Bearer", "authorization: Bearer", "'authorization'", "Bearer ey")
NOISY_LOGGERS = (
    "tracengent",
    "tracengent.platform",
    "httpx",
    "httpcore",
    "h11",
    "uvicorn",
    "uvicorn.error",
    "uvicorn.access",
    "asyncio",
)
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


def load_demo() -> ModuleType:
    spec = importlib.util.spec_from_file_location("demo_agent", ROOT / "samples" / "demo_agent.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def every_log(caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Capture every record of every logger at the lowest level (uvicorn's TRACE included)."""
    for name in NOISY_LOGGERS:
        logging.getLogger(name)  # exists before the loop below, so its propagate is reset too
    for logger in [logging.getLogger(), *logging.root.manager.loggerDict.values()]:
        if isinstance(logger, logging.Logger):
            monkeypatch.setattr(logger, "propagate", True)
            monkeypatch.setattr(logger, "disabled", False)
    caplog.set_level(1)
    for name in NOISY_LOGGERS:
        caplog.set_level(1, logger=name)
    return caplog


@pytest.fixture
def minted(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every token the in-process platform signs during the test."""
    tokens: list[str] = []
    original = SigningKeys.mint

    def mint(self: SigningKeys, *args: Any, **kwargs: Any) -> str:
        token = original(self, *args, **kwargs)
        tokens.append(token)
        return token

    monkeypatch.setattr(SigningKeys, "mint", mint)
    return tokens


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for name in (
        "TRACENGENT_URL",
        "TRACENGENT_CLIENT_ID",
        "TRACENGENT_CLIENT_SECRET",
        "TRACENGENT_INGEST_KEY",
        "TRACENGENT_AGENT_ID",
        "TRACENGENT_POLICY",
        "TRACENGENT_DELEGATED_TOKEN",
        "TRACENGENT_ENFORCEMENT",
    ):
        monkeypatch.delenv(name, raising=False)
    data = tmp_path / "data"
    monkeypatch.setenv("TRACENGENT_DATA", str(data))
    monkeypatch.setattr(sys, "argv", ["demo_agent.py"])
    return data


def record_texts(record: logging.LogRecord) -> list[str]:
    """Everything a handler could write for `record`: message, exception, stack, extras."""
    texts = [record.getMessage()]
    if record.exc_info:
        texts.append(logging.Formatter().formatException(record.exc_info))
    texts += [text for text in (record.exc_text, record.stack_info) if text]
    texts += [repr(value) for key, value in vars(record).items() if key not in _STANDARD]
    return texts


def secrets_in(texts: list[str], secrets: list[str]) -> list[tuple[str, str]]:
    return [
        (secret[:12] + "…", text[:300]) for text in texts for secret in secrets if secret in text
    ]


def token_secrets(tokens: list[str]) -> list[str]:
    """Each token whole, and its signature, which is what makes it usable."""
    return [*tokens, *(t.rsplit(".", 1)[-1] for t in tokens if "." in t)]


def assert_no_secret_logged(
    caplog: pytest.LogCaptureFixture, tokens: list[str], output: str
) -> None:
    secrets = [CLIENT_SECRET, INGEST_KEY, *HEADER_TEXTS, *token_secrets(tokens)]
    leaks = [
        (record.name, *leak)
        for record in caplog.records
        for leak in secrets_in(record_texts(record), secrets)
    ]
    assert leaks == []
    assert secrets_in([output], secrets) == []


def test_the_demo_against_the_embedded_platform_logs_no_secret(
    every_log: pytest.LogCaptureFixture,
    minted: list[str],
    clean_env: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    previous = use_embedded_platform(None)  # opened afresh in this test's data dir
    try:
        assert load_demo().main() == 0
    finally:
        use_embedded_platform(previous)
    output = capsys.readouterr().out
    assert "widening refused" in output  # the whole scenario ran, delegation included
    assert len(minted) >= 3  # an access token, a grant, an attenuated child
    assert any(r.name.startswith("tracengent") or r.name == "httpx" for r in every_log.records)
    assert_no_secret_logged(every_log, minted, output)


class ServedInProcess:
    """The platform served over HTTP by uvicorn on a thread of this process, so its logs (and
    the client's httpx/httpcore/h11 logs) reach pytest's capture."""

    def __init__(self, data: Path) -> None:
        import uvicorn

        self.platform = open_platform(None, data)
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        config = uvicorn.Config(
            PlatformApp(self.platform), log_config=None, log_level="trace", access_log=True
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )
        self.stop_reviewing = threading.Event()
        self.reviewer = threading.Thread(target=self._review, daemon=True)

    def _review(self) -> None:
        """A person approving whatever waits (the demo's refund), as `tracengent approve` would."""
        while not self.stop_reviewing.wait(0.1):  # bounded: stopped by the test
            for approval in self.platform.store.approvals("pending"):
                self.platform.store.decide_approval(approval.approval_id, True)

    def __enter__(self) -> ServedInProcess:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:  # bounded by the deadline
            assert self.thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)
        self.reviewer.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop_reviewing.set()
        self.reviewer.join(5)
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()
        self.platform.store.close()


@pytest.fixture
def served(clean_env: Path) -> Iterator[ServedInProcess]:
    with ServedInProcess(clean_env) as server:
        yield server


def test_the_demo_over_http_logs_no_secret(
    every_log: pytest.LogCaptureFixture,
    minted: list[str],
    served: ServedInProcess,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _, delegated = served.platform.grant(
        "demo-agent", ["hotels:*"], acting_for="u_123", max_amount=500
    )
    monkeypatch.setenv("TRACENGENT_URL", served.url)
    monkeypatch.setenv("TRACENGENT_CLIENT_ID", "key_demo")
    monkeypatch.setenv("TRACENGENT_CLIENT_SECRET", CLIENT_SECRET)
    monkeypatch.setenv("TRACENGENT_DELEGATED_TOKEN", delegated)
    assert load_demo().main() == 0
    output = capsys.readouterr().out
    assert "widening refused" in output and "refund approved" in output
    assert delegated in minted and len(minted) >= 3
    names = {r.name for r in every_log.records}
    assert {"httpx", "httpcore.http11", "uvicorn.access"} <= names, names  # really captured
    assert_no_secret_logged(every_log, minted, output)


# --- secrets that cannot be a header value ------------------------------------------------------

LEAKY = "s3cr3t-value-4f9a"


@pytest.fixture
def front() -> Iterator[FaultFront]:
    with FaultFront() as platform:
        yield platform


def _texts_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [text for record in caplog.records for text in record_texts(record)]


@pytest.mark.parametrize("where", ["ingest_key", "client_secret", "delegated_token"])
def test_a_secret_with_a_stray_newline_is_never_echoed(
    every_log: pytest.LogCaptureFixture, front: FaultFront, where: str
) -> None:
    """A secret read from a file often ends in a newline; h11 refuses it as a header value,
    and the refusal (which quotes the value) must not carry the secret into a log record, a
    decision's reason or an exception."""
    values: dict[str, object] = {
        "agent_id": "demo-agent",
        "base_url": front.url,
        "flush_interval_ms": 20,
        "backoff_base_s": 0.01,
        "backoff_max_s": 0.02,
        "max_retries": 1,
        "ingest_key": "agk_demo",
    }
    _, delegated = front.platform.grant("demo-agent", ["hotels:*"], acting_for="u_1")
    secret = {
        "ingest_key": f"agk_{LEAKY}",
        "client_secret": f"ags_{LEAKY}",
        "delegated_token": delegated.rsplit(".", 1)[-1],  # the signature: what makes it usable
    }[where]
    if where == "ingest_key":
        values["ingest_key"] = secret + "\n"
    elif where == "client_secret":
        values.update(client_id="key_demo", client_secret=secret + "\n")
    said: list[str] = []
    try:  # refusing such a secret up front is as good as never echoing it
        client = TracengentClient(TracengentOptions(**values))  # type: ignore[arg-type]
    except TracengentConfigError as refused:
        assert secrets_in([str(refused), *_texts_of(every_log)], [secret]) == []
        return
    try:
        if where == "delegated_token":
            try:
                session = client.begin_delegated_task(delegated + "\n")
            except (DelegationException, ValueError) as refused:
                said += [str(refused), "refused"]
            else:
                said.append(session.authorize("hotels:book").reason)
                said.append(repr(session))
                try:
                    session.attenuate_for_call("agt_x", ["hotels:book"])
                    said.append("attenuated")
                except DelegationException as refused:
                    said.append(str(refused))
        else:
            said.append(client.authorize("flights:book").reason)
            said.append(client.tools.authorize_mcp("search", {}).decision.reason)
            client.record(AgentEvent(name="e"))
            client.flush(5)
    finally:
        client.close(1)
    assert len(said) >= 2 and all(isinstance(s, str) and s for s in said)
    leaks = [*secrets_in(_texts_of(every_log), [secret]), *secrets_in(said, [secret])]
    assert leaks == []
