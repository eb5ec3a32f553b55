"""The platform as an ASGI application (served by `tracengent dev` under uvicorn)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from ._engine import Platform

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class PlatformApp:
    """A bare ASGI app over `Platform.handle`; handling runs in a worker thread (SQLite I/O)."""

    def __init__(self, platform: Platform, max_body_bytes: int = 1024 * 1024) -> None:
        self.platform = platform
        self._max_body = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["type"] != "http":
            return
        body, too_large = bytearray(), False
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            if len(body) + len(chunk) > self._max_body:
                too_large = True  # keep draining, store nothing
            else:
                body += chunk
            if not message.get("more_body", False):
                break
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers", [])}
        if too_large:
            body = bytearray(b"x" * (self._max_body + 1))  # let the engine answer its 413
        reply = await asyncio.to_thread(
            self.platform.handle, scope["method"], scope["path"], headers, bytes(body)
        )
        await send(
            {
                "type": "http.response.start",
                "status": reply.status,
                "headers": [
                    (b"content-type", reply.content_type.encode()),
                    (b"content-length", str(len(reply.body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": reply.body})
