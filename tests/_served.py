"""The local platform served by `tracengent dev` on 127.0.0.1, and a proxy in front of it.

`served_platform(policy)` starts the real platform in a subprocess on a free port with a policy
(TOML text, or the built-in demo policy) and stops it afterwards. `PlatformProxy` forwards
every request to it over real HTTP and lets a test change what comes back (a platform behind a
proxy that rewrites or echoes requests is part of the threat model); it records what passed.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from tracengent import TracengentOptions
from tracengent.platform import Store


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Served:
    url: str
    data: Path

    def store(self) -> Store:
        return Store.in_data_dir(self.data)

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """The `tracengent` command on this platform's data."""
        return subprocess.run(
            [sys.executable, "-m", "tracengent.cli", *args, "--data", str(self.data)],
            capture_output=True,
            text=True,
            timeout=60,
        )

    def options(self, **overrides: Any) -> TracengentOptions:
        values: dict[str, Any] = {
            "agent_id": "demo-agent",
            "base_url": self.url,
            "client_id": "key_demo",
            "client_secret": "ags_demo",
            "flush_interval_ms": 50,
            "approval_poll_interval_s": 0.1,
        }
        values.update(overrides)
        return TracengentOptions(**values)


@contextmanager
def served_platform(data: Path, policy: str | Path | None = None) -> Iterator[Served]:
    """`tracengent dev` on a free loopback port, ready when this yields (30 s at most).

    `policy` is the policy's TOML text, or the path of a policy file; None: the built-in one.
    """
    args = [sys.executable, "-m", "tracengent.cli", "dev", "--host", "127.0.0.1"]
    if isinstance(policy, str):
        data.mkdir(parents=True, exist_ok=True)
        (data / "policy.toml").write_text(policy)
        policy = data / "policy.toml"
    if policy is not None:
        args += ["--policy", str(policy)]
    port = free_port()
    args += ["--port", str(port), "--data", str(data)]
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    try:
        while True:
            try:
                if httpx.get(url + "/.well-known/jwks.json", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                output = process.stdout.read().decode() if process.stdout else ""
                raise RuntimeError(f"tracengent dev did not start: {output}")
            time.sleep(0.1)
        yield Served(url, data)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        if process.stdout is not None:
            process.stdout.close()


@dataclass
class Exchange:
    """One request that went through the proxy, and the answer it forwarded."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    status: int = 0
    answer: bytes = b""


#: (exchange with the platform's answer filled in) -> (status, headers, body) to send instead,
#: or None to forward the platform's answer unchanged
Rewrite = Callable[[Exchange], "tuple[int, dict[str, str], bytes] | None"]


@dataclass
class PlatformProxy:
    """A loopback HTTP proxy in front of `upstream`; `rewrite` may replace any answer."""

    upstream: str
    rewrite: Rewrite | None = None
    exchanges: list[Exchange] = field(default_factory=list)

    def __post_init__(self) -> None:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {k.lower(): v for k, v in self.headers.items()}
                exchange = Exchange(self.command, self.path, headers, body)
                forwarded = {
                    k: v for k, v in headers.items() if k not in ("host", "content-length")
                }
                answer = httpx.request(
                    self.command,
                    proxy.upstream + self.path,
                    headers=forwarded,
                    content=body,
                    timeout=10,
                )
                exchange.status, exchange.answer = answer.status_code, answer.content
                proxy.exchanges.append(exchange)
                status, out_headers, out = answer.status_code, {}, answer.content
                out_headers = {"content-type": answer.headers.get("content-type", "")}
                if proxy.rewrite is not None and (changed := proxy.rewrite(exchange)):
                    status, out_headers, out = changed
                self.send_response(status)
                for name, value in out_headers.items():
                    self.send_header(name, value)
                self.send_header("content-length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            do_GET = do_POST = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> PlatformProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


def echo_request(exchange: Exchange) -> tuple[int, dict[str, str], bytes]:
    """An error page that quotes the whole request back, as some proxies' 502 pages do."""
    lines = [f"{exchange.method} {exchange.path} HTTP/1.1"]
    lines += [f"{name}: {value}" for name, value in exchange.headers.items()]
    page = "\n".join(lines) + "\n\n" + exchange.body.decode("utf-8", "replace")
    return 502, {"content-type": "text/plain"}, ("Bad gateway. Your request was:\n" + page).encode()
