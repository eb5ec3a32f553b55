"""The platform in-process: an httpx transport that hands each request to `Platform.handle`.

No port, no thread of its own: the same handling as the served platform, reached through the
transport slot every Tracengent client already has.
"""

from __future__ import annotations

import asyncio

import httpx

from ._engine import Platform


class EmbeddedTransport(httpx.BaseTransport, httpx.AsyncBaseTransport):
    def __init__(self, platform: Platform) -> None:
        self.platform = platform

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        reply = self.platform.handle(
            request.method, request.url.path, dict(request.headers.items()), request.read()
        )
        return httpx.Response(
            reply.status,
            content=reply.body,
            headers={"Content-Type": reply.content_type},
            request=request,
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = await request.aread()
        reply = await asyncio.to_thread(
            self.platform.handle,
            request.method,
            request.url.path,
            dict(request.headers.items()),
            body,
        )
        return httpx.Response(
            reply.status,
            content=reply.body,
            headers={"Content-Type": reply.content_type},
            request=request,
        )
