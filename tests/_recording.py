"""An in-process `httpx.MockTransport` that answers like the platform and keeps every request."""

from __future__ import annotations

import gzip
import json
import threading
from collections.abc import Callable
from typing import Any

import httpx

Handler = Callable[[httpx.Request], httpx.Response | None]


class RecordingPlatform:
    """Canonical answers per path; `script` overrides one path's next answers, in order."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.bodies: list[bytes] = []
        self._lock = threading.Lock()
        self._scripts: dict[str, list[Handler]] = {}
        self.transport = httpx.MockTransport(self._handle)

    def script(self, path: str, *answers: Handler) -> None:
        with self._lock:
            self._scripts.setdefault(path, []).extend(answers)

    def _handle(self, request: httpx.Request) -> httpx.Response:
        body = request.read()
        if request.headers.get("content-encoding") == "gzip":
            body = gzip.decompress(body)
        with self._lock:
            self.requests.append(request)
            self.bodies.append(body)
            scripted = self._scripts.get(request.url.path)
            answer = scripted.pop(0)(request) if scripted else None
        return answer or self._canonical(request)

    @staticmethod
    def _canonical(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/v1/oauth/token":
            return httpx.Response(
                200, json={"access_token": "h.p.s", "token_type": "Bearer", "expires_in": 900}
            )
        if path == "/v1/authorize":
            return httpx.Response(
                200,
                json={"allowed": True, "status": "allowed", "reason": "ok", "decisionId": "dec_1"},
            )
        if path.startswith("/v1/approvals/"):
            return httpx.Response(200, json={"status": "approved"})
        return httpx.Response(202)

    def sent(self, path: str) -> list[Any]:
        """The JSON (or form text) bodies sent to `path`, in order."""
        with self._lock:
            pairs = list(zip(self.requests, self.bodies, strict=True))
        out: list[Any] = []
        for request, body in pairs:
            if request.url.path == path:
                is_json = request.headers.get("content-type") == "application/json"
                out.append(json.loads(body) if is_json else body.decode())
        return out

    def raw(self, path: str) -> list[bytes]:
        with self._lock:
            return [
                b for r, b in zip(self.requests, self.bodies, strict=True) if r.url.path == path
            ]
