"""A raw-socket HTTP/1.1 server on 127.0.0.1 that answers as slowly or as oddly as a test says.

`http.server` writes whole responses; a platform that dribbles its answer one byte at a time,
sends its headers and then stalls, or accepts and never answers needs a server that controls
every byte. Each request is handed to `route(path, body)`, which returns a `Reply`: bytes to send
at once, then bytes to dribble (one byte every `every` seconds), then whether to hold the
connection open without a word.

The server stops by itself: every wait is on its stop event, and `lifetime` bounds how long it
serves at all, so a test whose client never gives up still ends.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from urllib.parse import urlsplit

#: A token answer's JWT (header.payload.signature; payload `{"permissions": ["*"]}`): any
#: string would do for the SDK, a decodable one keeps the claims path honest.
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJwZXJtaXNzaW9ucyI6WyIqIl19.c2lnbmF0dXJl"
DRIBBLE_EVERY_S = 0.2


@dataclass(frozen=True)
class Reply:
    """What to write for one request: `now` at once, then `dribble` byte by byte, then
    (`hold`) nothing more while keeping the connection open."""

    now: bytes = b""
    dribble: bytes = b""
    hold: bool = False
    every: float = DRIBBLE_EVERY_S


def response(
    status: int, body: bytes | str | dict[str, object], *, headers: dict[str, str] | None = None
) -> bytes:
    """A whole HTTP/1.1 response with a Content-Length (so the connection can be kept)."""
    if isinstance(body, dict):
        body = json.dumps(body)
    data = body.encode() if isinstance(body, str) else body
    extra = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
    head = (
        f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n{extra}"
        f"Content-Length: {len(data)}\r\n\r\n"
    )
    return head.encode() + data


def answer(
    status: int, body: bytes | str | dict[str, object], headers: dict[str, str] | None = None
) -> Reply:
    return Reply(now=response(status, body, headers=headers))


def dribbled(status: int, body: bytes | str | dict[str, object]) -> Reply:
    """The whole response (status line and headers too) one byte at a time."""
    return Reply(dribble=response(status, body))


def dribbled_body(status: int, body: bytes | str | dict[str, object]) -> Reply:
    """Headers at once, then the body one byte at a time."""
    whole = response(status, body)
    head, _, rest = whole.partition(b"\r\n\r\n")
    return Reply(now=head + b"\r\n\r\n", dribble=rest)


SILENT = Reply(hold=True)
TOKEN = answer(200, {"access_token": JWT, "token_type": "Bearer", "expires_in": 900})

Route = Callable[[str, bytes], Reply]


@dataclass
class Seen:
    method: str
    path: str
    headers: bytes
    body: bytes


@dataclass
class LoopbackServer:
    """Serves `route` on a free 127.0.0.1 port while entered; records every request it read."""

    route: Route
    lifetime: float = 20.0
    seen: list[Seen] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)
        self._threads: list[threading.Thread] = []
        self._started = time.monotonic()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._listener.getsockname()[1]}"

    def paths(self) -> list[str]:
        return [seen.path for seen in list(self.seen)]

    def __enter__(self) -> LoopbackServer:
        self._spawn(self._accept)
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        for thread in list(self._threads):
            thread.join(5)
        self._listener.close()

    def _spawn(self, target: Callable[..., None], *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _stopping(self) -> bool:
        if time.monotonic() - self._started > self.lifetime:
            self._stop.set()
        return self._stop.is_set()

    def _accept(self) -> None:
        while not self._stopping():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._spawn(self._serve, conn)

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(0.05)
        buffered = b""
        with conn:
            while not self._stopping():
                request, buffered = self._read_request(conn, buffered)
                if request is None:
                    return
                self.seen.append(request)
                if not self._write(conn, self.route(request.path, request.body)):
                    return

    def _read_request(self, conn: socket.socket, data: bytes) -> tuple[Seen | None, bytes]:
        while b"\r\n\r\n" not in data:
            if (more := self._recv(conn)) is None:
                return None, b""
            data += more
        head, _, data = data.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        while len(data) < length:
            if (more := self._recv(conn)) is None:
                return None, b""
            data += more
        method, target = head.split(b"\r\n")[0].decode("latin-1").split(" ")[:2]
        path = urlsplit(target).path if "://" in target else target  # as a proxy is asked
        return Seen(method, path, head, data[:length]), data[length:]

    def _recv(self, conn: socket.socket) -> bytes | None:
        while not self._stopping():
            try:
                chunk = conn.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return None
            return chunk or None
        return None

    def _write(self, conn: socket.socket, reply: Reply) -> bool:
        """Whether the connection may serve another request."""
        try:
            conn.sendall(reply.now)
            for index in range(len(reply.dribble)):
                if self._stop.wait(reply.every) or self._stopping():
                    return False
                conn.sendall(reply.dribble[index : index + 1])
        except OSError:
            return False
        if reply.hold:
            while not self._stop.wait(0.05) and not self._stopping():
                pass
            return False
        return True
